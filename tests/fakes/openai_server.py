"""A faithful local fake of the OpenAI Images API (gpt-image-2 and friends).

The real ``openai.AsyncOpenAI`` SDK talks to it over loopback HTTP, so tests
exercise the exact bytes the bot sends and the exact error objects the SDK
raises (``BadRequestError.code``, ``.body`` ...), without mocks and without
spending money. The contract it follows is SPEC.md section 1.

In-process use::

    async with FakeOpenAI() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test-fake")
        await client.images.generate(model="gpt-image-2", prompt="a fox")
        assert fake.calls("/images/generations")[0].json["prompt"] == "a fox"

Standalone (end-to-end tests with the bot in another process)::

    python -m tests.fakes.openai_server --port 8099
    # prints "listening http://127.0.0.1:8099/v1"; control it over HTTP:
    #   GET  /_fake/requests            recorded requests as JSON (files: size + sha256)
    #   POST /_fake/reset               forget requests and *_ONCE state
    #   POST /_fake/config {"latency": 2.5, "today": "2026-12-02", "shutdown_dates": {"gpt-image-2.6-flare": "2026-12-02"}}
    #   POST /_fake/fail_next {"trigger": "RATE_LIMIT", "times": 1}
    #   POST /_fake/config {"rate_limit": {"images": 20, "window": 6, "headers": false}}   (null = off)
    #   GET  /_fake/rate_limit          what the rate-limit mode admitted and refused

Wire format of edits, as sent by openai 3.57 (checked against the real SDK,
see ``_files.py`` / ``_utils.extract_files`` with ``array_format="brackets"``):
a *list* passed as ``image=`` becomes one part per file named ``image[]``; a
*single* file becomes one part named ``image``. Both are accepted. Scalar
arguments become plain form fields (no filename, no content type, UTF-8). A
``(filename, bytes, mime)`` tuple keeps its mime type; bare ``bytes`` go out as
``filename="upload"`` with ``Content-Type: application/octet-stream``, which
the real API (and so this fake) rejects.

Trigger substrings in the prompt (case-sensitive) provoke the failures the bot
must handle; see ``TRIGGERS``. Validation errors win over triggers, like the
real API which validates before moderating or generating.

API keys: any ``Authorization: Bearer <key>`` is accepted, except a missing one
(401 ``invalid_api_key``), a key containing "invalid" (401 "Incorrect API key
provided"), and a key containing "unverified" (403 "Your organization must be
verified to use the model ..." on image endpoints; ``/v1/models`` still works,
as it does for a real unverified organization).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import functools
import hashlib
import io
import json
import math
import re
import signal
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final

from aiohttp import BodyPartReader, web
from PIL import Image, ImageDraw
from tests.fakes.loopback import serve_on_loopback
from tests.fakes.openai_batches import FakeBatchAPI
from tests.fakes.rate_window import RateWindow

# --------------------------------------------------------------------------
# Model facts
# --------------------------------------------------------------------------

#: Image models the fake knows. The dated snapshots are aliases.
GPT_IMAGE_2_MODELS: Final = frozenset({"gpt-image-2", "gpt-image-2-2026-04-21"})
#: gpt-image-2.5 (2026-09-08) and 2.6 (2026-11-04): transparency and the
#: xhigh/max qualities (SPEC §1), gpt-image-2's sizes and token counts.
NEWER_MODELS: Final = frozenset(
    {
        "gpt-image-2.5-flare", "gpt-image-2.5-flare-2026-09-08", "gpt-image-2.5-sunburst",
        "gpt-image-2.5-sunburst-2026-09-08", "gpt-image-2.6-flare", "gpt-image-2.6-sunburst",
    }
)  # fmt: skip
LEGACY_MODELS: Final = frozenset({"gpt-image-1.5", "gpt-image-1", "gpt-image-1-mini", "chatgpt-image-latest"})
IMAGE_MODELS: Final = frozenset(GPT_IMAGE_2_MODELS | NEWER_MODELS | LEGACY_MODELS)
#: Models taking any valid WxH (the others only LEGACY_SIZES).
FREE_SIZE_MODELS: Final = GPT_IMAGE_2_MODELS | NEWER_MODELS
_MODEL_CREATED: Final = 1_776_729_600  # a fixed, plausible unix time for /v1/models
#: OpenAI's deprecations page (SPEC §1): what GET /v1/models reports as
#: shutdown_date. From that day on (``FakeOpenAI.today``) image calls to the
#: model answer 404 model_not_found. Tests may change a copy per fake.
SHUTDOWN_DATES: Final[Mapping[str, str]] = {
    "gpt-image-1.5": "2026-12-01",
    "gpt-image-1-mini": "2026-12-01",
    "chatgpt-image-latest": "2026-12-01",
    "gpt-image-1": "2026-10-23",
}

#: Older models accept only these sizes; gpt-image-2 and newer accept any valid WxH.
LEGACY_SIZES: Final = ("1024x1024", "1024x1536", "1536x1024", "auto")
QUALITIES: Final = ("low", "medium", "high", "xhigh", "max", "auto")
NEWER_QUALITIES: Final = ("xhigh", "max")  # only NEWER_MODELS take these
OUTPUT_FORMATS: Final = ("png", "jpeg", "webp")
BACKGROUNDS: Final = ("transparent", "opaque", "auto")
MODERATIONS: Final = ("low", "auto")
INPUT_FIDELITIES: Final = ("high", "low")
ACCEPTED_IMAGE_MIMES: Final = ("image/jpeg", "image/png", "image/webp")

MAX_PROMPT_CHARS: Final = 32_000
MAX_N: Final = 10
MAX_EDIT_IMAGES: Final = 16
MAX_IMAGE_BYTES: Final = 50 * 1024 * 1024
MAX_MASK_BYTES: Final = 4 * 1024 * 1024
MIN_PIXELS: Final = 655_360
MAX_PIXELS: Final = 8_294_400
MAX_EDGE: Final = 3840
MAX_ASPECT: Final = 3.0

#: Output image tokens per 1024x1024 image, by quality ("auto" bills as medium).
#: gpt-image-2 numbers are the published ones (SPEC §1); the older models use
#: the gpt-image-1 table, which is all the bot needs to tell them apart.
_BASE_OUTPUT_TOKENS: Final[Mapping[str, Mapping[str, int]]] = {
    # xhigh/max have no published counts: twice and four times high here.
    "gpt-image-2": {"low": 196, "medium": 1756, "high": 7024, "xhigh": 14_048, "max": 28_096},
    "legacy": {"low": 272, "medium": 1056, "high": 4160},
}
#: Known size factors relative to 1024x1024 for gpt-image-2 (SPEC §1:
#: 1536x1024 high = 5,488, 2048x2048 high = 14,272); other sizes scale with
#: sqrt(pixels / 1024²), which is close enough for cost tests.
_GPT2_SIZE_FACTORS: Final[Mapping[tuple[int, int], float]] = {
    (1024, 1024): 1.0,
    (1536, 1024): 5488 / 7024,
    (1024, 1536): 5488 / 7024,
    (2048, 2048): 14272 / 7024,
}
INPUT_IMAGE_TOKENS_PER_IMAGE: Final = 1024

#: Prompt substrings that provoke failures (``SLOW:<seconds>`` takes a number).
TRIGGERS: Final = (
    "BLOCK_INPUT",
    "BLOCK_OUTPUT",
    "BLOCK_LEGACY",
    "RATE_LIMIT",
    "RATE_LIMIT_ONCE",
    "NO_CREDIT",
    "SERVER_ERROR",
    "SERVER_ERROR_ONCE",
    "SLOW:<seconds>",
)
#: Triggers usable with ``FakeOpenAI.fail_next`` (the *_ONCE and SLOW forms
#: make no sense there: fail_next is already "once", latency is separate).
_FAILABLE: Final = ("BLOCK_INPUT", "BLOCK_OUTPUT", "BLOCK_LEGACY", "RATE_LIMIT", "NO_CREDIT", "SERVER_ERROR")
_SLOW_RE: Final = re.compile(r"SLOW:(\d+(?:\.\d+)?)")
_SIZE_RE: Final = re.compile(r"^(\d+)x(\d+)$")

_GEN_PARAMS: Final = frozenset(
    {
        "model", "prompt", "n", "size", "quality", "background", "output_format", "output_compression",
        "moderation", "user", "safety_identifier", "stream", "partial_images", "response_format",
    }
)  # fmt: skip
_EDIT_PARAMS: Final = _GEN_PARAMS | {"input_fidelity"}
_EDIT_FILE_PARTS: Final = frozenset({"image", "image[]", "mask"})

# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedFile:
    """One file part of a multipart request, exactly as received."""

    name: str  # form part name: "image[]", "image" or "mask"
    filename: str | None
    content_type: str | None  # as sent, parameters included
    data: bytes


@dataclass
class RecordedRequest:
    """One request that reached the fake (recorded before any validation)."""

    method: str
    path: str  # e.g. "/v1/images/generations"
    headers: dict[str, str]  # keys lower-cased, so r.headers["authorization"] works
    json: dict[str, Any] | None  # parsed JSON object body, else None
    form: dict[str, str]  # multipart text fields (UTF-8 decoded)
    files: list[RecordedFile]
    body: bytes = b""  # raw body of non-multipart requests (byte-exact checks)
    status: int | None = None  # HTTP status the fake answered; None while in flight

    @property
    def prompt(self) -> str | None:
        """The prompt, whichever endpoint carried it."""
        value = self.json.get("prompt") if self.json is not None else None
        return value if isinstance(value, str) else self.form.get("prompt")

    def to_jsonable(self) -> dict[str, Any]:
        """A JSON-safe summary for the standalone ``/_fake/requests`` endpoint."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": self.headers,
            "json": self.json,
            "form": self.form,
            "files": [
                {
                    "name": f.name,
                    "filename": f.filename,
                    "content_type": f.content_type,
                    "size": len(f.data),
                    "sha256": hashlib.sha256(f.data).hexdigest(),
                }
                for f in self.files
            ],
            "body": self.body.decode("utf-8", errors="replace"),
            "status": self.status,
        }


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


