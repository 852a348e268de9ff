"""The disk under `imaginebot run`'s database fills up while paid calls run:
the users still get their images, /healthz says the database is down, and
once there is room again the settlements land on their own."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from tests.core.disk_faults import Tmpfs, mounted_tmpfs
from tests.e2e.conftest import (
    Fakes,
    SlackUser,
    StartBot,
    assert_charged,
    discord_images,
    discord_key,
    discord_results,
    discord_user_id,
    eventually,
    read_jobs,
    the_job,
)


@pytest.fixture
async def tmpfs(tmp_path: Path) -> AsyncIterator[Tmpfs]:
    with mounted_tmpfs(tmp_path / "disk") as disk:
        yield disk


async def test_a_full_disk_during_paid_calls_still_delivers_and_settles_once_there_is_room(
    tmpfs: Tmpfs, start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    bot = await start_bot(db=tmpfs.db_path)
    fakes.openai.gate = asyncio.Event()  # the model calls wait until the disk is full
    hana = slack_user("UHANA")
    await hana.imagine(bot, "a lantern festival")
    uid = discord_user_id(80)
    ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a paper boat"}, user_id=uid)
    await eventually(lambda: fakes.openai.in_flight == 2, what="both model calls in flight", seen=lambda: fakes.openai.in_flight)
    await eventually(  # the bot's own writes before the call are done
        lambda: "placeholder_ts" in the_job(bot.db_path, hana.key)["notify"], what="the progress message to be recorded"
    )

    await tmpfs.fill()
    fakes.openai.gate.set()

    # Paid for, so delivered; the ledger waits for room, and health says so.
    await eventually(hana.deliveries, what="Hana's images", seen=hana.outcomes)
    await fakes.discord.wait_until(lambda: discord_results(ix) or None)
    assert len(hana.uploaded_files()) == 1 and len(discord_images(fakes.discord, ix)) == 1
    assert hana.private() == [], hana.outcomes()
    assert {j["status"] for j in read_jobs(bot.db_path)} == {"reserved"}
    status, body = await bot.get("/healthz")
    assert (status, json.loads(body)["database"]) == (503, "down"), body

    await tmpfs.free()
    await eventually(lambda: {j["status"] for j in read_jobs(bot.db_path)} == {"succeeded"}, what="the settlements to land")
    for key in (hana.key, discord_key(uid)):
        assert_charged(the_job(bot.db_path, key))
    await bot.wait_health(200)
    assert await bot.terminate() == 0
