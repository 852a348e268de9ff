"""Relax mode at scale: `--jobs` relax jobs from `--users` users flushed into
Batch API batches (the real SDK against the local fake OpenAI, a fresh
SQLite ledger), then the completed batches handled.

Prints, per round (`--rounds`, medians at the end):
- batch count and JSONL bytes uploaded (lines per batch: core.relax.MAX_LINES_PER_BATCH,
  or `--max-lines` to see the split);
- time to submit: reserving every job, then flushing them (JSONL built,
  files.create, batches.create);
- handling the completed batches: time, output file bytes, and the peak of
  Python allocations (tracemalloc) while the output is downloaded (streamed
  to a temporary file), read back line by line, settled and handed to a
  courier that drops each result (a chat upload holds one result at a time
  too). The fake makes the batch's images before this is measured, so
  neither its rendering time nor its memory is counted;
- cost per image from the ledger: the same prompts and settings made fast
  (`--fast` of them) and relax; ratio relax/fast (must be 0.50).

Usage:
    .venv/bin/python bench/relax.py [--jobs 500] [--users 100] [--rounds 3] [--max-lines N] [--fast 20] [--size WxH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import core.relax as relax_module  # noqa: E402
from core.config import config_from_mapping  # noqa: E402
from core.models import ImageOptions, ImageResult, Requester  # noqa: E402
from core.provider import OpenAIProvider, make_client  # noqa: E402
from core.service import ImageService  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

OPTIONS = ImageOptions(size="1024x1024", quality="low", n=1)  # --size changes it


class DroppingCourier:
    """Takes each result and lets it go, counting what it saw."""

    ready = True

    def __init__(self) -> None:
        self.posted = 0
        self.told = 0

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        self.posted += 1

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        self.told += 1
        return True


def prompt_of(i: int) -> str:
    return f"a quiet harbor at dawn, study {i:04d}"


async def one_round(fake: FakeOpenAI, jobs: int, users: int, fast: int) -> dict[str, float]:
    config = config_from_mapping({"relax": {"daily_images_per_user": jobs, "flush_seconds": 3600},
                                  "limits": {"daily_images_per_user": fast + 1}}, source="bench")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        client = make_client("sk-bench-fake", base_url=fake.base_url, timeout_seconds=300)
        service = await ImageService.open(config, str(Path(tmp) / "bench.db"), OpenAIProvider(client, config))
        try:
            courier = DroppingCourier()
            service.relax.couriers["bench"] = courier
            fake.batch_delay = 3600  # submitted now, completed later
            started = time.perf_counter()
            for i in range(jobs):
                who = Requester("bench", "W1", f"U{i % users:03d}")
                await service.relax.submit(who, prompt_of(i), OPTIONS, {"platform": "bench"})
            reserved = time.perf_counter()
            batches_before = len(fake.batches)
            while await service.relax.flush(force=True):
                pass
            submitted = time.perf_counter()
            new = list(fake.batches.values())[batches_before:]
            jsonl_bytes = sum(len(fake.files[b.input_file_id].data) for b in new)

            rendered = time.perf_counter()
            for b in new:  # the fake makes the images now, so that neither its time nor its memory is counted below
                await fake._run_batch(b)
            render_s = time.perf_counter() - rendered
            tracemalloc.start()
            tracemalloc.reset_peak()
            handle_started = time.perf_counter()
            await service.relax.run_once(force=True)
            handled = time.perf_counter() - handle_started
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert courier.posted == jobs, (courier.posted, courier.told)
            output_bytes = sum(len(fake.files[b.output_file_id].data) for b in new if b.output_file_id)

            for i in range(fast):  # the same prompts and settings, fast
                await service.generate(Requester("bench", "W1", f"F{i:03d}"), prompt_of(i), OPTIONS)
            rows = await service.store.run(lambda: service.store.query(
                "SELECT j.prompt, j.cost_usd, j.images, r.job_id IS NOT NULL AS relax FROM jobs j "
                "LEFT JOIN relax_jobs r ON r.job_id = j.id WHERE j.status = 'succeeded'"))  # fmt: skip
        finally:
            await service.close()
    same = {prompt_of(i) for i in range(fast)}
    fast_rows = [r for r in rows if not r["relax"]]
    relax_rows = [r for r in rows if r["relax"] and r["prompt"] in same]
    fast_per_image = sum(r["cost_usd"] for r in fast_rows) / sum(r["images"] for r in fast_rows)
    relax_per_image = sum(r["cost_usd"] for r in relax_rows) / sum(r["images"] for r in relax_rows)
    return {
        "batches": len(new),
        "jsonl_bytes": jsonl_bytes,
        "reserve_s": reserved - started,
        "submit_s": submitted - reserved,
        "handle_s": handled,
        "fake_render_s": render_s,
        "output_bytes": output_bytes,
        "peak_mib": peak / 2**20,
        "fast_per_image": fast_per_image,
        "relax_per_image": relax_per_image,
        "ratio": relax_per_image / fast_per_image,
    }


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=500)
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--max-lines", type=int, default=relax_module.MAX_LINES_PER_BATCH)
    p.add_argument("--fast", type=int, default=20, help="fast jobs with the same prompts, for the price ratio")
    p.add_argument("--size", default="1024x1024", help="bigger images make bigger output lines (the peak should follow a line, not the file)")
    args = p.parse_args()
    global OPTIONS
    OPTIONS = ImageOptions(size=args.size, quality="low", n=1)
    relax_module.MAX_LINES_PER_BATCH = args.max_lines
    results = []
    async with FakeOpenAI() as fake:
        for n in range(args.rounds):
            r = await one_round(fake, args.jobs, args.users, args.fast)
            results.append(r)
            print(f"round {n + 1}: {r['batches']} batch(es), JSONL {r['jsonl_bytes']:,} B, reserve {r['reserve_s']:.2f} s, "
                  f"submit {r['submit_s']:.3f} s, handle {r['handle_s']:.2f} s for {r['output_bytes'] / 2**20:.1f} MiB of "
                  f"output, peak {r['peak_mib']:.2f} MiB, per image fast ${r['fast_per_image']:.6f} relax "
                  f"${r['relax_per_image']:.6f} ratio {r['ratio']:.2f}", flush=True)  # fmt: skip
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print(f"\n{args.jobs} relax jobs from {args.users} users, max {args.max_lines} lines a batch, "
          f"median of {args.rounds} round(s):")  # fmt: skip
    print(f"  batches {med['batches']:.0f}, JSONL {med['jsonl_bytes']:,.0f} B ({med['jsonl_bytes'] / args.jobs:.0f} B a line)")
    print(f"  reserve all {med['reserve_s']:.2f} s ({med['reserve_s'] / args.jobs * 1000:.2f} ms a job), submit {med['submit_s']:.3f} s")
    print(f"  handle the completed batch(es) {med['handle_s']:.2f} s; output {med['output_bytes'] / 2**20:.1f} MiB; "
          f"peak Python memory while handling {med['peak_mib']:.2f} MiB")  # fmt: skip
    print(f"  cost per image: fast ${med['fast_per_image']:.6f}, relax ${med['relax_per_image']:.6f}, ratio {med['ratio']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
