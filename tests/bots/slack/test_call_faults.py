"""Every Slack call the bot makes, failing below Slack's JSON: a proxy's 503
text/plain, a 502 HTML page, a connection dropped without an answer.

Whatever breaks, the user ends up told once and truthfully, images that were
not delivered go back on their limit, and no message keeps saying the job is
under way."""

from __future__ import annotations

from typing import Any

import json

import pytest

from tests.bots.slack.conftest import CHANNEL, MakeBot, SlackBot, png
from tests.bots.slack.test_edit import mention_event, shortcut_payload, submission_payload
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import FILE_HOST, RAW_FAILURES, RESPONSE_URL, UPLOAD, FakeSlack

# A dropped connection is retried by the SDKs (and aiohttp): enough failures queued to outlast that.
TIMES = 8
HOW = pytest.mark.parametrize("how", RAW_FAILURES)


def told(slack: FakeSlack, user: str = "UALICE") -> list[str]:
    """Everything said privately to `user`, whichever way it went."""
    dms = [c.params.get("text", "") for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == user and not c.failed]
    return slack.ephemerals_for(user) + dms


def still_in_progress(slack: FakeSlack) -> list[str]:
    """Channel messages that still say a job is waiting or running."""
    return [m.text for m in slack.live_messages(CHANNEL) if ":hourglass" in m.text or (m.blocks and not result_buttons(m))]


def result_buttons(message: Any) -> bool:
    """The message with the buttons under a result (it follows the images)."""
    return any(b.get("type") == "actions" for b in message.blocks or [])


async def job_statuses(bot: SlackBot) -> list[str]:
    rows = await bot.service.store.run(lambda: bot.service.store.query("SELECT status FROM jobs"))
    return [r["status"] for r in rows]


@HOW
@pytest.mark.parametrize("method", ["files.getUploadURLExternal", UPLOAD, "files.completeUploadExternal"])
async def test_a_broken_upload_gives_the_images_back_and_says_so_once(bot: SlackBot, method: str, how: str) -> None:
    bot.slack.break_http(method, how, times=TIMES)
    await bot.command("/imagine", "a fox")
    await bot.settle()
    (text,) = told(bot.slack)
    assert "Your images were made" in text and "don't count against your daily limit" in text
    assert bot.slack.completed_uploads() == [] or method == "files.completeUploadExternal"
    assert (await bot.service.quota(bot.requester())).used == 0
    assert await job_statuses(bot) == ["undelivered"]
    assert still_in_progress(bot.slack) == []


@HOW
async def test_a_placeholder_that_cannot_be_deleted_stops_saying_generating(bot: SlackBot, how: str) -> None:
    bot.slack.break_http("chat.delete", how, times=TIMES)
    await bot.command("/imagine", "a fox")
    await bot.settle()
    assert len(bot.slack.completed_uploads()) == 1
    assert told(bot.slack) == []  # the images are the answer
    assert (await bot.service.quota(bot.requester())).used == 1
    assert still_in_progress(bot.slack) == []
    (ended,) = [m for m in bot.slack.live_messages(CHANNEL) if not m.files and not result_buttons(m)]
    assert "a fox" in ended.text and "ended" in ended.text


@HOW
async def test_upload_and_delete_both_broken_still_refunds_and_ends_the_placeholder(bot: SlackBot, how: str) -> None:
    bot.slack.break_http("files.completeUploadExternal", how, times=TIMES)
    bot.slack.break_http("chat.delete", how, times=TIMES)
    await bot.command("/imagine", "a fox")
    await bot.settle()
    (text,) = told(bot.slack)
    assert "Your images were made" in text
    assert (await bot.service.quota(bot.requester())).used == 0
    assert still_in_progress(bot.slack) == []


@HOW
@pytest.mark.parametrize("method", ["chat.postMessage", "chat.update"])
async def test_broken_progress_messages_do_not_stop_the_job(make_bot: MakeBot, fake_openai: FakeOpenAI, method: str, how: str) -> None:
    bot = await make_bot(slack={"progress_update_seconds": 0.2})
    bot.service.progress_interval = 0.2
    fake_openai.latency = 1.2
    bot.slack.break_http(method, how, times=50)
    await bot.command("/imagine", "a fox")
    await bot.settle()
    assert bot.slack.calls_to(method)  # the broken call was tried
    assert len(bot.slack.completed_uploads()) == 1
    assert (await bot.service.quota(bot.requester())).used == 1
    assert told(bot.slack) == []
    assert still_in_progress(bot.slack) == []


