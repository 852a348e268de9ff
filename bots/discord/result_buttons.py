"""The buttons under every Discord result, and /history.

A click carries the action and the job id (`imaginebot:<action>:<job id>`);
the rest comes from the ledger, so a click on a message posted before a
restart, or received by another shard process, does the same. Spending
buttons are admitted, deferred, claimed and run like /imagine and /edit
(DiscordAdapter._admit_job → _defer → JobRunner), on the clicker's quota.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Mapping, Sequence

import discord

from bots import buttons
from bots.discord import delivery, render
from bots.discord.attachments import check_sizes, image_attachments
from bots.discord.components import EditForm, EditInstructionModal, form_values, history_view
from bots.discord.requester import requester_for, user_key
from bots.discord.sources import attachment_ref, fetch_referenced, message_link, message_ref
from bots.jobs import Slot
from bots.turns import Reach
from core.errors import ImagineError, InvalidInput
from core.models import HistoryEntry, ImageOptions, ImageResult, ProgressCallback, RequesterKey, Upload
from core.options import build_options, check_prompt
from core.results import may_delete

if TYPE_CHECKING:
    from bots.discord.bot import DiscordAdapter

log = logging.getLogger("imaginebot.discord")
# Downloads the images of an edit, inside the job.
Fetch = Callable[[], Awaitable[list[Upload]]]


class ResultButtons:
    def __init__(self, adapter: DiscordAdapter) -> None:
        self.adapter = adapter

    @property
    def service(self) -> Any:
        return self.adapter.service

    async def on_click(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
        if action == "again":
            await self.again(interaction, job_id)
        elif action in ("vary", "bigger"):
            await self.vary_or_bigger(interaction, action, job_id)
        elif action == "edit":
            await self.open_edit(interaction, job_id)
        elif action == "info":
            await self.adapter._admin(interaction, lambda: self._info(job_id))
        elif action == "delete":
            await self.adapter._admin(interaction, lambda: self._delete(interaction, job_id))

    # -- spending buttons ----------------------------------------------------------

    @asynccontextmanager
    async def _deferred(self, interaction: discord.Interaction[Any]) -> AsyncIterator[tuple[Slot, dict[str, Any]] | None]:
        """A spending click admitted under the cap and deferred, as a command
        is: (its slot, how to reach the clicker), or None when it was turned
        away (told why already). Leaving without starting a job gives the slot back."""
        slot = await self.adapter._admit_job(interaction)
        if slot is None:
            yield None
            return
        with slot:
            notify = await self.adapter._defer(interaction)
            yield None if notify is None else (slot, notify)

    async def again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The same prompt and settings; for an edit, the same input images
        (read again from their messages)."""
        adapter = self.adapter
        async with self._deferred(interaction) as admitted:
            if admitted is None:
                return
            slot, notify = admitted
            record = await self.service.results.job(job_id)
            if record is None:
                await delivery.send_private(interaction, buttons.job_gone_text())
                return
            if record.kind == "generate":
                adapter._start_generation(slot, interaction, record.prompt, record.options, notify)
                return
            inputs = await self.service.results.inputs(job_id)
            if not inputs.images or not all(ref.get("message") for ref in inputs.images):
                await delivery.send_private(interaction, buttons.inputs_gone_text())
                return
            refs = [*inputs.images, *([inputs.mask] if inputs.mask else [])]

            async def fetch() -> list[Upload]:
                return await fetch_referenced(adapter.client.http, await adapter._http(), refs, hosts=adapter._hosts)

            self.start_edit(slot, interaction, record.prompt, record.options, notify, fetch, list(inputs.images),
                            mask=inputs.mask)  # fmt: skip

    async def vary_or_bigger(self, interaction: discord.Interaction[Any], action: str, job_id: str) -> None:
        """An edit of the first image of the result the button is under."""
        adapter = self.adapter
        async with self._deferred(interaction) as admitted:
            if admitted is None:
                return
            slot, notify = admitted
            record = await self.service.results.job(job_id)
            message = interaction.message
            images = image_attachments(message.attachments) if message else []
            if record is None or message is None or not images:
                await delivery.send_private(interaction, buttons.job_gone_text() if record is None else buttons.result_gone_text())
                return
            first = images[0]
            ref = attachment_ref(first, message)

            async def fetch() -> list[Upload]:
                # The click brings the message with freshly signed URLs; the
                # ledger keeps only ids for Again on this new job.
                return await fetch_referenced(adapter.client.http, await adapter._http(), [ref], hosts=adapter._hosts)

            size = (first.width, first.height) if first.width and first.height else None
            planned = buttons.plan(action, record, result_size=size)  # type: ignore[arg-type]
            self.start_edit(slot, interaction, planned.prompt, planned.options, notify, fetch, [ref], sized_by_image=action == "bigger")

    def start_edit(
        self, slot: Slot, interaction: discord.Interaction[Any], prompt: str, options: ImageOptions,
        notify: dict[str, Any], fetch: Fetch, refs: Sequence[Mapping[str, Any]], *,
        mask: Mapping[str, Any] | None = None, sized_by_image: bool = False,
    ) -> None:  # fmt: skip
        """Run an edit whose images are fetched in the job (nothing is
        reserved before they are in hand) and remembered for Again."""
        requester = requester_for(interaction)
        service = self.service

        async def work(progress: ProgressCallback, reach: Reach) -> ImageResult:
            uploads = await fetch()
            images, mask_upload = (uploads[:-1], uploads[-1]) if mask is not None else (uploads, None)
            chosen = options
            if sized_by_image and (dims := buttons.image_dimensions(images[0].data)):
                chosen = replace(options, size=buttons.bigger_size(*dims))  # the image's real shape
            result = await service.edit(requester, prompt, images, chosen, mask=mask_upload, progress=progress, notify=reach)
            await remember_inputs(service, result.job_id, refs, mask)
            return result

        self.adapter._start_job(slot, interaction, work, notify, notes=[], input_images=len(refs))

    # -- Edit: a modal for an instruction, size and quality --------------------------

    async def open_edit(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The form for an instruction, size and quality. The images to edit
        are those of the message the button is under: Discord sends that
        message with the click and again with the form, so this survives
        restarts (see EditForm)."""
        images = await self._checked_images(interaction, interaction.message)
        if images is not None:
            await interaction.response.send_modal(EditForm(job_id, image_count=len(images)))

    async def on_edit_form(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        """The Edit button's form, sent (in whichever process receives it)."""
        values = form_values(interaction.data)
        message = interaction.message
        images = image_attachments(message.attachments) if message else []
        if not images:
            await delivery.send_private(interaction, buttons.result_gone_text())
            return
        refs = [attachment_ref(a, message) for a in images]
        size = values.get("size", "").strip() or None
        quality = values.get("quality", "").strip().lower() or None
        await self._edit_from_modal(interaction, values.get("instruction", ""), images, refs, size, quality)

    async def open_edit_modal(
        self, interaction: discord.Interaction[Any], attachments: Sequence[discord.Attachment], message: discord.Message | None
    ) -> None:
        """The Edit image context menu on any message with images."""
        images = await self._checked_images(interaction, message, attachments)
        if images is None:
            return
        refs = [attachment_ref(a, message) for a in images]

        async def on_instruction(submit: discord.Interaction[Any], instruction: str) -> None:
            await self._edit_from_modal(submit, instruction, images, refs, None, None)

        await interaction.response.send_modal(EditInstructionModal(on_instruction, image_count=len(images)))

    async def _checked_images(
        self, interaction: discord.Interaction[Any], message: discord.Message | None,
        attachments: Sequence[discord.Attachment] | None = None,
    ) -> list[discord.Attachment] | None:  # fmt: skip
        """The images to edit, or None (refused privately)."""
        if not await self.adapter._admit(interaction, job=True):
            return None
        found = attachments if attachments is not None else (message.attachments if message else [])
        images = image_attachments(found)
        try:
            if not images:
                raise InvalidInput(render.render_no_images())
            check_sizes(images)
        except InvalidInput as e:
            await delivery.send_private(interaction, render.render_error(e))
            return None
        return images

    async def _edit_from_modal(
        self, interaction: discord.Interaction[Any], instruction: str, images: Sequence[discord.Attachment],
        refs: Sequence[Mapping[str, Any]], size: str | None, quality: str | None,
    ) -> None:  # fmt: skip
        adapter = self.adapter
        slot = await adapter._admit_job(interaction)
        if slot is None:
            return

        def options() -> ImageOptions:
            check_prompt(instruction)
            return build_options(adapter.config, size=size, quality=quality)

        with slot:
            if ready := await adapter._checked_and_deferred(interaction, options):
                adapter._start_edit(slot, interaction, instruction, images, *ready, mask=None, refs=refs)

    # -- private answers -------------------------------------------------------------

    async def _info(self, job_id: str) -> str:
        record = await self.service.results.job(job_id)
        return buttons.job_gone_text() if record is None else buttons.info_text(record)

    async def _delete(self, interaction: discord.Interaction[Any], job_id: str) -> str:
        record = await self.service.results.job(job_id)
        if record is None:
            return buttons.job_gone_text()
        if not may_delete(requester_for(interaction), record):
            return buttons.not_yours_text(f"<@{RequesterKey.parse(record.requester_key).user}>")
        ref = await self.service.results.result(job_id)
        if ref is None and interaction.message is not None:
            ref = message_ref(interaction.message)  # posted before its place was recorded
        if ref is None:
            return buttons.already_deleted_text()
        try:
            await self.adapter.client.http.delete_message(int(ref["channel"]), int(ref["message"]))
        except discord.NotFound:
            pass  # already gone
        await self.service.results.forget_result(job_id)
        log.info("job %s: result deleted by %s", job_id, requester_for(interaction).key)
        return buttons.deleted_text()

    # -- /history ----------------------------------------------------------------------

    async def history(self, interaction: discord.Interaction[Any], user: discord.abc.User | None = None) -> None:
        """The requester's last 10 jobs (or, for an admin, a member's), privately,
        with a link to each result and an Again button per line."""
        adapter = self.adapter
        if not await adapter._admit(interaction, job=False):
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        requester = requester_for(interaction)
        try:
            if user is None:
                entries = await self.service.results.history(requester)
            else:
                entries = await self.service.results.history_for(requester, user_key(interaction.guild_id, user.id))
        except ImagineError as e:
            await interaction.followup.send(render.render_error(e), ephemeral=True, allowed_mentions=render.NO_MENTIONS)
            return
        text = history_text(entries, whose="Your" if user is None else f"{user.mention}'s")
        view = history_view([e.job.job_id for e in entries]) if entries else discord.utils.MISSING
        await interaction.followup.send(text, view=view, ephemeral=True, allowed_mentions=render.NO_MENTIONS)


def history_text(entries: Sequence[HistoryEntry], *, whose: str) -> str:
    lines = [buttons.history_heading(entries, whose=whose)]
    for number, entry in enumerate(entries, start=1):
        line = buttons.history_line(
            entry,
            when=lambda at: render.discord_timestamp(at, "f"),
            link=lambda ref: f"[open]({message_link(ref)})",
            prompt_chars=60,
        )
        lines.append(f"{number}. {line}")
    text = "\n".join(lines)
    return text if len(text) <= render.MAX_CONTENT else text[: render.MAX_CONTENT - 1] + "…"


async def remember_inputs(service: Any, job_id: str, refs: Sequence[Mapping[str, Any]], mask: Mapping[str, Any] | None) -> None:
    """After the edit was paid for: losing this only disables Again on it."""
    try:
        await service.results.remember_inputs(job_id, refs, mask)
    except Exception:
        log.warning("job %s: could not record its input images (Again on it will not work)", job_id, exc_info=True)


def button_note(config: Any, input_images: int) -> Callable[[ImageResult], str]:
    return lambda result: buttons.result_note(config, result, input_images)
