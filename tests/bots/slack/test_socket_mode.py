"""Socket Mode over a real WebSocket: the fake answers apps.connections.open
with a ws:// URL on loopback, pushes envelopes, and records the acks."""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

import pytest
from aiohttp.test_utils import make_mocked_request

from bots.slack import SlackAdapter
from core.errors import ConfigError
from tests.bots.slack.conftest import CHANNEL, png
from tests.bots.slack.test_edit import mention_event
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, TEAM_ID, FakeSlack


@pytest.fixture
async def socket_adapter(make_service: Any, slack: FakeSlack) -> AsyncIterator[SlackAdapter]:
    service = await make_service()
    adapter = SlackAdapter(service, service.config, token=BOT_TOKEN, signing_secret=None, app_token=APP_TOKEN, api_url=slack.api_url)
    await adapter.start_socket_mode()
    yield adapter
    await adapter.close(grace_seconds=5)


def command_payload(text: str, response_url: str) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM_ID,
        "team_domain": "fake",
        "channel_id": CHANNEL,
        "channel_name": "general",
        "user_id": "UALICE",
        "user_name": "alice",
        "command": "/imagine",
        "text": text,
        "api_app_id": "A0FAKE",
        "is_enterprise_install": "false",
        "response_url": response_url,
        "trigger_id": "5.socket",
    }


async def test_slash_command_over_socket_mode_is_acked_and_delivered(
    socket_adapter: SlackAdapter, slack: FakeSlack, fake_openai: FakeOpenAI
) -> None:
    await slack.wait_until(lambda: slack.socket_connected)
    assert socket_adapter.healthy
    assert [c.token for c in slack.calls_to("apps.connections.open")] == [APP_TOKEN]

    envelope_id = await slack.send_envelope("slash_commands", command_payload("a fox --n 3", slack.response_url()))
    await slack.wait_until(lambda: any(a.get("envelope_id") == envelope_id for a in slack.socket_acks))
    assert await socket_adapter.wait_for_jobs(timeout=30)

    (complete,) = slack.completed_uploads()
    assert complete.params["channel_id"] == CHANNEL and len(json.loads(complete.params["files"])) == 3
    assert fake_openai.calls("/images/generations")[0].json["prompt"] == "a fox"  # type: ignore[index]


async def test_bad_flag_over_socket_mode_comes_back_in_the_ack(socket_adapter: SlackAdapter, slack: FakeSlack) -> None:
    await slack.wait_until(lambda: slack.socket_connected)
    envelope_id = await slack.send_envelope("slash_commands", command_payload("a fox --quality ultra", slack.response_url()))
    await slack.wait_until(lambda: any(a.get("envelope_id") == envelope_id for a in slack.socket_acks))
    (ack,) = [a for a in slack.socket_acks if a["envelope_id"] == envelope_id]
    assert "ultra" in ack["payload"]["text"] and ack["payload"]["response_type"] == "ephemeral"


async def test_redelivered_event_envelopes_run_one_job(socket_adapter: SlackAdapter, slack: FakeSlack, fake_openai: FakeOpenAI) -> None:
    await slack.wait_until(lambda: slack.socket_connected)
    file = slack.add_file(png())
    msg = slack.add_message(CHANNEL, text="<@UBOT> make it green", files=[file])
    payload = {
        "team_id": TEAM_ID,
        "api_app_id": "A0FAKE",
        "event": mention_event(msg.text, ts=msg.ts, files=[file]),
        "type": "event_callback",
        "event_id": "Ev0SOCKET1",
        "event_time": int(time.time()),
    }
    first = await slack.send_envelope("events_api", payload, retry_attempt=0, retry_reason="")
    again = await slack.send_envelope("events_api", payload, retry_attempt=1, retry_reason="timeout")
    await slack.wait_until(lambda: {first, again} <= {a.get("envelope_id") for a in slack.socket_acks})
    await slack.wait_until(lambda: len(slack.completed_uploads()) == 1)
    assert await socket_adapter.wait_for_jobs(timeout=30)
    assert len(fake_openai.calls("/images/edits")) == 1


async def test_http_requests_are_refused_without_a_signing_secret(socket_adapter: SlackAdapter) -> None:
    request = make_mocked_request("POST", "/slack/events", headers={"Content-Type": "application/json"})
    response = await socket_adapter.handle_http(request)
    assert response.status == 401


async def test_a_refused_app_token_is_a_config_error(make_service: Any, slack: FakeSlack) -> None:
    service = await make_service()
    adapter = SlackAdapter(service, service.config, token=BOT_TOKEN, signing_secret=None, app_token="xapp-wrong", api_url=slack.api_url)
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        await adapter.start_socket_mode()
    await adapter.close()


async def test_neither_signing_secret_nor_app_token_is_a_config_error(make_service: Any) -> None:
    service = await make_service()
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
        SlackAdapter(service, service.config, token=BOT_TOKEN, signing_secret=None)


@pytest.mark.parametrize("how", ["text", "html", "drop"])
async def test_slack_not_answering_at_start_is_not_called_a_refused_token(make_service: Any, slack: FakeSlack, how: str) -> None:
    """A proxy's 503 is not Slack refusing the token: the operator is told what
    really happened (after a few tries), not sent to make a new token."""
    service = await make_service()
    adapter = SlackAdapter(service, service.config, token=BOT_TOKEN, signing_secret=None, app_token=APP_TOKEN, api_url=slack.api_url)
    slack.break_http("apps.connections.open", how, times=20)
    with pytest.raises(ConfigError, match="did not answer") as raised:
        await adapter.start_socket_mode()
    assert "refused" not in str(raised.value)
    await adapter.close()


async def test_one_unanswered_try_at_start_is_retried(make_service: Any, slack: FakeSlack) -> None:
    service = await make_service()
    adapter = SlackAdapter(service, service.config, token=BOT_TOKEN, signing_secret=None, app_token=APP_TOKEN, api_url=slack.api_url)
    slack.break_http("apps.connections.open", "text", times=1)
    await adapter.start_socket_mode()  # before: ConfigError "Slack refused SLACK_APP_TOKEN (http_503)"
    await slack.wait_until(lambda: adapter.healthy)
    await adapter.close()
