"""Relax mode on Discord: `/imagine prompt:… relax:True` queues a Batch API
job and answers privately (with a Cancel button) when to expect it. The
result comes hours later, long after the interaction token died (15
minutes): `DiscordCourier` posts it in the channel with the bot's own token,
mentioning the requester, or in a DM if the bot can't post there.

Failures are told privately by DM; when the member accepts no DM, a short
note in the channel mentions them instead (Discord has no private message
without an interaction), saying only that it failed and nothing was charged.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any, Callable, Mapping

import discord

from bots.discord import delivery, render
from bots.discord.components import result_view
from bots.discord.filesize import DEFAULT_LIMIT, batches
from bots.discord.requester import requester_for
from bots.discord.result_buttons import button_note
from bots.jobs import Slot
from core import relax
from core.errors import ImagineError, InvalidInput
from core.models import GeneratedImage, ImageOptions, ImageResult

if TYPE_CHECKING:
    from bots.discord.bot import DiscordAdapter

log = logging.getLogger("imaginebot.discord")

CUSTOM_ID_PREFIX = "imaginebot:relaxcancel"


def relax_reach(interaction: discord.Interaction[Any]) -> dict[str, Any]:
    """Where the result goes and whom it mentions: ids only, never the interaction token."""
    return {"platform": "discord", "guild_id": str(interaction.guild_id or ""), "channel_id": str(interaction.channel_id or ""),
            "user_id": str(interaction.user.id)}  # fmt: skip


class RelaxCancelButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_PREFIX + r":(?P<job_id>[A-Za-z0-9_-]{1,64})"
):
    """Cancel on the private "queued" note: refunds while the job waits for its batch."""

    def __init__(self, job_id: str) -> None:
        super().__init__(discord.ui.Button(label="Cancel", style=discord.ButtonStyle.secondary, custom_id=f"{CUSTOM_ID_PREFIX}:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RelaxCancelButton:
        return cls(match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        adapter: DiscordAdapter = interaction.client.adapter  # type: ignore[attr-defined]
        try:
            await cancel(adapter, interaction, self.job_id)
        except Exception as e:  # the view would only log it; the user gets an apology
            await adapter.on_unexpected(interaction, e)


def cancel_view(job_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(RelaxCancelButton(job_id))
    return view


async def queue(adapter: DiscordAdapter, slot: Slot, interaction: discord.Interaction[Any], prompt: str,
                options: Callable[[], ImageOptions]) -> None:  # fmt: skip
    """Check, defer privately, reserve and tell when to expect it. No job
    task: the slot only admits the request and is given back at the end."""
    with slot:
        try:
            checked = options()
        except InvalidInput as e:
            await delivery.send_private(interaction, render.render_error(e))
            return
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
        except Exception as e:  # the 3 seconds had passed, or Discord failed: nothing was spent
            log.warning("could not defer interaction %s: %r", interaction.id, e)
            return
        if not await adapter._claimed(interaction):
            return
        try:
            ticket = await adapter.service.relax.submit(requester_for(interaction), prompt, checked, relax_reach(interaction))
        except ImagineError as e:
            await delivery.send_private(interaction, render.render_error(e), deferred_privately=True)
            return
        await interaction.followup.send(ticket.message, view=cancel_view(ticket.job_id), ephemeral=True,
                                        allowed_mentions=render.NO_MENTIONS)  # fmt: skip


async def cancel(adapter: DiscordAdapter, interaction: discord.Interaction[Any], job_id: str) -> None:
    outcome = await adapter.service.relax.cancel(job_id, requester_for(interaction))
    text = relax.cancel_answer(outcome)
    if outcome == "cancelled":  # the queued note itself says so, without its button
        await interaction.response.edit_message(content=text, view=None)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)


class DiscordCourier:
    """Posts a finished relax job later with the bot token (core.relax.Courier)."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        self._adapter = adapter

    @property
    def ready(self) -> bool:
        return self._adapter.healthy

    @property
    def _client(self) -> discord.Client:
        return self._adapter.client

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        user_id = str(reach.get("user_id") or result.requester.user)
        fitted = await delivery.fit_images(result.images, DEFAULT_LIMIT)
        notes = [*(f.note for f in fitted if f.note), button_note(self._adapter.config, 0)(result)]
        content = render.render_result(result, user_id=user_id, notes=notes)
        groups = batches([f.image for f in fitted])
        try:
            message = await self._send(int(reach["channel_id"]), content, groups, result.job_id, user_id)
        except (discord.Forbidden, discord.NotFound, KeyError, ValueError) as e:
            log.info("relax job %s: can't post in the channel (%r); sending it by DM", result.job_id, e)
            try:
                dm = await self._client.http.start_private_message(int(user_id))
                message = await self._send(int(dm["id"]), content, groups, result.job_id, user_id)
            except discord.HTTPException as e:
                raise relax.CourierFailed(f"channel and DM refused: {e!r}") from e
        try:  # its buttons (Vary, Bigger, Delete) and /history find it through this
            await self._adapter._result_posted(result, message)
        except Exception:
            log.warning("relax job %s: could not record where its result was posted", result.job_id, exc_info=True)

    async def _send(
        self, channel_id: int, content: str, groups: list[list[GeneratedImage]], job_id: str, user_id: str
    ) -> discord.Message:
        """Posts the images (the buttons under the first message); returns that first message."""
        channel = self._client.get_partial_messageable(channel_id)
        # The same nonce for every attempt of this job, which discord.py sends
        # with enforce_nonce: Discord drops a repeat of a post it just took.
        first = await channel.send(content, files=_files(groups[0]), view=result_view(job_id), allowed_mentions=render.result_mentions(user_id),
                           nonce=f"relax{job_id}")  # fmt: skip
        for index, group in enumerate(groups[1:], start=2):
            await channel.send(render.render_more_images(index, len(groups)), files=_files(group), allowed_mentions=render.NO_MENTIONS)
        return first

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        user_id = str(reach.get("user_id") or "")
        if not user_id:
            return False
        try:
            dm = await self._client.http.start_private_message(int(user_id))
            await self._client.get_partial_messageable(int(dm["id"])).send(text[: render.MAX_CONTENT], allowed_mentions=render.NO_MENTIONS)
            return True
        except discord.HTTPException as e:
            log.info("could not DM user %s (%r); telling them in the channel", user_id, e)
        try:
            note = f"{render.mention(user_id)} {render_relax_failed_in_channel()}"
            await self._client.get_partial_messageable(int(reach["channel_id"])).send(
                note, allowed_mentions=render.result_mentions(user_id)
            )
            return True
        except (discord.HTTPException, KeyError, ValueError) as e:
            log.warning("could not tell user %s about their relax job: %r", user_id, e)
            return False


def render_relax_failed_in_channel() -> str:
    # Public, so it says no more than needed: no prompt, no policy details.
    return ("your relax image could not be made. Nothing was charged and your relax images are back. "
            "(I couldn't send you a DM with the details.)")  # fmt: skip


def _files(images: list[GeneratedImage]) -> list[discord.File]:
    return [discord.File(io.BytesIO(img.data), filename=img.filename) for img in images]
