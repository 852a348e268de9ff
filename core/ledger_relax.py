"""Relax mode in the ledger: jobs waiting for the Batch API, their batches,
and delivery exactly once, on either backend and across processes.

A relax job is a row in `jobs` (status BATCHED: it holds its estimated cost
against budgets, belongs to no process, so a restart never interrupts it)
plus a row in `relax_jobs` that holds its images against the relax allowance
and walks these states:

    waiting ──flush──▶ batched ──line ok──▶ delivering ──posted──▶ delivered
       │                  │                     └──can't post──▶ undelivered
       └──cancel──▶ cancelled    └──line failed, batch expired──▶ refunded

Deliver once: the line is settled and the delivery claimed (state
`delivering`, `claim_until`) in one transaction before anything is posted,
and marked `delivered` right after the platform took it. A process that dies
before posting leaves a claim that expires; the next poller takes the line
over and posts it, settling nothing twice. A result is never lost; the one
window for a repeat is a crash between the platform accepting the post and
the `delivered` write (one local transaction).

Batches: `preparing` (claimed by the process uploading it) → `submitted`
(polled, one process at a time under an expiring claim) → `finished` (every
line ended). A preparing batch whose claim expired (its process died while
uploading) is taken over and submitted again.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from core import messages
from core.errors import BudgetExhausted, CoolingDown, LimitReached
from core.ledger_base import LedgerBase, Reservation, new_job_id
from core.ledger_status import BATCHED, BLOCKED, FAILED, SUCCEEDED, UNDELIVERED, may_become
from core.models import ImageOptions, Requester, Usage
from core.store import Connection

WAITING, IN_BATCH, DELIVERING, DELIVERED = "waiting", "batched", "delivering", "delivered"
REFUNDED_LINE, CANCELLED, UNDELIVERED_LINE = "refunded", "cancelled", "undelivered"
# Still to be handled by a poller (a line of a finished batch is in neither).
OPEN_LINES = (IN_BATCH, DELIVERING)
PREPARING, SUBMITTED, FINISHED = "preparing", "submitted", "finished"
_FLUSH_LOCK = "relax:flush"


def _in(values: Iterable[str]) -> str:
    """SQL list of our own constants (never user input)."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


@dataclass(frozen=True)
class RelaxLine:
    """One job of a batch, as the poller needs it."""

    job_id: str
    state: str
    platform: str
    user_key: str
    reach: Mapping[str, Any]
    prompt: str
    options: ImageOptions
    model: str
    n: int
    created_at: float


@dataclass(frozen=True)
class BatchToSubmit:
    batch_id: str
    lines: tuple[tuple[str, str], ...]  # (job id = custom_id, request body JSON)


@dataclass(frozen=True)
class ClaimedBatch:
    batch_id: str
    openai_batch_id: str
    submitted_at: float


@dataclass(frozen=True)
class RelaxJobState:
    state: str
    openai_status: str | None
    error_code: str | None


