"""Slack ack latency under load, and limits under a flood of requests.

Measures, over loopback, the time from sending a signed /imagine slash
command to POST /slack/events until its HTTP answer (the ack) arrives — what
Slack waits for, with a 3 s limit. Target: p99 ≤ 100 ms on 2 cores.

Three processes, so that no clock is read on a busy event loop that is not
the bot's:
- this one runs the fake Slack Web API (with its response_url hook) and the
  fake OpenAI (5 s per call), and counts what they received;
- a child runs the real bot: ImageService + SlackAdapter (bolt's AsyncApp
  behind aiohttp) on the openai and slack-sdk clients, pointed at the fakes;
- a sender child signs the commands, sends them and times each ack.

Scenario 1 — in flight:
  burst: `--jobs` commands from distinct users, all at once; wait until
  their model calls are all in flight; then probes: more commands, one every
  `--interval` s (open loop), for the model latency + 3 s, i.e. while those
  jobs run, return and their results upload. The probes' latencies are the
  headline figure. With `--probe-kinds mixed` (the default) the probes are,
  in turn, a command, an Again click and an Info click under the warm-up
  result (block_actions payloads), each timed to its ack.
Scenario 2 — flood:
  `--flood-users` users each send `--flood-per-user` commands back to back
  (closed loop: as fast as the acks come back), or with `--flood-rate` that
  many per second in all (open loop); n = 1 or 2 at random; a daily limit of
  `--daily-limit` images and up to 10 jobs in flight per user, so that only the
  atomic reservation stands between a user and the limit. Afterwards every
  request must have exactly one outcome (its images in the channel, or a
  private answer saying why not) and nobody may have more images than the limit.

Floor (`--floor`): a bare bolt AsyncApp in a process of its own, whose
listeners only ack, takes the same signed probes (or the same flood) at the
same moments. Its acks are what bolt, aiohttp and this machine cost with no
bot behind them; the bot's p99 over the floor's p99, from one run, is what
the bot adds (target: ≤ 1.5× with 400 calls in flight, ≤ 2× in the flood).

Usage:
    .venv/bin/python bench/slack_ack.py [--floor] [--jobs 200] [--probes N] [--interval 0.02] [--latency 5] [--model-slots 0]
        [--probe-kinds commands|mixed]
        [--flood-users 100] [--flood-per-user 10] [--daily-limit 5] [--flood-rate 0] [--only in-flight|flood]
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
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAI  # noqa: E402
from tests.fakes.slack_server import BOT_TOKEN, TEAM_ID, FakeSlack  # noqa: E402

SIGNING_SECRET = "bench-signing-secret-not-real"
OPENAI_KEY = "sk-bench-fake-not-a-real-key"
CHANNEL = "C0BENCH"


# --------------------------------------------------------------- the bot process


async def run_bot(slack_api_url: str, openai_url: str, db_path: str, overrides: dict[str, Any]) -> None:
    if os.environ.get("BENCH_BOT_CPUS"):
        os.sched_setaffinity(0, {int(c) for c in os.environ["BENCH_BOT_CPUS"].split(",")})

    from bots.slack import SlackAdapter
    from core.config import config_from_mapping
    from core.provider import OpenAIProvider, make_client
    from core.service import ImageService

    config = config_from_mapping(overrides, source="bench")
    client = make_client(OPENAI_KEY, base_url=openai_url, timeout_seconds=config.openai.timeout_seconds)
    service = await ImageService.open(config, db_path, OpenAIProvider(client, config))
    adapter = SlackAdapter(service, config, token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack_api_url)
    runner = await serve_until_stdin_closes(adapter.handle_http)
    # Then finish what is running.
    await adapter.close(grace_seconds=120)
    await runner.cleanup()
    await service.close()


async def serve_until_stdin_closes(handle: Any) -> Any:
    """Serve POST /slack/events on a loopback port, say `ready PORT`, and
    return (the runner, still serving) once the parent closes our stdin."""
    from aiohttp import web

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
    await site.start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    return runner


async def run_bare(slack_api_url: str) -> None:
    """The floor: bolt's AsyncApp behind aiohttp, checking the signature the
    way bolt does and acking every command, event and action at once."""
    from aiohttp import web
    from slack_bolt.adapter.aiohttp import to_aiohttp_response
    from slack_bolt.async_app import AsyncApp
    from slack_bolt.request.async_request import AsyncBoltRequest
    from slack_sdk.web.async_client import AsyncWebClient

    app = AsyncApp(
        client=AsyncWebClient(token=BOT_TOKEN, base_url=slack_api_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=False,
    )

    async def ack_only(ack: Any) -> None:
        await ack()

    app.command("/imagine")(ack_only)
    app.action(re.compile(".*"))(ack_only)  # the result buttons of --probe-kinds mixed

    async def handle(request: web.Request) -> web.Response:
        body = await request.text()
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    runner = await serve_until_stdin_closes(handle)
    await runner.cleanup()


# --------------------------------------------------------------- the sender process


async def run_sender(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """Send `spec["requests"]` to `spec["url"]`, signed, and time each ack.

    mode "together": all at once; "paced": request i leaves at i * interval
    whatever the acks do; "per_user": each user's requests back to back."""
    import aiohttp

    url, requests, mode = spec["url"], spec["requests"], spec["mode"]
    results: list[dict[str, Any]] = []

    async def send(http: aiohttp.ClientSession, r: dict[str, Any]) -> None:
        body = _click_body(r) if r.get("action") else urlencode(
            {
                "team_id": TEAM_ID,
                "channel_id": CHANNEL,
                "user_id": r["user"],
                "user_name": r["user"].lower(),
                "command": "/imagine",
                "text": r["text"],
                "response_url": r["response_url"],
                "trigger_id": f"{r['seq']}.bench",
                "api_app_id": "A0BENCH",
            }
        )
        ts = str(int(time.time()))
        digest = hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": ts,
            "X-Slack-Signature": f"v0={digest}",
        }
        started = time.perf_counter()
        async with http.post(url, data=body, headers=headers) as resp:
            text = await resp.text()
        results.append({"seq": r["seq"], "seconds": time.perf_counter() - started, "status": resp.status, "text": text,
                        "kind": r.get("action") or "command"})  # fmt: skip

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        if mode == "together":
            await asyncio.gather(*(send(http, r) for r in requests))
        elif mode == "paced":
            started, tasks = time.perf_counter(), []
            for i, r in enumerate(requests):
                await asyncio.sleep(max(0.0, started + i * spec["interval"] - time.perf_counter()))
                tasks.append(asyncio.create_task(send(http, r)))
            await asyncio.gather(*tasks)
        else:
            by_user: dict[str, list[dict[str, Any]]] = {}
            for r in requests:
                by_user.setdefault(r["user"], []).append(r)

            async def one_user(rs: list[dict[str, Any]]) -> None:
                for r in rs:
                    await send(http, r)

            await asyncio.gather(*(one_user(rs) for rs in by_user.values()))
    return results


