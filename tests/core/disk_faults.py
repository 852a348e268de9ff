"""Real ways for the database to stop taking writes, for the fault tests.

- `PageCap`: SQLite's own `PRAGMA max_page_count`, set on the service's
  connection at the database's current size. SQLite then answers any write
  that needs a new page with a genuine SQLITE_FULL "database or disk is
  full". Jobs use a long prompt (`LONG_PROMPT`): its row spans overflow
  pages, so every rewrite of it (settle, refund, ...) needs new pages.
- `Tmpfs`: a small tmpfs mounted for the test and then filled to the last
  byte: the write-ahead log can't grow (ENOSPC). Needs root and the right to
  mount; skipped where that is not possible.
- `delete_database`: the file (and its -wal and -shm) removed under the
  running service, as a mistaken clean-up would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
import uuid
from pathlib import Path
from typing import AsyncIterator, Iterator, Protocol

import pytest

from core.service import ImageService

# 20,000 characters (the limit is 32,000): a prompt people do send, and one
# whose row does not fit in one database page.
LONG_PROMPT = "a red fox in deep snow, " * 833


class Disk(Protocol):
    name: str
    db_path: Path

    async def fill(self, service: ImageService) -> None: ...

    async def free(self, service: ImageService) -> None: ...


class PageCap:
    name = "max_page_count"

    def __init__(self, directory: Path) -> None:
        self.db_path = directory / "ledger.db"

    async def fill(self, service: ImageService) -> None:
        def cap() -> None:
            conn = service.store.conn
            # Free pages inside the file would be reused before the cap bites: use them up.
            conn.execute("CREATE TABLE IF NOT EXISTS test_disk_filler (b BLOB)")
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            while free := conn.execute("PRAGMA freelist_count").fetchone()[0]:
                conn.execute("INSERT INTO test_disk_filler VALUES (zeroblob(?))", (free * page_size,))
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await service.store.run(cap)

    async def free(self, service: ImageService) -> None:
        await service.store.run(lambda: service.store.conn.execute("PRAGMA max_page_count = 4294967294"))


class Tmpfs:
    name = "tmpfs"

    def __init__(self, mountpoint: Path) -> None:
        self.mountpoint = mountpoint
        self.db_path = mountpoint / "ledger.db"
        self.filler = mountpoint / "filler"

    async def fill(self, service: ImageService | None = None) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 16, 1 << 12, 1):  # to the last byte
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    async def free(self, service: ImageService | None = None) -> None:
        self.filler.unlink(missing_ok=True)


def mount_tmpfs(where: Path, size: str = "4m") -> bool:
    where.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", f"imaginebot-test-{uuid.uuid4().hex[:8]}", str(where)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


def unmount(where: Path) -> None:
    # Lazy: a service the test left open must not make the clean-up fail.
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.fixture(params=["max_page_count", "tmpfs"])
async def disk(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Disk]:
    """The database's disk, which the test can fill and free again."""
    if request.param == "max_page_count":
        yield PageCap(tmp_path)
        return
    with mounted_tmpfs(tmp_path / "disk") as tmpfs:
        yield tmpfs


@contextlib.contextmanager
def mounted_tmpfs(mountpoint: Path) -> Iterator[Tmpfs]:
    """A small tmpfs at `mountpoint` while the test runs; the test is skipped
    where this machine can't mount one."""
    if not mount_tmpfs(mountpoint):
        pytest.skip("cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN)")
    try:
        yield Tmpfs(mountpoint)
    finally:
        unmount(mountpoint)


def delete_database(db_path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)


def read_job(db_path: Path, job_id: str) -> dict[str, object]:
    """The job's row as another process would read it (a full disk still reads)."""
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        assert row is not None, f"no job {job_id}"
        return dict(row)
    finally:
        conn.close()
