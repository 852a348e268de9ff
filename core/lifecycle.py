"""Models go away: when each configured model shuts down, from the catalog
and from the API's `GET /models/{id}` (`shutdown_date`), cached for a day.

`imaginebot doctor` and start-up read it; the running bot re-reads it daily,
warns admins within WARN_DAYS, exposes the days left per model in /metrics,
and refuses a job for a model that has shut down before any money is spent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import date, datetime
from typing import Awaitable, Callable, Literal

from core import messages
from core.config import Config
from core.errors import ImagineError, ModelShutDown
from core.metrics import Metrics

log = logging.getLogger("imaginebot.models")

WARN_DAYS = 30
CHECK_EVERY_SECONDS = 24 * 3600.0

ShutdownLookup = Callable[[str], Awaitable[str | None]]  # model -> the API's shutdown_date


@dataclass(frozen=True)
class ModelStatus:
    model: str
    keys: tuple[str, ...]  # the config keys naming it, e.g. ("openai.transparent_model",)
    shutdown: date | None
    replacement: str
    today: date

    @property
    def days_left(self) -> int | None:
        return None if self.shutdown is None else (self.shutdown - self.today).days

    @property
    def state(self) -> Literal["ok", "warn", "shut_down"]:
        days = self.days_left
        if days is None or days > WARN_DAYS:
            return "ok"
        return "shut_down" if days <= 0 else "warn"

    def advice(self) -> str:
        """For admins (doctor, log): what happens when, and what to do."""
        named = " and ".join(f"{k} = {self.model!r}" for k in self.keys) or self.model
        instead = f"Use {self.replacement} instead: {self._fix()}." if self.replacement else "Pick another model."
        if self.state == "shut_down":
            return f"{named}: OpenAI shut this model down on {self.shutdown}. {instead}"
        if self.state == "warn":
            return f"{named}: OpenAI shuts this model down on {self.shutdown} (in {self.days_left} days). {instead}"
        return f"{named}: no shutdown announced" if self.shutdown is None else f"{named}: shuts down on {self.shutdown}"

    def _fix(self) -> str:
        keys = [k.removeprefix("openai.") for k in self.keys if k != "openai.allowed_models"]
        edits = [f'{k} = "{self.replacement}"' for k in keys]
        if "openai.allowed_models" in self.keys:
            edits.append("replace it in allowed_models")
        return "set " + " and ".join(edits) + " under [openai] in the config" if edits else "update the config"


def configured_models(config: Config) -> dict[str, tuple[str, ...]]:
    """Every model the config can send a request to, with the keys naming it."""
    named: dict[str, list[str]] = {}
    pairs = [("openai.model", config.openai.model), ("openai.transparent_model", config.openai.transparent_model)]
    pairs += [("openai.allowed_models", m) for m in config.openai.allowed_models]
    for key, model in pairs:
        if model and key not in named.setdefault(model, []):
            named[model].append(key)
    return {m: tuple(keys) for m, keys in named.items()}


def status_of(config: Config, model: str, api_date: str | None, today: date) -> ModelStatus:
    """The earliest date known, from the catalog or the API."""
    info = config.models.get(model)
    dates = [d for d in (info.shutdown_date if info else "", api_date or "") if d]
    shutdown = min(date.fromisoformat(d[:10]) for d in dates) if dates else None
    keys = configured_models(config).get(model, ())
    return ModelStatus(model, keys, shutdown, info.replacement if info else "", today)


class ModelLifecycle:
    def __init__(self, config: Config, lookup: ShutdownLookup, metrics: Metrics, clock: Callable[[], datetime]) -> None:
        self.config = config
        self._lookup = lookup
        self._metrics = metrics
        self._clock = clock
        self._api_dates: dict[str, str | None] = {}
        self._checked_at: dict[str, float] = {}
        self._gone: dict[str, str] = {}  # model -> the day a call answered 404 model_not_found
        self._update_gauges()

    def today(self) -> date:
        return self._clock().date()

    def status(self, model: str) -> ModelStatus:
        today = self.today()
        known = self._api_dates.get(model)
        gone = self._gone.get(model)
        earliest = min(filter(None, (known, gone)), default=None)
        return status_of(self.config, model, earliest, today)

    def check_live(self, model: str, *, transparent: bool) -> None:
        """Refuse (nothing reserved yet) a job for a model that has shut down."""
        status = self.status(model)
        if status.state == "shut_down":
            text = messages.model_shut_down(model, str(status.shutdown), status.replacement, transparent=transparent)
            raise ModelShutDown(text, model=model)

    def shut_down_now(self, model: str) -> None:
        """A call answered 404 model_not_found: refuse the model until the
        daily re-check (or a restart) finds it alive."""
        self._gone.setdefault(model, self.today().isoformat())
        status = self.status(model)
        log.error("model %s answered 404 model_not_found: OpenAI shut it down or this key can't use it. %s",
                  model, status.advice() if status.replacement else "Run `imaginebot doctor`.")  # fmt: skip
        self._update_gauges()

    async def refresh(self, *, force: bool = False) -> list[ModelStatus]:
        """Read shutdown_date for every configured model not read in the last
        day; log a warning for each within WARN_DAYS, an error for each past."""
        now = time.monotonic()
        for model in configured_models(self.config):
            checked = self._checked_at.get(model)
            if not force and checked is not None and now - checked < CHECK_EVERY_SECONDS:
                continue  # cached for a day
            try:
                self._api_dates[model] = await self._lookup(model)
                self._gone.pop(model, None)
            except ImagineError as e:
                log.warning("could not read the shutdown date of model %s: %s", model, e.code)
                continue
            self._checked_at[model] = now
        statuses = [self.status(m) for m in configured_models(self.config)]
        for s in statuses:
            if s.state == "shut_down":
                log.error("%s", s.advice())
            elif s.state == "warn":
                log.warning("%s", s.advice())
        self._update_gauges()
        return statuses

    async def watch(self) -> None:
        """The running bot re-checks daily (a lookup that fails is retried then)."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bad day at the API must not end the watch
                log.warning("model shutdown check failed", exc_info=True)
            await asyncio.sleep(CHECK_EVERY_SECONDS)

    def _update_gauges(self) -> None:
        for model in configured_models(self.config):
            days = self.status(model).days_left
            self._metrics.model_days_left.labels(model).set(float("inf") if days is None else days)
