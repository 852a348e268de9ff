"""The jobs behind the buttons under a result and /history: a job as stored,
the images an edit used, and where a result was posted.

`ImageService.results` is the one way the adapters reach these rows; the
references themselves are the adapters' own (see core/ledger_results.py)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from core.config import Config
from core.errors import InvalidInput, NotPermitted
from core import messages
from core.ledger import Ledger
from core.ledger_results import JobInputs, PlatformRef
from core.models import HistoryEntry, ImageOptions, JobRecord, Requester, RequesterKey, Usage
from core.options import route_model
from core.store import Store

HISTORY_LENGTH = 10


class ResultBook:
    def __init__(self, config: Config, store: Store, ledger: Ledger) -> None:
        self.config = config
        self.store = store
        self.ledger = ledger

    async def job(self, job_id: str) -> JobRecord | None:
        row = await self.store.run(self.ledger.job_sync, job_id)
        return None if row is None else job_record(self.config, row)

    async def remember_inputs(self, job_id: str, images: Sequence[PlatformRef], mask: PlatformRef | None = None) -> None:
        """An edit's inputs, for Again on it (after a restart too)."""
        await self.store.run(lambda: self.ledger.remember_inputs_sync(job_id, images, mask))

    async def inputs(self, job_id: str) -> JobInputs:
        return await self.store.run(self.ledger.inputs_sync, job_id)

    async def remember_result(self, job_id: str, ref: PlatformRef) -> None:
        """Where the job's images were posted."""
        await self.store.run(lambda: self.ledger.remember_result_sync(job_id, ref))

    async def result(self, job_id: str) -> dict[str, Any] | None:
        return await self.store.run(self.ledger.result_sync, job_id)

    async def forget_result(self, job_id: str) -> bool:
        """The result message is gone (Delete); True for the call that marked it."""
        return await self.store.run(self.ledger.forget_result_sync, job_id)

    async def history(self, requester: Requester, limit: int = HISTORY_LENGTH) -> list[HistoryEntry]:
        """The requester's latest jobs, newest first."""
        return await self._history(requester.key, limit)

    async def history_for(self, admin: Requester, target_key: str, limit: int = HISTORY_LENGTH) -> list[HistoryEntry]:
        """Someone else's latest jobs: admins only, inside their own workspace/server."""
        if not admin.is_admin:
            raise NotPermitted(messages.not_admin(admin.platform))
        target = RequesterKey.parse(target_key)
        if target.workspace_key != admin.workspace_key or not target.user:
            raise InvalidInput("You can only look at members of this workspace/server.")
        return await self._history(target_key, limit)

    async def _history(self, user_key: str, limit: int) -> list[HistoryEntry]:
        rows = await self.store.run(self.ledger.history_sync, user_key, limit)
        return [HistoryEntry(job_record(self.config, row), row["result_ref"]) for row in rows]


def may_delete(requester: Requester, job: JobRecord) -> bool:
    """Delete under a result: its requester, or an admin of that workspace/server."""
    return requester.key == job.requester_key or (
        requester.is_admin and RequesterKey.parse(job.requester_key).workspace_key == requester.workspace_key
    )


def job_record(config: Config, r: Mapping[str, Any]) -> JobRecord:
    """A jobs row as the adapters see it."""
    return JobRecord(
        job_id=r["id"],
        kind=r["kind"],
        requester_key=r["user_key"],
        prompt=r["prompt"],
        options=ImageOptions(size=r["size"], quality=r["quality"], n=r["n"], format=r["format"], background=r["background"],
                             model=picked_model(config, r["model"], r["background"])),  # fmt: skip
        status=r["status"],
        created_at=datetime.fromtimestamp(r["created_at"], timezone.utc),
        cost_usd=r["cost_usd"] or 0.0,
        error_code=r["error_code"],
        model_used=r["model"] or "",
        usage=Usage(
            input_text_tokens=r["input_text_tokens"] or 0,
            input_image_tokens=r["input_image_tokens"] or 0,
            output_image_tokens=r["output_image_tokens"] or 0,
            output_text_tokens=r["output_text_tokens"] or 0,
        ),
        images=r["images"] or 0,
        input_images=r["input_images"] or 0,
    )


def picked_model(config: Config, model: str | None, background: str) -> str:
    """What "Again" asks for: the job's model if it was not the server's own
    choice and --model may still pick it; else the server's routing."""
    try:
        routed = route_model(config, "", background)
    except InvalidInput:
        routed = ""
    return model if model and model != routed and model in config.openai.allowed_models else ""
