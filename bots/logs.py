"""Logging: one line per event, JSON when LOG_FORMAT=json, and never a secret.

Redaction sits on the handler, so it also covers what libraries log (slack-bolt
and discord.py log request details at debug level).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Iterable

# Token shapes, in case one reaches a log from somewhere we did not foresee.
_TOKEN_PATTERNS = re.compile(r"(xox[abposr]-[\w-]+|xapp-[\w-]+|sk-[\w-]{8,})")


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return _TOKEN_PATTERNS.sub("[redacted]", text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


# Start-up warnings from libraries about things this bot does not use: each
# would make an admin look for a problem that isn't there.
KNOWN_NOISE = (
    "`token` will be unused",  # bolt: SLACK_BOT_TOKEN is in the environment and we hand it a client
    "voice will NOT be supported",  # discord.py: no voice libraries; the bot has no voice features
)


def is_known_noise(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return any(noise in message for noise in KNOWN_NOISE)


class JsonFormatter(logging.Formatter):
    # Fields adapters attach with `extra=` become JSON keys.
    FIELDS = ("job_id", "platform", "workspace", "user", "outcome", "elapsed_ms")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in self.FIELDS:
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(*, json_format: bool, secrets: Iterable[str], level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(lambda record: not is_known_noise(record))
    handler.addFilter(RedactingFilter(secrets))
    handler.setFormatter(JsonFormatter() if json_format else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The SDKs' HTTP clients log every request at INFO; that is noise, and
    # URLs can carry tokens (Discord webhooks).
    for noisy in ("httpx", "httpx2", "openai", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
