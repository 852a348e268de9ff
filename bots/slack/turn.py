"""A Slack request as the job runner sees it: where it came from (`Origin`),
its placeholder message in the channel, and its private replies."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.failures import UNREACHABLE, slack_error
from bots.slack.payloads import Origin, requester
from bots.slack.placeholder import Placeholder, UpdateBudget
from bots.slack.replies import PrivateReplies
from bots.turns import DeliveryFailed, Reach, Turn
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress

log = logging.getLogger("imaginebot.slack")


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

    def __init__(
        self, client: AsyncWebClient, replies: PrivateReplies, origin: Origin, *,
        button_note: Callable[[ImageResult, int], str] | None = None,
        on_posted: Callable[[ImageResult, Mapping[str, Any]], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        self._button_note = button_note  # what the buttons under the result will use
        self._on_posted = on_posted  # remembers where the result is, for its buttons and /history
        self.input_images = 0  # how many images an edit used (for what Again on it will use)
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
            uploaded = await self.client.files_upload_v2(
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
        if self._button_note is not None:
            file_ids = [str(f.get("id")) for f in uploaded.get("files") or [] if f.get("id")]
            await self._post_buttons(result, file_ids)

    async def _post_buttons(self, result: ImageResult, file_ids: list[str]) -> None:
        """The buttons go in a message of their own right after the images:
        Slack does not say which message an upload became, and a file comment
        takes no buttons. The images are posted either way, so a failure here
        costs only the buttons."""
        assert self._button_note is not None
        text, blocks = render.render_result_buttons(result.job_id, self._button_note(result, self.input_images))
        try:
            posted = await self.client.chat_postMessage(
                channel=self.origin.channel, thread_ts=self.origin.thread_ts, text=text, blocks=blocks, unfurl_links=False
            )
        except Exception as e:
            log.warning("job %s: could not post the buttons under its images: %s", result.job_id, slack_error(e))
            posted = None
        ref = {"channel": self.origin.channel, "thread_ts": self.origin.thread_ts or "", "files": file_ids,
               "ts": str(posted.get("ts") or "") if posted is not None else ""}  # fmt: skip
        if self._on_posted is not None:
            try:
                await self._on_posted(result, ref)
            except Exception:
                log.warning("job %s: could not record where its result was posted", result.job_id, exc_info=True)

    async def withdraw(self) -> None:
        if self.placeholder is not None:
            await self.placeholder.remove()
