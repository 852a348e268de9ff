"""Recognising an interaction delivered twice.

The gateway replays missed events after a RESUME, and two shard processes may
both see one. Discord itself takes only one acknowledgement per interaction,
so a replay can never start a second job once the first has deferred; these
checks keep a replay from doing anything at all: in this process a memory
look-up before the defer (`bots.recent.RecentDeliveries`), across processes
the database claim on `claim_key` after the defer and before any money is
reserved.
"""

from __future__ import annotations


def claim_key(interaction_id: int) -> str:
    return f"discord:interaction:{interaction_id}"
