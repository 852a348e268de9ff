"""The ledger: per-user daily limits, budgets and accounting, on either
database backend (core/store.py). One class for callers, built from one
module per concern:

- core/ledger_accounting.py: reserve → settle / refund, policy blocks, quotas;
- core/ledger_admin.py: limits per user and role, budgets, resets;
- core/ledger_events.py: claims that make an event run once across processes;
- core/ledger_liveness.py: heartbeats and recovery of a dead process's jobs;
- core/ledger_relax.py: relax mode's jobs and Batch API batches, delivered once;
- core/ledger_results.py: edit inputs and result messages (buttons, history);
- core/ledger_pace.py: the account's images-per-minute budget, shared by every process;
- core/ledger_status.py: the job status machine they all obey.
"""

from __future__ import annotations

from core.ledger_accounting import Accounting
from core.ledger_admin import AdminSettings
from core.ledger_base import BEATS_PER_TIMEOUT, Clock, Reservation, new_job_id, utc_now
from core.ledger_events import EventClaims
from core.ledger_liveness import Liveness
from core.ledger_relax import RelaxLedger
from core.ledger_results import Results
from core.ledger_pace import PaceLedger

__all__ = ["BEATS_PER_TIMEOUT", "Clock", "Ledger", "Reservation", "new_job_id", "utc_now"]


class Ledger(Accounting, AdminSettings, EventClaims, Liveness, PaceLedger, RelaxLedger, Results):
    """Every ledger operation is one `*_sync` method, one transaction, run on
    the store's database thread(s) (`await store.run(ledger.x_sync, ...)`)."""
