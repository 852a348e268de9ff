"""What every part of the ledger shares: its store and config, the clock,
this process's identity as a worker, and the local day quotas belong to."""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from core.config import Config
from core.store import Store

Clock = Callable[[], datetime]

# A process beats its heart this many times within the heartbeat timeout
# (server.heartbeat_timeout_seconds): one late beat is not taken for death.
BEATS_PER_TIMEOUT = 4
# Ledgers alive in this process: a second service on the same database in the
# same process (tests, tools) shares our pid and must not be taken for a
# previous incarnation of it.
LIVE_WORKERS: set[str] = set()


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_job_id() -> str:
    # Short enough to read out to an admin, unique enough for one bot.
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Reservation:
    job_id: str
    requester_key: str
    units: float
    usd: float
    day: str
    n: int


class LedgerBase:
    def __init__(self, store: Store, config: Config, *, clock: Clock = utc_now) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.worker = uuid.uuid4().hex
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # Silent for longer than this, a process is dead: its reservations are refunded.
        self.dead_after = config.server.heartbeat_timeout_seconds
        self.heartbeat_seconds = self.dead_after / BEATS_PER_TIMEOUT
        LIVE_WORKERS.add(self.worker)

    def _local_now(self) -> datetime:
        return self.clock().astimezone(self.config.zone)

    def today(self) -> str:
        return self._local_now().date().isoformat()

    def resets_at(self) -> datetime:
        """The next local midnight (DST-safe: built from the date, not +24h)."""
        local = self._local_now()
        tomorrow: date = local.date() + timedelta(days=1)
        return datetime(tomorrow.year, tomorrow.month, tomorrow.day, tzinfo=self.config.zone)
