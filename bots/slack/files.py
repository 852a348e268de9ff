"""Image files in Slack messages: finding them and downloading them.

The bot token is attached only for Slack's file host (and the host of
SLACK_API_URL when it is overridden); bots/download.py enforces the host
allowlist, the same-host redirects, the byte cap and the content check.
"""

from __future__ import annotations

import asyncio
from typing import Any, Iterable, Mapping, Sequence

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient

from bots.download import download_image, origin_of
from core.errors import InvalidInput
from core.models import Upload

SLACK_FILE_HOST = "files.slack.com"
# Slack's own names for the image types people share; anything the core
# cannot use after all is refused there with a precise message.
_IMAGE_FILETYPES = frozenset({"png", "jpg", "jpeg", "gif", "webp", "bmp", "tiff", "heic"})


def token_hosts(api_url: str | None) -> frozenset[str]:
    """Where the bot token may go, as origins (scheme, host and port): Slack's
    file host, and the server of SLACK_API_URL when it is overridden — not
    another port of that host, nor http where it is https."""
    origins = {origin_of(f"https://{SLACK_FILE_HOST}/")}
    if api_url and origin_of(api_url):
        origins.add(origin_of(api_url))
    return frozenset(origins)


def is_image(file: Mapping[str, Any]) -> bool:
    mimetype = str(file.get("mimetype") or "")
    return mimetype.startswith("image/") or str(file.get("filetype") or "").lower() in _IMAGE_FILETYPES


def image_files(message: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """The image files of a message, in the order they were shared."""
    if not message:
        return []
    return [f for f in message.get("files") or () if isinstance(f, Mapping) and (is_image(f) or _needs_info(f))]


def latest_bot_images(messages: Iterable[Mapping[str, Any]], *, bot_user_id: str, before_ts: str) -> list[Mapping[str, Any]]:
    """The images of the bot's most recent image message before `before_ts`."""
    candidates = [
        m
        for m in messages
        if m.get("user") == bot_user_id and float(m.get("ts", 0)) < float(before_ts) and image_files(m)
    ]
    if not candidates:
        return []
    return image_files(max(candidates, key=lambda m: float(m.get("ts", 0))))


def _needs_info(file: Mapping[str, Any]) -> bool:
    # Files shared from another organisation (Slack Connect) arrive as stubs.
    return file.get("file_access") == "check_file_info" or not (file.get("url_private_download") or file.get("url_private"))


async def _complete(client: AsyncWebClient, file: Mapping[str, Any]) -> Mapping[str, Any]:
    if not _needs_info(file):
        return file
    try:
        resp = await client.files_info(file=str(file.get("id", "")))
    except Exception:  # Slack's error, a text body, a dropped connection: nothing is spent yet
        raise InvalidInput("I can't open one of the files in that message. Make sure I'm in this channel and try again.") from None
    info = resp.get("file")
    return info if isinstance(info, Mapping) else file


async def files_by_id(client: AsyncWebClient, file_ids: Sequence[str]) -> list[Mapping[str, Any]]:
    """Fresh file descriptions (files.info), e.g. for ids kept in a modal."""
    return [await _complete(client, {"id": fid, "file_access": "check_file_info"}) for fid in file_ids]


async def download_images(
    session: aiohttp.ClientSession,
    client: AsyncWebClient,
    files: Sequence[Mapping[str, Any]],
    *,
    token: str,
    api_url: str | None,
) -> list[Upload]:
    """Download every image, in order; InvalidInput names the file that failed."""
    hosts = token_hosts(api_url)
    auth = {"Authorization": f"Bearer {token}"}

    async def one(file: Mapping[str, Any]) -> Upload:
        info = await _complete(client, file)
        if not is_image(info):
            name = info.get("name") or "That file"
            raise InvalidInput(f"“{name}” isn't an image. Use a PNG, JPEG or WebP picture.")
        url = str(info.get("url_private_download") or info.get("url_private") or "")
        return await download_image(
            session,
            url,
            allowed_hosts=hosts,
            headers=auth,
            token_hosts=hosts,
            filename=str(info.get("name") or ""),
        )

    # A TaskGroup stops the other downloads as soon as one file is refused.
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(f)) for f in files]
    except* InvalidInput as eg:
        raise eg.exceptions[0] from None
    return [t.result() for t in tasks]
