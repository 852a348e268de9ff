"""Models change under a running bot (issue 10), through the real `imaginebot
run` process: start-up reads each configured model's shutdown date (warning
in the log, days left in /metrics), transparent stickers come from a live
model, and a model OpenAI retires while the bot runs is refunded and said plainly."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Callable

from PIL import Image

from tests.e2e.conftest import Fakes, SlackUser, StartBot, assert_refunded, eventually, the_job
from tests.e2e.test_run import metric_samples


async def test_start_up_warns_and_exposes_days_left_then_a_retired_model_is_refunded(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    fake = fakes.openai
    soon = fake.today + timedelta(days=20)
    fake.shutdown_dates["gpt-image-2.6-sunburst"] = soon.isoformat()
    bot = await start_bot()

    # Start-up read GET /models/{id} for each configured model and warned about the one going away.
    asked = {r.path for r in fake.requests if r.path.startswith("/v1/models/")}
    assert asked == {"/v1/models/gpt-image-2", "/v1/models/gpt-image-2.6-sunburst"}, asked
    warnings = [r for r in bot.log_records() if r.get("level") == "warning" and "gpt-image-2.6-sunburst" in r.get("message", "")]
    assert warnings and f"shuts this model down on {soon} (in 20 days)" in warnings[0]["message"], bot.log_tail()
    status, metrics = await bot.get("/metrics")
    days = metric_samples(metrics, "imaginebot_model_days_left")
    assert status == 200 and days[(("model", "gpt-image-2.6-sunburst"),)] == 20.0, days
    assert days[(("model", "gpt-image-2"),)] == float("inf")

    # A transparent sticker from the live transparent model.
    alice = slack_user("UALICE")
    await alice.imagine(bot, "a sticker of a cat --background transparent")
    await eventually(alice.deliveries, what="Alice's sticker", seen=alice.outcomes)
    [sticker] = alice.uploaded_files()
    with Image.open(io.BytesIO(sticker)) as image:
        assert image.format == "PNG" and image.mode == "RGBA" and image.getchannel("A").getextrema()[0] == 0

    # OpenAI retires it early, after the bot's daily look: the next sticker is refunded and explained.
    fake.shutdown_dates["gpt-image-2.6-sunburst"] = fake.today.isoformat()
    bob = slack_user("UBOB")
    await bob.imagine(bot, "a sticker of a dog --background transparent")
    [told] = await eventually(bob.private, what="Bob told why", seen=bob.outcomes)
    assert "OpenAI shut down gpt-image-2.6-sunburst" in told and "Nothing was charged" in told, told
    assert "404" not in told and "model_not_found" not in told
    assert_refunded(the_job(bot.db_path, bob.key))
    errors = [r for r in bot.log_records() if r.get("level") == "error" and "answered 404 model_not_found" in r.get("message", "")]
    assert errors, bot.log_tail()
    assert await bot.terminate() == 0
