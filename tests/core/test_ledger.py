"""Limits, budgets and accounting: atomic under concurrency (tasks and OS
processes), refunded after a crash, reset at local midnight, and governed by
admins of the same workspace only."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import signal
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.errors import BudgetExhausted, CoolingDown, InvalidInput, LimitReached, NotPermitted, PolicyBlocked
from core.models import ImageOptions, Usage
from tests.conftest import BACKENDS, DbUrl, MakeService
from tests.core.ledger_worker import open_at_once
from tests.core.scenario import ManualClock, admin_of, job_rows, member, rows, until
from tests.fakes.openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parents[2]
LOW = ImageOptions(quality="low")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return str(request.param)


async def start_worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.core.ledger_worker", *args,
        cwd=REPO, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_line(proc: asyncio.subprocess.Process, *, timeout: float = 30) -> str:
    assert proc.stdout is not None and proc.stderr is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=timeout)
    if not line:
        error = await asyncio.wait_for(proc.stderr.read(), timeout=30)
        raise AssertionError(f"the worker process died:\n{error.decode(errors='replace')}")
    return line.decode().strip()


# --------------------------------------------------------------------------
# atomic reservation
# --------------------------------------------------------------------------


async def test_200_concurrent_requests_get_exactly_the_limit(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(
        limits={"daily_images_per_user": 10, "max_jobs_in_flight_per_user": 1000}, openai={"max_concurrent_calls": 100}
    )
    person = member()
    outcomes = await asyncio.gather(
        *(service.generate(person, f"fox {i % 4}", LOW) for i in range(200)), return_exceptions=True
    )
    kinds = Counter(type(o).__name__ for o in outcomes)
    assert kinds == {"ImageResult": 10, "LimitReached": 190}
    assert len(fake_openai.calls("/images/generations")) == 10
    status = await service.quota(person)
    assert (status.used, status.in_flight, status.remaining) == (10.0, 0, 0.0)
    assert len(await job_rows(service)) == 10  # refused requests leave no rows
    refusal = next(o for o in outcomes if isinstance(o, LimitReached))
    assert "You've used all 10 images of your daily limit. Nothing was charged." in refusal.user_message


async def test_two_processes_never_exceed_a_limit(make_service: MakeService, db_url: DbUrl) -> None:
    await hammer_and_check(make_service, db_url("shared"), processes=2, attempts=400, users=4, limit=5, top_up=True)


async def test_four_processes_on_one_postgresql_never_exceed_a_limit(make_service: MakeService, db_url: DbUrl, backend: str) -> None:
    """4 processes x 2,000 attempts, 20 users at a limit of 5, one PostgreSQL
    database: 0 images over a limit, 0 refunds lost."""
    if backend != "postgresql":
        pytest.skip("the SQLite file serialises every writer; this one is about PostgreSQL's concurrency")
    await hammer_and_check(make_service, db_url("shared"), processes=4, attempts=2000, users=20, limit=5, top_up=False)


async def hammer_and_check(
    make_service: MakeService, db: str, *, processes: int, attempts: int, users: int, limit: int, top_up: bool
) -> None:
    """`processes` OS processes reserve at once on one database, settling two
    of three and refunding the third; then the ledger must hold exactly what
    they report, nobody over the limit, and no refund lost."""
    names = [f"U{i}" for i in range(1, users + 1)]
    workers = [await start_worker("hammer", db, str(limit), str(attempts), *names) for _ in range(processes)]
    try:
        for proc in workers:
            assert await read_line(proc) == "ready"
        for proc in workers:  # let both loose at once
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        # Bounded, generously: thousands of transactions on a busy 2-core machine.
        reports = [json.loads(await read_line(proc, timeout=600)) for proc in workers]
        assert [await proc.wait() for proc in workers] == [0] * processes, [await p.stderr.read() for p in workers if p.stderr]
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()

    assert all(r["refused"] > 0 for r in reports), "each process must have hit the limit for the test to mean anything"
    service = await make_service(db_path=db, limits={"daily_images_per_user": limit})
    jobs = {j["id"]: j for j in await job_rows(service)}
    settled = {job for r in reports for job in r["settled"]}
    refunded = {job for r in reports for job in r["refunded"]}
    assert len(settled) + len(refunded) == len(jobs)
    assert {j for j, row in jobs.items() if row["status"] == "succeeded"} == settled
    assert all(jobs[j]["status"] == "failed" and jobs[j]["units"] == 0 for j in refunded)  # no refund lost
    per_user = Counter(jobs[j]["user_key"] for j in settled)
    assert max(per_user.values()) <= limit  # never over the limit, whatever the interleaving
    # And nothing leaked either: each user can still take exactly what is left.
    for user in names:
        person = member(user=user)
        assert (await service.quota(person)).used == per_user[person.key]
        if not top_up:
            continue
        extra = 0
        for _ in range(limit + 1):  # bounded: a leak fails the assertion below instead of looping on
            try:
                await service.generate(person, "top up", LOW)
            except LimitReached:
                break
            extra += 1
        assert per_user[person.key] + extra == limit


def test_processes_starting_together_on_a_new_database(db_url: DbUrl) -> None:
    """Bot processes (or the bot and a CLI command) that start at the same
    moment on a database that does not exist yet all open it: switching it to
    WAL is a race SQLite answers with "database is locked" instead of waiting;
    creating the tables is one PostgreSQL answers with a duplicate key."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.core.ledger_worker"])
    processes, rounds = 6, 25
    failures: list[str] = []
    for round_ in range(rounds):
        db = db_url(f"new-{round_}")
        barrier, results = context.Barrier(processes), context.Queue()
        procs = [context.Process(target=open_at_once, args=(db, barrier, results)) for _ in range(processes)]
        for proc in procs:
            proc.start()
        outcomes = [results.get(timeout=60) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        failures += [o for o in outcomes if o != "ok"]
    assert failures == []


async def test_crash_recovery_refunds_only_dead_processes(make_service: MakeService, db_url: DbUrl) -> None:
    db = db_url("shared")
    crashed = await start_worker("hold", db, "crashed")
    busy = await start_worker("hold", db, "busy")
    try:
        crashed_job = await read_line(crashed)
        busy_job = await read_line(busy)
        os.kill(crashed.pid, signal.SIGKILL)  # no chance to clean up
        assert await crashed.wait() == -signal.SIGKILL

        service = await make_service(db_path=db)
        assert (await service.quota(member(user="crashed"))).used == 4.0  # still held before recovery
        interrupted = await service.recover()
        assert [j.job_id for j in interrupted] == [crashed_job]
        job = interrupted[0]
        assert (job.requester_key, job.kind, job.prompt) == ("slack:T1:crashed", "generate", "held by crashed")
        assert dict(job.notify) == {"channel": "C9", "user": "crashed"}
        assert job.created_at.tzinfo is not None

        assert (await service.quota(member(user="crashed"))).used == 0
        busy_status = await service.quota(member(user="busy"))
        assert (busy_status.used, busy_status.in_flight) == (4.0, 1)  # a live process keeps its reservation
        states = {r["id"]: (r["status"], r["error_code"], r["units"]) for r in await job_rows(service)}
        assert states == {crashed_job: ("interrupted", "interrupted", 0), busy_job: ("reserved", None, 4.0)}
        assert await service.recover() == []  # refunded once, never twice
        assert busy.returncode is None
    finally:
        for proc in (crashed, busy):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_recover_leaves_this_process_running_jobs_alone(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service()
    task = asyncio.create_task(service.generate(member(), "SLOW:5 fox", LOW))
    await until(lambda: fake_openai.in_flight == 1, "the job is calling the model")
    assert await service.recover() == []
    assert (await service.quota(member())).in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --------------------------------------------------------------------------
# the day, in the configured time zone
# --------------------------------------------------------------------------


async def test_day_rolls_over_at_local_midnight(make_service: MakeService) -> None:
    tokyo = ZoneInfo("Asia/Tokyo")
    # 23:50 in Tokyo is 14:50 UTC: the UTC date does not change at Tokyo's midnight.
    clock = ManualClock(datetime(2026, 5, 1, 23, 50, tzinfo=tokyo).astimezone(timezone.utc))
    service = await make_service(clock=clock, limits={"timezone": "Asia/Tokyo", "daily_images_per_user": 2})
    person = member()
    await service.generate(person, "fox", LOW)
    await service.generate(person, "fox", LOW)
    with pytest.raises(LimitReached) as info:
        await service.generate(person, "fox", LOW)
    midnight = datetime(2026, 5, 2, 0, 0, tzinfo=tokyo)
    assert info.value.resets_at == midnight
    assert "Your limit resets at 00:00 JST (in 10 min)." in info.value.user_message
    status = await service.quota(person)
    assert (status.used, status.resets_at) == (2.0, midnight)
    assert status.resets_at.utcoffset() == tokyo.utcoffset(midnight)

    clock.advance(minutes=15)  # 00:05 in Tokyo, still 1 May in UTC
    status = await service.quota(person)
    assert (status.used, status.resets_at) == (0.0, datetime(2026, 5, 3, 0, 0, tzinfo=tokyo))
    await service.generate(person, "fox", LOW)
    assert [r["day"] for r in await job_rows(service)] == ["2026-05-01", "2026-05-01", "2026-05-02"]


async def test_reset_time_across_a_daylight_saving_change(make_service: MakeService) -> None:
    new_york = ZoneInfo("America/New_York")
    # 01:30 EST on 8 March 2026, half an hour before the clocks jump from 02:00 to 03:00.
    clock = ManualClock(datetime(2026, 3, 8, 6, 30, tzinfo=timezone.utc))
    service = await make_service(clock=clock, limits={"timezone": "America/New_York"})
    status = await service.quota(member())
    assert status.resets_at == datetime(2026, 3, 9, 0, 0, tzinfo=new_york)
    assert status.resets_at.astimezone(timezone.utc) == datetime(2026, 3, 9, 4, 0, tzinfo=timezone.utc)  # EDT, not EST
    assert service.ledger.today() == "2026-03-08"


# --------------------------------------------------------------------------
# budgets
# --------------------------------------------------------------------------


async def test_workspace_budget(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    # One medium 1024² image costs about $0.053; the reservation estimate is a bit higher.
    service = await make_service(limits={"daily_budget_usd_per_workspace": 0.08})
    await service.generate(member(user="U1"), "fox", ImageOptions())
    with pytest.raises(BudgetExhausted) as info:
        await service.generate(member(user="U2"), "fox", ImageOptions())
    assert "Today's image budget for this workspace's spending has been reached" in info.value.user_message
    assert "Nothing was charged" in info.value.user_message and info.value.resets_at.hour == 0
    assert len(fake_openai.requests) == 1
    assert (await service.quota(member(user="U2"))).used == 0
    await service.generate(member(user="U1", workspace="T2"), "fox", ImageOptions())  # another workspace's own budget
    status = await service.quota(member(user="U2"))
    assert status.workspace_budget_usd == 0.08
    assert status.workspace_spent_usd == pytest.approx((1 * 5.0 + 1756 * 30.0) / 1e6)


async def test_workspace_budget_set_by_an_admin(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service()
    await service.set_workspace_budget(admin_of("T1"), 0.01)
    with pytest.raises(BudgetExhausted):
        await service.generate(member(), "fox", ImageOptions())
    assert fake_openai.requests == []
    await service.generate(member(workspace="T2"), "fox", ImageOptions())  # no budget there
    await service.set_workspace_budget(admin_of("T1"), 0)  # 0 = no budget
    await service.generate(member(), "fox", ImageOptions())


async def test_global_budget(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(limits={"daily_budget_usd_total": 0.08})
    await service.generate(member(workspace="T1"), "fox", ImageOptions())
    with pytest.raises(BudgetExhausted) as info:
        await service.generate(member(workspace="T2", platform="discord"), "fox", ImageOptions())
    assert "the bot's spending" in info.value.user_message
    assert len(fake_openai.requests) == 1


# --------------------------------------------------------------------------
# who gets how much
# --------------------------------------------------------------------------


async def test_user_override_beats_role_beats_default(make_service: MakeService) -> None:
    service = await make_service(limits={"daily_images_per_user": 2, "roles": {"Patreon": 6}})
    admin = admin_of("G1", platform="discord")
    plain = member(user="A", workspace="G1", platform="discord")
    patron = member(user="B", workspace="G1", platform="discord", roles=("Patreon",))
    both = member(user="C", workspace="G1", platform="discord", roles=("555", "Patreon"))
    assert [(await service.quota(p)).limit for p in (plain, patron, both)] == [2, 6, 6]

    await service.set_role_limit(admin, "555", 8)  # by role id, in this server only
    await service.set_role_limit(admin_of("G2", platform="discord"), "Patreon", 50)  # another server's: no effect here
    assert [(await service.quota(p)).limit for p in (plain, patron, both)] == [2, 6, 8]  # the most generous role wins

    await service.set_user_limit(admin, both.key, 1)  # a per-user limit wins, even a smaller one
    assert (await service.quota(both)).limit == 1
    await service.generate(both, "fox", LOW)
    with pytest.raises(LimitReached):
        await service.generate(both, "fox", LOW)
    await service.set_user_limit(admin, both.key, None)  # back to the role's
    assert (await service.quota(both)).limit == 8

    await service.set_role_limit(admin, "555", None)
    assert (await service.quota(both)).limit == 6


async def test_zero_limit_means_not_enabled(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(limits={"daily_images_per_user": 0})
    with pytest.raises(LimitReached) as info:
        await service.generate(member(), "fox", LOW)
    assert "isn't enabled for you here" in info.value.user_message
    assert fake_openai.requests == []


async def test_quality_weights_count_against_the_limit(make_service: MakeService) -> None:
    service = await make_service(limits={"daily_images_per_user": 10})
    await service.generate(member(), "fox", ImageOptions(quality="high", n=2))  # 2 × 4
    with pytest.raises(LimitReached) as info:
        await service.generate(member(), "fox", ImageOptions(quality="high"))
    assert "That request needs 4 images of your daily limit, but you have 2 images left." in info.value.user_message
    await service.generate(member(), "fox", ImageOptions(quality="low", n=2))
    assert (await service.quota(member())).used == 10.0


# --------------------------------------------------------------------------
# admin actions
# --------------------------------------------------------------------------


async def test_admin_actions_need_an_admin(make_service: MakeService) -> None:
    service = await make_service()
    for platform, says in (("slack", "Only workspace admins can do that."), ("discord", "Manage Server")):
        someone = member(user="U9", platform=platform)
        target = member(user="U1", platform=platform).key
        for action in (
            service.set_user_limit(someone, target, 100),
            service.set_role_limit(someone, "Patreon", 100),
            service.reset_user(someone, target),
            service.set_workspace_budget(someone, 100.0),
            service.quota_for(someone, target),
        ):
            with pytest.raises(NotPermitted) as info:
                await action
            assert says in info.value.user_message
    for table in ("user_limits", "role_limits", "budgets", "resets"):
        assert await rows(service, f"SELECT * FROM {table}") == []


async def test_admins_act_only_inside_their_workspace(make_service: MakeService) -> None:
    service = await make_service()
    admin = admin_of("T1")
    for target in ("slack:T2:U1", "discord:T1:U1", "slack:T1", "garbage"):
        with pytest.raises(InvalidInput) as info:
            await service.set_user_limit(admin, target, 100)
        assert "only manage members of this workspace" in info.value.user_message
        with pytest.raises(InvalidInput):
            await service.reset_user(admin, target)
    with pytest.raises(InvalidInput):
        await service.set_user_limit(admin, "slack:T1:U1", -1)
    with pytest.raises(InvalidInput):
        await service.set_workspace_budget(admin, -5)
    assert await rows(service, "SELECT * FROM user_limits") == []
    await service.set_user_limit(admin, "slack:T1:U1", 3)
    assert (await service.quota_for(admin, "slack:T1:U1")).limit == 3
    (row,) = await rows(service, "SELECT * FROM user_limits")
    assert (row["user_key"], row["daily"], row["set_by"]) == ("slack:T1:U1", 3, admin.key)


async def test_reset_user_forgives_today_and_lifts_a_cooldown(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(limits={"daily_images_per_user": 3, "policy_blocks_before_cooldown": 1})
    person, admin = member(), admin_of("T1")
    await service.generate(person, "fox", LOW)
    await service.generate(person, "fox", LOW)
    with pytest.raises(PolicyBlocked):  # the block is refunded, but pauses the user
        await service.generate(person, "BLOCK_INPUT fox", LOW)
    with pytest.raises(CoolingDown):
        await service.generate(person, "fox", LOW)
    assert (await service.quota(person)).used == 2.0
    spent_before = sum(r["usd"] for r in await job_rows(service))

    await service.reset_user(admin, person.key)
    status = await service.quota(person)
    assert (status.used, status.cooldown_until) == (0.0, None)
    for _ in range(3):  # the whole day's limit again
        await service.generate(person, "fox", LOW)
    with pytest.raises(LimitReached):
        await service.generate(person, "fox", LOW)
    assert sum(r["usd"] for r in await job_rows(service)) > spent_before  # costs stay on the books
    (reset,) = await rows(service, "SELECT * FROM resets")
    assert (reset["user_key"], reset["set_by"]) == (person.key, admin.key)


# --------------------------------------------------------------------------
# idempotence
# --------------------------------------------------------------------------


async def test_claim_event_dedupes(make_service: MakeService) -> None:
    service = await make_service()
    assert await service.claim_event("slack:Ev123") is True
    assert await service.claim_event("slack:Ev123") is False
    assert await service.claim_event("slack:Ev124") is True


async def test_refund_happens_once(make_service: MakeService) -> None:
    service = await make_service()
    ledger, person = service.ledger, member()

    def reserve() -> Any:
        return ledger.reserve_sync(
            person, kind="generate", prompt="p", options=ImageOptions(quality="high"), model="gpt-image-2", units=4.0, usd=0.3
        )

    first = await service.store.run(reserve)
    assert (await service.quota(person)).used == 4.0
    assert await service.store.run(lambda: ledger.refund_sync(first.job_id)) is True
    assert await service.store.run(lambda: ledger.refund_sync(first.job_id, error_code="again")) is False
    # A late settlement of a refunded job charges nothing either.
    await service.store.run(
        lambda: ledger.settle_sync(
            first, usage=Usage(output_image_tokens=7024), cost_usd=0.21, images=1, model="gpt-image-2", model_seconds=1, attempts=1
        )
    )
    assert (await service.quota(person)).used == 0

    second = await service.store.run(reserve)
    await service.store.run(
        lambda: ledger.settle_sync(
            second, usage=Usage(output_image_tokens=7024), cost_usd=0.21, images=1, model="gpt-image-2", model_seconds=1, attempts=1
        )
    )
    assert await service.store.run(lambda: ledger.refund_sync(second.job_id)) is False  # a settled job stays charged
    assert (await service.quota(person)).used == 4.0
    states = {r["id"]: (r["status"], r["units"], r["error_code"]) for r in await job_rows(service)}
    assert states == {first.job_id: ("failed", 0, None), second.job_id: ("succeeded", 4.0, None)}


async def test_fewer_images_than_asked_cost_fewer_units(make_service: MakeService) -> None:
    service = await make_service()
    ledger, person = service.ledger, member()
    reservation = await service.store.run(
        lambda: ledger.reserve_sync(
            person, kind="generate", prompt="p", options=ImageOptions(quality="high", n=2), model="gpt-image-2", units=8.0, usd=0.5
        )
    )
    await service.store.run(
        lambda: ledger.settle_sync(
            reservation, usage=Usage(output_image_tokens=7024), cost_usd=0.21, images=1, model="gpt-image-2",
            model_seconds=1, attempts=1,
        )
    )
    assert (await service.quota(person)).used == 4.0




async def test_two_live_services_in_one_process_never_refund_each_other(make_service: MakeService, fake_openai: FakeOpenAI, db_url: DbUrl) -> None:
    """Same pid, same database: the second one's recover() must not take the
    first for a previous incarnation of itself."""
    db = db_url("shared")
    first = await make_service(db_path=db)
    second = await make_service(db_path=db)
    fake_openai.latency = 1.0
    job = asyncio.create_task(first.generate(member("U9"), "a slow fox", ImageOptions()))
    await until(lambda: fake_openai.in_flight == 1, "the first service's job is calling the model")
    assert [r["status"] for r in await job_rows(first)] == ["reserved"]
    assert await second.recover() == []
    result = await job
    assert len(result.images) == 1
    assert [r["status"] for r in await job_rows(first)] == ["succeeded"]


async def test_how_to_reach_the_user_is_forgotten_once_the_job_ends(make_service: MakeService) -> None:
    """`notify` can hold a Discord interaction token: it is kept only while the
    job may still need announcing (SPEC §6: no tokens in the database)."""
    service = await make_service()
    secret = {"discord_interaction_token": "fake-interaction-token-abc"}
    await service.generate(member("U1"), "a fox", ImageOptions(), notify=secret)
    with pytest.raises(PolicyBlocked):
        await service.generate(member("U2"), "BLOCK_INPUT x", ImageOptions(), notify=secret)
    with pytest.raises(InvalidInput):
        await service.generate(member("U3"), "x", ImageOptions(size="13x13"), notify=secret)
    stored = [r["notify"] for r in await rows(service, "SELECT notify FROM jobs")]
    assert len(stored) == 2 and all(n == "{}" for n in stored), stored
