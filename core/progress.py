"""Progress of one job, reported to the adapter's callback: at once when the
job's queue position or state changes, and every `interval` seconds while it
runs so the user sees the elapsed time move.

The queue calls `queued(position)` synchronously; one task per job does the
(slow, networked) reporting, so a slow platform API never holds up the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from core.models import Progress, ProgressCallback

log = logging.getLogger("imaginebot.core")

MIN_GAP = 1.0  # seconds between two reports of the same state


class ProgressReporter:
    def __init__(self, job_id: str, callback: ProgressCallback | None, *, interval: float, started: float) -> None:
        self.job_id = job_id
        self.callback = callback
        self.interval = interval
        self.started = started
        self.state: str = "queued"
        self.position: int | None = None
        self.wait_seconds: float | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def queued(self, position: int, wait_seconds: float | None = None) -> None:
        """In line (again, after a 429): its place and estimated wait."""
        self.state, self.position, self.wait_seconds = "queued", position, wait_seconds
        self._poke()

    def running(self) -> None:
        self.state, self.position, self.wait_seconds = "running", None, None
        self._poke()

    def _poke(self) -> None:
        if self.callback is None:
            return
        self._changed.set()
        if self._task is None:
            self._task = asyncio.create_task(self._report(), name=f"progress-{self.job_id}")

    async def _report(self) -> None:
        assert self.callback is not None
        last_state, last_sent = "", 0.0
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=self.interval)
            # Positions move on every slot release, for every waiter: report
            # them at most once per MIN_GAP (the latest one wins), so a long
            # queue costs each job a few updates, not one per release.
            deadline = last_sent + MIN_GAP
            while self.state == last_state and (left := deadline - time.monotonic()) > 0:
                self._changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):  # a change of state ends the wait
                    await asyncio.wait_for(self._changed.wait(), timeout=left)
            self._changed.clear()
            last_state, last_sent = self.state, time.monotonic()
            progress = Progress(
                job_id=self.job_id,
                state="running" if self.state == "running" else "queued",
                position=self.position,
                elapsed_seconds=time.monotonic() - self.started,
                wait_seconds=self.wait_seconds,
            )
            try:
                await self.callback(progress)
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed progress update must never fail the job
                log.warning("progress update for job %s failed", self.job_id, exc_info=True)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
