"""Downloading attachments from chat platforms, safely.

- Only allowed servers are fetched. A server is an origin: scheme, host and
  port together, so another port on an allowed host is another server, and
  http is not https.
- Credentials (the Slack bot token) go only to `token_hosts`, compared the
  same way: never to another port of the same host, never over http when the
  origin is https.
- Redirects are followed by hand, only within the first URL's origin, so a
  token can never be carried to another server (nor downgraded to http).
- Bytes are capped while streaming: a huge file is refused without being held
  in memory.
- The body must be an image (Slack answers an HTML login page with 200 when
  the token is missing or wrong).

An entry of `allowed_hosts` / `token_hosts` is an origin (`https://h:443`,
see origin_of) or a bare host name, which means that host over https on port
443 — except a bare loopback host, allowed over http on any port (a local
fake or proxy in front of the platform, never a host on the internet).
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
_DEFAULT_PORTS = {"https": 443, "http": 80}


def host_of(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def origin_of(url: str) -> str:
    """`scheme://host:port` with the default port filled in ("" if `url` has
    no usable scheme, host or port): two URLs reach the same server exactly
    when their origins are equal."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:  # a port that is not a number, or out of range
        return ""
    if scheme not in _DEFAULT_PORTS or not host or port is None:
        return ""
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _Servers:
    """An allowlist of origins and bare host names (see the module's docstring)."""

    def __init__(self, entries: Collection[str], *, loopback_http: bool) -> None:
        self.origins = {origin_of(e) for e in entries if "://" in e} - {""}
        self.hosts = {e.lower() for e in entries if "://" not in e}
        self.loopback_http = loopback_http

    def __contains__(self, url: object) -> bool:
        assert isinstance(url, str)
        origin = origin_of(url)
        if not origin:
            return False
        if origin in self.origins:
            return True
        host = host_of(url)
        if host not in self.hosts:
            return False
        return origin == origin_of(f"https://{host}/") or (self.loopback_http and _loopback(host))

    def over_https(self, url: str) -> bool:
        """Whether the same file would be allowed over https."""
        host = host_of(url)
        return bool(host) and f"https://{host}/" in self


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
    allowed = _Servers(allowed_hosts, loopback_http=True)
    name = filename or urlsplit(url).path.rsplit("/", 1)[-1] or "image"
    if url not in allowed:
        if urlsplit(url).scheme.lower() == "http" and allowed.over_https(url):
            raise InvalidInput("I can only read images over a secure (https) link.")
        raise InvalidInput(f"I can only read images uploaded to this chat, not from {host_of(url) or 'that link'}.")
    # The token goes to its own origins only: no leniency for loopback here.
    tokens = _Servers(token_hosts, loopback_http=False)
    try:
        return await _fetch(session, url, name, headers or {}, tokens, max_bytes, timeout_seconds)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        raise InvalidInput(f"I couldn't download “{name}” just now. Please try again in a moment.") from None


async def _fetch(
    session: aiohttp.ClientSession,
    url: str,
    name: str,
    headers: Mapping[str, str],
    token_servers: _Servers,
    max_bytes: int,
    timeout_seconds: float,
) -> Upload:
    """Follow same-origin redirects by hand; stream with a byte cap."""
    first_origin = origin_of(url)
    timeout = aiohttp.ClientTimeout(total=timeout_seconds)
    for _ in range(MAX_REDIRECTS + 1):
        send = dict(headers) if url in token_servers else {}
        async with session.get(url, headers=send, allow_redirects=False, timeout=timeout) as resp:
            if resp.status in (301, 302, 303, 307, 308):
                target = urljoin(url, resp.headers.get("Location", ""))
                if origin_of(target) != first_origin:
                    raise InvalidInput(f"I couldn't download “{name}”: it is stored somewhere I'm not allowed to read from.")
                url = target
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
