"""The invite URL, with exactly the scopes and permissions the bot uses.

Interaction responses (defer, progress, results with files, ephemeral
errors) need no channel permission: Discord grants apps Attach Files and
Embed Links when they answer an interaction. The permissions below are for
the one case where the bot posts on its own: a result that arrives after the
15-minute interaction token expired goes to the channel as a bot message.
"""

from __future__ import annotations

import discord

SCOPES = ("bot", "applications.commands")

# permission flag -> why the bot needs it
PERMISSIONS: dict[str, str] = {
    "view_channel": "see the channel to post a late result in it",
    "send_messages": "post a result that arrives after the interaction expired (15 min)",
    "send_messages_in_threads": "the same, when /imagine was used in a thread",
    "attach_files": "attach the images to such a late result",
}


def required_permissions() -> discord.Permissions:
    return discord.Permissions(**{name: True for name in PERMISSIONS})


def invite_url(application_id: int | str) -> str:
    return discord.utils.oauth_url(int(application_id), permissions=required_permissions(), scopes=SCOPES)


def explain() -> str:
    lines = [f"Scopes: {', '.join(SCOPES)}", f"Permissions (integer {required_permissions().value}):"]
    lines += [f"  - {name.replace('_', ' ').title()}: {why}" for name, why in PERMISSIONS.items()]
    return "\n".join(lines)
