"""A second OS process for the ledger tests, sharing one database (a SQLite
file or a PostgreSQL URL) with the test: `python -m tests.core.ledger_worker MODE DB ...`.

  hammer DB LIMIT ATTEMPTS USER...   waits for a line on stdin, then reserves
      one image at a time round-robin over USERs, settling two of three and
      refunding the third; prints a JSON summary of what it did.
  hold DB USER [--remote]            beats its heart (--remote: as if on another host), reserves one image,
      prints the job id, then sleeps until killed (a process that crashes
      mid-job, or one that is alive and busy).

`open_at_once` is for multiprocessing: several processes creating one new
database at the same moment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from core.config import config_from_mapping
from core.errors import LimitReached
from core.ledger import Ledger
from core.models import ImageOptions, Requester, Usage
from core.store import store_for


def _requester(user: str) -> Requester:
    return Requester(platform="slack", workspace="T1", user=user)


def hammer(db: str, limit: int, attempts: int, users: list[str]) -> None:
    config = config_from_mapping({"limits": {"daily_images_per_user": limit, "max_jobs_in_flight_per_user": 100}})
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config)
    ledger.heartbeat_sync()
    print("ready", flush=True)
    sys.stdin.readline()  # start together with the other process
    settled: list[str] = []
    refunded: list[str] = []
    refused = 0
    for i in range(attempts):
        requester = _requester(users[i % len(users)])
        try:
            reservation = ledger.reserve_sync(
                requester, kind="generate", prompt=f"p{i}", options=ImageOptions(), model="gpt-image-2", units=1.0, usd=0.05
            )
        except LimitReached:
            refused += 1
            continue
        if i % 3 == 2:
            assert ledger.refund_sync(reservation.job_id)
            refunded.append(reservation.job_id)
        else:
            ledger.settle_sync(
                reservation, usage=Usage(output_image_tokens=1756), cost_usd=0.05, images=1, model="gpt-image-2",
                model_seconds=0.0, attempts=1,
            )
            settled.append(reservation.job_id)
    ledger.retire_sync()
    store.close_sync()
    print(json.dumps({"settled": settled, "refunded": refunded, "refused": refused}), flush=True)


def open_at_once(db: str, barrier: Any, results: Any) -> None:
    """Open (and so create) `db` at the same moment as the other processes
    behind `barrier`; put "ok" or the error on `results`. Run through
    multiprocessing, so it is importable and takes no stdin."""
    try:
        barrier.wait()
        store = store_for(db)
        store.open_sync()
        with store.transaction() as conn:
            conn.execute("INSERT INTO seen_events (key, at) VALUES (?, 0)", (f"opened-{os.getpid()}",))
        store.close_sync()
        results.put("ok")
    except Exception as e:  # reported to the test, which shows it
        results.put(repr(e))


def hold(db: str, user: str, *, remote: bool = False) -> None:
    store = store_for(db)
    store.open_sync()
    ledger = Ledger(store, config_from_mapping({}))
    if remote:  # as if on another host: only its heartbeat's age can tell it died
        ledger.host = "another-host.invalid"
    ledger.heartbeat_sync()
    reservation = ledger.reserve_sync(
        _requester(user), kind="generate", prompt=f"held by {user}", options=ImageOptions(quality="high"),
        model="gpt-image-2", units=4.0, usd=0.25, notify={"channel": "C9", "user": user},
    )
    print(reservation.job_id, flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    mode, db, *rest = sys.argv[1:]
    if mode == "hammer":
        hammer(db, int(rest[0]), int(rest[1]), rest[2:])
    elif mode == "hold":
        hold(db, rest[0], remote=rest[1:] == ["--remote"])
    else:
        raise SystemExit(f"unknown mode {mode}")
