"""`/imagine-admin limit @user N | reset @user | budget <usd> | history @user | pace`, parsed.

The command is registered with "escape channels, users and links" on (see
the manifest), so a mention arrives as `<@U123|name>` and names a user id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from bots.slack.payloads import mentioned_users

_DEFAULT_WORDS = ("default", "none", "normal", "unset")


@dataclass(frozen=True)
class AdminCommand:
    action: Literal["limit", "reset", "budget", "history", "pace"]
    user: str | None = None
    daily: int | None = None  # limit: None = back to the default
    usd: float = 0.0


def parse_admin_command(text: str) -> AdminCommand | None:
    """None when the text is not one of the forms above (the caller shows help)."""
    words = text.split()
    if not words:
        return None
    action, rest = words[0].lower(), words[1:]
    users = mentioned_users(text)
    if action == "limit" and len(users) == 1 and len(rest) == 2:
        value = rest[1].lower()
        if value in _DEFAULT_WORDS:
            return AdminCommand("limit", users[0], None)
        if value.isdigit():
            return AdminCommand("limit", users[0], int(value))
        return None
    if action in ("pace", "queue") and not rest:
        return AdminCommand("pace")
    if action == "reset" and len(users) == 1 and len(rest) == 1:
        return AdminCommand("reset", users[0])
    if action == "history" and len(users) == 1 and len(rest) == 1:
        return AdminCommand("history", users[0])
    if action == "budget" and len(rest) == 1:
        try:
            usd = float(rest[0].lstrip("$").replace(",", ""))
        except ValueError:
            return None
        return AdminCommand("budget", usd=usd) if math.isfinite(usd) and usd >= 0 else None
    return None
