"""The account's images-per-minute budget, shared by every process on the
database: one short transaction per grant.

A grant is a row (`image_grants`: when, how many images). A call for n
images may start when the grants of the last window plus n stay within the
limit and, once the limit is known rather than guessed, when the previous
grant's images have had their share of the window (calls spread evenly
instead of bunching at the window's edge, where the smallest delay on the
way to OpenAI would tip one over). What has been learned of the limit lives
in the `pace` row, so every replica paces to the same number.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from core.ledger_base import LedgerBase
from core.store import Connection

_ROW = "openai"
_LOCK = "pace"
# Where learning starts: usage tier 1's limit, the lowest there is.
START_IMAGES_PER_MINUTE = 5.0
# Learning never guesses beyond this (tier 5 is 250).
MAX_LEARNED = 5000.0
# A limit read from OpenAI's own answer is trusted this long; then growth
# resumes, so an account that moved up a tier is noticed.
EXACT_FOR_SECONDS = 24 * 3600.0
# When every model slot of the deployment is taken, a process asks again this
# soon (a call ending in another process is not signalled here).
CALL_SLOT_POLL_SECONDS = 0.2
# Our grant times and OpenAI's arrival times differ by the trip there: pace
# to a window this much longer than the real one.
WINDOW_MARGIN = 0.02


@dataclass(frozen=True)
class GrantDecision:
    granted: bool
    wait_seconds: float  # when not granted: how long until it may be
    images_per_minute: float  # the limit used (configured or learned)
    exact: bool  # configured, or read from OpenAI's answer
    seconds_per_image: float  # the pace: the window over the limit
    used: int  # images granted in the current window, this one included
    too_many: bool = False  # n is above a known limit: it can never be granted
    grant_id: int | None = None  # the grant's row, taken back if OpenAI refuses the call
    call_id: int | None = None  # the running call's row (model_calls), ended by `end_call_sync`


@dataclass(frozen=True)
class PaceStatus:
    images_per_minute: float
    exact: bool
    configured: bool
    used: int  # images granted in the current window
    paused_for: float  # seconds OpenAI asked us to wait, still to go


def paced_window(window: float) -> float:
    return window * (1 + WINDOW_MARGIN)


class PaceLedger(LedgerBase):
    def grant_images_sync(self, images: int, *, grow_by: float = 0.0, now: float | None = None) -> GrantDecision:
        """Grant `images` to one model call now, or say how long to wait.
        `grow_by`: images the caller's successful calls earned while learning
        (applied here, in the same transaction, to keep one per grant)."""
        cfg = self.config.openai
        now = time.time() if now is None else now
        window = paced_window(cfg.rate_window_seconds)
        with self.store.transaction() as conn:
            self.store.lock(conn, _LOCK)
            learned, exact, paused_until, updated_at = self._pace_row(conn, now)
            if grow_by and not cfg.images_per_minute:
                if exact and now - updated_at > EXACT_FOR_SECONDS:
                    exact = False
                if not exact:
                    learned = min(MAX_LEARNED, learned + grow_by)
                    conn.execute("UPDATE pace SET images_per_minute = ?, exact = 0, updated_at = ? WHERE name = ?",
                                 (learned, now, _ROW))  # fmt: skip
            limit = float(cfg.images_per_minute) if cfg.images_per_minute else learned
            known = bool(cfg.images_per_minute) or exact
            per_image = window / limit
            conn.execute("DELETE FROM image_grants WHERE at <= ?", (now - window,))
            grants = conn.execute("SELECT at, images FROM image_grants ORDER BY at, id").fetchall()
            used = sum(int(g[1]) for g in grants)

            def decision(
                granted: bool, wait: float, too_many: bool = False, grant_id: int | None = None, call_id: int | None = None
            ) -> GrantDecision:
                return GrantDecision(granted, max(0.0, wait), limit, known, per_image, used + (images if granted else 0),
                                     too_many, grant_id, call_id)  # fmt: skip

            if known and images > limit:
                return decision(False, 0.0, too_many=True)
            if self._calls_running(conn, now) >= cfg.max_concurrent_calls:
                # Every model slot of the deployment is taken (by any process): ask again soon.
                return decision(False, CALL_SLOT_POLL_SECONDS)
            waits = [paused_until - now]
            # A call above a guessed limit goes alone, into an empty window: it probes the real one.
            need = max(0.0, used + images - limit) if images <= limit else used
            freed = 0
            for at, n in grants:
                if freed >= need:
                    break
                freed += int(n)
                waits.append(float(at) + window - now)
            if known and grants:
                last_at, last_n = grants[-1]
                waits.append(float(last_at) + int(last_n) * per_image - now)
            wait = max(waits)
            if wait > 0:
                return decision(False, wait)
            (grant_id,) = conn.execute(
                "INSERT INTO image_grants (at, images, worker) VALUES (?, ?, ?) RETURNING id", (now, images, self.worker)
            ).fetchone()
            (call_id,) = conn.execute(
                "INSERT INTO model_calls (worker, started_at) VALUES (?, ?) RETURNING id", (self.worker, now)
            ).fetchone()
            return decision(True, 0.0, grant_id=int(grant_id), call_id=int(call_id))

    def end_call_sync(self, call_id: int) -> None:
        """A granted call is over (images, an error, a 429, a cancellation): its model slot is free."""
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM model_calls WHERE id = ?", (call_id,))

    def _calls_running(self, conn: Connection, now: float) -> int:
        """Model calls running now in every live process: ours; those of a
        process beating its heart; and, from a process that does not beat (a
        test, a tool), those younger than a call can last. A dead process's
        calls stop counting when its heartbeat goes stale (recovery then
        deletes them); anything older than any call could be is pruned."""
        longest = self.config.openai.timeout_seconds * (self.config.openai.server_error_retries + 1) + 60
        conn.execute("DELETE FROM model_calls WHERE started_at < ?", (now - longest,))
        (running,) = conn.execute(
            """SELECT COUNT(*) FROM model_calls c LEFT JOIN workers w ON w.token = c.worker
               WHERE c.worker = ? OR (w.token IS NOT NULL AND w.heartbeat_at > ?) OR (w.token IS NULL AND c.started_at > ?)""",
            (self.worker, now - self.dead_after, now - longest),
        ).fetchone()
        return int(running)

    def rate_limited_sync(
        self, *, limit: int | None, retry_after: float | None, grant_id: int | None, now: float | None = None
    ) -> float:
        """OpenAI answered 429 rate_limit_exceeded: the call's grant is taken
        back (a refused call made no images, and the API does not count it),
        the limit learned when OpenAI said it (its message, a header), else
        the guess halved; every process pauses for as long as it asked.
        Returns the limit now believed."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            self.store.lock(conn, _LOCK)
            if grant_id is not None:
                conn.execute("DELETE FROM image_grants WHERE id = ?", (grant_id,))
            learned, exact, paused_until, _ = self._pace_row(conn, now)
            if limit:
                learned, exact = float(limit), True
            else:
                learned = max(1.0, learned / 2)
            if retry_after:
                paused_until = max(paused_until, now + retry_after)
            conn.execute(
                "UPDATE pace SET images_per_minute = ?, exact = ?, paused_until = ?, updated_at = ? WHERE name = ?",
                (learned, int(exact), paused_until, now, _ROW),
            )
            return learned

    def limit_seen_sync(self, limit: int, now: float | None = None) -> None:
        """A successful answer's rate-limit headers named the limit."""
        now = time.time() if now is None else now
        with self.store.transaction() as conn:
            self.store.lock(conn, _LOCK)
            self._pace_row(conn, now)
            conn.execute("UPDATE pace SET images_per_minute = ?, exact = 1, updated_at = ? WHERE name = ?",
                         (float(limit), now, _ROW))  # fmt: skip

    def pace_status_sync(self, now: float | None = None) -> PaceStatus:
        cfg = self.config.openai
        now = time.time() if now is None else now
        window = paced_window(cfg.rate_window_seconds)
        with self.store.transaction() as conn:
            self.store.lock(conn, _LOCK)
            learned, exact, paused_until, _ = self._pace_row(conn, now)
            (used,) = conn.execute("SELECT COALESCE(SUM(images), 0) FROM image_grants WHERE at > ?", (now - window,)).fetchone()
        configured = bool(cfg.images_per_minute)
        return PaceStatus(
            images_per_minute=float(cfg.images_per_minute) if configured else learned,
            exact=configured or exact,
            configured=configured,
            used=int(used),
            paused_for=max(0.0, paused_until - now),
        )

    def _pace_row(self, conn: Connection, now: float) -> tuple[float, bool, float, float]:
        row = conn.execute("SELECT images_per_minute, exact, paused_until, updated_at FROM pace WHERE name = ?", (_ROW,)).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO pace (name, images_per_minute, exact, paused_until, updated_at) VALUES (?, ?, 0, 0, ?)",
                (_ROW, START_IMAGES_PER_MINUTE, now),
            )
            return START_IMAGES_PER_MINUTE, False, 0.0, now
        return float(row[0]), bool(row[1]), float(row[2] or 0.0), float(row[3] or now)
