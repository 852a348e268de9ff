"""Putting things in front of the user once an interaction has been deferred:
the live progress line, the result message, and private errors.

Discord's rules shape this module (SPEC §3):
- after a public defer, the first followup replaces the "thinking" message and
  stays public whatever its flags say, so a private message first deletes the
  deferred response and then sends an ephemeral followup;
- an interaction token lives 15 minutes: a result that arrives later goes to
  the channel through the bot itself;
- every file fits `interaction.filesize_limit`; at most 10 files a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from typing import Any, Awaitable, Callable, Sequence

import discord

from bots.discord import render
from bots.discord.components import result_view
from bots.discord.filesize import FittedImage, batches, fit_image
from core.models import GeneratedImage, ImageResult, Progress

log = logging.getLogger("imaginebot.discord")

# Webhook errors meaning the interaction token can no longer be used.
_TOKEN_GONE = {50027, 10015}  # Invalid Webhook Token, Unknown Webhook
_TOO_LARGE = 40005  # Request entity too large


class Lanes:
    """Caps on concurrent requests of each kind, so that a queue of hundreds
    of jobs moving at once (every position changes) or finishing at once
    (every result uploads) cannot crowd out the defers of new commands:
    those must reach Discord within 3 seconds, progress and results need not."""

    def __init__(self, progress_edits: int = 8, uploads: int = 16) -> None:
        self.progress_edits = asyncio.Semaphore(progress_edits)
        self.uploads = asyncio.Semaphore(uploads)


class ProgressMessage:
    """Keeps the deferred message showing the queue position or elapsed time.

    Updates never wait on Discord: the newest text wins, one edit at a time,
    at most one every `min_interval` seconds, except that the first one and a
    change from waiting to running go out at once."""

    def __init__(self, interaction: discord.Interaction[Any], *, min_interval: float, lanes: Lanes) -> None:
        self._interaction = interaction
        self._min_interval = min_interval
        self._lanes = lanes
        self._latest: tuple[str, str] | None = None  # (state, text)
        self._shown: tuple[str, str] | None = None
        self._shown_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._editing = False
        self._stopped = False

    async def update(self, progress: Progress) -> None:
        if self._stopped:
            return
        self._latest = (progress.state, render.render_progress(progress))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._push(), name=f"discord-progress-{self._interaction.id}")

    async def _push(self) -> None:
        while not self._stopped and self._latest is not None and self._latest != self._shown:
            state_changed = self._shown is None or self._latest[0] != self._shown[0]
            wait = self._shown_at + self._min_interval - time.monotonic()
            if wait > 0 and not state_changed:
                await asyncio.sleep(wait)
                continue
            async with self._lanes.progress_edits:
                if self._stopped:
                    return
                key = self._latest
                self._editing = True
                try:
                    await self._interaction.edit_original_response(content=key[1])
                except Exception as e:  # a 5xx, a dropped connection: progress is only a courtesy
                    log.debug("progress edit failed: %r", e)
                    return
                finally:
                    self._editing = False
            self._shown, self._shown_at = key, time.monotonic()

    async def stop(self) -> None:
        """No more edits; waits for one in flight so it cannot land after the result."""
        self._stopped = True
        task = self._task
        if task is not None and not task.done():
            if not self._editing:
                task.cancel()  # only sleeping or waiting for its lane: nothing sent yet
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def send_private(interaction: discord.Interaction[Any], text: str, *, deferred_privately: bool = False) -> bool:
    """Show `text` to the requester only, whatever state the interaction is in.
    Never raises (it is how errors are told): True if Discord took it."""
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)
            return True
        if interaction.response.type is discord.InteractionResponseType.deferred_channel_message and not deferred_privately:
            return await private_after_public_defer(
                text,
                delete=interaction.delete_original_response,
                replace=lambda line: interaction.edit_original_response(content=line, attachments=[], view=None),
                send=lambda note: interaction.followup.send(note, ephemeral=True, allowed_mentions=render.NO_MENTIONS),
            )
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)
        return True
    except Exception as e:
        log.warning("could not tell user %s privately: %r", interaction.user.id, e)
        return False


async def private_after_public_defer(
    text: str,
    *,
    delete: Callable[[], Awaitable[Any]],
    replace: Callable[[str], Awaitable[Any]],
    send: Callable[[str], Awaitable[Any]],
) -> bool:
    """After a public defer, the first followup replaces the "thinking…"
    message and is public whatever its flags: so the placeholder goes first,
    then the private followup. If Discord won't delete it (a 5xx, a dropped
    connection), it becomes a neutral line instead, which also ends its
    "thinking" state so the followup is a message of its own. If neither
    works, nothing is sent, since it would be public. True if the user was told."""
    try:
        await delete()
    except discord.NotFound:
        pass  # already gone
    except Exception as e:
        log.warning("could not delete the deferred message, closing it instead: %r", e)
        try:
            await replace(render.render_placeholder_closed())
        except discord.NotFound:
            pass  # the delete did land
        except Exception as e:
            log.warning("could not close the deferred message either; a private note now would be public: %r", e)
            return False
    try:
        await send(text)
    except Exception as e:
        log.warning("could not send a private message: %r", e)
        return False
    return True


async def fit_images(images: Sequence[GeneratedImage], limit: int) -> list[FittedImage]:
    def work() -> list[FittedImage]:
        many = len(images) > 1
        return [fit_image(img, limit, label=f"Image {i + 1}" if many else "") for i, img in enumerate(images)]

    if all(len(img.data) <= limit for img in images):
        return [FittedImage(img) for img in images]
    return await asyncio.to_thread(work)  # Pillow re-encoding is CPU work


def _files(images: Sequence[GeneratedImage]) -> list[discord.File]:
    return [discord.File(io.BytesIO(img.data), filename=img.filename) for img in images]


async def send_result(
    interaction: discord.Interaction[Any], result: ImageResult, *, lanes: Lanes, notes: Sequence[str] = ()
) -> discord.Message:
    """All images in one message (more only past 10 files), replacing the
    progress message, with the caption and the buttons under every result.
    Returns that (first) message."""
    fitted = await fit_images(result.images, interaction.filesize_limit)
    all_notes = [*notes, *(f.note for f in fitted if f.note)]
    groups = batches([f.image for f in fitted])
    content = render.render_result(result, user_id=interaction.user.id, notes=all_notes)
    view = result_view(result.job_id)
    mentions = render.result_mentions(interaction.user.id)
    async with lanes.uploads:
        return await _deliver(interaction, result, fitted, content, groups, view, mentions)


async def _deliver(
    interaction: discord.Interaction[Any],
    result: ImageResult,
    fitted: list[FittedImage],
    content: str,
    groups: list[list[GeneratedImage]],
    view: discord.ui.View,
    mentions: discord.AllowedMentions,
) -> discord.Message:
    try:
        return await _send_groups(interaction, content, groups, view, mentions)
    except discord.HTTPException as e:
        if e.code == _TOO_LARGE or e.status == 413:
            # Each file fits, but Discord refused the request as a whole: one file a message.
            log.warning("job %s: upload refused as too large, sending one file per message", result.job_id)
            return await _send_groups(interaction, content, [[f.image] for f in fitted], view, mentions)
        elif e.code in _TOKEN_GONE or e.status == 401:
            log.info("job %s: interaction token expired, posting the result in the channel", result.job_id)
            return await _send_to_channel(interaction, content, groups, view, mentions)
        else:
            raise


async def _send_groups(
    interaction: discord.Interaction[Any],
    content: str,
    groups: list[list[GeneratedImage]],
    view: discord.ui.View,
    mentions: discord.AllowedMentions,
) -> discord.Message:
    first = await interaction.edit_original_response(
        content=content, attachments=_files(groups[0]), view=view, allowed_mentions=mentions
    )
    for index, group in enumerate(groups[1:], start=2):
        await interaction.followup.send(
            render.render_more_images(index, len(groups)), files=_files(group), allowed_mentions=render.NO_MENTIONS
        )
    return first


async def _send_to_channel(
    interaction: discord.Interaction[Any],
    content: str,
    groups: list[list[GeneratedImage]],
    view: discord.ui.View,
    mentions: discord.AllowedMentions,
) -> discord.Message:
    channel = interaction.channel
    if channel is None or not hasattr(channel, "send"):
        raise RuntimeError("the interaction expired and its channel is unknown")
    first: discord.Message = await channel.send(content, files=_files(groups[0]), view=view, allowed_mentions=mentions)
    for index, group in enumerate(groups[1:], start=2):
        await channel.send(render.render_more_images(index, len(groups)), files=_files(group), allowed_mentions=render.NO_MENTIONS)
    return first
