"""Ledger throughput and exactness, on one backend or several side by side.

`--db` picks the database, and may be given more than once to compare
backends in the same run (the machine is shared and noisy: compare figures
from one run, medians and ratios): `sqlite` (a fresh file in a temporary
directory, the default) or a `postgresql://` URL (the bench works in a fresh
schema of that database, dropped at the end; add libpq options to the URL to
try settings, e.g. `?options=-csynchronous_commit%3Doff`).

1. Throughput, one process: reserve+settle pairs per second through the
   Ledger's sync API run on the store's own database thread (the way the
   service runs it). Also the same pairs issued one `await store.run(...)` at
   a time from asyncio, which adds the thread hop the service pays. Target:
   ≥ 1,000 pairs/s. The pairs are spread over `--bench-users` users, all on
   one day.
2. Throughput, `--processes` processes at once on one database (each its
   own users, so they contend only for the database): pairs per second
   across all of them. Target: ≥ 2,500 pairs/s with 4.
3. Exactness: `--processes` OS processes hammer one database, all started
   together, over `--users` users with a daily limit of `--limit` images
   each; every reservation is settled or refunded at random. Then the
   database is checked: images over a user's limit (over-limit) and refunds
   that did not stick or reservations left behind (lost refunds). Both must
   be 0.

Usage:
    .venv/bin/python bench/ledger.py [--db sqlite] [--db postgresql://…] [--pairs 5000] [--rounds 5]
        [--bench-users 1000] [--processes 4] [--users 20] [--limit 5] [--attempts 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from core.config import Config, config_from_mapping  # noqa: E402
from core.errors import LimitReached  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from core.models import ImageOptions, Requester, Usage  # noqa: E402
from core.store import is_postgres, redact, store_for  # noqa: E402

OPTIONS = ImageOptions(quality="medium")
USAGE = Usage(input_text_tokens=6, output_image_tokens=1756)
# Limits high enough never to refuse: the throughput runs measure the bookkeeping itself.
UNLIMITED = {"limits": {"daily_images_per_user": 1_000_000_000, "max_jobs_in_flight_per_user": 1_000}}


def _requester(user: int) -> Requester:
    return Requester(platform="slack", workspace="T1", user=f"U{user}")


@contextlib.contextmanager
def fresh_database(db: str) -> Iterator[str]:
    """A new, empty database for one run: a file in a temporary directory for
    `sqlite`, a schema of its own in the given PostgreSQL database."""
    if not is_postgres(db):
        with tempfile.TemporaryDirectory() as tmp:
            yield os.path.join(tmp, "bench.db")
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    joiner = "&" if "?" in db else "?"
    options = f"-csearch_path={schema}"
    if "options=" in db:  # keep the caller's options, add ours
        url = db.replace("options=", f"options={quote(options + ' ')}", 1)
    else:
        url = f"{db}{joiner}options={quote(options)}"
    try:
        yield url
    finally:
        with psycopg.connect(db, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _pairs(ledger: Ledger, count: int, users: int, start: int, first_user: int = 0) -> float:
    """`count` reserve+settle pairs; returns the seconds they took."""
    began = time.perf_counter()
    for i in range(start, start + count):
        reservation = ledger.reserve_sync(
            _requester(first_user + i % users), kind="generate", prompt=f"bench {i}", options=OPTIONS, model="gpt-image-2",
            units=1.0, usd=0.055,
        )
        ledger.settle_sync(
            reservation, usage=USAGE, cost_usd=0.05271, images=1, model="gpt-image-2", model_seconds=0.0, attempts=1
        )
    return time.perf_counter() - began


async def throughput(db: str, pairs: int, rounds: int, users: int) -> tuple[dict[str, list[float]], int]:
    results: dict[str, list[float]] = {"store thread loop": [], "await store.run per call": []}
    store = store_for(db)
    await store.open()
    ledger = Ledger(store, config_from_mapping(UNLIMITED))
    done = 0
    await store.run(_pairs, ledger, 200, users, done)  # warm-up: pages cached, statements prepared
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


def pair_worker(db: str, pairs: int, users: int, first_user: int, barrier: Any, results: Any) -> None:
    """One process of the multi-process throughput run: its own users."""
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config_from_mapping(UNLIMITED))
    _pairs(ledger, 100, users, 0, first_user)  # warm-up
    barrier.wait()
    results.put(_pairs(ledger, pairs, users, 100, first_user))
    store.close_sync()


def multi_throughput(db: str, processes: int, pairs: int, users: int) -> float:
    """Pairs per second across `processes` processes started together."""
    context = multiprocessing.get_context("spawn")
    store_for(db).open_sync()  # created once up front, as a running bot would have
    barrier, results = context.Barrier(processes), context.Queue()
    procs = [
        context.Process(target=pair_worker, args=(db, pairs, users, n * users, barrier, results)) for n in range(processes)
    ]
    for proc in procs:
        proc.start()
    seconds = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    return processes * pairs / max(seconds)


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


def exactness(db: str, processes: int, users: int, limit: int, attempts: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    store = store_for(db)
    store.open_sync()  # created once up front, as a running bot would have
    barrier, results = context.Barrier(processes), context.Queue()
    procs = [
        context.Process(target=hammer, args=(db, limit, users, attempts, seed, barrier, results))
        for seed in range(processes)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=900) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
    rows = store.query("SELECT id, user_key, status, units FROM jobs")
    jobs = {r["id"]: (r["user_key"], r["status"], r["units"]) for r in rows}
    store.close_sync()
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
        "users at their limit": sum(1 for used in units_per_user.values() if used == limit),
        "over-limit images": over_limit,
        "lost refunds": lost_refunds + left_reserved,
        "settlements not recorded": settled_mismatch,
        "rows not accounted for": len(jobs) - pairs,
        "aggregate attempts/s": processes * attempts / max(r["seconds"] for r in reports),
    }


def _name(db: str) -> str:
    if not is_postgres(db):
        return "sqlite"
    options = parse_qs(urlsplit(db).query).get("options")
    return f"postgresql {options[0]}" if options else "postgresql"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", help="sqlite (default) or a postgresql:// URL; repeat to compare")
    parser.add_argument("--pairs", type=int, default=5000, help="reserve+settle pairs per throughput round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bench-users", type=int, default=1000, help="users the throughput pairs are spread over")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--limit", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=2000, help="reservations each process attempts")
    args = parser.parse_args()
    dbs: list[str] = args.db or ["sqlite"]

    versions = [f"SQLite {sqlite3.sqlite_version}"]
    for db in dbs:
        if is_postgres(db):
            with psycopg.connect(db) as conn:
                versions.append(str(conn.execute("SHOW server_version").fetchone()[0]).join(("PostgreSQL ", "")))
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, "
          f"Python {platform.python_version()}, {', '.join(versions)}")  # fmt: skip
    for db in dbs:
        print(f"database: {_name(db)} {redact(db) if is_postgres(db) else '(a temporary file)'}")

    ok = True
    table: dict[str, dict[str, str]] = {}
    for db in dbs:
        column = table.setdefault(_name(db), {})
        with fresh_database(db) as url:
            rates, rows = asyncio.run(throughput(url, args.pairs, args.rounds, users=args.bench_users))
        for name, values in rates.items():
            column[f"1 process, {name} (pairs/s)"] = (f"{statistics.median(values):,.0f}  "
                                                      f"[{', '.join(f'{v:,.0f}' for v in values)}]")  # fmt: skip
        with fresh_database(db) as url:
            rate = multi_throughput(url, args.processes, args.pairs, users=args.bench_users // args.processes or 1)
        column[f"{args.processes} processes (pairs/s)"] = f"{rate:,.0f}"
        with fresh_database(db) as url:
            report = exactness(url, args.processes, args.users, args.limit, args.attempts)
        for key, value in report.items():
            column[f"exactness: {key}"] = f"{value:,.0f}" if isinstance(value, float) else str(value)
        ok = ok and report["over-limit images"] == 0 and report["lost refunds"] == 0 and report["settlements not recorded"] == 0
        print(f"... {_name(db)} done", file=sys.stderr)

    print(f"\nthroughput: {args.rounds} rounds of {args.pairs} reserve+settle pairs over {args.bench_users} users "
          f"(a real day holds about {Config().limits.daily_images_per_user} images per user); exactness: "
          f"{args.processes} processes × {args.attempts} attempts, {args.users} users, limit {args.limit}/user, "
          "settle or refund at random\n")  # fmt: skip
    names = list(table)
    rows_ = list(next(iter(table.values())))
    width = max(len(r) for r in rows_)
    print(" | ".join([" " * width, *names]))
    for row in rows_:
        print(" | ".join([row.ljust(width), *(table[n].get(row, "") for n in names)]))
    print("\nOK" if ok else "\nFAILED: the ledger let a user over the limit or lost a refund")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
