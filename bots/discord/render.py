"""How each core result and error looks on Discord.

The words come from core.messages; this module only adds what is Discord's
own: mentions, `<t:…>` timestamps, the 2000-character message limit, and the
few texts about servers and channels that only Discord has.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Sequence

import discord

from core import messages
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress, QuotaStatus

MAX_CONTENT = 2000  # Discord refuses longer message content
_ELLIPSIS = "…"


def discord_timestamp(at: datetime, style: str = "R") -> str:
    """Discord renders `<t:unix:R>` as "in 5 hours", in each reader's own zone."""
    return f"<t:{int(at.timestamp())}:{style}>"


def mention(user_id: int | str) -> str:
    return f"<@{user_id}>"


def result_mentions(user_id: int | str) -> discord.AllowedMentions:
    """Ping only the requester: a prompt containing "@everyone" or a role
    mention must not ping anyone when it is echoed back."""
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(int(user_id))], replied_user=False)


NO_MENTIONS = discord.AllowedMentions.none()


def render_result(result: ImageResult, *, user_id: int | str, notes: Sequence[str] = ()) -> str:
    """The caption of a result message: who asked, the prompt, the settings,
    and any note about how the files were made to fit."""
    tail = "".join(f"\n-# {note}" for note in notes)
    caption = messages.result_caption(result, mention=mention(user_id))
    if len(caption) + len(tail) <= MAX_CONTENT:
        return caption + tail
    # A long prompt is cut for display only; the model got it whole.
    overflow = len(caption) + len(tail) - MAX_CONTENT + len(_ELLIPSIS)
    short_prompt = result.prompt[: max(0, len(result.prompt) - overflow)] + _ELLIPSIS
    caption = messages.result_caption(dataclasses.replace(result, prompt=short_prompt), mention=mention(user_id))
    return (caption + tail)[:MAX_CONTENT]


def render_more_images(index: int, total_messages: int) -> str:
    return f"-# (continued, part {index} of {total_messages})"


def render_progress(progress: Progress) -> str:
    return messages.progress_text(progress)


def render_quota(status: QuotaStatus) -> str:
    return messages.quota_text(status, reset_display=discord_timestamp(status.resets_at))


def render_error(error: ImagineError) -> str:
    """Every core error already carries words meant for the user."""
    return _fit(error.user_message)


def render_unexpected(reference: str) -> str:
    return messages.unexpected_error_text(reference)


def render_undelivered(job_id: str, *, refunded: bool) -> str:
    counted = "so they don't count against your daily limit. " if refunded else ""
    return (
        "Your images were made, but Discord didn't let me post them here, "
        f"{counted}Please try again in a moment. (Reference: {job_id})"
    )


def render_placeholder_closed() -> str:
    """What a public "thinking…" message becomes when Discord won't delete it
    before a private note: true whatever the note says, and says nothing private."""
    return "-# This request didn't go through."


def render_interrupted(job: InterruptedJob | None = None) -> str:
    return messages.interrupted()


def render_refusal_not_allowed_server() -> str:
    return "imaginebot isn't enabled on this server. A server admin can ask the bot's operator to allow it."


def render_refusal_dm() -> str:
    return "imaginebot works only in the servers it is enabled in, not in direct messages."


def render_refusal_channel() -> str:
    return "Image commands are turned off in this channel. Please try another channel, or ask a server admin."


def render_busy() -> str:
    return "I'm very busy right now and can't take another job. Nothing was charged. Please try again in a minute."


def render_no_images() -> str:
    return "That message has no images I can edit. Use **Edit image** on a message with PNG, JPEG or WebP pictures."


def render_limit_set(target: str, daily: int | None) -> str:
    return messages.limit_set(target, daily)


def render_role_limit_set(role_mention: str, daily: int | None) -> str:
    return messages.limit_set(f"Members of {role_mention}", daily)


def render_user_reset(target: str) -> str:
    return messages.user_reset(target)


def render_budget_set(usd: float) -> str:
    return messages.budget_set(usd, "server")


def _fit(text: str) -> str:
    return text if len(text) <= MAX_CONTENT else text[: MAX_CONTENT - 1] + _ELLIPSIS
