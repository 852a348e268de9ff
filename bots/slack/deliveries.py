"""What makes two Slack deliveries the same request.

Slack delivers again what it thinks we missed (`X-Slack-Retry-Num` on
events, a Socket Mode envelope nobody acked), and anyone who captured a
signed request can replay it while its timestamp is fresh. Each must do its
work once: the key below is claimed in the database (so it holds across
processes) before any listener runs.

The key is the payload's own identity, which every copy keeps and every new
action changes: `event_id` for events (Slack's retries keep it), `trigger_id`
for slash commands, shortcuts, view submissions and button clicks (Slack
makes one per invocation: a second `/imagine` with the same text a moment
later gets a new one). A payload with neither is identified by its signed
timestamp and body in HTTP mode, and not deduplicated in Socket Mode.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

# Slack's handshakes must be answered every time.
_NEVER_DEDUPLICATED = frozenset({"url_verification", "ssl_check"})


def delivery_key(body: Mapping[str, Any], *, raw_body: str = "", timestamp: str | None = None) -> str | None:
    """The key every delivery of this request shares, or None (always run)."""
    if body.get("type") in _NEVER_DEDUPLICATED or body.get("ssl_check"):
        return None
    if body.get("event_id"):
        return f"slack:event:{body['event_id']}"
    if body.get("trigger_id"):
        return f"slack:trigger:{body['trigger_id']}"
    if raw_body and timestamp:
        return "slack:body:" + hashlib.sha256(f"{timestamp}:{raw_body}".encode()).hexdigest()
    return None
