"""The HTTP server's /healthz and /metrics, served for real on loopback."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bots.server import build_web_app
from core.errors import PolicyBlocked
from core.models import Requester
from core.options import build_options
from tests.conftest import MakeService
from tests.core.disk_faults import LONG_PROMPT, Disk, Tmpfs, delete_database, disk, mount_tmpfs, unmount  # noqa: F401 - disk is a fixture
from tests.core.scenario import until
from tests.fakes.openai_server import FakeOpenAI
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


async def healthz(base: str) -> tuple[int, dict[str, object]]:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/healthz") as resp:
            return resp.status, await resp.json()


async def test_healthz_reports_the_database_down_while_a_ledger_write_fails(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    """The disk fills during a paid call: the settlement can't be written, so
    the database is down (not "up" because a connection object exists) until
    the retried settlement lands."""
    service = await make_service(db_path=disk.db_path)
    service.ledger_writes.waits = (0.01, 0.05)
    runner, base = await serve(build_web_app(service, {}))
    try:
        fake_openai.gate = asyncio.Event()
        job = asyncio.create_task(service.generate(Requester("slack", "T1", "U1"), LONG_PROMPT, build_options(service.config)))
        await until(lambda: fake_openai.in_flight == 1, "the model call is in flight")
        await disk.fill(service)
        fake_openai.gate.set()
        assert (await job).images
        status, body = await healthz(base)
        assert (status, body["database"]) == (503, "down"), body

        await disk.free(service)
        await until(lambda: not service.ledger_writes.pending, "the settlement to land")
        status, body = await healthz(base)
        assert (status, body["database"]) == (200, "up"), body
    finally:
        await runner.cleanup()


async def test_healthz_reports_a_full_disk_before_any_job_needs_it(make_service: MakeService, tmp_path: Path) -> None:
    mountpoint = tmp_path / "disk"
    if not mount_tmpfs(mountpoint):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        disk = Tmpfs(mountpoint)
        service = await make_service(db_path=disk.db_path)
        runner, base = await serve(build_web_app(service, {}))
        try:
            assert (await healthz(base))[0] == 200
            await disk.fill(service)
            status, body = await healthz(base)
            assert (status, body["database"]) == (503, "down"), body
            await disk.free(service)
            assert (await healthz(base))[0] == 200
        finally:
            await runner.cleanup()
            await service.close()
    finally:
        unmount(mountpoint)


async def test_healthz_reports_the_database_down_when_its_file_is_deleted(make_service: MakeService, tmp_path: Path) -> None:
    service = await make_service(db_path=tmp_path / "ledger.db")
    runner, base = await serve(build_web_app(service, {}))
    try:
        assert (await healthz(base))[0] == 200
        delete_database(tmp_path / "ledger.db")
        status, body = await healthz(base)
        assert (status, body["database"]) == (503, "down"), body
    finally:
        await runner.cleanup()
