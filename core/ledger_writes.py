"""Ledger writes that must land: what a job did after its reservation
(started, settled, refunded, blocked, undelivered).

A write that fails because the database can't take it (a full disk, a
missing file, a lock held too long) is kept, after any earlier write of the
same job that is still waiting, and retried in the background with a bounded
backoff until it lands; shutdown makes a last attempt. Meanwhile the job's
row still holds its reservation, so nothing is over-spent; if the process
dies first, the next process to notice refunds that reservation like any a
dead process left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Callable, TypeVar

from core.store import DATABASE_FAULTS, Store

log = logging.getLogger("imaginebot.core")

T = TypeVar("T")


class LedgerWrites:
    def __init__(self, store: Store, *, waits: tuple[float, float] = (0.5, 30.0)) -> None:
        self.store = store
        self.waits = waits  # the first and the longest wait between two background retries
        self._pending: dict[str, list[tuple[str, Callable[[], Any]]]] = {}
        self._retrying: asyncio.Task[None] | None = None

    @property
    def pending(self) -> int:
        """Writes still waiting to land."""
        return sum(len(writes) for writes in self._pending.values())

    async def write(self, job_id: str, what: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run `fn` on the database thread, to the end even if the caller is
        cancelled. (True, its result) if it landed; (False, None) if it was
        kept to be retried."""
        if job_id in self._pending:  # never before the job's earlier writes
            self._keep(job_id, what, fn, "an earlier write of this job is still waiting")
            return False, None
        try:
            return True, await _shielded(self.store.run(fn))
        except DATABASE_FAULTS as e:
            self._keep(job_id, what, fn, str(e))
            return False, None

    def _keep(self, job_id: str, what: str, fn: Callable[[], Any], reason: str) -> None:
        log.warning("job %s: could not record the %s (%s); retrying in the background", job_id, what, reason,
                    extra={"job_id": job_id})
        self._pending.setdefault(job_id, []).append((what, fn))
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.create_task(self._retry(), name="imaginebot-ledger-retry")

    async def _retry(self) -> None:
        wait = self.waits[0]
        while self._pending:
            await asyncio.sleep(wait)
            error = await self._attempt()
            wait = self.waits[0] if error is None else min(wait * 2, self.waits[1])

    async def _attempt(self) -> str | None:
        """One pass over every waiting write, each job's in order. None if
        all landed, else the error that stopped the pass."""
        for job_id in list(self._pending):
            writes = self._pending[job_id]
            while writes:
                what, fn = writes[0]
                try:
                    await _shielded(self.store.run(fn))
                except DATABASE_FAULTS as e:
                    return str(e)  # the database still can't take writes: try again later
                writes.pop(0)
                log.info("job %s: the %s is recorded now", job_id, what, extra={"job_id": job_id})
            del self._pending[job_id]
        return None

    async def flush(self) -> set[str]:
        """At shutdown: a last attempt. What still can't be written is logged
        with the job id and what it was, and those jobs' ids are returned;
        their reservations are refunded by the next process that starts or
        notices this one is gone."""
        if self._retrying is not None:
            self._retrying.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retrying
        if not self._pending:
            return set()
        error = await self._attempt()
        for job_id, writes in self._pending.items():
            for what, _ in writes:
                log.error("job %s: the %s could not be recorded before shutdown (%s); its reservation will be refunded "
                          "by the next process", job_id, what, error, extra={"job_id": job_id})
        unsettled = set(self._pending)
        self._pending.clear()
        return unsettled


async def _shielded(aw: Any) -> Any:
    """Finish a ledger write even if our task is being cancelled: a refund
    or a settlement must never be lost half-way."""
    task = asyncio.ensure_future(aw)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise
