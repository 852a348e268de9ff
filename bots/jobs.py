"""One request lifecycle for every platform.

`JobRunner` admits work (atomically, under a cap), keeps the tasks it starts
so they can be drained at shutdown, and runs one image job from its first
progress report to its images posted or a message saying why not. Adapters
only parse their payloads and implement a `Turn`.

Admission is one synchronous step: a request takes a `Slot` before its first
await, so two requests arriving together cannot both see room and both
start. The slot becomes the request's task, or is given back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from bots.turns import DeliveryFailed, Reach, Turn
from core.errors import ImagineError
from core.models import ImageResult, ProgressCallback

log = logging.getLogger("imaginebot.jobs")

JobCall = Callable[[ProgressCallback, Reach], Awaitable[ImageResult]]
Refund = Callable[[str, str], Awaitable[bool]]  # (job id, reason) -> given back

# Posting images that are already paid for may finish after a shutdown began.
UPLOAD_GRACE_SECONDS = 30.0
T = TypeVar("T", bound=Turn)
# The "shutting down" notice of a cancelled request: the platform may be going away too.
NOTICE_TIMEOUT_SECONDS = 5.0


class Slot:
    """Room for one request, held from admission until its task starts (or
    the request ends without one). Leaving `with slot:` without `start`
    gives the room back."""

    def __init__(self, runner: JobRunner) -> None:
        self._runner: JobRunner | None = runner

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        runner, self._runner = self._runner, None
        if runner is None:
            coro.close()
            raise RuntimeError("this job slot was already used or given back")
        runner._reserved -= 1
        return runner._spawn(coro, name=name)

    def release(self) -> None:
        if self._runner is not None:
            self._runner._reserved -= 1
            self._runner = None

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@dataclass
class Running:
    """One job inside the service call, as a cancel button sees it."""

    turn: Turn
    task: asyncio.Task[Any]
    in_call: bool = True  # inside ImageService: cancelling now is refunded by the core
    stop_reason: str | None = None  # e.g. "cancelled" (the user's button), "unreachable"

    def stop(self, reason: str) -> bool:
        """Cancel the job (the core refunds it); False if it is past the call or already stopping."""
        if not self.in_call or self.stop_reason is not None:
            return False
        self.stop_reason = reason
        self.task.cancel()
        return True


class JobRunner:
    def __init__(self, limit: int, *, refund: Refund, name: str, upload_grace: float = UPLOAD_GRACE_SECONDS) -> None:
        self.limit = limit
        self.upload_grace = upload_grace
        self._refund = refund
        self._name = name
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0  # slots taken by requests not started yet
        self.running: list[Running] = []
        self.closing = False

    def __len__(self) -> int:
        return len(self._tasks) + self._reserved

    # -- admission and tasks ---------------------------------------------------

    def has_room(self) -> bool:
        return len(self) < self.limit

    def try_reserve(self) -> Slot | None:
        """A slot for one request, or None at the cap (or closing).
        Synchronous on purpose: nothing can run between the check and the taking."""
        if self.closing or not self.has_room():
            return None
        self._reserved += 1
        return Slot(self)

    def spawn(self, turn: T, work: Callable[[T], Awaitable[None]], *, name: str) -> bool:
        """Run `work(turn)` in a task of its own, guarded (`serve`); False (nothing started) at the cap."""
        slot = self.try_reserve()
        if slot is None:
            return False
        slot.start(self.serve(turn, work(turn)), name=name)
        return True

    def _spawn(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s task %s failed", self._name, task.get_name(), exc_info=task.exception())

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until no request is left (also those started meanwhile); True if idle."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._tasks or self._reserved:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=remaining)
            else:
                await asyncio.sleep(0.05)  # a request admitted just before is still deferring
        return True

    async def drain(self, grace_seconds: float) -> None:
        """Take nothing new; let running requests finish for up to
        `grace_seconds`, then cancel the rest (the core refunds a cancelled
        job; `serve` tells its user)."""
        self.closing = True
        if await self.wait(grace_seconds):
            return
        pending = set(self._tasks)
        log.warning("cancelling %d %s job(s) still running after %.0f s", len(pending), self._name, grace_seconds)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the lifecycle -----------------------------------------------------------

    async def serve(self, turn: Turn, work: Awaitable[None]) -> None:
        """Whatever happens inside `work`, its user ends up with one answer."""
        try:
            await work
        except asyncio.CancelledError:
            # Shutdown: the core has refunded what was reserved; say so before the platform closes.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(turn.tell(turn.words.shutting_down())), NOTICE_TIMEOUT_SECONDS)
            raise
        except Exception as e:
            await self.unexpected(turn, e)

    async def unexpected(self, turn: Turn, error: BaseException) -> None:
        """The last resort: log with a reference, apologise privately, leak nothing."""
        reference = getattr(error, "job_id", None) or uuid.uuid4().hex[:12]
        log.error("%s request failed unexpectedly (reference %s)", self._name, reference, exc_info=error)
        with contextlib.suppress(Exception):  # anything may be broken by now: never raise from here
            await turn.tell(turn.words.unexpected(reference))

    def find(self, predicate: Callable[[Turn], bool]) -> Running | None:
        """The job inside its service call whose turn matches (a cancel button, an unreachable channel)."""
        return next((r for r in self.running if predicate(r.turn)), None)

    async def run(self, turn: Turn, call: JobCall) -> None:
        """One job: the service call with progress shown, then its images
        posted, or the user told (publicly or privately) why not."""
        task = asyncio.current_task()
        assert task is not None
        running = Running(turn, task)
        self.running.append(running)
        try:
            result = await call(turn.progress, turn.reach())
        except asyncio.CancelledError:
            if running.stop_reason is None:  # shutdown: serve tells the user
                await asyncio.shield(turn.withdraw())
                raise
            task.uncancel()  # our own stop, finished here
            await turn.withdraw()
            await turn.tell(turn.words.stopped(running.stop_reason))
            return
        except ImagineError as e:
            log.info("%s job for %s ended: %s (job %s)", self._name, turn.requester.key, e.code, e.job_id)
            if e.private:
                await turn.withdraw()
            await turn.tell(turn.words.error(e), private=e.private)
            return
        except Exception:
            await asyncio.shield(turn.withdraw())
            raise  # serve logs it and apologises
        finally:
            running.in_call = False
            self.running.remove(running)
        # The images are paid for: even a shutdown now waits for them to be posted.
        await _finish(self._deliver(turn, result), grace=self.upload_grace)

    async def _deliver(self, turn: Turn, result: ImageResult) -> None:
        try:
            await turn.deliver(result)
        except DeliveryFailed as e:
            await asyncio.shield(self._undelivered(turn, result, e))
            return
        except asyncio.CancelledError:
            # A shutdown that could not wait for the upload: the images were not posted.
            await asyncio.shield(self._undelivered(turn, result, DeliveryFailed("cancelled")))
            raise
        turn.delivered()
        await turn.withdraw()

    async def _undelivered(self, turn: Turn, result: ImageResult, failure: DeliveryFailed) -> None:
        """Refund first (the money matters most), then the progress message
        goes, then the user is told, once, what really happened."""
        log.error("job %s: posting %d image(s) on %s failed: %s", result.job_id, len(result.images), turn.platform, failure.detail)
        try:
            given_back = await self._refund(result.job_id, f"{turn.platform}_upload_failed")
        except Exception:
            given_back = False  # still tell the user; the message then claims no refund
            log.exception("job %s: could not give the undelivered images back", result.job_id)
        await turn.withdraw()
        await turn.tell(turn.words.undelivered(result.job_id, failure, given_back=given_back))


async def _finish(coro: Coroutine[Any, Any, None], *, grace: float) -> None:
    """Run `coro` to its end even if our task is cancelled meanwhile (for up
    to `grace` seconds more), then let the cancellation through."""
    task = asyncio.ensure_future(coro)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait({task}, timeout=grace)
        if not task.done():
            task.cancel()
            # Its user hears that the images were not posted before anything else.
            await asyncio.wait({task}, timeout=NOTICE_TIMEOUT_SECONDS)
        raise
