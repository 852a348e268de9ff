"""Relax mode in the core, on SQLite and PostgreSQL: the real SDK against the
fake Batch API, the ledger's half price and separate allowance, cancel,
failed and expired lines, and delivery exactly once across a restart.

A recording courier stands in for the chat platform here; the Slack and
Discord couriers are tested through their adapters (tests/bots/*/test_relax.py).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any, Mapping

import pytest

from core.errors import InvalidInput, LimitReached
from core.models import ImageOptions, ImageResult
from core.relax import CLAIM_SECONDS, CourierFailed
from tests.conftest import BACKENDS, MakeService
from tests.core.scenario import ManualClock, member, rows
from tests.fakes.openai_server import FakeOpenAI

RELAX = {"relax": {"flush_seconds": 60, "poll_seconds": 60}}
REACH = {"platform": "slack", "channel": "C1", "user": "U1"}


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return str(request.param)


class RecordingCourier:
    """A platform that records what it was asked to post and tell."""

    ready = True

    def __init__(self) -> None:
        self.posted: list[tuple[Mapping[str, Any], ImageResult]] = []
        self.told: list[tuple[Mapping[str, Any], str]] = []
        self.refuse = False
        self.hang: asyncio.Event | None = None

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        if self.hang is not None:
            await self.hang.wait()
        if self.refuse:
            raise CourierFailed("channel gone and no DM")
        self.posted.append((reach, result))

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        self.told.append((reach, text))
        return True


async def relax_rows(service: Any) -> list[dict[str, Any]]:
    return await rows(service, "SELECT * FROM relax_jobs ORDER BY created_at")


async def test_a_relax_job_is_batched_settled_at_half_price_and_delivered(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(**RELAX)
    courier = RecordingCourier()
    service.relax.couriers["slack"] = courier
    options = ImageOptions(quality="high", size="1536x1024", n=2)

    ticket = await service.relax.submit(member(), "a quiet harbor", options, REACH)
    assert "relax" in ticket.message.lower() and "cancel" in ticket.message.lower()
    await service.relax.run_once()
    assert fake_openai.calls("/batches") == []  # not due yet: the flush waits for flush_seconds
    fake_openai.batch_delay = 3600  # OpenAI takes its time
    await service.relax.run_once(force=True)  # due (as after flush_seconds)
    (upload,) = fake_openai.calls("/files")
    assert upload.form["purpose"] == "batch" and upload.files[0].filename.endswith(".jsonl")
    (create,) = fake_openai.calls("/batches")
    assert create.json == {"input_file_id": upload.files and fake_openai.batches[next(iter(fake_openai.batches))].input_file_id,
                           "endpoint": "/v1/images/generations", "completion_window": "24h",
                           "metadata": create.json["metadata"]}  # fmt: skip
    batch = next(iter(fake_openai.batches.values()))
    (line,) = batch.lines
    assert line["custom_id"] == ticket.job_id and line["body"]["prompt"] == "a quiet harbor"
    assert (line["body"]["quality"], line["body"]["size"], line["body"]["n"]) == ("high", "1536x1024", 2)
    assert courier.posted == []  # polled: still in progress
    page = service.metrics_page()[0].decode()
    assert "imaginebot_relax_batches_pending 1.0" in page and "imaginebot_relax_jobs_in_batches 1.0" in page
    assert 'imaginebot_relax_jobs_total{event="queued",platform="slack"} 1.0' in page

    batch.ready_at = 0  # the batch completes
    await service.relax.run_once(force=True)  # the poll finds it completed, streams the output, settles, delivers
    ((reach, result),) = courier.posted
    assert reach == REACH and result.job_id == ticket.job_id and len(result.images) == 2
    assert all(image.data.startswith(b"\x89PNG") for image in result.images)

    # Exactly half the fast price of the same usage, from the line's own usage.
    fast = await service.generate(member("U2"), "a quiet harbor", options)
    assert fast.usage == result.usage
    (job,) = await rows(service, "SELECT * FROM jobs WHERE id = ?", (ticket.job_id,))
    assert job["status"] == "succeeded" and job["cost_usd"] == fast.cost_usd / 2 == result.cost_usd
    assert job["output_image_tokens"] == batch.output_lines[0]["usage"]["output_tokens"]
    (relax_row,) = await relax_rows(service)
    assert relax_row["state"] == "delivered" and relax_row["reach"] == "{}"

    await service.relax.run_once(force=True)  # nothing more: delivered once
    assert len(courier.posted) == 1
    page = service.metrics_page()[0].decode()
    assert "imaginebot_relax_batches_pending 0.0" in page
    assert 'imaginebot_relax_jobs_total{event="delivered",platform="slack"} 1.0' in page


async def test_the_relax_allowance_is_separate_from_the_fast_one(make_service: MakeService) -> None:
    service = await make_service(limits={"daily_images_per_user": 1}, relax={"daily_images_per_user": 2})
    await service.generate(member(), "fast one", ImageOptions(quality="low"))
    with pytest.raises(LimitReached):
        await service.generate(member(), "fast two", ImageOptions(quality="low"))
    # The fast limit is spent; relax still has its own two.
    await service.relax.submit(member(), "relax one", ImageOptions(quality="low"), REACH)
    await service.relax.submit(member(), "relax two", ImageOptions(quality="low"), REACH)
    with pytest.raises(LimitReached) as refused:
        await service.relax.submit(member(), "relax three", ImageOptions(quality="low"), REACH)
    assert "relax images" in refused.value.user_message and "Nothing was charged" in refused.value.user_message
    assert len(await relax_rows(service)) == 2
    quota = await service.quota(member())
    assert quota.used == 1  # relax jobs take nothing from the fast allowance


async def test_relax_off_or_an_edit_is_refused_before_anything_is_charged(make_service: MakeService) -> None:
    service = await make_service(relax={"enabled": False})
    with pytest.raises(InvalidInput) as refused:
        await service.relax.submit(member(), "a harbor", ImageOptions(), REACH)
    assert "turned off" in refused.value.user_message
    assert await rows(service, "SELECT * FROM jobs") == []


async def test_cancel_before_submission_refunds_and_after_it_is_too_late(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(**RELAX)
    service.relax.couriers["slack"] = RecordingCourier()
    first = await service.relax.submit(member(), "first", ImageOptions(), REACH)
    assert await service.relax.cancel(first.job_id, member("U2")) == "not_yours"
    assert await service.relax.cancel(first.job_id, member()) == "cancelled"
    assert await service.relax.cancel(first.job_id, member()) == "gone"
    (job,) = await rows(service, "SELECT * FROM jobs WHERE id = ?", (first.job_id,))
    assert (job["status"], job["units"], job["usd"], job["error_code"]) == ("failed", 0, 0, "cancelled")
    assert await service.store.run(service.ledger.relax_used_sync, member().key) == 0

    second = await service.relax.submit(member(), "second", ImageOptions(), REACH)
    fake_openai.batch_delay = 3600
    await service.relax.run_once(force=True)
    assert await service.relax.cancel(second.job_id, member()) == "too_late"
    (batch,) = fake_openai.batches.values()
    assert [line["custom_id"] for line in batch.lines] == [second.job_id]  # the cancelled one never went out


async def test_a_blocked_line_is_refunded_and_told_privately_while_its_batch_mates_are_delivered(
    make_service: MakeService, fake_openai: FakeOpenAI
) -> None:
    service = await make_service(**RELAX)
    courier = RecordingCourier()
    service.relax.couriers["slack"] = courier
    good = await service.relax.submit(member("U1"), "a calm lake", ImageOptions(), {**REACH, "user": "U1"})
    bad = await service.relax.submit(member("U2"), "BLOCK_INPUT a lake", ImageOptions(), {**REACH, "user": "U2"})
    await service.relax.run_once(force=True)
    assert len(fake_openai.batches) == 1  # both in one batch
    await service.relax.run_once(force=True)

    assert [r.job_id for _, r in courier.posted] == [good.job_id]
    ((reach, text),) = courier.told
    assert reach["user"] == "U2" and "prompt" in text.lower() and "not made" in text
    (job,) = await rows(service, "SELECT * FROM jobs WHERE id = ?", (bad.job_id,))
    assert (job["status"], job["units"], job["usd"], job["cost_usd"]) == ("blocked", 0, 0, 0)
    (block,) = await rows(service, "SELECT * FROM policy_blocks")
    assert block["job_id"] == bad.job_id and block["stage"] == "input"
    assert await service.store.run(service.ledger.relax_used_sync, member("U2").key) == 0


async def test_an_expired_batch_refunds_every_job_and_tells_each_user(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(**RELAX)
    courier = RecordingCourier()
    service.relax.couriers["slack"] = courier
    jobs = [await service.relax.submit(member(u), f"harbor {u}", ImageOptions(), {**REACH, "user": u}) for u in ("U1", "U2")]
    fake_openai.expire_batches = True
    await service.relax.run_once(force=True)
    await service.relax.run_once(force=True)

    assert courier.posted == []
    assert sorted(reach["user"] for reach, _ in courier.told) == ["U1", "U2"]
    assert all("24 hours" in text and "Nothing was charged" in text for _, text in courier.told)
    refunded = await rows(service, "SELECT status, units, usd FROM jobs ORDER BY created_at")
    assert refunded == [{"status": "failed", "units": 0, "usd": 0}] * 2
    assert {r["state"] for r in await relax_rows(service)} == {"refunded"}
    (batch,) = await rows(service, "SELECT state, openai_status FROM relax_batches")
    assert batch == {"state": "finished", "openai_status": "expired"}
    assert {job.job_id for job in jobs} == {r["job_id"] for r in await relax_rows(service)}


async def test_a_restart_between_submission_and_completion_delivers_exactly_once(
    make_service: MakeService, fake_openai: FakeOpenAI, db_url: Any
) -> None:
    db = db_url("shared")
    first = await make_service(db_path=db, **RELAX)
    first_courier = RecordingCourier()
    first.relax.couriers["slack"] = first_courier
    ticket = await first.relax.submit(member(), "a quiet harbor", ImageOptions(), REACH)
    fake_openai.batch_delay = 3600
    await first.relax.run_once(force=True)
    await first.close()  # the bot stops (or is replaced) while OpenAI works on the batch

    fake_openai.batch_delay = 0
    for batch in fake_openai.batches.values():
        batch.ready_at = 0
    second = await make_service(db_path=db, **RELAX)
    courier = RecordingCourier()
    second.relax.couriers["slack"] = courier
    await second.relax.run_once(force=True)
    await second.relax.run_once(force=True)
    third = await make_service(db_path=db, **RELAX)  # another replica, later
    third_courier = RecordingCourier()
    third.relax.couriers["slack"] = third_courier
    await third.relax.run_once(force=True)

    assert [r.job_id for _, r in courier.posted] == [ticket.job_id]
    assert first_courier.posted == third_courier.posted == []
    (job,) = await rows(service := second, "SELECT status, cost_usd FROM jobs")
    assert job["status"] == "succeeded" and job["cost_usd"] > 0
    assert len(fake_openai.calls("/batches")) == 1  # submitted once
    assert service is second


async def test_a_process_that_dies_mid_delivery_is_taken_over_once_its_claim_expires(
    make_service: MakeService, fake_openai: FakeOpenAI, db_url: Any
) -> None:
    db = db_url("shared")
    clock = ManualClock(datetime.now(timezone.utc))
    first = await make_service(db_path=db, clock=clock, **RELAX)
    stuck = RecordingCourier()
    stuck.hang = asyncio.Event()  # the process dies while posting
    first.relax.couriers["slack"] = stuck
    ticket = await first.relax.submit(member(), "a quiet harbor", ImageOptions(), REACH)
    dying = asyncio.ensure_future(first.relax.run_once(force=True))  # submits, polls, settles, starts posting
    await until_state(first, "delivering")
    dying.cancel()

    second = await make_service(db_path=db, clock=clock, **RELAX)
    courier = RecordingCourier()
    second.relax.couriers["slack"] = courier
    await second.relax.run_once(force=True)
    assert courier.posted == []  # the first one's claim still stands: it may be posting right now
    clock.advance(seconds=CLAIM_SECONDS + 1)
    await second.relax.run_once(force=True)
    await second.relax.run_once(force=True)
    assert [r.job_id for _, r in courier.posted] == [ticket.job_id]
    (job,) = await rows(second, "SELECT status, cost_usd FROM jobs")
    (settled_once,) = await rows(second, "SELECT state, settled_at FROM relax_jobs")
    assert job["status"] == "succeeded" and settled_once["state"] == "delivered"


async def test_a_result_that_cannot_be_posted_goes_back_on_the_allowance_and_the_user_is_told(
    make_service: MakeService,
) -> None:
    service = await make_service(**RELAX)
    courier = RecordingCourier()
    courier.refuse = True
    service.relax.couriers["slack"] = courier
    await service.relax.submit(member(), "a quiet harbor", ImageOptions(), REACH)
    await service.relax.run_once(force=True)
    await service.relax.run_once(force=True)
    ((_, text),) = courier.told
    assert "couldn't post it" in text
    (job,) = await rows(service, "SELECT status, cost_usd FROM jobs")
    assert job["status"] == "undelivered" and job["cost_usd"] > 0  # paid to OpenAI: on the books
    assert await service.store.run(service.ledger.relax_used_sync, member().key) == 0


async def until_state(service: Any, state: str) -> None:
    for _ in range(2000):
        found = await relax_rows(service)
        if found and found[0]["state"] == state:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"the relax job never reached {state}")


async def test_two_replicas_polling_at_once_deliver_each_line_once(
    make_service: MakeService, fake_openai: FakeOpenAI, db_url: Any
) -> None:
    db = db_url("shared")
    replicas = [await make_service(db_path=db, **RELAX) for _ in range(2)]
    couriers = [RecordingCourier() for _ in replicas]
    for service, courier in zip(replicas, couriers):
        service.relax.couriers["slack"] = courier
    tickets = [await replicas[i % 2].relax.submit(member(f"U{i}"), f"harbor {i}", ImageOptions(), REACH) for i in range(6)]
    fake_openai.batch_delay = 3600
    await asyncio.gather(*(service.relax.run_once(force=True) for service in replicas))  # both flush at once
    assert len(fake_openai.batches) == 1  # one batch, not one per replica
    for batch in fake_openai.batches.values():
        batch.ready_at = 0
    await asyncio.gather(*(service.relax.run_once(force=True) for service in replicas))  # both poll at once
    await asyncio.gather(*(service.relax.run_once(force=True) for service in replicas))
    posted = sorted(r.job_id for courier in couriers for _, r in courier.posted)
    assert posted == sorted(t.job_id for t in tickets)  # every line once, by whichever replica held the claim
