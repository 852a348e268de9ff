"""The database holds prompts, user ids and, while jobs run, response URLs
and interaction tokens: it (and its -wal and -shm files) is readable by its
owner only (SPEC §6), whatever the umask of the process that creates it."""

from __future__ import annotations

import asyncio
import os
import stat
import sys
from pathlib import Path

from core.store_sqlite import SqliteStore as Store

REPO = Path(__file__).resolve().parents[2]

# A fresh process with the most permissive umask creates the database, writes
# to it and, while it still holds it open (so -wal and -shm exist), prints the
# modes of all three files.
_CREATE = """
import os, stat, sys
os.umask(0)
from core.store_sqlite import SqliteStore as Store
store = Store(sys.argv[1])
store.open_sync()
with store.transaction() as conn:
    conn.execute("INSERT INTO seen_events (key, at) VALUES ('probe', 0)")
for suffix in ("", "-wal", "-shm"):
    print(suffix or "db", oct(stat.S_IMODE(os.stat(sys.argv[1] + suffix).st_mode)))
store.close_sync()
"""


def mode(path: Path) -> str:
    return oct(stat.S_IMODE(path.stat().st_mode))


async def test_a_fresh_process_with_umask_0_creates_the_database_and_its_wal_and_shm_0600(tmp_path: Path) -> None:
    db = tmp_path / "fresh.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CREATE, str(db), cwd=str(REPO),
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().split() == ["db", "0o600", "-wal", "0o600", "-shm", "0o600"]
    assert mode(db) == "0o600"


async def test_an_existing_database_readable_by_others_is_tightened_at_open(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    store = Store(db)
    store.open_sync()
    store.close_sync()
    db.chmod(0o644)  # as an earlier version created it
    store = Store(db)
    store.open_sync()
    try:
        with store.transaction() as conn:
            conn.execute("INSERT INTO seen_events (key, at) VALUES ('probe', 0)")
        assert [mode(Path(f"{db}{s}")) for s in ("", "-wal", "-shm")] == ["0o600"] * 3
    finally:
        store.close_sync()
