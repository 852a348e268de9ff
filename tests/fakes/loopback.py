"""Serving an aiohttp app on loopback for the fakes and tests: one place for
"start a runner on port 0 and read back the port the OS picked"."""

from __future__ import annotations

from aiohttp import web


async def serve_on_loopback(
    app: web.Application, *, host: str = "127.0.0.1", port: int = 0, backlog: int = 128, shutdown_timeout: float = 60.0
) -> tuple[web.AppRunner, int]:
    """Start `app`; returns its runner (to `cleanup()`) and the bound port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, host, port, backlog=backlog).start()
    return runner, int(runner.addresses[0][1])
