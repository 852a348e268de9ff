"""Ledger throughput and exactness.

1. Throughput: reserve+settle pairs per second in one process, through the
   Ledger's sync API run on the Store's own database thread (the way the
   service runs it), each pair two BEGIN IMMEDIATE transactions on a WAL
   database. Also the same pairs issued one `await store.run(...)` at a time
   from asyncio, which adds the thread hop the service pays. Target: ≥ 2,000
   pairs/s on 2 cores. The jobs table grows by 2 × `--pairs` rows a round,
   all on one day, spread over `--bench-users` users: the daily sums each
   reservation takes scan that user's rows of the day, so fewer users (more
   rows per user and day than any real limit allows) shows the cost of that
   scan.
2. Exactness: `--processes` OS processes hammer one database file, all
   started together, over `--users` users with a daily limit of `--limit`
   images each; every reservation is settled or refunded at random. Then the
   database is checked: images over a user's limit (over-limit) and refunds
   that did not stick or reservations left behind (lost refunds). Both must
   be 0.

Usage:
    .venv/bin/python bench/ledger.py [--pairs 5000] [--rounds 5] [--bench-users 1000] [--processes 4]
        [--users 20] [--limit 5] [--attempts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.config import Config, config_from_mapping  # noqa: E402
from core.errors import LimitReached  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from core.models import ImageOptions, Requester, Usage  # noqa: E402
from core.store import store_for  # noqa: E402

OPTIONS = ImageOptions(quality="medium")
USAGE = Usage(input_text_tokens=6, output_image_tokens=1756)


def _requester(user: int) -> Requester:
    return Requester(platform="slack", workspace="T1", user=f"U{user}")


def _pairs(ledger: Ledger, count: int, users: int, start: int) -> float:
    """`count` reserve+settle pairs; returns the seconds they took."""
    began = time.perf_counter()
    for i in range(start, start + count):
        reservation = ledger.reserve_sync(
            _requester(i % users), kind="generate", prompt=f"bench {i}", options=OPTIONS, model="gpt-image-2",
            units=1.0, usd=0.055,
        )
        ledger.settle_sync(
            reservation, usage=USAGE, cost_usd=0.05271, images=1, model="gpt-image-2", model_seconds=0.0, attempts=1
        )
    return time.perf_counter() - began


async def throughput(pairs: int, rounds: int, users: int) -> tuple[dict[str, list[float]], int]:
    # Limits high enough never to refuse: this measures the bookkeeping itself.
    config = config_from_mapping(
        {"limits": {"daily_images_per_user": 1_000_000_000, "max_jobs_in_flight_per_user": 1_000}}
    )
    results: dict[str, list[float]] = {"store thread loop": [], "await store.run per call": []}
    with tempfile.TemporaryDirectory() as tmp:
        store = store_for(os.path.join(tmp, "bench.db"))
        await store.open()
        ledger = Ledger(store, config)
        done = 0
        await store.run(_pairs, ledger, 200, users, done)  # warm-up: pages cached, statements compiled
        done += 200
        for _ in range(rounds):
            seconds = await store.run(_pairs, ledger, pairs, users, done)
            done += pairs
            results["store thread loop"].append(pairs / seconds)

            began = time.perf_counter()
            for i in range(done, done + pairs):
                requester = _requester(i % users)
                reservation = await store.run(
                    lambda r=requester, i=i: ledger.reserve_sync(  # type: ignore[misc]
                        r, kind="generate", prompt=f"bench {i}", options=OPTIONS, model="gpt-image-2", units=1.0, usd=0.055
                    )
                )
                await store.run(
                    lambda res=reservation: ledger.settle_sync(  # type: ignore[misc]
                        res, usage=USAGE, cost_usd=0.05271, images=1, model="gpt-image-2", model_seconds=0.0, attempts=1
                    )
                )
            done += pairs
            results["await store.run per call"].append(pairs / (time.perf_counter() - began))
        rows = await store.run(lambda: store.query("SELECT COUNT(*) AS n FROM jobs")[0]["n"])
        assert rows == done, (rows, done)
        await store.close()
    return results, rows


def hammer(db: str, limit: int, users: int, attempts: int, seed: int, barrier: Any, results: Any) -> None:
    """One of the processes of the exactness run."""
    config = config_from_mapping({"limits": {"daily_images_per_user": limit, "max_jobs_in_flight_per_user": 1_000}})
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config)
    ledger.heartbeat_sync()
    rng = random.Random(seed)
    settled: list[str] = []
    refunded: list[str] = []
    refused = 0
    barrier.wait()
    began = time.perf_counter()
    for i in range(attempts):
        try:
            reservation = ledger.reserve_sync(
                _requester(rng.randrange(users)), kind="generate", prompt=f"p{seed}-{i}", options=OPTIONS,
                model="gpt-image-2", units=1.0, usd=0.055,
            )
        except LimitReached:
            refused += 1
            continue
        if rng.random() < 0.5:
            if not ledger.refund_sync(reservation.job_id, error_code="bench"):
                raise AssertionError(f"refund of {reservation.job_id} did not apply")
            refunded.append(reservation.job_id)
        else:
            ledger.settle_sync(
                reservation, usage=USAGE, cost_usd=0.05271, images=1, model="gpt-image-2", model_seconds=0.0, attempts=1
            )
            settled.append(reservation.job_id)
    seconds = time.perf_counter() - began
    ledger.retire_sync()
    store.close_sync()
    results.put({"settled": settled, "refunded": refunded, "refused": refused, "seconds": seconds})


def exactness(processes: int, users: int, limit: int, attempts: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        db = os.path.join(tmp, "shared.db")
        store_for(db).open_sync()  # created once up front, as a running bot would have
        barrier, results = context.Barrier(processes), context.Queue()
        procs = [
            context.Process(target=hammer, args=(db, limit, users, attempts, seed, barrier, results))
            for seed in range(processes)
        ]
        for proc in procs:
            proc.start()
        reports = [results.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join(timeout=60)
        assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]

        conn = sqlite3.connect(db)
        jobs = {row[0]: row[1:] for row in conn.execute("SELECT id, user_key, status, units FROM jobs")}
        conn.close()
    settled = [job for r in reports for job in r["settled"]]
    refunded = [job for r in reports for job in r["refunded"]]
    units_per_user: Counter[str] = Counter()
    for user_key, _status, units in jobs.values():
        units_per_user[user_key] += units
    over_limit = sum(max(0.0, used - limit) for used in units_per_user.values())
    lost_refunds = sum(1 for job in refunded if jobs[job][1:] != ("failed", 0))
    left_reserved = sum(1 for _user, status, _units in jobs.values() if status == "reserved")
    settled_mismatch = sum(1 for job in settled if jobs[job][1:] != ("succeeded", 1.0))
    pairs = len(settled) + len(refunded)
    return {
        "reservations": pairs,
        "refused": sum(r["refused"] for r in reports),
        "settled": len(settled),
        "refunded": len(refunded),
        "users at their limit": sum(1 for used in units_per_user.values() if used == limit),
        "over-limit images": over_limit,
        "lost refunds": lost_refunds + left_reserved,
        "settlements not recorded": settled_mismatch,
        "rows not accounted for": len(jobs) - pairs,
        "aggregate attempts/s": processes * attempts / max(r["seconds"] for r in reports),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=5000, help="reserve+settle pairs per throughput round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench-users", type=int, default=1000, help="users the throughput pairs are spread over")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=2000, help="reservations each process attempts")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")  # fmt: skip
    print(f"\n1. throughput: {args.rounds} rounds of {args.pairs} reserve+settle pairs over {args.bench_users} users")
    rates, rows = asyncio.run(throughput(args.pairs, args.rounds, users=args.bench_users))
    for name, values in rates.items():
        print(f"   {name:26} median {statistics.median(values):8,.0f} pairs/s   "
              f"(rounds: {', '.join(f'{v:,.0f}' for v in values)})")  # fmt: skip
    print(f"   jobs table at the end: {rows:,} rows, {rows / args.bench_users:,.0f} per user on one day "
          f"(a real day holds about {Config().limits.daily_images_per_user} per user)")  # fmt: skip

    print(f"\n2. exactness: {args.processes} processes × {args.attempts} attempts, {args.users} users, "
          f"limit {args.limit}/user, settle or refund at random")  # fmt: skip
    report = exactness(args.processes, args.users, args.limit, args.attempts)
    for key, value in report.items():
        print(f"   {key:26} {value:,.0f}" if isinstance(value, float) else f"   {key:26} {value}")
    ok = report["over-limit images"] == 0 and report["lost refunds"] == 0 and report["settlements not recorded"] == 0
    print("\nOK" if ok else "\nFAILED: the ledger let a user over the limit or lost a refund")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
