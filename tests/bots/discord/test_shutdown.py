"""Shutting down with jobs running, and telling users about jobs a crashed
process left behind."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta, timezone

from core.models import Requester
from tests.bots.discord.conftest import crash_mid_job
from tests.fakes.discord_server import EPHEMERAL, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI

ALICE = Requester(platform="discord", workspace="900000000000000001", user="700000000000000001")


async def test_close_lets_a_running_job_finish_within_the_grace(make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    adapter = await make_adapter()
    fake_openai.latency = 0.3
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a quick sketch"})
    await fake_discord.wait_until(lambda: fake_openai.requests)

    await adapter.close(grace_seconds=30)

    assert ix.original is not None and ix.original["attachments"]
    assert not adapter.healthy


async def test_close_cancels_jobs_past_the_grace_refunds_and_tells_the_user(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    fake_openai.latency = 30
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a very slow painting"})
    await fake_discord.wait_until(lambda: fake_openai.requests)

    await adapter.close(grace_seconds=0)

    reply = await fake_discord.wait_for_private(ix)
    assert "interrupted because the bot restarted" in reply["content"] and "Nothing was charged" in reply["content"]
    assert fake_discord.public_messages(ix) == []
    assert (await adapter.service.quota(ALICE)).used == 0


async def test_new_commands_are_refused_while_closing(make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    adapter = await make_adapter()
    fake_openai.latency = 1
    running = await fake_discord.send_slash_command("imagine", {"prompt": "keep going"})
    await fake_discord.wait_until(lambda: fake_openai.requests)
    closing = asyncio.create_task(adapter.close(grace_seconds=30))

    late = await fake_discord.send_slash_command("imagine", {"prompt": "too late"}, user_id="700000000000000002")

    assert "restarting" in (await fake_discord.wait_for_private(late))["content"]
    await closing
    assert running.original is not None and running.original["attachments"]
    assert len(fake_openai.requests) == 1


async def test_a_job_interrupted_by_a_crash_is_announced_privately_after_restart(
    make_adapter, bot_process, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await crash_mid_job(bot_process, fake_discord, fake_openai, "a painting the crash ate")
    thinking_id = ix.original["id"]

    # The next process on the same database finds the job the dead one never finished.
    restarted = await make_adapter()
    (job,) = await restarted.service.recover()
    assert job.notify["discord_interaction_token"] == ix.token

    assert await restarted.announce_interrupted(job) is True

    reply = await fake_discord.wait_for_private(ix)
    assert "interrupted because the bot restarted" in reply["content"]
    assert any(r.method == "DELETE" and r.path.endswith(f"/messages/{thinking_id}") for r in ix.webhook_requests)
    assert reply["flags"] & EPHEMERAL and fake_discord.public_messages(ix) == []
    assert (await restarted.service.quota(ALICE)).used == 0


async def test_an_interaction_older_than_15_minutes_is_not_announced(
    make_adapter, bot_process, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await crash_mid_job(bot_process, fake_discord, fake_openai, "long ago")
    restarted = await make_adapter()
    (job,) = await restarted.service.recover()
    old = (datetime.now(timezone.utc) - timedelta(minutes=16)).isoformat()
    requests_before = len(ix.webhook_requests)

    told = await restarted.announce_interrupted(dataclasses.replace(job, notify={**job.notify, "created": old}))

    assert told is False and len(ix.webhook_requests) == requests_before
    assert await restarted.announce_interrupted(dataclasses.replace(job, notify={})) is False


async def test_an_interrupted_job_can_be_announced_after_the_adapter_closed(
    make_adapter, bot_process, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    # The runner refunds and announces what is left after close(): the client is gone by then.
    ix = await crash_mid_job(bot_process, fake_discord, fake_openai, "left behind")
    restarted = await make_adapter()
    (job,) = await restarted.service.recover()
    await restarted.close()

    assert await restarted.announce_interrupted(job) is True
    assert "interrupted" in (await fake_discord.wait_for_private(ix))["content"]
