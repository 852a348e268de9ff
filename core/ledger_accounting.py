"""Accounting: every job first `reserve()`s its weighted images and an
estimated cost, in one transaction that checks and records together, so
neither concurrent tasks nor other processes sharing the database can overrun
a limit or a budget. The job then `settle()`s with the real usage or is
`refund()`ed; a policy block is recorded (and may start a cool-down)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Mapping

from core import messages
from core.errors import BudgetExhausted, CoolingDown, LimitReached, TooManyJobs
from core.ledger_base import LedgerBase, Reservation, new_job_id
from core.ledger_status import BLOCKED, FAILED, INTERRUPTED, REFUNDED, RESERVED, SUCCEEDED, UNDELIVERED, holding, may_become
from core.models import ImageOptions, QuotaStatus, Requester, Usage
from core.store import Connection, Store

_USAGE = f"""
SELECT {{group}} AS name,
       COUNT(*) AS jobs,
       CAST(COALESCE(SUM(CASE WHEN status = '{SUCCEEDED}' THEN images ELSE 0 END), 0) AS INTEGER) AS images,
       COALESCE(SUM(cost_usd), 0) AS usd,
       COALESCE(SUM(CASE WHEN id IN (SELECT job_id FROM relax_jobs) THEN cost_usd ELSE 0 END), 0) AS relax_usd,
       CAST(COALESCE(SUM(CASE WHEN status = '{SUCCEEDED}' AND id IN (SELECT job_id FROM relax_jobs)
                             THEN images ELSE 0 END), 0) AS INTEGER) AS relax_images,
       COALESCE(SUM(CASE WHEN status = '{BLOCKED}' THEN 1 ELSE 0 END), 0) AS blocked,
       COALESCE(SUM(CASE WHEN status IN ('{FAILED}', '{INTERRUPTED}') THEN 1 ELSE 0 END), 0) AS failed
