"""Images referred to by the ledger (an edit's inputs, a result's first
image), fetched again when a button is clicked.

Only ids are stored: channel, message and attachment. Discord's attachment
URLs are signed and expire, so the message is read again through the API
(GET channel message) for fresh URLs, then downloaded through the safe path
(bots/download.py: host allowlist, byte cap, content check)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import aiohttp
import discord

from bots.buttons import inputs_gone_text
from bots.download import download_image
from core.errors import InvalidInput
from core.images import MAX_INPUT_BYTES
from core.models import Upload


def attachment_ref(attachment: discord.Attachment, message: discord.Message | None) -> dict[str, str]:
    """What the ledger keeps of one image: ids only. An image uploaded with a
    slash command belongs to no message, so it cannot be fetched again later."""
    ref = {"attachment": str(attachment.id)}
    if message is not None:
        ref.update(channel=str(message.channel.id), message=str(message.id))
    return ref


def message_ref(message: discord.Message) -> dict[str, Any]:
    """Where a result was posted."""
    return {
        "guild": str(message.guild.id) if message.guild else "",
        "channel": str(message.channel.id),
        "message": str(message.id),
        "attachments": [str(a.id) for a in message.attachments],
    }


def message_link(ref: Mapping[str, Any]) -> str:
    return f"https://discord.com/channels/{ref.get('guild') or '@me'}/{ref['channel']}/{ref['message']}"


async def fetch_referenced(
    http: discord.http.HTTPClient, session: aiohttp.ClientSession, refs: Sequence[Mapping[str, Any]], *, hosts: frozenset[str]
) -> list[Upload]:
    """Download the referenced images in order; InvalidInput (private, nothing
    spent) when one is gone."""
    messages: dict[tuple[str, str], Any] = {}
    uploads = []
    for ref in refs:
        if not ref.get("message"):
            raise InvalidInput(inputs_gone_text())
        key = (str(ref["channel"]), str(ref["message"]))
        if key not in messages:
            try:
                messages[key] = await http.get_message(int(key[0]), int(key[1]))
            except (discord.NotFound, discord.Forbidden):
                raise InvalidInput(inputs_gone_text()) from None
        found = next((a for a in messages[key].get("attachments", []) if str(a.get("id")) == str(ref["attachment"])), None)
        if found is None:
            raise InvalidInput(inputs_gone_text())
        uploads.append(
            await download_image(session, found["url"], allowed_hosts=hosts, max_bytes=MAX_INPUT_BYTES, filename=found.get("filename", ""))
        )
    return uploads
