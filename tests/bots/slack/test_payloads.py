"""Reading Slack's text: mentions, escaping, admin commands, file picking."""

from __future__ import annotations

from bots.slack.admin_commands import AdminCommand, parse_admin_command
from bots.slack.files import image_files, latest_bot_images, token_hosts
from bots.slack.payloads import mentioned_users, names_size, strip_mention, unescape
from bots.slack.render import escape, render_result, shorten
from core.models import ImageOptions, ImageResult, Requester, Usage


def test_strip_mention_keeps_the_rest_as_typed() -> None:
    assert strip_mention("<@UBOT> make it  watercolor", "UBOT") == "make it  watercolor"
    assert strip_mention("<@UBOT|imaginebot> 水彩画にして &amp; more", "UBOT") == "水彩画にして & more"
    assert strip_mention("ask <@UBOB> about <@UBOT>", "UBOT") == "ask <@UBOB> about"


def test_unescape_and_escape_are_inverse_on_slack_control_characters() -> None:
    typed = "a < b & c > d &amp;"
    assert unescape(escape(typed)) == typed


def test_mentions_in_escaped_command_text() -> None:
    assert mentioned_users("limit <@U0123ABC|alex> 5") == ["U0123ABC"]
    assert mentioned_users("limit @alex 5") == []


def test_names_size_follows_the_flag_syntax() -> None:
    assert names_size("make it blue --size portrait")
    assert names_size("make it blue —s=square")
    assert not names_size("make it the size of a house --n 2")


def test_admin_commands() -> None:
    assert parse_admin_command("limit <@U1|a> 20") == AdminCommand("limit", "U1", 20)
    assert parse_admin_command("LIMIT <@U1|a> default") == AdminCommand("limit", "U1", None)
    assert parse_admin_command("reset <@U1|a>") == AdminCommand("reset", "U1")
    assert parse_admin_command("budget $1,250.50") == AdminCommand("budget", usd=1250.5)
    for bad in ("", "limit @a 20", "limit <@U1|a> -3", "budget -1", "budget inf", "budget lots", "reset", "fly"):
        assert parse_admin_command(bad) is None, bad


def test_image_files_and_the_bots_latest_image() -> None:
    png = {"id": "F1", "mimetype": "image/png", "url_private": "https://files.slack.com/x"}
    pdf = {"id": "F2", "mimetype": "application/pdf", "filetype": "pdf", "url_private": "https://files.slack.com/y"}
    stub = {"id": "F3", "file_access": "check_file_info"}
    assert image_files({"files": [png, pdf, stub]}) == [png, stub]
    thread = [
        {"ts": "1.0", "user": "UBOT", "files": [png]},
        {"ts": "2.0", "user": "UALICE", "files": [png]},
        {"ts": "3.0", "user": "UBOT", "files": [dict(png, id="F9")]},
        {"ts": "5.0", "user": "UBOT", "files": [dict(png, id="F10")]},
    ]
    assert [f["id"] for f in latest_bot_images(thread, bot_user_id="UBOT", before_ts="4.0")] == ["F9"]
    assert latest_bot_images(thread, bot_user_id="UBOT", before_ts="0.5") == []


def test_token_hosts() -> None:
    # Origins: scheme, host and port all count.
    assert token_hosts(None) == {"https://files.slack.com:443"}
    assert token_hosts("https://slack-proxy.internal:8443/api/") == {"https://files.slack.com:443", "https://slack-proxy.internal:8443"}


def test_result_caption_shows_long_prompts_shortened_and_escaped() -> None:
    prompt = "<b>" + "x" * 2000
    result = ImageResult(
        job_id="j1", kind="generate", requester=Requester("slack", "T", "U1"), prompt=prompt,
        options=ImageOptions(), images=(), model="gpt-image-2", usage=Usage(), cost_usd=0.0, elapsed_seconds=1.0,
    )
    caption = render_result(result, user_id="U1")
    assert caption.startswith("<@U1> asked for: “&lt;b&gt;xxx")
    assert "…”" in caption and len(caption) < 800
    assert shorten("short") == "short"
