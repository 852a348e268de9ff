"""The OpenAI Images API. The only module that imports `openai`.

Every SDK failure becomes one of the core's errors here, in one place, with
text a user can read. The SDK's own retries are off (`max_retries=0`): it
would retry timeouts too, and a retried timeout can be billed twice. We retry
only what is safe: 5xx/connection failures, a bounded number of times. A 429
rate_limit_exceeded is not retried here: it goes back to the service as
RateLimited, with what OpenAI said of its limit, and the job waits its turn
in the paced queue (core/pacer.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from dataclasses import dataclass, replace
from typing import Any, Awaitable, Callable, Coroutine, Protocol, Sequence, TypeVar

import openai
from openai import AsyncOpenAI

from core import messages
from core.config import Config
from core.errors import (
    InvalidRequest,
    ModelShutDown,
    ModelTimeout,
    NotAllowed,
    OutOfCredit,
    PolicyBlocked,
    ProviderError,
    RateLimited,
    ServiceUnavailable,
)
from core.loop_thread import LoopThread
from core.models import ImageOptions, InputImage, Usage
from core.rate_limits import from_headers, from_rate_limit_error

T = TypeVar("T")

POLICY_CODES = ("moderation_blocked", "content_policy_violation")


@dataclass(frozen=True)
class ProviderResult:
    images: tuple[bytes, ...]
    usage: Usage
    model: str
    attempts: int
    output_format: str
    limit_seen: int | None = None  # images per minute, when the answer's headers said


@dataclass(frozen=True)
class BatchStatus:
    """One Batch API batch as `batches.retrieve` reports it."""

    batch_id: str
    status: str  # validating, in_progress, finalizing, completed, failed, expired, cancelling, cancelled
    output_file_id: str | None
    error_file_id: str | None
    completed: int = 0
    failed: int = 0
    total: int = 0


class BatchAPI(Protocol):
    """The Batch API, for relax mode (core/relax.py)."""

    def generation_body(self, *, model: str, prompt: str, options: ImageOptions, user_tag: str) -> dict[str, Any]: ...

    async def upload_batch_input(self, filename: str, data: bytes) -> str: ...

    async def create_batch(self, input_file_id: str, *, endpoint: str, metadata: dict[str, str]) -> BatchStatus: ...

    async def retrieve_batch(self, batch_id: str) -> BatchStatus: ...

    async def download_file(self, file_id: str, path: str) -> int: ...


class ImageProvider(Protocol):
    async def generate(self, *, model: str, prompt: str, options: ImageOptions, user_tag: str) -> ProviderResult: ...

    async def edit(
        self,
        *,
        model: str,
        prompt: str,
        options: ImageOptions,
        images: Sequence[InputImage],
        mask: InputImage | None,
        user_tag: str,
    ) -> ProviderResult: ...

    async def check_model(self, model: str) -> str | None: ...

    async def close(self) -> None: ...


def make_client(api_key: str, *, base_url: str | None, timeout_seconds: float) -> AsyncOpenAI:
    """base_url None lets the SDK read OPENAI_BASE_URL itself."""
    return AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout_seconds)


def safety_identifier(requester_key: str) -> str:
    """OpenAI asks for a stable per-user id to act on abuse without banning
    the whole key; a hash, so no platform user id leaves the bot."""
    return hashlib.sha256(requester_key.encode()).hexdigest()[:32]


class OpenAIProvider:
    def __init__(
        self,
        client: AsyncOpenAI,
        config: Config,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.config = config
        self._sleep = sleep
        self._thread: LoopThread | None = None

    async def _on_thread(self, coro: Coroutine[Any, Any, T]) -> T:
        """Every use of the client happens on its own loop thread (see core.loop_thread)."""
        if self._thread is None:
            self._thread = LoopThread("imaginebot-openai")
        return await self._thread.run(coro)

    async def generate(self, *, model: str, prompt: str, options: ImageOptions, user_tag: str) -> ProviderResult:
        params = self._common_params(model, prompt, options, user_tag)
        return await self._on_thread(self._call(model, options, lambda: self.client.images.with_raw_response.generate(**params)))

    async def edit(
        self,
        *,
        model: str,
        prompt: str,
        options: ImageOptions,
        images: Sequence[InputImage],
        mask: InputImage | None,
        user_tag: str,
    ) -> ProviderResult:
        params = self._common_params(model, prompt, options, user_tag)
        # Always (filename, bytes, mime): bare bytes go out as
        # application/octet-stream, which the real API rejects.
        params["image"] = [(im.filename, im.data, im.mime) for im in images]
        if mask is not None:
            params["mask"] = (mask.filename, mask.data, mask.mime)
        return await self._on_thread(self._call(model, options, lambda: self.client.images.with_raw_response.edit(**params)))

    async def check_model(self, model: str) -> str | None:
        """Cheap access check (no image is made): the model's `shutdown_date`
        ("YYYY-MM-DD", or None when none is announced)."""
        try:
            found = await self._on_thread(self.client.models.retrieve(model))
        except openai.APIError as e:
            raise translate(e, timeout_seconds=self.config.openai.timeout_seconds) from None
        return found.shutdown_date

    # -- the Batch API (relax mode) ---------------------------------------------

    def generation_body(self, *, model: str, prompt: str, options: ImageOptions, user_tag: str) -> dict[str, Any]:
        """One batch line's body: the same JSON as images.generate sends."""
        return self._common_params(model, prompt, options, user_tag)

    async def upload_batch_input(self, filename: str, data: bytes) -> str:
        """files.create(purpose="batch"): the JSONL input; returns its file id."""
        created = await self._batch_call(self.client.files.create(file=(filename, data, "application/jsonl"), purpose="batch"))
        return str(created.id)

    async def create_batch(self, input_file_id: str, *, endpoint: str, metadata: dict[str, str]) -> BatchStatus:
        batch = await self._batch_call(
            self.client.batches.create(
                input_file_id=input_file_id, endpoint=endpoint, completion_window="24h", metadata=metadata  # type: ignore[arg-type]
            )
        )
        return _batch_status(batch)

    async def retrieve_batch(self, batch_id: str) -> BatchStatus:
        return _batch_status(await self._batch_call(self.client.batches.retrieve(batch_id)))

    async def download_file(self, file_id: str, path: str) -> int:
        """files.content(id), streamed into `path` chunk by chunk (an output
        file of a thousand images is hundreds of MB: never held whole). Bytes written."""

        async def stream() -> int:
            written = 0
            async with self.client.files.with_streaming_response.content(file_id) as response:
                with open(path, "wb") as out:
                    async for chunk in response.iter_bytes(1 << 20):
                        out.write(chunk)
                        written += len(chunk)
            return written

        return await self._batch_call(stream())

    async def _batch_call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await self._on_thread(coro)
        except openai.APIError as e:
            raise translate(e, timeout_seconds=self.config.openai.timeout_seconds) from None

    async def close(self) -> None:
        if self._thread is None:
            await self.client.close()
            return
        await self._thread.run(self.client.close())
        self._thread.stop()
        self._thread = None

    def _shut_down(self, model: str, options: ImageOptions) -> ModelShutDown:
        """404 on an image call: the model is gone (model_not_found), e.g.
        shut down since the last daily check. Said in plain words."""
        info = self.config.models.get(model)
        transparent = options.background == "transparent"
        text = messages.model_shut_down(model, "", info.replacement if info else "", transparent=transparent)
        return ModelShutDown(text, model=model)

    def _common_params(self, model: str, prompt: str, options: ImageOptions, user_tag: str) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "n": options.n,
            "size": options.size,
            "quality": options.quality,
            "output_format": options.format,
            "safety_identifier": user_tag,
        }
        if self.config.openai.moderation != "auto":
            params["moderation"] = self.config.openai.moderation
        if options.background != "auto":
            params["background"] = options.background
        if options.compression is not None:
            params["output_compression"] = options.compression
        return params

    async def _call(self, model: str, options: ImageOptions, call: Callable[[], Awaitable[Any]]) -> ProviderResult:
        cfg = self.config.openai
        server_retries = 0
        attempts = 0
        while True:
            attempts += 1
            try:
                raw = await call()
            except openai.APIError as e:
                error = translate(e, timeout_seconds=cfg.timeout_seconds)
                if isinstance(e, openai.NotFoundError):
                    error = self._shut_down(model, options)
                error.attempts = attempts
                if isinstance(error, ServiceUnavailable) and server_retries < cfg.server_error_retries:
                    server_retries += 1
                    await self._sleep(1.0 * server_retries)
                    continue
                raise error from None
            result = _result(raw.parse(), model, options, attempts)
            limit = from_headers(raw.headers).limit
            return replace(result, limit_seen=limit) if limit else result


