"""Shared fixtures: a running fake OpenAI server, and services wired to it
through the real AsyncOpenAI SDK."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from core.config import Config, config_from_mapping
from core.provider import OpenAIProvider, make_client
from core.service import ImageService
from tests.fakes.openai_server import FakeOpenAI

FAKE_OPENAI_KEY = "sk-test-fake-not-a-real-key"

MakeService = Callable[..., Awaitable[ImageService]]


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def build_config(overrides: dict[str, Any] | None = None) -> Config:
    """A Config as if a TOML file had set `overrides` ({"limits": {...}})."""
    return config_from_mapping(overrides or {}, source="test-config.toml")


@pytest.fixture
async def make_service(fake_openai: FakeOpenAI, tmp_path: Path) -> AsyncIterator[MakeService]:
    """`await make_service(limits={...}, db_path=..., clock=..., progress_interval=...)`.

    Each call builds a service on the real SDK pointed at the fake; all are
    closed at the end of the test. Sleeps between retries are real but the
    fake's Retry-After is 1 s, so tests that provoke 429s pass `sleep=`.
    """
    services: list[ImageService] = []

    async def make(
        *,
        db_path: str | Path | None = None,
        clock: Any = None,
        progress_interval: float = 5.0,
        sleep: Any = None,
        api_key: str = FAKE_OPENAI_KEY,
        **overrides: Any,
    ) -> ImageService:
        config = build_config(overrides)
        client = make_client(api_key, base_url=fake_openai.base_url, timeout_seconds=config.openai.timeout_seconds)
        provider = OpenAIProvider(client, config, **({"sleep": sleep} if sleep else {}))
        kwargs: dict[str, Any] = {"progress_interval": progress_interval}
        if clock is not None:
            kwargs["clock"] = clock
        service = await ImageService.open(config, str(db_path or tmp_path / f"test-{len(services)}.db"), provider, **kwargs)
        services.append(service)
        return service

    yield make
    for service in services:
        await service.close()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imaginebot")
