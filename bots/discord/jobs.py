"""The background tasks that run image jobs after the interaction is deferred.

Kept in one place so they can be capped (a flood of commands cannot create
unbounded work) and drained on shutdown.

Admission is one synchronous step: a command takes a `Slot` before its first
await (the defer), so two commands arriving together cannot both see room
and both start. The slot becomes the job's task, or is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Coroutine

log = logging.getLogger("imaginebot.discord")


class Slot:
    """Room for one job, held from admission until its task starts (or the
    command ends without one). Use as a context manager: leaving it without
    `start` gives the room back."""

    def __init__(self, tasks: JobTasks) -> None:
        self._tasks: JobTasks | None = tasks

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            coro.close()
            raise RuntimeError("this job slot was already used or given back")
        tasks._reserved -= 1
        return tasks._spawn(coro, name=name)

    def release(self) -> None:
        if self._tasks is not None:
            self._tasks._reserved -= 1
            self._tasks = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class JobTasks:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots taken by commands still deferring

    def __len__(self) -> int:
        return len(self._tasks) + self._reserved

    def has_room(self) -> bool:
        return len(self) < self.limit

    def try_reserve(self) -> Slot | None:
        """A slot for one job, or None at the cap. Synchronous on purpose:
        nothing can run between the check and the taking."""
        if not self.has_room():
            return None
        self._reserved += 1
        return Slot(self)

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("discord job task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self, grace_seconds: float) -> None:
        """Let running jobs finish for up to `grace_seconds`, then cancel the
        rest (the core refunds a cancelled job; the task tells its user).
        Loops because a command accepted just before closing may start its
        job while we wait."""
        deadline = time.monotonic() + grace_seconds
        while True:
            self._tasks -= {t for t in self._tasks if t.done()}
            if not self._tasks:
                if self._reserved and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)  # a command admitted just before is still deferring
                    continue
                return
            pending = set(self._tasks)
            remaining = deadline - time.monotonic()
            if remaining > 0:
                await asyncio.wait(pending, timeout=remaining)
                continue
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
