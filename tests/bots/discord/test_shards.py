"""A large bot split across processes (SPEC §2: DISCORD_SHARD_COUNT and
DISCORD_SHARD_IDS): each process identifies only as its own shards, gets
only its guilds (Discord routes a guild's interactions to shard
(guild_id >> 22) % count), and reports itself up only when every one of its
shards is connected. Two processes share one ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bots.discord import DiscordAdapter
from bots.discord_shards import ShardPlan, shard_plan
from bots.settings import Settings
from tests.fakes.discord_server import FakeDiscord, shard_of
from tests.fakes.openai_server import FakeOpenAI

GUILD_ON_1 = "900000000000000001"  # the fake's own guild: (id >> 22) % 2 == 1
GUILD_ON_0 = "910000000000000001"
CHANNEL_ON_0 = "910000000000000011"


@pytest.fixture
def two_shard_guilds(fake_discord: FakeDiscord) -> FakeDiscord:
    fake_discord.add_guild(GUILD_ON_0, "Owl Roost", {CHANNEL_ON_0: "general"})
    assert (shard_of(GUILD_ON_0, 2), shard_of(GUILD_ON_1, 2)) == (0, 1)
    return fake_discord


async def sharded(make_service: Any, fake: FakeDiscord, db: Path, plan: ShardPlan) -> DiscordAdapter:
    service = await make_service(db_path=db, progress_interval=0.2)
    adapter = DiscordAdapter(service, service.config, token=fake.token, api_url=fake.api_base, shards=plan)
    await adapter.start()
    return adapter


async def test_two_processes_each_serve_only_their_shards_guilds(
    two_shard_guilds: FakeDiscord, make_service: Any, fake_openai: FakeOpenAI, tmp_path: Path
) -> None:
    fake = two_shard_guilds
    db = tmp_path / "shared.db"
    first = await sharded(make_service, fake, db, ShardPlan(2, (0,)))
    second = await sharded(make_service, fake, db, ShardPlan(2, (1,)))
    try:
        assert sorted(tuple(s.identify["shard"]) for s in fake.gateway_sessions if s.identify) == [(0, 2), (1, 2)]
        assert [g.id for g in first.client.guilds] == [int(GUILD_ON_0)]
        assert [g.id for g in second.client.guilds] == [int(GUILD_ON_1)]
        assert first.healthy and second.healthy
        # A request in each guild reaches the process running its shard, and is served.
        on_0 = await fake.send_slash_command("imagine", {"prompt": "an owl"}, guild_id=GUILD_ON_0, channel_id=CHANNEL_ON_0)
        on_1 = await fake.send_slash_command("imagine", {"prompt": "a fox"})
        for ix in (on_0, on_1):
            await fake.wait_for_result(ix)
        assert sorted(call.json["prompt"] for call in fake_openai.calls("/images/generations")) == ["a fox", "an owl"]
        assert first.service.ledger.worker != second.service.ledger.worker
        owners = {job["prompt"]: job["owner"] for job in await first.service.store.run(_jobs, first.service)}
        assert owners == {"an owl": first.service.ledger.worker, "a fox": second.service.ledger.worker}
    finally:
        await first.close()
        await second.close()


def _jobs(service: Any) -> list[dict[str, Any]]:
    with service.store.transaction() as conn:
        return [{"prompt": r[0], "owner": r[1]} for r in conn.execute("SELECT prompt, owner FROM jobs").fetchall()]


async def test_a_process_with_several_shards_is_up_only_once_all_are_connected(
    two_shard_guilds: FakeDiscord, make_service: Any, tmp_path: Path
) -> None:
    # discord.py waits 5 s between a process's identifies (Discord's rule): this test takes that long.
    adapter = await sharded(make_service, two_shard_guilds, tmp_path / "bot.db", ShardPlan(2, (0, 1)))
    try:
        # start() returned: before the fix it returned (and reported up) after the first shard alone.
        assert sorted(tuple(s.identify["shard"]) for s in two_shard_guilds.gateway_sessions if s.identify) == [(0, 2), (1, 2)]
        assert adapter.healthy
        assert sorted(g.id for g in adapter.client.guilds) == sorted([int(GUILD_ON_0), int(GUILD_ON_1)])
        adapter._set_connected(1, False)  # what discord.py reports when shard 1's connection drops
        assert not adapter.healthy
        adapter._set_connected(1, True)
        assert adapter.healthy
    finally:
        await adapter.close()


@pytest.mark.parametrize(
    ("count", "ids", "expected"),
    [
        (None, None, None),
        ("4", None, ShardPlan(4, (0, 1, 2, 3))),
        ("4", "2, 3", ShardPlan(4, (2, 3))),
        ("4", "3,2,3", ShardPlan(4, (2, 3))),
    ],
)
def test_the_shard_variables(count: str | None, ids: str | None, expected: ShardPlan | None) -> None:
    env = {k: v for k, v in (("DISCORD_SHARD_COUNT", count), ("DISCORD_SHARD_IDS", ids)) if v is not None}
    assert Settings.from_env(env, dotenv_path="/nonexistent/.env").discord_shards == expected


@pytest.mark.parametrize(
    ("count", "ids", "names"),
    [
        (None, "0", "DISCORD_SHARD_COUNT"),
        ("four", None, "DISCORD_SHARD_COUNT"),
        ("0", None, "DISCORD_SHARD_COUNT"),
        ("4", "4", "DISCORD_SHARD_IDS"),
        ("4", "a,b", "DISCORD_SHARD_IDS"),
        ("4", ",", "DISCORD_SHARD_IDS"),
    ],
)
def test_wrong_shard_variables_name_the_variable(count: str | None, ids: str | None, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        shard_plan(count, ids)
