"""A Slack request delivered twice (a replay of the same signed body, Slack's
retries with X-Slack-Retry-Num, a Socket Mode redelivery) does its work once,
on one process or on two sharing a database: every kind of payload."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any
from urllib.parse import urlencode

import pytest

from bots.slack import SlackAdapter
from tests.bots.slack.conftest import CHANNEL, MakeBot, SlackBot, png, sign
from tests.bots.slack.test_edit import mention_event, shortcut_payload, submission_payload
from tests.bots.slack.test_lifecycle import cancel_button, click
from tests.bots.slack.test_socket_mode import command_payload, socket_adapter  # noqa: F401 (a fixture)
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM_ID, FakeSlack

FORM = "application/x-www-form-urlencoded"


def imagine_body(text: str, response_url: str, trigger_id: str, user: str = "UALICE") -> str:
    return urlencode(
        {
            "team_id": TEAM_ID,
            "channel_id": CHANNEL,
            "user_id": user,
            "command": "/imagine",
            "text": text,
            "response_url": response_url,
            "trigger_id": trigger_id,
        }
    )


async def deliver_twice(bots: list[SlackBot], body: str, content_type: str, *, retry: bool) -> None:
    """The same signed request, sent once to each of `bots` in turn (one bot:
    twice to it); with `retry`, the second copy is Slack's retry."""
    signed = sign(body)
    targets = bots if len(bots) > 1 else bots * 2
    for i, bot in enumerate(targets):
        extra = {"X-Slack-Retry-Num": str(i), "X-Slack-Retry-Reason": "http_timeout"} if retry and i else {}
        status, _ = await bot.post(body, content_type, {**signed, **extra})
        assert status == 200  # a replay is acked, so Slack stops retrying
    for bot in bots:
        await bot.settle()


@pytest.mark.parametrize("retry", [False, True], ids=["replay", "retry"])
async def test_the_same_imagine_delivered_twice_runs_and_charges_once(bot: SlackBot, fake_openai: FakeOpenAI, retry: bool) -> None:
    await deliver_twice([bot], imagine_body("a fox", bot.slack.response_url(), "7.replayed"), FORM, retry=retry)
    assert len(fake_openai.calls("/images/generations")) == 1
    assert len(bot.slack.completed_uploads()) == 1
    assert (await bot.service.quota(bot.requester())).used == 1


async def test_two_processes_on_one_database_run_a_replay_once(make_bot: MakeBot, fake_openai: FakeOpenAI, tmp_path: Any) -> None:
    db = tmp_path / "shared.db"
    first, second = await make_bot(db_path=db), await make_bot(db_path=db)
    await deliver_twice([first, second], imagine_body("a fox", first.slack.response_url(), "8.replayed"), FORM, retry=False)
    assert len(fake_openai.calls("/images/generations")) == 1
    assert (await first.service.quota(first.requester())).used == 1


async def test_a_genuine_second_imagine_with_the_same_text_still_runs(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    await bot.command("/imagine", "a fox")
    await bot.command("/imagine", "a fox")
    await bot.settle()
    assert len(fake_openai.calls("/images/generations")) == 2
    assert (await bot.service.quota(bot.requester())).used == 2


async def test_a_replayed_shortcut_opens_one_form(bot: SlackBot) -> None:
    file = bot.slack.add_file(png())
    message = bot.slack.add_message(CHANNEL, files=[file]).as_json()
    body = urlencode({"payload": json.dumps(shortcut_payload(message, bot.slack.response_url()))})
    await deliver_twice([bot], body, FORM, retry=False)
    assert len(bot.slack.calls_to("views.open")) == 1


async def test_a_replayed_form_submission_edits_once(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png())
    view = {"type": "modal", "callback_id": "edit_image_modal", "private_metadata": json.dumps({"c": CHANNEL, "t": "1.2", "f": [file["id"]]})}
    body = urlencode({"payload": json.dumps(submission_payload(view, "make it blue"))})
    await deliver_twice([bot], body, FORM, retry=True)
    assert len(fake_openai.calls("/images/edits")) == 1
    assert (await bot.service.quota(bot.requester())).used == 1


async def test_a_replayed_button_click_acts_once(make_bot: MakeBot, fake_openai: FakeOpenAI) -> None:
    bot = await make_bot(openai={"max_concurrent_calls": 1})
    fake_openai.latency = 2
    await bot.command("/imagine", "alice's fox", user="UALICE")
    await bot.slack.wait_until(lambda: fake_openai.in_flight == 1)
    await bot.command("/imagine", "bob's fox", user="UBOB")
    await bot.slack.wait_until(lambda: cancel_button(bot) is not None)
    found = cancel_button(bot)
    assert found is not None
    # Alice presses Cancel on Bob's job: she is told once that it isn't hers, however often the click arrives.
    body = urlencode({"payload": json.dumps(click("UALICE", *found, bot.slack.response_url()))})
    await deliver_twice([bot], body, FORM, retry=True)
    assert [t for t in bot.slack.ephemerals_for("UALICE") if "can cancel" in t] == ["Only <@UBOB> can cancel this request."]


async def test_a_replayed_event_edits_once(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png())
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", files=[file])
    envelope = {
        "team_id": TEAM_ID,
        "api_app_id": "A0FAKE",
        "event": mention_event(msg.text, ts=msg.ts, files=[file]),
        "type": "event_callback",
        "event_id": "Ev0REPLAY1",
        "event_time": 1700000000,
    }
    await deliver_twice([bot], json.dumps(envelope), "application/json", retry=False)
    assert len(fake_openai.calls("/images/edits")) == 1


async def test_a_socket_mode_redelivery_of_a_command_runs_once(socket_adapter: SlackAdapter, slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    await slack.wait_until(lambda: slack.socket_connected)
    payload = command_payload("a fox", slack.response_url())
    first = await slack.send_envelope("slash_commands", payload)
    again = await slack.send_envelope("slash_commands", payload)  # a new envelope, the same command
    await slack.wait_until(lambda: {first, again} <= {a.get("envelope_id") for a in slack.socket_acks})
    assert await socket_adapter.wait_for_jobs(timeout=30)
    assert len(fake_openai.calls("/images/generations")) == 1


async def test_commands_are_acked_while_the_database_is_busy_and_still_run_once(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    """The replay check before the ack is a memory look-up: a database held
    by something slow (a long write, a lock held by another process) must not
    hold up the 3-second ack. The claim that spans processes comes after."""
    release = threading.Event()
    blocked = asyncio.ensure_future(bot.service.store.run(release.wait, 60))  # the store's one thread, held
    try:
        body = imagine_body("a fox", bot.slack.response_url(), "9.busy")
        signed = sign(body)
        first = asyncio.ensure_future(bot.post(body, FORM, signed))
        replay = asyncio.ensure_future(bot.post(body, FORM, signed))
        done, _ = await asyncio.wait({first, replay}, timeout=20)
        # Before the fix both waited for the database (and this timed out).
        assert done == {first, replay}
        assert [t.result()[0] for t in (first, replay)] == [200, 200]
        assert not blocked.done()  # the acks did not wait for the store
    finally:
        release.set()
        await blocked
    await bot.settle()
    assert len(fake_openai.calls("/images/generations")) == 1
    assert (await bot.service.quota(bot.requester())).used == 1
