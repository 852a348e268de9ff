"""How long a dead replica's users wait: from `kill -9` of a process that
holds reservations to a survivor having refunded them and handed them over
to be announced (SPEC §4: within two minutes).

A worker process (tests/core/ledger_worker.py `hold`) beats its heart in the
shared database, reserves a job with someone to tell, and is killed with
SIGKILL. A survivor, a real ImageService with the bots' recovery hook
(`recover()` + `announce_recovered`), notices on its heartbeat. Measured per
round: seconds from the kill to the announcement, and the same in heartbeat
timeouts (`[server] heartbeat_timeout_seconds`). The survivor beats
4 times per timeout, so the expected figure is the timeout plus up to a
quarter of it (a worker on this host whose pid is gone is found sooner, at
the next beat: `--other-host` measures the rule for a dead host).

Usage:
    .venv/bin/python bench/recovery.py [--db sqlite] [--db postgresql://…] [--timeout 60] [--rounds 3] [--other-host]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ledger import _name, fresh_database  # noqa: E402
from core.config import config_from_mapping  # noqa: E402
from core.models import InterruptedJob  # noqa: E402
from core.provider import OpenAIProvider, make_client  # noqa: E402
from core.service import ImageService  # noqa: E402


async def one_round(db: str, timeout: float, other_host: bool) -> float:
    config = config_from_mapping({"server": {"heartbeat_timeout_seconds": timeout}}, source="bench")
    provider = OpenAIProvider(make_client("sk-bench-fake-not-a-real-key", base_url="http://127.0.0.1:9/v1", timeout_seconds=5), config)
    survivor = await ImageService.open(config, db, provider)
    announced: asyncio.Future[list[InterruptedJob]] = asyncio.get_running_loop().create_future()

    async def announce(jobs: list[InterruptedJob]) -> None:
        if not announced.done():
            announced.set_result(jobs)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    remote = ["--remote"] if other_host else []
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.core.ledger_worker", "hold", db, "doomed", *remote,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert worker.stdout is not None
        job_id = (await asyncio.wait_for(worker.stdout.readline(), 60)).decode().strip()
        await survivor.recover()
        survivor.announce_recovered(announce)
        worker.kill()
        killed = time.monotonic()
        await worker.wait()
        jobs = await asyncio.wait_for(announced, timeout * 3 + 30)
        seconds = time.monotonic() - killed
        assert [j.job_id for j in jobs] == [job_id], jobs
        return seconds
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await survivor.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", help="sqlite (default) or a postgresql:// URL; repeat to compare")
    parser.add_argument("--timeout", type=float, default=60.0, help="[server] heartbeat_timeout_seconds")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--other-host", action="store_true", help="the dead worker looks like it ran on another host")
    args = parser.parse_args()
    print(f"heartbeat timeout {args.timeout:g} s (beats every {args.timeout / 4:g} s); "
          f"{'another host' if args.other_host else 'this host'}; {args.rounds} rounds")  # fmt: skip
    for db_arg in args.db or ["sqlite"]:
        took = []
        for _ in range(args.rounds):
            with fresh_database(db_arg) as db:
                took.append(await one_round(db, args.timeout, args.other_host))
        rounds = ", ".join(f"{t:.1f}" for t in took)
        median = statistics.median(took)
        print(f"  {_name(db_arg):<40} kill -> refunded and handed over: median {median:.1f} s "
              f"({median / args.timeout:.2f} timeouts) [{rounds}]")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
