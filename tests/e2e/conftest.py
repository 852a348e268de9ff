"""End to end: the real `imaginebot run` console command in a child process,
against the fake OpenAI, Slack and Discord servers running in this (the test)
process on loopback.

The bot gets exactly what production gives it — environment variables, a TOML
config file, a SQLite path and a port — and is driven the way the platforms
drive it: signed Slack slash commands POSTed to /slack/events, Discord
interactions pushed over the fake gateway. Tests then read what the fakes
received, the bot's database and its log output.

Waits are bounded polls that fail with what was seen; no sleep is a
correctness condition and no test asserts a duration.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import os
import signal
import socket
import sqlite3
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping
from urllib.parse import urlencode

import aiohttp
import pytest
from PIL import Image

from tests.fakes.discord_server import EPHEMERAL, FakeDiscord, FakeInteraction
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import TEAM_ID, FakeSlack, Message

REPO = Path(__file__).resolve().parents[2]
SLACK_CHANNEL = "C0E2EGENERAL"
DISCORD_GUILD = "900000000000000001"
READY_TIMEOUT = 60.0  # process start, imports, Discord login and gateway
EXIT_TIMEOUT = 60.0
OUTCOME_TIMEOUT = 30.0

# Inherited variables that could point the bot somewhere real, or through a proxy.
_STRIPPED_PREFIXES = ("OPENAI_", "SLACK_", "DISCORD_", "IMAGINEBOT_")
_STRIPPED = {"PORT", "LOG_FORMAT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}

# Limits loose enough that only the fault under test decides an outcome (a
# configured pace far above the fake's: learning would start at 5 a minute).
BASE_CONFIG: dict[str, dict[str, Any]] = {
    "openai": {"max_concurrent_calls": 16, "timeout_seconds": 60, "server_error_retries": 1, "images_per_minute": 100_000},
    "limits": {"daily_images_per_user": 100, "max_jobs_in_flight_per_user": 10},
    "server": {"shutdown_grace_seconds": 5},
    "slack": {"progress_update_seconds": 1},
    "discord": {"progress_update_seconds": 1},
}


# ----------------------------------------------------------------------------- waiting


async def eventually(
    predicate: Callable[[], Any], *, what: str, timeout: float = OUTCOME_TIMEOUT, seen: Callable[[], Any] | None = None
) -> Any:
    """Poll until `predicate()` is truthy and return it. The bound only turns a
    hang into a failure that says what was awaited (and what was seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            detail = f"; seen: {seen()!r}" if seen is not None else ""
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}{detail}")
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- secrets and fakes


@dataclass(frozen=True)
class Secrets:
    """Fresh, recognisable values per test, so a grep for them means something."""

    openai_key: str
    slack_bot_token: str
    slack_signing_secret: str
    discord_token: str

    @classmethod
    def fresh(cls) -> Secrets:
        tag = uuid.uuid4().hex
        return cls(
            openai_key=f"sk-test-fake-e2e-{tag}",
            slack_bot_token=f"xoxb-e2e-{tag}",
            slack_signing_secret=f"e2e-signing-secret-{tag}",
            discord_token=f"e2e-discord-token-{tag}",
        )

    def all(self) -> dict[str, str]:
        return {
            "OPENAI_API_KEY": self.openai_key,
            "SLACK_BOT_TOKEN": self.slack_bot_token,
            "SLACK_SIGNING_SECRET": self.slack_signing_secret,
            "DISCORD_BOT_TOKEN": self.discord_token,
        }


@dataclass
class Fakes:
    openai: FakeOpenAI
    slack: FakeSlack
    discord: FakeDiscord
    secrets: Secrets


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    secrets = Secrets.fresh()
    async with FakeOpenAI() as openai_fake, FakeSlack(bot_token=secrets.slack_bot_token) as slack_fake:
        async with FakeDiscord(token=secrets.discord_token) as discord_fake:
            yield Fakes(openai_fake, slack_fake, discord_fake, secrets)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


# ----------------------------------------------------------------------------- the bot process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def toml_text(config: Mapping[str, Mapping[str, Any]]) -> str:
    """Enough TOML for flat tables of scalars."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        return json.dumps(str(v))

    lines: list[str] = []
    for table, keys in config.items():
        lines.append(f"[{table}]")
        lines.extend(f"{k} = {value(v)}" for k, v in keys.items())
        lines.append("")
    return "\n".join(lines)


def merged(base: Mapping[str, Mapping[str, Any]], overrides: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    out = {table: dict(keys) for table, keys in base.items()}
    for table, keys in (overrides or {}).items():
        out.setdefault(table, {}).update(keys)
    return out


@dataclass
class BotProcess:
    """`imaginebot run` (as `python -m bots run`) in a child process."""

    env: dict[str, str]
    workdir: Path
    log_path: Path
    http: aiohttp.ClientSession
    proc: asyncio.subprocess.Process | None = None
    _log_file: Any = None

    @property
    def port(self) -> int:
        return int(self.env["PORT"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def db_path(self) -> Path:
        return Path(self.env["IMAGINEBOT_DB"])

    async def start(self) -> None:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in close()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bots", "run",
            env=self.env, cwd=str(self.workdir), stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log_file, stderr=self._log_file,
        )  # fmt: skip

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> dict[str, Any]:
        """Poll /healthz until it answers 200 (every adapter up, database up)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"imaginebot run exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}")
            try:
                status, body = await self.get("/healthz")
                if status == 200:
                    return json.loads(body)
                last = f"{status} {body}"
            except (aiohttp.ClientError, asyncio.TimeoutError) as e:
                last = type(e).__name__
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz not ready after {timeout:g} s (last: {last}):\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    async def wait_health(self, status: int, timeout: float = OUTCOME_TIMEOUT) -> None:
        """Poll /healthz until it answers `status` (503: an adapter stopped taking commands)."""
        deadline = time.monotonic() + timeout
        while (await self.get("/healthz"))[0] != status:
            if time.monotonic() > deadline:
                raise AssertionError(f"/healthz never answered {status} within {timeout:g} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path, timeout=aiohttp.ClientTimeout(total=5)) as resp:
            return resp.status, await resp.text()

    async def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        assert self.proc is not None
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"imaginebot run did not exit within {timeout:g} s:\n{self.log_tail()}") from None

    def send(self, sig: int) -> None:
        assert self.proc is not None and self.proc.returncode is None, "the bot is not running"
        self.proc.send_signal(sig)

    async def terminate(self, sig: int = signal.SIGTERM, timeout: float = EXIT_TIMEOUT) -> int:
        self.send(sig)
        return await self.wait_exit(timeout)

    async def kill9(self) -> None:
        self.send(signal.SIGKILL)
        await self.wait_exit()

    async def close(self) -> None:
        """Always called at test end: whatever happened, nothing keeps running."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # -- what it wrote -------------------------------------------------------------

    def log_text(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """Every line of output as a JSON object (LOG_FORMAT=json); a line that
        is not one fails the test, quoting it."""
        records = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise AssertionError(f"a log line is not JSON: {line!r}") from None
            assert isinstance(record, dict), f"a log line is not a JSON object: {line!r}"
            records.append(record)
        return records


StartBot = Callable[..., Awaitable[BotProcess]]


@pytest.fixture
async def start_bot(fakes: Fakes, http: aiohttp.ClientSession, tmp_path: Path) -> AsyncIterator[StartBot]:
    """`bot = await start_bot(config={...}, db=None)`: `imaginebot run` against
    the fakes, ready (healthz 200). Pass the same `db` to start a second
    process on the first one's database. Every process is killed at the end."""
    bots: list[BotProcess] = []
    workdir = tmp_path / "cwd"  # no .env here: the environment below is all the bot sees
    workdir.mkdir()

    async def start(*, config: Mapping[str, Mapping[str, Any]] | None = None, db: Path | None = None, ready: bool = True) -> BotProcess:
        n = len(bots)
        config_path = tmp_path / f"imaginebot-{n}.toml"
        config_path.write_text(toml_text(merged(BASE_CONFIG, config)), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_PREFIXES) and k not in _STRIPPED}
        env.update(fakes.secrets.all())
        env.update(
            OPENAI_BASE_URL=fakes.openai.base_url,
            SLACK_API_URL=fakes.slack.api_url,
            DISCORD_API_URL=fakes.discord.api_base,
            IMAGINEBOT_DB=str(db or tmp_path / "imaginebot.db"),
            IMAGINEBOT_CONFIG=str(config_path),
            PORT=str(free_port()),
            LOG_FORMAT="json",
            NO_PROXY="127.0.0.1,localhost",
            PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        bot = BotProcess(env=env, workdir=workdir, log_path=tmp_path / f"bot-{n}.log", http=http)
        bots.append(bot)
        await bot.start()
        if ready:
            await bot.wait_ready()
        return bot

    try:
        yield start
    finally:
        for bot in bots:
            await bot.close()


# ----------------------------------------------------------------------------- Slack side


def slack_signature(body: str, secret: str, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


@dataclass
class SlackCommand:
    user: str
    text: str
    status: int
    body: str
    response_url: str

    @property
    def ack_text(self) -> str:
        """The text of the ack itself (empty for a plain ack)."""
        if not self.body.strip():
            return ""
        try:
            return str(json.loads(self.body).get("text", ""))
        except ValueError:
            return self.body


@dataclass
class SlackUser:
    """Sends what Slack would send for one workspace member, and reads back
    everything that member was shown."""

    slack: FakeSlack
    http: aiohttp.ClientSession
    secret: str
    user: str
    channel: str = SLACK_CHANNEL
    commands: list[SlackCommand] = field(default_factory=list)

    async def imagine(self, bot: BotProcess, text: str) -> SlackCommand:
        response_url = self.slack.response_url()
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": self.channel,
            "channel_name": "general",
            "user_id": self.user,
            "user_name": self.user.lower(),
            "command": "/imagine",
            "text": text,
            "api_app_id": "A0FAKE",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{uuid.uuid4().hex}.trigger",
        }
        body = urlencode(form)
        headers = {"Content-Type": "application/x-www-form-urlencoded", **slack_signature(body, self.secret)}
        async with self.http.post(bot.url + "/slack/events", data=body.encode(), headers=headers) as resp:
            command = SlackCommand(self.user, text, resp.status, await resp.text(), response_url)
        self.commands.append(command)
        return command

    @property
    def key(self) -> str:
        return f"slack:{TEAM_ID}:{self.user}"

    def deliveries(self) -> list[Message]:
        """Messages in the channel with this user's images (the result mentions them)."""
        return [m for m in self.slack.live_messages(self.channel) if m.files and f"<@{self.user}>" in m.text]

    def uploaded_files(self) -> list[bytes]:
        ids = {f["id"] for m in self.deliveries() for f in m.files}
        return [u.data for u in self.slack.uploads if u.file_id in ids]

    def expire_response_urls(self) -> None:
        """Slack forgets a response_url after 30 minutes; the fake then answers 404."""
        for command in self.commands:
            self.slack.responses.pop(command.response_url.rsplit("/", 1)[-1], None)

    def private(self) -> list[str]:
        """Everything shown to this user alone after the ack: response_url
        posts, ephemerals in the channel, direct messages."""
        texts = [c.params.get("text", "") for c in self.slack.calls_to("chat.postEphemeral") if c.params.get("user") == self.user]
        texts += [c.params.get("text", "") for c in self.slack.calls_to("chat.postMessage") if c.params.get("channel") == self.user]
        for command in self.commands:
            bodies = self.slack.responses.get(command.response_url.rsplit("/", 1)[-1], [])
            texts += [b.get("text", "") for b in bodies if b.get("response_type", "ephemeral") == "ephemeral"]
        return texts

    def outcomes(self) -> list[str]:
        """Final answers: each delivery, each private message, each ack that answered in words."""
        return (
            [f"images: {m.text}" for m in self.deliveries()]
            + [f"private: {t}" for t in self.private()]
            + [f"ack: {c.ack_text}" for c in self.commands if c.ack_text]
        )

    def live_placeholders(self) -> list[str]:
        """Progress messages about this user's requests still showing in the channel."""
        return [m.text for m in self.slack.live_messages(self.channel) if f"<@{self.user}>" in m.text and not m.files]


@pytest.fixture
def slack_user(fakes: Fakes, http: aiohttp.ClientSession) -> Callable[[str], SlackUser]:
    def make(user: str) -> SlackUser:
        fakes.slack.add_user(user)
        return SlackUser(fakes.slack, http, fakes.secrets.slack_signing_secret, user)

    return make


# ----------------------------------------------------------------------------- Discord side


def discord_user_id(n: int) -> str:
    return f"7100000000000{n:05d}"


def discord_key(user_id: str) -> str:
    return f"discord:{DISCORD_GUILD}:{user_id}"


def discord_private(ix: FakeInteraction) -> list[str]:
    return [m["content"] for m in ix.messages() if m["flags"] & EPHEMERAL]


def discord_results(ix: FakeInteraction) -> list[dict[str, Any]]:
    return [m for m in ix.messages() if not m["flags"] & EPHEMERAL and m["attachments"]]


def discord_outcomes(ix: FakeInteraction) -> list[str]:
    """Final answers: public messages with images, private messages."""
    return [f"images: {m['content']}" for m in discord_results(ix)] + [f"private: {t}" for t in discord_private(ix)]


def discord_leftovers(ix: FakeInteraction) -> list[str]:
    """Public messages without images still showing ("thinking…", progress)."""
    return [m["content"] for m in ix.messages() if not m["flags"] & EPHEMERAL and not m["attachments"]]


def discord_images(fake: FakeDiscord, ix: FakeInteraction) -> list[bytes]:
    return [fake.cdn_bytes(a["url"]) for m in discord_results(ix) for a in m["attachments"]]


# ----------------------------------------------------------------------------- checks


def decode_image(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        img.load()
        return img.size


def read_jobs(db_path: Path) -> list[dict[str, Any]]:
    conn = sqlite3.connect(str(db_path), timeout=10)
    try:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM jobs ORDER BY created_at")]
    finally:
        conn.close()


def jobs_by_user(db_path: Path) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for job in read_jobs(db_path):
        out.setdefault(job["user_key"], []).append(job)
    return out


def the_job(db_path: Path, user_key: str) -> dict[str, Any]:
    jobs = jobs_by_user(db_path).get(user_key, [])
    assert len(jobs) == 1, f"expected one job for {user_key}, found {jobs}"
    return jobs[0]


def assert_refunded(job: Mapping[str, Any]) -> None:
    assert job["status"] not in ("reserved", "succeeded"), job
    assert job["units"] == 0 and job["usd"] == 0, f"job {job['id']} still holds quota or budget: {job}"


def assert_charged(job: Mapping[str, Any]) -> None:
    assert job["status"] == "succeeded" and job["units"] > 0 and job["cost_usd"] > 0, job


def _expected_outcome(job: Mapping[str, Any]) -> str:
    status = job["status"]
    if status == "failed":
        return str(job["error_code"])
    return {"blocked": "policy_blocked"}.get(status, status)


def assert_job_logs(records: list[dict[str, Any]], jobs: list[dict[str, Any]]) -> None:
    """Each job has outcome log lines naming its job id, platform,
    workspace/server, user and elapsed time, and the last one says what the
    database says happened."""
    for job in jobs:
        lines = [r for r in records if r.get("job_id") == job["id"] and "outcome" in r]
        assert lines, f"no outcome log line for job {job['id']} ({job['status']})"
        platform, workspace, user = job["user_key"].split(":")
        full = [r for r in lines if (r.get("platform"), r.get("workspace"), r.get("user")) == (platform, workspace, user)]
        assert full, f"no log line of job {job['id']} names {job['user_key']}: {lines}"
        assert all(isinstance(r.get("elapsed_ms"), int) for r in full), full
        assert lines[-1]["outcome"] == _expected_outcome(job), (lines, job)


def assert_no_secrets(where: str, data: bytes | str, secrets: Secrets) -> None:
    raw = data.encode() if isinstance(data, str) else data
    for name, value in secrets.all().items():
        assert value.encode() not in raw, f"{name} appears in {where}"


def database_bytes(db_path: Path) -> bytes:
    parts = [db_path, db_path.with_name(db_path.name + "-wal")]
    return b"".join(p.read_bytes() for p in parts if p.exists())
