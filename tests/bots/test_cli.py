"""The `imaginebot` console script, run as a real process against the fake
OpenAI server: exit codes, files written, friendly messages, no key leaked."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from tests.fakes.openai_server import FakeOpenAI

KEY = "sk-test-fake-cli-key-0123456789"


async def imaginebot(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "IMAGINEBOT_"))}
    base.update(env or {})
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, cwd=cwd, env={**base, "PYTHONPATH": str(Path(__file__).parents[2])},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    return proc.returncode or 0, out.decode(), err.decode()


@pytest.fixture
def env(fake_openai: FakeOpenAI) -> dict[str, str]:
    return {"OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": fake_openai.base_url}


async def test_generate_writes_images_and_prints_paths(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    code, out, err = await imaginebot("generate", "a fox in the snow", "--size", "landscape", "--n", "2", "--format", "webp", "--out", "imgs", cwd=tmp_path, env=env)
    assert code == 0, err
    paths = out.split()
    assert len(paths) == 2
    for p in paths:
        with Image.open(tmp_path / p) as im:
            assert im.format == "WEBP" and im.size == (1536, 1024)
    sent = fake_openai.calls("/images/generations")[0].json
    assert sent["prompt"] == "a fox in the snow" and sent["n"] == 2 and sent["output_format"] == "webp"
    # Accounted as the local login, in the default database in the working directory.
    rows = sqlite3.connect(tmp_path / "imaginebot.db").execute("SELECT user_key, status, images FROM jobs").fetchall()
    assert len(rows) == 1 and rows[0][0].startswith("cli:local:") and rows[0][1:] == ("succeeded", 2)
    assert KEY not in out + err


async def test_policy_block_is_friendly_on_stderr_and_exits_1(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, err = await imaginebot("generate", "BLOCK_INPUT something", cwd=tmp_path, env=env)
    assert code == 1
    assert "safety system blocked this prompt" in err and "Nothing was charged" in err
    assert "Traceback" not in err and "400" not in err
    assert out == ""


async def test_bad_size_is_refused_before_any_call(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    code, _, err = await imaginebot("generate", "a fox", "--size", "1000x1000", cwd=tmp_path, env=env)
    assert code == 1
    assert "multiples of 16" in err
    assert fake_openai.requests == []


async def test_usage_errors_exit_2(tmp_path: Path, env: dict[str, str]) -> None:
    code, _, err = await imaginebot("generate", "a fox", "--bogus", cwd=tmp_path, env=env)
    assert code == 2 and "--bogus" in err
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env={})
    assert code == 2 and "OPENAI_API_KEY" in err


async def test_bad_config_exits_2_naming_file_and_key(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "bad.toml").write_text('[limits]\ndaily_images_per_user = "ten"\n')
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env={**env, "IMAGINEBOT_CONFIG": "bad.toml"})
    assert code == 2
    assert "bad.toml" in err and "limits.daily_images_per_user" in err and "whole number" in err


async def test_run_without_any_platform_names_the_variables(tmp_path: Path, env: dict[str, str]) -> None:
    code, _, err = await imaginebot("run", cwd=tmp_path, env=env)
    assert code == 2
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "DISCORD_BOT_TOKEN"):
        assert name in err


async def test_edit_and_usage_report(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    Image.new("RGB", (64, 48), "red").save(tmp_path / "in.jpg", "JPEG")
    code, out, err = await imaginebot("edit", "in.jpg", "--prompt", "make it watercolor", "--out", "o", cwd=tmp_path, env=env)
    assert code == 0, err
    part = fake_openai.calls("/images/edits")[0].files[0]
    assert (part.filename, part.content_type) == ("in.jpg", "image/jpeg")
    code, out, _ = await imaginebot("usage", "--json", cwd=tmp_path, env=env)
    assert code == 0
    report = json.loads(out)
    assert report["users"][0]["images"] == 1 and report["users"][0]["usd"] > 0
    code, out, _ = await imaginebot("usage", "--days", "1", cwd=tmp_path, env=env)
    assert code == 0 and "cli:local" in out


async def test_doctor_reports_each_part(tmp_path: Path, env: dict[str, str]) -> None:
    code, out, _ = await imaginebot("doctor", cwd=tmp_path, env=env)
    assert "ok   OpenAI key works and can see gpt-image-2" in out
    assert "FAIL no chat platform configured" in out
    assert code == 1
    code, out, _ = await imaginebot("doctor", cwd=tmp_path, env={**env, "OPENAI_API_KEY": "sk-invalid-test"})
    assert "FAIL OpenAI model gpt-image-2" in out and "OPENAI_API_KEY" in out


async def test_transparent_sticker_from_a_fresh_default_config(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    # Issue 10's "Done when": no config file at all, today's date (gpt-image-1.5 shut down on 2026-12-01).
    assert not (tmp_path / "config").exists()
    code, out, err = await imaginebot("generate", "a sticker of a cat", "--background", "transparent", cwd=tmp_path, env=env)
    assert code == 0, err
    (path,) = out.split()
    with Image.open(tmp_path / path) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        assert im.getchannel("A").getextrema()[0] == 0  # really transparent somewhere
    sent = fake_openai.calls("/images/generations")[0].json
    assert sent is not None and (sent["model"], sent["background"]) == ("gpt-image-2.6-sunburst", "transparent")
    assert not fake_openai.is_shut_down(sent["model"])


async def test_doctor_fails_on_a_shut_down_transparent_model_naming_the_replacement(tmp_path: Path, env: dict[str, str]) -> None:
    (tmp_path / "old.toml").write_text('[openai]\ntransparent_model = "gpt-image-1.5"\n')
    code, out, _ = await imaginebot("doctor", cwd=tmp_path, env={**env, "IMAGINEBOT_CONFIG": "old.toml"})
    assert code == 1
    line = next(x for x in out.splitlines() if "gpt-image-1.5" in x)
    assert line.startswith("FAIL ")
    assert "shut this model down on 2026-12-01" in line
    assert 'Use gpt-image-2.6-sunburst instead: set transparent_model = "gpt-image-2.6-sunburst" under [openai]' in line
    assert "ok   OpenAI key works and can see gpt-image-2" in out


async def test_doctor_warns_within_30_days(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    soon = fake_openai.today + timedelta(days=12)
    fake_openai.shutdown_dates["gpt-image-2.6-sunburst"] = soon.isoformat()
    code, out, _ = await imaginebot("doctor", cwd=tmp_path, env=env)
    line = next(x for x in out.splitlines() if "gpt-image-2.6-sunburst" in x)
    assert line.startswith("WARN ") and f"shuts this model down on {soon} (in 12 days)" in line
    assert code == 1  # only for the missing chat platform, not the warning
    assert out.count("FAIL") == 1 and "FAIL no chat platform configured" in out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--model", "gpt-image-2.6-flare"], "This server makes images only with gpt-image-2, not “gpt-image-2.6-flare”"),
        (["--background", "transparent", "--format", "jpeg"], "JPEG can't be transparent"),
        (["--quality", "max"], "gpt-image-2 doesn't offer max quality"),
    ],
)
async def test_model_choices_refused_before_any_call(
    tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI, flags: list[str], message: str
) -> None:
    code, out, err = await imaginebot("generate", "a fox", *flags, cwd=tmp_path, env=env)
    assert code == 1 and out == ""
    assert message in err and "Traceback" not in err
    assert fake_openai.requests == []


async def test_edit_with_a_transparent_background(tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI) -> None:
    Image.new("RGB", (64, 64), "red").save(tmp_path / "in.png", "PNG")
    code, out, err = await imaginebot("edit", "in.png", "--prompt", "cut it out", "--background", "transparent", cwd=tmp_path, env=env)
    assert code == 0, err
    call = fake_openai.calls("/images/edits")[0]
    assert (call.form["model"], call.form["background"]) == ("gpt-image-2.6-sunburst", "transparent")
    with Image.open(tmp_path / out.split()[0]) as im:
        assert im.mode == "RGBA"


async def test_a_cli_command_leaves_a_dead_bots_jobs_to_a_bot_that_can_tell_their_users(
    tmp_path: Path, env: dict[str, str], fake_openai: FakeOpenAI
) -> None:
    """The CLI has nobody to announce to: if it refunded a crashed bot's chat
    jobs at start, their users would never hear that their images are not coming.
    It leaves them reserved; the next bot process refunds and announces them."""
    from tests.core.test_ledger import read_line, start_worker

    db = str(tmp_path / "imaginebot.db")
    doomed = await start_worker("hold", db, "doomed")  # a bot process holding a Slack job
    job_id = await read_line(doomed)
    doomed.kill()
    await doomed.wait()
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env=env)
    assert code == 0, err
    statuses = dict(sqlite3.connect(db).execute("SELECT id, status FROM jobs").fetchall())
    assert statuses[job_id] == "reserved"  # before the fix: "interrupted", and nobody told
    assert sorted(statuses.values()) == ["reserved", "succeeded"]


async def test_a_wrong_shard_plan_exits_2_naming_the_variable(tmp_path: Path, env: dict[str, str]) -> None:
    shards = {"DISCORD_BOT_TOKEN": "fake-discord-token", "DISCORD_SHARD_COUNT": "2", "DISCORD_SHARD_IDS": "7"}
    code, out, err = await imaginebot("discord", cwd=tmp_path, env={**env, **shards})
    assert code == 2
    assert err.strip().splitlines() == ["imaginebot: DISCORD_SHARD_IDS must be numbers from 0 to 1 (DISCORD_SHARD_COUNT is 2), got '7'."]
