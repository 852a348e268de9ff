"""`/imagine … relax:True` end to end: real discord.py ↔ fake Discord, the
core's relax queue ↔ the fake Batch API, and the result posted later in the
channel with the bot token (the interaction token has died by then)."""

from __future__ import annotations

import asyncio

from typing import Any

from bots.discord import DiscordAdapter
from core.models import ImageOptions, Requester
from tests.bots.discord.conftest import MakeAdapter
from tests.core.scenario import rows, until
from tests.fakes.discord_server import EPHEMERAL, FakeDiscord, button_custom_ids
from tests.fakes.openai_server import FakeOpenAI

ALICE, BOB = "700000000000000001", "700000000000000002"
GENERAL = "900000000000000011"
QUICK = {"relax": {"flush_seconds": 0.05, "poll_seconds": 0.05}}


async def queued(fake_discord: FakeDiscord, prompt: str, **kw: Any) -> tuple[Any, dict[str, Any], str]:
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt, "relax": True}, **kw)
    note = await fake_discord.wait_for_private(ix)
    (custom_id,) = button_custom_ids(note)
    return ix, note, custom_id.rsplit(":", 1)[1]


async def test_a_relax_job_is_posted_in_the_channel_with_the_bot_token_mentioning_the_requester_at_half_price(
    make_adapter: MakeAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    adapter = await make_adapter(**QUICK)
    fake_openai.batch_delay = 3600
    ix, note, job_id = await queued(fake_discord, "a quiet harbor")
    assert note["flags"] & EPHEMERAL and "relax mode" in note["content"] and "half price" in note["content"]
    assert fake_discord.public_messages(ix) == []  # nothing public until the images exist
    assert fake_openai.calls("/images/generations") == []

    adapter.service.relax.start({"discord": adapter.courier})
    await until(lambda: fake_openai.batches, "the batch submitted")
    (batch,) = fake_openai.batches.values()
    assert [line["custom_id"] for line in batch.lines] == [job_id]
    fake_discord.expire(ix)  # hours later: the interaction token is long dead
    batch.ready_at = 0
    await until(lambda: fake_discord.channel_messages, "the result posted")

    (posted,) = fake_discord.channel_messages
    assert posted["channel_id"] == GENERAL and posted["author"]["id"] == fake_discord.bot_user.id
    assert f"<@{ALICE}>" in posted["content"] and "a quiet harbor" in posted["content"]
    assert len(posted["attachments"]) == 1
    # The buttons under every result, and the result remembered for them and /history.
    actions = ("again", "vary", "bigger", "edit", "info", "delete")
    assert button_custom_ids(posted) == [f"imaginebot:{a}:{job_id}" for a in actions]
    for _ in range(1000):  # recorded just after Discord took the post (bounded: a bug fails, never hangs)
        if (remembered := await adapter.service.results.result(job_id)) is not None:
            break
        await asyncio.sleep(0.01)
    assert remembered is not None and remembered["message"] == posted["id"]
    (request,) = [r for r in fake_discord.requests if r.path == f"/channels/{GENERAL}/messages"]
    assert request.headers["authorization"] == f"Bot {fake_discord.token}"
    assert request.json is not None and request.json["allowed_mentions"]["users"] == [int(ALICE)]
    assert request.json["nonce"] == f"relax{job_id}" and request.json["enforce_nonce"]  # Discord drops a repeat

    fast = await adapter.service.generate(Requester("discord", "900000000000000001", BOB), "a quiet harbor", ImageOptions())
    (job,) = await rows(adapter.service, "SELECT status, cost_usd FROM jobs WHERE id = ?", (job_id,))
    assert job == {"status": "succeeded", "cost_usd": fast.cost_usd / 2}
    (stored,) = await rows(adapter.service, "SELECT reach, state FROM relax_jobs")
    assert stored["state"] == "delivered" and ix.token not in stored["reach"]


async def test_a_restart_between_submission_and_completion_still_delivers_exactly_once(
    make_adapter: MakeAdapter, make_service: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, tmp_path: Any
) -> None:
    first = await make_adapter(**QUICK)
    fake_openai.batch_delay = 3600
    _, _, job_id = await queued(fake_discord, "a quiet harbor")
    first.service.relax.start({"discord": first.courier})
    await until(lambda: fake_openai.batches, "the batch submitted")
    await first.close()
    await first.service.close()  # the bot restarts while OpenAI works on the batch

    service = await make_service(db_path=tmp_path / "bot.db", progress_interval=0.2, **QUICK)
    second: DiscordAdapter = await make_adapter(service=service)
    second.service.relax.start({"discord": second.courier})
    (batch,) = fake_openai.batches.values()
    batch.ready_at = 0
    await until(lambda: fake_discord.channel_messages, "the result posted after the restart")
    await second.service.relax.run_once(force=True)
    await second.service.relax.run_once(force=True)

    (posted,) = fake_discord.channel_messages
    assert f"imaginebot:again:{job_id}" in button_custom_ids(posted)
    assert len(fake_openai.calls("/batches")) == 1


async def test_cancel_before_the_batch_goes_out_refunds(make_adapter: MakeAdapter, fake_discord: FakeDiscord) -> None:
    adapter = await make_adapter(relax={"flush_seconds": 3600})
    _, note, job_id = await queued(fake_discord, "a quiet harbor")
    (custom_id,) = button_custom_ids(note)
    click = await fake_discord.click_button(note, custom_id)
    await fake_discord.wait_for_callback(click)
    await until(lambda: note["content"] == "Cancelled. Nothing was charged.", "the note says cancelled")
    assert button_custom_ids(note) == []
    (job,) = await rows(adapter.service, "SELECT status, units, usd, error_code FROM jobs")
    assert job == {"status": "failed", "units": 0, "usd": 0, "error_code": "cancelled"}


async def test_where_the_bot_cannot_post_the_result_goes_by_dm_and_a_blocked_line_is_told_by_dm(
    make_adapter: MakeAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    adapter = await make_adapter(**QUICK)
    fake_discord.forbidden_channels.add(GENERAL)
    await queued(fake_discord, "a quiet harbor")
    await queued(fake_discord, "BLOCK_INPUT a harbor", user_id=BOB)
    adapter.service.relax.start({"discord": adapter.courier})
    await until(lambda: fake_discord.dms_to(ALICE) and fake_discord.dms_to(BOB), "both told by DM")

    (result,) = fake_discord.dms_to(ALICE)
    assert len(result["attachments"]) == 1 and "a quiet harbor" in result["content"]
    (told,) = fake_discord.dms_to(BOB)
    assert "not made" in told["content"] and "Nothing was charged" in told["content"]
    assert [m for m in fake_discord.channel_messages if m["channel_id"] == GENERAL] == []


async def test_a_member_who_takes_no_dm_hears_of_a_failed_line_in_the_channel(
    make_adapter: MakeAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
) -> None:
    adapter = await make_adapter(**QUICK)
    fake_discord.closed_dms.add(BOB)
    fake_openai.expire_batches = True
    await queued(fake_discord, "a harbor", user_id=BOB)
    adapter.service.relax.start({"discord": adapter.courier})
    await until(lambda: fake_discord.channel_messages, "told in the channel")
    (note,) = fake_discord.channel_messages
    assert note["channel_id"] == GENERAL and note["content"].startswith(f"<@{BOB}>")
    assert "a harbor" not in note["content"]  # public: no prompt, no details
    (job,) = await rows(adapter.service, "SELECT status, usd FROM jobs")
    assert job == {"status": "failed", "usd": 0}
