"""`/imagine … --relax` on Slack end to end: signed command → bolt → the core's
relax queue → the fake Batch API → the Slack courier → files_upload_v2 into
the fake Slack, with the relax loop running on small intervals from config."""

from __future__ import annotations

import asyncio

import uuid
from typing import Any

from core.models import ImageOptions
from tests.bots.slack.conftest import CHANNEL, MakeBot, SlackBot, png
from tests.bots.slack.test_edit import mention_event
from tests.core.scenario import rows, until
from tests.bots.slack.test_buttons import buttons_messages
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM_ID

QUICK = {"relax": {"flush_seconds": 0.05, "poll_seconds": 0.05}}
SLOW_FLUSH = {"relax": {"flush_seconds": 3600, "poll_seconds": 0.05}}


def relax_click(user: str, value: str, response_url: str) -> dict[str, Any]:
    return {
        "type": "block_actions", "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user, "team_id": TEAM_ID, "name": user.lower()}, "api_app_id": "A0FAKE",
        "token": "legacy-verification-token", "trigger_id": f"111.{uuid.uuid4().hex}",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL, "is_ephemeral": True},
        "channel": {"id": CHANNEL, "name": "general"}, "response_url": response_url,
        "actions": [{"action_id": "imagine_relax_cancel", "block_id": "b1", "type": "button", "value": value,
                     "action_ts": "1700000001.1"}],
    }  # fmt: skip


def start_relax(bot: SlackBot) -> None:
    bot.service.relax.start({"slack": bot.adapter.courier})


async def queued_job_id(bot: SlackBot, response_url: str) -> str:
    await until(lambda: bot.slack.responses_to(response_url), "the queued note")
    (note,) = bot.slack.responses_to(response_url)
    return str(note["blocks"][0]["accessory"]["value"])


async def test_a_relax_job_is_queued_privately_then_posted_in_the_thread_mentioning_the_requester_at_half_price(
    make_bot: MakeBot, fake_openai: FakeOpenAI
) -> None:
    bot = await make_bot(**QUICK)
    fake_openai.batch_delay = 3600  # the batch takes its time
    status, body, response_url = await bot.command("/imagine", "a quiet harbor --relax", thread_ts="1699999999.000100")
    assert (status, body) == (200, "")
    await bot.settle()

    (note,) = bot.slack.responses_to(response_url)
    assert note["response_type"] == "ephemeral" and "relax mode" in note["text"] and "half price" in note["text"]
    button = note["blocks"][0]["accessory"]
    assert button["text"]["text"] == "Cancel" and button["action_id"] == "imagine_relax_cancel"
    job_id = button["value"]
    assert bot.slack.calls_to("chat.postMessage") == []  # no placeholder: nothing happens in the channel yet
    assert fake_openai.calls("/images/generations") == []  # never the fast endpoint

    start_relax(bot)
    await until(lambda: fake_openai.batches, "the batch submitted")
    batch = next(iter(fake_openai.batches.values()))
    assert [line["custom_id"] for line in batch.lines] == [job_id]
    await until(lambda: batch.polls >= 2, "the batch polled while it runs")
    assert bot.slack.completed_uploads() == []
    batch.ready_at = 0  # it completes
    await until(lambda: bot.slack.completed_uploads(), "the result posted")

    (upload,) = bot.slack.completed_uploads()
    assert upload.params["channel_id"] == CHANNEL and upload.params["thread_ts"] == "1699999999.000100"
    assert "<@UALICE>" in upload.params["initial_comment"] and "a quiet harbor" in upload.params["initial_comment"]
    assert all(u.data.startswith(b"\x89PNG") for u in bot.slack.uploads)
    # The buttons under every result, right after it in the thread, and the result remembered for them and /history.
    await until(lambda: buttons_messages(bot), "the buttons posted")
    (buttons,) = buttons_messages(bot)
    assert buttons.thread_ts == "1699999999.000100"
    assert [e["value"] for b in buttons.blocks or [] if b.get("type") == "actions" for e in b["elements"]] == [job_id] * 6
    for _ in range(1000):  # recorded just after Slack took the buttons (bounded: a bug fails, never hangs)
        if (remembered := await bot.service.results.result(job_id)) is not None:
            break
        await asyncio.sleep(0.01)
    assert remembered is not None and remembered["ts"] == buttons.ts
    # Half the fast price of the same usage, as the ledger records it.
    fast = await bot.service.generate(bot.requester("UBOB"), "a quiet harbor", ImageOptions())
    (job,) = await rows(bot.service, "SELECT status, cost_usd FROM jobs WHERE id = ?", (job_id,))
    assert job == {"status": "succeeded", "cost_usd": fast.cost_usd / 2}
    await bot.service.relax.run_once(force=True)  # another round finds nothing left to do
    assert len(bot.slack.completed_uploads()) == 1  # posted once


