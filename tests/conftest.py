"""Shared fixtures: a running fake OpenAI server, services wired to it
through the real AsyncOpenAI SDK, and fresh databases on either backend."""

from __future__ import annotations

import contextlib
import logging
import uuid
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator
from urllib.parse import quote

import pytest

from core.config import Config, config_from_mapping
from core.provider import OpenAIProvider, make_client
from core.service import ImageService
from tests.fakes.openai_server import FakeOpenAI

FAKE_OPENAI_KEY = "sk-test-fake-not-a-real-key"

MakeService = Callable[..., Awaitable[ImageService]]
DbUrl = Callable[[str], str]

# The PostgreSQL every machine of this project (and CI) runs: trust auth.
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
BACKENDS = ("sqlite", "postgresql")


def postgres_or_skip() -> None:
    try:
        import psycopg
    except ImportError:
        pytest.skip('the PostgreSQL driver is not installed (pip install -e ".[dev]")')
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError as e:
        pytest.skip(f"no PostgreSQL server answers at {POSTGRES} ({str(e).strip().splitlines()[0]}); "
                    "CI starts one (.ci/run)")  # fmt: skip


@pytest.fixture
def backend() -> str:
    """The database backend a test runs on. SQLite, the default; the ledger
    test modules override this fixture to run on both (BACKENDS)."""
    return "sqlite"


@pytest.fixture
def db_url(backend: str, tmp_path: Path) -> Iterator[DbUrl]:
    """`db_url(name)`: a fresh, empty database for this test (the same one
    for the same name): a SQLite file under tmp_path, or a PostgreSQL schema
    of its own (selected through the URL's search_path), dropped afterwards,
    so that tests and xdist workers never see each other's rows."""
    if backend == "sqlite":
        yield lambda name: str(tmp_path / f"{name}.db")
        return
    postgres_or_skip()
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}

        def make(name: str) -> str:
            if name not in urls:
                urls[name] = stack.enter_context(fresh_postgres_schema())
            return urls[name]

        yield make


@contextlib.contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """The URL of an empty PostgreSQL schema of its own (the URL's
    search_path selects it), dropped afterwards."""
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{POSTGRES}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
async def fake_openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


def build_config(overrides: dict[str, Any] | None = None) -> Config:
    """A Config as if a TOML file had set `overrides` ({"limits": {...}})."""
    return config_from_mapping(overrides or {}, source="test-config.toml")


@pytest.fixture
async def make_service(fake_openai: FakeOpenAI, db_url: DbUrl) -> AsyncIterator[MakeService]:
    """`await make_service(limits={...}, db_path=..., clock=..., progress_interval=...)`.

    Without db_path, each service gets a fresh database of its own on the
    test's backend (`db_url`).

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
        service = await ImageService.open(config, str(db_path or db_url(f"test-{len(services)}")), provider, **kwargs)
        services.append(service)
        return service

    yield make
    for service in services:
        await service.close()


@pytest.fixture(autouse=True)
def _quiet_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="imaginebot")
