"""The work started after Slack's ack: kept, capped and drained.

asyncio holds only weak references to tasks, so a job nobody references can
vanish mid-flight; the cap keeps a flood of commands from exhausting memory;
draining lets running jobs finish (or be cancelled, and so refunded by the
core) at shutdown.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Coroutine

log = logging.getLogger("imaginebot.slack")


class BackgroundTasks:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def try_spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None] | None:
        """Start `coro`, or close it and return None when at the cap."""
        if len(self._tasks) >= self.limit:
            coro.close()
            return None
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait for every task (also those started meanwhile); True if none is left."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self._tasks:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            await asyncio.wait(set(self._tasks), timeout=remaining)
        return True

    async def cancel_all(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