@HOW
async def test_a_broken_response_url_falls_back_to_an_ephemeral(bot: SlackBot, how: str) -> None:
    bot.slack.break_http(RESPONSE_URL, how, times=TIMES)
    await bot.command("/imagine", "BLOCK_INPUT a scene")
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "safety system" in ephemeral.params["text"]
    assert len(told(bot.slack)) == 1


@HOW
async def test_broken_response_url_and_ephemeral_fall_back_to_a_direct_message(bot: SlackBot, how: str) -> None:
    bot.slack.break_http(RESPONSE_URL, how, times=TIMES)
    bot.slack.break_http("chat.postEphemeral", how, times=TIMES)
    await bot.command("/imagine", "BLOCK_INPUT a scene")
    await bot.settle()
    (text,) = told(bot.slack)
    assert "safety system" in text
    assert [c.params["channel"] for c in bot.slack.calls_to("chat.postMessage") if "safety" in c.params.get("text", "")] == ["UALICE"]


@HOW
async def test_a_broken_views_open_says_the_form_did_not_open(bot: SlackBot, how: str) -> None:
    bot.slack.break_http("views.open", how, times=TIMES)
    file = bot.slack.add_file(png())
    message = bot.slack.add_message(CHANNEL, files=[file]).as_json()
    response_url = bot.slack.response_url()
    await bot.interactive(shortcut_payload(message, response_url))
    await bot.settle()
    (answer,) = bot.slack.responses_to(response_url)
    assert "couldn't open the Edit image form" in answer["text"]
    assert len(told(bot.slack)) == 1


@HOW
async def test_a_broken_files_info_refuses_the_edit_before_any_money(bot: SlackBot, fake_openai: FakeOpenAI, how: str) -> None:
    file = bot.slack.add_file(png())
    view = {"type": "modal", "callback_id": "edit_image_modal", "private_metadata": json.dumps({"c": CHANNEL, "t": "1.2", "f": [file["id"]]})}
    bot.slack.break_http("files.info", how, times=TIMES)
    await bot.interactive(submission_payload(view, "make it blue"))
    await bot.settle()
    (text,) = told(bot.slack)
    assert "can't open one of the files" in text
    assert fake_openai.requests == []
    assert await job_statuses(bot) == []


@HOW
async def test_a_broken_file_download_refuses_the_edit_before_any_money(bot: SlackBot, fake_openai: FakeOpenAI, how: str) -> None:
    file = bot.slack.add_file(png(), name="cat.png")
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", files=[file])
    bot.slack.break_http(FILE_HOST, how, times=TIMES)
    await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    await bot.settle()
    (text,) = told(bot.slack)
    assert "cat.png" in text
    assert fake_openai.requests == []
    assert await job_statuses(bot) == []


@HOW
async def test_a_broken_thread_lookup_says_no_image_was_found(bot: SlackBot, fake_openai: FakeOpenAI, how: str) -> None:
    root = bot.slack.add_message(CHANNEL, text="planning")
    reply = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", thread_ts=root.ts)
    bot.slack.break_http("conversations.replies", how, times=TIMES)
    await bot.event(mention_event(reply.text, ts=reply.ts, thread_ts=root.ts))
    await bot.settle()
    (text,) = told(bot.slack)
    assert "didn't find an image of mine" in text
    assert fake_openai.requests == []


@HOW
async def test_a_broken_users_info_fails_closed_for_admin_commands(bot: SlackBot, how: str) -> None:
    bot.slack.break_http("users.info", how, times=TIMES)
    _, _, response_url = await bot.command("/imagine-admin", "limit <@UBOB|bob> 50", user="UADMIN")
    await bot.settle()
    (answer,) = bot.slack.responses_to(response_url)
    assert "admin" in answer["text"].lower()
    assert "50" not in answer["text"]
