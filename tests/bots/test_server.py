"""The HTTP server's /healthz and /metrics, served for real on loopback."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from bots.server import build_web_app
from core.errors import PolicyBlocked
from core.models import Requester
from core.options import build_options
from tests.conftest import MakeService
from tests.fakes.loopback import serve_on_loopback


@dataclass
class FakeAdapterState:
    healthy: bool


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner, port = await serve_on_loopback(app)
    return runner, f"http://127.0.0.1:{port}"


async def test_healthz_reports_each_adapter_and_the_database(make_service: MakeService) -> None:
    service = await make_service()
    discord = FakeAdapterState(healthy=True)
    runner, base = await serve(build_web_app(service, {"discord": discord}))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 200
                body = await resp.json()
                assert {k: v for k, v in body.items() if k != "uptime_seconds"} == {"status": "ok", "discord": "up", "database": "up"}
            discord.healthy = False  # reconnecting
            async with http.get(f"{base}/healthz") as resp:
                assert resp.status == 503
                assert (await resp.json())["discord"] == "down"
    finally:
        await runner.cleanup()


async def test_metrics_count_jobs_images_spend_and_blocks(make_service: MakeService) -> None:
    service = await make_service()
    r = Requester("discord", "G1", "U1")
    await service.generate(r, "a fox", build_options(service.config, n=2))
    with pytest.raises(PolicyBlocked):
        await service.generate(r, "BLOCK_INPUT x", build_options(service.config))
    runner, base = await serve(build_web_app(service, {}))
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
    finally:
        await runner.cleanup()
    assert 'imaginebot_jobs_total{kind="generate",outcome="succeeded",platform="discord"} 1.0' in text
    assert 'imaginebot_jobs_total{kind="generate",outcome="policy_blocked",platform="discord"} 1.0' in text
    assert 'imaginebot_images_generated_total{platform="discord"} 2.0' in text
    assert 'imaginebot_policy_blocks_total{platform="discord",stage="input"} 1.0' in text
    assert "imaginebot_model_call_seconds_count" in text and "imaginebot_queue_length 0.0" in text
