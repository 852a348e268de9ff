"""The core's errors. Each carries text that is safe to show the user as-is.

Adapters render `user_message` (privately when `private` is true: the user can
act on it and nobody else needs to see it) and never `str()` of an SDK error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Sequence


class ImagineError(Exception):
    """Base class. `code` is stable (logged, stored, counted in metrics)."""

    code = "error"
    private = True  # shown only to the requester
    attempts = 0  # model calls made before this error (retries included)
    # For operators (CLI, doctor, logs), never for chat users: the request and
    # what went wrong with it, e.g. "POST http://…/v1/images/generations: ConnectError: …".
    detail = ""

    def __init__(self, user_message: str, *, job_id: str | None = None) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.job_id = job_id


class ConfigError(ImagineError):
    """The TOML config is wrong; says the file, the key and what is expected."""

    code = "config"


class InvalidInput(ImagineError):
    """Bad prompt, flag, size or file: caught before any money is spent."""

    code = "invalid_input"


class LimitReached(ImagineError):
    code = "limit_reached"

    def __init__(self, user_message: str, *, resets_at: datetime, job_id: str | None = None) -> None:
        super().__init__(user_message, job_id=job_id)
        self.resets_at = resets_at


class BudgetExhausted(ImagineError):
    code = "budget_exhausted"

    def __init__(self, user_message: str, *, resets_at: datetime, job_id: str | None = None) -> None:
        super().__init__(user_message, job_id=job_id)
        self.resets_at = resets_at


class TooManyJobs(ImagineError):
    code = "too_many_jobs"


class CoolingDown(ImagineError):
    code = "cooldown"

    def __init__(self, user_message: str, *, until: datetime, job_id: str | None = None) -> None:
        super().__init__(user_message, job_id=job_id)
        self.until = until


class LedgerUnavailable(ImagineError):
    """The database can't record a reservation (full disk, missing file):
    refused before any money is spent."""

    code = "ledger_unavailable"


class NotPermitted(ImagineError):
    """An admin action asked for by someone who is not an admin."""

    code = "not_permitted"


class PolicyBlocked(ImagineError):
    """OpenAI's safety system refused the prompt (stage "input") or the image
    it generated (stage "output")."""

    code = "policy_blocked"

    def __init__(
        self,
        user_message: str,
        *,
        stage: str,
        categories: Sequence[str] = (),
        charged: bool = False,
        job_id: str | None = None,
    ) -> None:
        super().__init__(user_message, job_id=job_id)
        self.stage = stage
        self.categories = tuple(categories)
        self.charged = charged


class ProviderError(ImagineError):
    """The model call failed for a reason that is not the user's input.
    Refunded; `retryable` says whether trying later may help."""

    code = "provider_error"
    retryable = True


class RateLimited(ProviderError):
    """429 rate_limit_exceeded: the account's images per minute. Not a
    failure for the user: the service puts the job back at the head of the
    paced queue (core/pacer.py). `limit` and `retry_after` are what OpenAI
    said, when it did."""

    code = "rate_limited"

    def __init__(
        self, user_message: str, *, limit: int | None = None, retry_after: float | None = None, job_id: str | None = None
    ) -> None:
        super().__init__(user_message, job_id=job_id)
        self.limit = limit
        self.retry_after = retry_after


class QueueTimeout(ProviderError):
    """A job waited `openai.max_queue_wait_seconds` for its turn under the
    account's per-minute limit: refunded, its user told why."""

    code = "queue_timeout"


class TooManyForPace(ProviderError):
    """More images in one request than the account may make in a minute:
    it could never be granted."""

    code = "above_rate_limit"
    retryable = False


class OutOfCredit(ProviderError):
    code = "insufficient_quota"
    retryable = False


class NotAllowed(ProviderError):
    code = "not_allowed"
    retryable = False


class InvalidRequest(ProviderError):
    code = "invalid_request"
    retryable = False


class ModelTimeout(ProviderError):
    code = "timeout"


class ServiceUnavailable(ProviderError):
    code = "unavailable"


class ShuttingDown(ProviderError):
    code = "shutting_down"


class ModelShutDown(ProviderError):
    """The model is gone (OpenAI shut it down, 404 model_not_found), or the
    catalog or GET /models says it has: refunded, or refused before any call."""

    code = "model_shut_down"
    retryable = False

    def __init__(self, user_message: str, *, model: str, job_id: str | None = None) -> None:
        super().__init__(user_message, job_id=job_id)
        self.model = model
