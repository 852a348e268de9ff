"""What the user sees, and what they pay, when Discord calls fail the way
proxies and networks fail: a raw 503 (text or HTML, not Discord's JSON) or a
connection dropped without an answer, on each kind of call the bot makes.

The rule (SPEC §4): a result the user paid for is never lost. If it cannot be
delivered, the images go back on the user's limit, the user is told once and
truthfully, and the "thinking…"/progress placeholder goes. An error meant for
the user alone never turns public because a call failed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from bots.discord import DiscordAdapter
from core.models import Requester
from tests.bots.discord.conftest import crash_mid_job, png_bytes
from tests.fakes.discord_server import EPHEMERAL, ROUTES, FakeDiscord, FakeInteraction
from tests.fakes.openai_server import FakeOpenAI

ALICE = "700000000000000001"
BOB = "700000000000000002"
RAW_FAULTS = ("503-text", "drop")

_real_sleep = asyncio.sleep


class _NoBackoff:
    """asyncio, except that discord.py's back-off between its own 5xx retries
    takes no time: the retries still happen (the fake counts them), the test
    just does not wait 25 s for them."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    @staticmethod
    async def sleep(delay: float, result: Any = None) -> Any:
        return await _real_sleep(0, result)


@pytest.fixture(autouse=True)
def no_discord_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.webhook.async_, "asyncio", _NoBackoff())
    monkeypatch.setattr(discord.http, "asyncio", _NoBackoff())


def _quota_used(adapter: DiscordAdapter, user: str = ALICE) -> Any:
    return adapter.service.quota(Requester(platform="discord", workspace="900000000000000001", user=user))


def _private(ix: FakeInteraction) -> list[str]:
    return [m["content"] for m in ix.messages() if m["flags"] & EPHEMERAL]


async def _settled(fake: FakeDiscord, adapter: DiscordAdapter, ix: FakeInteraction) -> None:
    """The interaction was answered and its job (if any) has ended."""
    await fake.wait_until(lambda: ix.callbacks)
    await fake.wait_until(lambda: adapter.jobs_in_flight == 0)


# Which calls a plain /imagine result needs: the @original edit carrying the files.
_RESULT_ROUTES = {"edit_original", "upload"}


@pytest.mark.parametrize("mode", RAW_FAULTS)
@pytest.mark.parametrize("route", [r for r in ROUTES if r != "callback"])
async def test_a_result_discord_fails_to_take_is_given_back_and_told_once(
    route: str, mode: str, adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake_discord.fail(route, mode)

    ix = await fake_discord.send_slash_command("imagine", {"prompt": f"an owl behind a {route} {mode}", "count": 2})
    await _settled(fake_discord, adapter, ix)

    assert len(fake_openai.calls("/images/generations")) == 1
    quota = await _quota_used(adapter)
    if route in _RESULT_ROUTES:
        assert fake_discord.fault_hits(route) >= 1
        (told,) = _private(ix)  # told once
        assert "didn't let me post them" in told and "don't count against your daily limit" in told
        assert fake_discord.public_messages(ix) == []  # the placeholder went
        assert quota.used == 0
    else:
        # This call is not needed to deliver a result: the images arrive and are counted.
        result = await fake_discord.wait_for_result(ix)
        assert len(result["attachments"]) == 2 and _private(ix) == []
        assert quota.used == 2


async def test_a_503_html_page_on_the_upload_is_a_failed_delivery_not_a_crash(
    adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake_discord.fail("upload", "503-html")

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "an owl behind nginx"})
    await _settled(fake_discord, adapter, ix)

    # discord.py retried the 503 itself, five times, then gave up.
    assert fake_discord.fault_hits("upload") == 5
    (told,) = _private(ix)
    assert "didn't let me post them" in told
    assert fake_discord.public_messages(ix) == [] and (await _quota_used(adapter)).used == 0


@pytest.mark.parametrize("mode", RAW_FAULTS)
async def test_a_late_result_the_channel_refuses_is_given_back(
    mode: str, adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake_openai.latency = 0.3
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a slow owl"})
    await fake_discord.wait_for_callback(ix)
    fake_discord.expire(ix)  # past 15 minutes: only the channel is left
    fake_discord.fail("channel_message", mode)

    await _settled(fake_discord, adapter, ix)

    assert fake_discord.fault_hits("channel_message") >= 1 and fake_discord.channel_messages == []
    assert (await _quota_used(adapter)).used == 0


# Which calls telling the user privately after a public defer needs.
_PRIVATE_ROUTES = {"followup"}


@pytest.mark.parametrize("mode", RAW_FAULTS)
@pytest.mark.parametrize("route", [r for r in ROUTES if r != "callback"])
async def test_a_private_error_stays_private_and_the_placeholder_goes_whatever_call_fails(
    route: str, mode: str, adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake_discord.fail(route, mode)

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "BLOCK_INPUT a forbidden owl"})
    await _settled(fake_discord, adapter, ix)

    public = fake_discord.public_messages(ix)
    # Never public: not the error, not a "thinking…" placeholder left behind.
    assert not [m for m in public if "safety" in m["content"] or m["flags"] & 1 << 7]
    assert all(not m["content"] or "didn't go through" in m["content"] for m in public)
    if route in _PRIVATE_ROUTES:
        assert _private(ix) == []  # Discord refused every private message: nothing else to do
    else:
        (told,) = _private(ix)
        assert "safety system" in told
    assert (await _quota_used(adapter)).used == 0


