"""Schema versions and moving a ledger: a database made by release 0.1.0
(tests/core/fixtures/release-0.1.0.sql, dumped from a ledger that release's
own code wrote; tests/core/fixtures/make_release_dump.py made it) is upgraded
in place at start with every row kept, and `imaginebot migrate --to URL`
copies a whole ledger SQLite → PostgreSQL → SQLite without losing a row."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pytest

from core.store import Store, store_for
from core.store_schema import MIGRATIONS, SCHEMA_VERSION, TABLES
from core.store_schema import migrate as upgrade_schema
from tests.conftest import MakeService, fresh_postgres_schema, postgres_or_skip
from tests.core.scenario import member

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]


def release_database(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "release-0.1.0.sql").read_text(encoding="utf-8"))
    conn.close()
    return path


def every_row(store: Store) -> dict[str, list[dict[str, Any]]]:
    return {
        t.name: store.query(f"SELECT {', '.join(name for name, _ in t.columns)} FROM {t.name} ORDER BY {', '.join(t.pk)}")
        for t in TABLES
    }


def sqlite_rows(path: Path) -> dict[str, list[dict[str, Any]]]:
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return {t.name: [dict(r) for r in conn.execute(f"SELECT * FROM {t.name} ORDER BY {', '.join(t.pk)}")] for t in TABLES}
    finally:
        conn.close()


def test_the_fixture_is_a_ledger_with_rows_in_every_table(tmp_path: Path) -> None:
    rows = sqlite_rows(release_database(tmp_path / "release.db"))
    assert all(rows[t.name] for t in TABLES), {name: len(r) for name, r in rows.items()}
    assert {r["status"] for r in rows["jobs"]} == {"succeeded", "failed", "undelivered", "blocked", "reserved"}


async def test_a_release_database_is_upgraded_at_start_keeping_every_row(make_service: MakeService, tmp_path: Path) -> None:
    db = release_database(tmp_path / "release.db")
    before = sqlite_rows(db)
    service = await make_service(db_path=db)
    after = await service.store.run(every_row, service.store)
    after["workers"] = [w for w in after["workers"] if w["token"] != service.ledger.worker]  # our own heartbeat
    assert after == before
    versions = await service.store.run(lambda: service.store.query("SELECT version FROM schema_migrations ORDER BY version"))
    assert [v["version"] for v in versions] == [step[0] for step in MIGRATIONS]
    # And the upgraded ledger goes on working with what it holds.
    quota = await service.quota(member("U1"))
    assert quota.limit == 50  # the admin's override survived
    crashed = await service.recover()  # the release's process is gone: its reservation is refunded
    assert [job.prompt for job in crashed] == ["still running (a crash left it)"]


async def test_a_database_newer_than_this_build_is_refused(tmp_path: Path) -> None:
    db = release_database(tmp_path / "release.db")
    store = store_for(str(db))
    await store.open()
    await store.run(lambda: store.query("SELECT 1"))
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO schema_migrations (version, what, applied_at) VALUES (?, 'from the future', 0)", (SCHEMA_VERSION + 1,)
    )
    conn.commit()
    conn.close()
    await store.close()
    again = store_for(str(db))
    with pytest.raises(Exception, match="newer than this build"):
        await again.open()
    await again.close()


async def migrate(source: str, target: str, cwd: Path) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "migrate", "--to", target, cwd=cwd,
        env={"IMAGINEBOT_DB": source, "PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def read_all(db: str) -> dict[str, list[dict[str, Any]]]:
    store = store_for(db)
    await store.open()
    try:
        return await store.run(every_row, store)
    finally:
        await store.close()


async def test_migrate_round_trip_sqlite_to_postgresql_and_back(tmp_path: Path) -> None:
    postgres_or_skip()
    source = release_database(tmp_path / "release.db")
    before = sqlite_rows(source)
    with fresh_postgres_schema() as url:
        code, out, err = await migrate(str(source), url, tmp_path)
        assert code == 0, err
        assert "5 jobs" in out, out
        assert await read_all(url) == before
        back = tmp_path / "back.db"
        code, out, err = await migrate(url, str(back), tmp_path)
        assert code == 0, err
        assert sqlite_rows(back) == before
        # The copied ledger goes on numbering policy blocks after the copied ones.
        store = store_for(url)
        await store.open()
        try:
            def block() -> None:
                with store.transaction() as conn:
                    conn.execute("INSERT INTO policy_blocks (user_key, day, at) VALUES ('slack:T1:U9', '2026-12-01', 0)")
            await store.run(block)
        finally:
            await store.close()
        code, _, err = await migrate(str(source), url, tmp_path)
        assert code == 2 and "already holds" in err and "Traceback" not in err, err


def test_pruning_old_event_claims_uses_an_index_after_the_upgrade(tmp_path: Path) -> None:
    # Every Slack payload and Discord interaction claims a key and prunes the
    # claims older than a day in the same transaction, on the ack's path: the
    # prune must not scan the whole table once it holds a day of traffic.
    db = release_database(tmp_path / "release.db")
    conn = sqlite3.connect(db)
    try:
        upgrade_schema(conn, "sqlite")
        plan = " ".join(str(row[-1]) for row in conn.execute("EXPLAIN QUERY PLAN DELETE FROM seen_events WHERE at < ?", (0.0,)))
    finally:
        conn.close()
    assert "USING" in plan and "INDEX" in plan and "seen_events_at" in plan, plan
