"""A burst from many members against an account's images-per-minute limit
(issue 15): does every job complete, at the account's pace, fairly, without
a 429 storm?

The fake OpenAI is limited to `--limit` images per sliding window of
`--window` seconds. Time is scaled: the default 6-second window stands for
OpenAI's minute, so 20 images per 6 s is a tier-2 account's 20 images a
minute run ten times faster (the bot's `rate_window_seconds` is set to the
same window, which is all it needs to know). `--users` members each ask
`--jobs` one-image jobs, all at the same instant, each member's jobs one
after the other in the submission order (first-come-first-served would
serve a member's second job before the next member's first).

Two runs, side by side on one machine: the limit configured
(`images_per_minute = --limit`) and learned (`images_per_minute = 0`:
start at 5, grow while calls succeed, read the limit from the first 429).

Figures:
- jobs completed (target 100 %) and user-visible failures (target 0);
- the pace achieved while the backlog exists: images the fake admitted per
  window, the mean over every window that starts at an admission and ends
  before the last one, as a share of the limit (target ≥ 95 %); for the
  learned run also over the windows from half a window after its first 429;
- fairness: each member's wait for their first image (from the burst to the
  result), longest, median and shortest, longest over shortest, and how many
  second images came before the last first image (round-robin: 0);
- 429s: all of them, and those after the limit was learned (from half a
  window after the first 429 on), as a share of the calls made then (target
  < 5 %).

Usage:
    .venv/bin/python bench/ratelimit.py [--users 50] [--jobs 2] [--limit 20] [--window 6] [--latency 0.3]
        [--db sqlite|postgresql://…] [--only configured|learned] [--core-from /path/to/other/checkout]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fakes.openai_server import FakeOpenAI  # noqa: E402  (always this tree's fake: it has the rate-limit mode)

# --core-from DIR: the bot's core from another checkout (e.g. before pacing),
# against the same fake. Read before anything imports core.
if "--core-from" in sys.argv:
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--core-from") + 1]).resolve()))

from core.config import config_from_mapping  # noqa: E402
from core.errors import ImagineError  # noqa: E402
from core.models import ImageOptions, Requester  # noqa: E402
from core.provider import OpenAIProvider, make_client  # noqa: E402
from core.service import ImageService  # noqa: E402


@dataclass
class Run:
    name: str
    jobs: int
    completed: int
    failures: list[str]
    pace_share: float
    pace_share_learned: float
    first_waits: list[float]
    seconds_before_last_first: int
    refused: int
    refused_after_learning: int
    calls_after_learning: int
    learned: float
    seconds: float


def windows_mean(admitted: list[tuple[float, int]], window: float, since: float = 0.0) -> float:
    """Mean images per window over the windows that start at an admission
    (from `since` on) and end before the last admission (the backlog still exists)."""
    if not admitted:
        return float("nan")
    last = admitted[-1][0]
    counts = [
        sum(n for at, n in admitted if start <= at < start + window)
        for start, _ in admitted
        if since <= start and start + window <= last
    ]
    return statistics.mean(counts) if counts else float("nan")


async def one_run(name: str, args: argparse.Namespace, images_per_minute: int, db: str) -> Run:
    async with FakeOpenAI(latency=args.latency) as fake:
        mode = fake.limit_rate(args.limit, args.window)
        paced = {"images_per_minute": images_per_minute, "rate_window_seconds": args.window, "max_queue_wait_seconds": 600}
        config = config_from_mapping({
            "openai": {"max_concurrent_calls": 16, **({} if args.core_from else paced)},
            "limits": {"daily_images_per_user": 100, "max_jobs_in_flight_per_user": args.jobs},
        })  # fmt: skip
        client = make_client("sk-bench", base_url=fake.base_url, timeout_seconds=60)
        service = await ImageService.open(config, db, OpenAIProvider(client, config))
        first_done: dict[str, float] = {}
        order: list[tuple[str, int]] = []
        failures: list[str] = []
        started = time.monotonic()

        async def one(user: int, job: int) -> None:
            requester = Requester(platform="slack", workspace="T1", user=f"U{user:03}", channel="C1")
            try:
                await service.generate(requester, f"member {user} job {job}", ImageOptions(quality="low"))
            except ImagineError as e:
                failures.append(f"{requester.user}: {e.code}")
                return
            order.append((requester.user, job))
            first_done.setdefault(requester.user, time.monotonic() - started)

        await asyncio.gather(*(one(u, j) for u in range(args.users) for j in range(args.jobs)))
        seconds = time.monotonic() - started
        pace = await service.pace() if hasattr(service, "pace") else None
        await service.close()

    # A member's first image is whichever of their jobs got its turn first
    # (on PostgreSQL their reservations may land in either order).
    seen: set[str] = set()
    nth = []
    for user, _ in order:
        nth.append(user in seen)
        seen.add(user)
    last_first = max((i for i, again in enumerate(nth) if not again), default=0)
    seconds_early = sum(1 for again in nth[:last_first] if again)
    first_refusal = mode.refused[0][0] if mode.refused else None
    learned_at = 0.0
    if images_per_minute or first_refusal is None or args.core_from:
        after, calls_after = len(mode.refused), len(mode.admitted) + len(mode.refused)
    else:
        learned_at = first_refusal + args.window / 2
        after = sum(1 for at, _ in mode.refused if at > learned_at)
        calls_after = after + sum(1 for at, _ in mode.admitted if at > learned_at)
    return Run(
        name=name,
        jobs=args.users * args.jobs,
        completed=len(order),
        failures=failures,
        pace_share=windows_mean(mode.admitted, args.window) / args.limit,
        pace_share_learned=windows_mean(mode.admitted, args.window, since=learned_at) / args.limit,
        first_waits=sorted(first_done.values()),
        seconds_before_last_first=seconds_early,
        refused=len(mode.refused),
        refused_after_learning=after,
        calls_after_learning=calls_after,
        learned=pace.images_per_minute if pace is not None else float("nan"),
        seconds=seconds,
    )


def report(runs: list[Run], args: argparse.Namespace) -> None:
    print(f"{args.users} members x {args.jobs} jobs at once; fake limited to {args.limit} images per {args.window:g} s "
          f"window (= {args.limit}/min, time x{60 / args.window:g}); model latency {args.latency:g} s; db {args.db}")  # fmt: skip
    rows: list[tuple[str, ...]] = [("", *(r.name for r in runs))]

    def row(label: str, fmt: Any) -> None:
        rows.append((label, *(fmt(r) for r in runs)))

    row("jobs completed", lambda r: f"{r.completed}/{r.jobs} ({100 * r.completed / r.jobs:.0f} %)")
    row("user-visible failures", lambda r: str(len(r.failures)))
    row("pace while backlogged (of limit)", lambda r: f"{100 * r.pace_share:.1f} %")
    row("  the same, once learned", lambda r: f"{100 * r.pace_share_learned:.1f} %")
    row("limit at the end (per window)", lambda r: f"{r.learned:g}")
    def waits(fmt: Any) -> Any:
        return lambda r: fmt(r) if r.first_waits else "-"

    row("first-image wait: longest", waits(lambda r: f"{r.first_waits[-1]:.2f} s ({r.first_waits[-1] / args.window:.2f} windows)"))
    row("first-image wait: median", waits(lambda r: f"{statistics.median(r.first_waits):.2f} s"))
    row("first-image wait: shortest", waits(lambda r: f"{r.first_waits[0]:.3f} s"))
    row("longest / shortest", waits(lambda r: f"{r.first_waits[-1] / max(r.first_waits[0], 1e-9):.0f}x"))
    row("second images before the last first", lambda r: str(r.seconds_before_last_first))
    row("429s, all", lambda r: str(r.refused))
    row("429s after learning / calls then", lambda r: f"{r.refused_after_learning}/{r.calls_after_learning} "
        f"({100 * r.refused_after_learning / max(1, r.calls_after_learning):.1f} %)")  # fmt: skip
    row("run time", lambda r: f"{r.seconds:.1f} s")
    widths = [max(len(x[i]) for x in rows) for i in range(len(rows[0]))]
    for x in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(x, widths)))
    for r in runs:
        if r.failures:
            print(f"  {r.name} failures: {r.failures[:5]}")


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--window", type=float, default=6.0)
    p.add_argument("--latency", type=float, default=0.3, help="seconds each model call takes at the fake")
    p.add_argument("--db", default="sqlite", help="sqlite (a temporary file) or a postgresql:// URL (use an empty database)")
    p.add_argument("--only", choices=("configured", "learned"))
    p.add_argument("--core-from", help="run the core of another checkout (one run: it knows no pacing keys)")
    args = p.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, ipm in (("configured", args.limit), ("learned", 0)):
            if args.core_from:
                name = f"core of {args.core_from}"
            if (args.only and args.only != name) or (args.core_from and ipm == 0):
                continue
            db = str(Path(tmp) / f"{ipm}.db") if args.db == "sqlite" else args.db  # on PostgreSQL: --only, one run per empty database
            runs.append(await one_run(name, args, ipm, db))
    report(runs, args)


if __name__ == "__main__":
    asyncio.run(main())
