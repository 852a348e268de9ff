"""Downloading attachments from chat platforms, safely.

- Only hosts on the allowlist are fetched.
- Credentials (the Slack bot token) go only to `token_hosts`.
- Redirects are followed by hand, only to the same host, so a token can never
  be carried to another host.
- Bytes are capped while streaming: a huge file is refused without being held
  in memory.
- The body must be an image (Slack answers an HTML login page with 200 when
  the token is missing or wrong).
"""

from __future__ import annotations

import asyncio
from typing import Collection, Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from core.errors import InvalidInput
from core.images import MAX_INPUT_BYTES
from core.models import Upload

MAX_REDIRECTS = 3
_CHUNK = 64 * 1024


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


async def download_image(
    session: aiohttp.ClientSession,
    url: str,
    *,
    allowed_hosts: Collection[str],
    headers: Mapping[str, str] | None = None,
    token_hosts: Collection[str] = (),
    max_bytes: int = MAX_INPUT_BYTES,
    filename: str = "",
    timeout_seconds: float = 60.0,
) -> Upload:
    """Raises InvalidInput, with words for the user, on anything but an image."""
    allowed = {h.lower() for h in allowed_hosts}
    name = filename or urlsplit(url).path.rsplit("/", 1)[-1] or "image"
    host = host_of(url)
    scheme = urlsplit(url).scheme
    if host not in allowed or scheme not in ("https", "http"):
        raise InvalidInput(f"I can only read images uploaded to this chat, not from {host or 'that link'}.")
    if scheme == "http" and host not in {h.lower() for h in token_hosts} and not _loopback(host):
        raise InvalidInput("I can only read images over a secure (https) link.")
    try:
        return await _fetch(session, url, name, headers or {}, {h.lower() for h in token_hosts}, max_bytes, timeout_seconds)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise InvalidInput(f"I couldn't download “{name}” just now. Please try again in a moment.") from None


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    headers: Mapping[str, str],
    token_hosts: set[str],
    max_bytes: int,
    timeout_seconds: float,
) -> Upload:
    """Follow same-host redirects by hand; stream with a byte cap."""
    host = first_host = host_of(url)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    for _ in range(MAX_REDIRECTS + 1):
        send = dict(headers) if host in token_hosts else {}
        async with session.get(url, headers=send, allow_redirects=False, timeout=timeout) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                target = urljoin(url, resp.headers.get("Location", ""))
                if host_of(target) != first_host:
                    raise InvalidInput(f"I couldn't download “{name}”: it is stored somewhere I'm not allowed to read from.")
                url, host = target, host_of(target)
                continue
            if resp.status in (401, 403, 404):
                raise InvalidInput(f"I don't have access to “{name}”. Make sure I'm in this channel and the file wasn't deleted.")
            if resp.status != 200:
                raise InvalidInput(f"I couldn't download “{name}” (the file host didn't answer properly). Please try again.")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise InvalidInput(_too_big(name, max_bytes))
            content_type = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type and not (content_type.startswith("image/") or content_type == "application/octet-stream"):
                raise InvalidInput(f"“{name}” isn't an image I can download (I got a {content_type} page instead).")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(_CHUNK):
                data.extend(chunk)
                if len(data) > max_bytes:
                    raise InvalidInput(_too_big(name, max_bytes))
            return Upload(filename=name, data=bytes(data), content_type=content_type)
    raise InvalidInput(f"I couldn't download “{name}”: too many redirects.")


def _too_big(name: str, max_bytes: int) -> str:
    return f"“{name}” is larger than {max_bytes // (1024 * 1024)} MB, which is the most I can edit. Please upload a smaller image."


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
