"""The schedule in front of every model call: a job gets its turn when a
model slot is free (`openai.max_concurrent_calls`, in this process) and the
account's images-per-minute budget has room for its n images (shared by
every process on the database, core/ledger_pace.py). Both must hold.

Turns go round-robin (core/fair_queue.py). One dispatcher task per process
asks the budget for the head of the line only, so a large request is never
overtaken for ever by small ones, and the database sees one short
transaction per grant, plus one per retry when the budget said "wait".

A 429 rate_limit_exceeded is a schedule, not a failure: the job goes back
to the head of the line, nothing is charged, the budget learns from it. A
job fails only when it has waited `openai.max_queue_wait_seconds` in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import AsyncIterator, Awaitable, Callable

from core import messages
from core.errors import QueueTimeout, TooManyForPace
from core.fair_queue import FairQueue
from core.ledger_pace import GrantDecision

log = logging.getLogger("imaginebot.core")

# The user's position and estimated wait: (position, seconds or None).
PlaceListener = Callable[[int, "float | None"], None]
Grant = Callable[[int, float], Awaitable[GrantDecision]]  # (images, grow_by) -> decision
EndCall = Callable[[int], Awaitable[None]]  # (the grant's call id): its model slot is free, in every process
# Before the budget has answered once: tier 1's pace (a minute over 5 images).
_FIRST_SECONDS_PER_IMAGE = 12.0


@dataclass(eq=False)
class Ticket:
    """One job's place in line, kept across its 429s."""

    community: str  # "slack:T123": workspaces/servers take turns first
    member: str  # "slack:T123:U456": then their members
    images: int  # what the call counts against the per-minute budget
    listener: PlaceListener | None = None
    waited: float = 0.0  # seconds in line so far, over every return after a 429
    rate_limited: int = 0  # 429s this job met
    grant_id: int | None = None  # the budget's record of its current turn
    call_id: int | None = None  # its model slot in the deployment-wide count, while the call runs
    _future: asyncio.Future[None] | None = field(default=None, repr=False)


