"""Soak: the real `imaginebot run` under steady mixed load for minutes on end.

Runs `python -m bots run` (the console command, configured only through its
environment and a TOML file) against the fake OpenAI, Slack and Discord
servers, and sends it `/imagine` commands at a fixed rate, spread at random
over both platforms and `--users` members (half on each platform). Reports:

- the bot's RSS (VmRSS from /proc/<pid>/status) when ready, after the first
  minute, at the end of the load and once every job has finished; the target
  is growth of at most 10 % over the run;
- outcomes lost: commands that never got a final answer (their images, or a
  private message saying why not); the target is 0. Duplicates (two final
  answers) are counted too;
- the Slack ack latency (signed POST /slack/events → its HTTP answer) and the
  Discord defer latency (INTERACTION_CREATE sent on the gateway → the defer
  callback reaching the REST API); the target is p99 ≤ 100 ms.

Three processes, so that no latency is timed on a loop that is also busy
with something else than the bot:
- this one (the driver) runs the three fakes, dispatches the Discord
  interactions, samples the bot's memory and CPU, and counts outcomes. The
  defer latency is taken here, between two points of the fake Discord; the
  driver's own event-loop lag is reported alongside as its error bar;
- a sender child signs and sends the Slack commands on the same schedule and
  times each ack;
- the bot.

Usage (from the repository root):
    .venv/bin/python bench/soak.py [--minutes 10] [--rate 5] [--users 50] [--latency 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import platform
import random
import re
import signal
import socket
import sqlite3
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHANNEL = "C0SOAK"
GUILD = "900000000000000001"
_TAG = re.compile(r"\[s(\d+)\]")


# ------------------------------------------------------------------------ the sender child


async def run_sender(spec_path: str, out_path: str) -> None:
    """Send the Slack commands of the spec, each at its time, and time each ack."""
    import aiohttp

    spec = json.loads(Path(spec_path).read_text())
    secret, url, start = spec["secret"], spec["url"], spec["start_epoch"]
    results: list[dict[str, Any]] = []

    async def send(http: aiohttp.ClientSession, c: dict[str, Any]) -> None:
        body = urlencode(
            {
                "token": "legacy-verification-token",
                "team_id": spec["team_id"],
                "team_domain": "soak",
                "channel_id": CHANNEL,
                "channel_name": "general",
                "user_id": c["user"],
                "user_name": c["user"].lower(),
                "command": "/imagine",
                "text": c["text"],
                "api_app_id": "A0SOAK",
                "is_enterprise_install": "false",
                "response_url": c["response_url"],
                "trigger_id": f"{c['seq']}.soak",
            }
        )
        ts = str(int(time.time()))
        digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        started = time.perf_counter()
        try:
            async with http.post(url, data=body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, asyncio.TimeoutError) as e:
            text, status = type(e).__name__, 0
        results.append({"seq": c["seq"], "seconds": time.perf_counter() - started, "status": status, "text": text})

    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as http:
        tasks = []
        for c in spec["commands"]:
            await asyncio.sleep(max(0.0, start + c["at"] - time.time()))
            tasks.append(asyncio.create_task(send(http, c)))
        await asyncio.gather(*tasks)
    Path(out_path).write_text(json.dumps(results))


# ------------------------------------------------------------------------ the bot process


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in kB, from /proc/<pid>/status."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@dataclass
class Bot:
    proc: asyncio.subprocess.Process
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid


async def start_bot(env: dict[str, str], workdir: Path, log_path: Path) -> Bot:
    import aiohttp

    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it from here
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", "run", env=env, cwd=str(workdir), stdin=asyncio.subprocess.DEVNULL,
        stdout=log, stderr=log,
    )  # fmt: skip
    log.close()
    bot = Bot(proc, f"http://127.0.0.1:{env['PORT']}", log_path)
    deadline = time.monotonic() + 90
    async with aiohttp.ClientSession() as http:
        while True:
            if proc.returncode is not None:
                raise SystemExit(f"imaginebot run exited with {proc.returncode}; see {log_path}")
            try:
                async with http.get(bot.url + "/healthz") as resp:
                    if resp.status == 200:
                        return bot
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit(f"imaginebot run was not ready within 90 s; see {log_path}")
            await asyncio.sleep(0.2)


def bot_env(args: argparse.Namespace, fakes: Fakes, workdir: Path) -> dict[str, str]:
    config = workdir / "soak.toml"
    in_flight = max(16, int(args.rate * args.latency * 4))
    config.write_text(
        "\n".join(
            [
                "[openai]",
                f"max_concurrent_calls = {in_flight}",
                "images_per_minute = 1000000",
                "timeout_seconds = 120",
                "[limits]",
                "daily_images_per_user = 1000000",
                "max_jobs_in_flight_per_user = 20",
                "[server]",
                "shutdown_grace_seconds = 60",
                "max_background_tasks = 5000",
                "",
            ]
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "SLACK_", "DISCORD_", "IMAGINEBOT_"))
        and k not in {"PORT", "LOG_FORMAT", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"}
    }
    env.update(
        OPENAI_API_KEY=fakes.secrets["OPENAI_API_KEY"],
        OPENAI_BASE_URL=fakes.openai.base_url,
        SLACK_BOT_TOKEN=fakes.secrets["SLACK_BOT_TOKEN"],
        SLACK_SIGNING_SECRET=fakes.secrets["SLACK_SIGNING_SECRET"],
        SLACK_API_URL=fakes.slack.api_url,
        DISCORD_BOT_TOKEN=fakes.secrets["DISCORD_BOT_TOKEN"],
        DISCORD_API_URL=fakes.discord.api_base,
        IMAGINEBOT_DB=str(workdir / "soak.db"),
        IMAGINEBOT_CONFIG=str(config),
        PORT=str(free_port()),
        LOG_FORMAT="json",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p),
    )
    return env


# ------------------------------------------------------------------------ the driver


@dataclass
class Fakes:
    openai: Any
    slack: Any
    discord: Any
    secrets: dict[str, str]


@dataclass
class Command:
    seq: int
    platform: str
    user: str
    at: float  # seconds after the start
    text: str
    response_url: str = ""
    ix: Any = None  # the FakeInteraction, for Discord


@dataclass
class Samples:
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, kB)
    lag: list[float] = field(default_factory=list)  # driver loop lag, seconds


SUBJECTS = ("a red fox in the snow", "a lighthouse at dawn", "a bowl of ramen", "a paper crane", "a city at night")


def schedule(args: argparse.Namespace) -> list[Command]:
    rng = random.Random(args.seed)
    slack_users = [f"USOAK{i:03d}" for i in range(args.users - args.users // 2)]
    discord_users = [f"7200000000000{i:05d}" for i in range(args.users // 2)]
    total = int(args.minutes * 60 * args.rate)
    commands = []
    for seq in range(total):
        on_slack = rng.random() < 0.5 if discord_users and slack_users else bool(slack_users)
        user = rng.choice(slack_users if on_slack else discord_users)
        text = f"[s{seq}] {rng.choice(SUBJECTS)}, {rng.choice(('watercolor', 'photo', 'ink sketch'))}"
        commands.append(Command(seq, "slack" if on_slack else "discord", user, seq / args.rate, text))
    return commands


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))  # nearest rank
    return ordered[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 1),
        "p90_ms": round(percentile(values, 90) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1) if values else float("nan"),
    }


async def lag_probe(samples: Samples, stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.05)
        samples.lag.append(time.perf_counter() - t - 0.05)


async def sample_bot(bot: Bot, samples: Samples, started: float, stop: asyncio.Event, commands: list[Command], every: float) -> None:
    next_print = 60.0
    while not stop.is_set():
        elapsed = time.time() - started
        try:
            samples.rss.append((elapsed, proc_status(bot.pid)["VmRSS"]))
        except (FileNotFoundError, ProcessLookupError, KeyError):
            return
        if elapsed >= next_print:
            sent = sum(1 for c in commands if c.at <= elapsed)
            print(f"  {elapsed / 60:4.1f} min: {sent} commands sent, bot RSS {samples.rss[-1][1] / 1024:.1f} MiB", flush=True)
            next_print += 60.0
        with_timeout = asyncio.ensure_future(stop.wait())
        await asyncio.wait({with_timeout}, timeout=every)
        with_timeout.cancel()


async def dispatch_discord(fakes: Fakes, commands: list[Command], start: float) -> list[str]:
    errors = []
    for c in commands:
        await asyncio.sleep(max(0.0, start + c.at - time.time()))
        try:
            c.ix = await fakes.discord.dispatch(fakes.discord.slash_command_payload("imagine", {"prompt": c.text}, user_id=c.user))
        except Exception as e:  # the gateway must stay up: report rather than stop
            errors.append(f"{c.seq}: {type(e).__name__}: {e}")
    return errors


def slack_outcomes(fakes: Fakes, commands: list[Command], acks: dict[int, dict[str, Any]]) -> dict[int, list[str]]:
    """Final answers per Slack command: its images in the channel, private
    messages to its response_url, an ack that answered in words."""
    out: dict[int, list[str]] = {c.seq: [] for c in commands}
    for m in fakes.slack.messages:
        if m.files and not m.deleted and (tag := _TAG.search(m.text)):
            seq = int(tag.group(1))
            if seq in out:
                out[seq].append("images")
    for c in commands:
        rid = c.response_url.rsplit("/", 1)[-1]
        for body in fakes.slack.responses.get(rid, []):
            if body.get("response_type", "ephemeral") == "ephemeral":
                out[c.seq].append("private: " + str(body.get("text", ""))[:80])
        ack = acks.get(c.seq)
        if ack and ack["status"] == 200 and ack["text"].strip():
            try:
                text = str(json.loads(ack["text"]).get("text", ""))
            except ValueError:
                text = ack["text"]
            out[c.seq].append("ack: " + text[:80])
    return out


def discord_outcomes(commands: list[Command]) -> dict[int, list[str]]:
    from tests.fakes.discord_server import EPHEMERAL

    out: dict[int, list[str]] = {}
    for c in commands:
        found = []
        if c.ix is not None:
            for m in c.ix.messages():
                if m["flags"] & EPHEMERAL:
                    found.append("private: " + m["content"][:80])
                elif m["attachments"]:
                    found.append("images")
        out[c.seq] = found
    return out


def stale_progress(fakes: Fakes, commands: list[Command]) -> int:
    """Progress messages still showing once everything is over."""
    from tests.fakes.discord_server import EPHEMERAL

    slack = sum(1 for m in fakes.slack.messages if not m.deleted and not m.files and _TAG.search(m.text))
    discord = sum(
        1
        for c in commands
        if c.ix is not None
        for m in c.ix.messages()
        if not m["flags"] & EPHEMERAL and not m["attachments"]
    )
    return slack + discord


def ledger(db_path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(str(db_path), timeout=30)
    try:
        by_status = dict(conn.execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall())
        refunded_holding = conn.execute(
            "SELECT COUNT(*) FROM jobs WHERE status NOT IN ('succeeded', 'reserved') AND (units != 0 OR usd != 0) AND status != 'undelivered'"
        ).fetchone()[0]
        return {"jobs_by_status": by_status, "failed_jobs_still_charged": refunded_holding}
    finally:
        conn.close()


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakes.discord_server import FakeDiscord
    from tests.fakes.openai_server import FakeOpenAI
    from tests.fakes.slack_server import TEAM_ID, FakeSlack

    tag = uuid.uuid4().hex
    secrets = {
        "OPENAI_API_KEY": f"sk-test-fake-soak-{tag}",
        "SLACK_BOT_TOKEN": f"xoxb-soak-{tag}",
        "SLACK_SIGNING_SECRET": f"soak-signing-secret-{tag}",
        "DISCORD_BOT_TOKEN": f"soak-discord-token-{tag}",
    }
    workdir = Path(tempfile.mkdtemp(prefix="imaginebot-soak-"))
    (workdir / "cwd").mkdir()
    commands = schedule(args)
    slack_cmds = [c for c in commands if c.platform == "slack"]
    discord_cmds = [c for c in commands if c.platform == "discord"]

    async with FakeOpenAI(latency=args.latency) as openai_fake, FakeSlack(bot_token=secrets["SLACK_BOT_TOKEN"]) as slack_fake:
        async with FakeDiscord(token=secrets["DISCORD_BOT_TOKEN"]) as discord_fake:
            fakes = Fakes(openai_fake, slack_fake, discord_fake, secrets)
            for user in {c.user for c in slack_cmds}:
                slack_fake.add_user(user)
            for c in slack_cmds:
                c.response_url = slack_fake.response_url()

            env = bot_env(args, fakes, workdir)
            bot = await start_bot(env, workdir / "cwd", workdir / "bot.log")
            try:
                rss_ready = proc_status(bot.pid)["VmRSS"]
                cpu_ready = cpu_seconds(bot.pid)
                print(f"bot pid {bot.pid} ready, RSS {rss_ready / 1024:.1f} MiB; {len(commands)} commands over "
                      f"{args.minutes:g} min ({len(slack_cmds)} Slack, {len(discord_cmds)} Discord)", flush=True)  # fmt: skip

                start = time.time() + 2.0
                spec = {
                    "secret": secrets["SLACK_SIGNING_SECRET"],
                    "url": bot.url + "/slack/events",
                    "team_id": TEAM_ID,
                    "start_epoch": start,
                    "commands": [{"seq": c.seq, "user": c.user, "text": c.text, "at": c.at, "response_url": c.response_url} for c in slack_cmds],
                }
                spec_path, acks_path = workdir / "slack-spec.json", workdir / "slack-acks.json"
                spec_path.write_text(json.dumps(spec))
                sender = await asyncio.create_subprocess_exec(sys.executable, __file__, "--sender", str(spec_path), str(acks_path), cwd=str(ROOT))

                samples, stop = Samples(), asyncio.Event()
                probes = [
                    asyncio.create_task(lag_probe(samples, stop)),
                    asyncio.create_task(sample_bot(bot, samples, start, stop, commands, args.sample_every)),
                ]
                dispatch_errors = await dispatch_discord(fakes, discord_cmds, start)
                if await sender.wait() != 0:
                    raise SystemExit("the Slack sender failed")
                load_end = time.time()
                rss_load_end = proc_status(bot.pid)["VmRSS"]
                acks = {a["seq"]: a for a in json.loads(acks_path.read_text())}

                # Drain: every command gets its final answer, or the deadline passes.
                drain_deadline = time.time() + max(60.0, 10 * args.latency)
                while time.time() < drain_deadline:
                    s_out, d_out = slack_outcomes(fakes, slack_cmds, acks), discord_outcomes(discord_cmds)
                    if all(s_out.values()) and all(d_out.values()) and openai_fake.in_flight == 0:
                        break
                    await asyncio.sleep(0.5)
                drained_after = time.time() - load_end
                await asyncio.sleep(2.0)  # let stray late answers (duplicates) arrive before counting
                rss_end = proc_status(bot.pid)
                cpu_end = cpu_seconds(bot.pid)
                stop.set()
                await asyncio.gather(*probes)

                _, metrics_text = await _get(bot.url + "/metrics")
                bot.proc.send_signal(signal.SIGTERM)
                exit_code = await asyncio.wait_for(bot.proc.wait(), 120)
            finally:
                if bot.proc.returncode is None:
                    bot.proc.kill()
                    await bot.proc.wait()

            s_out, d_out = slack_outcomes(fakes, slack_cmds, acks), discord_outcomes(discord_cmds)
            stale = stale_progress(fakes, commands)

    all_out = {**s_out, **d_out}
    kinds: dict[str, int] = {}
    for found in all_out.values():
        for f in found:
            key = "images" if f == "images" else f.split(":", 1)[0] + ": " + f.split(":", 1)[1].strip()[:60]
            kinds[key] = kinds.get(key, 0) + 1
    ack_seconds = [a["seconds"] for a in acks.values() if a["status"] == 200]
    defer_seconds = [
        c.ix.callbacks[0].received_at - c.ix.dispatched_at for c in discord_cmds if c.ix is not None and c.ix.callbacks
    ]
    minute_one = next((kb for t, kb in samples.rss if t >= 60.0), samples.rss[-1][1] if samples.rss else rss_ready)
    log_text = (workdir / "bot.log").read_text(errors="replace")
    db_bytes = b"".join(p.read_bytes() for p in workdir.glob("soak.db*"))
    return {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_end": os.getloadavg(),
        },
        "args": vars(args),
        "commands": {"total": len(commands), "slack": len(slack_cmds), "discord": len(discord_cmds)},
        "outcomes": {
            "lost": sum(1 for f in all_out.values() if not f),
            "duplicated": sum(1 for f in all_out.values() if len(f) > 1),
            "by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
            "slack_ack_errors": sum(1 for c in slack_cmds if acks.get(c.seq, {}).get("status") != 200),
            "discord_dispatch_errors": len(dispatch_errors),
            "stale_progress_messages": stale,
            "drained_seconds_after_load": round(drained_after, 1),
        },
        "slack_ack": summary_ms(ack_seconds),
        "discord_defer": summary_ms(defer_seconds),
        "driver_loop_lag": summary_ms(samples.lag),
        "rss_kib": {
            "ready": rss_ready,
            "after_1_min": minute_one,
            "load_end": rss_load_end,
            "end": rss_end["VmRSS"],
            "peak": rss_end["VmHWM"],
            "growth_from_1_min_pct": round(100 * (rss_end["VmRSS"] - minute_one) / minute_one, 1),
            "growth_from_ready_pct": round(100 * (rss_end["VmRSS"] - rss_ready) / rss_ready, 1),
            "samples": samples.rss,
        },
        "bot_cpu_seconds": round(cpu_end - cpu_ready, 1),
        "bot_exit_code_on_sigterm": exit_code,
        "ledger": ledger(workdir / "soak.db"),
        "metrics_jobs": [line for line in metrics_text.splitlines() if line.startswith("imaginebot_jobs_total")],
        "log": {
            "lines": len(log_text.splitlines()),
            "errors": sum(1 for line in log_text.splitlines() if '"level": "error"' in line),
            "secrets_in_log_or_db": [k for k, v in secrets.items() if v in log_text or v.encode() in db_bytes],
        },
        "workdir": str(workdir),
    }


async def _get(url: str) -> tuple[int, str]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        return resp.status, await resp.text()


def report(r: dict[str, Any]) -> None:
    m, o, rss = r["machine"], r["outcomes"], r["rss_kib"]
    a = r["args"]
    print()
    print(f"machine: {m['cpus']} cores, {m['platform']}, Python {m['python']}; load average at the end {m['loadavg_end']}")
    print(f"load: {a['minutes']:g} min at {a['rate']:g} commands/s, {a['users']} users, fake OpenAI latency {a['latency']:g} s")
    print(f"commands: {r['commands']}")
    print(f"outcomes lost: {o['lost']} (target 0); duplicated: {o['duplicated']}; by kind: {o['by_kind']}")
    print(f"  Slack ack errors {o['slack_ack_errors']}, Discord dispatch errors {o['discord_dispatch_errors']}, "
          f"stale progress messages {o['stale_progress_messages']}, drained {o['drained_seconds_after_load']} s after the load")  # fmt: skip
    print(f"Slack ack:     {r['slack_ack']}  (target p99 <= 100 ms)")
    print(f"Discord defer: {r['discord_defer']}  (target p99 <= 100 ms)")
    print(f"driver loop lag: {r['driver_loop_lag']}")
    print(
        f"bot RSS (MiB): ready {rss['ready'] / 1024:.1f}, after 1 min {rss['after_1_min'] / 1024:.1f}, "
        f"end of load {rss['load_end'] / 1024:.1f}, end {rss['end'] / 1024:.1f}, peak {rss['peak'] / 1024:.1f}; "
        f"growth from 1 min {rss['growth_from_1_min_pct']} % (target <= 10 %), from ready {rss['growth_from_ready_pct']} %"
    )
    print(f"bot CPU: {r['bot_cpu_seconds']} s; exit code on SIGTERM: {r['bot_exit_code_on_sigterm']}")
    print(f"ledger: {r['ledger']}")
    print(f"log: {r['log']}")
    print(f"workdir: {r['workdir']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0, help="how long commands keep arriving (default 10)")
    parser.add_argument("--rate", type=float, default=5.0, help="commands per second, both platforms together (default 5)")
    parser.add_argument("--users", type=int, default=50, help="members sending them, half on each platform (default 50)")
    parser.add_argument("--latency", type=float, default=3.0, help="seconds each fake model call takes (default 3)")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the schedule")
    parser.add_argument("--sample-every", type=float, default=10.0, help="seconds between RSS samples")
    parser.add_argument("--json", help="also write the full results (RSS samples included) to this file")
    parser.add_argument("--sender", nargs=2, metavar=("SPEC", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        asyncio.run(run_sender(*args.sender))
        return
    if args.users < 2:
        parser.error("--users must be at least 2 (one per platform)")
    results = asyncio.run(drive(args))
    report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    lost = results["outcomes"]["lost"]
    sys.exit(0 if lost == 0 and results["bot_exit_code_on_sigterm"] == 0 else 1)


if __name__ == "__main__":
    main()
