"""SQLite, through sqlite-utils, so that an admin can also query it with the
`sqlite-utils` command line (`sqlite-utils tables imaginebot.db`).

One connection per store, used from one dedicated thread: in-process callers
are serialised without locks. Across processes, writers serialise on
SQLite's own lock (BEGIN IMMEDIATE), so `lock()` needs to do nothing.
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import sqlite_utils

from core.store import Connection, Store
from core.store_schema import migrate


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


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: str | Path) -> None:
        super().__init__(threads=1)
        self.path = self.url = str(path)
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
        with self.transaction() as tx:
            migrate(tx, self.dialect)

    @property
    def conn(self) -> sqlite3.Connection:
        assert self._conn is not None, "Store.open() first"
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
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

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        # Each statement outside BEGIN is its own snapshot; the ledger's
        # reads that must agree with each other run inside transaction().
        yield self.conn

    def lock(self, conn: Connection, key: str) -> None:
        pass  # BEGIN IMMEDIATE already holds the whole database

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

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, tuple(params)))

    def close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