@pytest.mark.parametrize("mode", RAW_FAULTS)
async def test_a_command_whose_defer_fails_costs_nothing_and_frees_its_slot(
    mode: str, make_adapter: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter(server={"max_background_tasks": 1})
    fake_discord.fail("callback", mode)

    lost = await fake_discord.send_slash_command("imagine", {"prompt": "never acknowledged"})
    await _settled(fake_discord, adapter, lost)
    assert not lost.acknowledged
    fake_discord.heal()
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "the next one"}, user_id=BOB)

    assert (await fake_discord.wait_for_result(ix))["attachments"]
    assert [c["prompt"] for c in (r.json for r in fake_openai.calls("/images/generations"))] == ["the next one"]
    assert (await _quota_used(adapter)).used == 0


async def test_two_commands_arriving_together_cannot_exceed_the_job_cap(
    make_adapter: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter(server={"max_background_tasks": 1})
    fake_openai.latency = 0.3
    # Both commands reach the bot before Discord answers either defer.
    fake_discord.hold_callbacks()
    first = await fake_discord.send_slash_command("imagine", {"prompt": "first together"})
    second = await fake_discord.send_slash_command("imagine", {"prompt": "second together"}, user_id=BOB)
    await fake_discord.wait_until(lambda: len([r for r in fake_discord.requests if r.path.endswith("/callback")]) == 2)
    fake_discord.release_callbacks()

    await fake_discord.wait_until(lambda: _private(first) or _private(second))
    await fake_discord.wait_until(lambda: adapter.jobs_in_flight == 0)

    refused, admitted = (first, second) if _private(first) else (second, first)
    (told,) = _private(refused)
    assert "very busy" in told and "Nothing was charged" in told
    assert fake_discord.public_messages(refused) == []
    assert (await fake_discord.wait_for_result(admitted))["attachments"]
    assert len(fake_openai.calls("/images/generations")) == 1


@pytest.mark.parametrize("shards", [1, 2], ids=["resume-replay", "two-processes"])
async def test_the_same_interaction_delivered_twice_runs_once(
    shards: int, make_adapter: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapters = [await make_adapter() for _ in range(shards)]  # two services on one database file
    await fake_discord.wait_connected(count=shards)
    fake_openai.latency = 0.2

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "one owl, delivered twice"})
    await fake_discord.replay(ix, session=fake_discord.gateway_sessions[0])

    await fake_discord.wait_for_result(ix)
    await fake_discord.wait_until(lambda: len(ix.callbacks) == shards)
    for adapter in adapters:
        await fake_discord.wait_until(lambda: adapter.jobs_in_flight == 0)
    assert len(fake_openai.calls("/images/generations")) == 1 and (await _quota_used(adapters[0])).used == 1
    assert [r.status for r in ix.callbacks if r.status >= 300] == ([] if shards == 1 else [400])
    assert _private(ix) == [] and len(fake_discord.public_messages(ix)) == 1
    # In one process the replay is recognised before anything is sent for it;
    # another process finds the interaction taken (Discord refuses its defer).


async def test_an_attachment_download_that_dies_mid_stream_is_a_friendly_error_and_free(
    adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    image = fake_discord.add_attachment(png_bytes(), "cat.png")
    fake_discord.break_cdn(image["url"])

    ix = await fake_discord.send_slash_command("edit", {"image": image, "prompt": "make it blue"})
    await _settled(fake_discord, adapter, ix)

    (told,) = _private(ix)
    assert "couldn't download “cat.png”" in told and "try again" in told
    assert fake_discord.cdn_hits and fake_openai.requests == []
    assert fake_discord.public_messages(ix) == []
    assert (await _quota_used(adapter)).used == 0


@pytest.mark.parametrize("mode", RAW_FAULTS)
async def test_a_crash_announcement_stays_private_when_the_placeholder_cannot_be_deleted(
    mode: str, make_adapter: Any, bot_process: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await crash_mid_job(bot_process, fake_discord, fake_openai, "a painting the crash ate")
    restarted = await make_adapter()
    (job,) = await restarted.service.recover()
    fake_discord.fail("delete_original", mode)

    assert await restarted.announce_interrupted(job) is True

    (told,) = _private(ix)
    assert "interrupted because the bot restarted" in told
    # The placeholder could not be deleted, so it was turned into a neutral line first.
    (public,) = fake_discord.public_messages(ix)
    assert "didn't go through" in public["content"] and not public["flags"] & 1 << 7


async def test_a_crash_announcement_that_discord_refuses_reports_not_told(
    make_adapter: Any, bot_process: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await crash_mid_job(bot_process, fake_discord, fake_openai, "another painting the crash ate")
    restarted = await make_adapter()
    (job,) = await restarted.service.recover()
    fake_discord.fail("followup", "drop")

    assert await restarted.announce_interrupted(job) is False
    assert _private(ix) == [] and fake_discord.public_messages(ix) == []
