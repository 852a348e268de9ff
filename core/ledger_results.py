"""What the buttons under a result and /history look up after a restart:
the images an edit used and the message a job's images were posted in.

Both are platform references (JSON objects the adapters write and read: a
Slack file id, a Discord channel/message/attachment id), never URLs or
tokens; the core only keeps them beside the job."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from core.ledger_base import LedgerBase

PlatformRef = Mapping[str, Any]
IMAGE, MASK = "image", "mask"


@dataclass(frozen=True)
class JobInputs:
    """The references of an edit's input images (in order) and its mask."""

    images: tuple[dict[str, Any], ...]
    mask: dict[str, Any] | None = None


class Results(LedgerBase):
    def remember_inputs_sync(self, job_id: str, images: Sequence[PlatformRef], mask: PlatformRef | None = None) -> None:
        rows = [(job_id, i, IMAGE, json.dumps(dict(ref))) for i, ref in enumerate(images)]
        if mask is not None:
            rows.append((job_id, len(rows), MASK, json.dumps(dict(mask))))
        with self.store.transaction() as conn:
            # A retried write replaces what the first attempt may have left.
            conn.execute("DELETE FROM job_inputs WHERE job_id = ?", (job_id,))
            if rows:
                conn.executemany("INSERT INTO job_inputs (job_id, position, role, ref) VALUES (?, ?, ?, ?)", rows)

    def inputs_sync(self, job_id: str) -> JobInputs:
        rows = self.store.query("SELECT role, ref FROM job_inputs WHERE job_id = ? ORDER BY position", (job_id,))
        images = tuple(json.loads(r["ref"]) for r in rows if r["role"] == IMAGE)
        mask = next((json.loads(r["ref"]) for r in rows if r["role"] == MASK), None)
        return JobInputs(images, mask)

    def remember_result_sync(self, job_id: str, ref: PlatformRef) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                """INSERT INTO job_results (job_id, ref, posted_at) VALUES (?, ?, ?)
                   ON CONFLICT (job_id) DO UPDATE SET ref = excluded.ref, posted_at = excluded.posted_at""",
                (job_id, json.dumps(dict(ref)), self.clock().timestamp()),
            )

    def result_sync(self, job_id: str) -> dict[str, Any] | None:
        """Where the job's images are, or None (never posted, or deleted)."""
        rows = self.store.query("SELECT ref FROM job_results WHERE job_id = ? AND deleted_at IS NULL", (job_id,))
        return json.loads(rows[0]["ref"]) if rows else None

    def forget_result_sync(self, job_id: str) -> bool:
        """The result message was deleted; True for the one call that marked it."""
        with self.store.transaction() as conn:
            cur = conn.execute(
                "UPDATE job_results SET deleted_at = ? WHERE job_id = ? AND deleted_at IS NULL",
                (self.clock().timestamp(), job_id),
            )
            return cur.rowcount == 1

    def history_sync(self, user_key: str, limit: int) -> list[dict[str, Any]]:
        """The user's latest jobs, newest first, each with its result reference
        (`result_ref`, None when never posted or deleted) and input count."""
        rows = self.store.query(
            """SELECT jobs.*, job_results.ref AS result_ref, job_results.deleted_at AS result_deleted_at
               FROM jobs LEFT JOIN job_results ON job_results.job_id = jobs.id
               WHERE jobs.user_key = ? ORDER BY jobs.created_at DESC LIMIT ?""",
            (user_key, limit),
        )
        for row in rows:
            ref = row.pop("result_ref")
            row["result_ref"] = json.loads(ref) if ref and row.pop("result_deleted_at") is None else None
            row.pop("result_deleted_at", None)
        return rows
