"""`imaginebot generate … --relax` as a real process against the fake Batch
API: it waits for the batch, printing the elapsed time and the status, then
writes the images like `generate` and records them at half price."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image

from tests.bots.test_cli import KEY, env, imaginebot  # noqa: F401  (env is a fixture)
from tests.fakes.openai_server import FakeOpenAI


async def test_generate_relax_waits_for_the_batch_then_writes_the_images_at_half_price(
    tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI  # noqa: F811
) -> None:
    (tmp_path / "relax.toml").write_text("[relax]\nflush_seconds = 60\npoll_seconds = 0.2\n")
    fake_openai.batch_delay = 1.0  # a few polls see it in progress
    code, out, err = await imaginebot("generate", "a quiet harbor", "--relax", "--quality", "low", "--out", "imgs",
                                      cwd=tmp_path, env={**env, "IMAGINEBOT_CONFIG": "relax.toml"})  # fmt: skip
    assert code == 0, err
    (path,) = out.split()
    with Image.open(tmp_path / path) as im:
        assert im.format == "PNG"
    assert "Queued in relax mode" in err and "relax batch in_progress" in err and " s so far" in err
    assert fake_openai.calls("/images/generations") == []  # the Batch API, not the fast endpoint
    (batch,) = fake_openai.batches.values()
    assert batch.lines[0]["body"]["prompt"] == "a quiet harbor" and batch.lines[0]["body"]["quality"] == "low"
    db = sqlite3.connect(tmp_path / "imaginebot.db")
    ((status, cost, tokens),) = db.execute("SELECT status, cost_usd, output_image_tokens FROM jobs").fetchall()
    assert status == "succeeded" and tokens == 196
    fast_price = round((196 * 30.0 + batch.output_lines[0]["usage"]["input_tokens"] * 5.0) / 1_000_000, 6)
    assert cost == fast_price / 2
    assert KEY not in out + err


async def test_generate_relax_when_relax_is_off_is_refused_before_anything_is_charged(
    tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI  # noqa: F811
) -> None:
    (tmp_path / "off.toml").write_text("[relax]\nenabled = false\n")
    code, out, err = await imaginebot("generate", "a quiet harbor", "--relax", cwd=tmp_path, env={**env, "IMAGINEBOT_CONFIG": "off.toml"})
    assert code == 1 and out == ""
    assert "Relax mode is turned off" in err
    assert fake_openai.requests == [] or all("/batches" not in r.path and "/files" not in r.path for r in fake_openai.requests)


async def test_usage_shows_relax_and_fast_spend_apart(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:  # noqa: F811
    (tmp_path / "relax.toml").write_text("[relax]\npoll_seconds = 0.1\n")
    cfg = {**env, "IMAGINEBOT_CONFIG": "relax.toml"}
    assert (await imaginebot("generate", "a quiet harbor", "--quality", "low", cwd=tmp_path, env=cfg))[0] == 0
    assert (await imaginebot("generate", "a quiet harbor", "--quality", "low", "--relax", cwd=tmp_path, env=cfg))[0] == 0
    code, out, _ = await imaginebot("usage", "--json", cwd=tmp_path, env=cfg)
    assert code == 0
    (user,) = json.loads(out)["users"]
    assert user["images"] == 2 and user["relax_images"] == 1
    # The same prompt and settings: relax cost half (up to the float sum's last bit).
    assert user["relax_usd"] == pytest.approx(user["fast_usd"] / 2, abs=1e-12) and user["relax_usd"] > 0
    code, out, _ = await imaginebot("usage", cwd=tmp_path, env=cfg)
    assert code == 0 and "fast USD" in out and "relax USD" in out