def _batch_status(batch: Any) -> BatchStatus:
    counts = getattr(batch, "request_counts", None)
    return BatchStatus(
        batch_id=batch.id,
        status=batch.status,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        completed=int(getattr(counts, "completed", 0) or 0),
        failed=int(getattr(counts, "failed", 0) or 0),
        total=int(getattr(counts, "total", 0) or 0),
    )


def usage_from_json(u: Any) -> Usage:
    """A batch output line's usage (plain JSON, the images response's shape)."""
    if not isinstance(u, dict):
        return Usage()
    details_in = u.get("input_tokens_details") or {}
    details_out = u.get("output_tokens_details")
    text_in, image_in = details_in.get("text_tokens"), details_in.get("image_tokens")
    if text_in is None and image_in is None:
        text_in, image_in = u.get("input_tokens", 0), 0
    if isinstance(details_out, dict):
        image_out, text_out = details_out.get("image_tokens", 0), details_out.get("text_tokens", 0)
    else:
        image_out, text_out = u.get("output_tokens", 0), 0
    return Usage(input_text_tokens=int(text_in or 0), input_image_tokens=int(image_in or 0),
                 output_image_tokens=int(image_out or 0), output_text_tokens=int(text_out or 0))  # fmt: skip


def _result(response: Any, model: str, options: ImageOptions, attempts: int) -> ProviderResult:
    images = tuple(base64.b64decode(d.b64_json) for d in (response.data or []) if getattr(d, "b64_json", None))
    if not images:
        raise ServiceUnavailable(messages.unavailable())
    return ProviderResult(
        images=images,
        usage=_usage(getattr(response, "usage", None)),
        model=model,
        attempts=attempts,
        output_format=getattr(response, "output_format", None) or options.format,
    )


