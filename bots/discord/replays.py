"""Recognising an interaction delivered twice.

The gateway replays missed events after a RESUME, and two shard processes may
both see one. Discord itself takes only one acknowledgement per interaction,
so a replay can never start a second job once the first has deferred; these
checks keep a replay from doing anything at all:

- in this process, a synchronous look-up before the defer (no I/O may sit
  between an interaction's arrival and its defer: Discord allows 3 s, and a
  database shared with other processes can be locked for longer);
- across processes, the database claim (`ImageService.claim_event`) taken
  after the defer and before any money is reserved.
"""

from __future__ import annotations

from collections import OrderedDict

# Replays come within minutes; at hundreds of interactions a minute this
# covers far more than that, in well under a megabyte.
REMEMBERED = 50_000


class RecentInteractions:
    def __init__(self, size: int = REMEMBERED) -> None:
        self._size = size
        self._seen: OrderedDict[int, None] = OrderedDict()

    def first_time(self, interaction_id: int) -> bool:
        """True the first time this id is seen here, False on a repeat."""
        if interaction_id in self._seen:
            return False
        self._seen[interaction_id] = None
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True


def claim_key(interaction_id: int) -> str:
    return f"discord:interaction:{interaction_id}"
