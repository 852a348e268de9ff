"""A Discord request as the job runner sees it: the interaction it came
from, its deferred ("thinking…") message showing progress, then the images."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Sequence

import discord

from bots.discord import delivery, render
from bots.discord.requester import requester_for
from bots.turns import DeliveryFailed, Reach, Turn
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress

log = logging.getLogger("imaginebot.discord")


class DiscordWords:
    def error(self, error: ImagineError) -> str:
        return render.render_error(error)

    def shutting_down(self) -> str:
        return render.render_interrupted()

    def unexpected(self, reference: str) -> str:
        return render.render_unexpected(reference)

    def stopped(self, reason: str) -> str:
        return render.render_interrupted()

    def undelivered(self, job_id: str, failure: DeliveryFailed, *, given_back: bool) -> str:
        return render.render_undelivered(job_id, refunded=given_back)

    def interrupted(self, job: InterruptedJob) -> str:
        return render.render_interrupted(job)


WORDS = DiscordWords()


class DiscordTurn(Turn):
    platform = "discord"
    words = WORDS

    def __init__(
        self, interaction: discord.Interaction[Any], *, reach: Reach, min_interval: float, lanes: delivery.Lanes,
        notes: Sequence[str] = (),
        button_note: Callable[[ImageResult], str] | None = None,
        on_posted: Callable[[ImageResult, discord.Message], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._button_note = button_note  # what the buttons under the result will use
        self._on_posted = on_posted  # remembers where the result is, for its buttons and /history
        self.interaction = interaction
        self.requester = requester_for(interaction)
        self._reach = reach
        self._lanes = lanes
        self._notes = notes
        self._progress = delivery.ProgressMessage(interaction, min_interval=min_interval, lanes=lanes)

    def reach(self) -> Reach:
        return self._reach

    async def progress(self, progress: Progress) -> None:
        await self._progress.update(progress)

    async def _say(self, text: str, *, private: bool) -> bool:
        await self._progress.stop()
        if not private:
            try:
                await self.interaction.edit_original_response(content=text, attachments=[], view=None)
                return True
            except Exception as e:
                log.warning("could not tell user %s publicly, trying privately: %r", self.interaction.user.id, e)
        return await delivery.send_private(self.interaction, text)

    async def deliver(self, result: ImageResult) -> None:
        await self._progress.stop()
        notes = [*self._notes, self._button_note(result)] if self._button_note else self._notes
        try:
            message = await delivery.send_result(self.interaction, result, lanes=self._lanes, notes=notes)
        except Exception as e:  # Discord's error, a 5xx page, a dropped connection
            log.exception("job %s: could not deliver the result on Discord", result.job_id)
            raise DeliveryFailed(repr(e)) from e
        if self._on_posted is not None:
            try:
                await self._on_posted(result, message)
            except Exception:  # the images are posted; only Delete and the history link miss it
                log.warning("job %s: could not record where its result was posted", result.job_id, exc_info=True)

    async def withdraw(self) -> None:
        await self._progress.stop()
