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


async def check_discord(token: str, api_url: str | None) -> list[tuple[bool, str] | tuple[bool, str, str]]:
    """Each entry: (ok, what was checked and, if not ok, how to fix it)."""
    if not token:
        return [(False, "DISCORD_BOT_TOKEN is not set. Copy the bot token from the Discord Developer Portal "
                        "(your application → Bot → Reset Token) into DISCORD_BOT_TOKEN.")]
    results: list[tuple[bool, str] | tuple[bool, str, str]] = []
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
            results += await _check_commands(session, base, app_id)
        except _Failed as e:
            results.append((False, str(e)))

        results.append((True, f"Invite URL: {invite_url(app_id)}\n{explain()}"))
    return results


MAX_GUILDS_CHECKED = 50


async def _check_commands(session: aiohttp.ClientSession, base: str, app_id: str) -> list[tuple[bool, str] | tuple[bool, str, str]]:
    """Registered globally, or in a server (what `discord-sync --guild ID` does):
    either way people can use them there."""

    def missing(commands: Any) -> list[str]:
        names = {c.get("name") for c in commands} if isinstance(commands, list) else set()
        return [n for n in EXPECTED_COMMANDS if n not in names]

    global_missing = missing(await _get(session, base, f"/applications/{app_id}/commands"))
    guilds = await _get(session, base, "/users/@me/guilds")
    in_guilds = []
    for guild in (guilds if isinstance(guilds, list) else [])[:MAX_GUILDS_CHECKED]:
        if not missing(await _get(session, base, f"/applications/{app_id}/guilds/{guild.get('id')}/commands")):
            in_guilds.append(f"{guild.get('id')} ({guild.get('name', '?')})")
    results: list[tuple[bool, str] | tuple[bool, str, str]] = []
    if not global_missing:
        results.append((True, "Discord commands registered globally: " + ", ".join(EXPECTED_COMMANDS) + "."))
        if in_guilds:
            results.append((True, "Commands are registered both globally and in server " + ", ".join(in_guilds) + ": people "
                                  "there see each command twice. Keep one: re-run `imaginebot discord-sync --guild ID` "
                                  "only while testing, and remove the server's copies when you go global.", "note"))  # fmt: skip
    elif in_guilds:
        results.append((True, "Discord commands registered in server " + ", ".join(in_guilds) + " (not globally: other "
                              "servers don't see them until `imaginebot discord-sync`)."))  # fmt: skip
    else:
        results.append((False, "Discord commands not registered: " + ", ".join(global_missing) + ". Run `imaginebot "
                               "discord-sync` (global, can take up to an hour to appear) or `imaginebot "
                               "discord-sync --guild ID` (one server, at once)."))  # fmt: skip
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
        raise _Failed(f"Could not reach the Discord API at {base}{path} ({type(e).__name__}: {e}). Check the network, "
                      "or DISCORD_API_URL if it is set.") from None
