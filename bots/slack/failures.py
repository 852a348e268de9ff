"""What a failed Slack call failed with, whatever it failed with.

A Slack call can fail with Slack's own JSON error (`not_in_channel`), with a
body that is not Slack's at all (a proxy's `503 text/plain`, a load
balancer's HTML page), or with no answer (a dropped connection, a timeout).
Every place that calls Slack catches whatever it raised and names it here,
so that describing an error can never become a second error.
"""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

# Slack errors meaning "I may not post in this conversation".
UNREACHABLE = frozenset(
    {"not_in_channel", "channel_not_found", "is_archived", "restricted_action", "cannot_reply_to_message", "ekm_access_denied"}
)


def slack_error(e: BaseException) -> str:
    """Slack's error code, or `http_503` for a body that is not Slack's JSON,
    or the exception's type for a call that got no answer."""
    if isinstance(e, SlackApiError) and e.response is not None:
        data = e.response.data
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
        return f"http_{e.response.status_code}"
    return type(e).__name__
