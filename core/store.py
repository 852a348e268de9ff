"""The SQLite database, through sqlite-utils, so that an admin can also query
it with the `sqlite-utils` command line (`sqlite-utils tables imaginebot.db`).

One connection per Store, used from one dedicated thread: SQLite work never
blocks the event loop, and in-process callers are serialised without locks.
Across processes, writers serialise on SQLite's own lock (BEGIN IMMEDIATE).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import sqlite_utils

T = TypeVar("T")

SCHEMA_VERSION = 1


def _create_schema(db: sqlite_utils.Database) -> None:
    db["jobs"].create(
        {
            "id": str,
            "kind": str,
            "platform": str,
            "workspace_key": str,
            "user_key": str,
            "channel": str,
            "prompt": str,
            "size": str,
            "quality": str,
            "n": int,
            "format": str,
            "background": str,
            "model": str,
            "status": str,  # reserved | succeeded | failed | blocked | interrupted
            "day": str,  # local date (config time zone) the quota was taken from
            "units": float,  # what counts against the user's daily images now (0 once refunded)
            "usd": float,  # what counts against budgets now: the estimate, then the real cost
            "cost_usd": float,  # the real cost from usage
            "input_text_tokens": int,
            "input_image_tokens": int,
            "output_image_tokens": int,
            "output_text_tokens": int,
            "cached_tokens": int,
            "images": int,
            "input_images": int,
            "attempts": int,
            "error_code": str,
            "created_at": float,
            "started_at": float,
            "finished_at": float,
            "queue_seconds": float,
            "model_seconds": float,
            "owner": str,
            "notify": str,  # JSON: how to reach the user if the job is interrupted; emptied once the job ends
            # (it can hold a Discord interaction token, which must not outlive the job in the database)
        },
        pk="id",
        if_not_exists=True,
        defaults={"units": 0, "usd": 0, "cost_usd": 0, "attempts": 0, "images": 0, "input_images": 0},
    )
    db["jobs"].create_index(["user_key", "day"], if_not_exists=True)
    db["jobs"].create_index(["workspace_key", "day"], if_not_exists=True)
    db["jobs"].create_index(["day"], if_not_exists=True)
    db["jobs"].create_index(["status"], if_not_exists=True)
    db["user_limits"].create({"user_key": str, "daily": int, "set_by": str, "set_at": float}, pk="user_key", if_not_exists=True)
    db["role_limits"].create(
        {"workspace_key": str, "role": str, "daily": int, "set_by": str, "set_at": float},
        pk=("workspace_key", "role"),
        if_not_exists=True,
    )
    db["budgets"].create({"workspace_key": str, "daily_usd": float, "set_by": str, "set_at": float}, pk="workspace_key", if_not_exists=True)
    db["policy_blocks"].create(
        {"id": int, "user_key": str, "day": str, "at": float, "job_id": str, "stage": str, "categories": str},
        pk="id",
        if_not_exists=True,
    )
    db["policy_blocks"].create_index(["user_key", "day"], if_not_exists=True)
    db["cooldowns"].create({"user_key": str, "until": float}, pk="user_key", if_not_exists=True)
    db["resets"].create({"user_key": str, "day": str, "at": float, "set_by": str}, pk=("user_key", "day"), if_not_exists=True)
    db["seen_events"].create({"key": str, "at": float}, pk="key", if_not_exists=True)
    db["workers"].create(
        {"token": str, "host": str, "pid": int, "started_at": float, "heartbeat_at": float}, pk="token", if_not_exists=True
    )


def _enable_wal(conn: sqlite3.Connection, *, patience: float = 30.0) -> None:
    """Switch to WAL. Two processes opening a new database at once race for
    the exclusive lock this takes, and SQLite answers "database is locked" at
    once instead of waiting (its busy handler is not used here): retry."""
    deadline = time.monotonic() + patience
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _owner_only(path: str) -> None:
    """Create the database file readable by its owner only, or tighten one
    an earlier version left readable by others: it holds prompts, user ids
    and, while jobs run, response URLs and interaction tokens. SQLite gives
    the -wal and -shm files the mode of the database file."""
    if path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # sqlite3.connect() reports a path that can't be opened, as before
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in ("-wal", "-shm"):
        try:
            os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


class DatabaseMissing(sqlite3.OperationalError):
    """The database file was deleted or replaced under the running process.
    SQLite would go on writing into the unlinked file, where every write is
    lost at exit: refuse instead, so the fault shows (health, retries)."""


def _identity(path: str) -> tuple[int, int] | None:
    if path == ":memory:" or path.startswith("file:"):
        return None
    st = os.stat(path)
    return st.st_dev, st.st_ino


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="imaginebot-db")
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self.db: sqlite_utils.Database

    def open_sync(self) -> None:
        _owner_only(self.path)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so that a
        # check-then-insert cannot interleave with another process's.
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        _enable_wal(conn)
        conn.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes; WAL keeps it consistent
        conn.execute("PRAGMA busy_timeout=30000")
        self._conn = conn
        self._identity = _identity(self.path)
        self.db = sqlite_utils.Database(conn)
        with self.transaction():
            _create_schema(self.db)

    async def open(self) -> None:
        await self.run(self.open_sync)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "Store.open() first"
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT: takes the write lock up front, so the
        reads inside see what no other writer can change before we commit."""
        conn = self.conn
        self.check_file()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL does): a second
            # ROLLBACK would raise and hide the error that matters.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        else:
            conn.execute("COMMIT")

    def check_file(self) -> None:
        """Raise DatabaseMissing if the file is no longer the one we opened."""
        if self._identity is None:
            return
        try:
            now = _identity(self.path)
        except FileNotFoundError:
            raise DatabaseMissing(f"the database file {self.path} was deleted") from None
        if now != self._identity:
            raise DatabaseMissing(f"the database file {self.path} was replaced")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

    def close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def close(self) -> None:
        if self._conn is not None:
            await self.run(self.close_sync)
        self._executor.shutdown(wait=True)
