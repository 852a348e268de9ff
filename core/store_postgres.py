"""PostgreSQL, through psycopg 3 and its connection pool: one ledger shared
by any number of bot processes, on any number of hosts.

psycopg 3 runs the ledger's synchronous one-transaction functions as they
are, each on a database thread with a pooled connection, so both backends
share every ledger operation (asyncpg would need an async copy of each).
Transactions are READ COMMITTED; what must be exact across processes (a
reservation's check-then-insert) takes a transaction-scoped advisory lock
on what it checks (`lock()`), which PostgreSQL releases at commit or
rollback, whatever happens to the process.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Iterator, Sequence

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from core.store import Cursor, Store
from core.store_schema import migrate

# Connections, and the threads that use them: enough for a busy bot's
# overlapping reservations and settlements, few enough for a small server's
# max_connections shared by several replicas.
POOL_SIZE = 4
# Held by whoever runs the schema steps: two replicas starting together must
# not both create the tables (CREATE … IF NOT EXISTS races in PostgreSQL).
_MIGRATION_LOCK = "imaginebot:schema"


@lru_cache(maxsize=512)
def _pg_sql(sql: str) -> str:
    """sqlite3's `?` placeholders as psycopg's `%s` (no SQL of ours has a
    literal `?` or `%`)."""
    return sql.replace("%", "%%").replace("?", "%s")


class _Connection:
    """A psycopg connection that speaks the ledger's `?` dialect."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(_pg_sql(sql), tuple(params))

    def executemany(self, sql: str, params: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(_pg_sql(sql), [tuple(p) for p in params])


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        super().__init__(threads=pool_size)
        self.url = url
        self._pool_size = pool_size
        self._pool: ConnectionPool[psycopg.Connection[Any]] | None = None

    def open_sync(self) -> None:
        # Connect once first: a wrong URL or a server that is down fails here,
        # at once and with the server's own words, instead of in the pool.
        psycopg.connect(self.url, connect_timeout=10).close()
        self._pool = ConnectionPool(
            self.url, min_size=1, max_size=self._pool_size, open=True, timeout=30, kwargs={"connect_timeout": 10}
        )
        with self.transaction() as tx:
            self.lock(tx, _MIGRATION_LOCK)
            migrate(tx, self.dialect)

    @property
    def pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        assert self._pool is not None, "Store.open() first"
        return self._pool

    @contextmanager
    def transaction(self) -> Iterator[_Connection]:
        # The pool's block commits when it ends and rolls back if it raises.
        with self.pool.connection() as conn:
            yield _Connection(conn)

    reading = transaction

    def lock(self, conn: Any, key: str) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (key,))

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(_pg_sql(sql), tuple(params))
            return cur.fetchall()

    def close_sync(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
