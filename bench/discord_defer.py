"""Discord defer latency under load.

Measures the time from an interaction being dispatched on the (fake) gateway
to its defer callback arriving at the (fake) Discord REST API, while a few
hundred image jobs are in flight against the fake OpenAI (5 s each).
Discord gives a bot 3 seconds; the target is p99 ≤ 100 ms on 2 cores.

Two processes, as in production the bot has its own:
- this one runs the fake Discord (REST + gateway + CDN) and the fake OpenAI,
  fires the interactions and takes both timestamps (one clock);
- a child process runs the real bot: ImageService + DiscordAdapter on
  discord.py and the openai SDK, pointed at the fakes over loopback.

Load: /imagine commands from distinct users arrive at a fixed rate of
jobs/latency per second (40/s for 200 jobs of 5 s), which by Little's law
keeps `--jobs` jobs in flight: the first `--jobs` arrivals ramp up, then
`--duration` seconds are measured in the steady state, while results upload
and progress messages are edited. Every arrival's latency is recorded; the
steady-state figures are the headline.

With `--probe-kinds mixed` (the default) the steady-state arrivals are, in
turn, an /imagine, an Again click and an Info click under one result (button
interactions as Discord sends them, with the message), each timed to its defer.

Usage:
    .venv/bin/python bench/discord_defer.py [--jobs 200] [--latency 5] [--duration 15]
        [--max-concurrent-calls N] [--gc-freeze] [--trace] [--probe-kinds commands|mixed]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.discord_server import FakeDiscord, FakeInteraction, button_custom_ids  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

TOKEN = "fake-discord-token"
USER_BASE = 710_000_000_000_000_000  # one user per job: the per-user cap on running jobs stays out of the way
OPENAI_KEY = "sk-bench-fake-not-a-real-key"


# --------------------------------------------------------------- the bot process


async def run_bot(
    api_url: str, openai_url: str, db_path: str, jobs: int, slots: int, gc_freeze: bool, trace_path: str | None
) -> None:
    from bots.discord import DiscordAdapter
    from core.config import config_from_mapping
    from core.provider import OpenAIProvider, make_client
    from core.service import ImageService

    config = config_from_mapping(
        {
            "openai": {"max_concurrent_calls": slots, "timeout_seconds": 120, "images_per_minute": 1_000_000},
            "limits": {"daily_images_per_user": 1000},
            "server": {"max_background_tasks": 5000},
        },
        source="bench",
    )
    client = make_client(OPENAI_KEY, base_url=openai_url, timeout_seconds=config.openai.timeout_seconds)
    service = await ImageService.open(config, db_path, OpenAIProvider(client, config))
    adapter = DiscordAdapter(service, config, token=TOKEN, api_url=api_url)
    await adapter.start()
    if gc_freeze:
        # Moves the long-lived objects (imported modules, SDK clients) out of
        # the collector's reach: a full collection then takes ~20-50 ms, not ~100.
        gc.freeze()
    tracer = Tracer() if trace_path else None
    print("ready", flush=True)
    # Runs until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    if tracer is not None and trace_path:
        tracer.save(trace_path)
    await adapter.close(grace_seconds=0)
    await service.close()


class Tracer:
    """--trace: where the bot's event loop stalls (a stall delays every defer
    queued behind it), and which of those stalls were garbage collections."""

    def __init__(self) -> None:
        self.lags: list[tuple[float, float]] = []
        self.gcs: list[tuple[float, float, int]] = []
        self._gc_start = 0.0
        gc.callbacks.append(self._on_gc)
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.005)
            lag = time.perf_counter() - t - 0.005
            if lag > 0.01:
                self.lags.append((t, lag))

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.gcs.append((self._gc_start, time.perf_counter() - self._gc_start, info["generation"]))

    def save(self, path: str) -> None:
        Path(path).write_text(json.dumps({"lags": self.lags, "gcs": self.gcs, "cpu_seconds": time.process_time()}))


# --------------------------------------------------------------- the driver


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def summary(name: str, latencies_ms: list[float]) -> dict[str, float | int | str]:
    return {
        "phase": name,
        "n": len(latencies_ms),
        "p50_ms": round(percentile(latencies_ms, 50), 1),
        "p90_ms": round(percentile(latencies_ms, 90), 1),
        "p99_ms": round(percentile(latencies_ms, 99), 1),
        "max_ms": round(max(latencies_ms), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
    }


def user_id(n: int) -> str:
    return str(USER_BASE + n)


def latency_ms(ix: FakeInteraction) -> float:
    return (ix.callbacks[0].received_at - ix.dispatched_at) * 1000


async def drive(args: argparse.Namespace) -> None:
    async with FakeOpenAI(latency=args.latency) as openai_fake, FakeDiscord(token=TOKEN) as discord_fake:
        for i in range(args.jobs + int(args.jobs / args.latency * args.duration)):
            discord_fake.add_user(user_id(i), f"user{i}")
        with tempfile.TemporaryDirectory() as tmp:
            trace_file = os.path.join(tmp, "trace.json")
            bot = subprocess.Popen(
                [sys.executable, __file__, "--bot", "--api-url", discord_fake.api_base, "--openai-url",
                 openai_fake.base_url, "--db", os.path.join(tmp, "bench.db"), "--jobs", str(args.jobs),
                 "--max-concurrent-calls", str(args.max_concurrent_calls),
                 *(["--gc-freeze"] if args.gc_freeze else []),
                 *(["--trace-file", trace_file] if args.trace else [])],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT, text=True,
            )
            try:
                await asyncio.wait_for(asyncio.to_thread(bot.stdout.readline), 60)  # type: ignore[union-attr]
                await discord_fake.wait_connected(timeout=60)
                warm = await discord_fake.send_slash_command("imagine", {"prompt": "warm up", "quality": "low"}, user_id=user_id(10**6))
                result = await discord_fake.wait_for_result(warm, timeout=60)
                results = await measure(args, openai_fake, discord_fake, result)
            finally:
                bot.stdin.close()  # type: ignore[union-attr]
                await asyncio.to_thread(bot.wait, 60)
            report(args, results)
            if args.trace:
                print_trace(json.loads(Path(trace_file).read_text()), results)


async def arrive(
    args: argparse.Namespace, discord_fake: FakeDiscord, i: int, steady: bool, result: dict[str, object]
) -> FakeInteraction:
    """Arrival `i`: an /imagine; in the steady phase with `--probe-kinds mixed`,
    in turn an /imagine, an Again click and an Info click under a result."""
    kind = ("command", "again", "info")[i % 3] if steady and args.probe_kinds == "mixed" else "command"
    if kind == "command":
        return await discord_fake.send_slash_command("imagine", {"prompt": f"bench job {i}", "quality": "low"}, user_id=user_id(i))
    (custom_id,) = [c for c in button_custom_ids(result) if c.split(":")[1] == kind]
    return await discord_fake.click_button(result, custom_id, user_id=user_id(i))


def kind_of(ix: FakeInteraction) -> str:
    return ix.payload["data"].get("custom_id", "imagine:command").split(":")[1] if ix.type == 3 else "command"


async def measure(
    args: argparse.Namespace, openai_fake: FakeOpenAI, discord_fake: FakeDiscord, result: dict[str, object]
) -> dict[str, object]:
    rate = args.jobs / args.latency  # Little's law: this arrival rate keeps `jobs` in flight
    ramp_n = args.jobs
    total = ramp_n + int(rate * args.duration)
    interactions: list[FakeInteraction] = []
    in_flight_seen: list[int] = []
    start = time.perf_counter()
    for i in range(total):
        # A fixed schedule, not sleeps between sends: the rate holds even if a send is slow.
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if i >= ramp_n:
            in_flight_seen.append(openai_fake.in_flight)
        interactions.append(await arrive(args, discord_fake, i, i >= ramp_n, result))
    await discord_fake.wait_until(lambda: all(ix.callbacks for ix in interactions), timeout=120)
    if args.max_concurrent_calls >= args.jobs:
        await discord_fake.wait_until(
            lambda: all(ix.original and ix.original["attachments"] for ix in interactions if kind_of(ix) != "info"),
            timeout=args.latency * 4 + 120,
        )
    ramp, steady = interactions[:ramp_n], interactions[ramp_n:]
    worst = sorted(steady, key=latency_ms)[-5:]
    return {
        "measure_start": start,
        "wall_seconds": time.perf_counter() - start,
        "driver_cpu_seconds": time.process_time(),
        "worst_arrivals": [(ix.dispatched_at - start, latency_ms(ix)) for ix in worst],
        "ramp_latency": summary(f"ramp to {args.jobs}", [latency_ms(ix) for ix in ramp]),
        "steady_latency": summary(f"with {args.jobs} in flight", [latency_ms(ix) for ix in steady]),
        **{
            f"steady_{kind}": summary(f"  of which {label}", [latency_ms(ix) for ix in steady if kind_of(ix) == kind])
            for kind, label in (("command", "/imagine"), ("again", "Again clicks"), ("info", "Info clicks"))
            if args.probe_kinds == "mixed"
        },
        "arrivals_per_second": round(rate, 1),
        "in_flight_min": min(in_flight_seen),
        "in_flight_max": max(in_flight_seen),
        "progress_edits": sum(1 for r in discord_fake.requests if r.method == "PATCH" and not r.files),
        "results_delivered": sum(1 for ix in interactions if ix.original and ix.original["attachments"]),
        "failed_requests": sum(1 for r in discord_fake.requests if r.status >= 400),
    }


def report(args: argparse.Namespace, results: dict[str, object]) -> None:
    machine = f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"machine: {machine}")
    print(
        f"settings: jobs={args.jobs} duration={args.duration}s model latency={args.latency}s "
        f"arrivals={results['arrivals_per_second']}/s max_concurrent_calls={args.max_concurrent_calls} "
        f"gc.freeze()={'yes' if args.gc_freeze else 'no'}"
    )
    print(f"{'phase':<24}{'n':>6}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}{'mean':>9}  (ms, dispatch → defer at the fake)")
    for key in ("ramp_latency", "steady_latency", "steady_command", "steady_again", "steady_info"):
        if key not in results:
            continue
        row = results[key]
        assert isinstance(row, dict)
        print(f"{row['phase']:<24}{row['n']:>6}{row['p50_ms']:>9}{row['p90_ms']:>9}{row['p99_ms']:>9}{row['max_ms']:>9}{row['mean_ms']:>9}")
    print(f"model calls in flight while measuring: {results['in_flight_min']}–{results['in_flight_max']}")
    print(
        f"results delivered: {results['results_delivered']}; progress edits: {results['progress_edits']}; "
        f"failed requests at the fake: {results['failed_requests']}"
    )
    public = {k: v for k, v in results.items() if k not in ("measure_start", "worst_arrivals", "wall_seconds", "driver_cpu_seconds")}
    print(json.dumps({"machine": machine, **{k: v for k, v in vars(args).items() if not k.endswith(("_url", "_file")) and k not in ("bot", "db")}, **public}))


def print_trace(trace: dict[str, list[list[float]]], results: dict[str, object]) -> None:
    start = float(results["measure_start"])  # type: ignore[arg-type]
    lags = sorted(trace["lags"], key=lambda x: -x[1])[:10]
    gcs = sorted(trace["gcs"], key=lambda x: -x[1])[:5]
    print("worst loop stalls (s after start: ms):", ", ".join(f"{t - start:.2f}: {lag * 1000:.0f}" for t, lag in lags))
    print("worst GC pauses (s after start: ms, generation):", ", ".join(f"{t - start:.2f}: {d * 1000:.0f}, gen {g:.0f}" for t, d, g in gcs))
    print(
        f"CPU time over {results['wall_seconds']:.1f} s of load: bot {trace['cpu_seconds']:.1f} s, "
        f"fakes {results['driver_cpu_seconds']:.1f} s"
    )
    worst = results["worst_arrivals"]
    assert isinstance(worst, list)
    print("worst arrivals (s after start: ms):", ", ".join(f"{t:.2f}: {ms:.0f}" for t, ms in worst))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200, help="jobs kept in flight")
    parser.add_argument("--latency", type=float, default=5.0, help="seconds each fake model call takes")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured once the jobs are in flight")
    parser.add_argument(
        "--max-concurrent-calls", type=int, default=0,
        help="the core's [openai] max_concurrent_calls; default: --jobs, so every job is at the model at once "
        "(4 as shipped: the rest wait in the bot's queue)",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true",
        help="gc.freeze() in the bot once started (bots/runner.py does not, yet): shorter full collections",
    )
    parser.add_argument(
        "--probe-kinds", choices=("commands", "mixed"), default="mixed",
        help="steady-phase arrivals: /imagine only, or /imagine, an Again click and an Info click in turn",
    )
    parser.add_argument("--trace", action="store_true", help="also print the bot's worst event-loop stalls and GC pauses")
    parser.add_argument("--bot", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--trace-file", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--openai-url", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.max_concurrent_calls = args.max_concurrent_calls or args.jobs
    if args.bot:
        asyncio.run(
            run_bot(
                args.api_url, args.openai_url, args.db, args.jobs, args.max_concurrent_calls, args.gc_freeze,
                args.trace_file,
            )
        )
    else:
        started = time.perf_counter()
        asyncio.run(drive(args))
        print(f"took {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
