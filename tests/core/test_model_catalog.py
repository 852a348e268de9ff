"""Models change under the bot: routing by the catalog, `--model` limited to
what the admin allows, shutdown dates from the catalog and GET /models, and a
model shut down mid-flight refunded with a plain message. Real SDK, fake API."""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone

import pytest

from core.errors import InvalidInput, ModelShutDown
from core.lifecycle import WARN_DAYS
from core.models import ImageOptions, Upload
from tests.conftest import MakeService
from tests.core.sample_images import png
from tests.core.scenario import ManualClock, assert_nothing_held, job_rows, member
from tests.fakes.openai_server import FakeOpenAI

PERSON = member()
STICKER = ImageOptions(background="transparent")


async def test_picked_model_is_used_and_charged_with_its_prices(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(
        openai={"allowed_models": ["gpt-image-2", "gpt-image-2.6-flare"]},
        models={"gpt-image-2.6-flare": {"image_output": 50.0}},
    )
    result = await service.generate(PERSON, "a fox", ImageOptions(model="gpt-image-2.6-flare", quality="max"))
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and (call.json["model"], call.json["quality"]) == ("gpt-image-2.6-flare", "max")
    assert result.model == "gpt-image-2.6-flare"
    assert result.cost_usd == pytest.approx((2 * 5.0 + result.usage.output_image_tokens * 50.0) / 1e6)
    assert (await service.quota(PERSON)).used == 8.0  # max quality's weight
    record = await service.job(result.job_id)
    assert record is not None and record.options.model == "gpt-image-2.6-flare"  # "Again" asks for it again


async def test_model_outside_allowed_models_makes_no_call(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(openai={"allowed_models": ["gpt-image-2", "gpt-image-2.5-flare"]})
    with pytest.raises(InvalidInput) as info:
        await service.generate(PERSON, "a fox", ImageOptions(model="gpt-image-2.6-sunburst"))
    assert "You can pick gpt-image-2 or gpt-image-2.5-flare" in info.value.user_message
    assert fake_openai.requests == []
    await assert_nothing_held(service, PERSON)


async def test_shut_down_mid_flight_is_refunded_and_said_plainly(
    make_service: MakeService, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    # OpenAI retires the transparent model after the bot last looked.
    fake_openai.shutdown_dates["gpt-image-2.6-sunburst"] = (fake_openai.today - timedelta(days=1)).isoformat()
    service = await make_service()
    with pytest.raises(ModelShutDown) as info:
        await service.generate(PERSON, "a sticker of a cat", STICKER)
    text = info.value.user_message
    assert "OpenAI shut down gpt-image-2.6-sunburst" in text and "Nothing was charged" in text
    assert "leave out --background transparent" in text and "404" not in text
    await assert_nothing_held(service, PERSON)
    (row,) = await job_rows(service)
    assert (row["status"], row["error_code"]) == ("failed", "model_shut_down")
    # The admin sees why in the log.
    assert any(r.levelno == logging.ERROR and "gpt-image-2.6-sunburst answered 404 model_not_found" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    # The next request is refused before any call (and any reservation).
    calls = len(fake_openai.calls("/images/generations"))
    with pytest.raises(ModelShutDown):
        await service.generate(PERSON, "another cat", STICKER)
    assert len(fake_openai.calls("/images/generations")) == calls
    assert len(await job_rows(service)) == 1
    # Opaque images from gpt-image-2 go on.
    assert (await service.generate(PERSON, "a dog", ImageOptions())).model == "gpt-image-2"


async def test_catalog_shutdown_date_refuses_before_any_call(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    before = ManualClock(datetime(2026, 11, 30, 12, tzinfo=timezone.utc))
    fake_openai.today = date(2026, 11, 30)
    service = await make_service(openai={"transparent_model": "gpt-image-1.5"}, clock=before)
    assert (await service.generate(PERSON, "a sticker", STICKER)).model == "gpt-image-1.5"
    before.advance(days=1)  # 2026-12-01: the day it shut down
    fake_openai.reset()
    with pytest.raises(ModelShutDown) as info:
        await service.generate(PERSON, "a sticker", STICKER)
    assert "shut down gpt-image-1.5, the model that makes them on 2026-12-01" in info.value.user_message
    assert "gpt-image-2.6-sunburst" in info.value.user_message
    assert fake_openai.requests == []


async def test_shutdown_dates_read_from_the_api_once_a_day(
    make_service: MakeService, fake_openai: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    today = datetime.now(timezone.utc)
    soon = (today + timedelta(days=10)).date().isoformat()
    fake_openai.shutdown_dates["gpt-image-2.6-sunburst"] = soon
    service = await make_service(openai={"allowed_models": ["gpt-image-2", "gpt-image-2.5-flare"]})
    statuses = await service.lifecycle.refresh()
    asked = sorted(r.path for r in fake_openai.requests if r.path.startswith("/v1/models/"))
    assert asked == ["/v1/models/gpt-image-2", "/v1/models/gpt-image-2.5-flare", "/v1/models/gpt-image-2.6-sunburst"]
    by_model = {s.model: s for s in statuses}
    assert by_model["gpt-image-2.6-sunburst"].state == "warn" and by_model["gpt-image-2.6-sunburst"].days_left == 10
    assert by_model["gpt-image-2"].state == "ok"
    assert any(r.levelno == logging.WARNING and f"shuts this model down on {soon} (in 10 days)" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    metrics = service.metrics.render().decode()
    assert 'imaginebot_model_days_left{model="gpt-image-2.6-sunburst"} 10.0' in metrics
    assert 'imaginebot_model_days_left{model="gpt-image-2"} +Inf' in metrics
    # Cached for a day: a second look asks nothing.
    fake_openai.reset()
    await service.lifecycle.refresh()
    assert fake_openai.requests == []
    assert 10 < WARN_DAYS


async def test_input_images_limited_by_the_models_catalog_entry(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(models={"gpt-image-2.6-sunburst": {"max_input_images": 2}})
    uploads = [Upload(f"{i}.png", png()) for i in range(3)]
    with pytest.raises(InvalidInput) as info:
        await service.edit(PERSON, "make them one sticker", uploads, STICKER)
    assert info.value.user_message == "You attached 3 images; gpt-image-2.6-sunburst can use at most 2 in one edit. Remove some and try again."
    assert fake_openai.requests == []
    await assert_nothing_held(service, PERSON)
    assert (await service.edit(PERSON, "make them one", uploads, ImageOptions())).model == "gpt-image-2"
