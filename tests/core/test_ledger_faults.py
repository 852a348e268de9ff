"""The disk fills up (or the database file goes) while a paid call runs.

What was paid for is still delivered; the user is told only what is true;
every ledger write on the paid path that failed (mark_started, settle,
refund, undelivered, a policy block) is kept, in order, and retried in the
background until it lands, with a last attempt at shutdown. A reservation
that fails is refused before any money is spent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from core.errors import LedgerUnavailable, PolicyBlocked, ServiceUnavailable
from core.models import ImageOptions
from core.service import ImageService
from tests.conftest import MakeService
from tests.core.disk_faults import LONG_PROMPT, Disk, Tmpfs, delete_database, disk, read_job  # noqa: F401 - disk is a fixture
from tests.core.scenario import member, rows, until
from tests.fakes.openai_server import FakeOpenAI

PERSON = member()
LOW = ImageOptions(quality="low")
QUICK_RETRIES = (0.01, 0.05)  # the background retry's first and longest wait, for tests


async def open_on(make_service: MakeService, disk: Disk, **overrides: object) -> ImageService:
    service = await make_service(db_path=disk.db_path, **overrides)
    service.ledger_writes.waits = QUICK_RETRIES
    return service


async def during_the_call(fake_openai: FakeOpenAI, service: ImageService, disk: Disk, prompt: str) -> asyncio.Task[object]:
    """Start a job and fill the disk while its model call is in flight (after
    the reservation and mark_started landed, before the settlement)."""
    fake_openai.gate = asyncio.Event()
    task: asyncio.Task[object] = asyncio.create_task(service.generate(PERSON, prompt, LOW))
    await until(lambda: fake_openai.in_flight == 1, "the model call is in flight")
    await disk.fill(service)
    fake_openai.gate.set()
    return task


async def test_settlement_that_cannot_be_written_still_delivers_and_lands_later(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk)
    result = await (await during_the_call(fake_openai, service, disk, LONG_PROMPT))

    assert len(result.images) == 1 and result.cost_usd > 0  # delivered: it was paid for
    assert read_job(disk.db_path, result.job_id)["status"] == "reserved"  # the quota stays held meanwhile
    assert not await service.database_ok()

    await disk.free(service)
    await until(lambda: not service.ledger_writes.pending, "the settlement to land")
    job = read_job(disk.db_path, result.job_id)
    assert job["status"] == "succeeded"
    assert job["units"] == 1.0 and job["cost_usd"] == pytest.approx(result.cost_usd) and job["usd"] == pytest.approx(result.cost_usd)
    assert await service.database_ok()
    assert (await service.quota(PERSON)).used == 1.0


async def test_mark_started_that_cannot_be_written_does_not_stop_the_job(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk, openai={"max_concurrent_calls": 1})
    async with service.pacer.slot():  # the job waits for a slot after its reservation landed
        task = asyncio.create_task(service.generate(PERSON, LONG_PROMPT, LOW))
        await until(lambda: service.pacer.waiting == 1, "the job is queued")
        await disk.fill(service)
    result = await task
    assert len(result.images) == 1

    await disk.free(service)
    await until(lambda: read_job(disk.db_path, result.job_id)["status"] == "succeeded", "both writes to land, in order")
    job = read_job(disk.db_path, result.job_id)
    assert job["started_at"] is not None and job["units"] == 1.0


async def test_refund_that_cannot_be_written_is_retried_and_the_user_told_the_truth(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk, openai={"server_error_retries": 0})
    task = await during_the_call(fake_openai, service, disk, "SERVER_ERROR " + LONG_PROMPT)
    with pytest.raises(ServiceUnavailable) as info:
        await task
    assert "Nothing was charged" in info.value.user_message  # true: the refund is on its way
    job_id = info.value.job_id
    assert job_id is not None
    assert read_job(disk.db_path, job_id)["status"] == "reserved"

    await disk.free(service)
    await until(lambda: read_job(disk.db_path, job_id)["status"] == "failed", "the refund to land")
    job = read_job(disk.db_path, job_id)
    assert (job["units"], job["usd"], job["error_code"]) == (0, 0, "unavailable")
    assert (await service.quota(PERSON)).used == 0


async def test_policy_block_that_cannot_be_written_is_retried(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk)
    task = await during_the_call(fake_openai, service, disk, "BLOCK_INPUT " + LONG_PROMPT)
    with pytest.raises(PolicyBlocked) as info:
        await task
    assert "Nothing was charged" in info.value.user_message
    job_id = info.value.job_id
    assert job_id is not None

    await disk.free(service)
    await until(lambda: read_job(disk.db_path, job_id)["status"] == "blocked", "the block to be recorded")
    assert read_job(disk.db_path, job_id)["units"] == 0
    assert len(await rows(service, "SELECT * FROM policy_blocks WHERE job_id = ?", (job_id,))) == 1


async def test_undelivered_that_cannot_be_written_still_gives_the_images_back(
    disk: Disk, make_service: MakeService
) -> None:
    service = await open_on(make_service, disk)
    result = await service.generate(PERSON, LONG_PROMPT, LOW)
    await disk.fill(service)
    assert await service.delivery_failed(result.job_id) is True  # what the adapter tells the user

    assert read_job(disk.db_path, result.job_id)["status"] == "succeeded"
    await disk.free(service)
    await until(lambda: read_job(disk.db_path, result.job_id)["status"] == "undelivered", "the give-back to land")
    job = read_job(disk.db_path, result.job_id)
    assert job["units"] == 0 and job["cost_usd"] == pytest.approx(result.cost_usd)  # the cost was really spent


async def test_undelivered_after_a_pending_settlement_lands_after_it(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk)
    result = await (await during_the_call(fake_openai, service, disk, LONG_PROMPT))
    assert await service.delivery_failed(result.job_id) is True

    await disk.free(service)
    await until(lambda: read_job(disk.db_path, result.job_id)["status"] == "undelivered", "settle, then give back")
    job = read_job(disk.db_path, result.job_id)
    assert job["units"] == 0 and job["cost_usd"] == pytest.approx(result.cost_usd)


async def test_a_reservation_that_cannot_be_written_is_refused_before_any_money_is_spent(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await open_on(make_service, disk)
    await disk.fill(service)
    with pytest.raises(LedgerUnavailable) as info:
        await service.generate(PERSON, LONG_PROMPT, LOW)
    assert "Nothing was charged" in info.value.user_message
    assert fake_openai.requests == []

    await disk.free(service)
    assert (await service.generate(PERSON, LONG_PROMPT, LOW)).images  # and it works again once there is room


async def test_shutdown_makes_a_last_attempt(disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await open_on(make_service, disk)
    service.ledger_writes.waits = (3600.0, 3600.0)  # the background retry would not come round again
    result = await (await during_the_call(fake_openai, service, disk, LONG_PROMPT))
    await disk.free(service)
    await service.close()
    assert read_job(disk.db_path, result.job_id)["status"] == "succeeded"


async def test_dying_with_a_settlement_pending_leaves_a_consistent_ledger(
    disk: Disk, make_service: MakeService, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """The process stops while the disk is still full: its last attempt fails
    and says so, naming the job and its cost; the next start refunds the
    reservation like any other a dead process left behind."""
    service = await open_on(make_service, disk)
    result = await (await during_the_call(fake_openai, service, disk, LONG_PROMPT))
    with caplog.at_level(logging.ERROR, logger="imaginebot"):
        await service.close()
    assert any(result.job_id in r.getMessage() and "settle" in r.getMessage() for r in caplog.records), caplog.text
    if isinstance(disk, Tmpfs):  # (the page cap went with the closed connection)
        await disk.free(service)

    restarted = await make_service(db_path=disk.db_path)
    (job,) = await restarted.recover()
    assert job.job_id == result.job_id
    row = read_job(disk.db_path, result.job_id)
    assert (row["status"], row["units"], row["usd"]) == ("interrupted", 0, 0)


async def test_a_deleted_database_file_refuses_new_jobs_and_keeps_what_was_paid_for(
    make_service: MakeService, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    db = tmp_path / "ledger.db"
    service = await make_service(db_path=db)
    service.ledger_writes.waits = QUICK_RETRIES
    fake_openai.gate = asyncio.Event()
    task = asyncio.create_task(service.generate(PERSON, "a fox", LOW))
    await until(lambda: fake_openai.in_flight == 1, "the model call is in flight")
    delete_database(db)
    fake_openai.gate.set()
    result = await task
    assert len(result.images) == 1  # paid for, so delivered
    assert not await service.database_ok()
    with pytest.raises(LedgerUnavailable):
        await service.generate(member("U2"), "a fox", LOW)
    assert len(fake_openai.requests) == 1  # nothing more spent on a ledger that can't record it
