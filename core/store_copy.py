"""`imaginebot migrate --to URL`: copy every row of one database into
another, empty one (SQLite → PostgreSQL when a community outgrows one host,
and back). Both are opened through their store first, so both are at this
build's schema version; the copy is one transaction on the target: all of it
lands, or none."""

from __future__ import annotations

from core.store import Store
from core.store_schema import ALL_TABLES as TABLES

BATCH = 2000  # rows read and written at a time: big ledgers never sit whole in memory


class TargetNotEmpty(Exception):
    """The target already holds a ledger: copying into it would mix two."""


def row_counts(store: Store) -> dict[str, int]:
    return {t.name: int(store.query(f"SELECT COUNT(*) AS n FROM {t.name}")[0]["n"]) for t in TABLES}


def copy_database(source: Store, target: Store) -> dict[str, int]:
    """Copy every table's rows from `source` into `target`; return how many
    rows each table got. Raises TargetNotEmpty before writing anything."""
    held = {name: n for name, n in row_counts(target).items() if n}
    if held:
        raise TargetNotEmpty(", ".join(f"{n} {name}" for name, n in held.items()))
    copied: dict[str, int] = {}
    with target.transaction() as conn:
        for table in TABLES:
            names = [name for name, _ in table.columns]
            insert = f"INSERT INTO {table.name} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"
            order = ", ".join(table.pk)
            copied[table.name] = 0
            while True:
                rows = source.query(
                    f"SELECT {', '.join(names)} FROM {table.name} ORDER BY {order} LIMIT {BATCH} OFFSET {copied[table.name]}"
                )
                if not rows:
                    break
                conn.executemany(insert, [tuple(row[name] for name in names) for row in rows])
                copied[table.name] += len(rows)
            if table.serial and target.dialect == "postgresql":
                # Copied ids were given explicitly: numbering goes on after the highest.
                conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', '{table.serial}'), "
                    f"COALESCE(MAX({table.serial}), 0) + 1, false) FROM {table.name}"
                )
    return copied
