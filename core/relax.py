"""Relax mode: `--relax` jobs go through the Batch API at half price and are
delivered when their batch completes, after a restart too, on any replica.

`RelaxQueue` is owned by the ImageService. The adapters call `submit` (the
reservation, answered at once with when to expect the result) and `cancel`
(the Cancel button, before the job's batch is submitted). A process that
can deliver results runs `start(couriers)`: every tick it flushes due jobs
into one batch (a JSONL file uploaded with purpose "batch", then
batches.create), and polls the batches that hold lines for its platforms.
A finished batch's output file is streamed line by line: each line is
settled from its own usage at the batch price and handed to the courier of
its platform (see `Courier`), which posts it to the original channel or
thread. Everything that must survive a restart lives in the ledger
(core/ledger_relax.py); this module keeps nothing but the loop.

Relax is for generations only: the pinned SDK's images.edit takes input
images only as uploaded files (multipart), which a JSONL batch line can't
carry, so an edit can't go through the Batch API.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Mapping, Protocol

from core import messages
from core.config import Config
from core.errors import ImagineError, InvalidInput, ModelTimeout, RateLimited, ServiceUnavailable
from core.ledger import Ledger
from core.ledger_relax import ClaimedBatch, RelaxLine
from core.metrics import Metrics
from core.models import GeneratedImage, ImageOptions, ImageResult, Requester, RequesterKey
from core.options import check_options, check_prompt
from core.pricing import cost_usd, estimate_usd, weighted_units
from core.provider import POLICY_CODES, BatchAPI, BatchStatus, safety_identifier, usage_from_json
from core.store import Store

log = logging.getLogger("imaginebot.relax")

ENDPOINT = "/v1/images/generations"
# The Batch API takes up to 50,000 lines and 200 MB a file; a batch of a
# thousand images keeps each output file (base64 images, ~1.5-3 MB a line)
# to a few GB at most, and a finished batch's lines within one claim period.
MAX_LINES_PER_BATCH = 1000
# How long one process may hold a batch (upload, poll, processing its output)
# or one line's delivery before another takes it over.
CLAIM_SECONDS = 600.0
# The Batch API's own promise is 24 hours; most batches come back far sooner.
COMPLETION_WINDOW = timedelta(hours=24)
TYPICAL_COMPLETION = "usually within a few hours"
BATCH_PRICE_FACTOR = 0.5  # the Batch API's discount on every token (SPEC §1)
_FINAL = ("completed", "failed", "expired", "cancelled")
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class CourierFailed(Exception):
    """A courier could not post a result anywhere (channel and fallback)."""


class Courier(Protocol):
    """How a platform adapter takes a relax result or notice later, from the
    `reach` its adapter stored with the job (JSON, never a token)."""

    @property
    def ready(self) -> bool:
        """Connected and able to post now (a batch is left for later otherwise)."""

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        """Post the images publicly where the request came from, mentioning
        the requester; raise CourierFailed if they could not be posted."""

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        """Tell the requester `text` privately; True if it reached them."""


@dataclass(frozen=True)
class RelaxTicket:
    """A relax job accepted: what the user is told at once."""

    job_id: str
    message: str
    flush_at: datetime
    latest_at: datetime


def batch_cost_usd(config: Config, model: str, usage: Any) -> float:
    """A batch line's charge: exactly half what the same usage costs fast."""
    return cost_usd(config.models[model], usage) * BATCH_PRICE_FACTOR


class RelaxQueue:
    def __init__(
        self,
        config: Config,
        store: Store,
        ledger: Ledger,
        provider: Any,
        metrics: Metrics,
        *,
        check_model: Callable[[ImageOptions], str],
    ) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger
        self.provider: BatchAPI = provider
        self.metrics = metrics
        self._check_model = check_model
        self.couriers: dict[str, Courier] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._counts: dict[str, int] = {}  # the ledger's counts as of the last round (for /metrics)
        metrics.relax_waiting.set_function(lambda: self._counts.get("waiting", 0))
        metrics.relax_in_batches.set_function(lambda: self._counts.get("in_batch", 0))
        metrics.relax_pending_batches.set_function(lambda: self._counts.get("pending_batches", 0))

    # -- the adapters' side --------------------------------------------------------

    async def submit(self, requester: Requester, prompt: str, options: ImageOptions, reach: Mapping[str, Any]) -> RelaxTicket:
        """Reserve a relax job (half price, the relax allowance, the budgets)
        and queue it for the next batch. Refused before anything is charged
        when relax mode is off, the model can't be batched or the input is bad."""
        if not self.config.relax.enabled:
            raise InvalidInput(relax_disabled())
        check_prompt(prompt)
        options = check_options(self.config, options)
        model = self._check_model(options)
        if not self.config.models[model].batch:
            raise InvalidInput(f"{model} can't be used in relax mode here (the Batch API doesn't take it). Leave out --relax.")
        body = self.provider.generation_body(model=model, prompt=prompt, options=options, user_tag=safety_identifier(requester.key))
        units = weighted_units(self.config, options)
        usd = estimate_usd(self.config, model, options, prompt) * BATCH_PRICE_FACTOR
        reservation = await self.store.run(
            lambda: self.ledger.reserve_relax_sync(
                requester, prompt=prompt, options=options, model=model, units=units, usd=usd, request=body, reach=reach
            )
        )
        self.metrics.relax_jobs.labels(requester.platform, "queued").inc()
        now = self.ledger.clock()
        flush_at = now + timedelta(seconds=self.config.relax.flush_seconds)
        latest = flush_at + COMPLETION_WINDOW
        self._wake.set()
        log.info("relax job %s queued for %s", reservation.job_id, requester.key, extra={"job_id": reservation.job_id})
        return RelaxTicket(reservation.job_id, queued_text(flush_at, latest, now), flush_at, latest)

    async def cancel(self, job_id: str, requester: Requester) -> str:
        """"cancelled" (refunded), "too_late" (already submitted), "not_yours", "gone"."""
        outcome = await self.store.run(self.ledger.relax_cancel_sync, job_id, requester.key)
        if outcome == "cancelled":
            self.metrics.relax_jobs.labels(requester.platform, "cancelled").inc()
            log.info("relax job %s cancelled by its requester: refunded", job_id, extra={"job_id": job_id})
        return outcome

    async def state(self, job_id: str) -> Any:
        return await self.store.run(self.ledger.relax_job_state_sync, job_id)

    # -- the loop ---------------------------------------------------------------------

    def start(self, couriers: Mapping[str, Courier]) -> None:
        """From now on this process flushes relax jobs into batches and polls
        the batches holding lines for these platforms, delivering them."""
        self.couriers.update(couriers)
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="imaginebot-relax")

    async def close(self, grace_seconds: float = 30.0) -> None:
        """Stop after the round in progress (a post half-way would leave its
        line claimed until CLAIM_SECONDS pass); cancel it after `grace_seconds`."""
        if self._task is None:
            return
        self._stopping = True
        self._wake.set()
        done, _ = await asyncio.wait({self._task}, timeout=grace_seconds)
        if not done:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None

    @property
    def tick_seconds(self) -> float:
        relax = self.config.relax
        return max(0.05, min(relax.flush_seconds, relax.poll_seconds) / 2)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
            except Exception:  # a database or network hiccup must not end relax mode
                log.warning("relax: a round of flushing and polling failed", exc_info=True)
            if self._stopping:
                return
            self._wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_seconds)

    async def run_once(self, *, force: bool = False) -> None:
        """One round: submit what is due, then poll what is due (`force`:
        everything, as if flush_seconds and poll_seconds had passed)."""
        while await self.flush(force=force):
            pass
        platforms = self.platforms()
        for claimed in await self.store.run(
            lambda: self.ledger.relax_claim_batches_sync(platforms, claim_seconds=CLAIM_SECONDS, due_only=not force)
        ):
            await self._poll(claimed)
        self._counts = await self.store.run(self.ledger.relax_counts_sync)

    async def flush(self, *, force: bool = False) -> bool:
        """Submit one due batch, if any; True if one was submitted."""
        plan = await self.store.run(
            lambda: self.ledger.relax_flush_sync(
                flush_after=self.config.relax.flush_seconds, max_lines=MAX_LINES_PER_BATCH, claim_seconds=CLAIM_SECONDS,
                force=force,
            )
        )  # fmt: skip
        if plan is None:
            return False
        if not plan.lines:  # every line of an abandoned upload was settled elsewhere
            await self.store.run(lambda: self.ledger.relax_finish_batch_sync(plan.batch_id, retry_at=time.time()))
            return True
        data = jsonl_input(plan.lines)
        started = time.monotonic()
        try:
            file_id = await self.provider.upload_batch_input(f"imaginebot-{plan.batch_id}.jsonl", data)
            batch = await self.provider.create_batch(file_id, endpoint=ENDPOINT, metadata={"imaginebot_batch": plan.batch_id})
        except (ServiceUnavailable, RateLimited, ModelTimeout) as e:
            retry = self.ledger.clock().timestamp() + self.config.relax.poll_seconds
            log.warning("relax batch %s: could not submit it (%s); retrying", plan.batch_id, e.code)
            await self.store.run(lambda: self.ledger.relax_release_sync(plan.batch_id, retry_at=retry))
            return False
        except ImagineError as e:
            log.error("relax batch %s: the Batch API refused it (%s): refunding its %d job(s)", plan.batch_id,
                      e.detail or e.code, len(plan.lines))  # fmt: skip
            await self._fail_lines(plan.batch_id, [job_id for job_id, _ in plan.lines], "batch_refused")
            return True
        next_poll = self.ledger.clock().timestamp() + self.config.relax.poll_seconds
        await self.store.run(
            lambda: self.ledger.relax_submitted_sync(
                plan.batch_id, openai_batch_id=batch.batch_id, input_file_id=file_id, input_bytes=len(data),
                openai_status=batch.status, next_poll_at=next_poll,
            )
        )  # fmt: skip
        self.metrics.relax_batches.labels("submitted").inc()
        log.info("relax batch %s submitted as %s: %d line(s), %d bytes, %.2f s", plan.batch_id, batch.batch_id,
                 len(plan.lines), len(data), time.monotonic() - started)  # fmt: skip
        return True

    async def _poll(self, claimed: ClaimedBatch) -> None:
        next_poll = self.ledger.clock().timestamp() + self.config.relax.poll_seconds
        try:
            status = await self.provider.retrieve_batch(claimed.openai_batch_id)
        except ImagineError as e:
            log.warning("relax batch %s: could not check it (%s)", claimed.batch_id, e.code)
            await self.store.run(lambda: self.ledger.relax_release_sync(claimed.batch_id, retry_at=next_poll))
            return
        final = status.status in _FINAL
        await self.store.run(
            lambda: self.ledger.relax_polled_sync(
                claimed.batch_id, openai_status=status.status, output_file_id=status.output_file_id,
                error_file_id=status.error_file_id, next_poll_at=next_poll, keep_claim=final,
            )
        )  # fmt: skip
        if not final:
            return
        try:
            await self.process_finished(claimed.batch_id, status)
        finally:
            finished = await self.store.run(lambda: self.ledger.relax_finish_batch_sync(claimed.batch_id, retry_at=next_poll))
            if finished:
                self.metrics.relax_batches.labels(status.status).inc()
                log.info("relax batch %s %s", claimed.batch_id, status.status)

    def platforms(self) -> list[str]:
        """The platforms this process can deliver to right now."""
        return [name for name, courier in self.couriers.items() if courier.ready]

    async def process_finished(self, batch_id: str, status: BatchStatus) -> None:
        """Deliver the batch's good lines, refund the failed ones, and, once
        the Batch API is done with it, refund every line it never answered."""
        lines = await self.store.run(self.ledger.relax_lines_sync, batch_id, self.platforms() or ["-"])
        for file_id in (status.output_file_id, status.error_file_id):
            if file_id and lines:
                await self._read_results(file_id, lines)
        # Whatever is left was never answered (an expired, failed or cancelled batch).
        code = "batch_" + status.status
        for line in list(lines.values()):
            if line.state == "batched":
                await self._refund_line(line, code, relax_failed_text(line.prompt, status.status))
            lines.pop(line.job_id, None)

    async def _read_results(self, file_id: str, lines: dict[str, RelaxLine]) -> None:
        fd, path = tempfile.mkstemp(prefix="imaginebot-batch-", suffix=".jsonl")
        os.close(fd)
        try:
            await self.provider.download_file(file_id, path)
            for raw in _lines_of(path):
                try:
                    entry = json.loads(raw)
                except ValueError:
                    log.warning("relax: a line of batch file %s is not JSON; skipped", file_id)
                    continue
                line = lines.get(str(entry.get("custom_id")))
                if line is None:
                    continue  # another platform's, or already handled
                await self._handle_line(line, entry)
                lines.pop(line.job_id, None)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _handle_line(self, line: RelaxLine, entry: Mapping[str, Any]) -> None:
        response = entry.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        if isinstance(body, dict) and response.get("status_code") == 200 and body.get("data"):
            await self._deliver_line(line, body)
            return
        error = (body or {}).get("error") if isinstance(body, dict) else None
        error = error or entry.get("error") or {}
        code = str(error.get("code") or "batch_line_failed")
        if code in POLICY_CODES:
            details = error.get("moderation_details") or {}
            stage = str(details.get("moderation_stage") or "input")
            categories = tuple(str(c) for c in details.get("categories") or ())
            text = relax_blocked_text(line.prompt, stage, categories)
            await self._refund_line(line, "policy_blocked", text, blocked=(stage, categories))
            return
        await self._refund_line(line, code, relax_failed_text(line.prompt, code))

    async def _deliver_line(self, line: RelaxLine, body: Mapping[str, Any]) -> None:
        try:
            images = tuple(base64.b64decode(d["b64_json"]) for d in body["data"] if d.get("b64_json"))
        except (binascii.Error, KeyError, TypeError):
            images = ()
        if not images:
            await self._refund_line(line, "batch_line_empty", relax_failed_text(line.prompt, "empty"))
            return
        usage = usage_from_json(body.get("usage"))
        cost = batch_cost_usd(self.config, line.model, usage)
        take = await self.store.run(
            lambda: self.ledger.relax_take_line_sync(
                line.job_id, usage=usage, cost_usd=cost, images=len(images), model=line.model, claim_seconds=CLAIM_SECONDS
            )
        )
        if not take:
            return
        fmt = str(body.get("output_format") or line.options.format)
        result = ImageResult(
            job_id=line.job_id, kind="generate", requester=_requester(line), prompt=line.prompt, options=line.options,
            images=tuple(GeneratedImage(data=data, filename=f"imagine-{line.job_id}-{i + 1}.{_EXT.get(fmt, 'png')}",
                                        mime=_MIME.get(fmt, "image/png")) for i, data in enumerate(images)),
            model=line.model, usage=usage, cost_usd=cost,
            elapsed_seconds=self.ledger.clock().timestamp() - line.created_at,
        )  # fmt: skip
        courier = self.couriers[line.platform]
        try:
            await courier.post_result(line.reach, result)
        except Exception as e:  # CourierFailed, or the platform's own error: paid for, so given back and told
            log.error("relax job %s: could not post the result (%r)", line.job_id, e, extra={"job_id": line.job_id})
            given_back = await self.store.run(self.ledger.relax_undelivered_sync, line.job_id, f"{line.platform}_post_failed")
            self.metrics.relax_jobs.labels(line.platform, "undelivered").inc()
            with contextlib.suppress(Exception):
                await courier.tell(line.reach, relax_undelivered_text(line.prompt, given_back=given_back))
            return
        await self.store.run(self.ledger.relax_delivered_sync, line.job_id)
        self.metrics.relax_jobs.labels(line.platform, "delivered").inc()
        self.metrics.images.labels(line.platform).inc(len(images))
        self.metrics.spent.labels(line.platform).inc(cost)
        log.info("relax job %s delivered: %d image(s), $%.6f", line.job_id, len(images), cost, extra={"job_id": line.job_id})

    async def _refund_line(self, line: RelaxLine, code: str, text: str, *, blocked: tuple[str, tuple[str, ...]] | None = None) -> None:
        refunded = await self.store.run(lambda: self.ledger.relax_refund_line_sync(line.job_id, code, blocked=blocked))
        if not refunded:
            return
        self.metrics.relax_jobs.labels(line.platform, "refunded").inc()
        log.info("relax job %s failed (%s): refunded", line.job_id, code, extra={"job_id": line.job_id})
        courier = self.couriers.get(line.platform)
        if courier is not None:
            try:
                await courier.tell(line.reach, text)
            except Exception:  # the refund stands; one unreachable user must not stop the others
                log.warning("relax job %s: could not tell its user", line.job_id, exc_info=True)

    async def _fail_lines(self, batch_id: str, job_ids: list[str], code: str) -> None:
        lines = await self.store.run(self.ledger.relax_lines_sync, batch_id, list(self.couriers) or ["-"])
        for job_id in job_ids:
            line = lines.get(job_id)
            if line is not None:
                await self._refund_line(line, code, relax_failed_text(line.prompt, "refused"))
            else:  # a platform this process can't tell: refund all the same
                await self.store.run(lambda: self.ledger.relax_refund_line_sync(job_id, code))
        await self.store.run(lambda: self.ledger.relax_finish_batch_sync(batch_id, retry_at=time.time()))


