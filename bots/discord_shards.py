"""Which Discord shards a process runs (SPEC §2: `DISCORD_SHARD_COUNT`,
`DISCORD_SHARD_IDS`). Outside bots/discord/ so that reading the
environment does not import discord.py.

A large bot splits its gateway connections across processes: every process
is told the total and its own shard ids (`4` and `0,1` in one, `4` and `2,3`
in another). Discord sends each guild's events, interactions included, to
shard `(guild_id >> 22) % count` and direct messages to shard 0, so each
process only ever sees its own guilds' requests. The ledger they share keeps
limits, budgets and replays exact across them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ShardPlan:
    count: int
    ids: tuple[int, ...]

    def __str__(self) -> str:
        return f"shards {','.join(map(str, self.ids))} of {self.count}"


def shard_plan(count_text: str | None, ids_text: str | None) -> ShardPlan | None:
    """The plan from the two variables; None when neither is set (one
    connection, as a small bot needs). Raises ValueError naming the variable."""
    if count_text is None:
        if ids_text is not None:
            raise ValueError("DISCORD_SHARD_IDS needs DISCORD_SHARD_COUNT (the total number of shards across all processes).")
        return None
    try:
        count = int(count_text)
    except ValueError:
        raise ValueError(f"DISCORD_SHARD_COUNT must be a whole number, got {count_text!r}.") from None
    if count < 1:
        raise ValueError(f"DISCORD_SHARD_COUNT must be at least 1, got {count}.")
    if ids_text is None:
        return ShardPlan(count, tuple(range(count)))  # this process runs them all
    try:
        ids = tuple(sorted({int(part) for part in ids_text.split(",") if part.strip()}))
    except ValueError:
        raise ValueError(f"DISCORD_SHARD_IDS must be comma-separated shard numbers like 0,1, got {ids_text!r}.") from None
    if not ids or any(not 0 <= i < count for i in ids):
        raise ValueError(f"DISCORD_SHARD_IDS must be numbers from 0 to {count - 1} (DISCORD_SHARD_COUNT is {count}), got {ids_text!r}.")
    return ShardPlan(count, ids)
