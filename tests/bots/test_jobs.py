"""Every outcome of the request lifecycle, on the JobRunner with a FakeTurn."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bots.jobs import JobCall, JobRunner
from core.errors import ImagineError, TooManyJobs
from core.models import ImageOptions, ImageResult, Progress, ProgressCallback, Requester, RequesterKey, Usage
from tests.bots.fake_turn import FakeTurn


class Refunds:
    def __init__(self, *, broken: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.broken = broken

    async def __call__(self, job_id: str, reason: str) -> bool:
        self.calls.append((job_id, reason))
        if self.broken:
            raise OSError("database is locked")
        return True


def result(turn: FakeTurn) -> ImageResult:
    return ImageResult("job-1", "generate", turn.requester, "a cat", ImageOptions(), (), "gpt-image-2", Usage(), 0.01, 1.0)


def runner(refunds: Refunds | None = None, limit: int = 10) -> JobRunner:
    return JobRunner(limit, refund=refunds or Refunds(), name="test", upload_grace=0.1)


async def serve_job(jobs: JobRunner, turn: FakeTurn, call: Any) -> None:
    await jobs.serve(turn, jobs.run(turn, call))


async def test_a_job_shows_progress_posts_its_images_and_withdraws_the_placeholder() -> None:
    turn, jobs = FakeTurn(), runner()
    seen_reach: list[Any] = []

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        seen_reach.append(reach)
        await progress(Progress("job-1", "queued", 1, 0.0))
        return result(turn)

    await serve_job(jobs, turn, call)
    assert seen_reach == [{"platform": "fake", "user": "u"}]
    assert [p.state for p in turn.progressed] == ["queued"]
    assert turn.events == ["deliver", "withdraw"] and turn.said == []
    assert turn.answered  # a later tell says nothing
    assert await turn.tell("late") is False and turn.said == []


async def test_a_private_error_withdraws_then_tells_only_the_user() -> None:
    turn, jobs = FakeTurn(), runner()

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        raise TooManyJobs("You have used today's images.", job_id="job-1")

    await serve_job(jobs, turn, call)
    assert turn.events == ["withdraw", "tell"]
    assert turn.said == [("error: You have used today's images.", True)]


async def test_a_public_error_is_told_in_place_of_the_placeholder() -> None:
    class Public(ImagineError):
        private = False

    turn, jobs = FakeTurn(), runner()

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        raise Public("The model refused this prompt.")

    await serve_job(jobs, turn, call)
    assert turn.said == [("error: The model refused this prompt.", False)]


async def test_a_failed_delivery_is_refunded_then_told_once() -> None:
    refunds = Refunds()
    turn, jobs = FakeTurn(fail_delivery="channel_not_found"), runner(refunds)

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        return result(turn)

    await serve_job(jobs, turn, call)
    assert refunds.calls == [("job-1", "fake_upload_failed")]
    assert turn.events == ["withdraw", "tell"]
    assert turn.said == [("not posted: channel_not_found; given back: True", True)]


async def test_a_refund_that_fails_still_tells_the_user_and_claims_no_refund() -> None:
    refunds = Refunds(broken=True)
    turn, jobs = FakeTurn(fail_delivery="500"), runner(refunds)

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        return result(turn)

    await serve_job(jobs, turn, call)
    assert refunds.calls == [("job-1", "fake_upload_failed")]
    assert turn.said == [("not posted: 500; given back: False", True)]


async def test_a_bug_is_apologised_for_once_with_a_reference() -> None:
    turn, jobs = FakeTurn(), runner()

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        raise KeyError("bug")

    await serve_job(jobs, turn, call)
    assert turn.events == ["withdraw", "tell"]
    [(text, private)] = turn.said
    assert text.startswith("sorry (") and private


def hanging_call(started: asyncio.Event) -> JobCall:
    """A model call that says it started, then never returns (until cancelled)."""

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("not reached")

    return call


async def test_shutdown_cancels_a_running_job_and_tells_its_user() -> None:
    turn, jobs = FakeTurn(), runner()
    started = asyncio.Event()
    call = hanging_call(started)

    assert jobs.spawn(turn, lambda t: jobs.run(t, call), name="job")
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(jobs.drain(0), 10)
    assert turn.events == ["withdraw", "tell"]
    assert turn.said == [("shutting down", True)]
    assert len(jobs) == 0 and jobs.try_reserve() is None  # closed: nothing new is admitted


async def test_a_job_stopped_by_its_user_is_told_why_and_its_task_ends_normally() -> None:
    turn, jobs = FakeTurn(), runner()
    started = asyncio.Event()
    call = hanging_call(started)

    task = asyncio.create_task(serve_job(jobs, turn, call))
    await asyncio.wait_for(started.wait(), 10)
    job = jobs.find(lambda t: t is turn)
    assert job is not None and job.stop("cancelled")
    assert not job.stop("cancelled")  # once
    await asyncio.wait_for(task, 10)
    assert not task.cancelled()
    assert turn.said == [("stopped: cancelled", True)]
    assert jobs.find(lambda t: t is turn) is None  # past the call: nothing left to stop


async def test_images_being_posted_at_shutdown_are_posted_or_given_back() -> None:
    refunds = Refunds()
    turn, jobs = FakeTurn(hang_delivery=True), runner(refunds)

    async def call(progress: ProgressCallback, reach: Any) -> ImageResult:
        return result(turn)

    task = asyncio.create_task(serve_job(jobs, turn, call))
    for _ in range(100):
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 40)
    assert refunds.calls == [("job-1", "fake_upload_failed")]
    assert turn.said == [("not posted: cancelled; given back: True", True)]


async def test_admission_is_atomic_and_capped_and_a_slot_not_used_is_given_back() -> None:
    jobs = runner(limit=2)
    first, second = jobs.try_reserve(), jobs.try_reserve()
    assert first is not None and second is not None
    assert jobs.try_reserve() is None and not jobs.spawn(FakeTurn(), lambda t: asyncio.sleep(0), name="x")
    with first:
        pass  # the request ended without a job
    assert len(jobs) == 1
    third = jobs.try_reserve()
    assert third is not None
    second.release()
    third.release()
    assert len(jobs) == 0


def test_requester_keys_are_written_and_read_in_one_place() -> None:
    from bots.discord.requester import user_key as discord_key
    from bots.slack.payloads import user_key as slack_key

    who = Requester(platform="discord", workspace="dm", user="42", channel="c")
    assert who.key == discord_key(None, 42) == "discord:dm:42"
    assert RequesterKey.parse(who.key) == RequesterKey("discord", "dm", "42")
    assert RequesterKey.parse(slack_key("T1", "U9")) == RequesterKey("slack", "T1", "U9")
    assert RequesterKey.parse("slack:T1:U9").workspace_key == "slack:T1"
