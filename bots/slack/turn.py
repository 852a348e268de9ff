"""A Slack request as the job runner sees it: where it came from (`Origin`),
its placeholder message in the channel, and its private replies."""

from __future__ import annotations

from typing import Awaitable, Callable

from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.failures import UNREACHABLE, slack_error
from bots.slack.payloads import Origin, requester
from bots.slack.placeholder import Placeholder, UpdateBudget
from bots.slack.replies import PrivateReplies
from bots.turns import DeliveryFailed, Reach, Turn
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress


class SlackWords:
    def error(self, error: ImagineError) -> str:
        return render.render_error(error)

    def shutting_down(self) -> str:
        return render.render_restarting()

    def unexpected(self, reference: str) -> str:
        return render.render_unexpected(reference)

    def stopped(self, reason: str) -> str:
        return render.render_cancelled() if reason == "cancelled" else render.render_cannot_post_here()

    def undelivered(self, job_id: str, failure: DeliveryFailed, *, given_back: bool) -> str:
        return render.render_upload_failed(job_id, channel_refused=failure.detail in UNREACHABLE, given_back=given_back)

    def interrupted(self, job: InterruptedJob) -> str:
        return render.render_interrupted(job)


WORDS = SlackWords()


class SlackTurn(Turn):
    platform = "slack"
    words = WORDS

    def __init__(self, client: AsyncWebClient, replies: PrivateReplies, origin: Origin) -> None:
        super().__init__()
        self.client = client
        self.replies = replies
        self.origin = origin
        self.requester = requester(origin)
        self.placeholder: Placeholder | None = None

    def show_progress(
        self, header: str, *, min_interval: float, budget: UpdateBudget,
        on_unreachable: Callable[[], None], on_posted: Callable[[str, str], Awaitable[None]],
    ) -> None:  # fmt: skip
        """From now on progress goes to a placeholder message in the channel."""
        self.placeholder = Placeholder(
            self.client,
            channel=self.origin.channel,
            thread_ts=self.origin.thread_ts,
            header=header,
            min_interval=min_interval,
            budget=budget,
            on_unreachable=on_unreachable,
            on_posted=on_posted,
        )

    def reach(self) -> Reach:
        return self.origin.notify()

    async def progress(self, progress: Progress) -> None:
        if self.placeholder is not None:
            await self.placeholder.show(progress)

    async def _say(self, text: str, *, private: bool) -> bool:
        if private or self.placeholder is None:
            return await self.replies.send(self.origin, text)
        await self.placeholder.replace_with(text)
        return True

    async def deliver(self, result: ImageResult) -> None:
        """All images in one message, with who asked, the prompt and the settings."""
        alt = render.shorten(result.prompt, 1000)
        try:
            await self.client.files_upload_v2(
                channel=self.origin.channel,
                thread_ts=self.origin.thread_ts,
                initial_comment=render.render_result(result, user_id=self.origin.user),
                file_uploads=[
                    {"file": image.data, "filename": image.filename, "title": image.filename, "alt_txt": alt}
                    for image in result.images
                ],
            )
        except Exception as e:  # Slack's error, a proxy's text page, a dropped connection
            raise DeliveryFailed(slack_error(e)) from e

    async def withdraw(self) -> None:
        if self.placeholder is not None:
            await self.placeholder.remove()
