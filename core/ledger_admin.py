"""Admin settings: per-user and per-role daily limits, workspace budgets, and
forgiving a member's day."""

from __future__ import annotations

import time

from core.ledger_base import LedgerBase
from core.ledger_status import holding


class AdminSettings(LedgerBase):
    def set_user_limit_sync(self, user_key: str, daily: int | None, set_by: str) -> None:
        with self.store.transaction() as conn:
            if daily is None:
                conn.execute("DELETE FROM user_limits WHERE user_key = ?", (user_key,))
            else:
                conn.execute(
                    """INSERT INTO user_limits (user_key, daily, set_by, set_at) VALUES (?, ?, ?, ?)
                       ON CONFLICT(user_key) DO UPDATE SET daily = excluded.daily, set_by = excluded.set_by, set_at = excluded.set_at""",
                    (user_key, daily, set_by, time.time()),
                )

    def set_role_limit_sync(self, workspace_key: str, role: str, daily: int | None, set_by: str) -> None:
        with self.store.transaction() as conn:
            if daily is None:
                conn.execute("DELETE FROM role_limits WHERE workspace_key = ? AND role = ?", (workspace_key, role))
            else:
                conn.execute(
                    """INSERT INTO role_limits (workspace_key, role, daily, set_by, set_at) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT(workspace_key, role) DO UPDATE SET daily = excluded.daily, set_by = excluded.set_by,
                       set_at = excluded.set_at""",
                    (workspace_key, role, daily, set_by, time.time()),
                )

    def set_workspace_budget_sync(self, workspace_key: str, usd: float, set_by: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                """INSERT INTO budgets (workspace_key, daily_usd, set_by, set_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT(workspace_key) DO UPDATE SET daily_usd = excluded.daily_usd, set_by = excluded.set_by,
                   set_at = excluded.set_at""",
                (workspace_key, usd, set_by, time.time()),
            )

    def reset_user_sync(self, user_key: str, set_by: str) -> None:
        """Forgive today's images (costs stay on the books) and lift a cool-down."""
        day = self.today()
        with self.store.transaction() as conn:
            conn.execute("UPDATE jobs SET units = 0 WHERE user_key = ? AND day = ? AND NOT " + holding(), (user_key, day))
            conn.execute("DELETE FROM cooldowns WHERE user_key = ?", (user_key,))
            conn.execute("DELETE FROM policy_blocks WHERE user_key = ? AND day = ?", (user_key, day))
            conn.execute(
                "INSERT INTO resets (user_key, day, at, set_by) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (user_key, day) DO UPDATE SET at = excluded.at, set_by = excluded.set_by",
                (user_key, day, time.time(), set_by),
            )