def jsonl_input(lines: tuple[tuple[str, str], ...]) -> bytes:
    """The batch input file: one request per line, its custom_id the job id."""
    out = []
    for job_id, body in lines:
        out.append(json.dumps({"custom_id": job_id, "method": "POST", "url": ENDPOINT, "body": json.loads(body)},
                              ensure_ascii=False, separators=(",", ":")))  # fmt: skip
    return ("\n".join(out) + "\n").encode("utf-8")


def _lines_of(path: str) -> Iterator[str]:
    """One line at a time: a batch's output is never held whole."""
    with open(path, encoding="utf-8") as f:
        for raw in f:
            if raw.strip():
                yield raw


def _requester(line: RelaxLine) -> Requester:
    who = RequesterKey.parse(line.user_key)
    return Requester(platform=who.platform, workspace=who.workspace, user=who.user, channel=str(line.reach.get("channel") or ""))


# -- the words (platform-neutral; adapters add mentions and markup) --------------------


def relax_disabled() -> str:
    return "Relax mode is turned off on this server. Leave out --relax to make the image now."


def relax_edits_unsupported() -> str:
    return "Relax mode works for new images only, not edits: the Batch API can't take the images to edit. Leave out --relax."


def queued_text(flush_at: datetime, latest: datetime, now: datetime) -> str:
    left = flush_at - now
    wait = "within a minute" if left <= timedelta(minutes=1) else f"in about {messages.format_duration(left)}"
    return (
        f"Queued in relax mode (half price). It goes out with the next batch {wait}; the result is "
        f"posted here {TYPICAL_COMPLETION}, and at the latest by {messages.format_clock(latest)} "
        f"({latest.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC). You can cancel it until the batch is sent."
    )


