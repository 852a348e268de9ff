"""Fixtures for the Discord adapter: a running fake Discord, and adapters
(the real discord.py client) logged in and connected to it."""

from __future__ import annotations

import asyncio
import io
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import discord
import pytest
from discord.gateway import DiscordWebSocket
from PIL import Image

from bots.discord import DiscordAdapter
from core.service import ImageService
from tests.fakes.discord_server import FakeDiscord

MakeAdapter = Callable[..., Awaitable[DiscordAdapter]]


@pytest.fixture
async def fake_discord() -> AsyncIterator[FakeDiscord]:
    base, gateway = discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    async with FakeDiscord() as fake:
        yield fake
    # The adapter points these class attributes at the fake; put them back.
    discord.http.Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


@pytest.fixture
async def make_adapter(fake_discord: FakeDiscord, make_service: Any, tmp_path: Path) -> AsyncIterator[MakeAdapter]:
    """`await make_adapter(service=None, start=True, token=None, **config_overrides)`: a started adapter.

    Pass `service=` to share one service (and its database) between two
    adapters, e.g. to restart the bot."""
    adapters: list[DiscordAdapter] = []

    async def make(
        *, service: ImageService | None = None, start: bool = True, token: str | None = None, **overrides: Any
    ) -> DiscordAdapter:
        if service is None:
            service = await make_service(db_path=tmp_path / "bot.db", progress_interval=0.2, **overrides)
        adapter = DiscordAdapter(service, service.config, token=token or fake_discord.token, api_url=fake_discord.api_base)
        adapters.append(adapter)
        if start:
            await adapter.start()
        return adapter

    yield make
    for adapter in adapters:
        await adapter.close()


@pytest.fixture
async def adapter(make_adapter: MakeAdapter) -> DiscordAdapter:
    return await make_adapter()


def png_bytes(size: tuple[int, int] = (1024, 1024), color: tuple[int, ...] = (200, 40, 40), mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, color).save(out, format="PNG")
    return out.getvalue()


# A bot in its own process, so a test can kill it the way a crash would
# (no cleanup, no refund) and let a new adapter in this process recover.
_BOT_PROCESS = """
import asyncio, sys
from bots.discord import DiscordAdapter
from core.config import config_from_mapping
from core.provider import OpenAIProvider, make_client
from core.service import ImageService

async def main(api_url, openai_url, db_path):
    config = config_from_mapping({}, source="crash-test")
    client = make_client("sk-test-fake-not-a-real-key", base_url=openai_url, timeout_seconds=300)
    service = await ImageService.open(config, db_path, OpenAIProvider(client, config))
    await DiscordAdapter(service, config, token="fake-discord-token", api_url=api_url).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.fixture
async def bot_process(fake_discord: FakeDiscord, fake_openai: Any, tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[asyncio.subprocess.Process]]]:
    """`proc = await bot_process()`: a connected bot in a child process, using
    tmp_path/"bot.db" (the database `make_adapter` uses). Killed at the end."""
    procs: list[asyncio.subprocess.Process] = []

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _BOT_PROCESS, fake_discord.api_base, fake_openai.base_url, str(tmp_path / "bot.db"),
            stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).resolve().parents[3]),
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.strip() == b"ready", line
        return proc

    yield start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def crash_mid_job(bot_process: Any, fake_discord: FakeDiscord, fake_openai: Any, prompt: str) -> Any:
    """A bot process takes a job, then dies (SIGKILL) while the model works on it."""
    proc = await bot_process()
    fake_openai.latency = 30
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt})
    await fake_discord.wait_until(lambda: fake_openai.requests)
    proc.kill()
    await proc.wait()
    return ix
