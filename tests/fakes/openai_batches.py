"""The Files and Batches endpoints of the fake OpenAI (relax mode).

As the real API: ``POST /v1/files`` (multipart ``file`` + ``purpose``),
``GET /v1/files/{id}`` and ``/content``; ``POST /v1/batches`` (a JSONL input
file of purpose "batch", an allowed endpoint, ``completion_window="24h"``),
``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. A batch is
"in_progress" until ``batch_delay`` seconds after its creation; the next
retrieve then runs every line through the same validation and triggers as
``/v1/images/generations`` (BLOCK_INPUT etc. in a prompt fail that line
alone, into the error file) and reports "completed" with an output file of
``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}`` lines. With ``expire_batches`` set, a due batch "expired"
instead: every line goes to the error file with code ``batch_expired``.

Knobs: ``batch_delay`` (seconds), ``expire_batches`` (bool); ``batches`` and
``files`` hold everything created, for assertions.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from tests.fakes.openai_server import ApiError, RecordedRequest

BATCH_ENDPOINTS = ("/v1/responses", "/v1/chat/completions", "/v1/embeddings", "/v1/completions", "/v1/moderations",
                   "/v1/images/generations", "/v1/images/edits", "/v1/videos")  # fmt: skip
FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")


@dataclass
class FakeFile:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def payload(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": len(self.data), "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed", "expires_at": None,
                "status_details": None}  # fmt: skip


@dataclass
class FakeBatch:
    id: str
    input_file_id: str
    endpoint: str
    metadata: dict[str, str] | None
    lines: list[dict[str, Any]]
    created_at: int
    ready_at: float  # monotonic time the batch is done at
    status: str = "in_progress"
    output_file_id: str | None = None
    error_file_id: str | None = None
    completed: int = 0
    failed: int = 0
    finished_at: int | None = None
    polls: int = 0
    output_lines: list[dict[str, Any]] = field(default_factory=list)

    def payload(self) -> dict[str, Any]:
        done = self.status in ("completed", "expired", "failed", "cancelled")
        return {
            "id": self.id, "object": "batch", "endpoint": self.endpoint, "errors": None,
            "input_file_id": self.input_file_id, "completion_window": "24h", "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.created_at, "expires_at": self.created_at + 86400,
            "completed_at": self.finished_at if self.status == "completed" else None,
            "expired_at": self.finished_at if self.status == "expired" else None,
            "cancelled_at": self.finished_at if self.status == "cancelled" else None,
            "finalizing_at": self.finished_at if done else None,
            "request_counts": {"total": len(self.lines), "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        }  # fmt: skip


class FakeBatchAPI:
    """Mixed into FakeOpenAI (which provides _json, _auth, _image_payload)."""

    batch_delay: float
    expire_batches: bool
    files: dict[str, FakeFile]
    batches: dict[str, FakeBatch]

    def _init_batches(self) -> None:
        self.batch_delay = 0.0
        self.expire_batches = False
        self.files = {}
        self.batches = {}

    def _add_batch_routes(self, app: web.Application, wrap: Any) -> None:
        app.router.add_post("/v1/files", wrap(self._create_file))
        app.router.add_get("/v1/files/{file_id}", wrap(self._get_file))
        app.router.add_get("/v1/files/{file_id}/content", wrap(self._file_content))
        app.router.add_post("/v1/batches", wrap(self._create_batch))
        app.router.add_get("/v1/batches/{batch_id}", wrap(self._get_batch))
        app.router.add_post("/v1/batches/{batch_id}/cancel", wrap(self._cancel_batch))

    def _api_error(self, status: int, message: str, **kw: Any) -> ApiError:
        from tests.fakes.openai_server import ApiError

        return ApiError(status, message, **kw)

    def _new_file(self, filename: str, purpose: str, data: bytes) -> FakeFile:
        f = FakeFile(f"file-{uuid.uuid4().hex[:24]}", filename, purpose, data, int(time.time()))
        self.files[f.id] = f
        return f

    async def _create_file(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)  # type: ignore[attr-defined]
        purpose = record.form.get("purpose")
        if purpose not in FILE_PURPOSES:
            raise self._api_error(400, f"'{purpose}' is not one of {list(FILE_PURPOSES)} - 'purpose'", param="purpose")
        parts = [f for f in record.files if f.name == "file"]
        if len(parts) != 1:
            raise self._api_error(400, "Missing file: 'file'", param="file")
        part = parts[0]
        if purpose == "batch" and not (part.filename or "").endswith(".jsonl"):
            raise self._api_error(400, "Invalid file format for Batch API. Must be .jsonl", param="file")
        made = self._new_file(part.filename or "upload", purpose, part.data)
        return self._json(200, made.payload(), "req_file", time.monotonic())  # type: ignore[attr-defined,no-any-return]

    def _file(self, request: web.Request) -> FakeFile:
        found = self.files.get(request.match_info["file_id"])
        if found is None:
            raise self._api_error(404, f"No such File object: {request.match_info['file_id']}", param="id")
        return found

    async def _get_file(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)  # type: ignore[attr-defined]
        return self._json(200, self._file(request).payload(), "req_file", time.monotonic())  # type: ignore[attr-defined,no-any-return]

    async def _file_content(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        self._auth(record)  # type: ignore[attr-defined]
        f = self._file(request)
        if f.purpose == "batch":  # the real API serves outputs, not what was uploaded
            raise self._api_error(400, "Not allowed to download files of purpose: batch")
        # Streamed in chunks, as a real server sends a file of hundreds of MB.
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = len(f.data)
        await response.prepare(request)
        view = memoryview(f.data)
        for start in range(0, len(view), 1 << 16):
            await response.write(view[start:start + (1 << 16)])
        await response.write_eof()
        return response  # type: ignore[return-value]

    async def _create_batch(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)  # type: ignore[attr-defined]
        body = record.json or {}
        if body.get("completion_window") != "24h":
            raise self._api_error(400, "Invalid completion_window: only '24h' is supported.", param="completion_window")
        endpoint = body.get("endpoint")
        if endpoint not in BATCH_ENDPOINTS:
            raise self._api_error(400, f"Invalid endpoint: {endpoint}", param="endpoint")
        source = self.files.get(str(body.get("input_file_id")))
        if source is None or source.purpose != "batch":
            raise self._api_error(400, "Invalid input_file_id: not a file of purpose 'batch'.", param="input_file_id")
        lines: list[dict[str, Any]] = []
        seen: set[str] = set()
        for number, raw in enumerate(source.data.decode("utf-8").splitlines(), start=1):
            if not raw.strip():
                continue
            line = json.loads(raw)
            custom_id = line.get("custom_id")
            if not isinstance(custom_id, str) or custom_id in seen:
                raise self._api_error(400, f"Line {number}: custom_id must be a unique string.", param="input_file_id")
            if line.get("method") != "POST" or line.get("url") != endpoint:
                raise self._api_error(400, f"Line {number}: url must be {endpoint} with method POST.", param="input_file_id")
            seen.add(custom_id)
            lines.append(line)
        batch = FakeBatch(
            id=f"batch_{uuid.uuid4().hex[:24]}", input_file_id=source.id, endpoint=str(endpoint),
            metadata=body.get("metadata"), lines=lines, created_at=int(time.time()),
            ready_at=time.monotonic() + self.batch_delay,
        )  # fmt: skip
        self.batches[batch.id] = batch
        return self._json(200, batch.payload(), "req_batch", time.monotonic())  # type: ignore[attr-defined,no-any-return]

    def _batch(self, request: web.Request) -> FakeBatch:
        found = self.batches.get(request.match_info["batch_id"])
        if found is None:
            raise self._api_error(404, f"No batch found with id '{request.match_info['batch_id']}'.")
        return found

    async def _get_batch(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)  # type: ignore[attr-defined]
        batch = self._batch(request)
        batch.polls += 1
        if batch.status == "in_progress" and time.monotonic() >= batch.ready_at:
            await self._run_batch(batch)
        return self._json(200, batch.payload(), "req_batch", time.monotonic())  # type: ignore[attr-defined,no-any-return]

    async def _cancel_batch(self, request: web.Request, record: RecordedRequest) -> web.Response:
        self._auth(record)  # type: ignore[attr-defined]
        batch = self._batch(request)
        if batch.status == "in_progress":
            batch.status, batch.finished_at = "cancelled", int(time.time())
        return self._json(200, batch.payload(), "req_batch", time.monotonic())  # type: ignore[attr-defined,no-any-return]

    async def _run_batch(self, batch: FakeBatch) -> None:
        from tests.fakes.openai_server import ApiError, validate_params

        out: list[str] = []
        errors: list[str] = []
        for line in batch.lines:
            line_id = f"batch_req_{uuid.uuid4().hex[:24]}"
            request_id = f"req_{uuid.uuid4().hex}"
            if self.expire_batches:
                errors.append(json.dumps({"id": line_id, "custom_id": line["custom_id"], "response": None, "error": {
                    "code": "batch_expired",
                    "message": "This request could not be executed before the completion window expired."}}))  # fmt: skip
                batch.failed += 1
                continue
            try:
                params = validate_params(line.get("body") or {}, edit=False)
                payload = await self._image_payload(params, params.size or (1024, 1024), input_images=0, request_id=request_id)  # type: ignore[attr-defined]
            except ApiError as err:
                errors.append(json.dumps({"id": line_id, "custom_id": line["custom_id"], "response": {
                    "status_code": err.status, "request_id": request_id, "body": err.payload()}, "error": None}))  # fmt: skip
                batch.failed += 1
                continue
            entry = {"id": line_id, "custom_id": line["custom_id"],
                     "response": {"status_code": 200, "request_id": request_id, "body": payload}, "error": None}  # fmt: skip
            batch.output_lines.append({"custom_id": line["custom_id"], "usage": payload["usage"]})
            out.append(json.dumps(entry))
            batch.completed += 1
        if out:
            batch.output_file_id = self._new_file(f"{batch.id}_output.jsonl", "batch_output", ("\n".join(out) + "\n").encode()).id
        if errors:
            batch.error_file_id = self._new_file(f"{batch.id}_error.jsonl", "batch_output", ("\n".join(errors) + "\n").encode()).id
        batch.status = "expired" if self.expire_batches else "completed"
        batch.finished_at = int(time.time())
