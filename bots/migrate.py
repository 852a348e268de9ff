"""`imaginebot migrate --to URL`: copy the whole ledger of IMAGINEBOT_DB into
another, empty database (SQLite → PostgreSQL when a community outgrows one
host, or back). Stop the bot first: rows written during the copy would not
be in it."""

from __future__ import annotations

from bots.compose import OPEN_FAULTS, UsageError, database_error, database_problem, open_store
from bots.settings import Settings
from core.store import redact, store_for
from core.store_copy import TargetNotEmpty, copy_database


def _about_target(text: str, target: str) -> str:
    for shown in (target, redact(target)):
        text = text.replace(f"IMAGINEBOT_DB={shown}", f"--to {shown}")
    return text


async def migrate_to(settings: Settings, target: str) -> int:
    if target == settings.db_path:
        raise UsageError(f"--to {redact(target)} is the database IMAGINEBOT_DB already names: give another one.")
    problem = database_problem(target, must_exist=False)
    if problem:
        raise UsageError(_about_target(problem, target))
    source = await open_store(settings, must_exist=True)  # never creates an empty source
    try:
        dest = store_for(target)
        try:
            await dest.open()
        except OPEN_FAULTS as e:
            await dest.close()
            raise UsageError(_about_target(database_error(target, e), target)) from None
        try:
            copied = await dest.run(copy_database, source, dest)
        except TargetNotEmpty as e:
            raise UsageError(f"--to {redact(target)} already holds a ledger ({e}): migrate copies into an empty database "
                             "only. Give a new database, or empty that one first.") from None  # fmt: skip
        finally:
            await dest.close()
    finally:
        await source.close()
    rows = ", ".join(f"{n} {table}" for table, n in copied.items())
    print(f"Copied {redact(settings.db_path)} into {redact(target)}: {rows}.")
    print(f"Point the bot at it: IMAGINEBOT_DB={redact(target)}")
    return 0
