"""Worker liveness and recovery: every process beats its heart in the
`workers` table; a process silent for longer than the heartbeat timeout (or,
on this host, whose pid is gone) is dead, and a survivor refunds the jobs it
left reserved, once, and hands them over to tell their users."""

from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone

from core.ledger_base import LIVE_WORKERS, LedgerBase
from core.ledger_status import INTERRUPTED, holding, may_become
from core.models import InterruptedJob
from core.store import Connection


class Liveness(LedgerBase):
    def heartbeat_sync(self) -> None:
        now = time.time()
        with self.store.transaction() as conn:
            conn.execute(
                """INSERT INTO workers (token, host, pid, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT(token) DO UPDATE SET heartbeat_at = excluded.heartbeat_at""",
                (self.worker, self.host, self.pid, now, now),
            )

    def retire_sync(self) -> None:
        LIVE_WORKERS.discard(self.worker)
        with self.store.transaction() as conn:
            conn.execute("DELETE FROM workers WHERE token = ?", (self.worker,))
            conn.execute("DELETE FROM model_calls WHERE worker = ?", (self.worker,))

    def recover_sync(self, *, tell_users: bool = True) -> list[InterruptedJob]:
        """Refund the reservations of jobs whose process is gone: it is not
        this one, and it has stopped beating its heart (on any host: only the
        heartbeat's age decides for another host), or it was on this host
        under a pid that is dead (or is ours: a previous incarnation in a
        container, where every start has the same pid).

        A caller that cannot tell users (`tell_users=False`: a CLI command)
        refunds only jobs nobody is waiting to hear about (a dead CLI run's);
        a chat job is left for a process that can announce it."""
        self.heartbeat_sync()
        now = time.time()
        with self.store.transaction() as conn:
            # Survivors looking at once take turns: each job is refunded (and
            # announced) by exactly one of them.
            self.store.lock(conn, "recover")
            workers = {
                r[0]: (r[1], r[2], r[3]) for r in conn.execute("SELECT token, host, pid, heartbeat_at FROM workers").fetchall()
            }
            owners = [r[0] for r in conn.execute("SELECT DISTINCT owner FROM jobs WHERE " + holding()).fetchall()]
            gone = [o for o in owners if o != self.worker and (o not in workers or self._worker_gone(o, *workers[o], now=now))]
            interrupted = [job for owner in gone for job in self._interrupt_jobs_of(conn, owner, now, silent_only=not tell_users)]
            dead = [t for t, w in workers.items() if t != self.worker and self._worker_gone(t, *w, now=now)]
            conn.executemany("DELETE FROM workers WHERE token = ?", [(t,) for t in dead])
            # Their model calls died with them: those slots are free for the living.
            conn.executemany("DELETE FROM model_calls WHERE worker = ?", [(t,) for t in dead])
        return interrupted

    def refund_own_sync(self) -> list[InterruptedJob]:
        """At shutdown, after the grace period: whatever this process still
        holds reserved will never finish."""
        with self.store.transaction() as conn:
            return self._interrupt_jobs_of(conn, self.worker, time.time())

    def _interrupt_jobs_of(self, conn: Connection, owner: str, now: float, *, silent_only: bool = False) -> list[InterruptedJob]:
        which = "owner = ? AND " + may_become(INTERRUPTED)
        if silent_only:
            which += " AND (notify IS NULL OR notify IN ('', '{}'))"
        rows = conn.execute("SELECT id, user_key, kind, prompt, notify, created_at FROM jobs WHERE " + which, (owner,)).fetchall()
        conn.execute(
            """UPDATE jobs SET status = ?, units = 0, usd = 0, error_code = 'interrupted', finished_at = ?,
                   notify = '{}' WHERE """ + which,
            (INTERRUPTED, now, owner),
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
                return token not in LIVE_WORKERS
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
