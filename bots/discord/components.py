"""The buttons under every result and the modal asking for an edit instruction.

The buttons are `DynamicItem`s: the job id lives in the custom_id and the
job's settings in the database, so a click on a message sent before a restart
is handled by the new process exactly like a fresh one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import discord

from bots.buttons import ACTIONS, LABELS

if TYPE_CHECKING:
    from bots.discord.bot import DiscordAdapter

CUSTOM_ID_PREFIX = "imaginebot"
_JOB_ID = r"(?P<job_id>[A-Za-z0-9_-]{1,64})"
MAX_INSTRUCTION = 4000  # Discord's limit for a text input


def _adapter(interaction: discord.Interaction[Any]) -> DiscordAdapter:
    return interaction.client.adapter  # type: ignore[attr-defined,no-any-return]


_EMOJI = {"again": "🔁", "vary": "🎲", "bigger": "🔍", "edit": "✏️", "info": "ℹ️", "delete": "🗑️"}


class JobButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=rf"{CUSTOM_ID_PREFIX}:(?P<action>{'|'.join(ACTIONS)}):{_JOB_ID}",
):
    """One of the buttons under a result (bots/buttons.py says what each does).
    **Again** and the others act for whoever clicks, on their own quota;
    **Delete** only for the requester or an admin."""

    def __init__(self, action: str, job_id: str, *, label: str | None = None) -> None:
        style = discord.ButtonStyle.danger if action == "delete" else discord.ButtonStyle.secondary
        super().__init__(
            discord.ui.Button(
                label=label or LABELS[action],  # type: ignore[index]
                emoji=_EMOJI[action],
                style=style,
                custom_id=f"{CUSTOM_ID_PREFIX}:{action}:{job_id}",
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
        try:
            await adapter.buttons.on_click(interaction, self.action, self.job_id)
        except Exception as e:  # the view would only log it; the user gets an apology
            await adapter.on_unexpected(interaction, e)


def result_view(job_id: str) -> discord.ui.View:
    """Again, Vary, Bigger, Edit, Info, Delete (Discord puts five in a row)."""
    view = discord.ui.View(timeout=None)
    for action in ACTIONS:
        view.add_item(JobButton(action, job_id))
    return view


def history_view(job_ids: list[str]) -> discord.ui.View:
    """One "Again n" button per line of /history (25 buttons at most)."""
    view = discord.ui.View(timeout=None)
    for number, job_id in enumerate(job_ids[:25], start=1):
        view.add_item(JobButton("again", job_id, label=f"Again {number}"))
    return view


InstructionHandler = Callable[[discord.Interaction[Any], str], Awaitable[None]]
EDIT_FORM_PREFIX = f"{CUSTOM_ID_PREFIX}:edit-form:"


class EditForm(discord.ui.Modal):
    """The Edit button's form: an instruction, and optionally size and quality
    (modals take text inputs only; empty = the default).

    Not kept in this process's memory: its custom_id names the job and Discord
    sends the result message (with its images) along with the submission, so
    whichever process receives it — after a restart too — handles it
    (ImaginebotClient.on_interaction)."""

    def __init__(self, job_id: str, *, image_count: int) -> None:
        title = "Edit image" if image_count == 1 else f"Edit {image_count} images"
        super().__init__(title=title, timeout=None, custom_id=f"{EDIT_FORM_PREFIX}{job_id}")
        self.add_item(discord.ui.TextInput(
            label="What should change?", custom_id="instruction", style=discord.TextStyle.paragraph,
            placeholder="make it a watercolor painting", max_length=MAX_INSTRUCTION,
        ))  # fmt: skip
        self.add_item(discord.ui.TextInput(
            label="Size (optional)", custom_id="size", required=False, max_length=20,
            placeholder="auto, square, portrait, landscape, 2k, wide-2k, tall-2k or WxH",
        ))  # fmt: skip
        self.add_item(discord.ui.TextInput(
            label="Quality (optional)", custom_id="quality", required=False, max_length=10,
            placeholder="low, medium, high or auto",
        ))  # fmt: skip
        self.stop()  # finished before it is sent, so discord.py does not keep it


def form_values(data: Any) -> dict[str, str]:
    """The text inputs of a submitted modal, by custom_id."""
    rows = (data or {}).get("components") or []
    return {c.get("custom_id", ""): str(c.get("value") or "") for row in rows for c in row.get("components", [])}


class EditInstructionModal(discord.ui.Modal):
    """The Edit image context menu's form: what to change; the images to edit
    were chosen when it opened (kept in memory for its 15 minutes)."""

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