class Pacer:
    def __init__(self, grant: Grant, *, capacity: int, max_wait_seconds: float, end_call: EndCall | None = None) -> None:
        self._grant = grant
        self._end_call = end_call
        self._freeing: set[asyncio.Task[None]] = set()  # slots being given back without a waiter
        self.capacity = capacity
        self.max_wait_seconds = max_wait_seconds
        self.active = 0
        self._queue: FairQueue[Ticket] = FairQueue()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._grow_by = 0.0  # images learned from successes, applied at the next grant
        self._next_at = 0.0  # monotonic time the budget said the head may go
        self._paused_until = 0.0  # monotonic: a 429 here asked us to wait until then
        self._fallback_next = 0.0  # monotonic: the next grant while the database can't answer
        self.last: GrantDecision | None = None  # the budget's latest answer (admins, metrics)
        self.on_wait: Callable[[float], None] | None = None  # each wait in line, in seconds (metrics)

    @property
    def waiting(self) -> int:
        return len(self._queue)

    @property
    def images_per_minute(self) -> float:
        return self.last.images_per_minute if self.last is not None else 0.0

    @property
    def seconds_per_image(self) -> float:
        return self.last.seconds_per_image if self.last is not None else _FIRST_SECONDS_PER_IMAGE

    @asynccontextmanager
    async def turn(self, ticket: Ticket) -> AsyncIterator[None]:
        """Wait in line for a slot and the budget, then hold the slot."""
        await self._acquire(ticket)
        try:
            yield
        finally:
            self._release()
            await self._free_call(ticket.call_id)
            ticket.call_id = None

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A turn for no images: holds a model slot (tests, tools)."""
        async with self.turn(Ticket(community="", member="", images=0)):
            yield

    def succeeded(self, ticket: Ticket) -> None:
        """The call made its images. While the limit is only a guess, this is
        evidence the account allows more: the guess grows by them, whether or
        not anyone waits now (else a fresh bot would keep a member waiting out
        a minute after five images in a row that OpenAI never refused). The
        first 429 tells the real limit."""
        if self.last is not None and not self.last.exact:
            self._grow_by += ticket.images
            self._kick()  # a larger budget may have room now: ask again without waiting out the window

    def would_learn(self, limit: int) -> bool:
        """Whether a limit OpenAI named is news to the budget (else not worth a write)."""
        last = self.last
        return last is None or not last.exact or last.images_per_minute != limit

    def put_back(self, ticket: Ticket, pause: float) -> None:
        """After a 429: the next turn is this job's, ahead of everyone, once
        the pause OpenAI asked for is over (the shared budget pauses the
        other processes; this holds here even if the database can't)."""
        ticket.rate_limited += 1
        self._paused_until = max(self._paused_until, time.monotonic() + pause)

    async def close(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None
        if self._freeing:  # give the deployment its slots back before the store closes
            await asyncio.gather(*self._freeing, return_exceptions=True)

    # -- waiting in line ---------------------------------------------------

    async def _acquire(self, ticket: Ticket) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ticket._future = future
        self._queue.push(ticket, front=ticket.rate_limited > 0)
        self._kick()
        self._announce()
        started = time.monotonic()
        left = self.max_wait_seconds - ticket.waited
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout=max(0.0, left))
        except asyncio.TimeoutError:
            ticket.waited += time.monotonic() - started
            if future.done() and not future.cancelled():
                return  # granted as time ran out: take the turn
            self._give_up(ticket, future)
            raise QueueTimeout(messages.queue_timeout(ticket.waited, self.images_per_minute)) from None
        except TooManyForPace:
            ticket.waited += time.monotonic() - started
            raise
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._release()  # the turn came just as we were cancelled: pass the slot on
                self._free_later(ticket.call_id)
                ticket.call_id = None
            else:
                self._give_up(ticket, future)
            raise
        ticket.waited += time.monotonic() - started
        if self.on_wait is not None:
            self.on_wait(time.monotonic() - started)

    def _give_up(self, ticket: Ticket, future: asyncio.Future[None]) -> None:
        future.cancel()
        if self._queue.remove(ticket):
            self._kick()
            self._announce()

    def _release(self) -> None:
        self.active -= 1
        self._kick()

    def _free_later(self, call_id: int | None) -> None:
        """`_free_call` from where nothing may be awaited (a cancelled waiter, the dispatcher)."""
        if call_id is None or self._end_call is None:
            return
        task = asyncio.ensure_future(self._free_call(call_id))
        self._freeing.add(task)
        task.add_done_callback(self._freeing.discard)

    async def _free_call(self, call_id: int | None) -> None:
        """Give the call's slot back to the deployment. A failure is only
        logged: a slot that can't be freed stops counting once the call is
        older than any call can be (core/ledger_pace.py). A cancellation of
        the caller goes through; the delete finishes on its own."""
        if call_id is None or self._end_call is None:
            return
        freeing = asyncio.ensure_future(self._end_call(call_id))
        freeing.add_done_callback(lambda done: _log_unfreed(call_id, done))
        with contextlib.suppress(Exception):  # logged by _log_unfreed; a CancelledError is not an Exception
            await asyncio.shield(freeing)

    def _kick(self) -> None:
        self._wake.set()
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch(), name="imaginebot-pacer")

    def _announce(self) -> None:
        """Everyone's place and estimated wait (the progress path coalesces).
        The wait is estimated only from a known pace (configured, or read
        from OpenAI): a guess still being learned would only mislead."""
        now = time.monotonic()
        known = self.last is not None and self.last.exact
        per_image = self.last.seconds_per_image if self.last is not None else 0.0
        ahead = 0
        start = max(0.0, self._next_at - now)
        for position, ticket in enumerate(self._queue, start=1):
            if ticket.listener is not None:
                estimate = start + ahead * per_image if known else None
                ticket.listener(position, estimate)
            ahead += ticket.images

    # -- the dispatcher ----------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            self._wake.clear()
            head = self._queue.peek()
            if head is None or self.active >= self.capacity:
                await self._wake.wait()
                continue
            future = head._future
            if future is None or future.done():  # gave up, not yet out of line
                self._queue.remove(head)
                continue
            if (paused := self._paused_until - time.monotonic()) > 0:
                await self._sleep_unless_head_changes(head, paused)
                continue
            decision = await self._ask(head)
            if decision.too_many:
                self._queue.remove(head)
                if not future.done():
                    future.set_exception(TooManyForPace(messages.above_rate_limit(head.images, decision.images_per_minute)))
                self._announce()
                continue
            if not decision.granted:
                self._next_at = time.monotonic() + decision.wait_seconds
                self._announce()
                await self._sleep_unless_head_changes(head, decision.wait_seconds)
                continue
            self._queue.take(head)
            if future.done():  # gave up while the grant was written: it goes unused
                self._free_later(decision.call_id)
                continue
            self.active += 1
            head.grant_id = decision.grant_id
            head.call_id = decision.call_id
            future.set_result(None)
            self._next_at = time.monotonic() + decision.seconds_per_image * head.images if decision.exact else 0.0
            self._announce()

    async def _ask(self, head: Ticket) -> GrantDecision:
        if head.images == 0:
            return GrantDecision(True, 0.0, self.images_per_minute, True, 0.0, 0)
        grow_by, self._grow_by = self._grow_by, 0.0
        try:
            decision = await self._grant(head.images, grow_by)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a database that can't answer: pace here alone rather than stop every job
            log.warning("the shared images-per-minute budget can't be read or written (%s); pacing in this process alone", e)
            self._grow_by += grow_by
            return self._local_decision(head)
        self.last = decision
        return decision

    def _local_decision(self, head: Ticket) -> GrantDecision:
        """While the database is down: the last known pace, kept in this process."""
        now, per_image = time.monotonic(), self.seconds_per_image
        known = self.last.exact if self.last is not None else False
        if now < self._fallback_next:
            return GrantDecision(False, self._fallback_next - now, self.images_per_minute, known, per_image, 0)
        self._fallback_next = now + per_image * head.images
        return GrantDecision(True, 0.0, self.images_per_minute, known, per_image, head.images)

    async def _sleep_unless_head_changes(self, head: Ticket, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=left)
            if self._queue.peek() is not head or self._grow_by:
                return


def _log_unfreed(call_id: int, done: asyncio.Future[None]) -> None:
    if not done.cancelled() and done.exception() is not None:
        log.warning("could not free model call %s in the database; it stops counting when it is stale",
                    call_id, exc_info=done.exception())  # fmt: skip
