"""Slack's request signature, checked on the raw body before anything reads it.

Slack signs `v0:<timestamp>:<body>` with the app's signing secret
(HMAC-SHA256). Nothing of a request is parsed, logged or acted on until the
timestamp is fresh and the signature matches: a forged, stale, malformed or
oversized request gets 401 and one short log line without its body, and
those lines are rate-limited so a flood cannot fill the disk.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Callable

from aiohttp import web

log = logging.getLogger("imaginebot.slack")

# Slack's own limit on a request's age: older ones may be replays.
MAX_AGE_SECONDS = 300
# Slack payloads are small (a message with 40,000 characters and its blocks
# is far below this); anything bigger is refused before it is read whole.
MAX_BODY_BYTES = 1024 * 1024
_CHUNK = 64 * 1024


class Refused(Exception):
    """Why a request is not Slack's: a few words for the log, never the body."""


async def verified_body(request: web.Request, signing_secret: str, *, clock: Callable[[], float] = time.time) -> bytes:
    """The raw body of a request Slack signed; Refused otherwise. The headers
    are checked before a byte of the body is read."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not timestamp or not signature:
        raise Refused("no signature")
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12):
        raise Refused("malformed timestamp")
    if abs(clock() - int(timestamp)) > MAX_AGE_SECONDS:
        raise Refused("stale timestamp")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise Refused("body too large")
    body = bytearray()
    while chunk := await request.content.read(_CHUNK):
        body.extend(chunk)
        if len(body) > MAX_BODY_BYTES:
            raise Refused("body too large")
    expected = "v0=" + hmac.new(signing_secret.encode(), b"v0:" + timestamp.encode() + b":" + bytes(body), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
        raise Refused("bad signature")
    return bytes(body)


class RefusalLog:
    """One short line per refused request, at most one every `interval`
    seconds; the refusals in between are counted in the next line."""

    def __init__(self, interval: float = 10.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last = float("-inf")
        self._unlogged = 0

    def refused(self, request: web.Request, reason: str) -> None:
        now = self.clock()
        if now - self._last < self.interval:
            self._unlogged += 1
            return
        more = f" (and {self._unlogged} more since the last such line)" if self._unlogged else ""
        self._last, self._unlogged = now, 0
        log.warning("refused a request to /slack/events from %s: %s%s", request.remote or "?", reason, more)
