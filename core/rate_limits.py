"""What OpenAI says about the account's rate limit, read from a 429's
message and from any answer's headers. Pure parsing, no I/O.

A 429 rate_limit_exceeded reads "Rate limit reached for gpt-image-2 in
organization org-… on images per min (IPM): Limit 20, Used 20, Requested 1.
Please try again in 3s. …"; headers follow the x-ratelimit-limit-requests /
-tokens style: x-ratelimit-limit-images, x-ratelimit-remaining-images,
x-ratelimit-reset-images ("6s", "1m30s", "250ms"), plus Retry-After(-ms).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

_LIMIT_RE = re.compile(r"\bLimit\s+(\d+)", re.IGNORECASE)
_TRY_AGAIN_RE = re.compile(r"try again in\s+([0-9hms.]+)", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class RateInfo:
    limit: int | None = None  # images per minute, when OpenAI said
    remaining: int | None = None
    retry_after: float | None = None  # seconds to wait before the next call


def parse_duration(text: str) -> float | None:
    """"6s", "1m30s", "250ms", "0.5s", or a bare number of seconds."""
    text = text.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    parts = _DURATION_RE.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


def from_headers(headers: Mapping[str, str]) -> RateInfo:
    limit = _int(headers.get("x-ratelimit-limit-images"))
    remaining = _int(headers.get("x-ratelimit-remaining-images"))
    retry_after: float | None = None
    if (ms := headers.get("retry-after-ms")) is not None and (value := parse_duration(ms)) is not None:
        retry_after = value / 1000
    elif (seconds := headers.get("retry-after")) is not None:
        retry_after = parse_duration(seconds)
    if retry_after is None and remaining == 0 and (reset := headers.get("x-ratelimit-reset-images")) is not None:
        retry_after = parse_duration(reset)
    return RateInfo(limit=limit if limit and limit > 0 else None, remaining=remaining, retry_after=retry_after)


def from_rate_limit_error(headers: Mapping[str, str], message: str) -> RateInfo:
    """A 429's headers first; its message fills in what they leave out."""
    info = from_headers(headers)
    limit = info.limit
    if limit is None and (m := _LIMIT_RE.search(message)) is not None and int(m.group(1)) > 0:
        limit = int(m.group(1))
    retry_after = info.retry_after
    if retry_after is None and (m := _TRY_AGAIN_RE.search(message)) is not None:
        retry_after = parse_duration(m.group(1).rstrip("."))
    return RateInfo(limit=limit, remaining=info.remaining, retry_after=retry_after)
