"""`imaginebot doctor`, the Slack part: does the bot token work, and does it
carry every scope the code needs? Each finding says how to fix it."""

from __future__ import annotations

import asyncio

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.app import DEFAULT_API_URL
from bots.slack.failures import slack_error
from bots.slack.manifest import BOT_SCOPES

_TOKEN_ERRORS = {
    "invalid_auth": "the token is not valid",
    "not_authed": "no token was sent",
    "token_revoked": "the token was revoked",
    "token_expired": "the token has expired",
    "account_inactive": "the app was uninstalled or its bot deactivated",
}


def _not_slack_json(base: str, error: str) -> str:
    """A proxy or gateway answered (slack_error's `http_503`), not Slack: no verdict on the token."""
    return f"The Slack API at {base} answered HTTP {error.removeprefix('http_')}, not Slack's JSON. Try again; check SLACK_API_URL if you set it."


async def check_app_token(app_token: str, api_url: str | None) -> tuple[bool, str]:
    """Socket Mode's token: an app-level token (xapp-) that Slack accepts for
    apps.connections.open (asking for a URL opens no connection)."""
    where = "Slack app → Basic Information → App-Level Tokens (scope connections:write)"
    if app_token.startswith("xoxb-"):
        return False, f"SLACK_APP_TOKEN holds a bot token (xoxb-): it needs the app-level token (xapp-) from {where}."
    if not app_token.startswith("xapp-"):
        return False, f"SLACK_APP_TOKEN should be an app-level token (it starts with xapp-): {where}."
    base = api_url or DEFAULT_API_URL
    client = AsyncWebClient(token=app_token, base_url=base, timeout=15)
    try:
        await client.apps_connections_open(app_token=app_token)
    except SlackApiError as e:
        error = slack_error(e)
        if error.startswith("http_"):
            return False, _not_slack_json(base, error)
        why = _TOKEN_ERRORS.get(error, f"Slack answered “{error}”")
        return False, f"Slack refused SLACK_APP_TOKEN: {why}. Create or copy it again in {where}."
    except (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        return False, f"Could not reach the Slack API at {base} to check SLACK_APP_TOKEN ({type(e).__name__}: {e})."
    return True, "SLACK_APP_TOKEN works: Socket Mode can connect."


async def check_slack(token: str, api_url: str | None, app_token: str | None = None) -> list[tuple[bool, str]]:
    base = api_url or DEFAULT_API_URL
    findings: list[tuple[bool, str]] = []
    if app_token:
        findings.append(await check_app_token(app_token, api_url))
    if not token.startswith("xoxb-"):
        findings.append(
            (False, "SLACK_BOT_TOKEN should be the Bot User OAuth Token (it starts with xoxb-): Slack app → OAuth & Permissions.")
        )
    client = AsyncWebClient(token=token, base_url=base, timeout=15)
    try:
        resp = await client.auth_test()
    except SlackApiError as e:
        error = slack_error(e)
        if error.startswith("http_"):
            findings.append((False, _not_slack_json(base, error)))
            return findings
        why = _TOKEN_ERRORS.get(error, f"Slack answered “{error}”")
        findings.append(
            (False, f"Slack refused SLACK_BOT_TOKEN: {why}. Copy the Bot User OAuth Token again from Slack app → "
                    "OAuth & Permissions (reinstall the app to the workspace if it was removed).")
        )
        return findings
    except (SlackClientError, aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
        findings.append((False, f"Could not reach the Slack API at {base} ({type(e).__name__}: {e}). Check the network, or SLACK_API_URL if you set it."))
        return findings
    findings.append((True, f"Slack token works: bot @{resp.get('user')} in workspace {resp.get('team')} ({resp.get('team_id')})."))
    if not resp.get("bot_id"):
        findings.append((False, "SLACK_BOT_TOKEN belongs to a person, not a bot: use the Bot User OAuth Token (xoxb-)."))

    header = resp.headers.get("x-oauth-scopes") or resp.headers.get("X-OAuth-Scopes")
    if header is None:
        findings.append((True, "Slack didn't report the token's scopes (a proxy may strip them), so they were not checked."))
        return findings
    granted = {s.strip() for s in header.split(",") if s.strip()}
    missing = [s for s in BOT_SCOPES if s not in granted]
    if missing:
        needs = "; ".join(f"{s} ({BOT_SCOPES[s]})" for s in missing)
        findings.append(
            (False, f"The Slack bot token lacks these scopes: {needs}. Add them in Slack app → OAuth & Permissions → "
                    "Bot Token Scopes (or update the app from `imaginebot slack-manifest`), then reinstall the app "
                    "to the workspace so the token gets them.")
        )
    else:
        findings.append((True, "Slack token has every scope the bot needs."))
    return findings
