"""The manifest matches what the app handles; doctor checks token and scopes."""

from __future__ import annotations

from bots.slack.doctor import check_app_token, check_slack
from bots.slack.manifest import BOT_SCOPES, manifest_data, slack_manifest
from tests.bots.slack.conftest import CHANNEL, SlackBot
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, TEAM_ID, FakeSlack


async def test_every_command_and_subscribed_event_in_the_manifest_has_a_listener(bot: SlackBot) -> None:
    data = manifest_data("https://bot.example.com")
    for command in data["features"]["slash_commands"]:
        status, _, _ = await bot.command(command["command"], "")
        assert status == 200, command["command"]  # bolt answers 404 to what nobody listens to
    for event_type in data["settings"]["event_subscriptions"]["bot_events"]:
        event = {"type": event_type, "user": "UALICE", "text": "<@UBOT>", "ts": "1700000000.000001", "channel": CHANNEL}
        status, _ = await bot.event(event)
        assert status == 200, event_type
    (shortcut,) = data["features"]["shortcuts"]
    status, _ = await bot.interactive(
        {
            "type": "message_action",
            "callback_id": shortcut["callback_id"],
            "trigger_id": "1.2.3",
            "team": {"id": TEAM_ID},
            "user": {"id": "UALICE", "team_id": TEAM_ID},
            "channel": {"id": CHANNEL},
            "message": {"type": "message", "ts": "1700000000.000002", "text": "hi"},
            "response_url": bot.slack.response_url(),
        }
    )
    assert status == 200
    await bot.settle()


def test_http_manifest_points_commands_events_and_interactivity_at_one_url() -> None:
    data = manifest_data("https://bot.example.com")
    url = "https://bot.example.com/slack/events"
    assert {c["url"] for c in data["features"]["slash_commands"]} == {url}
    assert data["settings"]["event_subscriptions"]["request_url"] == url
    assert data["settings"]["interactivity"] == {"is_enabled": True, "request_url": url}
    assert data["settings"]["socket_mode_enabled"] is False
    assert data["oauth_config"]["scopes"]["bot"] == list(BOT_SCOPES)
    assert manifest_data(url) == data  # a full URL is taken as given


def test_socket_mode_manifest_has_no_urls() -> None:
    text = slack_manifest(None)
    assert "socket_mode_enabled: true" in text
    assert not any(line.strip().startswith(("url:", "request_url:")) for line in text.splitlines())


def test_manifest_yaml_is_block_style_with_quoted_strings() -> None:
    text = slack_manifest("https://bot.example.com")
    lines = text.splitlines()
    assert lines[0] == "display_information:"
    assert '    - command: "/imagine"' in lines
    assert '      should_escape: false' in lines
    assert '      - "users:read"' in lines
    assert '    request_url: "https://bot.example.com/slack/events"' in lines
    assert all(not line.endswith(" ") for line in lines)


async def test_doctor_passes_with_every_scope(slack: FakeSlack) -> None:
    findings = await check_slack(BOT_TOKEN, slack.api_url)
    assert all(ok for ok, _ in findings), findings
    assert any("every scope" in text for _, text in findings)


async def test_doctor_names_missing_scopes_and_how_to_fix() -> None:
    async with FakeSlack(scopes=("commands", "chat:write", "files:write")) as slack:
        findings = await check_slack(BOT_TOKEN, slack.api_url)
    failed = [text for ok, text in findings if not ok]
    assert len(failed) == 1
    assert "users:read" in failed[0] and "files:read" in failed[0] and "reinstall" in failed[0]


async def test_doctor_reports_a_refused_token(slack: FakeSlack) -> None:
    findings = await check_slack("xoxb-revoked-fake", slack.api_url)
    assert findings == [(False, findings[0][1])]
    assert "refused" in findings[0][1] and "OAuth & Permissions" in findings[0][1]


async def test_doctor_reports_an_unreachable_api() -> None:
    findings = await check_slack(BOT_TOKEN, "http://127.0.0.1:9/api/")
    assert [ok for ok, _ in findings] == [False]
    assert "Could not reach" in findings[0][1]


async def test_doctor_reports_a_proxy_error_page_as_such(slack: FakeSlack) -> None:
    slack.break_http("auth.test", "text")
    findings = await check_slack(BOT_TOKEN, slack.api_url)
    assert [ok for ok, _ in findings] == [False]
    assert "HTTP 503" in findings[0][1] and "refused" not in findings[0][1]


async def test_doctor_reports_a_proxy_error_page_for_the_app_token_as_such(slack: FakeSlack) -> None:
    slack.break_http("apps.connections.open", "text")
    ok, text = await check_app_token(APP_TOKEN, slack.api_url)
    assert not ok and "HTTP 503" in text and "refused" not in text
