"""The Edit image form's private_metadata: written and read in one place,
and whatever Slack (or a forger with the signing secret) sends back reads
as something safe."""

from __future__ import annotations

import pytest

from bots.slack.edit_form import EditFormMetadata
from bots.slack.payloads import Origin


def test_what_the_form_carries_comes_back_the_same() -> None:
    origin = Origin(team="T1", user="UALICE", channel="C1", thread_ts="1.2", response_url="https://hooks.example/r", user_thread_ts="1.1")
    sent = EditFormMetadata.of(origin, ["F1", "F2"])
    back = EditFormMetadata.decode(sent.encode())
    assert back == sent
    assert back.origin(team="T1", user="UALICE") == origin
    assert len(EditFormMetadata.of(origin, [f"F{i:010d}" for i in range(16)]).encode()) < 3000  # Slack's limit


@pytest.mark.parametrize("text", [None, "", "not json", "[1, 2]", '{"c": 5, "f": "F1", "t": ""}'])
def test_a_malformed_value_reads_as_empty(text: str | None) -> None:
    form = EditFormMetadata.decode(text)
    assert (form.channel, form.thread_ts, form.response_url, form.file_ids) == ("", None, None, ())
