"""imaginebot on PostgreSQL, as an operator deploys it: a URL that can't be
reached is one clear line (password hidden), and DATABASE_URL is honoured."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import free_port
from tests.e2e.test_newcomer import assert_one_line_error, base_env, imaginebot
from tests.fakes.openai_server import FakeOpenAI


@pytest.mark.parametrize("variable", ["IMAGINEBOT_DB", "DATABASE_URL"])
async def test_a_postgresql_url_that_cannot_be_reached_exits_2_without_its_password(
    variable: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    url = f"postgresql://bot:fake-db-password@127.0.0.1:{free_port()}/imaginebot"  # nothing listens there
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-replicas", "OPENAI_BASE_URL": fake_openai.base_url, variable: url})
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env=env)
    assert_one_line_error(code, err, expected_code=2, names="IMAGINEBOT_DB", says="PostgreSQL says")
    assert "fake-db-password" not in err, err
    assert "postgresql://bot:***@127.0.0.1" in err, err
    assert fake_openai.requests == [], "no model call without a ledger"
    assert not (tmp_path / "imaginebot.db").exists(), "DATABASE_URL was not taken for the SQLite default"
