"""Signatures, retried events, and where the bot token may go."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from tests.bots.slack.conftest import CHANNEL, SlackBot, png, sign
from tests.bots.slack.test_edit import mention_event
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_TOKEN, LOGIN_PAGE, TEAM_ID, ForeignHost


def imagine_form(text: str = "a fox") -> str:
    return urlencode(
        {
            "team_id": TEAM_ID,
            "channel_id": CHANNEL,
            "user_id": "UALICE",
            "command": "/imagine",
            "text": text,
            "response_url": "http://127.0.0.1:9/never",
            "trigger_id": "1.forged",
        }
    )


async def test_forged_signature_gets_401_and_does_nothing(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    body = imagine_form()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, secret="not-the-secret")}
    async with bot.http.post(bot.url, data=body, headers=headers) as resp:
        assert resp.status == 401
    await bot.settle()
    assert bot.slack.calls == []
    assert fake_openai.requests == []


async def test_stale_signature_gets_401_even_when_correctly_signed(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    body = imagine_form()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(body, timestamp=int(time.time()) - 600)}
    async with bot.http.post(bot.url, data=body, headers=headers) as resp:
        assert resp.status == 401
    await bot.settle()
    assert bot.slack.calls == []
    assert fake_openai.requests == []


async def test_unsigned_request_gets_401(bot: SlackBot) -> None:
    async with bot.http.post(bot.url, data=imagine_form(), headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 401


async def test_body_changed_after_signing_gets_401(bot: SlackBot) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded", **sign(imagine_form("a fox"))}
    async with bot.http.post(bot.url, data=imagine_form("a wolf"), headers=headers) as resp:
        assert resp.status == 401


async def test_retried_and_duplicate_events_run_one_job(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png())
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", files=[file])
    event = mention_event(msg.text, ts=msg.ts, files=[file])
    assert (await bot.event(event, event_id="Ev0RETRY1"))[0] == 200
    assert (await bot.event(event, event_id="Ev0RETRY1", retry_num=1))[0] == 200
    assert (await bot.event(event, event_id="Ev0RETRY1", retry_num=2))[0] == 200
    await bot.settle()
    assert len(fake_openai.calls("/images/edits")) == 1
    assert len(bot.slack.completed_uploads()) == 1


async def test_token_never_goes_to_a_foreign_file_host(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    async with ForeignHost(png()) as foreign:
        file = bot.slack.add_file(png(), name="elsewhere.png", url=foreign.url("/files/elsewhere.png"))
        msg = bot.slack.add_message(CHANNEL, text="<@UBOT> edit", files=[file])
        await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
        await bot.settle()
        assert all(r.authorization is None for r in foreign.requests)
        assert all(BOT_TOKEN not in json.dumps(r.headers) for r in foreign.requests)
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "localhost" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []


async def test_redirect_to_another_host_does_not_carry_the_token(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    async with ForeignHost(png()) as foreign:
        file = bot.slack.add_file(png(), name="moved.png", redirect_to=foreign.url("/stolen"))
        msg = bot.slack.add_message(CHANNEL, text="<@UBOT> edit", files=[file])
        await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
        await bot.settle()
        assert all(r.authorization is None for r in foreign.requests)
    # The token did go to Slack's own file host, which answered the redirect.
    assert [r.authorization for r in bot.slack.file_requests] == [f"Bearer {BOT_TOKEN}"]
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "moved.png" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []


async def test_html_login_page_instead_of_an_image_is_refused_clearly(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    # Slack answers 200 with an HTML sign-in page when a file request is not authorised.
    file = bot.slack.add_file(LOGIN_PAGE, name="photo.png", mimetype="image/png", content_type="text/html")
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> edit", files=[file])
    await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "photo.png" in ephemeral.params["text"] and "text/html" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_token_appears_in_no_message_sent_anywhere(bot: SlackBot) -> None:
    await bot.command("/imagine", "BLOCK_INPUT something")
    await bot.command("/imagine", "a fox --n 99")
    await bot.command("/imagine", "a fox")
    await bot.settle()
    for call in bot.slack.calls:
        assert BOT_TOKEN not in json.dumps(call.params)
    for bodies in bot.slack.responses.values():
        assert BOT_TOKEN not in json.dumps(bodies)


async def test_token_never_goes_to_another_port_of_the_api_host(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    # SLACK_API_URL is http://127.0.0.1:<port>/api/; the same host on another port is another server.
    async with ForeignHost(png()) as other:
        url = f"http://127.0.0.1:{other.port}/files-pri/T0FAKE-F1/photo.png"
        file = bot.slack.add_file(png(), name="photo.png", url=url)
        msg = bot.slack.add_message(CHANNEL, text="<@UBOT> edit", files=[file])
        await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
        await bot.settle()
        assert other.requests == []
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "127.0.0.1" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []
