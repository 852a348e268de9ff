"""The HTTP server (aiohttp): Slack's one URL, health and metrics."""

from __future__ import annotations

import time
from typing import Awaitable, Callable, Mapping, Protocol

from aiohttp import web

from core.service import ImageService

SLACK_EVENTS_PATH = "/slack/events"


class Adapter(Protocol):
    healthy: bool


class SlackHttp(Protocol):
    async def handle_http(self, request: web.Request) -> web.StreamResponse: ...


def build_web_app(
    service: ImageService,
    adapters: Mapping[str, Adapter],
    *,
    slack: SlackHttp | None = None,
) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)  # Slack payloads are small; refuse anything big
    started = time.time()

    async def healthz(_: web.Request) -> web.Response:
        status: dict[str, object] = {name: ("up" if a.healthy else "down") for name, a in adapters.items()}
        # A real write, not just an open connection: a full disk or a deleted file is "down".
        status["database"] = "up" if await service.database_ok() else "down"
        ok = all(v == "up" for v in status.values())
        body = {"status": "ok" if ok else "degraded", "uptime_seconds": int(time.time() - started), **status}
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        page, content_type = service.metrics_page()
        return web.Response(body=page, headers={"Content-Type": content_type})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    if slack is not None:
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = slack.handle_http
        app.router.add_post(SLACK_EVENTS_PATH, handler)
    return app
