"""A global cap on concurrent model calls, with a first-come-first-served
queue whose position each waiter can see.

A freed slot is handed straight to the first waiter (never released and
re-grabbed), so a newcomer can never overtake someone already in line.
"""

from __future__ import annotations

import asyncio
from collections import deque
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

PositionListener = Callable[[int], None]


class _Waiter:
    __slots__ = ("future", "listener")

    def __init__(self, future: asyncio.Future[None], listener: PositionListener | None) -> None:
        self.future = future
        self.listener = listener


class ModelSlots:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.active = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @asynccontextmanager
    async def slot(self, on_position: PositionListener | None = None) -> AsyncIterator[None]:
        await self._acquire(on_position)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, on_position: PositionListener | None) -> None:
        if self.active < self.capacity and not self._waiters:
            self.active += 1
            return
        waiter = _Waiter(asyncio.get_running_loop().create_future(), on_position)
        self._waiters.append(waiter)
        if on_position:
            on_position(len(self._waiters))
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release()  # the slot was handed to us just as we were cancelled: pass it on
            else:
                self._waiters.remove(waiter)
                self._announce_positions()
            raise

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.future.done():
                waiter.future.set_result(None)  # the slot moves to the waiter; `active` is unchanged
                self._announce_positions()
                return
        self.active -= 1

    def _announce_positions(self) -> None:
        for position, waiter in enumerate(self._waiters, start=1):
            if waiter.listener:
                waiter.listener(position)
