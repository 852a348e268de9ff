"""People and probes shared by the core tests: requesters, a look into the
jobs table, a recorder for the provider's retry waits, and a clock the test
moves by hand."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

from core.models import Requester
from core.service import ImageService


async def until(condition: Any, what: str) -> None:
    """Let the event loop run until `condition()` holds (bounded, so a bug
    fails the test instead of hanging it; not a timing assertion)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


def member(user: str = "U1", workspace: str = "T1", platform: str = "slack", **kwargs: Any) -> Requester:
    return Requester(platform=platform, workspace=workspace, user=user, channel="C1", **kwargs)  # type: ignore[arg-type]


def admin_of(workspace: str = "T1", platform: str = "slack", user: str = "UADMIN") -> Requester:
    return member(user=user, workspace=workspace, platform=platform, is_admin=True)


async def job_rows(service: ImageService, where: str = "TRUE", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    sql = f"SELECT * FROM jobs WHERE {where} ORDER BY created_at"
    return await service.store.run(lambda: service.store.query(sql, params))


async def rows(service: ImageService, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return await service.store.run(lambda: service.store.query(sql, params))


async def assert_nothing_held(service: ImageService, requester: Requester) -> None:
    """The requester's quota is untouched and no job row holds units or money."""
    status = await service.quota(requester)
    assert status.used == 0, f"quota used is {status.used}, expected 0"
    assert status.in_flight == 0
    holding = await job_rows(service, "units != 0 OR usd != 0 OR status = 'reserved'")
    assert holding == [], f"job rows still hold quota: {holding}"


class SleepRecorder:
    """Stands in for asyncio.sleep in the provider: records the waits asked
    for and returns at once, so retry tests neither wait nor depend on time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class ManualClock:
    """An aware `now` that only moves when the test says so."""

    def __init__(self, start: datetime) -> None:
        assert start.tzinfo is not None
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)
