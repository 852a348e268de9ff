"""bots/download.py against a real file host on loopback. Two names for the
same server ("127.0.0.1" and "localhost") stand for two different hosts."""

from __future__ import annotations

import io
from typing import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from bots.download import download_image
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

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append((request.host.split(":")[0], request.path, request.headers.get("Authorization")))
        path = request.path
        if path == "/private.png":
            if request.headers.get("Authorization") != TOKEN:
                return web.Response(text="<html>sign in</html>", content_type="text/html")  # Slack's login page
            return web.Response(body=_png(), content_type="image/png")
        if path == "/redirect-same":
            raise web.HTTPFound("/private.png")
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


@pytest.fixture
async def host() -> AsyncIterator[FileHost]:
    fh = FileHost()
    app = web.Application()
    app.router.add_get("/{tail:.*}", fh.handle)
    runner, fh.port = await serve_on_loopback(app)
    yield fh
    await runner.cleanup()


async def fetch(fh: FileHost, path: str, *, token_hosts: tuple[str, ...] = ("127.0.0.1",), max_bytes: int = 50 * 1024 * 1024,
                allowed: tuple[str, ...] = ("127.0.0.1", "localhost")) -> object:
    async with aiohttp.ClientSession() as session:
        return await download_image(
            session, f"http://127.0.0.1:{fh.port}{path}", allowed_hosts=allowed, headers={"Authorization": TOKEN},
            token_hosts=token_hosts, max_bytes=max_bytes,
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
