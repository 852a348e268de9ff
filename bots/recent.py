"""Recognising, in memory, a request this process has already seen.

A platform that redelivers (Slack's retries, a Socket Mode envelope nobody
acked, a replayed signed body, Discord's gateway replaying after a RESUME)
sends the same identity again. The check must be synchronous: it sits
between a request's arrival and its acknowledgement, where no I/O may wait
(Slack and Discord both allow 3 s, and a database shared with other
processes can be locked for longer). Across processes the database claim
(`ImageService.claim_event`), taken after the acknowledgement and before any
money is reserved, decides.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Hashable

# Replays come within minutes; at hundreds of requests a minute this covers
# far more than that, in a few megabytes at most.
REMEMBERED = 50_000


class RecentDeliveries:
    def __init__(self, size: int = REMEMBERED) -> None:
        self._size = size
        self._seen: OrderedDict[Hashable, None] = OrderedDict()

    def first_time(self, key: Hashable) -> bool:
        """True the first time `key` is seen here, False on a repeat."""
        if key in self._seen:
            return False
        self._seen[key] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