class RelaxLedger(LedgerBase):
    # -- admission ------------------------------------------------------------

    def reserve_relax_sync(
        self,
        requester: Requester,
        *,
        prompt: str,
        options: ImageOptions,
        model: str,
        units: float,
        usd: float,
        request: Mapping[str, Any],
        reach: Mapping[str, Any],
    ) -> Reservation:
        """Reserve a relax job: its images against the relax allowance (not
        the fast one), its estimated batch-price cost against the budgets, in
        one transaction with the checks, like `reserve_sync`."""
        job_id = new_job_id()
        now_dt = self.clock()
        now = now_dt.timestamp()
        day = self.today()
        with self.store.transaction() as conn:
            self.store.lock(conn, f"user:{requester.key}")
            until = self._cooldown_of_row(conn, requester.key, now)
            if until is not None:
                raise CoolingDown(messages.cooling_down(until, now_dt), until=until, job_id=job_id)
            used = self._relax_used(conn, requester.key, day)
            allowance = self.config.relax.daily_images_per_user
            if used + units > allowance:
                resets = self.resets_at()
                raise LimitReached(_relax_limit_text(used, allowance, units, messages.when(resets, now_dt)),
                                   resets_at=resets, job_id=job_id)  # fmt: skip
            self._check_budgets(conn, requester, day, usd, now_dt)
            conn.execute(
                """INSERT INTO jobs (id, kind, platform, workspace_key, user_key, channel, prompt, size, quality, n,
                       format, background, model, status, day, units, usd, cost_usd, images, input_images, attempts,
                       created_at, owner, notify)
                   VALUES (?, 'generate', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, 0, 0, 0, 0, ?, '', '{}')""",
                (
                    job_id, requester.platform, requester.workspace_key, requester.key, requester.channel, prompt,
                    options.size, options.quality, options.n, options.format, options.background, model, BATCHED, day,
                    usd, now,
                ),
            )  # fmt: skip
            conn.execute(
                """INSERT INTO relax_jobs (job_id, state, user_key, platform, day, units, request, reach, created_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (job_id, WAITING, requester.key, courier_of(requester, reach), day, units, json.dumps(dict(request)),
                 json.dumps(dict(reach)), now),
            )  # fmt: skip
        return Reservation(job_id=job_id, requester_key=requester.key, units=units, usd=usd, day=day, n=options.n)

    def _cooldown_of_row(self, conn: Connection, user_key: str, now: float) -> datetime | None:
        row = conn.execute("SELECT until FROM cooldowns WHERE user_key = ?", (user_key,)).fetchone()
        until = None if row is None else row[0]
        if until is None or until <= now:
            return None
        return datetime.fromtimestamp(until, timezone.utc).astimezone(self.config.zone)

    @staticmethod
    def _relax_used(conn: Connection, user_key: str, day: str) -> float:
        # A job that ended without its images (refunded, cancelled, undelivered) no longer counts.
        row = conn.execute(
            "SELECT COALESCE(SUM(r.units), 0) FROM relax_jobs r JOIN jobs j ON j.id = r.job_id "
            f"WHERE r.user_key = ? AND r.day = ? AND j.status IN {_in((BATCHED, SUCCEEDED))} "
            f"AND r.state NOT IN {_in((CANCELLED, REFUNDED_LINE, UNDELIVERED_LINE))}",
            (user_key, day),
        ).fetchone()
        return float(row[0])

    def _check_budgets(self, conn: Connection, requester: Requester, day: str, usd: float, now_dt: datetime) -> None:
        row = conn.execute("SELECT daily_usd FROM budgets WHERE workspace_key = ?", (requester.workspace_key,)).fetchone()
        budget = float(row[0]) if row is not None and row[0] is not None else self.config.limits.daily_budget_usd_per_workspace
        if budget > 0:
            self.store.lock(conn, f"workspace:{requester.workspace_key}")
            spent = conn.execute(
                "SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE workspace_key = ? AND day = ?", (requester.workspace_key, day)
            ).fetchone()[0]
            if spent + usd > budget:
                resets = self.resets_at()
                raise BudgetExhausted(messages.budget_exhausted("workspace", resets, now_dt), resets_at=resets)
        total = self.config.limits.daily_budget_usd_total
        if total > 0:
            self.store.lock(conn, "everyone")
            spent = conn.execute("SELECT COALESCE(SUM(usd), 0) FROM jobs WHERE day = ?", (day,)).fetchone()[0]
            if spent + usd > total:
                resets = self.resets_at()
                raise BudgetExhausted(messages.budget_exhausted("total", resets, now_dt), resets_at=resets)

    def relax_used_sync(self, user_key: str) -> float:
        with self.store.reading() as conn:
            return self._relax_used(conn, user_key, self.today())

    def relax_cancel_sync(self, job_id: str, user_key: str) -> str:
        """The requester's Cancel button: "cancelled" (refunded) while the
        job waits for its batch; "too_late" once it is in one; "not_yours";
        "gone" (unknown, or over)."""
        now = self.clock().timestamp()
        with self.store.transaction() as conn:
            self.store.lock(conn, _FLUSH_LOCK)  # never while a flush is taking it into a batch
            row = conn.execute("SELECT state, user_key FROM relax_jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return "gone"
            state, owner = row
            if owner != user_key:
                return "not_yours"
            if state != WAITING:
                return "too_late" if state in OPEN_LINES else "gone"
            conn.execute("UPDATE relax_jobs SET state = ?, error_code = 'cancelled', reach = '{}' WHERE job_id = ?",
                         (CANCELLED, job_id))  # fmt: skip
            conn.execute(
                "UPDATE jobs SET status = ?, units = 0, usd = 0, error_code = 'cancelled', finished_at = ? "
                "WHERE id = ? AND " + may_become(FAILED),
                (FAILED, now, job_id),
            )
            return "cancelled"

    # -- flushing into batches ------------------------------------------------------

    def relax_flush_sync(self, *, flush_after: float, max_lines: int, claim_seconds: float, force: bool = False) -> BatchToSubmit | None:
        """The next batch to upload, claimed by this process: a batch whose
        uploader died (its claim expired), else up to `max_lines` waiting
        jobs once the oldest has waited `flush_after` seconds (at once when
        `max_lines` wait, or `force`). None if nothing is due."""
        now = self.clock().timestamp()
        with self.store.transaction() as conn:
            self.store.lock(conn, _FLUSH_LOCK)
            abandoned = conn.execute(
                "SELECT id FROM relax_batches WHERE state = ? AND (claim_until IS NULL OR claim_until < ?) "
                "ORDER BY created_at LIMIT 1",
                (PREPARING, now),
            ).fetchone()
            if abandoned is not None:
                batch_id = abandoned[0]
                conn.execute("UPDATE relax_batches SET claim_owner = ?, claim_until = ? WHERE id = ?",
                             (self.worker, now + claim_seconds, batch_id))  # fmt: skip
                rows = conn.execute(
                    "SELECT job_id, request FROM relax_jobs WHERE batch_id = ? AND state = ? ORDER BY created_at",
                    (batch_id, IN_BATCH),
                ).fetchall()
                return BatchToSubmit(batch_id, tuple((r[0], r[1]) for r in rows))
            rows = conn.execute(
                "SELECT job_id, request, created_at FROM relax_jobs WHERE state = ? ORDER BY created_at LIMIT ?",
                (WAITING, max_lines),
            ).fetchall()
            if not rows:
                return None
            if not force and len(rows) < max_lines and rows[0][2] > now - flush_after:
                return None
            batch_id = "rb_" + uuid.uuid4().hex[:16]
            conn.execute(
                "INSERT INTO relax_batches (id, state, lines, created_at, claim_owner, claim_until) VALUES (?, ?, ?, ?, ?, ?)",
                (batch_id, PREPARING, len(rows), now, self.worker, now + claim_seconds),
            )
            conn.executemany("UPDATE relax_jobs SET batch_id = ?, state = ? WHERE job_id = ?",
                             [(batch_id, IN_BATCH, r[0]) for r in rows])  # fmt: skip
            return BatchToSubmit(batch_id, tuple((r[0], r[1]) for r in rows))

    def relax_submitted_sync(self, batch_id: str, *, openai_batch_id: str, input_file_id: str, input_bytes: int,
                             openai_status: str, next_poll_at: float) -> None:  # fmt: skip
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE relax_batches SET state = ?, openai_batch_id = ?, input_file_id = ?, input_bytes = ?, "
                "openai_status = ?, submitted_at = ?, next_poll_at = ?, claim_owner = NULL, claim_until = NULL "
                "WHERE id = ? AND state = ?",
                (SUBMITTED, openai_batch_id, input_file_id, input_bytes, openai_status, self.clock().timestamp(),
                 next_poll_at, batch_id, PREPARING),
            )  # fmt: skip

    def relax_release_sync(self, batch_id: str, *, retry_at: float) -> None:
        """Let go of a batch (an upload or a poll that failed for a while): any process retries it at `retry_at`."""
        with self.store.transaction() as conn:
            conn.execute("UPDATE relax_batches SET claim_owner = NULL, claim_until = ?, next_poll_at = ? WHERE id = ?",
                         (retry_at, retry_at, batch_id))  # fmt: skip

    # -- polling ----------------------------------------------------------------------

    def relax_claim_batches_sync(
        self, platforms: Sequence[str], *, claim_seconds: float, limit: int = 10, due_only: bool = True
    ) -> list[ClaimedBatch]:
        """Submitted batches due for a poll that still hold lines for one of
        `platforms` (the ones this process can deliver to), each claimed by
        this process alone until the claim expires."""
        if not platforms:
            return []
        now = self.clock().timestamp()
        marks = ",".join("?" * len(platforms))
        claimed: list[ClaimedBatch] = []
        with self.store.transaction() as conn:
            rows = conn.execute(
                "SELECT b.id, b.openai_batch_id, b.submitted_at FROM relax_batches b WHERE b.state = ? "
                "AND (b.next_poll_at IS NULL OR b.next_poll_at <= ?) AND (b.claim_until IS NULL OR b.claim_until < ?) "
                f"AND EXISTS (SELECT 1 FROM relax_jobs r WHERE r.batch_id = b.id AND r.state IN {_in(OPEN_LINES)} "
                f"AND r.platform IN ({marks})) ORDER BY b.next_poll_at LIMIT ?",
                (SUBMITTED, now if due_only else float("inf"), now, *platforms, limit),
            ).fetchall()
            for batch_id, openai_id, submitted_at in rows:
                cur = conn.execute(
                    "UPDATE relax_batches SET claim_owner = ?, claim_until = ? WHERE id = ? "
                    "AND (claim_until IS NULL OR claim_until < ?)",
                    (self.worker, now + claim_seconds, batch_id, now),
                )
                if cur.rowcount == 1:
                    claimed.append(ClaimedBatch(batch_id, openai_id, float(submitted_at or now)))
        return claimed

    def relax_polled_sync(self, batch_id: str, *, openai_status: str, output_file_id: str | None,
                          error_file_id: str | None, next_poll_at: float, keep_claim: bool) -> None:  # fmt: skip
        """What the poll saw. A batch still running is let go until `next_poll_at`."""
        with self.store.transaction() as conn:
            if keep_claim:
                conn.execute(
                    "UPDATE relax_batches SET openai_status = ?, output_file_id = ?, error_file_id = ? WHERE id = ?",
                    (openai_status, output_file_id, error_file_id, batch_id),
                )
            else:
                conn.execute(
                    "UPDATE relax_batches SET openai_status = ?, output_file_id = ?, error_file_id = ?, next_poll_at = ?, "
                    "claim_owner = NULL, claim_until = NULL WHERE id = ?",
                    (openai_status, output_file_id, error_file_id, next_poll_at, batch_id),
                )

    def relax_lines_sync(self, batch_id: str, platforms: Sequence[str]) -> dict[str, RelaxLine]:
        """The batch's open lines for these platforms, by custom_id (= job id)."""
        marks = ",".join("?" * len(platforms))
        with self.store.reading() as conn:
            rows = conn.execute(
                "SELECT r.job_id, r.state, r.platform, r.user_key, r.reach, j.prompt, j.size, j.quality, j.n, j.format, "
                "j.background, j.model, r.created_at FROM relax_jobs r JOIN jobs j ON j.id = r.job_id "
                f"WHERE r.batch_id = ? AND r.state IN {_in(OPEN_LINES)} AND r.platform IN ({marks})",
                (batch_id, *platforms),
            ).fetchall()
        return {
            r[0]: RelaxLine(
                job_id=r[0], state=r[1], platform=r[2], user_key=r[3], reach=json.loads(r[4] or "{}"), prompt=r[5],
                options=ImageOptions(size=r[6], quality=r[7], n=int(r[8]), format=r[9], background=r[10]),
                model=r[11], n=int(r[8]), created_at=float(r[12]),
            )
            for r in rows
        }  # fmt: skip

    def relax_finish_batch_sync(self, batch_id: str, *, retry_at: float) -> bool:
        """Finished once no line is open (True); else let go of it: lines for
        platforms this process can't reach are left to a process that can."""
        now = self.clock().timestamp()
        with self.store.transaction() as conn:
            open_lines = conn.execute(
                f"SELECT COUNT(*) FROM relax_jobs WHERE batch_id = ? AND state IN {_in(OPEN_LINES)}", (batch_id,)
            ).fetchone()[0]
            if open_lines:
                conn.execute("UPDATE relax_batches SET claim_owner = NULL, claim_until = NULL, next_poll_at = ? WHERE id = ?",
                             (retry_at, batch_id))  # fmt: skip
                return False
            conn.execute("UPDATE relax_batches SET state = ?, finished_at = ?, claim_owner = NULL, claim_until = NULL "
                         "WHERE id = ?", (FINISHED, now, batch_id))  # fmt: skip
            return True

    # -- one line's outcome -------------------------------------------------------------

    def relax_take_line_sync(self, job_id: str, *, usage: Usage, cost_usd: float, images: int, model: str,
                             claim_seconds: float) -> bool:  # fmt: skip
        """A line that came back with images: settle it (first time only) and
        claim its delivery, in one transaction. True if this process must now
        post it: a fresh line, or one whose earlier delivery claim expired
        (its process died before saying it was posted)."""
        now = self.clock().timestamp()
        with self.store.transaction() as conn:
            row = conn.execute("SELECT state, claim_until, units FROM relax_jobs WHERE job_id = ?", (job_id,)).fetchone()
            if row is None:
                return False
            state, claim_until, units = row
            if state == DELIVERING and claim_until is not None and claim_until >= now:
                return False  # another process is posting it right now
            if state not in OPEN_LINES:
                return False
            if state == IN_BATCH:
                n = conn.execute("SELECT n FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]
                conn.execute(
                    """UPDATE jobs SET status = ?, usd = ?, cost_usd = ?, images = ?, model = ?, input_text_tokens = ?,
                           input_image_tokens = ?, output_image_tokens = ?, output_text_tokens = ?, cached_tokens = 0,
                           finished_at = ?, attempts = 1 WHERE id = ? AND """ + may_become(SUCCEEDED),
                    (SUCCEEDED, cost_usd, cost_usd, images, model, usage.input_text_tokens, usage.input_image_tokens,
                     usage.output_image_tokens, usage.output_text_tokens, now, job_id),
                )  # fmt: skip
                # Fewer images than asked cost fewer units of the allowance.
                units = float(units) / max(1, int(n)) * images
            conn.execute(
                "UPDATE relax_jobs SET state = ?, units = ?, settled_at = COALESCE(settled_at, ?), claim_owner = ?, "
                "claim_until = ? WHERE job_id = ?",
                (DELIVERING, units, now, self.worker, now + claim_seconds, job_id),
            )
            return True

    def relax_delivered_sync(self, job_id: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                "UPDATE relax_jobs SET state = ?, delivered_at = ?, reach = '{}', claim_owner = NULL, claim_until = NULL "
                "WHERE job_id = ? AND state = ?",
                (DELIVERED, self.clock().timestamp(), job_id, DELIVERING),
            )

    def relax_undelivered_sync(self, job_id: str, error_code: str) -> bool:
        """Made and paid, but nowhere to post it: the images go back on the
        relax allowance; the cost stays on the books. True if given back."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE relax_jobs SET state = ?, error_code = ?, reach = '{}', claim_owner = NULL, claim_until = NULL "
                "WHERE job_id = ? AND state = ?",
                (UNDELIVERED_LINE, error_code, job_id, DELIVERING),
            )
            conn.execute("UPDATE jobs SET status = ?, error_code = ? WHERE id = ? AND " + may_become(UNDELIVERED),
                         (UNDELIVERED, error_code, job_id))  # fmt: skip
            return cur.rowcount == 1

    def relax_refund_line_sync(self, job_id: str, error_code: str, *, blocked: tuple[str, tuple[str, ...]] | None = None) -> bool:
        """A line that failed (a policy block, an expired or failed batch):
        nothing charged, the images back on the allowance. Once only: True
        if this call refunded it. A block is recorded like any other."""
        now = self.clock().timestamp()
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE relax_jobs SET state = ?, error_code = ?, reach = '{}' WHERE job_id = ? AND state = ?",
                (REFUNDED_LINE, error_code, job_id, IN_BATCH),
            )
            if cur.rowcount != 1:
                return False
            status = BLOCKED if blocked is not None else FAILED
            conn.execute(
                "UPDATE jobs SET status = ?, units = 0, usd = 0, cost_usd = 0, error_code = ?, finished_at = ? "
                "WHERE id = ? AND " + may_become(status),
                (status, error_code, now, job_id),
            )
            if blocked is not None:
                row = conn.execute("SELECT user_key, day FROM jobs WHERE id = ?", (job_id,)).fetchone()
                conn.execute(
                    "INSERT INTO policy_blocks (user_key, day, at, job_id, stage, categories) VALUES (?, ?, ?, ?, ?, ?)",
                    (row[0], row[1], now, job_id, blocked[0], json.dumps(list(blocked[1]))),
                )
            return True

    # -- reports -------------------------------------------------------------------------

    def relax_job_state_sync(self, job_id: str) -> RelaxJobState | None:
        with self.store.reading() as conn:
            row = conn.execute(
                "SELECT r.state, b.openai_status, r.error_code FROM relax_jobs r "
                "LEFT JOIN relax_batches b ON b.id = r.batch_id WHERE r.job_id = ?",
                (job_id,),
            ).fetchone()
        return None if row is None else RelaxJobState(row[0], row[1], row[2])

    def relax_counts_sync(self) -> dict[str, int]:
        """For /metrics: relax jobs by state still open, and batches not finished."""
        with self.store.reading() as conn:
            jobs = dict(conn.execute(
                f"SELECT state, COUNT(*) FROM relax_jobs WHERE state IN {_in((WAITING, *OPEN_LINES))} GROUP BY state"
            ).fetchall())  # fmt: skip
            batches = conn.execute(f"SELECT COUNT(*) FROM relax_batches WHERE state IN {_in((PREPARING, SUBMITTED))}").fetchone()[0]
        return {"waiting": int(jobs.get(WAITING, 0)), "in_batch": int(jobs.get(IN_BATCH, 0)) + int(jobs.get(DELIVERING, 0)),
                "pending_batches": int(batches)}  # fmt: skip


def courier_of(requester: Requester, reach: Mapping[str, Any]) -> str:
    """Who delivers the result: the reach's platform (a CLI run names itself), else the requester's."""
    return str(reach.get("platform") or requester.platform)


def _relax_limit_text(used: float, allowance: int, units: float, resets: str) -> str:
    if allowance == 0:
        return "Relax mode isn't enabled for you here. Leave out --relax to use your normal daily images."
    left = max(0.0, allowance - used)
    n = f"{allowance:g} relax image" + ("" if allowance == 1 else "s")
    head = (f"You've used all {n} for today." if left <= 0 else
            f"That request needs {units:g} of your relax images, but you have {left:g} left.")  # fmt: skip
    return f"{head} Nothing was charged. Relax images reset at {resets}; your normal daily images are separate."
