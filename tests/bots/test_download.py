"""bots/download.py against a real file host on loopback. Two names for the
same server ("127.0.0.1" and "localhost") stand for two different hosts."""

from __future__ import annotations

import io
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bots.discord.attachments import allowed_hosts
from bots.download import download_image, origin_of
from bots.slack.files import token_hosts
from core.errors import InvalidInput
from tests.fakes.loopback import serve_on_loopback

TOKEN = "Bearer xoxb-test-fake-token"


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buf, "PNG")
    return buf.getvalue()


class FileHost:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []  # (host header, path, authorization)
        self.port = 0
        self.redirect_to = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.host.split(":")[0], request.path, request.headers.get("Authorization")))
        path = request.path
        if path == "/private.png":
            if request.headers.get("Authorization") != TOKEN:
                return web.Response(text="<html>sign in</html>", content_type="text/html")  # Slack's login page
            return web.Response(body=_png(), content_type="image/png")
        if path == "/redirect-same":
            raise web.HTTPFound("/private.png")
        if path == "/public.png":
            return web.Response(body=_png(), content_type="image/png")
        if path == "/redirect-to":
            raise web.HTTPFound(self.redirect_to)
        if path == "/redirect-other":
            raise web.HTTPFound(f"http://localhost:{self.port}/private.png")
        if path == "/huge":
            resp = web.StreamResponse(headers={"Content-Type": "image/png"})  # no Content-Length: capped while streaming
            await resp.prepare(request)
            for _ in range(40):
                await resp.write(b"\0" * 65536)
            await resp.write_eof()
            return resp
        if path == "/gone":
            return web.Response(status=404)
        return web.Response(status=500)


async def serve_file_host() -> AsyncIterator[FileHost]:
    fh = FileHost()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fh.handle)
    runner, fh.port = await serve_on_loopback(app)
    yield fh
    await runner.cleanup()


@pytest.fixture
async def host() -> AsyncIterator[FileHost]:
    async for fh in serve_file_host():
        yield fh


async def fetch(fh: FileHost, path: str, *, token_hosts: tuple[str, ...] | None = None, max_bytes: int = 50 * 1024 * 1024,
                allowed: tuple[str, ...] = ("127.0.0.1", "localhost")) -> object:
    """`token_hosts` defaults to the file host's origin (scheme, host and port)."""
    async with aiohttp.ClientSession() as session:
        return await download_image(
            session, f"http://127.0.0.1:{fh.port}{path}", allowed_hosts=allowed, headers={"Authorization": TOKEN},
            token_hosts=(f"http://127.0.0.1:{fh.port}",) if token_hosts is None else token_hosts, max_bytes=max_bytes,
        )


async def test_token_goes_to_the_token_host_and_image_comes_back(host: FileHost) -> None:
    upload = await fetch(host, "/private.png")
    assert upload.data == _png() and upload.content_type == "image/png" and upload.filename == "private.png"  # type: ignore[attr-defined]
    assert host.seen == [("127.0.0.1", "/private.png", TOKEN)]


async def test_html_login_page_is_refused_clearly(host: FileHost) -> None:
    with pytest.raises(InvalidInput, match="isn't an image"):
        await fetch(host, "/private.png", token_hosts=())
    assert host.seen[0][2] is None  # no token sent to a host that is not a token host


async def test_redirect_to_another_host_is_not_followed(host: FileHost) -> None:
    with pytest.raises(InvalidInput, match="not allowed to read from"):
        await fetch(host, "/redirect-other")
    assert [s[1] for s in host.seen] == ["/redirect-other"]  # the other host was never contacted


async def test_redirect_on_the_same_host_keeps_working(host: FileHost) -> None:
    upload = await fetch(host, "/redirect-same")
    assert upload.data == _png()  # type: ignore[attr-defined]
    assert [(s[1], s[2]) for s in host.seen] == [("/redirect-same", TOKEN), ("/private.png", TOKEN)]


async def test_host_not_on_the_allowlist_is_never_contacted(host: FileHost) -> None:
    with pytest.raises(InvalidInput, match="only read images uploaded"):
        await fetch(host, "/private.png", allowed=("files.slack.com",))
    assert host.seen == []


async def test_bytes_are_capped_while_streaming(host: FileHost) -> None:
    with pytest.raises(InvalidInput, match="larger than 1 MB"):
        await fetch(host, "/huge", max_bytes=1024 * 1024)