FROM jobs WHERE day >= ? GROUP BY {{group}} ORDER BY usd DESC, images DESC
"""


class Accounting(LedgerBase):
    # -- limits -------------------------------------------------------------

    def _daily_limit(self, conn: Connection, requester: Requester) -> int:
        row = conn.execute("SELECT daily FROM user_limits WHERE user_key = ?", (requester.key,)).fetchone()
        return self._limit_of(conn, requester, None if row is None else int(row[0]))

    def _limit_of(self, conn: Connection, requester: Requester, override: int | None) -> int:
        """The user's own limit if an admin set one, else their roles', else the default."""
        if override is not None:
            return override
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

    def _workspace_budget(self, conn: Connection, workspace_key: str) -> float:
        row = conn.execute("SELECT daily_usd FROM budgets WHERE workspace_key = ?", (workspace_key,)).fetchone()
        return self._budget_of(None if row is None else row[0])

    def _budget_of(self, override: float | None) -> float:
        return float(override) if override is not None else self.config.limits.daily_budget_usd_per_workspace

    def _cooldown_until(self, conn: Connection, user_key: str, now: float) -> datetime | None:
        row = conn.execute("SELECT until FROM cooldowns WHERE user_key = ?", (user_key,)).fetchone()
        return self._cooldown_of(None if row is None else row[0], now)

    def _cooldown_of(self, until: float | None, now: float) -> datetime | None:
        if until is None or until <= now:
            return None
        return datetime.fromtimestamp(until, timezone.utc).astimezone(self.config.zone)

    @staticmethod
    def _standing(conn: Connection, requester: Requester, day: str) -> tuple[Any, ...]:
        """What a reservation checks about its user, in one statement (one
        round trip to a database server): cool-down end, jobs in flight,
        the admin's limit for them, units used today, the workspace budget."""
        return tuple(conn.execute(
            "SELECT (SELECT until FROM cooldowns WHERE user_key = ?), "
            "(SELECT COUNT(*) FROM jobs WHERE user_key = ? AND " + holding() + "), "
            "(SELECT daily FROM user_limits WHERE user_key = ?), "
            "(SELECT COALESCE(SUM(units), 0) FROM jobs WHERE user_key = ? AND day = ?), "
            "(SELECT daily_usd FROM budgets WHERE workspace_key = ?)",
            (requester.key, requester.key, requester.key, requester.key, day, requester.workspace_key),
        ).fetchone())  # fmt: skip

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
            # One lock per thing checked, always in this order (user, workspace,
            # everyone): exact across processes, and no two reservations wait
            # for each other in a circle.
            self.store.lock(conn, f"user:{requester.key}")
            cooldown, in_flight, override, used, budget_override = self._standing(conn, requester, day)
            until = self._cooldown_of(cooldown, now)
            if until is not None:
                raise CoolingDown(messages.cooling_down(until, now_dt), until=until, job_id=job_id)
            if in_flight >= limits.max_jobs_in_flight_per_user:
                raise TooManyJobs(messages.too_many_jobs(limits.max_jobs_in_flight_per_user), job_id=job_id)
            limit = self._limit_of(conn, requester, None if override is None else int(override))
            if used + units > limit:
                resets = self.resets_at()
                raise LimitReached(messages.limit_reached(used, limit, units, resets, now_dt), resets_at=resets, job_id=job_id)
            budget = self._budget_of(budget_override)
            if budget > 0:
                self.store.lock(conn, f"workspace:{requester.workspace_key}")
                spent = conn.execute(
                    "SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE workspace_key = ? AND day = ?",
                    (requester.workspace_key, day),
                ).fetchone()[0]
                if spent + usd > budget:
                    resets = self.resets_at()
                    raise BudgetExhausted(messages.budget_exhausted("workspace", resets, now_dt), resets_at=resets, job_id=job_id)
            if limits.daily_budget_usd_total > 0:
                self.store.lock(conn, "everyone")
                spent = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE day = ?", (day,)).fetchone()[0]
                if spent + usd > limits.daily_budget_usd_total:
                    resets = self.resets_at()
                    raise BudgetExhausted(messages.budget_exhausted("total", resets, now_dt), resets_at=resets, job_id=job_id)
            conn.execute(
                """INSERT INTO jobs (id, kind, platform, workspace_key, user_key, channel, prompt, size, quality, n,
                       format, background, model, status, day, units, usd, cost_usd, images, input_images, attempts,
                       created_at, owner, notify)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 0, ?, 0, ?, ?, ?)""",
                (
                    job_id, kind, requester.platform, requester.workspace_key, requester.key, requester.channel,
                    prompt, options.size, options.quality, options.n, options.format, options.background, model,
                    RESERVED, day, units, usd, input_images, now, self.worker, json.dumps(dict(notify or {})),
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
                """UPDATE jobs SET status = ?, units = ?, usd = ?, cost_usd = ?, images = ?, model = ?,
                       input_text_tokens = ?, input_image_tokens = ?, output_image_tokens = ?, output_text_tokens = ?,
                       cached_tokens = ?, finished_at = ?, model_seconds = ?, attempts = ?, notify = '{}'
                   WHERE id = ? AND """ + may_become(SUCCEEDED),
                (
                    SUCCEEDED, per_image * images, cost_usd, cost_usd, images, model, usage.input_text_tokens,
                    usage.input_image_tokens, usage.output_image_tokens, usage.output_text_tokens,
                    0, self.clock().timestamp(), model_seconds,  # cached_tokens: the Images API reports none
                    attempts, reservation.job_id,
                ),
            )

    def refund_sync(
        self, job_id: str, *, status: str = FAILED, error_code: str | None = None, attempts: int | None = None
    ) -> bool:
        """Give back what the job reserved. Idempotent: only a job still
        holding its reservation is refunded, so a refund never happens twice."""
        if status not in REFUNDED:
            raise ValueError(f"a refund ends a job as one of {sorted(REFUNDED)}, not {status!r}")
        with self.store.transaction() as conn:
            cur = conn.execute(
                """UPDATE jobs SET status = ?, units = 0, usd = 0, error_code = ?, finished_at = ?,
                       attempts = COALESCE(?, attempts), notify = '{}'
                   WHERE id = ? AND """ + may_become(status),
                (status, error_code, self.clock().timestamp(), attempts, job_id),
            )
            return cur.rowcount == 1

    def remember_sync(self, job_id: str, notify: Mapping[str, Any]) -> None:
        """Add to what a job stored about reaching its user (e.g. the progress
        message posted after the reservation), for announcing it after a crash."""
        with self.store.transaction() as conn:
            row = conn.execute("SELECT notify FROM jobs WHERE id = ? AND " + holding(), (job_id,)).fetchone()
            if row is not None:
                merged = {**json.loads(row[0] or "{}"), **dict(notify)}
                conn.execute("UPDATE jobs SET notify = ? WHERE id = ?", (json.dumps(merged), job_id))

    def undelivered_sync(self, job_id: str, error_code: str) -> bool:
        """The images were made (and paid to OpenAI) but never reached the
        user: give the images back to their daily limit. The cost stays on the
        books and in budgets — it was really spent."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE jobs SET status = ?, units = 0, error_code = ? WHERE id = ? AND " + may_become(UNDELIVERED),
                (UNDELIVERED, error_code, job_id),
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
            self.store.lock(conn, f"user:{reservation.requester_key}")  # the day's block count decides a cool-down
            if charge:
                # Keep the images on the user's limit, but no money: a blocked
                # call reports no usage, so OpenAI billed nothing to record.
                cur = conn.execute(
                    "UPDATE jobs SET status = ?, usd = 0, cost_usd = 0, error_code = 'policy_blocked', finished_at = ?, "
                    "notify = '{}' WHERE id = ? AND " + may_become(BLOCKED),
                    (BLOCKED, now, reservation.job_id),
                )
            else:
                cur = conn.execute(
                    "UPDATE jobs SET status = ?, units = 0, usd = 0, error_code = 'policy_blocked', finished_at = ?, "
                    "notify = '{}' WHERE id = ? AND " + may_become(BLOCKED),
                    (BLOCKED, now, reservation.job_id),
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
                    "INSERT INTO cooldowns (user_key, until) VALUES (?, ?) "
                    "ON CONFLICT(user_key) DO UPDATE SET until = excluded.until",
                    (reservation.requester_key, until),
                )
                return datetime.fromtimestamp(until, timezone.utc).astimezone(self.config.zone)
        return None

    def quota_sync(self, requester: Requester) -> QuotaStatus:
        day = self.today()
        now = self.clock().timestamp()
        with self.store.reading() as conn:
            used, in_flight = conn.execute(
                "SELECT COALESCE(SUM(units), 0), COALESCE(SUM(CASE WHEN " + holding() + " THEN 1 ELSE 0 END), 0) "
                "FROM jobs WHERE user_key = ? AND day = ?",
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

    # -- reports ------------------------------------------------------------

    def job_sync(self, job_id: str) -> dict[str, Any] | None:
        """One job's row, as stored (the Again button, `imaginebot job`)."""
        rows = self.store.query("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def usage_sync(self, since_day: str) -> dict[str, list[dict[str, Any]]]:
        """Jobs, images, spend, blocks and failures since `since_day`, per
        user and per workspace/server, biggest spenders first."""
        return {name: self.store.query(_USAGE.format(group=group), (since_day,))
                for name, group in (("users", "user_key"), ("workspaces", "workspace_key"))}  # fmt: skip


def jobs_recorded_sync(store: Store) -> int:
    """How many jobs the database holds (doctor: proof it can be read)."""
    return int(store.query("SELECT COUNT(*) AS c FROM jobs")[0]["c"])