def _click_body(r: dict[str, Any]) -> str:
    """A click on one of the buttons under a result, as Slack posts it (block_actions)."""
    payload = {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "bench"},
        "user": {"id": r["user"], "team_id": TEAM_ID, "name": r["user"].lower()},
        "api_app_id": "A0BENCH",
        "trigger_id": f"{r['seq']}.bench-click",
        "container": {"type": "message", "message_ts": r["ts"], "channel_id": CHANNEL, "is_ephemeral": False},
        "channel": {"id": CHANNEL, "name": "bench"},
        "message": {"type": "message", "ts": r["ts"], "text": "buttons"},
        "response_url": r["response_url"],
        "actions": [{"action_id": f"imagine_{r['action']}", "block_id": "b", "type": "button", "value": r["job_id"],
                     "action_ts": "1.1"}],
    }  # fmt: skip
    return urlencode({"payload": json.dumps(payload)})


# --------------------------------------------------------------- the driver


@dataclass
class Bot:
    proc: asyncio.subprocess.Process
    url: str

    async def stop(self) -> None:
        """Close the bot's stdin and wait while it finishes; the fakes keep serving."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await asyncio.wait_for(self.proc.wait(), 300)


async def start_bot(slack: FakeSlack, openai: FakeOpenAI, db_path: str, overrides: dict[str, Any]) -> Bot:
    return await _serve("--serve-bot", slack.api_url, openai.base_url, db_path, json.dumps(overrides))


async def start_floor(slack: FakeSlack) -> Bot:
    """The bare bolt app of `--floor` (see run_bare)."""
    return await _serve("--serve-bare", slack.api_url)


async def _serve(*args: str) -> Bot:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT,
    )
    assert proc.stdout is not None
    line = (await proc.stdout.readline()).decode().split()
    if not line or line[0] != "ready":
        raise SystemExit("the bot process did not start")
    return Bot(proc, f"http://127.0.0.1:{line[1]}/slack/events")


class Commands:
    """The /imagine commands of one scenario: who, what, and their response_url."""

    def __init__(self, slack: FakeSlack) -> None:
        self.slack = slack
        self.all: list[dict[str, Any]] = []

    def make(self, user: str, text: str) -> dict[str, Any]:
        r = {"seq": len(self.all), "user": user, "text": text, "response_url": self.slack.response_url()}
        self.all.append(r)
        return r

    def click(self, user: str, action: str, job_id: str, ts: str) -> dict[str, Any]:
        """A button click under the result of job `job_id` (message `ts`)."""
        r = self.make(user, "")
        r.update(action=action, job_id=job_id, ts=ts)
        return r

    async def send(self, bot: Bot, requests: list[dict[str, Any]], mode: str, interval: float = 0.0) -> list[dict[str, Any]]:
        spec = {"url": bot.url, "requests": requests, "mode": mode, "interval": interval}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--send", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, cwd=ROOT
        )
        out, _ = await proc.communicate(json.dumps(spec).encode())
        return json.loads(out)


def percentiles(results: list[dict[str, Any]]) -> dict[str, float]:
    ms = sorted(r["seconds"] * 1000 for r in results)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50": q[49], "p90": q[89], "p99": q[98], "max": ms[-1]}


def show(label: str, stats: dict[str, float]) -> None:
    print(f"  {label:<34} n={stats['n']:<5.0f} p50={stats['p50']:6.1f} ms  p90={stats['p90']:6.1f} ms  "
          f"p99={stats['p99']:6.1f} ms  max={stats['max']:6.1f} ms")


def show_floor(bot: dict[str, float], floor: dict[str, float]) -> None:
    show("floor: bare bolt, same requests", floor)
    print(f"  bot over floor: p50 {bot['p50'] / floor['p50']:.2f}x, p99 {bot['p99'] / floor['p99']:.2f}x")


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.1)
    return predicate()


async def warm_up(bot: Bot, slack: FakeSlack, commands: Commands, floor: Bot | None = None) -> None:
    """One command first: bolt calls auth.test once, on its first request."""
    await commands.send(bot, [commands.make("UWARMUP", "warm up")], "together")
    await wait_for(lambda: len(slack.completed_uploads()) == 1, 30)
    if floor is not None:
        await commands.send(floor, [{"seq": -1, "user": "UWARMUP", "text": "warm up", "response_url": slack.response_url()}], "together")


def result_buttons(slack: FakeSlack) -> tuple[str, str]:
    """(job id, message ts) of the first buttons message the bot posted under a result."""
    for message in slack.messages:
        for block in message.blocks or []:
            if block.get("type") == "actions":
                return str(block["elements"][0]["value"]), message.ts
    raise SystemExit("the warm-up result has no buttons")


def probe_requests(commands: Commands, count: int, kinds: str, job_id: str, ts: str) -> list[dict[str, Any]]:
    """`kinds`: "commands" (/imagine only) or "mixed" (in turn: /imagine, an
    Again click, an Info click under the warm-up result)."""
    made = []
    for i in range(count):
        kind = "command" if kinds == "commands" else ("command", "again", "info")[i % 3]
        if kind == "command":
            made.append(commands.make(f"UPROBE{i:04d}", f"probe fox {i}"))
        else:
            made.append(commands.click(f"UPROBE{i:04d}", kind, job_id, ts))
    return made


async def scenario_in_flight(args: argparse.Namespace, tmp: str) -> None:
    # By default every job is really in flight at the model (no queueing in
    # the core); --model-slots caps concurrent calls as production would.
    # Probing lasts until well after the burst's model calls return, so that
    # the probes also meet the storm of results being uploaded.
    probe_count = args.probes or int((args.latency + 3) / args.interval)
    slots = args.model_slots or (args.jobs + probe_count) * 2
    overrides = {
        "openai": {"max_concurrent_calls": slots, "timeout_seconds": 120, "images_per_minute": 1_000_000},
        "limits": {"daily_images_per_user": 1000},
        "server": {"max_background_tasks": (args.jobs + probe_count) * 4},
    }
    async with FakeSlack() as slack, FakeOpenAI(latency=args.latency) as openai:
        bot = await start_bot(slack, openai, os.path.join(tmp, "inflight.db"), overrides)
        floor = await start_floor(slack) if args.floor else None
        commands = Commands(slack)
        await warm_up(bot, slack, commands, floor)
        burst = await commands.send(bot, [commands.make(f"UBURST{i:04d}", f"burst fox {i}") for i in range(args.jobs)], "together")
        all_in_flight = await wait_for(lambda: openai.in_flight >= min(args.jobs, slots), 30)
        at_start, delivered_before = openai.in_flight, len(slack.completed_uploads())
        job_id, ts = result_buttons(slack)
        sent = probe_requests(commands, probe_count, args.probe_kinds, job_id, ts)
        if floor is None:
            probes = await commands.send(bot, sent, "paced", args.interval)
        else:  # the same probes, at the same moments, to the bare app (which acks commands and clicks alike)
            probes, floor_probes = await asyncio.gather(
                commands.send(bot, sent, "paced", args.interval),
                commands.send(floor, [dict(r, response_url=slack.response_url()) for r in sent], "paced", args.interval),
            )
        at_end, delivered_during = openai.in_flight, len(slack.completed_uploads()) - delivered_before
        expected = sum(1 for r in commands.all if r.get("action") in (None, "again"))  # each makes one upload
        await wait_for(lambda: len(slack.completed_uploads()) >= expected, 600)
        delivered = len(slack.completed_uploads())
        await bot.stop()
        if floor is not None:
            await floor.stop()

    queueing = f", at most {slots} model calls at a time" if args.model_slots else ""
    print(f"\nScenario 1: {args.jobs} jobs in flight against the fake OpenAI ({args.latency:g} s per call{queueing})")
    show(f"burst acks ({args.jobs} at once)", percentiles(burst))
    show(f"probe acks (1 every {args.interval * 1000:g} ms)", percentiles(probes))
    if args.probe_kinds == "mixed":
        for kind, label in (("command", "/imagine"), ("again", "Again clicks"), ("info", "Info clicks")):
            show(f"  of which {label}", percentiles([p for p in probes if p["kind"] == kind]))
    if floor is not None:
        show_floor(percentiles(probes), percentiles(floor_probes))
    print(f"  model calls in flight: {min(args.jobs, slots)} of the burst before probing: {all_in_flight}; "
          f"{at_start} when probing began, {at_end} when it ended; peak {openai.max_in_flight}")
    print(f"  results uploaded while probing: {delivered_during}")
    statuses = sorted({r["status"] for r in [*burst, *probes]})
    print(f"  HTTP statuses: {statuses}; results delivered: {delivered}/{expected}")


async def scenario_flood(args: argparse.Namespace, tmp: str) -> None:
    overrides = {
        "openai": {"max_concurrent_calls": 400, "timeout_seconds": 120, "images_per_minute": 1_000_000},
        "limits": {"daily_images_per_user": args.daily_limit, "max_jobs_in_flight_per_user": 10},
        "server": {"max_background_tasks": 2000},
    }
    db_path = os.path.join(tmp, "flood.db")
    rng = random.Random(7)
    async with FakeSlack() as slack, FakeOpenAI(latency=args.latency) as openai:
        bot = await start_bot(slack, openai, db_path, overrides)
        floor = await start_floor(slack) if args.floor else None
        commands = Commands(slack)
        await warm_up(bot, slack, commands, floor)
        flood = [
            commands.make(f"UFLOOD{u:03d}", f"flood fox u{u} r{k} --n {rng.choice((1, 2))}")
            for k in range(args.flood_per_user)
            for u in range(args.flood_users)
        ]
        started = time.perf_counter()
        mode, interval = ("paced", 1 / args.flood_rate) if args.flood_rate else ("per_user", 0.0)
        if floor is None:
            acks = await commands.send(bot, flood, mode, interval)
        else:  # the same flood, at the same time, to the bare app
            acks, floor_acks = await asyncio.gather(commands.send(bot, flood, mode, interval), commands.send(floor, flood, mode, interval))
        send_seconds = time.perf_counter() - started
        ack_text = {a["seq"]: a["text"] for a in acks}

        def outcomes() -> dict[int, int]:
            """Per request: images posted + private answers (ack text or response_url)."""
            by_prompt = {r["text"].split(" --")[0]: r["seq"] for r in flood}
            by_url = {r["response_url"].rsplit("/", 1)[-1]: r["seq"] for r in flood}
            count = {r["seq"]: int(bool(ack_text.get(r["seq"], "").strip())) for r in flood}
            for upload in slack.completed_uploads():
                prompt = upload.params.get("initial_comment", "").split("“", 1)[-1].split("”", 1)[0]
                if prompt in by_prompt:
                    count[by_prompt[prompt]] += 1
            for rid, bodies in slack.responses.items():
                if rid in by_url:
                    count[by_url[rid]] += len(bodies)
            return count

        await wait_for(lambda: all(v >= 1 for v in outcomes().values()), 180)
        final = outcomes()
        uploaded: dict[str, int] = {}
        for upload in slack.completed_uploads():
            who = upload.params.get("initial_comment", "").split(">", 1)[0].removeprefix("<@")
            uploaded[who] = uploaded.get(who, 0) + len(json.loads(upload.params["files"]))
        await bot.stop()
        if floor is not None:
            await floor.stop()

    with sqlite3.connect(db_path) as db:
        ledger = dict(db.execute(
            "SELECT user_key, SUM(images) FROM jobs WHERE user_key LIKE '%:UFLOOD%' AND status = 'succeeded' GROUP BY user_key"
        ).fetchall())
        by_outcome = dict(db.execute(
            "SELECT COALESCE(error_code, status), COUNT(*) FROM jobs WHERE user_key LIKE '%:UFLOOD%' GROUP BY 1"
        ).fetchall())
    flood_uploaded = {u: n for u, n in uploaded.items() if u.startswith("UFLOOD")}
    refused_privately = sum(1 for r in flood if slack.responses_to(r["response_url"]))
    pace = f"{args.flood_rate:g} requests/s, open loop" if args.flood_rate else "each user back to back, closed loop"
    print(f"\nScenario 2: {len(flood)} requests from {args.flood_users} users ({pace}), daily limit {args.daily_limit}, "
          f"{args.latency:g} s per model call")
    show("acks", percentiles(acks))
    if floor is not None:
        show_floor(percentiles(acks), percentiles(floor_acks))
    print(f"  sent in {send_seconds:.1f} s; HTTP statuses: {sorted({a['status'] for a in acks})}")
    print(f"  images per user: max {max(ledger.values(), default=0)} in the ledger, max {max(flood_uploaded.values(), default=0)} "
          f"uploaded to Slack; {len(flood_uploaded)} users got images, {sum(flood_uploaded.values())} images in all")
    print(f"  jobs by outcome: {by_outcome}; requests answered privately: {refused_privately}")
    lost = sum(1 for v in final.values() if v == 0)
    print(f"  lost outcomes: {lost}; requests with more than one outcome: {sum(1 for v in final.values() if v > 1)}")


async def main(args: argparse.Namespace) -> None:
    if args.pin:
        # The bot alone on CPU 0; the fakes, the driver and the sender on the
        # others: the fakes' work (Slack and OpenAI are not on the bot's
        # machine in production) must not be billed to the bot.
        cpus = sorted(os.sched_getaffinity(0))
        os.environ["BENCH_BOT_CPUS"] = str(cpus[0])
        os.sched_setaffinity(0, set(cpus[1:]))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "in-flight"):
            await scenario_in_flight(args, tmp)
        if args.only in (None, "flood"):
            await scenario_flood(args, tmp)


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=200)
    p.add_argument("--probes", type=int, default=0, help="0 = as many as last (latency + 3) s")
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--latency", type=float, default=5.0)
    p.add_argument("--probe-kinds", choices=("commands", "mixed"), default="mixed",
                   help="scenario 1 probes: /imagine only, or /imagine, Again and Info clicks in turn")
    p.add_argument("--model-slots", type=int, default=0, help="openai.max_concurrent_calls in scenario 1 (0 = no queueing)")
    p.add_argument("--flood-users", type=int, default=100)
    p.add_argument("--flood-per-user", type=int, default=10)
    p.add_argument("--daily-limit", type=int, default=5)
    p.add_argument("--flood-rate", type=float, default=0.0, help="requests/s in scenario 2 (0 = closed loop)")
    p.add_argument("--pin", action="store_true", help="bot on the first CPU, fakes and sender on the others")
    p.add_argument("--only", choices=("in-flight", "flood"), help="run one scenario")
    p.add_argument("--floor", action="store_true", help="also send the same requests to a bare bolt app (see above)")
    return p.parse_args()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--serve-bot":
        slack_api_url, openai_url, db_path, overrides = sys.argv[2:6]
        asyncio.run(run_bot(slack_api_url, openai_url, db_path, json.loads(overrides)))
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-bare":
        asyncio.run(run_bare(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--send":
        print(json.dumps(asyncio.run(run_sender(json.load(sys.stdin)))))
    else:
        asyncio.run(main(parse()))