async def test_cancel_before_the_batch_goes_out_refunds_and_after_it_says_too_late(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(**SLOW_FLUSH)
    _, _, response_url = await bot.command("/imagine", "a quiet harbor --relax")
    job_id = await queued_job_id(bot, response_url)

    await bot.interactive(relax_click("UBOB", job_id, bot.slack.response_url()))
    await bot.settle()
    await bot.interactive(relax_click("UALICE", job_id, response_url))
    await bot.settle()
    answers = [r["text"] for r in bot.slack.responses_to(response_url)[1:]]
    assert answers == ["Cancelled. Nothing was charged."]
    (job,) = await rows(bot.service, "SELECT status, units, usd, error_code FROM jobs")
    assert job == {"status": "failed", "units": 0, "usd": 0, "error_code": "cancelled"}

    _, _, second_url = await bot.command("/imagine", "another harbor --relax")
    second = await queued_job_id(bot, second_url)
    fake_openai.batch_delay = 3600
    await bot.service.relax.run_once(force=True)  # the batch goes out
    await bot.interactive(relax_click("UALICE", second, second_url))
    await bot.settle()
    assert "can no longer be cancelled" in bot.slack.responses_to(second_url)[-1]["text"]
    assert [line["custom_id"] for b in fake_openai.batches.values() for line in b.lines] == [second]


async def test_a_blocked_relax_line_is_refunded_and_told_only_to_its_requester(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(**QUICK)
    await bot.command("/imagine", "BLOCK_OUTPUT a harbor --relax", user="UBOB")
    await bot.settle()
    start_relax(bot)
    await until(lambda: len(bot.slack.ephemerals_for("UBOB")) == 2, "Bob told")
    (told, queued) = bot.slack.ephemerals_for("UBOB")  # the block (chat.postEphemeral), the queued note (response_url)
    assert "Queued in relax mode" in queued
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == "UBOB" and ephemeral.params["channel"] == CHANNEL
    assert told == ephemeral.params["text"] and "not made" in told and "Nothing was charged" in told
    assert bot.slack.completed_uploads() == [] and bot.slack.calls_to("chat.postMessage") == []
    (job,) = await rows(bot.service, "SELECT status, units, usd FROM jobs")
    assert job == {"status": "blocked", "units": 0, "usd": 0}


async def test_relax_turned_off_is_refused_privately_before_anything_is_charged(make_bot: MakeBot) -> None:
    bot = await make_bot(relax={"enabled": False})
    _, _, response_url = await bot.command("/imagine", "a quiet harbor --relax")
    await bot.settle()
    (answer,) = bot.slack.responses_to(response_url)
    assert "Relax mode is turned off" in answer["text"]
    assert await rows(bot.service, "SELECT * FROM jobs") == []


async def test_an_edit_asked_with_relax_is_refused_privately_before_anything_is_charged(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png())
    msg = bot.slack.add_message(CHANNEL, text=f"<@{bot.slack.bot_user_id}> make it watercolor --relax", files=[file])
    await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    await bot.settle()
    (told,) = bot.slack.ephemerals_for("UALICE")
    assert "new images only, not edits" in told
    assert fake_openai.requests == [] and await rows(bot.service, "SELECT * FROM jobs") == []
