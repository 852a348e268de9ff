"""What the Edit image form carries from its opening to its submission.

Slack gives a modal's `private_metadata` back verbatim with the submission,
so the form needs no memory in the process: any replica, after a restart,
can run it. Written and read only here (short keys: Slack allows 3,000
characters). File ids, never URLs: the files are looked up again when the
form is sent.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Sequence

from bots.slack.payloads import Origin


@dataclass(frozen=True)
class EditFormMetadata:
    channel: str
    thread_ts: str | None
    user_thread_ts: str | None
    response_url: str | None
    file_ids: tuple[str, ...]

    @classmethod
    def of(cls, origin: Origin, file_ids: Sequence[str]) -> EditFormMetadata:
        return cls(origin.channel, origin.thread_ts, origin.user_thread_ts, origin.response_url, tuple(file_ids))

    def encode(self) -> str:
        fields = {"c": self.channel, "t": self.thread_ts, "u": self.user_thread_ts, "r": self.response_url, "f": list(self.file_ids)}
        return json.dumps(fields, separators=(",", ":"))

    @classmethod
    def decode(cls, text: str | None) -> EditFormMetadata:
        """Whatever comes back: a missing or malformed value reads as empty (the submission then says so)."""
        try:
            fields: Any = json.loads(text or "{}")
        except ValueError:
            fields = {}
        if not isinstance(fields, dict):
            fields = {}

        def text_of(key: str) -> str | None:
            value = fields.get(key)
            return value if isinstance(value, str) and value else None

        files = fields.get("f")
        file_ids = tuple(f for f in files if isinstance(f, str)) if isinstance(files, list) else ()
        return cls(text_of("c") or "", text_of("t"), text_of("u"), text_of("r"), file_ids)

    def origin(self, *, team: str, user: str) -> Origin:
        """Where the submission's answers go: the clicker, in the form's channel and thread."""
        return Origin(
            team=team, user=user, channel=self.channel, thread_ts=self.thread_ts, response_url=self.response_url,
            user_thread_ts=self.user_thread_ts,
        )  # fmt: skip
