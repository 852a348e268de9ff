"""The buttons under every result and the modal asking for an edit instruction.

The buttons are `DynamicItem`s: the job id lives in the custom_id and the
job's settings in the database, so a click on a message sent before a restart
is handled by the new process exactly like a fresh one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import discord

if TYPE_CHECKING:
    from bots.discord.bot import DiscordAdapter

CUSTOM_ID_PREFIX = "imaginebot"
_JOB_ID = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"
MAX_INSTRUCTION = 4000  # Discord's limit for a text input


def _adapter(interaction: discord.Interaction[Any]) -> DiscordAdapter:
    return interaction.client.adapter  # type: ignore[attr-defined,no-any-return]


# action in the custom_id -> (label, emoji)
_BUTTONS = {"again": ("Again", "🔁"), "edit": ("Edit", "✏️")}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{CUSTOM_ID_PREFIX}:(?P<action>again|edit):{_JOB_ID}",
):
    """**Again** runs the same prompt and settings for whoever clicks (on
    their own quota); **Edit** opens a modal, then edits the images of the
    message the button is on."""

    def __init__(self, action: str, job_id: str) -> None:
        label, emoji = _BUTTONS[action]
        super().__init__(
            discord.ui.Button(
                label=label, emoji=emoji, style=discord.ButtonStyle.secondary, custom_id=f"{CUSTOM_ID_PREFIX}:{action}:{job_id}"
            )
        )
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction[Any], item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> JobButton:
        return cls(match["action"], match["job_id"])

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        adapter = _adapter(interaction)
        handler = adapter.on_again if self.action == "again" else adapter.on_edit_button
        try:
            await handler(interaction, self.job_id)
        except Exception as e:  # the view would only log it; the user gets an apology
            await adapter.on_unexpected(interaction, e)


def result_view(job_id: str, *, again: bool = True) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    if again:
        view.add_item(JobButton("again", job_id))
    view.add_item(JobButton("edit", job_id))
    return view


InstructionHandler = Callable[[discord.Interaction[Any], str], Awaitable[None]]


class EditInstructionModal(discord.ui.Modal):
    """Asks what to change; the images to edit were chosen when it opened."""

    instruction: discord.ui.TextInput[EditInstructionModal] = discord.ui.TextInput(
        label="What should change?",
        style=discord.TextStyle.paragraph,
        placeholder="make it a watercolor painting",
        max_length=MAX_INSTRUCTION,
    )

    def __init__(self, on_instruction: InstructionHandler, *, image_count: int) -> None:
        title = "Edit image" if image_count == 1 else f"Edit {image_count} images"
        super().__init__(title=title, timeout=15 * 60)
        self._on_instruction = on_instruction

    async def on_submit(self, interaction: discord.Interaction[Any]) -> None:
        await self._on_instruction(interaction, self.instruction.value)

    # discord.py's Modal.on_error takes no item (its stubs inherit View's, which does).
    async def on_error(self, interaction: discord.Interaction[Any], error: Exception, /) -> None:  # type: ignore[override]
        await _adapter(interaction).on_unexpected(interaction, error)
