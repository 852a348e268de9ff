"""The Cancel button, shutdown with running jobs, and interrupted-job notices."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

import pytest

from bots.slack.payloads import Origin
from core.models import InterruptedJob
from tests.bots.slack.conftest import CHANNEL, MakeBot, SlackBot, block_actions
from tests.bots.slack.test_edit import mention_event
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM_ID, Message


def cancel_button(bot: SlackBot) -> tuple[str, str] | None:
    """(message ts, job id) of a placeholder that offers Cancel, if any."""
    for message in bot.slack.live_messages(CHANNEL):
        for block in message.blocks or []:
            accessory = block.get("accessory") or {}
            if accessory.get("action_id") == "imagine_cancel":
                return message.ts, accessory["value"]
    return None


def click(user: str, ts: str, value: str, response_url: str) -> dict[str, Any]:
    message = {"type": "message", "ts": ts, "text": "placeholder"}
    return block_actions(user, "imagine_cancel", value, response_url, ts=ts, message=message)


async def test_cancel_button_stops_a_queued_job_for_its_owner_only(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(openai={"max_concurrent_calls": 1})
    fake_openai.latency = 3  # Alice's job holds the only model slot; Bob's waits in line
    await bot.command("/imagine", "alice's fox", user="UALICE")
    await bot.slack.wait_until(lambda: fake_openai.in_flight == 1)
    _, _, bob_url = await bot.command("/imagine", "bob's fox", user="UBOB")
    await bot.slack.wait_until(lambda: cancel_button(bot) is not None)
    found = cancel_button(bot)
    assert found is not None
    ts, job_id = found

    alice_url = bot.slack.response_url()
    await bot.interactive(click("UALICE", ts, job_id, alice_url))
    await bot.slack.wait_until(lambda: bool(bot.slack.responses_to(alice_url)))
    assert bot.slack.responses_to(alice_url)[0]["text"] == "Only <@UBOB> can cancel this request."

    click_url = bot.slack.response_url()
    await bot.interactive(click("UBOB", ts, job_id, click_url))
    await bot.settle()

    assert [b["text"] for b in bot.slack.responses_to(bob_url)] == ["Cancelled. Nothing was charged."]
    assert (await bot.service.quota(bot.requester("UBOB"))).used == 0
    (upload,) = bot.slack.completed_uploads()  # Alice's only
    assert "alice's fox" in upload.params["initial_comment"]
    assert not any(m.ts == ts for m in bot.slack.live_messages(CHANNEL))
    assert len(fake_openai.calls("/images/generations")) == 1


async def test_close_cancels_running_jobs_refunds_and_tells_the_user(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    fake_openai.latency = 5
    _, _, response_url = await bot.command("/imagine", "a fox")
    await bot.slack.wait_until(lambda: bool(bot.slack.calls_to("chat.postMessage")))
    assert bot.adapter.healthy

    await bot.adapter.close(grace_seconds=0)

    assert not bot.adapter.healthy
    (answer,) = bot.slack.responses_to(response_url)
    assert "restarting" in answer["text"] and "Nothing was charged" in answer["text"]
    assert (await bot.service.quota(bot.requester())).used == 0
    assert bot.slack.live_messages(CHANNEL) == []  # no stale placeholder left behind


async def test_during_the_grace_period_new_commands_are_turned_away_and_running_jobs_finish(
    bot: SlackBot, fake_openai: FakeOpenAI
) -> None:
    fake_openai.latency = 1
    await bot.command("/imagine", "a fox")
    await bot.slack.wait_until(lambda: fake_openai.in_flight == 1)
    closing = asyncio.create_task(bot.adapter.close(grace_seconds=30))
    await asyncio.sleep(0)  # let close() begin

    status, body, _ = await bot.command("/imagine", "another fox")
    assert status == 200 and "restarting" in body
    await closing
    assert len(bot.slack.completed_uploads()) == 1
    assert len(fake_openai.calls("/images/generations")) == 1


def interrupted(notify: dict[str, Any]) -> InterruptedJob:
    return InterruptedJob(
        job_id="job123",
        requester_key=f"slack:{TEAM_ID}:UALICE",
        kind="generate",
        prompt="a fox",
        notify=notify,
        created_at=datetime.now(timezone.utc),
    )


async def test_interrupted_job_is_announced_through_response_url(bot: SlackBot) -> None:
    response_url = bot.slack.response_url()
    origin = Origin(team=TEAM_ID, user="UALICE", channel=CHANNEL, response_url=response_url)
    assert await bot.adapter.announce_interrupted(interrupted(origin.notify()))
    (answer,) = bot.slack.responses_to(response_url)
    assert "interrupted" in answer["text"] and "Nothing was charged" in answer["text"] and "a fox" in answer["text"]


async def test_interrupted_job_falls_back_to_an_ephemeral_when_response_url_expired(bot: SlackBot) -> None:
    expired = f"{bot.slack.base_url}/response/expired"
    origin = Origin(team=TEAM_ID, user="UALICE", channel=CHANNEL, thread_ts="1.5", response_url=expired, user_thread_ts="1.5")
    assert await bot.adapter.announce_interrupted(interrupted(origin.notify()))
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == "UALICE" and ephemeral.params["thread_ts"] == "1.5"
    assert "interrupted" in ephemeral.params["text"]


async def test_jobs_of_other_platforms_are_not_announced(bot: SlackBot) -> None:
    assert not await bot.adapter.announce_interrupted(interrupted({"discord_interaction_token": "x"}))
    assert bot.slack.calls == []


async def test_an_unexpected_error_gets_a_short_apology_with_a_reference_and_is_logged(
    bot: SlackBot, caplog: pytest.LogCaptureFixture
) -> None:
    # Slack answering something the bot does not expect (a thread message
    # whose ts is not a number) must end in an apology, not in silence.
    root = bot.slack.add_message(CHANNEL, text="planning")
    bot.slack.messages.append(Message(CHANNEL, "not-a-ts", "UBOT", "", root.ts, None, [{"id": "F1", "mimetype": "image/png"}]))
    reply = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", thread_ts=root.ts)
    await bot.event(mention_event(reply.text, ts=reply.ts, thread_ts=root.ts))
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.params["text"].startswith("Sorry, something went wrong on my side")
    reference = ephemeral.params["text"].rsplit("Reference: ", 1)[1].rstrip(")")
    assert any(reference in r.getMessage() and r.exc_info for r in caplog.records)
