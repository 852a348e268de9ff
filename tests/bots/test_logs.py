"""Secrets never reach a log line, in text or JSON format."""

from __future__ import annotations

import json
import logging

import pytest

from bots.logs import JsonFormatter, RedactingFilter, setup_logging

SECRETS = ["xoxb-test-fake-slack-token", "fake-discord-token-abcdef", "sk-test-fake-openai-key", "fake-signing-secret"]


def test_known_secrets_and_token_shapes_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(json_format=True, secrets=SECRETS)
    log = logging.getLogger("imaginebot.test")
    log.info("calling with %s and %s", SECRETS[0], SECRETS[1], extra={"job_id": "abc123", "platform": "slack"})
    log.warning("header Authorization: Bearer xoxb-999-other-token; signing %s", SECRETS[3])
    try:
        raise RuntimeError(f"request failed for key {SECRETS[2]}")
    except RuntimeError:
        log.exception("job failed")
    err = capsys.readouterr().err
    for secret in SECRETS + ["xoxb-999-other-token"]:
        assert secret not in err
    lines = [json.loads(line) for line in err.strip().splitlines()]
    assert lines[0]["job_id"] == "abc123" and lines[0]["platform"] == "slack"
    assert lines[0]["message"] == "calling with [redacted] and [redacted]"
    assert "RuntimeError" in lines[2]["exception"] and "[redacted]" in lines[2]["exception"]
    logging.getLogger().handlers.clear()


def test_filter_leaves_ordinary_text_alone() -> None:
    f = RedactingFilter(SECRETS)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "job %s done for %s", ("j1", "slack:T1:U1"), None)
    assert f.filter(record) and record.getMessage() == "job j1 done for slack:T1:U1"
    assert JsonFormatter().format(record).startswith("{")
