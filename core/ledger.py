"""Per-user daily limits, budgets and accounting.

Every job first `reserve()`s its weighted images and an estimated cost, in
one BEGIN IMMEDIATE transaction that checks and records together, so neither
concurrent tasks nor a second process sharing the database can overrun a
limit. The job then `settle()`s with the real usage or is `refund()`ed. A
reservation left behind by a crashed process is refunded by `recover()`.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Mapping

from core import messages
from core.config import Config
from core.errors import BudgetExhausted, CoolingDown, LimitReached, TooManyJobs
from core.models import ImageOptions, InterruptedJob, QuotaStatus, Requester, Usage
from core.store import Store

Clock = Callable[[], datetime]

# A process beats its heart this many times within the heartbeat timeout
# (server.heartbeat_timeout_seconds): one late beat is not taken for death.
BEATS_PER_TIMEOUT = 4
# Ledgers alive in this process: a second service on the same database in the
# same process (tests, tools) shares our pid and must not be taken for a
# previous incarnation of it.
_LIVE_WORKERS: set[str] = set()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Reservation:
    job_id: str
    requester_key: str
    units: float
    usd: float
    day: str
    n: int


class Ledger:
    def __init__(self, store: Store, config: Config, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.worker = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # Silent for longer than this, a process is dead: its reservations are refunded.
        self.dead_after = config.server.heartbeat_timeout_seconds
        self.heartbeat_seconds = self.dead_after / BEATS_PER_TIMEOUT
        _LIVE_WORKERS.add(self.worker)

    # -- days -------------------------------------------------------------

    def _local_now(self) -> datetime:
        return self.clock().astimezone(self.config.zone)

    def today(self) -> str:
        return self._local_now().date().isoformat()

    def resets_at(self) -> datetime:
        """The next local midnight (DST-safe: built from the date, not +24h)."""
        local = self._local_now()
        tomorrow: date = local.date() + timedelta(days=1)
        return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self.config.zone)

    # -- limits -------------------------------------------------------------

    def _daily_limit(self, conn: Any, requester: Requester) -> int:
        row = conn.execute("SELECT daily FROM user_limits WHERE user_key = ?", (requester.key,)).fetchone()
        if row is not None:
            return int(row[0])
        role_limits: list[int] = []
        if requester.roles:
            marks = ",".join("?" * len(requester.roles))
            rows = conn.execute(
                f"SELECT daily FROM role_limits WHERE workspace_key = ? AND role IN ({marks})",
                (requester.workspace_key, *requester.roles),
            ).fetchall()
            role_limits = [int(r[0]) for r in rows]
            role_limits += [int(v) for k, v in self.config.limits.roles.items() if k in requester.roles]
        # The most generous of the member's roles wins, as with Discord permissions.
        return max(role_limits) if role_limits else self.config.limits.daily_images_per_user

    def _workspace_budget(self, conn: Any, workspace_key: str) -> float:
        row = conn.execute("SELECT daily_usd FROM budgets WHERE workspace_key = ?", (workspace_key,)).fetchone()
        return float(row[0]) if row is not None else self.config.limits.daily_budget_usd_per_workspace

    def _cooldown_until(self, conn: Any, user_key: str, now: float) -> datetime | None:
        row = conn.execute("SELECT until FROM cooldowns WHERE user_key = ?", (user_key,)).fetchone()
        if row is None or row[0] <= now:
            return None
        return datetime.fromtimestamp(row[0], timezone.utc).astimezone(self.config.zone)

    # -- reserve / settle / refund -----------------------------------------

    def reserve_sync(
        self,
        requester: Requester,
        *,
        kind: str,
        prompt: str,
        options: ImageOptions,
        model: str,
        units: float,
        usd: float,
        input_images: int = 0,
        notify: Mapping[str, Any] | None = None,
        job_id: str | None = None,
    ) -> Reservation:
        job_id = job_id or new_job_id()
        now_dt = self.clock()
        now = now_dt.timestamp()
        day = self.today()
        limits = self.config.limits
        with self.store.transaction() as conn:
            until = self._cooldown_until(conn, requester.key, now)
            if until is not None:
                raise CoolingDown(messages.cooling_down(until, now_dt), until=until, job_id=job_id)
            in_flight = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE user_key = ? AND status = 'reserved'", (requester.key,)
            ).fetchone()[0]
            if in_flight >= limits.max_jobs_in_flight_per_user:
                raise TooManyJobs(messages.too_many_jobs(limits.max_jobs_in_flight_per_user), job_id=job_id)
            limit = self._daily_limit(conn, requester)
            used = conn.execute(
                "SELECT COALESCE(SUM(units), 0) FROM jobs WHERE user_key = ? AND day = ?", (requester.key, day)
            ).fetchone()[0]
            if used + units > limit:
                resets = self.resets_at()
                raise LimitReached(messages.limit_reached(used, limit, units, resets, now_dt), resets_at=resets, job_id=job_id)
            budget = self._workspace_budget(conn, requester.workspace_key)
            if budget > 0:
                spent = conn.execute(
                    "SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE workspace_key = ? AND day = ?",
                    (requester.workspace_key, day),
                ).fetchone()[0]
                if spent + usd > budget:
                    resets = self.resets_at()
                    raise BudgetExhausted(messages.budget_exhausted("workspace", resets, now_dt), resets_at=resets, job_id=job_id)
            if limits.daily_budget_usd_total > 0:
                spent = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE day = ?", (day,)).fetchone()[0]
                if spent + usd > limits.daily_budget_usd_total:
                    resets = self.resets_at()
                    raise BudgetExhausted(messages.budget_exhausted("total", resets, now_dt), resets_at=resets, job_id=job_id)
            conn.execute(
                """INSERT INTO jobs (id, kind, platform, workspace_key, user_key, channel, prompt, size, quality, n,
                       format, background, model, status, day, units, usd, cost_usd, images, input_images, attempts,
                       created_at, owner, notify)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'reserved', ?, ?, ?, 0, 0, ?, 0, ?, ?, ?)""",
                (
                    job_id, kind, requester.platform, requester.workspace_key, requester.key, requester.channel,
                    prompt, options.size, options.quality, options.n, options.format, options.background, model,
                    day, units, usd, input_images, now, self.worker, json.dumps(dict(notify or {})),
                ),
            )
        return Reservation(job_id=job_id, requester_key=requester.key, units=units, usd=usd, day=day, n=options.n)

    def mark_started_sync(self, job_id: str, queue_seconds: float, started_at: float) -> None:
        with self.store.transaction() as conn:
            conn.execute("UPDATE jobs SET started_at = ?, queue_seconds = ? WHERE id = ?", (started_at, queue_seconds, job_id))

    def settle_sync(
        self,
        reservation: Reservation,
        *,
        usage: Usage,
        cost_usd: float,
        images: int,
        model: str,
        model_seconds: float,
        attempts: int,
    ) -> None:
        """The job succeeded: charge the images it made and its real cost.
        Fewer images than asked (the API may return fewer) cost fewer units."""
        per_image = reservation.units / max(1, reservation.n)
        with self.store.transaction() as conn:
            conn.execute(
                """UPDATE jobs SET status = 'succeeded', units = ?, usd = ?, cost_usd = ?, images = ?, model = ?,
                       input_text_tokens = ?, input_image_tokens = ?, output_image_tokens = ?, output_text_tokens = ?,
                       cached_tokens = ?, finished_at = ?, model_seconds = ?, attempts = ?, notify = '{}'
                   WHERE id = ? AND status = 'reserved'""",
                (
                    per_image * images, cost_usd, cost_usd, images, model, usage.input_text_tokens,
                    usage.input_image_tokens, usage.output_image_tokens, usage.output_text_tokens,
                    0, self.clock().timestamp(), model_seconds,  # cached_tokens: the Images API reports none
                    attempts, reservation.job_id,
                ),
            )

    def refund_sync(self, job_id: str, *, status: str = "failed", error_code: str | None = None, attempts: int | None = None) -> bool:
        """Give back what the job reserved. Idempotent: only a job still
        holding its reservation is refunded, so a refund never happens twice."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                """UPDATE jobs SET status = ?, units = 0, usd = 0, error_code = ?, finished_at = ?,
                       attempts = COALESCE(?, attempts), notify = '{}'
                   WHERE id = ? AND status = 'reserved'""",
                (status, error_code, self.clock().timestamp(), attempts, job_id),
            )
            return cur.rowcount == 1

    def remember_sync(self, job_id: str, notify: Mapping[str, Any]) -> None:
        """Add to what a job stored about reaching its user (e.g. the progress
        message posted after the reservation), for announcing it after a crash."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT notify FROM jobs WHERE id = ? AND status = 'reserved'", (job_id,)).fetchone()
            if row is not None:
                merged = {**json.loads(row[0] or "{}"), **dict(notify)}
                conn.execute("UPDATE jobs SET notify = ? WHERE id = ?", (json.dumps(merged), job_id))

    def undelivered_sync(self, job_id: str, error_code: str) -> bool:
        """The images were made (and paid to OpenAI) but never reached the
        user: give the images back to their daily limit. The cost stays on the
        books and in budgets — it was really spent."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = 'undelivered', units = 0, error_code = ? WHERE id = ? AND status = 'succeeded'",
                (error_code, job_id),
            )
            return cur.rowcount == 1

    def record_policy_block_sync(
        self, reservation: Reservation, *, stage: str, categories: tuple[str, ...], charge: bool
    ) -> datetime | None:
        """Record the block; refund unless blocks are charged; start a
        cool-down when the day's blocks reach the threshold. Returns the end
        of a cool-down that this block started."""
        now_dt = self.clock()
        now = now_dt.timestamp()
        day = self.today()
        limits = self.config.limits
        with self.store.transaction() as conn:
            if charge:
                # Keep the images on the user's limit, but no money: a blocked
                # call reports no usage, so OpenAI billed nothing to record.
                cur = conn.execute(
                    "UPDATE jobs SET status = 'blocked', usd = 0, cost_usd = 0, error_code = 'policy_blocked', finished_at = ?, "
                    "notify = '{}' WHERE id = ? AND status = 'reserved'",
                    (now, reservation.job_id),
                )
            else:
                cur = conn.execute(
                    """UPDATE jobs SET status = 'blocked', units = 0, usd = 0, error_code = 'policy_blocked', finished_at = ?,
                       notify = '{}' WHERE id = ? AND status = 'reserved'""",
                    (now, reservation.job_id),
                )
            if cur.rowcount == 0:
                return None  # recorded already (a retried write), or the job was refunded meanwhile
            conn.execute(
                "INSERT INTO policy_blocks (user_key, day, at, job_id, stage, categories) VALUES (?, ?, ?, ?, ?, ?)",
                (reservation.requester_key, day, now, reservation.job_id, stage, json.dumps(list(categories))),
            )
            count = conn.execute(
                "SELECT COUNT(*) FROM policy_blocks WHERE user_key = ? AND day = ?", (reservation.requester_key, day)
            ).fetchone()[0]
            if limits.cooldown_minutes > 0 and count >= limits.policy_blocks_before_cooldown:
                until = now + limits.cooldown_minutes * 60
                conn.execute(
                    "INSERT INTO cooldowns (user_key, until) VALUES (?, ?) ON CONFLICT(user_key) DO UPDATE SET until = excluded.until",
                    (reservation.requester_key, until),
                )
                return datetime.fromtimestamp(until, timezone.utc).astimezone(self.config.zone)
        return None

    # -- queries ----------------------------------------------------------

    def quota_sync(self, requester: Requester) -> QuotaStatus:
        conn = self.store.conn
        day = self.today()
        now = self.clock().timestamp()
        used, in_flight = conn.execute(
            "SELECT COALESCE(SUM(units), 0), COALESCE(SUM(status = 'reserved'), 0) FROM jobs WHERE user_key = ? AND day = ?",
            (requester.key, day),
        ).fetchone()
        budget = self._workspace_budget(conn, requester.workspace_key)
        spent = conn.execute(
            "SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE workspace_key = ? AND day = ?", (requester.workspace_key, day)
        ).fetchone()[0]
        return QuotaStatus(
            requester_key=requester.key,
            used=float(used),
            limit=self._daily_limit(conn, requester),
            in_flight=int(in_flight),
            resets_at=self.resets_at(),
            cooldown_until=self._cooldown_until(conn, requester.key, now),
            workspace_budget_usd=budget,
            workspace_spent_usd=float(spent),
        )

    # -- admin --------------------------------------------------------------

    def set_user_limit_sync(self, user_key: str, daily: int | None, set_by: str) -> None:
        with self.store.transaction() as conn:
            if daily is None:
                conn.execute("DELETE FROM user_limits WHERE user_key = ?", (user_key,))
            else:
                conn.execute(
                    """INSERT INTO user_limits (user_key, daily, set_by, set_at) VALUES (?, ?, ?, ?)
                       ON CONFLICT(user_key) DO UPDATE SET daily = excluded.daily, set_by = excluded.set_by, set_at = excluded.set_at""",
                    (user_key, daily, set_by, time.time()),
                )

    def set_role_limit_sync(self, workspace_key: str, role: str, daily: int | None, set_by: str) -> None:
        with self.store.transaction() as conn:
            if daily is None:
                conn.execute("DELETE FROM role_limits WHERE workspace_key = ? AND role = ?", (workspace_key, role))
            else:
                conn.execute(
                    """INSERT INTO role_limits (workspace_key, role, daily, set_by, set_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(workspace_key, role) DO UPDATE SET daily = excluded.daily, set_by = excluded.set_by,
                       set_at = excluded.set_at""",
                    (workspace_key, role, daily, set_by, time.time()),
                )

    def set_workspace_budget_sync(self, workspace_key: str, usd: float, set_by: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                """INSERT INTO budgets (workspace_key, daily_usd, set_by, set_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT(workspace_key) DO UPDATE SET daily_usd = excluded.daily_usd, set_by = excluded.set_by,
                   set_at = excluded.set_at""",
                (workspace_key, usd, set_by, time.time()),
            )

    def reset_user_sync(self, user_key: str, set_by: str) -> None:
        """Forgive today's images (costs stay on the books) and lift a cool-down."""
        day = self.today()
        with self.store.transaction() as conn:
            conn.execute("UPDATE jobs SET units = 0 WHERE user_key = ? AND day = ? AND status != 'reserved'", (user_key, day))
            conn.execute("DELETE FROM cooldowns WHERE user_key = ?", (user_key,))
            conn.execute("DELETE FROM policy_blocks WHERE user_key = ? AND day = ?", (user_key, day))
            conn.execute(
                "INSERT OR REPLACE INTO resets (user_key, day, at, set_by) VALUES (?, ?, ?, ?)", (user_key, day, time.time(), set_by)
            )

    def claim_event_sync(self, key: str) -> bool:
        with self.store.transaction() as conn:
            cur = conn.execute("INSERT OR IGNORE INTO seen_events (key, at) VALUES (?, ?)", (key, time.time()))
            # Keep the table small: platforms retry within minutes, not days.
            conn.execute("DELETE FROM seen_events WHERE at < ?", (time.time() - 86400,))
            return cur.rowcount == 1

    # -- processes and crash recovery --------------------------------------

    def heartbeat_sync(self) -> None:
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute(
                """INSERT INTO workers (token, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(token) DO UPDATE SET heartbeat_at = excluded.heartbeat_at""",
                (self.worker, self.host, self.pid, now, now),
            )

    def retire_sync(self) -> None:
        _LIVE_WORKERS.discard(self.worker)
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM workers WHERE token = ?", (self.worker,))

    def recover_sync(self) -> list[InterruptedJob]:
        """Refund the reservations of jobs whose process is gone: it is not
        this one, and it has stopped beating its heart (on any host: only the
        heartbeat's age decides for another host), or it was on this host
        under a pid that is dead (or is ours: a previous incarnation in a
        container, where every start has the same pid)."""
        self.heartbeat_sync()
        now = time.time()
        with self.store.transaction() as conn:
            workers = {
                r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT token, host, pid, heartbeat_at FROM workers").fetchall()
            }
            owners = [r[0] for r in conn.execute("SELECT DISTINCT owner FROM jobs WHERE status = 'reserved'").fetchall()]
            gone = [o for o in owners if o != self.worker and (o not in workers or self._worker_gone(o, *workers[o], now=now))]
            interrupted = [job for owner in gone for job in self._interrupt_jobs_of(conn, owner, now)]
            dead = [t for t, w in workers.items() if t != self.worker and self._worker_gone(t, *w, now=now)]
            conn.executemany("DELETE FROM workers WHERE token = ?", [(t,) for t in dead])
        return interrupted

    def refund_own_sync(self) -> list[InterruptedJob]:
        """At shutdown, after the grace period: whatever this process still
        holds reserved will never finish."""
        with self.store.transaction() as conn:
            return self._interrupt_jobs_of(conn, self.worker, time.time())

    def _interrupt_jobs_of(self, conn: Any, owner: str, now: float) -> list[InterruptedJob]:
        rows = conn.execute(
            "SELECT id, user_key, kind, prompt, notify, created_at FROM jobs WHERE status = 'reserved' AND owner = ?", (owner,)
        ).fetchall()
        conn.execute(
            """UPDATE jobs SET status = 'interrupted', units = 0, usd = 0, error_code = 'interrupted', finished_at = ?,
                   notify = '{}' WHERE status = 'reserved' AND owner = ?""",
            (now, owner),
        )
        return [
            InterruptedJob(
                job_id=job_id,
                requester_key=user_key,
                kind=kind,
                prompt=prompt,
                notify=json.loads(notify or "{}"),
                created_at=datetime.fromtimestamp(created_at, timezone.utc),
            )
            for job_id, user_key, kind, prompt, notify, created_at in rows
        ]

    def _worker_gone(self, token: str, host: str, pid: int, heartbeat_at: float, *, now: float) -> bool:
        if now - heartbeat_at > self.dead_after:
            return True
        if host == self.host:
            if pid == self.pid:
                return token not in _LIVE_WORKERS
            return not _pid_alive(pid)
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def new_job_id() -> str:
    # Short enough to read out to an admin, unique enough for one bot.
    return uuid.uuid4().hex[:12]
