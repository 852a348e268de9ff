"""`imaginebot generate PROMPT --relax`: the Batch API from the terminal.

The job is reserved at the batch price against the relax allowance, sent
out at once (a batch of its own, with any relax jobs waiting), and this
command waits for the batch, printing the elapsed time and the batch's
status every [relax] poll_seconds, then writes the images like `generate`.

Only a waiting command can take a CLI job's result (a bot has no way to
reach a terminal): interrupted after the batch went out, the job stays
reserved for the rest of the day and its result is not fetched.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any, Callable, Mapping

from core.models import ImageOptions, ImageResult, Requester
from core.service import ImageService

_FINAL = ("delivered", "refunded", "cancelled", "undelivered")


class TerminalCourier:
    """Takes this command's own relax result (core.relax.Courier)."""

    ready = True

    def __init__(self, job_id: Callable[[], str | None]) -> None:
        self._job_id = job_id
        self.result: ImageResult | None = None
        self.told: str | None = None
        self.done = asyncio.Event()

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        if result.job_id == self._job_id():
            self.result = result
            self.done.set()

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        self.told = text
        self.done.set()
        return True


async def wait_for_relax(service: ImageService, requester: Requester, prompt: str, options: ImageOptions) -> ImageResult | str:
    """The result, or the words saying why there is none (refunded)."""
    ticket_id: list[str] = []
    courier = TerminalCourier(lambda: ticket_id[0] if ticket_id else None)
    # Another terminal's relax jobs are not ours to take: the reach names this
    # run as the courier to deliver to, so the ledger hands us our own lines only.
    terminal = f"cli-{uuid.uuid4().hex[:12]}"
    ticket = await service.relax.submit(requester, prompt, options, {"platform": terminal})
    ticket_id.append(ticket.job_id)
    print(f"imaginebot: relax job {ticket.job_id}: {ticket.message}", file=sys.stderr, flush=True)
    await service.relax.flush(force=True)  # nobody else is waiting for this batch to fill: send it now
    service.relax.start({terminal: courier})
    started = time.monotonic()
    poll = service.config.relax.poll_seconds
    while not courier.done.is_set():
        try:
            await asyncio.wait_for(courier.done.wait(), timeout=poll)
        except asyncio.TimeoutError:
            pass
        state = await service.relax.state(ticket.job_id)
        elapsed = _elapsed(time.monotonic() - started)
        status = (state.openai_status or state.state) if state is not None else "unknown"
        if not courier.done.is_set():
            print(f"imaginebot: relax batch {status}, {elapsed} so far…", file=sys.stderr, flush=True)
        if state is not None and state.state in _FINAL and not courier.done.is_set():
            return f"The relax job ended ({state.state}, {state.error_code or 'no detail'})."
    return courier.result if courier.result is not None else (courier.told or "The relax job ended without a result.")


def _elapsed(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s" if minutes else f"{secs} s"
