"""imaginebot on PostgreSQL, as an operator deploys it: a URL that can't be
reached is one clear line (password hidden), DATABASE_URL is honoured, and
two `imaginebot run` replicas on one database share every limit and cover
for each other when one dies."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import fresh_postgres_schema, postgres_or_skip
from tests.e2e.conftest import Fakes, SlackUser, StartBot, eventually, free_port
from tests.e2e.test_newcomer import assert_one_line_error, base_env, imaginebot
from tests.fakes.openai_server import FakeOpenAI


@pytest.mark.parametrize("variable", ["IMAGINEBOT_DB", "DATABASE_URL"])
async def test_a_postgresql_url_that_cannot_be_reached_exits_2_without_its_password(
    variable: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    url = f"postgresql://bot:fake-db-password@127.0.0.1:{free_port()}/imaginebot"  # nothing listens there
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-replicas", "OPENAI_BASE_URL": fake_openai.base_url, variable: url})
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env=env)
    assert_one_line_error(code, err, expected_code=2, names="IMAGINEBOT_DB", says="PostgreSQL says")
    assert "fake-db-password" not in err, err
    assert "postgresql://bot:***@127.0.0.1" in err, err
    assert fake_openai.requests == [], "no model call without a ledger"
    assert not (tmp_path / "imaginebot.db").exists(), "DATABASE_URL was not taken for the SQLite default"


# ----------------------------------------------------------------------------- two replicas, one PostgreSQL

# One image a day less than the requests sent; short heartbeat so that the
# survivor notices a dead replica quickly.
REPLICA_CONFIG = {"server": {"heartbeat_timeout_seconds": 2}, "limits": {"daily_images_per_user": 3}}


def pg_jobs(url: str, user_key: str | None = None) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM jobs ORDER BY created_at").fetchall()
    return [r for r in rows if user_key is None or r["user_key"] == user_key]


@pytest.fixture
def postgres_url() -> Iterator[str]:
    postgres_or_skip()
    with fresh_postgres_schema() as url:
        yield url


async def test_two_replicas_on_one_postgresql_share_a_limit_and_cover_for_each_other(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser], postgres_url: str
) -> None:
    first = await start_bot(config=REPLICA_CONFIG, db=postgres_url)
    second = await start_bot(config=REPLICA_CONFIG, db=postgres_url)
    assert not (first.workdir / "imaginebot.db").exists(), "a replica fell back to SQLite"

    # Six requests from one user at once, alternating between the replicas: a limit of 3.
    fox = slack_user("UFOX")
    acks = await asyncio.gather(*(fox.imagine((first, second)[i % 2], f"a fox, take {i}") for i in range(6)))
    assert [a.status for a in acks] == [200] * 6, acks
    await eventually(lambda: len(fox.outcomes()) >= 6, what="an answer to each of the six", seen=fox.outcomes)
    assert len(fox.deliveries()) == 3, fox.outcomes()
    refusals = [o for o in fox.outcomes() if not o.startswith("images: ")]
    assert len(refusals) == 3 and all("daily limit" in o for o in refusals), fox.outcomes()
    assert all(o.startswith(("private: ", "ack: ")) for o in refusals)  # refused privately
    jobs = pg_jobs(postgres_url, fox.key)
    assert [j["status"] for j in jobs] == ["succeeded"] * 3 and sum(j["units"] for j in jobs) == 3, jobs
    assert len(fakes.openai.calls("/images/generations")) == 3

    # kill -9 one replica mid-job: the survivor refunds and tells, within a bounded wait.
    grace = slack_user("UGRACE")
    assert (await grace.imagine(second, "SLOW:600 a lighthouse the crash eats")).status == 200
    await eventually(lambda: fakes.openai.in_flight == 1, what="the model call in flight", seen=lambda: fakes.openai.in_flight)
    await eventually(  # recorded, so that whoever announces the job can remove it
        lambda: [j for j in pg_jobs(postgres_url, grace.key) if "placeholder_ts" in j["notify"]],
        what="the progress message to be recorded",
    )
    await second.kill9()
    await eventually(grace.private, what="Grace to be told by the survivor", timeout=120, seen=grace.outcomes)
    [told] = grace.private()
    assert "interrupted" in told and "Nothing was charged" in told, told
    assert grace.live_placeholders() == [], grace.outcomes()
    [job] = pg_jobs(postgres_url, grace.key)
    assert (job["status"], job["units"], job["usd"]) == ("interrupted", 0, 0), job

    # Her next request is served by the survivor: nothing was left held.
    await grace.imagine(first, "a lighthouse, second try")
    await eventually(grace.deliveries, what="Grace's images from the survivor", seen=grace.outcomes)
    assert await first.terminate() == 0
    assert [j for j in pg_jobs(postgres_url) if j["status"] == "reserved"] == []
