"""`imaginebot doctor`, Discord part: is the token good, can the gateway be
reached, are the commands registered, and the invite URL to use.

Plain HTTP against the REST API (no gateway connection, no global state
changed), so it can run beside a live bot. The token is never printed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from bots.discord.invite import explain, invite_url

DEFAULT_API_URL = "https://discord.com/api/v10"
EXPECTED_COMMANDS = ("imagine", "edit", "quota", "imagine-admin", "Edit image")
TIMEOUT_SECONDS = 15.0


class _Failed(Exception):
    pass


async def check_discord(token: str, api_url: str | None) -> list[tuple[bool, str]]:
    """Each entry: (ok, what was checked and, if not ok, how to fix it)."""
    if not token:
        return [(False, "DISCORD_BOT_TOKEN is not set. Copy the bot token from the Discord Developer Portal "
                        "(your application → Bot → Reset Token) into DISCORD_BOT_TOKEN.")]
    results: list[tuple[bool, str]] = []
    if token.lower().startswith("bot "):
        results.append((False, "DISCORD_BOT_TOKEN starts with “Bot ”; set the token alone, without that prefix."))
        token = token[4:].strip()
    base = (api_url or DEFAULT_API_URL).rstrip("/")
    headers = {"Authorization": f"Bot {token}", "User-Agent": "imaginebot-doctor"}
    timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        try:
            me = await _get(session, base, "/users/@me")
        except _Failed as e:
            results.append((False, str(e)))
            return results
        results.append((True, f"Discord token works: logged in as {me.get('username', '?')} (id {me.get('id', '?')})."))

        try:
            app = await _get(session, base, "/oauth2/applications/@me")
        except _Failed as e:
            results.append((False, str(e)))
            return results
        app_id = str(app.get("id", ""))
        if app.get("interactions_endpoint_url"):
            results.append((False, "The application has an Interactions Endpoint URL set, so Discord sends commands there "
                                   "instead of to this bot. Clear it in the Developer Portal (General Information)."))

        try:
            gateway = await _get(session, base, "/gateway/bot")
            results.append((True, f"Discord gateway reachable ({gateway.get('url', '?')})."))
        except _Failed as e:
            results.append((False, str(e)))

        try:
            commands = await _get(session, base, f"/applications/{app_id}/commands")
            names = {c.get("name") for c in commands} if isinstance(commands, list) else set()
            missing = [n for n in EXPECTED_COMMANDS if n not in names]
            if missing:
                results.append((False, "Global commands not registered: " + ", ".join(missing) + ". Run `imaginebot "
                                       "discord-sync` (global, can take up to an hour to appear) or `imaginebot "
                                       "discord-sync --guild ID` (one server, at once)."))
            else:
                results.append((True, "Global commands registered: " + ", ".join(EXPECTED_COMMANDS) + "."))
        except _Failed as e:
            results.append((False, str(e)))

        results.append((True, f"Invite URL: {invite_url(app_id)}\n{explain()}"))
    return results


async def _get(session: aiohttp.ClientSession, base: str, path: str) -> Any:
    try:
        async with session.get(base + path) as resp:
            if resp.status == 401:
                raise _Failed("Discord refused DISCORD_BOT_TOKEN (401 Unauthorized). Reset the token in the Developer "
                              "Portal (your application → Bot → Reset Token) and set the new one.")
            if resp.status >= 400:
                raise _Failed(f"Discord answered {resp.status} to GET {path}. Check DISCORD_API_URL "
                              f"({base}) and try again later.")
            return await resp.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        raise _Failed(f"Could not reach the Discord API at {base} ({type(e).__name__}). Check the network, "
                      "or DISCORD_API_URL if it is set.") from None
