"""A process sharing the database dies (kill -9, a lost host) while it holds
reservations: a live process notices from the heartbeat, without waiting for
anyone to start, refunds those jobs exactly once, and hands them over to be
announced to their users."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from core.config import config_from_mapping
from core.ledger import Ledger
from core.models import ImageOptions, InterruptedJob
from core.service import ImageService
from core.store import store_for
from tests.conftest import BACKENDS, DbUrl, MakeService
from tests.core.scenario import job_rows, member, rows, until
from tests.core.test_ledger import read_line, start_worker

TIMEOUT = {"server": {"heartbeat_timeout_seconds": 1.0}}  # short, so the test waits little


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return str(request.param)


class Announced:
    """What a survivor handed over to be told (the runner passes it to the adapters)."""

    def __init__(self) -> None:
        self.jobs: list[InterruptedJob] = []

    async def __call__(self, jobs: list[InterruptedJob]) -> None:
        self.jobs.extend(jobs)


async def beats(service: ImageService) -> float:
    found = await rows(service, "SELECT heartbeat_at FROM workers WHERE token = ?", (service.ledger.worker,))
    return float(found[0]["heartbeat_at"]) if found else 0.0


async def until_beaten(service: ImageService, times: int) -> None:
    """Let `service` beat its heart (and so look for dead processes) `times` more times."""
    for _ in range(times):
        before = await beats(service)
        for _ in range(400):
            if await beats(service) > before:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the survivor stopped beating its heart")


async def test_a_survivor_refunds_a_killed_process_jobs_and_hands_them_over_without_a_restart(
    make_service: MakeService, db_url: DbUrl
) -> None:
    db = db_url("shared")
    survivor = await make_service(db_path=db, **TIMEOUT)
    await survivor.recover()
    announced = Announced()
    survivor.announce_recovered(announced)

    doomed = await start_worker("hold", db, "doomed")
    try:
        job_id = await read_line(doomed)
        assert (await survivor.quota(member(user="doomed"))).in_flight == 1
        os.kill(doomed.pid, signal.SIGKILL)
        assert await doomed.wait() == -signal.SIGKILL

        await until(lambda: announced.jobs, "the survivor to hand the dead process's job over")
        [job] = announced.jobs
        assert (job.job_id, job.requester_key, dict(job.notify)) == (job_id, "slack:T1:doomed", {"channel": "C9", "user": "doomed"})
        [row] = await job_rows(survivor)
        assert (row["status"], row["units"], row["usd"]) == ("interrupted", 0, 0)
        status = await survivor.quota(member(user="doomed"))
        assert (status.used, status.in_flight) == (0, 0)  # the user can go again
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()


async def test_two_survivors_refund_and_announce_each_job_exactly_once(make_service: MakeService, db_url: DbUrl) -> None:
    db = db_url("shared")
    survivors = [await make_service(db_path=db, **TIMEOUT) for _ in range(2)]
    announced = [Announced(), Announced()]
    for survivor, hook in zip(survivors, announced):
        await survivor.recover()
        survivor.announce_recovered(hook)

    doomed = [await start_worker("hold", db, f"doomed{i}") for i in range(3)]
    try:
        job_ids = {await read_line(proc) for proc in doomed}
        for proc in doomed:
            proc.kill()
            await proc.wait()
        await until(lambda: len(announced[0].jobs) + len(announced[1].jobs) >= 3, "all three jobs handed over")
        for survivor in survivors:
            await until_beaten(survivor, 2)  # each looked again, after the jobs were refunded
        handed = [job.job_id for hook in announced for job in hook.jobs]
        assert sorted(handed) == sorted(job_ids), handed
    finally:
        for proc in doomed:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def other_host(db: str, user: str, *, pid: int) -> tuple[Ledger, str]:
    """A process on another host (its pid means nothing here) holding one job."""
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config_from_mapping({}))
    ledger.host, ledger.pid = f"host-of-{user}", pid
    ledger.heartbeat_sync()
    reservation = ledger.reserve_sync(
        member(user=user), kind="generate", prompt="far away", options=ImageOptions(), model="gpt-image-2", units=1.0, usd=0.05
    )
    return ledger, reservation.job_id


async def test_on_another_host_only_the_heartbeat_age_decides(make_service: MakeService, db_url: DbUrl) -> None:
    db = db_url("shared")
    survivor = await make_service(db_path=db, **TIMEOUT)
    await survivor.recover()
    announced = Announced()
    survivor.announce_recovered(announced)

    # One host went dark: its process beat once and never again. Its pid is alive *here*
    # (it is ours), which must not count for a process on another host.
    _, lost_job = await asyncio.to_thread(other_host, db, "lost", pid=os.getpid())
    # Another host is fine: it keeps beating, though its pid is dead *here*.
    alive, alive_job = await asyncio.to_thread(other_host, db, "alive", pid=2**22 + 1)

    beat_on = True

    async def keep_beating() -> None:
        while beat_on:
            await asyncio.to_thread(alive.heartbeat_sync)
            await asyncio.sleep(0.05)

    beating = asyncio.create_task(keep_beating())
    try:
        await until(lambda: announced.jobs, "the lost host's job to be handed over")
        await until_beaten(survivor, 2)
        assert [job.job_id for job in announced.jobs] == [lost_job]
        states: dict[str, Any] = {r["id"]: r["status"] for r in await job_rows(survivor)}
        assert states == {lost_job: "interrupted", alive_job: "reserved"}
    finally:
        # Stop between beats: cancelling would leave a heartbeat running in its
        # thread on the connection closed below (a crash inside SQLite).
        beat_on = False
        await beating
        alive.store.close_sync()


async def test_without_anyone_to_tell_the_users_a_process_refunds_nobody_else_jobs(
    make_service: MakeService, db_url: DbUrl
) -> None:
    """A CLI command (no adapters, nobody to announce to) only beats its heart:
    a dead process's jobs wait for a survivor that can tell their users."""
    db = db_url("shared")
    cli = await make_service(db_path=db, **TIMEOUT)
    doomed = await start_worker("hold", db, "doomed")
    try:
        await read_line(doomed)
        doomed.kill()
        await doomed.wait()
        await until_beaten(cli, 3)
        assert [r["status"] for r in await job_rows(cli)] == ["reserved"]
    finally:
        if doomed.returncode is None:
            doomed.kill()
            await doomed.wait()
