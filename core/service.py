"""ImageService: the one entry point the adapters and the CLI call.

Every job follows the same path: check the input (nothing spent yet) →
reserve quota and budget atomically → wait in the fair, paced line for a model
slot and the account's images-per-minute budget (a 429 puts the job back at
the head of the line) → call the model → settle from the response's usage,
or refund. Whatever
happens after the reservation — an error, a policy block, a cancelled task —
ends in exactly one of settle or refund.
"""

from __future__ import annotations

import asyncio
import functools
import contextlib
import logging
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence

from core import messages
from core.config import Config
from core.errors import (
    ImagineError,
    InvalidInput,
    LedgerUnavailable,
    ModelShutDown,
    ModelTimeout,
    NotPermitted,
    PolicyBlocked,
    ProviderError,
    RateLimited,
    ShuttingDown,
)
from core.images import MAX_INPUT_IMAGES, check_edit_inputs
from core.ledger import Clock, Ledger, Reservation, new_job_id, utc_now
from core.ledger_writes import LedgerWrites
from core.metrics import Metrics
from core.pacer import Pacer, Ticket
from core.models import (
    GeneratedImage,
    ImageOptions,
    ImageResult,
    InputImage,
    InterruptedJob,
    JobKind,
    PaceReport,
    JobRecord,
    Progress,
    ProgressCallback,
    QuotaStatus,
    Requester,
    RequesterKey,
    Upload,
)
from core.lifecycle import ModelLifecycle
from core.options import check_options, check_prompt, route_model
from core.pricing import cost_usd, estimate_usd, weighted_units
from core.progress import ProgressReporter
from core.provider import ImageProvider, ProviderResult, safety_identifier
from core.relax import RelaxQueue
from core.results import ResultBook
from core.store import DATABASE_FAULTS, Store, store_for

log = logging.getLogger("imaginebot.core")

_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_EXT = {"png": "png", "jpeg": "jpg", "webp": "webp"}


class InternalError(ImagineError):
    """A bug, not the user's doing: refunded, logged with the job id, and
    shown as a short apology with that id."""

    code = "internal"


