"""What the deployment-wide model-call cap and images-per-minute budget cost
per call: one grant (the budget's window, the running calls, two inserts)
and one end of call (a delete), each its own transaction, as the pacer
makes them. Serial, on the store's own thread, `--calls` times per round;
medians of `--rounds`. Compare with an image call's seconds.

Usage:
    .venv/bin/python bench/grants.py [--db sqlite] [--db postgresql://…] [--calls 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ledger import _name, fresh_database  # noqa: E402
from core.config import config_from_mapping  # noqa: E402
from core.ledger import Ledger  # noqa: E402
from core.store import store_for  # noqa: E402


def one_round(db: str, calls: int) -> float:
    config = config_from_mapping({"openai": {"images_per_minute": 10**9, "max_concurrent_calls": 4}}, source="bench")
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config)
    ledger.heartbeat_sync()
    try:
        started = time.perf_counter()
        for _ in range(calls):
            decision = ledger.grant_images_sync(1)
            assert decision.granted and decision.call_id is not None, decision
            ledger.end_call_sync(decision.call_id)
        return calls / (time.perf_counter() - started)
    finally:
        store.close_sync()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", help="sqlite (default) or a postgresql:// URL; repeat to compare")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for db_arg in args.db or ["sqlite"]:
        rates = []
        for _ in range(args.rounds):
            with fresh_database(db_arg) as db:
                rates.append(one_round(db, args.calls))
        median = statistics.median(rates)
        print(f"  {_name(db_arg):<40} grant + end of call: median {median:,.0f} calls/s ({1000 / median:.2f} ms a call) "
              f"[{', '.join(f'{r:,.0f}' for r in rates)}]")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
