"""The database behind the ledger: one interface, two backends.

- SQLite (core/store_sqlite.py), the embedded default: a file, no server.
- PostgreSQL (core/store_postgres.py): one ledger shared by any number of
  processes and hosts (`IMAGINEBOT_DB=postgresql://…`).

Ledger operations are synchronous functions, each one transaction, run on
the store's database thread(s) through `run()`, so database work never
blocks the event loop. Inside a transaction they talk to a `Connection`
with `?` placeholders; the backend translates what differs.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Callable, Protocol, Sequence, TypeVar

T = TypeVar("T")

# What a database that can't take a write raises (SQLITE_FULL, the store's
# own "file is gone", a PostgreSQL server that went away); anything else is
# a bug, which retrying would not fix.
DATABASE_FAULTS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
try:
    import psycopg
except ImportError:  # the SQLite default runs without the PostgreSQL driver
    pass
else:
    DATABASE_FAULTS += (psycopg.Error,)

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What a ledger transaction talks to (sqlite3's shape)."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, params: Sequence[Sequence[Any]], /) -> Any: ...


class Store:
    """The interface both backends implement."""

    dialect: str  # "sqlite" | "postgresql"
    url: str

    def __init__(self, threads: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="imaginebot-db")

    def open_sync(self) -> None:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[Connection]:
        """One transaction; it commits when the block ends, rolls back if it raises."""
        raise NotImplementedError

    def reading(self) -> AbstractContextManager[Connection]:
        """A consistent read, taking no write lock."""
        raise NotImplementedError

    def lock(self, conn: Connection, key: str) -> None:
        """Within a transaction: no other transaction holding `key` runs until
        this one ends, in any process (what makes check-then-insert exact)."""
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        raise NotImplementedError

    def close_sync(self) -> None:
        raise NotImplementedError

    def check_file(self) -> None:
        """Raise if the database is no longer the one opened (SQLite's file)."""

    async def open(self) -> None:
        await self.run(self.open_sync)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on a database thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        await self.run(self.close_sync)
        self._executor.shutdown(wait=True)


def redact(db: str) -> str:
    """IMAGINEBOT_DB without a URL's password, for messages and logs."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", db)


def is_postgres(db: str) -> bool:
    return db.startswith(POSTGRES_SCHEMES)


def store_for(db: str) -> Store:
    """The store for IMAGINEBOT_DB: a `postgresql://` URL or a SQLite file path."""
    if is_postgres(db):
        from core.store_postgres import PostgresStore

        return PostgresStore(db)
    from core.store_sqlite import SqliteStore

    return SqliteStore(db)