class ApiError(Exception):
    """An OpenAI-shaped error answer: ``{"error": {message, type, param, code, ...}}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def payload(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
                **self.extra,
            }
        }


def _invalid(param: str, message: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, param=param, code=code)


def _one_of(values: tuple[str, ...]) -> str:
    quoted = [f"'{v}'" for v in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}"


def _trigger_error(trigger: str, *, model: str, n: int, request_id: str) -> ApiError:
    """The error the real API gives for the failure a trigger stands for."""
    if trigger in ("BLOCK_INPUT", "BLOCK_OUTPUT"):
        stage, category = ("input", "violence") if trigger == "BLOCK_INPUT" else ("output", "sexual")
        return ApiError(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, contact us at "
            f"help.openai.com and include the request ID {request_id}. safety_violations=[{category}].",
            type="image_generation_user_error",
            code="moderation_blocked",
            extra={"moderation_details": {"moderation_stage": stage, "categories": [category]}},
        )
    if trigger == "BLOCK_LEGACY":
        return ApiError(
            400,
            "Your request was rejected as a result of our safety system. Your prompt may contain text that is "
            "not allowed by our safety system.",
            code="content_policy_violation",
        )
    if trigger == "RATE_LIMIT":
        return ApiError(
            429,
            f"Rate limit reached for {model} in organization org-fake on images per min (IPM): Limit 5, Used 5, "
            f"Requested {n}. Please try again in 1s. Visit https://platform.openai.com/account/rate-limits to "
            "learn more.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": "1"},
        )
    if trigger == "NO_CREDIT":
        # Faithful: no x-should-retry header, so the SDK's default retries
        # *will* retry this; the bot must not (SPEC §1).
        return ApiError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information "
            "on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    if trigger == "SERVER_ERROR":
        return ApiError(
            500,
            "The server had an error while processing your request. Sorry about that!",
            type="server_error",
        )
    raise ValueError(f"unknown trigger {trigger!r}")


# --------------------------------------------------------------------------
# Parameter validation (pure functions: params in, normalized values or ApiError out)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageParams:
    """Validated, normalized parameters of one generation or edit."""

    model: str
    prompt: str
    n: int
    size: tuple[int, int] | None  # None = "auto"
    quality: str  # low/medium/high/auto as asked
    output_format: str
    output_compression: int  # 0..100, 100 when not given
    background: str  # transparent/opaque/auto as asked
    safety_identifier: str | None


def _check_str(params: Mapping[str, Any], name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(name, f"Invalid type for '{name}': expected a string, but got {_json_type(value)} instead.",
                       "invalid_type")  # fmt: skip
    return value


def _check_int(params: Mapping[str, Any], name: str, *, from_form: bool) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if from_form and isinstance(value, str):
        # Multipart carries every scalar as text; the API parses it.
        try:
            return int(value.strip())
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise _invalid(name, f"Invalid type for '{name}': expected an integer, but got {_json_type(value)} instead.",
                   "invalid_type")  # fmt: skip


def _check_choice(params: Mapping[str, Any], name: str, choices: tuple[str, ...]) -> str | None:
    value = _check_str(params, name)
    if value is not None and value not in choices:
        raise _invalid(name, f"Invalid value: '{value}'. Supported values are: {_one_of(choices)}.")
    return value


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "null"


def parse_size(size: str | None, model: str) -> tuple[int, int] | None:
    """Validate a size for a model; None means "auto"."""
    if size is None or size == "auto":
        return None
    if model not in FREE_SIZE_MODELS:
        if size not in LEGACY_SIZES:
            raise _invalid("size", f"Invalid value: '{size}'. Supported values are: {_one_of(LEGACY_SIZES)}.")
    match = _SIZE_RE.match(size)
    if match is None:
        raise _invalid("size", f"Invalid size '{size}'. Expected 'auto' or 'WIDTHxHEIGHT', e.g. '1536x1024'.")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0 or width % 16 or height % 16:
        raise _invalid("size", f"Invalid size '{size}'. Width and height must both be divisible by 16.")
    if max(width, height) > MAX_EDGE:
        raise _invalid("size", f"Invalid size '{size}'. The longest edge must be at most {MAX_EDGE} pixels.")
    if max(width, height) / min(width, height) > MAX_ASPECT:
        raise _invalid("size", f"Invalid size '{size}'. The aspect ratio must be between 1:3 and 3:1.")
    pixels = width * height
    if not MIN_PIXELS <= pixels <= MAX_PIXELS:
        raise _invalid(
            "size",
            f"Invalid size '{size}'. The total number of pixels must be between {MIN_PIXELS:,} and "
            f"{MAX_PIXELS:,}, but got {pixels:,}.",
        )
    return width, height


def validate_params(params: Mapping[str, Any], *, edit: bool) -> ImageParams:
    """Validate like the real endpoint, raising the first 400 it would give."""
    allowed = _EDIT_PARAMS if edit else _GEN_PARAMS
    for key in params:
        if key not in allowed:
            raise _invalid(key, f"Unknown parameter: '{key}'.", "unknown_parameter")

    model = _check_str(params, "model") or "gpt-image-2"
    if model not in IMAGE_MODELS:
        raise _invalid(
            "model",
            f"Invalid value: '{model}'. Supported values are: {_one_of(tuple(sorted(IMAGE_MODELS)))}.",
        )

    prompt = _check_str(params, "prompt")
    if prompt is None:
        raise _invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
    if not prompt:
        raise _invalid(
            "prompt",
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead.",
        )
    if len(prompt) > MAX_PROMPT_CHARS:
        raise _invalid(
            "prompt",
            f"Invalid 'prompt': string too long. Expected a string with maximum length {MAX_PROMPT_CHARS}, but "
            f"got a string with length {len(prompt)} instead.",
            "string_above_max_length",
        )

    n = _check_int(params, "n", from_form=edit)
    n = 1 if n is None else n
    if not 1 <= n <= MAX_N:
        raise _invalid("n", f"Invalid 'n': expected a value between 1 and {MAX_N}, but got {n} instead.")

    size = parse_size(_check_str(params, "size"), model)
    quality = _check_choice(params, "quality", QUALITIES) or "auto"
    if quality in NEWER_QUALITIES and model not in NEWER_MODELS:
        supported = tuple(q for q in QUALITIES if q not in NEWER_QUALITIES)
        raise _invalid("quality", f"Invalid value: '{quality}'. Supported values for {model} are: {_one_of(supported)}.")
    output_format = _check_choice(params, "output_format", OUTPUT_FORMATS) or "png"

    compression = _check_int(params, "output_compression", from_form=edit)
    if compression is not None:
        if not 0 <= compression <= 100:
            raise _invalid(
                "output_compression",
                f"Invalid 'output_compression': expected a value between 0 and 100, but got {compression} instead.",
            )
        if output_format == "png" and compression < 100:
            raise _invalid(
                "output_compression",
                "Compression less than 100 is not supported for PNG output format. Use 'jpeg' or 'webp'.",
            )

    background = _check_choice(params, "background", BACKGROUNDS) or "auto"
    if background == "transparent":
        if model in GPT_IMAGE_2_MODELS:
            raise _invalid("background", f"Transparent background is not supported for {model}.")
        if output_format == "jpeg":
            raise _invalid(
                "background",
                "Transparent background is not supported for the 'jpeg' output format. Use 'png' or 'webp'.",
            )

    _check_choice(params, "moderation", MODERATIONS)
    if params.get("stream") not in (None, False, "false"):
        raise _invalid("stream", f"Streaming is not supported for {model}.")
    partial = _check_int(params, "partial_images", from_form=edit)
    if partial:
        raise _invalid("partial_images", f"Partial images are not supported for {model}.")
    response_format = _check_str(params, "response_format")
    if response_format not in (None, "b64_json"):
        raise _invalid(
            "response_format",
            f"Invalid value: '{response_format}'. GPT image models always return 'b64_json'.",
        )
    if edit:
        fidelity = _check_choice(params, "input_fidelity", INPUT_FIDELITIES)
        if fidelity is not None and model in GPT_IMAGE_2_MODELS:
            raise _invalid("input_fidelity", f"input_fidelity is not supported for {model}; omit this parameter.")
        if fidelity == "high" and model == "gpt-image-1-mini":
            raise _invalid("input_fidelity", "gpt-image-1-mini supports only input_fidelity 'low'.")

    safety_identifier = _check_str(params, "safety_identifier") or _check_str(params, "user") or None
    return ImageParams(
        model=model,
        prompt=prompt,
        n=n,
        size=size,
        quality=quality,
        output_format=output_format,
        output_compression=100 if compression is None else compression,
        background=background,
        safety_identifier=safety_identifier,
    )


def _validate_edit_files(files: list[RecordedFile]) -> tuple[list[Image.Image], Image.Image | None]:
    """Check image[] / image / mask parts; return the opened (header-only) images."""
    image_parts = [f for f in files if f.name in ("image", "image[]")]
    mask_parts = [f for f in files if f.name == "mask"]
    for f in files:
        if f.name not in _EDIT_FILE_PARTS:
            raise _invalid(f.name, f"Unknown parameter: '{f.name}'.", "unknown_parameter")
    if not image_parts:
        raise _invalid("image", "Missing required parameter: 'image'.", "missing_required_parameter")
    if len(image_parts) > MAX_EDIT_IMAGES:
        raise _invalid(
            "image",
            f"Invalid 'image': too many images. Expected at most {MAX_EDIT_IMAGES} images, but got "
            f"{len(image_parts)} instead.",
        )
    if len(mask_parts) > 1:
        raise _invalid("mask", "Invalid 'mask': expected a single file.")

    opened: list[Image.Image] = []
    for index, part in enumerate(image_parts, start=1):
        _check_mime(part, "image")
        if len(part.data) > MAX_IMAGE_BYTES:
            raise _invalid("image", f"Invalid 'image': image {index} is larger than 50MB.")
        opened.append(_open_image(part.data, "image", f"Invalid image file or mode for image {index}, please "
                                  "check your image file."))  # fmt: skip

    mask: Image.Image | None = None
    if mask_parts:
        part = mask_parts[0]
        _check_mime(part, "mask")
        if len(part.data) > MAX_MASK_BYTES:
            raise _invalid("mask", "Invalid 'mask': the mask must be less than 4MB.")
        mask = _open_image(part.data, "mask", "Invalid mask image file, please check your mask file.")
        if mask.format != "PNG":
            raise _invalid("mask", f"Invalid 'mask': the mask must be a PNG file, got {mask.format}.")
        has_alpha = mask.mode in ("RGBA", "LA", "PA") or "transparency" in mask.info
        if not has_alpha:
            raise _invalid("mask", f"Invalid 'mask': the mask must have an alpha channel, got mode {mask.mode}.")
        first = opened[0]
        if mask.size != first.size:
            raise _invalid(
                "mask",
                f"Invalid 'mask': mask size ({mask.width}x{mask.height}) does not match image size "
                f"({first.width}x{first.height}).",
            )
    return opened, mask


def _check_mime(part: RecordedFile, param: str) -> None:
    mime = (part.content_type or "").split(";", 1)[0].strip().lower()
    if mime not in ACCEPTED_IMAGE_MIMES:
        shown = part.content_type or ""
        raise _invalid(
            param,
            f"Invalid file '{param}': unsupported mimetype ('{shown}'). Supported file formats are "
            "'image/jpeg', 'image/png', and 'image/webp'.",
        )
    if param == "mask" and mime != "image/png":
        raise _invalid("mask", f"Invalid 'mask': the mask must be a PNG file, got mimetype '{mime}'.")


def _open_image(data: bytes, param: str, message: str) -> Image.Image:
    # Image.open only parses the header (and, for PNG, the chunks before IDAT,
    # which include tRNS), so this stays cheap for big uploads.
    try:
        image = Image.open(io.BytesIO(data))
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for junk
        raise _invalid(param, message, "invalid_image_file") from exc
    if image.format not in ("PNG", "JPEG", "WEBP"):
        raise _invalid(param, message, "invalid_image_file")
    return image


# --------------------------------------------------------------------------
# Usage and image rendering
# --------------------------------------------------------------------------


def output_tokens_per_image(model: str, quality: str, width: int, height: int) -> int:
    """Output image tokens for one image (auto quality bills as medium)."""
    table = _BASE_OUTPUT_TOKENS["gpt-image-2" if model in FREE_SIZE_MODELS else "legacy"]
    base = table["medium" if quality == "auto" else quality]
    factor = _GPT2_SIZE_FACTORS.get((width, height)) if model in FREE_SIZE_MODELS else None
    if factor is None:
        factor = math.sqrt(width * height / 1_048_576)
    return round(base * factor)


def make_usage(params: ImageParams, width: int, height: int, input_images: int) -> dict[str, Any]:
    text_tokens = len(params.prompt.encode("utf-8")) // 4 + 1
    image_in = INPUT_IMAGE_TOKENS_PER_IMAGE * input_images
    image_out = output_tokens_per_image(params.model, params.quality, width, height) * params.n
    return {
        "input_tokens": text_tokens + image_in,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": image_in},
        "output_tokens": image_out,
        "output_tokens_details": {"image_tokens": image_out, "text_tokens": 0},
        "total_tokens": text_tokens + image_in + image_out,
    }


@dataclass(frozen=True)
class _RenderKey:
    width: int
    height: int
    output_format: str
    compression: int
    transparent: bool
    seed: bytes  # 16 bytes of sha256(prompt, index): colors and mark position


def _render(key: _RenderKey) -> str:
    """Encode one real image and return it base64'd (runs in a worker thread).

    A solid fill plus one contrasting square keeps even 3840x2160 encodes in
    tens of milliseconds, while still giving each (prompt, index) a distinct,
    decodable picture.
    """
    s = key.seed
    fill = (s[0], s[1], s[2])
    mark = (255 - s[0], 255 - s[1], 255 - s[2])
    side = max(16, min(key.width, key.height) // 4)
    x = s[3] * (key.width - side) // 255
    y = s[4] * (key.height - side) // 255
    if key.transparent:
        # Real transparency: fully transparent background, opaque subject.
        image = Image.new("RGBA", (key.width, key.height), (*fill, 0))
        ImageDraw.Draw(image).rectangle((x, y, x + side - 1, y + side - 1), fill=(*mark, 255))
    else:
        image = Image.new("RGB", (key.width, key.height), fill)
        ImageDraw.Draw(image).rectangle((x, y, x + side - 1, y + side - 1), fill=mark)
    buf = io.BytesIO()
    if key.output_format == "png":
        image.save(buf, "PNG", compress_level=1)
    elif key.output_format == "jpeg":
        image.save(buf, "JPEG", quality=key.compression)
    else:
        image.save(buf, "WEBP", quality=key.compression, method=0)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class _RenderCache:
    """Small LRU of encoded images, keyed by everything that affects the bytes.

    Benchmarks fire hundreds of requests for the same few prompts at once;
    re-encoding identical pixels would make the fake, not the bot, the
    bottleneck. Entries are futures, so concurrent requests for one image share
    a single render (in a worker thread, off the event loop). Only touched from
    the event loop, so no lock.
    """

    def __init__(self, maxsize: int = 64) -> None:
        self._items: OrderedDict[_RenderKey, asyncio.Future[str]] = OrderedDict()
        self._maxsize = maxsize

    async def get(self, keys: list[_RenderKey]) -> list[str]:
        futures: list[asyncio.Future[str]] = []
        for key in keys:
            future = self._items.get(key)
            if future is None:
                future = asyncio.ensure_future(asyncio.to_thread(_render, key))
                future.add_done_callback(functools.partial(self._forget_failed, key))
                self._items[key] = future
            else:
                self._items.move_to_end(key)
            futures.append(future)
        while len(self._items) > self._maxsize:
            self._items.popitem(last=False)  # awaiters keep their own reference
        # shield: one cancelled request (client gone) must not cancel a render
        # other requests are waiting for.
        return [await asyncio.shield(f) for f in futures]

    def _forget_failed(self, key: _RenderKey, future: asyncio.Future[str]) -> None:
        if (future.cancelled() or future.exception() is not None) and self._items.get(key) is future:
            del self._items[key]


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------

_REQUEST_ID: Final = web.RequestKey("request_id", str)
_Handler = Callable[[web.Request, RecordedRequest], Awaitable[web.Response]]


class FakeOpenAI(FakeBatchAPI):
    """Local fake of the OpenAI Images API; see the module docstring.

    Attributes worth knowing:
      base_url       "http://127.0.0.1:PORT/v1" once started (pass to AsyncOpenAI)
      latency        seconds added to every /v1 request; settable at runtime
      requests       every request received (all but /_fake/ control calls), in arrival order
      in_flight      image requests being answered right now
      max_in_flight  peak of in_flight since start/reset (checks concurrency caps)
      gate           an asyncio.Event every /v1 request waits for (None = no gate)
      today          the fake's date: from a model's shutdown_date on, its image calls 404
      shutdown_dates model -> "YYYY-MM-DD" (GET /v1/models), a copy of SHUTDOWN_DATES to change
      rate_limit     None, or a RateWindow (``limit_rate()``): N images per sliding window, then 429s
    """

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._seen_once: set[tuple[str, str]] = set()
        self._fail_queue: list[str] = []
        self._cache = _RenderCache()
        self._runner: web.AppRunner | None = None
        self.today = datetime.date.today()
        self.gate: asyncio.Event | None = None  # when set to an unset Event, requests wait for it
        self.shutdown_dates: dict[str, str] = dict(SHUTDOWN_DATES)
        self._init_batches()  # Files and Batches (tests/fakes/openai_batches.py)
        self.rate_limit: RateWindow | None = None

    # ---- lifecycle -------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    async def start(self) -> None:
        # client_max_size only bounds request.read() (JSON bodies); multipart
        # parts are streamed, and checked against the API's own 50MB limit.
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/images/generations", self._wrap(self._generations))
        app.router.add_post("/v1/images/edits", self._wrap(self._edits))
        app.router.add_get("/v1/models", self._wrap(self._list_models))
        app.router.add_get("/v1/models/{model}", self._wrap(self._get_model))
        self._add_batch_routes(app, self._wrap)
        app.router.add_get("/_fake/requests", self._admin_requests)
        app.router.add_post("/_fake/reset", self._admin_reset)
        app.router.add_post("/_fake/config", self._admin_config)
        app.router.add_post("/_fake/fail_next", self._admin_fail_next)
        app.router.add_get("/_fake/rate_limit", self._admin_rate_limit)
        app.router.add_route("*", "/{tail:.*}", self._wrap(self._not_found))
        # A short shutdown_timeout: stop() must not wait a minute on a SLOW
        # request a test abandoned. access_log=None keeps test output clean.
        # backlog well above the default 128: benchmarks open 200+ connections at once.
        self._runner, self.port = await serve_on_loopback(app, host=self.host, port=self.port, backlog=1024, shutdown_timeout=0.5)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ---- test helpers ----------------------------------------------------

    def calls(self, path_suffix: str) -> list[RecordedRequest]:
        """Recorded requests whose path ends with ``path_suffix`` (e.g. "/images/edits")."""
        return [r for r in self.requests if r.path.endswith(path_suffix)]

    def reset(self) -> None:
        """Forget recorded requests, *_ONCE memory, queued failures and the in-flight peak."""
        self.requests.clear()
        self._seen_once.clear()
        self._fail_queue.clear()
        self.max_in_flight = self.in_flight

    def limit_rate(self, images: int, window: float = 60.0, *, headers: bool = False) -> RateWindow:
        """Rate-limit mode: at most ``images`` images per sliding ``window``
        seconds, like an account's images-per-minute limit (see rate_window.py)."""
        self.rate_limit = RateWindow(images, window, headers)
        return self.rate_limit

    def fail_next(self, trigger: str, times: int = 1) -> None:
        """Make the next ``times`` valid image requests fail as ``trigger`` would,
        whatever their prompt (e.g. to fail an "Again" button click)."""
        if trigger not in _FAILABLE:
            raise ValueError(f"trigger must be one of {_FAILABLE}, not {trigger!r}")
        self._fail_queue.extend([trigger] * times)

    # ---- plumbing ----------------------------------------------------------

    def _wrap(self, handler: _Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Record, delay, run the handler, and turn ApiError into its JSON answer."""

        async def wrapped(request: web.Request) -> web.Response:
            request_id = f"req_{uuid.uuid4().hex}"
            request[_REQUEST_ID] = request_id
            started = time.monotonic()
            is_image = request.path.startswith("/v1/images/")
            if is_image:
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            record = RecordedRequest(request.method, request.path, {}, None, {}, [])
            self.requests.append(record)
            try:
                try:
                    await self._record(request, record)
                    if self.gate is not None:
                        await self.gate.wait()
                    if self.latency > 0:
                        await asyncio.sleep(self.latency)
                    response = await handler(request, record)
                except ApiError as err:
                    response = self._json(err.status, err.payload(), request_id, started, err.headers)
            finally:
                if is_image:
                    self.in_flight -= 1
            record.status = response.status
            return response

        return wrapped

    async def _record(self, request: web.Request, record: RecordedRequest) -> None:
        record.headers = {k.lower(): v for k, v in request.headers.items()}
        if request.content_type == "multipart/form-data":
            try:
                reader = await request.multipart()
                while (part := await reader.next()) is not None:
                    if not isinstance(part, BodyPartReader) or part.name is None:
                        continue
                    data = bytes(await part.read(decode=False))
                    content_type = part.headers.get("Content-Type")
                    # The SDK sends scalars as bare fields (no filename, no
                    # content type) and files with both; a part named like a
                    # file part is a file even if a client left the filename off.
                    if part.filename is not None or part.name in _EDIT_FILE_PARTS:
                        record.files.append(RecordedFile(part.name, part.filename, content_type, data))
                    else:
                        record.form[part.name] = data.decode("utf-8", errors="replace")
            except ValueError as exc:
                raise ApiError(400, f"Could not parse multipart form: {exc}") from exc
            return
        record.body = await request.read()
        if record.body:
            try:
                parsed = json.loads(record.body)
            except ValueError:
                return  # left as json=None; the handler answers 400
            if isinstance(parsed, dict):
                record.json = parsed

    def _json(
        self,
        status: int,
        payload: Mapping[str, Any],
        request_id: str,
        started: float,
        extra_headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        # Exactly "application/json" (web.json_response would add a charset),
        # plus the headers the SDK surfaces (e.request_id) or logs.
        headers = {
            "Content-Type": "application/json",
            "x-request-id": request_id,
            "openai-processing-ms": str(int((time.monotonic() - started) * 1000)),
            "openai-version": "2020-10-01",
            **(extra_headers or {}),
        }
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return web.Response(status=status, body=body, headers=headers)

    def _auth(self, record: RecordedRequest) -> str:
        header = record.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank "
                "username) if you're accessing the API from your browser and are prompted for a username and "
                "password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        if "invalid" in key:
            shown = key[:8] + "*" * max(0, len(key) - 12) + key[-4:]
            raise ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return key

    # ---- /v1 endpoints -----------------------------------------------------

    async def _generations(self, request: web.Request, record: RecordedRequest) -> web.Response:
        key = self._auth(record)
        if record.json is None:
            raise ApiError(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
                "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid "
                "JSON.)",
            )
        self._check_verified(key, record.json.get("model"))
        self._check_not_shut_down(record.json.get("model"))
        params = validate_params(record.json, edit=False)
        size = params.size or (1024, 1024)
        return await self._answer(request, params, size, input_images=0)

    async def _edits(self, request: web.Request, record: RecordedRequest) -> web.Response:
        key = self._auth(record)
        if not record.headers.get("content-type", "").startswith("multipart/form-data"):
            raise ApiError(400, "Invalid Content-Type header: expected multipart/form-data.")
        self._check_verified(key, record.form.get("model"))
        self._check_not_shut_down(record.form.get("model"))
        params = validate_params(record.form, edit=True)
        images, _mask = _validate_edit_files(record.files)
        size = params.size or _auto_edit_size(images[0])
        return await self._answer(request, params, size, input_images=len(images))

    async def _list_models(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)
        data = [self._model_object(m) for m in sorted(IMAGE_MODELS)]
        return self._json(200, {"object": "list", "data": data}, request[_REQUEST_ID], time.monotonic())

    async def _get_model(self, request: web.Request, record: RecordedRequest) -> web.Response:
        # The models endpoint does not check organization verification (the
        # real one lists gpt-image-2 to unverified orgs too); only image calls 403.
        self._auth(record)
        model = request.match_info["model"]
        if model not in IMAGE_MODELS:
            raise ApiError(
                404,
                f"The model '{model}' does not exist or you do not have access to it.",
                code="model_not_found",
            )
        return self._json(200, self._model_object(model), request[_REQUEST_ID], time.monotonic())

    async def _not_found(self, request: web.Request, record: RecordedRequest) -> web.Response:
        raise ApiError(404, f"Invalid URL ({request.method} {request.path})")

    def _model_object(self, model: str) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": _MODEL_CREATED, "owned_by": "openai",
                "shutdown_date": self.shutdown_dates.get(model)}  # fmt: skip

    def is_shut_down(self, model: str) -> bool:
        shutdown = self.shutdown_dates.get(model)
        return shutdown is not None and datetime.date.fromisoformat(shutdown) <= self.today

    def _check_not_shut_down(self, model: object) -> None:
        # The models endpoint still describes a shut-down model (with its
        # date); calls to it fail as the real API's do.
        if isinstance(model, str) and self.is_shut_down(model):
            raise ApiError(
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )

    def _check_verified(self, key: str, model: object) -> None:
        if "unverified" in key:
            name = model if isinstance(model, str) and model else "gpt-image-2"
            raise ApiError(
                403,
                f"Your organization must be verified to use the model `{name}`. Please go to: "
                "https://platform.openai.com/settings/organization/general and click on Verify Organization. "
                "If you just verified, it can take up to 15 minutes for access to propagate.",
                code=None,
            )

    async def _answer(
        self, request: web.Request, params: ImageParams, size: tuple[int, int], *, input_images: int
    ) -> web.Response:
        """Apply triggers, then render ``n`` real images and the usage block."""
        request_id = request[_REQUEST_ID]
        started = time.monotonic()
        payload = await self._image_payload(params, size, input_images=input_images, request_id=request_id)
        rate_headers = self.rate_limit.response_headers(0.0) if self.rate_limit is not None else None
        return self._json(200, payload, request_id, started, rate_headers)

    async def _image_payload(
        self, params: ImageParams, size: tuple[int, int], *, input_images: int, request_id: str
    ) -> dict[str, Any]:
        """The images response for valid ``params``, or the ApiError a trigger asks for
        (shared by the image endpoints and the Batch API's lines)."""
        prompt = params.prompt

        if (slow := _SLOW_RE.search(prompt)) is not None:
            await asyncio.sleep(float(slow.group(1)))

        def fail(trigger: str) -> ApiError:
            return _trigger_error(trigger, model=params.model, n=params.n, request_id=request_id)

        if self.rate_limit is not None:
            admitted, wait = self.rate_limit.admit(params.n)
            if not admitted:
                raise ApiError(429, self.rate_limit.message(params.model, params.n, wait), type="requests",
                               code="rate_limit_exceeded", headers=self.rate_limit.response_headers(wait))  # fmt: skip
        if self._fail_queue:
            raise fail(self._fail_queue.pop(0))
        for trigger in ("BLOCK_INPUT", "BLOCK_LEGACY", "NO_CREDIT"):
            if trigger in prompt:
                raise fail(trigger)
        for trigger in ("RATE_LIMIT", "SERVER_ERROR"):
            once = f"{trigger}_ONCE"
            if once in prompt:
                # Fail only the first time this exact prompt is seen, so a
                # retry (the SDK's or the bot's) then succeeds.
                if (once, prompt) not in self._seen_once:
                    self._seen_once.add((once, prompt))
                    raise fail(trigger)
            elif trigger in prompt:
                raise fail(trigger)

        width, height = size
        transparent = params.background == "transparent"
        keys = [
            _RenderKey(
                width,
                height,
                params.output_format,
                params.output_compression,
                transparent,
                hashlib.sha256(f"{index}\x00{prompt}".encode()).digest()[:16],
            )
            for index in range(params.n)
        ]
        images = await self._cache.get(keys)
        # Output moderation happens after generation in the real API, hence
        # its place (and its cost in time) here.
        if "BLOCK_OUTPUT" in prompt:
            raise fail("BLOCK_OUTPUT")

        payload: dict[str, Any] = {
            "created": int(time.time()),
            "data": [{"b64_json": b64} for b64 in images],
            "size": f"{width}x{height}",
            "quality": "medium" if params.quality == "auto" else params.quality,
            "output_format": params.output_format,
            "background": "transparent" if transparent else "opaque",
            "usage": make_usage(params, width, height, input_images),
        }
        if params.safety_identifier:
            payload["safety_identifier"] = params.safety_identifier
        return payload

    # ---- /_fake control endpoints (standalone mode; never recorded) --------

    async def _admin_requests(self, request: web.Request) -> web.Response:
        payload = [r.to_jsonable() for r in self.requests]
        return web.Response(body=json.dumps(payload).encode(), content_type="application/json")

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.Response(body=b"{}", content_type="application/json")

    async def _admin_config(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "latency" in body:
            self.latency = float(body["latency"])
        if "today" in body:
            self.today = datetime.date.fromisoformat(body["today"])
        if "shutdown_dates" in body:
            self.shutdown_dates.update(body["shutdown_dates"])
        if "rate_limit" in body:
            mode = body["rate_limit"]
            self.rate_limit = None if mode is None else RateWindow(int(mode["images"]), float(mode.get("window", 60.0)),
                                                                    bool(mode.get("headers", False)))  # fmt: skip
        state = {"latency": self.latency, "today": self.today.isoformat(), "shutdown_dates": self.shutdown_dates}
        return web.Response(body=json.dumps(state).encode(), content_type="application/json")

    async def _admin_rate_limit(self, request: web.Request) -> web.Response:
        mode = self.rate_limit
        state = None if mode is None else {
            "images": mode.images, "window": mode.window, "admitted": mode.admitted, "refused": mode.refused,
            "most_in_any_window": mode.most_in_any_window(),
        }  # fmt: skip
        return web.Response(body=json.dumps(state).encode(), content_type="application/json")

    async def _admin_fail_next(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.fail_next(str(body["trigger"]), int(body.get("times", 1)))
        except (KeyError, ValueError) as exc:
            return web.Response(status=400, text=str(exc))
        return web.Response(body=b"{}", content_type="application/json")


def _auto_edit_size(first: Image.Image) -> tuple[int, int]:
    """size="auto" on edits follows the first input's orientation, like the API."""
    ratio = first.width / first.height
    if ratio > 1.25:
        return 1536, 1024
    if ratio < 0.8:
        return 1024, 1536
    return 1024, 1024


# --------------------------------------------------------------------------
# Standalone entry point
# --------------------------------------------------------------------------


async def _serve(host: str, port: int, latency: float) -> None:
    fake = FakeOpenAI(host=host, port=port, latency=latency)
    await fake.start()
    print(f"listening {fake.base_url}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fake OpenAI Images API for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every /v1 request")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
