"""Who is asking, as the core sees it, and how to reach them after a restart."""

from __future__ import annotations

from typing import Any

import discord

from core.models import Requester, RequesterKey


def workspace_of(interaction: discord.Interaction[Any]) -> str:
    return str(interaction.guild_id) if interaction.guild_id else "dm"


def user_key(guild_id: int | None, user_id: int) -> str:
    """The core's requester key for a Discord member: discord:<guild id or dm>:<user id>."""
    return str(RequesterKey("discord", str(guild_id or "dm"), str(user_id)))


def requester_for(interaction: discord.Interaction[Any]) -> Requester:
    user = interaction.user
    roles: tuple[str, ...] = ()
    if isinstance(user, discord.Member):
        # Ids and names both: admins may key [limits.roles] on either.
        roles = tuple(value for role in user.roles if not role.is_default() for value in (str(role.id), role.name))
    in_guild = interaction.guild_id is not None
    return Requester(
        platform="discord",
        workspace=workspace_of(interaction),
        user=str(user.id),
        channel=str(interaction.channel_id or ""),
        display_name=user.display_name,
        roles=roles,
        is_admin=in_guild and interaction.permissions.manage_guild,
    )


def notify_for(interaction: discord.Interaction[Any], message_id: int | None) -> dict[str, Any]:
    """Stored with the job so that, if the process dies, the next one can tell
    the user through the same interaction (its token lives 15 minutes)."""
    notify: dict[str, Any] = {
        "discord_application_id": str(interaction.application_id),
        "discord_interaction_token": interaction.token,
        "created": interaction.created_at.isoformat(),
        "channel_id": str(interaction.channel_id or ""),
        "user_id": str(interaction.user.id),
    }
    if message_id is not None:
        notify["discord_message_id"] = str(message_id)
    return notify
