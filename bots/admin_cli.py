"""`imaginebot admin`: the operator's way to set limits and budgets and to
reset a member's day from the terminal, through the same service calls as the
chat admin commands (`/imagine-admin`). The terminal user is the operator, so
they act as an admin of whichever workspace/server the target belongs to."""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from bots.compose import UsageError, open_service
from bots.settings import Settings
from core import messages
from core.config import Config
from core.models import Requester, RequesterKey

PLATFORMS = ("slack", "discord", "cli")
USER_HELP = "slack:TEAM_ID:USER_ID, discord:SERVER_ID:USER_ID, cli:local:LOGIN, or `me` (you, in this terminal)"


def add_admin_parser(sub: Any) -> None:
    a = sub.add_parser("admin", help="set daily limits and budgets, reset a member's day (the chat admin commands, from here)")
    actions = a.add_subparsers(dest="action", required=True, metavar="ACTION")
    limit = actions.add_parser("limit", help="a member's own daily image limit")
    limit.add_argument("user", metavar="USER", help=USER_HELP)
    limit.add_argument("daily", metavar="N", help="images a day, or `default` to remove the member's own limit")
    reset = actions.add_parser("reset", help="forgive a member's usage today and lift any cool-down")
    reset.add_argument("user", metavar="USER", help=USER_HELP)
    budget = actions.add_parser("budget", help="the daily USD budget of a workspace or server (0 = none)")
    budget.add_argument("workspace", metavar="WORKSPACE", help="slack:TEAM_ID or discord:SERVER_ID")
    budget.add_argument("usd", metavar="USD", help="US dollars a day, e.g. 2.50; 0 removes the budget")
    for action in (limit, reset, budget):
        action.set_defaults(usage_of=action)


def cli_requester() -> Requester:
    login = getpass.getuser()
    return Requester(platform="cli", workspace="local", user=login, display_name=login)


def _user_key(text: str) -> str:
    if text == "me":
        return cli_requester().key
    who = RequesterKey.parse(text)
    if who.platform not in PLATFORMS or not who.workspace or not who.user:
        raise UsageError(f"USER must be {USER_HELP}; got {text!r}.")
    return text


def _operator(key: str) -> Requester:
    """An admin of the target's own workspace/server: the service lets admins
    act only there, and the terminal user may act everywhere."""
    where = RequesterKey.parse(key)
    if where.platform not in PLATFORMS or not where.workspace:
        raise UsageError(f"WORKSPACE must be slack:TEAM_ID or discord:SERVER_ID; got {key!r}.")
    login = getpass.getuser()
    return Requester(platform=where.platform, workspace=where.workspace, user=f"operator-{login}", display_name=login, is_admin=True)


def _daily(text: str) -> int | None:
    if text.lower() in ("default", "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"N must be a whole number of images a day, or `default`; got {text!r}.") from None


def _usd(text: str) -> float:
    try:
        return float(text.lstrip("$"))
    except ValueError:
        raise UsageError(f"USD must be an amount like 2.50; got {text!r}.") from None


async def run_admin(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    # Check the arguments before the database is opened.
    if args.action == "budget":
        admin, usd = _operator(args.workspace), _usd(args.usd)
    else:
        key = _user_key(args.user)
        admin = _operator(key)
        daily = _daily(args.daily) if args.action == "limit" else None
    service = await open_service(settings, config, need_openai=False)
    try:
        if args.action == "limit":
            await service.set_user_limit(admin, key, daily)
            print(messages.limit_set(key, daily))
        elif args.action == "reset":
            await service.reset_user(admin, key)
            print(messages.user_reset(key))
        else:
            await service.set_workspace_budget(admin, usd)
            print(messages.budget_set(usd, "workspace/server").replace("This workspace/server", args.workspace))
    finally:
        await service.close()
    return 0
