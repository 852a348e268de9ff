"""The job status machine, in one place: every status a job row can have,
and which status may follow which. The ledger's updates are guarded by it
(`may_become`), so a job changes status once, whatever retries, replays or
concurrent processes try."""

from __future__ import annotations

RESERVED = "reserved"  # holds its images and estimated cost until it ends
SUCCEEDED = "succeeded"  # charged the images made and the real cost
FAILED = "failed"  # refunded: nothing made, nothing charged
BLOCKED = "blocked"  # refused by the content policy (images kept only if blocks are charged)
INTERRUPTED = "interrupted"  # its process stopped; refunded by a survivor or the next start
UNDELIVERED = "undelivered"  # made and paid to OpenAI, never delivered: images given back, cost kept
# A relax job waiting for the Batch API: it holds its reservation like RESERVED, but
# belongs to the ledger, not to a process (a restart must not interrupt it), and
# does not count as in flight (it may wait for hours).
BATCHED = "batched"

STATUSES = (RESERVED, SUCCEEDED, FAILED, BLOCKED, INTERRUPTED, UNDELIVERED, BATCHED)

# status -> the statuses it may become; a status not listed is final.
TRANSITIONS: dict[str, frozenset[str]] = {
    RESERVED: frozenset({SUCCEEDED, FAILED, BLOCKED, INTERRUPTED}),
    SUCCEEDED: frozenset({UNDELIVERED}),
    BATCHED: frozenset({SUCCEEDED, FAILED, BLOCKED}),
}

# A refund ends a reservation with one of these (the caller says which).
REFUNDED = frozenset({FAILED, INTERRUPTED})


def sources(target: str) -> tuple[str, ...]:
    """The statuses a job may be in to become `target`."""
    found = tuple(s for s in STATUSES if target in TRANSITIONS.get(s, ()))
    if not found:
        raise ValueError(f"no job status may become {target!r}")
    return found


def may_become(target: str) -> str:
    """SQL condition: the row's status may become `target` (values are our
    own constants, never user input)."""
    return "status IN (" + ", ".join(f"'{s}'" for s in sources(target)) + ")"


def holding() -> str:
    """SQL condition: the row still holds its reservation."""
    return f"status = '{RESERVED}'"
