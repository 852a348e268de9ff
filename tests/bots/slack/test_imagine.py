"""/imagine end to end: signed request → bolt → ImageService → fake OpenAI →
files_upload_v2 into the fake Slack. Assertions are on what Slack received."""

from __future__ import annotations

import json

from tests.bots.slack.conftest import CHANNEL, SlackBot, MakeBot
from tests.fakes.openai_server import FakeOpenAI


async def test_images_arrive_in_one_message_with_who_prompt_and_settings(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    status, body, response_url = await bot.command("/imagine", "a red fox in the snow --size landscape --n 2")
    assert status == 200
    assert body == ""  # acked with nothing: the visible feedback is the placeholder
    await bot.settle()

    (complete,) = bot.slack.completed_uploads()
    files = json.loads(complete.params["files"])
    assert len(files) == 2
    assert complete.params["channel_id"] == CHANNEL
    assert "thread_ts" not in complete.params
    comment = complete.params["initial_comment"]
    assert "<@UALICE>" in comment and "a red fox in the snow" in comment
    assert "1536x1024" in comment and "2 images" in comment
    # Step 2 of files_upload_v2: both files' bytes reached the upload URL, as PNGs, without the token.
    assert len(bot.slack.uploads) == 2
    assert all(u.data.startswith(b"\x89PNG") for u in bot.slack.uploads)
    assert all("Authorization" not in u.headers for u in bot.slack.uploads)
    assert len(bot.slack.calls_to("files.getUploadURLExternal")) == 2

    # The placeholder named who asked and the prompt, and is gone now.
    posted, buttons = bot.slack.calls_to("chat.postMessage")  # the placeholder, then the buttons under the images
    assert buttons.params["blocks"][0]["type"] == "actions"
    assert "<@UALICE>" in posted.params["text"] and "a red fox in the snow" in posted.params["text"]
    (deleted,) = bot.slack.calls_to("chat.delete")
    assert deleted.params["ts"] == bot.slack.messages[0].ts
    assert bot.slack.responses_to(response_url) == []  # nothing private to say

    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and call.json["prompt"] == "a red fox in the snow"
    assert call.json["n"] == 2 and call.json["size"] == "1536x1024"


async def test_prompt_reaches_the_model_as_typed(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    # Slack escapes &, < and > in text it sends; the model must get what was typed.
    await bot.command("/imagine", "富士山と桜 &amp; a cat &lt;3 🐱")
    await bot.settle()
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and call.json["prompt"] == "富士山と桜 & a cat <3 🐱"
    comment = bot.slack.completed_uploads()[0].params["initial_comment"]
    assert "富士山と桜 &amp; a cat &lt;3 🐱" in comment  # shown escaped again, so Slack displays it as typed


async def test_command_in_a_thread_answers_in_that_thread(bot: SlackBot) -> None:
    await bot.command("/imagine", "a lighthouse", thread_ts="1699999999.000100")
    await bot.settle()
    (complete,) = bot.slack.completed_uploads()
    assert complete.params["thread_ts"] == "1699999999.000100"
    placeholder, buttons = bot.slack.calls_to("chat.postMessage")
    assert placeholder.params["thread_ts"] == buttons.params["thread_ts"] == "1699999999.000100"


async def test_bad_flag_is_answered_privately_in_the_ack_and_nothing_runs(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    status, body, _ = await bot.command("/imagine", "a fox --size enormous")
    assert status == 200
    answer = json.loads(body)
    assert "enormous" in answer["text"] and "landscape" in answer["text"]
    assert answer.get("response_type", "ephemeral") == "ephemeral"
    await bot.settle()
    assert bot.slack.calls_to("chat.postMessage") == []
    assert fake_openai.calls("/images/generations") == []


async def test_limit_reached_reaches_only_the_user_and_the_channel_sees_nothing(make_bot: MakeBot) -> None:
    bot = await make_bot(limits={"daily_images_per_user": 1})
    await bot.command("/imagine", "first fox")
    await bot.settle()
    _, _, response_url = await bot.command("/imagine", "second fox")
    await bot.settle()

    (text,) = [b["text"] for b in bot.slack.responses_to(response_url)]
    assert "daily limit" in text and "Nothing was charged" in text
    assert len(bot.slack.calls_to("chat.postMessage")) == 2  # only the first request's placeholder and buttons
    assert len(bot.slack.completed_uploads()) == 1


async def test_policy_block_is_private_and_the_placeholder_is_removed(bot: SlackBot) -> None:
    _, _, response_url = await bot.command("/imagine", "BLOCK_OUTPUT a scene")
    await bot.settle()
    (text,) = [b["text"] for b in bot.slack.responses_to(response_url)]
    assert "safety system" in text and "Nothing was charged" in text
    assert bot.slack.completed_uploads() == []
    assert bot.slack.live_messages(CHANNEL) == []  # the placeholder came and went
    assert (await bot.service.quota(bot.requester())).used == 0


async def test_channel_the_bot_is_not_in_stops_the_job_and_refunds(bot: SlackBot) -> None:
    bot.slack.fail("chat.postMessage", "not_in_channel")
    _, _, response_url = await bot.command("/imagine", "a fox")
    await bot.settle()
    (text,) = [b["text"] for b in bot.slack.responses_to(response_url)]
    assert "/invite @imaginebot" in text
    assert bot.slack.completed_uploads() == []
    assert (await bot.service.quota(bot.requester())).used == 0


async def test_failed_upload_tells_the_user_and_gives_the_images_back(bot: SlackBot) -> None:
    bot.slack.fail("files.completeUploadExternal", "not_in_channel")
    _, _, response_url = await bot.command("/imagine", "a fox")
    await bot.settle()
    (text,) = [b["text"] for b in bot.slack.responses_to(response_url)]
    assert "Your images were made" in text and "Reference:" in text and "don't count against your daily limit" in text
    assert bot.slack.live_messages(CHANNEL) == []
    # A failed delivery never eats a quota; what OpenAI billed stays on the books.
    assert (await bot.service.quota(bot.requester())).used == 0
    (job,) = await bot.service.store.run(lambda: bot.service.store.query("SELECT status, cost_usd FROM jobs"))
    assert job["status"] == "undelivered" and job["cost_usd"] > 0


async def test_progress_placeholder_is_updated_while_the_job_runs(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(slack={"progress_update_seconds": 0.2})
    bot.service.progress_interval = 0.2
    fake_openai.latency = 1.5
    await bot.command("/imagine", "a slow fox")
    await bot.slack.wait_until(lambda: len(bot.slack.calls_to("chat.update")) >= 1)
    await bot.settle()
    update = bot.slack.calls_to("chat.update")[0]
    assert "Generating…" in update.params["text"] and "a slow fox" in update.params["text"]
    assert len(bot.slack.completed_uploads()) == 1


async def test_model_flag_outside_allowed_models_is_refused_naming_them(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(openai={"allowed_models": ["gpt-image-2", "gpt-image-2.6-flare"]})
    status, body, _ = await bot.command("/imagine", "a fox --model gpt-image-1.5")
    assert status == 200
    answer = json.loads(body)
    assert answer["text"] == "I can't use the model “gpt-image-1.5” here. You can pick gpt-image-2 or gpt-image-2.6-flare."
    await bot.settle()
    assert fake_openai.requests == [] and bot.slack.calls_to("chat.postMessage") == []
    # An allowed one goes through, and the message says which model made it.
    await bot.command("/imagine", "a fox --model gpt-image-2.6-flare --background transparent")
    await bot.settle()
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and (call.json["model"], call.json["background"]) == ("gpt-image-2.6-flare", "transparent")
    assert "gpt-image-2.6-flare" in bot.slack.completed_uploads()[0].params["initial_comment"]
