"""Event claims: a platform event (a Slack retry, a replayed request, a
button clicked twice) is acted on by exactly one process, the one whose
insert of its key lands first."""

from __future__ import annotations

import time

from core.ledger_base import LedgerBase


class EventClaims(LedgerBase):
    def claim_event_sync(self, key: str) -> bool:
        with self.store.transaction() as conn:
            cur = conn.execute("INSERT INTO seen_events (key, at) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", (key, time.time()))
            # Keep the table small: platforms retry within minutes, not days.
            conn.execute("DELETE FROM seen_events WHERE at < ?", (time.time() - 86400,))
            return cur.rowcount == 1