def cancel_answer(outcome: str) -> str:
    return {
        "cancelled": "Cancelled. Nothing was charged.",
        "too_late": "That relax job has already gone out in a batch, so it can no longer be cancelled. The result will be posted when the batch completes.",
        "not_yours": "Only the person who asked can cancel this relax job.",
    }.get(outcome, "That relax job is already over.")


def _short(prompt: str) -> str:
    return prompt if len(prompt) <= 200 else prompt[:199] + "…"


def relax_blocked_text(prompt: str, stage: str, categories: tuple[str, ...]) -> str:
    head = f"Your relax image for “{_short(prompt)}” was not made: "
    return head + messages.policy_blocked(stage, categories, charged=False)


def relax_failed_text(prompt: str, why: str) -> str:
    reason = {
        "expired": "the Batch API did not finish it within 24 hours",
        "batch_expired": "the Batch API did not finish it within 24 hours",
        "failed": "the batch it was in failed",
        "cancelled": "the batch it was in was cancelled",
        "refused": "the Batch API refused the batch it was in",
    }.get(why, "the Batch API could not make it")
    return (f"Your relax image for “{_short(prompt)}” was not made: {reason}. Nothing was charged and your relax "
            "images are back. Try again, or leave out --relax to make it now.")  # fmt: skip


def relax_undelivered_text(prompt: str, *, given_back: bool) -> str:
    back = " It was given back to your relax images." if given_back else ""
    return f"Your relax image for “{_short(prompt)}” was made, but I couldn't post it where you asked.{back}"
