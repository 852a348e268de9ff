"""Which Discord attachments are images to edit, and fetching them safely.

Discord serves attachments from its CDN as signed URLs that need no token,
so the bot token is never sent with a download (no `token_hosts`).
"""

from __future__ import annotations

import asyncio
from typing import Sequence

import aiohttp
import discord

from bots.download import download_image, origin_of
from core.errors import InvalidInput
from core.images import MAX_INPUT_BYTES, MAX_INPUT_IMAGES
from core.models import Upload

CDN_HOSTS = ("cdn.discordapp.com", "media.discordapp.net")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff")


def allowed_hosts(api_url: str | None) -> frozenset[str]:
    """Discord's CDN hosts, plus the origin of DISCORD_API_URL when it is overridden
    (a REST proxy or a local fake serves attachments too)."""
    hosts = set(CDN_HOSTS)
    if api_url and (origin := origin_of(api_url)):
        # The origin, not the bare host: another port on that host is another server.
        hosts.add(origin)
    return frozenset(hosts)


def is_image(attachment: discord.Attachment) -> bool:
    if attachment.content_type:
        return attachment.content_type.split(";")[0].strip().lower().startswith("image/")
    return attachment.filename.lower().endswith(_IMAGE_SUFFIXES)


def image_attachments(attachments: Sequence[discord.Attachment]) -> list[discord.Attachment]:
    return [a for a in attachments if is_image(a)]


def check_sizes(attachments: Sequence[discord.Attachment]) -> None:
    """Refuse before downloading what the core would refuse after: the size
    Discord reports is the real size of the stored file."""
    if len(attachments) > MAX_INPUT_IMAGES:
        raise InvalidInput(
            f"That's {len(attachments)} images; an edit can use at most {MAX_INPUT_IMAGES}. Remove some and try again."
        )
    for a in attachments:
        if a.size > MAX_INPUT_BYTES:
            mb = a.size / 1024 / 1024
            raise InvalidInput(f"“{a.filename}” is {mb:.0f} MB; images can be at most 50 MB. Please upload a smaller version.")


async def download_attachments(
    session: aiohttp.ClientSession, attachments: Sequence[discord.Attachment], *, hosts: frozenset[str]
) -> list[Upload]:
    check_sizes(attachments)
    return list(
        await asyncio.gather(
            *(
                download_image(session, a.url, allowed_hosts=hosts, max_bytes=MAX_INPUT_BYTES, filename=a.filename)
                for a in attachments
            )
        )
    )