class ImageService:
    def __init__(
        self,
        config: Config,
        store: Store,
        provider: ImageProvider,
        *,
        clock: Clock = utc_now,
        metrics: Metrics | None = None,
        progress_interval: float = 5.0,
    ) -> None:
        self.config = config
        self.store = store
        self.provider = provider
        self.ledger = Ledger(store, config, clock=clock)
        self.ledger_writes = LedgerWrites(store)
        self.results = ResultBook(config, store, self.ledger)  # buttons under results, history
        self.metrics = metrics or Metrics()
        self.pacer = Pacer(
            lambda images, grow_by: self.store.run(lambda: self.ledger.grant_images_sync(images, grow_by=grow_by)),
            capacity=config.openai.max_concurrent_calls,
            max_wait_seconds=config.openai.max_queue_wait_seconds,
            end_call=lambda call_id: self.store.run(self.ledger.end_call_sync, call_id),
        )
        self.pacer.on_wait = self.metrics.queue_wait.observe
        self.metrics.queue_length.set_function(lambda: self.pacer.waiting)
        self.metrics.images_per_minute.set_function(lambda: self.pacer.images_per_minute)
        self.progress_interval = progress_interval
        self._closing = False
        self._closed = False
        self._database_ok = True
        self._heartbeat: asyncio.Task[None] | None = None
        self.lifecycle = ModelLifecycle(config, provider.check_model, self.metrics, clock)
        self._model_watch: asyncio.Task[None] | None = None
        self._announce: Callable[[list[InterruptedJob]], Awaitable[None]] | None = None
        self._announcing: set[asyncio.Task[None]] = set()
        # Relax mode (--relax): the Batch API at half price, delivered when the batch completes.
        self.relax = RelaxQueue(config, store, self.ledger, provider, self.metrics, check_model=self.model_for)

    @classmethod
    async def open(cls, config: Config, db_path: str, provider: ImageProvider, **kwargs: Any) -> ImageService:
        store = store_for(db_path)
        await store.open()
        service = cls(config, store, provider, **kwargs)
        await store.run(service.ledger.heartbeat_sync)
        # Beat from the start: another process's recover() takes a silent
        # process for dead and refunds its jobs, so a long CLI job must beat too.
        service._heartbeat = asyncio.create_task(service._beat(), name="imaginebot-heartbeat")
        return service

    # -- jobs -------------------------------------------------------------

    async def generate(
        self,
        requester: Requester,
        prompt: str,
        options: ImageOptions,
        *,
        progress: ProgressCallback | None = None,
        notify: Mapping[str, Any] | None = None,
    ) -> ImageResult:
        check_prompt(prompt)
        options = check_options(self.config, options)
        return await self._run(requester, "generate", prompt, options, (), None, progress, notify)

    async def edit(
        self,
        requester: Requester,
        prompt: str,
        images: Sequence[Upload],
        options: ImageOptions,
        *,
        mask: Upload | None = None,
        progress: ProgressCallback | None = None,
        notify: Mapping[str, Any] | None = None,
    ) -> ImageResult:
        check_prompt(prompt)
        options = check_options(self.config, options)  # cheap checks before decoding images
        model = route_model(self.config, options.model, options.background)
        most = self.config.models[model].max_input_images
        if most < len(images) <= MAX_INPUT_IMAGES:  # above the API's 16, core.images says so
            raise InvalidInput(f"You attached {len(images)} images; {model} can use at most {most} in one edit. Remove some and try again.")
        # Decoding large images takes real CPU time: keep it off the event loop.
        inputs, checked_mask = await asyncio.to_thread(check_edit_inputs, images, mask)
        if options.size_from_defaults:  # no size asked for: "auto" keeps the first image's shape, [defaults] size would not
            options = replace(options, size="auto", size_from_defaults=False)
        return await self._run(requester, "edit", prompt, options, tuple(inputs), checked_mask, progress, notify)

    def model_for(self, options: ImageOptions) -> str:
        """The model that makes these images (see core.options.route_model:
        --model, else the transparent model for transparent backgrounds, else
        openai.model), refused before anything is reserved if it has shut down."""
        model = route_model(self.config, options.model, options.background)
        self.lifecycle.check_live(model, transparent=options.background == "transparent")
        return model

    async def watch_models(self) -> None:
        """Start-up and then daily: read each configured model's shutdown date
        (warnings in the log, days left in /metrics)."""
        await self.lifecycle.refresh()
        if self._model_watch is None:
            self._model_watch = asyncio.create_task(self.lifecycle.watch(), name="imaginebot-model-watch")

    async def _run(
        self,
        requester: Requester,
        kind: JobKind,
        prompt: str,
        options: ImageOptions,
        inputs: tuple[InputImage, ...],
        mask: InputImage | None,
        progress: ProgressCallback | None,
        notify: Mapping[str, Any] | None,
    ) -> ImageResult:
        if self._closing:
            raise ShuttingDown(messages.shutting_down())
        model = self.model_for(options)
        reserving = asyncio.ensure_future(
            self.store.run(
                lambda: self.ledger.reserve_sync(
                    requester,
                    kind=kind,
                    prompt=prompt,
                    options=options,
                    model=model,
                    units=weighted_units(self.config, options),
                    usd=estimate_usd(self.config, model, options, prompt, len(inputs)),
                    input_images=len(inputs),
                    notify=notify,
                )
            )
        )
        try:
            reservation = await asyncio.shield(reserving)
        except asyncio.CancelledError:
            # Cancelled while the database thread writes the reservation: it
            # commits there all the same, so wait for it and give it back.
            # Refused (limit, cool-down…) or not written: nothing to give back.
            with contextlib.suppress(ImagineError, *DATABASE_FAULTS):
                await self._refund(await reserving, "cancelled", None)
            raise
        except DATABASE_FAULTS as e:
            # Nothing is spent on a job the ledger can't record.
            log.warning("could not reserve a %s job for %s: %s", kind, requester.key, e)
            self.metrics.jobs.labels(requester.platform, kind, LedgerUnavailable.code).inc()
            raise LedgerUnavailable(messages.ledger_unavailable()) from None
        job_id = reservation.job_id
        started = time.monotonic()
        reporter = ProgressReporter(job_id, progress, interval=self.progress_interval, started=started)
        try:
            result, model_seconds = await self._paced_call(
                Ticket(requester.workspace_key, requester.key, options.n, reporter.queued),
                reporter, job_id, started, kind, model, prompt, options, inputs, mask, requester,
            )  # fmt: skip
            self.metrics.model_latency.labels(kind).observe(model_seconds)
            cost = cost_usd(self.config.models[model], result.usage)
            # Paid for, so delivered even if the settlement has to wait for the database.
            await self.ledger_writes.write(
                job_id,
                f"settlement (${cost:.4f}, {len(result.images)} image(s))",
                lambda: self.ledger.settle_sync(
                    reservation,
                    usage=result.usage,
                    cost_usd=cost,
                    images=len(result.images),
                    model=model,
                    model_seconds=model_seconds,
                    attempts=result.attempts,
                ),
            )
        except PolicyBlocked as e:
            raise await self._policy_blocked(reservation, requester, kind, e, started) from None
        except ImagineError as e:
            await self._refund(reservation, e.code, e.attempts)
            if isinstance(e, ModelShutDown):
                self.lifecycle.shut_down_now(model)  # the admin's log line; later jobs refused before any call
            self.metrics.jobs.labels(requester.platform, kind, e.code).inc()
            log.info("job %s %s failed for %s: %s", job_id, kind, requester.key, e.code,
                     extra=job_log_fields(job_id, requester, e.code, started))
            e.job_id = job_id
            raise
        except asyncio.CancelledError:
            # The adapter gave up on the job (shutdown, disconnect): give the quota back.
            await self._refund(reservation, "cancelled", None)
            self.metrics.jobs.labels(requester.platform, kind, "cancelled").inc()
            log.info("job %s %s cancelled for %s: refunded", job_id, kind, requester.key,
                     extra=job_log_fields(job_id, requester, "cancelled", started))
            raise
        except Exception as e:
            log.exception("job %s failed unexpectedly", job_id, extra=job_log_fields(job_id, requester, "internal", started))
            await self._refund(reservation, "internal", None)
            self.metrics.jobs.labels(requester.platform, kind, "internal").inc()
            raise InternalError(messages.unexpected_error_text(job_id), job_id=job_id) from e
        finally:
            await reporter.stop()
        self.metrics.jobs.labels(requester.platform, kind, "succeeded").inc()
        self.metrics.images.labels(requester.platform).inc(len(result.images))
        self.metrics.spent.labels(requester.platform).inc(cost)
        images = tuple(
            GeneratedImage(data=data, filename=f"imagine-{job_id}-{i + 1}.{_EXT.get(result.output_format, 'png')}",
                           mime=_MIME.get(result.output_format, "image/png"))
            for i, data in enumerate(result.images)
        )
        log.info(
            "job %s %s succeeded for %s: %d image(s), $%.4f, %.1fs",
            job_id, kind, requester.key, len(images), cost, time.monotonic() - started,
            extra=job_log_fields(job_id, requester, "succeeded", started),
        )
        return ImageResult(
            job_id=job_id,
            kind=kind,
            requester=requester,
            prompt=prompt,
            options=options,
            images=images,
            model=model,
            usage=result.usage,
            cost_usd=cost,
            elapsed_seconds=time.monotonic() - started,
        )

    async def _paced_call(
        self,
        ticket: Ticket,
        reporter: ProgressReporter,
        job_id: str,
        started: float,
        kind: JobKind,
        model: str,
        prompt: str,
        options: ImageOptions,
        inputs: tuple[InputImage, ...],
        mask: InputImage | None,
        requester: Requester,
    ) -> tuple[ProviderResult, float]:
        """Wait for the job's turn and call the model; a 429 rate_limit_exceeded
        puts the job back at the head of the line (nothing charged, nothing
        said but the new wait) and teaches the budget the account's limit."""
        attempts = 0
        while True:
            async with self.pacer.turn(ticket):
                reporter.running()
                if not attempts:
                    queued_for, started_at = time.monotonic() - started, self.ledger.clock().timestamp()
                    await self.ledger_writes.write(
                        job_id, "start time", lambda: self.ledger.mark_started_sync(job_id, queued_for, started_at)
                    )
                with self.metrics.in_flight.track_inprogress():
                    called = time.monotonic()
                    try:
                        result = await self._call_model(kind, model, prompt, options, inputs, mask, requester)
                    except RateLimited as e:
                        attempts += max(1, e.attempts)
                        self.metrics.rate_limited.inc()
                        await self._learn_from_429(job_id, ticket, e)
                        continue  # the pacer tells the user their place again
                    except ImagineError as e:
                        e.attempts += attempts
                        raise
                    model_seconds = time.monotonic() - called
            self.pacer.succeeded(ticket)
            if result.limit_seen and self.pacer.would_learn(result.limit_seen):  # only news costs a write
                with contextlib.suppress(*DATABASE_FAULTS):
                    await self.store.run(self.ledger.limit_seen_sync, result.limit_seen)
            return replace(result, attempts=result.attempts + attempts), model_seconds

    async def _learn_from_429(self, job_id: str, ticket: Ticket, e: RateLimited) -> None:
        # Without a Retry-After, a pause of one image's share of the window.
        pause = e.retry_after if e.retry_after is not None else self.pacer.seconds_per_image
        self.pacer.put_back(ticket, pause)
        try:
            limit = await self.store.run(
                lambda: self.ledger.rate_limited_sync(limit=e.limit, retry_after=pause, grant_id=ticket.grant_id)
            )
        except DATABASE_FAULTS as fault:  # the job still goes back in line; the budget learns next time
            log.warning("job %s: a 429 could not be recorded in the pace: %s", job_id, fault)
            return
        log.info("job %s: OpenAI's per-minute limit was reached (429); back to the head of the line, "
                 "pace now %g images a minute%s", job_id, limit, " (OpenAI said so)" if e.limit else "")  # fmt: skip

    async def pace_for(self, admin: Requester) -> PaceReport:
        """`/imagine-admin pace`: admins only."""
        self._require_admin(admin)
        return await self.pace()

    async def pace(self) -> PaceReport:
        """The pace, what is used of it, who waits."""
        status = await self.store.run(self.ledger.pace_status_sync)
        return PaceReport(
            images_per_minute=status.images_per_minute,
            configured=status.configured,
            exact=status.exact,
            used=status.used,
            paused_for=status.paused_for,
            waiting=self.pacer.waiting,
            running=self.pacer.active,
        )

    async def _call_model(
        self,
        kind: JobKind,
        model: str,
        prompt: str,
        options: ImageOptions,
        inputs: tuple[InputImage, ...],
        mask: InputImage | None,
        requester: Requester,
    ) -> ProviderResult:
        tag = safety_identifier(requester.key)
        timeout = self.config.openai.timeout_seconds
        # The SDK has its own timeout per attempt; this one bounds the whole
        # call with its retry waits, so a job cannot hang forever.
        cfg = self.config.openai
        attempts = 1 + cfg.server_error_retries
        budget = timeout * attempts + cfg.server_error_retries * 2.0
        if kind == "edit":
            call = self.provider.edit(model=model, prompt=prompt, options=options, images=inputs, mask=mask, user_tag=tag)
        else:
            call = self.provider.generate(model=model, prompt=prompt, options=options, user_tag=tag)
        try:
            return await asyncio.wait_for(call, timeout=budget)
        except asyncio.TimeoutError:
            raise ModelTimeout(messages.timed_out(timeout)) from None

    async def remember(self, job_id: str, notify: Mapping[str, Any]) -> None:
        """Merge `notify` into what the job stored about reaching its user:
        adapters record what they post after the job started (a progress
        message), so that a restart can clean it up."""
        await self.store.run(lambda: self.ledger.remember_sync(job_id, notify))

    async def delivery_failed(self, job_id: str, error_code: str = "delivery_failed") -> bool:
        """Adapters call this when they could not deliver a result (upload
        refused, file too large): the user gets the images back on their
        daily limit, so a failed delivery never eats a quota. True if refunded."""
        landed, refunded = await self.ledger_writes.write(
            job_id, f"give-back of undelivered images ({error_code})", lambda: self.ledger.undelivered_sync(job_id, error_code)
        )
        if not landed:
            return True  # it lands after the job's settlement, when the database takes writes again
        if refunded:
            log.warning("job %s: result not delivered (%s); images given back to the user's limit", job_id, error_code,
                        extra={"job_id": job_id, "outcome": "undelivered"})
        return bool(refunded)

    async def _refund(self, reservation: Reservation, code: str, attempts: int | None) -> None:
        await self.ledger_writes.write(
            reservation.job_id,
            f"refund ({code})",
            lambda: self.ledger.refund_sync(reservation.job_id, error_code=code, attempts=attempts),
        )

    async def _policy_blocked(
        self, reservation: Reservation, requester: Requester, kind: str, e: PolicyBlocked, started: float
    ) -> PolicyBlocked:
        charge = self.config.limits.charge_policy_blocks
        _, cooldown_until = await self.ledger_writes.write(
            reservation.job_id,
            "policy block",
            lambda: self.ledger.record_policy_block_sync(reservation, stage=e.stage, categories=e.categories, charge=charge),
        )
        self.metrics.policy_blocks.labels(requester.platform, e.stage).inc()
        self.metrics.jobs.labels(requester.platform, kind, "policy_blocked").inc()
        log.info("job %s blocked by policy at %s stage (%s)", reservation.job_id, e.stage, ",".join(e.categories) or "-",
                 extra=job_log_fields(reservation.job_id, requester, "policy_blocked", started))
        text = messages.policy_blocked(
            e.stage, e.categories, charged=charge, cooldown_until=cooldown_until, now=self.ledger.clock()
        )
        return PolicyBlocked(text, stage=e.stage, categories=e.categories, charged=charge, job_id=reservation.job_id)

    # -- quota and admin ---------------------------------------------------

    async def quota(self, requester: Requester) -> QuotaStatus:
        return await self._with_relax(await self.store.run(self.ledger.quota_sync, requester))

    async def quota_for(self, admin: Requester, target_key: str) -> QuotaStatus:
        target = self._target(admin, target_key)
        return await self._with_relax(await self.store.run(self.ledger.quota_sync, target))

    async def _with_relax(self, status: QuotaStatus) -> QuotaStatus:
        """The relax allowance beside the fast one, when relax mode is on."""
        if not self.config.relax.enabled:
            return status
        used = await self.store.run(self.ledger.relax_used_sync, status.requester_key)
        return replace(status, relax_used=used, relax_limit=self.config.relax.daily_images_per_user)

    async def set_user_limit(self, admin: Requester, target_key: str, daily: int | None) -> None:
        self._target(admin, target_key)
        if daily is not None and daily < 0:
            raise InvalidInput("A daily limit must be 0 or more.")
        await self.store.run(lambda: self.ledger.set_user_limit_sync(target_key, daily, admin.key))
        log.info("admin %s set daily limit of %s to %s", admin.key, target_key, daily)

    async def set_role_limit(self, admin: Requester, role: str, daily: int | None) -> None:
        self._require_admin(admin)
        if daily is not None and daily < 0:
            raise InvalidInput("A daily limit must be 0 or more.")
        await self.store.run(lambda: self.ledger.set_role_limit_sync(admin.workspace_key, role, daily, admin.key))
        log.info("admin %s set daily limit of role %s in %s to %s", admin.key, role, admin.workspace_key, daily)

    async def reset_user(self, admin: Requester, target_key: str) -> None:
        self._target(admin, target_key)
        await self.store.run(lambda: self.ledger.reset_user_sync(target_key, admin.key))
        log.info("admin %s reset %s", admin.key, target_key)

    async def set_workspace_budget(self, admin: Requester, usd: float) -> None:
        self._require_admin(admin)
        if usd < 0:
            raise InvalidInput("A budget must be 0 (no budget) or more.")
        await self.store.run(lambda: self.ledger.set_workspace_budget_sync(admin.workspace_key, usd, admin.key))
        log.info("admin %s set the daily budget of %s to $%.2f", admin.key, admin.workspace_key, usd)

    def _require_admin(self, admin: Requester) -> None:
        if not admin.is_admin:
            raise NotPermitted(messages.not_admin(admin.platform))

    def _target(self, admin: Requester, target_key: str) -> Requester:
        """Admins act only inside their own workspace/server."""
        self._require_admin(admin)
        target = RequesterKey.parse(target_key)
        if target.workspace_key != admin.workspace_key or not target.user:
            raise InvalidInput("You can only manage members of this workspace/server.")
        return Requester(platform=admin.platform, workspace=target.workspace, user=target.user)

    # -- lookups ------------------------------------------------------------

    async def job(self, job_id: str) -> JobRecord | None:
        return await self.results.job(job_id)

    def observe_ack(self, platform: str, seconds: float) -> None:
        """How long a platform waited for our acknowledgement (Slack's ack, Discord's defer)."""
        self.metrics.ack_latency.labels(platform).observe(seconds)

    def metrics_page(self) -> tuple[bytes, str]:
        """/metrics: the page and its content type."""
        return self.metrics.render(), self.metrics.content_type

    async def claim_event(self, key: str) -> bool:
        return await self.store.run(self.ledger.claim_event_sync, key)

    # -- life cycle ---------------------------------------------------------

    async def recover(self, *, tell_users: bool = True) -> list[InterruptedJob]:
        """Refund what crashed processes left reserved; start beating our heart.
        Without `tell_users` (a CLI command: nobody to announce to), jobs whose
        users are waiting to hear are left for a bot process to refund and tell."""
        jobs = await self._recover_dead(tell_users=tell_users)
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="imaginebot-heartbeat")
        return jobs

    def announce_recovered(self, announce: Callable[[list[InterruptedJob]], Awaitable[None]]) -> None:
        """From now on, every heartbeat also looks for processes that died
        (silent for longer than `server.heartbeat_timeout_seconds`; on this
        host, also a pid that is gone), refunds their jobs and hands them to
        `announce` to tell their users. Only a process that can tell the users
        should take this on (the bot, not a one-off CLI command)."""
        self._announce = announce

    async def _recover_dead(self, *, tell_users: bool = True) -> list[InterruptedJob]:
        # One transaction: when several survivors look at once, exactly one refunds each job.
        jobs = await self.store.run(functools.partial(self.ledger.recover_sync, tell_users=tell_users))
        for job in jobs:
            log.warning("job %s of %s was interrupted: its process stopped; refunded", job.job_id, job.requester_key,
                        extra=interrupted_log_fields(job))
        return jobs

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.ledger.heartbeat_seconds)
            try:
                if self._announce is None:
                    await self.store.run(self.ledger.heartbeat_sync)
                    continue
                jobs = await self._recover_dead()  # beats too
            except Exception:  # a locked database for a moment must not end the heartbeat
                log.warning("heartbeat failed", exc_info=True)
                continue
            if jobs:
                # Telling users takes network calls: never hold up the next heartbeat for them.
                task = asyncio.ensure_future(self._announce(jobs))
                task.set_name("imaginebot-announce-recovered")
                self._announcing.add(task)
                task.add_done_callback(self._announcing.discard)

    async def stop_recovering(self) -> None:
        """At shutdown, before the adapters close: look for dead processes no
        more (the heartbeat goes on until close()) and let the announcements
        already started finish."""
        self._announce = None
        await asyncio.gather(*self._announcing, return_exceptions=True)

    async def database_ok(self) -> bool:
        """For health checks: the database file is still the one we opened, a
        real write (our heartbeat) lands, and no ledger write is waiting for
        the database to take it again."""
        if self.ledger_writes.pending:
            return False
        try:
            await self.store.run(self.ledger.heartbeat_sync)
        except Exception as e:  # the check's whole point is to report, not to raise
            if self._database_ok:  # once per outage, not once per health check
                log.warning("database health check: a write failed: %s", e)
            self._database_ok = False
            return False
        self._database_ok = True
        return True

    async def refund_own(self) -> list[InterruptedJob]:
        """At shutdown, after the grace period: refund what this process still
        holds reserved (those jobs will never finish). Ledger writes still
        waiting get a last attempt first; a job whose settlement still can't
        be written was delivered, so it is not announced as interrupted."""
        unsettled = await self.ledger_writes.flush()
        try:
            jobs = await self.store.run(self.ledger.refund_own_sync)
        except DATABASE_FAULTS as e:
            log.error("could not refund the jobs still running at shutdown (%s); the next process refunds them", e)
            return []
        return [job for job in jobs if job.job_id not in unsettled]

    def stop_accepting(self) -> None:
        self._closing = True

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        await self.stop_recovering()
        await self.relax.close()
        for task in (self._heartbeat, self._model_watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.pacer.close()
        await self.ledger_writes.flush()
        with contextlib.suppress(Exception):
            await self.store.run(self.ledger.retire_sync)
        await self.provider.close()
        await self.store.close()


def job_log_fields(job_id: str, requester: Requester, outcome: str, started: float) -> dict[str, Any]:
    """The fields of a job's outcome log line (JSON keys with LOG_FORMAT=json)."""
    return {
        "job_id": job_id,
        "platform": requester.platform,
        "workspace": requester.workspace,
        "user": requester.user,
        "outcome": outcome,
        "elapsed_ms": round((time.monotonic() - started) * 1000),
    }


def interrupted_log_fields(job: InterruptedJob) -> dict[str, Any]:
    """The same fields for a job a restart cut short (timed from its creation)."""
    who = RequesterKey.parse(job.requester_key)
    elapsed = datetime.now(timezone.utc) - job.created_at
    return {
        "job_id": job.job_id,
        "platform": who.platform,
        "workspace": who.workspace,
        "user": who.user,
        "outcome": "interrupted",
        "elapsed_ms": round(elapsed.total_seconds() * 1000),
    }


__all__ = ["ImageService", "InternalError", "ProviderError", "Progress", "new_job_id"]
