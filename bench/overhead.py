"""What ImageService adds on top of a bare SDK call.

`ImageService.generate` (prompt check, option check, atomic reservation,
fair model slot, progress, the provider's error translation, settlement, job
record) against a bare `AsyncOpenAI.images.generate` loop that only decodes
the base64 images, against the same in-process FakeOpenAI, with the same
requests. The two run side by side in one process, interleaved: every round
times `--calls` sequential calls of each, alternating which goes first, and
the figure is the median over rounds of (service time / bare time).

The fake answers after `--latency` seconds (default 0.2 s) so that each call
has the shape of a real one (a wait on the network), rather than measuring
the fake's own speed; real gpt-image-2 calls take 10 s to minutes, so the
real-world ratio is closer to 1 than what this prints.

Targets: ≤ 1.05 for n=1 1024x1024, ≤ 1.10 for n=8 2048x2048.

Peak memory (tracemalloc, in a separate pass so that tracing does not skew
the timings): the Python allocations of `--calls` sequential calls of each
kind, the fake's own included (the same for both). The fake's images are flat
colour and small; with real multi-megabyte images both paths hold the same
decoded bytes (the service does not copy them), so the difference between the
two peaks is what the service itself adds.

Usage:
    .venv/bin/python bench/overhead.py [--rounds 7] [--calls 10] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import platform
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any, Awaitable, Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import AsyncOpenAI  # noqa: E402

from core.config import config_from_mapping  # noqa: E402
from core.models import ImageOptions, Requester  # noqa: E402
from core.provider import OpenAIProvider, make_client  # noqa: E402
from core.service import ImageService  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

API_KEY = "sk-bench-fake-not-a-real-key"
PROMPT = "a red fox in the snow, watercolor"
CASES = [
    ("n=1 1024x1024 medium", ImageOptions(size="1024x1024", quality="medium", n=1), 1.05),
    ("n=8 2048x2048 medium", ImageOptions(size="2048x2048", quality="medium", n=8), 1.10),
]

Call = Callable[[], Awaitable[int]]


async def timed(call: Call, calls: int) -> float:
    began = time.perf_counter()
    for _ in range(calls):
        assert await call() > 0
    return time.perf_counter() - began


async def peak_bytes(call: Call, calls: int) -> int:
    tracemalloc.start()
    try:
        for _ in range(calls):
            await call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def run(rounds: int, calls: int, latency: float) -> None:
    async with FakeOpenAI(latency=latency) as fake:
        with tempfile.TemporaryDirectory() as tmp:
            # Limits out of the way: this measures the path, not a refusal.
            config = config_from_mapping(
                {"limits": {"daily_images_per_user": 1_000_000_000, "max_jobs_in_flight_per_user": 1_000},
                 "openai": {"images_per_minute": 1_000_000}}
            )
            provider = OpenAIProvider(
                make_client(API_KEY, base_url=fake.base_url, timeout_seconds=config.openai.timeout_seconds), config
            )
            service = await ImageService.open(config, os.path.join(tmp, "bench.db"), provider)
            await service.recover()
            bare = AsyncOpenAI(api_key=API_KEY, base_url=fake.base_url, max_retries=0, timeout=config.openai.timeout_seconds)
            requester = Requester(platform="cli", workspace="local", user="bench")
            try:
                for name, options, target in CASES:

                    async def through_service(options: ImageOptions = options) -> int:
                        result = await service.generate(requester, PROMPT, options)
                        return len(result.images)

                    async def bare_sdk(options: ImageOptions = options) -> int:
                        # The same parameters the provider sends, minus its safety_identifier.
                        params: dict[str, Any] = {
                            "model": "gpt-image-2", "prompt": PROMPT, "n": options.n, "size": options.size,
                            "quality": options.quality, "output_format": options.format,
                        }  # fmt: skip
                        response = await bare.images.generate(**params)
                        return len([base64.b64decode(d.b64_json or "") for d in response.data or []])

                    await timed(through_service, 2)  # warm-up: connections, the fake's render cache
                    sample = await service.generate(requester, PROMPT, options)
                    payload = sum(len(image.data) for image in sample.images)
                    await timed(bare_sdk, 2)
                    ratios, service_times, bare_times = [], [], []
                    for round_ in range(rounds):
                        if round_ % 2 == 0:
                            b = await timed(bare_sdk, calls)
                            s = await timed(through_service, calls)
                        else:
                            s = await timed(through_service, calls)
                            b = await timed(bare_sdk, calls)
                        ratios.append(s / b)
                        service_times.append(s / calls)
                        bare_times.append(b / calls)
                    service_peak = await peak_bytes(through_service, calls)
                    bare_peak = await peak_bytes(bare_sdk, calls)
                    ratio = statistics.median(ratios)
                    print(f"\n{name}  ({rounds} rounds × {calls} sequential calls each, fake latency {latency:g} s)")
                    print(f"  images per call: {len(sample.images)}, {payload / 1024:,.0f} KiB decoded in all "
                          "(the fake's flat images; real ones weigh megabytes)")  # fmt: skip
                    print(f"  per call, median: service {statistics.median(service_times) * 1000:7.1f} ms   "
                          f"bare SDK {statistics.median(bare_times) * 1000:7.1f} ms")  # fmt: skip
                    print(f"  ratio service/bare: median {ratio:.3f}   (rounds: {', '.join(f'{r:.3f}' for r in ratios)})"
                          f"   target ≤ {target:.2f}: {'OK' if ratio <= target else 'MISSED'}")  # fmt: skip
                    print(f"  peak traced memory over {calls} calls: service {service_peak / 2**20:.1f} MiB   "
                          f"bare SDK {bare_peak / 2**20:.1f} MiB")  # fmt: skip
            finally:
                await bare.close()
                await service.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=10, help="sequential calls of each kind per round")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the fake waits before answering")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    asyncio.run(run(args.rounds, args.calls, args.latency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
