"""A new admin's mistakes, each run as the real `imaginebot` process: every
one exits with the documented status and a few lines naming the variable and
what to do; none prints a traceback (SPEC §2)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, Mapping

import aiohttp
import pytest

from tests.e2e.conftest import REPO, BotProcess, Fakes, SlackUser, eventually, free_port
from tests.fakes.openai_server import FakeOpenAI

MAX_LINES = 4  # "a message of a few lines"
_INHERITED_PREFIXES = ("OPENAI_", "SLACK_", "DISCORD_", "IMAGINEBOT_")


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES) and k not in ("PORT", "LOG_FORMAT")}
    env.update(PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost")
    env.update(extra or {})
    return env


async def imaginebot(*args: str, cwd: Path, env: Mapping[str, str], timeout: float = 90) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"imaginebot {' '.join(args)} did not exit within {timeout:g} s:\n{err.decode()[-3000:]}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_error(code: int, err: str, *, expected_code: int, names: str, says: str = "") -> None:
    assert "Traceback" not in err, err
    assert code == expected_code, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= MAX_LINES, err
    assert names in err, err
    assert says.lower() in err.lower(), err


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Nothing can be created or changed in `directory`, not even by root
    (file modes do not bind root: the immutable attribute does)."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)


# ----------------------------------------------------------------------------- IMAGINEBOT_DB


def _bad_databases(root: Path) -> dict[str, tuple[str, str]]:
    """name -> (IMAGINEBOT_DB value, words the message must contain)."""
    (root / "notes.txt").write_text("this is not a database\n" * 100)
    (root / "adir").mkdir()
    return {
        "missing directory": (str(root / "no" / "such" / "dir" / "imaginebot.db"), "does not exist"),
        "a directory": (str(root / "adir"), "is a directory"),
        "not a database": (str(root / "notes.txt"), "not a database"),
    }


CHAT_ENV = {"SLACK_BOT_TOKEN": "xoxb-fake-newcomer", "SLACK_SIGNING_SECRET": "fake-newcomer-secret"}


@pytest.mark.parametrize("command", ["generate", "usage", "run"])
async def test_a_database_path_that_cannot_be_opened_exits_2_naming_imaginebot_db(
    command: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    args = {"generate": ["generate", "a fox"], "usage": ["usage"], "run": ["run"]}[command]
    for case, (db, says) in _bad_databases(tmp_path).items():
        if command == "usage" and case == "missing directory":
            says = "no database at"  # a reading command says so before looking at the directory
        env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url,
                        "IMAGINEBOT_DB": db, "PORT": str(free_port()), **CHAT_ENV})  # fmt: skip
        code, _, err = await imaginebot(*args, cwd=tmp_path, env=env)
        assert_one_line_error(code, err, expected_code=2, names="IMAGINEBOT_DB", says=says)
        assert db in err, (case, err)
    assert fake_openai.requests == [], "no model call with a database that can't be opened"
    assert (tmp_path / "notes.txt").read_text().startswith("this is not a database"), "the file was left as it was"


@pytest.mark.parametrize("command", ["generate", "run"])
async def test_a_database_in_a_read_only_place_exits_2(command: str, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    place = tmp_path / "readonly"
    place.mkdir()
    existing = place / "existing.db"
    conn = sqlite3.connect(existing)
    conn.execute("CREATE TABLE t (a)")
    conn.close()
    args = ["generate", "a fox"] if command == "generate" else ["run"]
    with read_only(place):
        for db in (place / "new.db", existing):
            env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url,
                            "IMAGINEBOT_DB": str(db), "PORT": str(free_port()), **CHAT_ENV})  # fmt: skip
            code, _, err = await imaginebot(*args, cwd=tmp_path, env=env)
            assert_one_line_error(code, err, expected_code=2, names="IMAGINEBOT_DB", says="read-only")
            assert str(db) in err
    assert fake_openai.requests == []


@pytest.mark.parametrize("command", ["usage", "doctor"])
async def test_usage_and_doctor_do_not_create_the_database(command: str, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url})
    code, out, err = await imaginebot(command, cwd=tmp_path, env=env)
    assert not (tmp_path / "imaginebot.db").exists(), f"`imaginebot {command}` created the database"
    assert "Traceback" not in err
    assert f"no database at {tmp_path / 'imaginebot.db'}" in out + err
    if command == "usage":
        assert_one_line_error(code, err, expected_code=2, names="IMAGINEBOT_DB")


# ----------------------------------------------------------------------------- PORT and Discord


async def test_a_port_in_use_exits_2_naming_port(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        busy.bind(("0.0.0.0", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url,
                        "IMAGINEBOT_DB": str(tmp_path / "bot.db"), "PORT": str(port), **CHAT_ENV})  # fmt: skip
        code, _, err = await imaginebot("run", cwd=tmp_path, env=env)
    assert_one_line_error(code, err, expected_code=2, names="PORT", says=f"{port} is already in use")


def _bot_env(fakes: Fakes, tmp_path: Path, **overrides: str) -> dict[str, str]:
    config = tmp_path / "imaginebot.toml"
    config.write_text('[server]\nshutdown_grace_seconds = 2\n[slack]\nprogress_update_seconds = 1\n')
    env = base_env({
        **fakes.secrets.all(),
        "OPENAI_BASE_URL": fakes.openai.base_url,
        "SLACK_API_URL": fakes.slack.api_url,
        "DISCORD_API_URL": fakes.discord.api_base,
        "IMAGINEBOT_DB": str(tmp_path / "imaginebot.db"),
        "IMAGINEBOT_CONFIG": str(config),
        "PORT": str(free_port()),
        "LOG_FORMAT": "json",
    })  # fmt: skip
    env.update(overrides)
    return env


@pytest.mark.parametrize("command", ["run", "discord"])
async def test_a_discord_token_discord_refuses_exits_2(command: str, tmp_path: Path, fakes: Fakes) -> None:
    env = _bot_env(fakes, tmp_path, DISCORD_BOT_TOKEN="refused-e2e-token")
    code, _, err = await imaginebot(command, cwd=tmp_path, env=env)
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    plain = "\n".join(line for line in err.splitlines() if not line.startswith("{"))
    assert "Traceback" not in err and not any("exception" in r for r in records), err
    assert_one_line_error(code, plain, expected_code=2, names="DISCORD_BOT_TOKEN", says="refused")


def _dead_url(path: str) -> str:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{closed.getsockname()[1]}{path}"


async def _wait_health(bot: BotProcess, **want: str) -> None:
    """Bounded poll of /healthz until each adapter is in the wanted state."""
    seen: list[Any] = []
    for _ in range(600):
        assert bot.proc is not None and bot.proc.returncode is None, bot.log_tail()
        try:
            status, body = await bot.get("/healthz")
            seen.append({"http_status": status, **json.loads(body)})
        except (aiohttp.ClientError, asyncio.TimeoutError):
            seen.append(None)
        if seen[-1] and all(seen[-1].get(k) == v for k, v in want.items()):
            assert seen[-1]["http_status"] == 503
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"healthz never showed {want}: {seen[-3:]}\n{bot.log_tail()}")


async def test_an_unreachable_discord_at_start_leaves_slack_serving(
    tmp_path: Path, fakes: Fakes, http: aiohttp.ClientSession
) -> None:
    env = _bot_env(fakes, tmp_path, DISCORD_API_URL=_dead_url("/api/v10"))
    bot = BotProcess(env=env, workdir=tmp_path, log_path=tmp_path / "bot.log", http=http)
    await bot.start()
    try:
        await _wait_health(bot, slack="up", discord="down")

        fakes.slack.add_user("UNEW")
        alice = SlackUser(fakes.slack, http, fakes.secrets.slack_signing_secret, "UNEW")
        ack = await alice.imagine(bot, "a fox while discord is away")
        assert ack.status == 200
        await eventually(alice.deliveries, what="the Slack delivery while Discord is unreachable", seen=alice.outcomes)
        assert bot.proc is not None and bot.proc.returncode is None
        log = bot.log_text()
        assert "Traceback" not in log
        for noise in ("will be unused", "voice will NOT be supported"):  # library warnings about features we don't use
            assert noise not in log, noise
    finally:
        await bot.close()


async def test_an_unreachable_slack_at_start_leaves_discord_serving(
    tmp_path: Path, fakes: Fakes, http: aiohttp.ClientSession
) -> None:
    env = _bot_env(fakes, tmp_path, SLACK_APP_TOKEN=fakes.slack.app_token, SLACK_API_URL=_dead_url("/api/"))
    bot = BotProcess(env=env, workdir=tmp_path, log_path=tmp_path / "bot.log", http=http)
    await bot.start()
    try:
        await _wait_health(bot, slack="down", discord="up")
        ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a fox while slack is away"}, user_id="710000000000000042")
        await fakes.discord.wait_for_result(ix)
        assert bot.proc is not None and bot.proc.returncode is None
        assert "Traceback" not in bot.log_text()
    finally:
        await bot.close()


# ----------------------------------------------------------------------------- CLI --out (issue 8, item 5)


def _cli_env(fake_openai: FakeOpenAI, tmp_path: Path) -> dict[str, str]:
    return base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url,
                     "IMAGINEBOT_DB": str(tmp_path / "imaginebot.db")})  # fmt: skip


def _cli_args(kind: str, tmp_path: Path, out: Path, prompt: str = "a fox") -> list[str]:
    if kind == "generate":
        return ["generate", prompt, "--out", str(out)]
    from PIL import Image

    Image.new("RGB", (64, 48), "red").save(tmp_path / "in.png")
    return ["edit", str(tmp_path / "in.png"), "--prompt", prompt, "--out", str(out)]


def _jobs(db: Path) -> list[tuple[str, int]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT status, units FROM jobs").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("kind", ["generate", "edit"])
async def test_an_out_dir_that_cannot_be_written_is_refused_before_any_money_is_spent(
    kind: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    place = tmp_path / "readonly"
    place.mkdir()
    env = _cli_env(fake_openai, tmp_path)
    for out in (tmp_path / "a-file" / "sub", tmp_path / "a-file", place / "new", place):
        with read_only(place):
            code, stdout, err = await imaginebot(*_cli_args(kind, tmp_path, out), cwd=tmp_path, env=env)
        assert_one_line_error(code, err, expected_code=2, names="--out", says=str(out))
        assert stdout == ""
    assert fake_openai.requests == [], "the model was called for images that could not be written"
    assert _jobs(tmp_path / "imaginebot.db") == []
    # A missing directory is created before the call.
    code, stdout, err = await imaginebot(*_cli_args(kind, tmp_path, tmp_path / "new" / "deep"), cwd=tmp_path, env=env)
    assert code == 0, err
    assert all(Path(p).parent == tmp_path / "new" / "deep" for p in stdout.split())


@pytest.mark.parametrize("kind", ["generate", "edit"])
async def test_images_that_cannot_be_written_after_the_call_go_back_on_the_limit(
    kind: str, tmp_path: Path, fake_openai: FakeOpenAI
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env = _cli_env(fake_openai, tmp_path)
    fake_openai.latency = 5.0  # room to make the directory unwritable while the model "works"
    proc = asyncio.create_task(imaginebot(*_cli_args(kind, tmp_path, out), cwd=tmp_path, env=env))
    await eventually(lambda: fake_openai.requests, what="the model call", timeout=60)
    with read_only(out):
        code, stdout, err = await proc
    assert_one_line_error(code, err, expected_code=1, names=str(out), says="given back")
    assert stdout == "" and list(out.iterdir()) == []
    [(status, units)] = _jobs(tmp_path / "imaginebot.db")
    assert (status, units) == ("undelivered", 0), "the images were lost but still count against the limit"


# ----------------------------------------------------------------------------- doctor tells the truth


def _doctor_env(fakes: Fakes, tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = _bot_env(fakes, tmp_path, **overrides)
    env.pop("LOG_FORMAT")
    return {k: v for k, v in env.items() if v != ""}


def _line(out: str, *words: str) -> str:
    """The one doctor line that contains every word."""
    found = [line for line in out.splitlines() if all(w in line for w in words)]
    assert len(found) == 1, f"expected one line with {words}, got {found}:\n{out}"
    return found[0]


async def test_doctor_fails_a_slack_app_token_that_is_not_one(tmp_path: Path, fakes: Fakes) -> None:
    for wrong in ("xoxb-pasted-into-the-wrong-variable", "xapp-1-refused-by-slack"):
        code, out, err = await imaginebot("doctor", cwd=tmp_path, env=_doctor_env(fakes, tmp_path, SLACK_APP_TOKEN=wrong, DISCORD_BOT_TOKEN=""))
        assert code == 1, out + err
        assert _line(out, "SLACK_APP_TOKEN").startswith("FAIL"), out
        assert "All good" not in out + err and "Traceback" not in err
    code, out, err = await imaginebot("doctor", cwd=tmp_path, env=_doctor_env(fakes, tmp_path, SLACK_APP_TOKEN=fakes.slack.app_token, DISCORD_BOT_TOKEN=""))
    assert _line(out, "SLACK_APP_TOKEN").startswith("ok"), out + err
    assert code == 0, out + err


async def test_doctor_says_what_it_could_not_check_and_live_makes_one_cheap_image(tmp_path: Path, fakes: Fakes) -> None:
    env = _doctor_env(fakes, tmp_path, OPENAI_API_KEY="sk-test-fake-unverified-org", DISCORD_BOT_TOKEN="")
    code, out, err = await imaginebot("doctor", cwd=tmp_path, env=env)
    assert "All good." not in out + err
    unchecked = _line(out, "not checked")
    assert "verif" in unchecked and "credit" in unchecked and "doctor --live" in unchecked and "$0.006" in unchecked
    assert fakes.openai.calls("/images/generations") == [], "plain doctor spends nothing"

    code, out, err = await imaginebot("doctor", "--live", cwd=tmp_path, env=env)
    assert code == 1 and "Traceback" not in err
    assert out.index("$0.006") < out.index("FAIL"), "the cost is said before the call"
    assert "verified" in _line(out, "FAIL", "organization")
    [call] = fakes.openai.calls("/images/generations")
    assert call.json["quality"] == "low" and call.json["n"] == 1

    env["OPENAI_API_KEY"] = fakes.secrets.openai_key
    code, out, err = await imaginebot("doctor", "--live", cwd=tmp_path, env=env)
    assert code == 0, out + err
    assert _line(out, "ok", "generated one").startswith("ok")
    assert not (tmp_path / "imaginebot.db").exists(), "doctor --live is not a job: nothing is recorded"


async def test_guild_commands_from_discord_sync_count_and_sync_needs_no_openai_key_or_database(tmp_path: Path, fakes: Fakes) -> None:
    env = _doctor_env(fakes, tmp_path, SLACK_BOT_TOKEN="", SLACK_SIGNING_SECRET="", OPENAI_API_KEY="")
    code, out, err = await imaginebot("discord-sync", "--guild", "900000000000000001", cwd=tmp_path, env=env)
    assert code == 0, err
    assert "Registered" in out and err == "", err
    assert not (tmp_path / "imaginebot.db").exists()

    env["OPENAI_API_KEY"] = fakes.secrets.openai_key
    code, out, err = await imaginebot("doctor", cwd=tmp_path, env=env)
    line = _line(out, "commands registered")
    assert line.startswith("ok") and "900000000000000001" in line, out
    assert code == 0, out + err


@pytest.mark.parametrize("command", ["generate", "doctor"])
async def test_a_default_size_the_model_refuses_is_a_config_error(command: str, tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    (tmp_path / "bot.toml").write_text('[defaults]\nsize = "5000x5000"\n')
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url,
                    "IMAGINEBOT_CONFIG": str(tmp_path / "bot.toml")})  # fmt: skip
    args = ["generate", "a fox"] if command == "generate" else ["doctor"]
    code, _, err = await imaginebot(*args, cwd=tmp_path, env=env)
    assert_one_line_error(code, err, expected_code=2, names="defaults.size", says="too large")
    assert "bot.toml" in err
    assert fake_openai.requests == []


async def test_a_base_url_without_v1_is_named_as_the_likely_cause(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    base = fake_openai.base_url.removesuffix("/").removesuffix("/v1")
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": base})
    code, out, err = await imaginebot("doctor", cwd=tmp_path, env=env)
    assert code == 1
    assert "/v1" in _line(out, "FAIL", "OPENAI_BASE_URL"), out
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env=env)
    assert code == 1 and "Traceback" not in err
    assert "OPENAI_BASE_URL" in err and "/v1" in err, err


async def test_network_errors_name_the_url_and_the_error(tmp_path: Path) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": base})
    code, out, _ = await imaginebot("doctor", cwd=tmp_path, env=env)
    line = _line(out, "FAIL", base)
    assert "Connect" in line or "refused" in line, line
    code, _, err = await imaginebot("generate", "a fox", cwd=tmp_path, env=env)
    assert code == 1 and "Traceback" not in err
    assert base in err and ("Connect" in err or "refused" in err), err
    assert len(err.splitlines()) <= MAX_LINES


async def test_a_slow_cli_call_shows_the_elapsed_time(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    fake_openai.latency = 7.0  # longer than the 5 s between progress reports
    env = base_env({"OPENAI_API_KEY": "sk-test-fake-newcomer", "OPENAI_BASE_URL": fake_openai.base_url})
    code, out, err = await imaginebot("generate", "a slow fox", cwd=tmp_path, env=env)
    assert code == 0, err
    assert any(line.startswith("imaginebot: working") and " s" in line for line in err.splitlines()), err


# ----------------------------------------------------------------------------- smaller things a new admin trips on


async def test_version_and_unknown_flags(tmp_path: Path) -> None:
    code, out, err = await imaginebot("--version", cwd=tmp_path, env=base_env())
    assert code == 0 and out.startswith("imaginebot ") and out.split()[1][0].isdigit(), out + err
    code, _, err = await imaginebot("generate", "a fox", "--bogus", cwd=tmp_path, env=base_env())
    assert code == 2 and "usage: imaginebot generate" in err and "--bogus" in err, err


async def test_bad_counts_and_sizes_exit_alike_in_terminal_words(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    env = _cli_env(fake_openai, tmp_path)
    results = [await imaginebot("generate", "a fox", "--n", n, cwd=tmp_path, env=env) for n in ("two", "0")]
    assert {code for code, _, _ in results} == {1}, results
    assert all("1 to 8" in err and "Traceback" not in err for _, _, err in results), results
    code, _, err = await imaginebot("generate", "a fox", "--size", "5000x5000", cwd=tmp_path, env=env)
    assert code == 1 and "too large" in err, err
    (tmp_path / "notes.png").write_text("not a picture")
    code, _, err = await imaginebot("edit", "notes.png", "--prompt", "x", cwd=tmp_path, env=env)
    assert code == 1 and "PNG, JPEG or WebP" in err and "Upload" not in err and "upload" not in err, err
    code, _, err = await imaginebot("generate", " ", cwd=tmp_path, env=env)
    assert code == 1 and "prompt is empty" in err and "/imagine" not in err, err
    assert fake_openai.requests == []


async def test_an_edit_without_size_keeps_the_first_image_shape(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    from PIL import Image

    Image.new("RGB", (300, 200), "red").save(tmp_path / "wide.png")
    Image.new("RGB", (200, 300), "red").save(tmp_path / "tall.png")
    env = _cli_env(fake_openai, tmp_path)
    shapes = []
    for name, size in (("wide.png", []), ("tall.png", []), ("wide.png", ["--size", "square"])):
        code, out, err = await imaginebot("edit", name, "--prompt", "watercolor", *size, cwd=tmp_path, env=env)
        assert code == 0, err
        with Image.open(tmp_path / out.split()[0]) as result:
            shapes.append(result.size)
    assert [call.form["size"] for call in fake_openai.calls("/images/edits")] == ["auto", "auto", "1024x1024"]
    assert shapes == [(1536, 1024), (1024, 1536), (1024, 1024)]


async def test_the_operator_manages_limits_and_budgets_from_the_terminal(tmp_path: Path, fake_openai: FakeOpenAI) -> None:
    (tmp_path / "bot.toml").write_text("[limits]\ndaily_images_per_user = 1\n")
    env = {**_cli_env(fake_openai, tmp_path), "IMAGINEBOT_CONFIG": str(tmp_path / "bot.toml")}
    assert (await imaginebot("generate", "one fox", cwd=tmp_path, env=env))[0] == 0
    code, _, err = await imaginebot("generate", "a second fox", cwd=tmp_path, env=env)
    assert code == 1 and "imaginebot admin" in err, err  # the way out is named

    code, out, err = await imaginebot("admin", "reset", "me", cwd=tmp_path, env=env)
    assert code == 0, err
    assert (await imaginebot("generate", "a second fox", cwd=tmp_path, env=env))[0] == 0

    code, out, err = await imaginebot("admin", "limit", "me", "3", cwd=tmp_path, env=env)
    assert code == 0 and "3" in out, err
    assert (await imaginebot("generate", "a third fox", cwd=tmp_path, env=env))[0] == 0

    code, out, err = await imaginebot("admin", "budget", "slack:T0FAKE", "2.50", cwd=tmp_path, env=base_env({"IMAGINEBOT_DB": env["IMAGINEBOT_DB"]}))
    assert code == 0 and "2.50" in out, err  # no OpenAI key needed
    code, _, err = await imaginebot("admin", "limit", "nobody", "3", cwd=tmp_path, env=env)
    assert_one_line_error(code, err, expected_code=2, names="USER", says="slack:")
    conn = sqlite3.connect(tmp_path / "imaginebot.db")
    try:
        assert conn.execute("SELECT workspace_key, daily_usd FROM budgets").fetchall() == [("slack:T0FAKE", 2.5)]
    finally:
        conn.close()
