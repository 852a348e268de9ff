"""The background tasks that run image jobs after the interaction is deferred.

Kept in one place so they can be capped (a flood of commands cannot create
unbounded work) and drained on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Coroutine

log = logging.getLogger("imaginebot.discord")


class JobTasks:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def has_room(self) -> bool:
        return len(self._tasks) < self.limit

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
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