async def test_missing_file_says_what_to_check(host: FileHost) -> None:
    with pytest.raises(InvalidInput, match="don't have access"):
        await fetch(host, "/gone")


# -- the same host on another port is another host ------------------------------------


@pytest.fixture
async def other_port() -> AsyncIterator[FileHost]:
    """A second file host on 127.0.0.1, on another port: same host name, another origin."""
    async for fh in serve_file_host():
        yield fh


def origin(fh: FileHost) -> str:
    return f"http://127.0.0.1:{fh.port}"


async def get(url: str, *, allowed: tuple[str, ...], token_hosts: tuple[str, ...]) -> object:
    async with aiohttp.ClientSession() as session:
        return await download_image(session, url, allowed_hosts=allowed, headers={"Authorization": TOKEN}, token_hosts=token_hosts)


async def test_the_token_never_goes_to_another_port_of_the_token_host(host: FileHost, other_port: FileHost) -> None:
    # Both ports may be read from, but only the first is the token's origin.
    with pytest.raises(InvalidInput, match="isn't an image"):  # the other port got no token: the login page
        await get(f"{origin(other_port)}/private.png", allowed=(origin(host), origin(other_port)), token_hosts=(origin(host),))
    assert [s[2] for s in other_port.seen] == [None]


async def test_another_port_of_an_allowed_host_is_never_contacted(host: FileHost, other_port: FileHost) -> None:
    with pytest.raises(InvalidInput, match="only read images uploaded"):
        await get(f"{origin(other_port)}/private.png", allowed=(origin(host),), token_hosts=(origin(host),))
    assert other_port.seen == []


async def test_a_redirect_to_another_port_of_the_same_host_is_not_followed(host: FileHost, other_port: FileHost) -> None:
    host.redirect_to = f"{origin(other_port)}/private.png"
    with pytest.raises(InvalidInput, match="not allowed to read from"):
        await get(f"{origin(host)}/redirect-to", allowed=(origin(host), origin(other_port)), token_hosts=(origin(host), origin(other_port)))
    assert other_port.seen == []


async def test_slack_token_origins_are_files_slack_com_and_the_api_url_with_its_port(host: FileHost, other_port: FileHost) -> None:
    origins = token_hosts(f"{origin(host)}/api/")
    assert origins == frozenset({"https://files.slack.com:443", origin(host)})
    upload = await get(f"{origin(host)}/private.png", allowed=tuple(origins), token_hosts=tuple(origins))
    assert upload.data == _png()  # type: ignore[attr-defined]
    with pytest.raises(InvalidInput, match="only read images uploaded"):
        await get(f"{origin(other_port)}/private.png", allowed=tuple(origins), token_hosts=tuple(origins))
    assert other_port.seen == []


async def test_discord_downloads_only_from_its_cdn_and_the_api_url_origin(host: FileHost, other_port: FileHost) -> None:
    # What the Discord adapter builds from DISCORD_API_URL: its origin, port included.
    allowed = allowed_hosts(f"{origin(host)}/api/v10")
    async with aiohttp.ClientSession() as session:
        upload = await download_image(session, f"{origin(host)}/public.png", allowed_hosts=allowed)
        assert upload.data == _png()
        with pytest.raises(InvalidInput, match="only read images uploaded"):
            await download_image(session, f"{origin(other_port)}/public.png", allowed_hosts=allowed)
        with pytest.raises(InvalidInput, match="secure"):  # the CDN, but not over https
            await download_image(session, "http://cdn.discordapp.com/attachments/1/2/a.png", allowed_hosts=allowed)
    assert other_port.seen == []


@pytest.mark.parametrize(
    ("first", "then", "same"),
    [
        ("https://files.slack.com/a", "https://files.slack.com:443/b", True),
        ("https://files.slack.com/a", "http://files.slack.com/b", False),  # https never downgrades
        ("https://files.slack.com/a", "https://files.slack.com:8443/b", False),
        ("http://127.0.0.1:3000/a", "http://127.0.0.1:3001/b", False),
        ("http://127.0.0.1:3000/a", "http://localhost:3000/b", False),
        ("HTTPS://Files.Slack.COM/a", "https://files.slack.com/b", True),
    ],
)
def test_origins_compare_scheme_host_and_port(first: str, then: str, same: bool) -> None:
    assert (origin_of(first) == origin_of(then)) is same