def _usage(u: Any) -> Usage:
    """Read what openai 3.57's ImagesResponse.usage defines: input_tokens with
    input_tokens_details {text_tokens, image_tokens}, output_tokens with the
    optional output_tokens_details {image_tokens, text_tokens}. No cached counts."""
    if u is None:
        return Usage()
    details_in = getattr(u, "input_tokens_details", None)
    details_out = getattr(u, "output_tokens_details", None)
    text_in = getattr(details_in, "text_tokens", None)
    image_in = getattr(details_in, "image_tokens", None)
    if text_in is None and image_in is None:
        text_in, image_in = getattr(u, "input_tokens", 0) or 0, 0
    if details_out is not None:
        image_out = getattr(details_out, "image_tokens", 0) or 0
        text_out = getattr(details_out, "text_tokens", 0) or 0
    else:
        image_out, text_out = getattr(u, "output_tokens", 0) or 0, 0
    return Usage(
        input_text_tokens=int(text_in or 0),
        input_image_tokens=int(image_in or 0),
        output_image_tokens=int(image_out),
        output_text_tokens=int(text_out),
    )


def _body(e: openai.APIError) -> dict[str, Any]:
    return e.body if isinstance(e.body, dict) else {}


def _reason(e: openai.APIError) -> str:
    """The API's own explanation, without the SDK's "Error code: 400 - {...}" wrapping."""
    message = _body(e).get("message")
    text = message if isinstance(message, str) and message else "the request was not valid."
    return text if text.endswith((".", "!", "?")) else text + "."


def translate(e: openai.APIError, *, timeout_seconds: float) -> ProviderError | PolicyBlocked:
    """One SDK exception → one core error, with the request and the cause as
    its operator `detail`."""
    error = _translate(e, timeout_seconds=timeout_seconds)
    error.detail = operator_detail(e)
    return error


def operator_detail(e: openai.APIError) -> str:
    """"POST http://host/v1/images/generations: HTTP 404: Invalid URL" — what an
    operator needs to fix a setup (no key or body is included)."""
    request = getattr(e, "request", None)
    where = f"{request.method} {request.url}" if request is not None else "OpenAI"
    if isinstance(e, openai.APIStatusError):
        return f"{where}: HTTP {e.status_code}: {_reason(e)}"
    cause = e.__cause__ or e.__context__
    return f"{where}: {type(cause or e).__name__}: {cause or e}"


def _translate(e: openai.APIError, *, timeout_seconds: float) -> ProviderError | PolicyBlocked:
    """Reads `e.code` and `e.body`, never `str(e)`."""
    code = getattr(e, "code", None)
    if isinstance(e, openai.APITimeoutError):
        return ModelTimeout(messages.timed_out(timeout_seconds))
    if isinstance(e, openai.APIConnectionError):
        return ServiceUnavailable(messages.unavailable())
    if code in POLICY_CODES:
        details = _body(e).get("moderation_details") or {}
        stage = details.get("moderation_stage") or "input"
        categories = tuple(str(c) for c in details.get("categories") or ())
        return PolicyBlocked(messages.policy_blocked(stage, categories, charged=False), stage=stage, categories=categories)
    if isinstance(e, openai.RateLimitError):
        if code == "insufficient_quota" or _body(e).get("type") == "insufficient_quota":
            return OutOfCredit(messages.out_of_credit())
        response = getattr(e, "response", None)
        headers = response.headers if response is not None else {}
        info = from_rate_limit_error(headers, str(_body(e).get("message") or ""))
        return RateLimited(messages.rate_limited(), limit=info.limit, retry_after=info.retry_after)
    if isinstance(e, (openai.AuthenticationError, openai.PermissionDeniedError)):
        verify = "verif" in str(_body(e).get("message", "")).lower()
        return NotAllowed(messages.not_allowed(verification=verify))
    if isinstance(e, openai.NotFoundError):
        return NotAllowed(messages.model_unavailable())
    if isinstance(e, openai.BadRequestError) or (isinstance(e, openai.APIStatusError) and e.status_code in (400, 413, 422)):
        return InvalidRequest(messages.invalid_request(_reason(e)))
    return ServiceUnavailable(messages.unavailable())

