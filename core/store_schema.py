"""The database's tables, written once for both backends, and the numbered
steps that bring any database up to date.

Each step runs at start, in one transaction with the record that it ran
(`schema_migrations`), so a database is always at one version. Step 1 is the
schema of release 0.1.0: a database that release made has those tables
already (CREATE … IF NOT EXISTS keeps every row) and is stamped version 1,
then takes the later steps.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from core.store import Connection

Column = tuple[str, type]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    pk: tuple[str, ...]
    defaults: dict[str, object] = field(default_factory=dict)
    indexes: tuple[tuple[str, ...], ...] = ()
    serial: str | None = None  # an integer primary key the database numbers


JOBS = Table(
    "jobs",
    (
        ("id", str), ("kind", str), ("platform", str), ("workspace_key", str), ("user_key", str), ("channel", str),
        ("prompt", str), ("size", str), ("quality", str), ("n", int), ("format", str), ("background", str),
        ("model", str),
        ("status", str),  # see core/ledger_status.py
        ("day", str),  # local date (config time zone) the quota was taken from
        ("units", float),  # what counts against the user's daily images now (0 once refunded)
        ("usd", float),  # what counts against budgets now: the estimate, then the real cost
        ("cost_usd", float),  # the real cost from usage
        ("input_text_tokens", int), ("input_image_tokens", int), ("output_image_tokens", int),
        ("output_text_tokens", int), ("cached_tokens", int), ("images", int), ("input_images", int),
        ("attempts", int), ("error_code", str), ("created_at", float), ("started_at", float),
        ("finished_at", float), ("queue_seconds", float), ("model_seconds", float), ("owner", str),
        # JSON: how to reach the user if the job is interrupted; emptied once the job ends
        # (it can hold a Discord interaction token, which must not outlive the job in the database)
        ("notify", str),
    ),
    pk=("id",),
    defaults={"units": 0, "usd": 0, "cost_usd": 0, "attempts": 0, "images": 0, "input_images": 0},
    indexes=(("user_key", "day"), ("workspace_key", "day"), ("day",), ("status",)),
)  # fmt: skip

TABLES: tuple[Table, ...] = (
    JOBS,
    Table("user_limits", (("user_key", str), ("daily", int), ("set_by", str), ("set_at", float)), pk=("user_key",)),
    Table(
        "role_limits",
        (("workspace_key", str), ("role", str), ("daily", int), ("set_by", str), ("set_at", float)),
        pk=("workspace_key", "role"),
    ),
    Table("budgets", (("workspace_key", str), ("daily_usd", float), ("set_by", str), ("set_at", float)), pk=("workspace_key",)),
    Table(
        "policy_blocks",
        (("id", int), ("user_key", str), ("day", str), ("at", float), ("job_id", str), ("stage", str), ("categories", str)),
        pk=("id",),
        indexes=(("user_key", "day"),),
        serial="id",
    ),
    Table("cooldowns", (("user_key", str), ("until", float)), pk=("user_key",)),
    Table("resets", (("user_key", str), ("day", str), ("at", float), ("set_by", str)), pk=("user_key", "day")),
    Table("seen_events", (("key", str), ("at", float)), pk=("key",)),
    Table(
        "workers",
        (("token", str), ("host", str), ("pid", int), ("started_at", float), ("heartbeat_at", float)),
        pk=("token",),
    ),
)

# Tables added by later steps: created by their step, never by step 1 (which
# is the release schema), and copied by `imaginebot migrate` like the others.
JOB_INPUTS = Table(
    "job_inputs",
    # The images an edit used, as platform references (JSON: a Slack file id; a
    # Discord channel, message and attachment id), never URLs or tokens: a
    # button looks them up again and downloads them fresh.
    (("job_id", str), ("position", int), ("role", str), ("ref", str)),
    pk=("job_id", "position"),
)
JOB_RESULTS = Table(
    "job_results",
    # Where a job's images were posted (JSON platform reference), so that the
    # buttons under them and /history work in any process, after a restart.
    (("job_id", str), ("ref", str), ("posted_at", float), ("deleted_at", float)),
    pk=("job_id",),
)

_PG_TYPES = {str: "TEXT", int: "BIGINT", float: "DOUBLE PRECISION"}
_SQLITE_TYPES = {str: "TEXT", int: "INTEGER", float: "FLOAT"}


def index_name(table: str, columns: tuple[str, ...]) -> str:
    # The names sqlite-utils gave them in release 0.1.0.
    return f"idx_{table}_{'_'.join(columns)}"


def create_table_sql(table: Table, dialect: str) -> list[str]:
    """CREATE TABLE / INDEX … IF NOT EXISTS for one table."""
    types = _PG_TYPES if dialect == "postgresql" else _SQLITE_TYPES
    cols = []
    for name, kind in table.columns:
        if name == table.serial:
            cols.append(f"{name} BIGINT GENERATED BY DEFAULT AS IDENTITY" if dialect == "postgresql" else f"{name} INTEGER")
            continue
        col = f"{name} {types[kind]}"
        if name in table.defaults:
            col += f" DEFAULT {table.defaults[name]}"
        cols.append(col)
    cols.append(f"PRIMARY KEY ({', '.join(table.pk)})")
    statements = [f"CREATE TABLE IF NOT EXISTS {table.name} ({', '.join(cols)})"]
    for index in table.indexes:
        statements.append(f"CREATE INDEX IF NOT EXISTS {index_name(table.name, index)} ON {table.name} ({', '.join(index)})")
    return statements


def _v1_release_schema(dialect: str) -> list[str]:
    return [sql for table in TABLES for sql in create_table_sql(table, dialect)]


def _v2_jobs_by_owner(dialect: str) -> list[str]:
    # Dead-worker recovery looks up the reserved jobs of one owner at every heartbeat.
    return [f"CREATE INDEX IF NOT EXISTS {index_name('jobs', ('status', 'owner'))} ON jobs (status, owner)"]


def _v3_seen_events_by_age(dialect: str) -> list[str]:
    # Every claim (each Slack payload, each Discord interaction) also prunes
    # claims older than a day: without this index that DELETE scans the table.
    return [f"CREATE INDEX IF NOT EXISTS {index_name('seen_events', ('at',))} ON seen_events (at)"]


def _v4_job_inputs_and_results(dialect: str) -> list[str]:
    # The buttons under a result (Again on an edit, Vary, Bigger, Delete) and
    # /history need an edit's inputs and a result's message after a restart.
    # Jobs are listed newest first per user for /history.
    return [
        *create_table_sql(JOB_INPUTS, dialect),
        *create_table_sql(JOB_RESULTS, dialect),
        f"CREATE INDEX IF NOT EXISTS {index_name('jobs', ('user_key', 'created_at'))} ON jobs (user_key, created_at)",
    ]


RELAX_BATCHES = Table(
    "relax_batches",
    (
        ("id", str),  # ours, made before OpenAI is asked (also the batch's metadata)
        ("state", str),  # preparing, submitted, finished (see core/ledger_relax.py)
        ("openai_batch_id", str), ("input_file_id", str), ("output_file_id", str), ("error_file_id", str),
        ("openai_status", str),  # the Batch API's own status, as last seen
        ("lines", int), ("input_bytes", int),
        ("created_at", float), ("submitted_at", float), ("finished_at", float),
        ("next_poll_at", float),
        # One process works on a batch at a time: the claim expires, so a dead one's batch is taken over.
        ("claim_owner", str), ("claim_until", float),
    ),
    pk=("id",),
    defaults={"lines": 0, "input_bytes": 0},
    indexes=(("state",),),
)  # fmt: skip

RELAX_JOBS = Table(
    "relax_jobs",
    (
        ("job_id", str),  # jobs.id; also the line's custom_id
        ("batch_id", str),  # relax_batches.id once flushed; NULL while it can still be cancelled
        ("state", str),  # waiting, batched, settled, delivering, delivered, refunded, cancelled
        ("user_key", str), ("day", str),
        ("platform", str),  # whose courier delivers it: slack, discord, or one waiting CLI run
        ("units", float),  # against the relax allowance ([relax] daily_images_per_user), not the fast one
        ("request", str),  # JSON: the body of the batch line (the same JSON as images.generate)
        ("reach", str),  # JSON: where to post the result and whom to mention; never a token
        ("created_at", float), ("settled_at", float), ("delivered_at", float),
        ("claim_owner", str), ("claim_until", float),  # the delivery claim (see deliver-once in ledger_relax)
        ("error_code", str),
    ),
    pk=("job_id",),
    defaults={"units": 0},
    indexes=(("state", "created_at"), ("batch_id",), ("user_key", "day")),
)  # fmt: skip


def _v5_relax(dialect: str) -> list[str]:
    # Relax mode: batches and the job <-> custom_id map live in the ledger, so
    # a restart or another replica polls, settles and delivers them.
    return [sql for table in (RELAX_BATCHES, RELAX_JOBS) for sql in create_table_sql(table, dialect)]


# The account's rate limit, one budget for every process on the database
# (core/ledger_pace.py): the images granted to model calls in the last window,
# and what has been learned of the limit.
IMAGE_GRANTS = Table(
    "image_grants",
    (("id", int), ("at", float), ("images", int), ("worker", str)),
    pk=("id",),
    indexes=(("at",),),
    serial="id",
)
PACE = Table(
    "pace",
    (
        ("name", str),  # one row: "openai"
        ("images_per_minute", float),  # the learned limit
        ("exact", int),  # 1 = read from OpenAI's own answer (a 429's message, a header), not guessed
        ("paused_until", float),  # unix time: OpenAI said to wait (Retry-After) until then
        ("updated_at", float),
    ),
    pk=("name",),
)


def _v6_pace(dialect: str) -> list[str]:
    return [sql for table in (IMAGE_GRANTS, PACE) for sql in create_table_sql(table, dialect)]


# The model calls running now, in every process on the database: the global
# cap on concurrent calls (`openai.max_concurrent_calls`) counts these rows
# (core/ledger_pace.py). A row lives from a call's grant to its end.
MODEL_CALLS = Table(
    "model_calls",
    (("id", int), ("worker", str), ("started_at", float)),
    pk=("id",),
    indexes=(("worker",),),
    serial="id",
)


def _v7_model_calls(dialect: str) -> list[str]:
    return create_table_sql(MODEL_CALLS, dialect)



# (version, what it does, its statements for a dialect). Append only: a step
# that has shipped is never edited.
MIGRATIONS: tuple[tuple[int, str, Callable[[str], list[str]]], ...] = (
    (1, "the tables of release 0.1.0", _v1_release_schema),
    (2, "an index for finding a dead worker's jobs", _v2_jobs_by_owner),
    (3, "an index for pruning old event claims", _v3_seen_events_by_age),
    (4, "edit inputs and result messages, for the buttons under results and history", _v4_job_inputs_and_results),
    (5, "relax mode: Batch API batches and their jobs", _v5_relax),
    (6, "the shared images-per-minute budget: recent grants and the learned limit", _v6_pace),
    (7, "the model calls running now, for one cap on concurrent calls across processes", _v7_model_calls),
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
# Every table a database at SCHEMA_VERSION holds (what `imaginebot migrate` copies).
LATER_TABLES: tuple[Table, ...] = (JOB_INPUTS, JOB_RESULTS, RELAX_BATCHES, RELAX_JOBS, IMAGE_GRANTS, PACE, MODEL_CALLS)
ALL_TABLES: tuple[Table, ...] = TABLES + LATER_TABLES

VERSIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, what TEXT, applied_at FLOAT)"


def applied_version(conn: Connection) -> int:
    row = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
    return int(row[0] or 0)


def migrate(conn: Connection, dialect: str) -> list[int]:
    """Inside the caller's transaction (which keeps other processes out):
    run every step the database has not had yet; return their versions."""
    conn.execute(VERSIONS_TABLE)
    have = applied_version(conn)
    if have > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"the database is at schema version {have}, newer than this build's {SCHEMA_VERSION}: upgrade imaginebot"
        )
    done = []
    for version, what, statements in MIGRATIONS:
        if version <= have:
            continue
        for sql in statements(dialect):
            conn.execute(sql)
        conn.execute("INSERT INTO schema_migrations (version, what, applied_at) VALUES (?, ?, ?)", (version, what, time.time()))
        done.append(version)
    return done


class SchemaTooNew(Exception):
    """A newer build has upgraded this database: this one must not write to it."""
