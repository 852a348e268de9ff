"""ImageService end to end against the fake OpenAI, through the real SDK:
what goes on the wire, what is charged and recorded, and how every failure
the API can give becomes the core's own error with nothing charged."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from PIL import Image

from core.errors import (
    CoolingDown,
    InvalidRequest,
    ModelTimeout,
    NotAllowed,
    OutOfCredit,
    PolicyBlocked,
    ServiceUnavailable,
    TooManyJobs,
)
from core.models import ImageOptions, Progress, Upload
from core.provider import safety_identifier
from tests.conftest import MakeService
from tests.core.sample_images import mask_png, png
from tests.core.scenario import ManualClock, SleepRecorder, assert_nothing_held, job_rows, member, rows, until
from tests.fakes.openai_server import FakeOpenAI

PERSON = member()
FOX = "a red fox in the snow"  # 21 UTF-8 bytes: the fake bills 21 // 4 + 1 = 6 text tokens


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


# --------------------------------------------------------------------------
# success
# --------------------------------------------------------------------------


async def test_generate_charges_from_usage_and_records_the_job(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service()
    result = await service.generate(PERSON, FOX, ImageOptions(quality="medium"), notify={"channel": "C1"})

    (call,) = fake_openai.calls("/images/generations")
    assert call.json == {
        "model": "gpt-image-2",
        "prompt": FOX,
        "n": 1,
        "size": "1024x1024",
        "quality": "medium",
        "output_format": "png",
        "safety_identifier": safety_identifier(PERSON.key),
    }
    assert PERSON.user not in call.json["safety_identifier"]  # a hash, never the platform's user id

    assert len(result.images) == 1
    image = result.images[0]
    assert image.mime == "image/png" and image.filename == f"imagine-{result.job_id}-1.png"
    assert decoded(image.data).size == (1024, 1024)
    assert (result.usage.input_text_tokens, result.usage.output_image_tokens) == (6, 1756)
    # gpt-image-2: $5 per 1M text input tokens, $30 per 1M image output tokens.
    assert result.cost_usd == pytest.approx((6 * 5.00 + 1756 * 30.00) / 1e6)
    assert result.model == "gpt-image-2"

    (row,) = await job_rows(service)
    assert row["id"] == result.job_id
    assert {k: row[k] for k in ("kind", "platform", "workspace_key", "user_key", "channel", "prompt")} == {
        "kind": "generate",
        "platform": "slack",
        "workspace_key": "slack:T1",
        "user_key": "slack:T1:U1",
        "channel": "C1",
        "prompt": FOX,
    }
    assert {k: row[k] for k in ("size", "quality", "n", "format", "background", "model")} == {
        "size": "1024x1024",
        "quality": "medium",
        "n": 1,
        "format": "png",
        "background": "auto",
        "model": "gpt-image-2",
    }
    assert row["status"] == "succeeded" and row["error_code"] is None
    assert (row["units"], row["images"], row["attempts"]) == (1.0, 1, 1)
    assert (row["input_text_tokens"], row["input_image_tokens"], row["output_image_tokens"]) == (6, 0, 1756)
    assert row["cost_usd"] == pytest.approx(result.cost_usd) and row["usd"] == pytest.approx(result.cost_usd)
    assert row["created_at"] <= row["started_at"] <= row["finished_at"]
    assert row["queue_seconds"] >= 0 and row["model_seconds"] > 0
    assert json.loads(row["notify"]) == {}  # forgotten once the job ended (it may hold a token)

    record = await service.job(result.job_id)
    assert record is not None
    assert (record.status, record.prompt, record.options) == ("succeeded", FOX, ImageOptions())
    assert record.cost_usd == pytest.approx(result.cost_usd)
    status = await service.quota(PERSON)
    assert (status.used, status.in_flight, status.remaining) == (1.0, 0, 9.0)


async def test_prices_come_from_the_config(make_service: MakeService) -> None:
    price = {"text_input": 1.0, "cached_text_input": 0.5, "image_input": 2.0, "cached_image_input": 1.0, "image_output": 100.0}
    service = await make_service(pricing={"models": {"gpt-image-2": price}})
    result = await service.generate(PERSON, FOX, ImageOptions(quality="high", n=2, size="2048x2048"))
    # The fake bills 14,272 output tokens per 2048² high image (SPEC §1).
    assert result.usage.output_image_tokens == 2 * 14_272
    assert result.cost_usd == pytest.approx((6 * 1.0 + 2 * 14_272 * 100.0) / 1e6)
    assert len(result.images) == 2 and decoded(result.images[1].data).size == (2048, 2048)
    assert (await service.quota(PERSON)).used == 8.0  # 2 images × high weight 4


async def test_edit_sends_files_with_names_and_types(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    first, second, mask = png(64, 64), png(40, 30), mask_png(64, 64)
    service = await make_service()
    result = await service.edit(
        PERSON,
        "make it watercolor",
        [Upload("first.png", first, "image/png"), Upload("second.PNG", second, "application/octet-stream")],
        ImageOptions(quality="low", format="webp", compression=80),
        mask=Upload("mask.png", mask),
    )

    (call,) = fake_openai.calls("/images/edits")
    assert [(f.name, f.filename, f.content_type) for f in call.files] == [
        ("image[]", "first.png", "image/png"),
        ("image[]", "second.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]
    # PNG/JPEG/WebP go out untouched: no re-encoding of what people upload.
    assert [f.data for f in call.files] == [first, second, mask]
    assert call.form["prompt"] == "make it watercolor"
    assert (call.form["model"], call.form["quality"], call.form["output_format"], call.form["output_compression"]) == (
        "gpt-image-2",
        "low",
        "webp",
        "80",
    )
    assert result.kind == "edit"
    assert result.images[0].mime == "image/webp" and result.images[0].filename.endswith(".webp")
    assert decoded(result.images[0].data).format == "WEBP"
    # 18-byte prompt → 5 text tokens; 2 input images × 1024 tokens at $8/1M; 196 output tokens (low) at $30/1M.
    assert result.cost_usd == pytest.approx((5 * 5.00 + 2048 * 8.00 + 196 * 30.00) / 1e6)
    (row,) = await job_rows(service)
    assert (row["kind"], row["input_images"], row["input_image_tokens"], row["status"]) == ("edit", 2, 2048, "succeeded")


UNICODE_PROMPTS = [
    "富士山の上に浮かぶ赤い狐、水彩画風",
    "ثعلب أحمر في الثلج، بأسلوب الألوان المائية",
    "बर्फ में लाल लोमड़ी",
    "🦊❄️ fox 👩🏽‍🎨 with ZWJ, e\u0301 combining, \u200f rtl mark",
]


@pytest.mark.parametrize("prompt", UNICODE_PROMPTS, ids=["japanese", "arabic", "hindi", "emoji"])
async def test_prompts_reach_the_api_byte_for_byte(make_service: MakeService, fake_openai: FakeOpenAI, prompt: str) -> None:
    service = await make_service()
    generated = await service.generate(PERSON, prompt, ImageOptions())
    edited = await service.edit(PERSON, prompt, [Upload("a.png", png())], ImageOptions())
    (gen,) = fake_openai.calls("/images/generations")
    (edit,) = fake_openai.calls("/images/edits")
    assert gen.json is not None and gen.json["prompt"] == prompt
    # Either raw UTF-8 or \u escapes are valid JSON; what matters is the decoded string.
    assert json.loads(gen.body)["prompt"] == prompt
    assert edit.form["prompt"] == prompt
    assert generated.prompt == edited.prompt == prompt
    assert [r["prompt"] for r in await job_rows(service)] == [prompt, prompt]


async def test_transparent_background_uses_the_transparent_model(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    # The default transparent model (gpt-image-1.5 shut down on 2026-12-01), charged with its own catalog prices.
    service = await make_service(models={"gpt-image-2.6-sunburst": {"image_output": 40.0}})
    result = await service.generate(PERSON, "a logo", ImageOptions(background="transparent", size="2048x2048"))
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None
    assert (call.json["model"], call.json["background"]) == ("gpt-image-2.6-sunburst", "transparent")
    assert result.model == "gpt-image-2.6-sunburst"
    image = decoded(result.images[0].data)
    assert image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 0 and image.size == (2048, 2048)
    # 1,756 output tokens × 2048²'s factor for medium, at $40 per 1M (not gpt-image-2's $30).
    assert result.cost_usd == pytest.approx((2 * 5.00 + result.usage.output_image_tokens * 40.00) / 1e6)
    (row,) = await job_rows(service)
    assert (row["model"], row["background"]) == ("gpt-image-2.6-sunburst", "transparent")


# --------------------------------------------------------------------------
# policy blocks
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "stage", "categories", "says"),
    [
        ("BLOCK_INPUT", "input", ("violence",), "OpenAI's safety system blocked this prompt. It was flagged for: violence."),
        ("BLOCK_OUTPUT", "output", ("sexual",), "The image was generated, but OpenAI's safety system blocked it"),
        ("BLOCK_LEGACY", "input", (), "OpenAI's safety system blocked this prompt. Nothing was charged."),
    ],
)
async def test_policy_blocks(
    make_service: MakeService,
    fake_openai: FakeOpenAI,
    trigger: str,
    stage: str,
    categories: tuple[str, ...],
    says: str,
) -> None:
    sleeps = SleepRecorder()
    service = await make_service(sleep=sleeps)
    for call in (
        service.generate(PERSON, f"{trigger} a fight", ImageOptions()),
        service.edit(PERSON, f"{trigger} a fight", [Upload("a.png", png())], ImageOptions()),
    ):
        with pytest.raises(PolicyBlocked) as info:
            await call
        e = info.value
        assert (e.stage, e.categories, e.charged) == (stage, categories, False)
        assert says in e.user_message
        assert "Nothing was charged" in e.user_message and "rephras" in e.user_message
        assert e.job_id is not None
    assert len(fake_openai.requests) == 2 and sleeps.waits == []  # one request each: never retried
    await assert_nothing_held(service, PERSON)
    blocks = await rows(service, "SELECT * FROM policy_blocks ORDER BY id")
    assert [(b["user_key"], b["stage"], json.loads(b["categories"])) for b in blocks] == [
        (PERSON.key, stage, list(categories))
    ] * 2
    jobs = await job_rows(service)
    assert [(j["status"], j["error_code"], j["id"]) for j in jobs] == [("blocked", "policy_blocked", b["job_id"]) for b in blocks]


async def test_repeated_blocks_start_a_cooldown(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    clock = ManualClock(datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc))
    service = await make_service(clock=clock, limits={"policy_blocks_before_cooldown": 2, "cooldown_minutes": 30})
    with pytest.raises(PolicyBlocked) as first:
        await service.generate(PERSON, "BLOCK_INPUT one", ImageOptions())
    assert "paused" not in first.value.user_message
    with pytest.raises(PolicyBlocked) as second:
        await service.generate(PERSON, "BLOCK_OUTPUT two", ImageOptions())
    assert "requests are paused for you until 09:30 UTC (in 30 min)" in second.value.user_message

    with pytest.raises(CoolingDown) as info:
        await service.generate(PERSON, "a harmless fox", ImageOptions())
    assert info.value.until == clock.now + timedelta(minutes=30)
    assert "until 09:30 UTC" in info.value.user_message and "Nothing was charged" in info.value.user_message
    assert len(fake_openai.requests) == 2  # the paused request never reached the API
    status = await service.quota(PERSON)
    assert status.cooldown_until == clock.now + timedelta(minutes=30) and status.used == 0

    other = member(user="U2")
    assert (await service.generate(other, "a harmless fox", ImageOptions())).images  # only that user is paused
    clock.advance(minutes=31)
    assert (await service.generate(PERSON, "a harmless fox", ImageOptions())).images


async def test_charged_policy_blocks(make_service: MakeService) -> None:
    service = await make_service(limits={"charge_policy_blocks": True})
    with pytest.raises(PolicyBlocked) as info:
        await service.generate(PERSON, "BLOCK_OUTPUT", ImageOptions(quality="high"))
    assert info.value.charged is True
    assert "It counted against your daily limit." in info.value.user_message
    assert "Nothing was charged" not in info.value.user_message
    assert (await service.quota(PERSON)).used == 4.0
    (row,) = await job_rows(service)
    assert (row["status"], row["units"]) == ("blocked", 4.0)


# --------------------------------------------------------------------------
# API failures: retried only when safe, refunded always
# --------------------------------------------------------------------------


async def test_out_of_credit_is_never_retried(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    sleeps = SleepRecorder()
    service = await make_service(sleep=sleeps)
    with pytest.raises(OutOfCredit) as info:
        await service.generate(PERSON, "NO_CREDIT fox", ImageOptions())
    assert "out of credit" in info.value.user_message and info.value.retryable is False
    assert len(fake_openai.requests) == 1 and sleeps.waits == []
    await assert_nothing_held(service, PERSON)
    (row,) = await job_rows(service)
    assert row["error_code"] == "insufficient_quota"


async def test_server_error_once_is_retried(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    sleeps = SleepRecorder()
    service = await make_service(sleep=sleeps)
    result = await service.edit(PERSON, "SERVER_ERROR_ONCE fox", [Upload("a.png", png())], ImageOptions())
    assert result.images
    assert [r.status for r in fake_openai.requests] == [500, 200] and len(sleeps.waits) == 1
    (row,) = await job_rows(service)
    assert (row["status"], row["attempts"]) == ("succeeded", 2)


async def test_server_error_that_persists(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    sleeps = SleepRecorder()
    service = await make_service(sleep=sleeps, openai={"server_error_retries": 1})
    with pytest.raises(ServiceUnavailable) as info:
        await service.generate(PERSON, "SERVER_ERROR fox", ImageOptions())
    assert "isn't answering" in info.value.user_message
    assert [r.status for r in fake_openai.requests] == [500, 500]
    await assert_nothing_held(service, PERSON)


@pytest.mark.parametrize(
    ("api_key", "says"),
    [
        ("sk-unverified-org-key", "isn't verified for this image model"),
        ("sk-invalid-key-1234", "OPENAI_API_KEY"),
    ],
)
async def test_refused_key_or_unverified_org(
    make_service: MakeService, fake_openai: FakeOpenAI, api_key: str, says: str
) -> None:
    service = await make_service(api_key=api_key)
    with pytest.raises(NotAllowed) as info:
        await service.generate(PERSON, FOX, ImageOptions())
    assert says in info.value.user_message and "Nothing was charged" in info.value.user_message
    assert api_key not in info.value.user_message
    assert len(fake_openai.requests) == 1
    await assert_nothing_held(service, PERSON)


async def test_invalid_request_names_the_reason(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    # A model the fake does not know, priced so the config accepts it: the API's 400 comes back in plain words.
    price = {"text_input": 1.0, "cached_text_input": 1.0, "image_input": 1.0, "cached_image_input": 1.0, "image_output": 1.0}
    service = await make_service(openai={"model": "gpt-image-9"}, pricing={"models": {"gpt-image-9": price}})
    with pytest.raises(InvalidRequest) as info:
        await service.generate(PERSON, FOX, ImageOptions())
    assert "OpenAI couldn't take this request: Invalid value: 'gpt-image-9'." in info.value.user_message
    assert "Error code" not in info.value.user_message  # the API's words, not the SDK's wrapping
    assert len(fake_openai.requests) == 1
    await assert_nothing_held(service, PERSON)


async def test_timeout_is_refunded_and_not_retried(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    sleeps = SleepRecorder()
    service = await make_service(sleep=sleeps, openai={"timeout_seconds": 0.5})
    with pytest.raises(ModelTimeout) as info:
        await service.generate(PERSON, "SLOW:3 a fox", ImageOptions())
    assert "longer than 0.5 seconds" in info.value.user_message and "Nothing was charged" in info.value.user_message
    # A timed-out call may still be billed: retrying it could bill twice.
    assert len(fake_openai.requests) == 1 and sleeps.waits == []
    await assert_nothing_held(service, PERSON)
    (row,) = await job_rows(service)
    assert (row["status"], row["error_code"]) == ("failed", "timeout")


# --------------------------------------------------------------------------
# cancellation, jobs in flight, the queue
# --------------------------------------------------------------------------


async def test_cancelling_a_running_job_refunds(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service()
    task = asyncio.create_task(service.generate(PERSON, "SLOW:5 a fox", ImageOptions(quality="high")))
    await until(lambda: fake_openai.in_flight == 1, "the model call started")
    assert (await service.quota(PERSON)).used == 4.0  # reserved while it runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_held(service, PERSON)
    (row,) = await job_rows(service)
    assert (row["status"], row["error_code"]) == ("failed", "cancelled")


async def test_cancelling_while_the_reservation_is_being_written_refunds(make_service: MakeService) -> None:
    """A cancel that lands while reserve() runs on the database thread: the
    reservation still commits there, and must still be given back."""
    in_reserve = threading.Event()
    release = threading.Event()
    real_now = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
    calls = 0

    def clock() -> datetime:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first call is reserve()'s own: hold it there
            in_reserve.set()
            release.wait(10)
        return real_now

    service = await make_service(clock=clock)
    task = asyncio.create_task(service.generate(PERSON, FOX, ImageOptions()))
    assert await asyncio.to_thread(in_reserve.wait, 10)
    task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_nothing_held(service, PERSON)
    assert [(r["status"], r["error_code"]) for r in await job_rows(service)] == [("failed", "cancelled")]


async def test_jobs_in_flight_per_user(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(limits={"max_jobs_in_flight_per_user": 1})
    task = asyncio.create_task(service.generate(PERSON, "SLOW:5 a fox", ImageOptions()))
    await until(lambda: fake_openai.in_flight == 1, "the first job is running")
    with pytest.raises(TooManyJobs) as info:
        await service.generate(PERSON, FOX, ImageOptions())
    assert "You already have 1 image job running" in info.value.user_message
    assert len(fake_openai.requests) == 1
    assert (await service.generate(member(user="U2"), FOX, ImageOptions())).images  # others are not held up
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_queue_positions_then_running(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(openai={"max_concurrent_calls": 1})
    seen: dict[str, list[Progress]] = {}

    def recorder(name: str) -> Any:
        async def on_progress(progress: Progress) -> None:
            seen.setdefault(name, []).append(progress)

        return on_progress

    people = ["A", "B", "C"]
    async with service.pacer.slot():  # someone else's call holds the only slot
        tasks = []
        for name in people:
            tasks.append(asyncio.create_task(service.generate(member(user=name), FOX, ImageOptions(), progress=recorder(name))))
            await until(lambda: service.pacer.waiting == len(tasks), f"{name} is in the queue")
        await until(lambda: all(seen.get(p) for p in people), "everyone was told their place")
        assert [seen[p][0].state for p in people] == ["queued"] * 3
        assert [seen[p][0].position for p in people] == [1, 2, 3]
        assert fake_openai.requests == []
    results = await asyncio.gather(*tasks)
    assert [r.requester.user for r in results] == people
    for name in people:
        events = seen[name]
        states = [e.state for e in events]
        assert states[-1] == "running" and events[-1].position is None, (name, events)
        assert "running" not in states[: states.index("running")], (name, events)
        queued_positions = [e.position or 0 for e in events if e.state == "queued"]
        assert queued_positions == sorted(queued_positions, reverse=True), (name, events)  # only ever moves up
    assert fake_openai.max_in_flight == 1


async def test_queue_position_updates_are_coalesced(
    make_service: MakeService, fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every release moves every waiter up one place; a job hears of it at
    most once per gap, not once per release (a long queue would flood the
    platform). The gap is made longer than the test can take, so what each job
    hears does not depend on how fast the machine is."""
    monkeypatch.setattr("core.progress.MIN_GAP", 3600.0)
    service = await make_service(openai={"max_concurrent_calls": 1}, limits={"daily_images_per_user": 100})
    queued: dict[int, list[int | None]] = {}

    def recorder(i: int) -> Any:
        async def on_progress(progress: Progress) -> None:
            if progress.state == "queued":
                queued.setdefault(i, []).append(progress.position)

        return on_progress

    async with service.pacer.slot():  # someone else's call holds the only slot while all 30 queue
        jobs = [
            asyncio.create_task(service.generate(member(user=f"U{i}"), FOX, ImageOptions(quality="low"), progress=recorder(i)))
            for i in range(30)
        ]
        await until(lambda: service.pacer.waiting == 30 and len(queued) == 30, "all 30 jobs queued and told their place")
    await asyncio.gather(*jobs)
    # Job i moved up i places as the 30 calls ran one after another; uncoalesced it
    # would have heard every one of them (the last: 30, 29, ..., 1).
    assert sorted(queued.values()) == [[p] for p in range(1, 31)], queued


async def test_charged_policy_block_keeps_units_but_no_usd_the_api_never_billed(make_service: MakeService) -> None:
    # Issue 8 item 7: a blocked call has no usage, so OpenAI billed nothing;
    # the estimate must not stay on the books and fill the budgets.
    service = await make_service(limits={"charge_policy_blocks": True, "daily_budget_usd_per_workspace": 5.0})
    with pytest.raises(PolicyBlocked):
        await service.generate(PERSON, "BLOCK_OUTPUT", ImageOptions(quality="high", size="2048x2048"))
    (row,) = await job_rows(service)
    assert (row["status"], row["units"]) == ("blocked", 4.0)
    assert (row["usd"], row["cost_usd"] or 0.0) == (0.0, 0.0)
    status = await service.quota(PERSON)
    assert (status.used, status.workspace_spent_usd) == (4.0, 0.0)
