"""The channel message that stands for a job while it waits and runs.

It is posted on the job's first progress report, which the core sends only
once the request is accepted (quota reserved): a refused request never shows
anything in the channel. Then it is refreshed at most every
`min_interval` seconds (sooner when the job leaves the queue) within a
budget shared by all placeholders, and deleted when the images arrive or the
job ends without them.

The core reports progress from a task it cancels when the job ends; each
Slack call here runs in a task of its own, so a cancelled report can never
leave a posted message behind that nobody knows the ts of.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.failures import UNREACHABLE, slack_error
from core.models import Progress

log = logging.getLogger("imaginebot.slack")


async def end_message(client: AsyncWebClient, channel: str, ts: str, ended_text: str) -> bool:
    """Delete a message that stands for a job; if Slack won't delete it (a
    proxy's 503, a dropped connection), overwrite it with `ended_text`, so
    that no message says "Generating…" for ever. True if either worked."""
    try:
        await client.chat_delete(channel=channel, ts=ts)
        return True
    except Exception as e:  # any failure: fall back to editing it
        log.warning("could not delete the placeholder %s (%s); editing it instead", ts, slack_error(e))
    try:
        await client.chat_update(channel=channel, ts=ts, text=ended_text, blocks=[])
        return True
    except Exception as e:
        log.warning("could not end the placeholder %s either: %s", ts, slack_error(e))
        return False


class UpdateBudget:
    """chat.update calls, shared by every placeholder of one bot token.

    Slack allows about 50 chat.update calls a minute per workspace (Tier 3)
    and answers 429 beyond; progress is cosmetic, so with many jobs at once
    refreshes are skipped rather than queued (the next report tries again),
    and after a 429 all placeholders pause for its Retry-After."""

    def __init__(self, per_minute: float = 50.0, burst: float = 10.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._tokens = burst
        self._at = clock()
        self._paused_until = 0.0

    def take(self) -> bool:
        now = self.clock()
        if now < self._paused_until:
            return False
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def pause(self, e: SlackApiError) -> None:
        retry_after = 30.0
        if e.response is not None:
            try:
                retry_after = float(e.response.headers.get("Retry-After", retry_after))
            except (TypeError, ValueError):
                pass
        self._paused_until = max(self._paused_until, self.clock() + retry_after)


class Placeholder:
    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str | None,
        header: str,
        min_interval: float,
        budget: UpdateBudget,
        on_unreachable: Callable[[], None],
        on_posted: Callable[[str, str], Awaitable[None]] | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.thread_ts = thread_ts
        self.header = header
        self.min_interval = min_interval
        self.budget = budget
        self.on_unreachable = on_unreachable
        self.on_posted = on_posted  # (job_id, ts): lets a restart find and remove this message
        self.ts: str | None = None
        self.job_id: str | None = None
        self.state: str | None = None  # last state reported by the core
        self._shown_state: str | None = None
        self._last_sent = float("-inf")
        self._closed = False
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    async def show(self, progress: Progress) -> None:
        """The core's progress callback. Called for every queue move of every
        waiting job, so whatever will not be sent is dropped here, cheaply."""
        self.job_id = progress.job_id
        self.state = progress.state
        if self._closed or self._lock.locked():
            return  # a Slack call for this placeholder is under way; a later report brings fresh numbers
        recent = time.monotonic() - self._last_sent < self.min_interval
        if recent and (self.ts is None or progress.state == self._shown_state):
            return  # shown lately (or the post just failed): wait for a later report
        task = asyncio.ensure_future(self._show(progress))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        await asyncio.shield(task)

    async def _show(self, progress: Progress) -> None:
        async with self._lock:
            if self._closed:
                return
            now = time.monotonic()
            text, blocks = render.render_progress(self.header, progress, cancel_value=progress.job_id)
            if self.ts is None:
                await self._post(text, blocks)
            elif self.budget.take():
                await self._update(text, blocks)
            else:
                return  # over Slack's budget: the next report tries again
            self._last_sent = now
            if self.ts is not None:
                self._shown_state = progress.state

    async def _post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        try:
            resp = await self.client.chat_postMessage(
                channel=self.channel, thread_ts=self.thread_ts, text=text, blocks=blocks, unfurl_links=False
            )
        except Exception as e:  # Slack's error, a text body, a dropped connection
            if slack_error(e) in UNREACHABLE:
                self._closed = True
                self.on_unreachable()
            else:
                # Progress is cosmetic: the job goes on, and the next report tries again.
                log.warning("could not post the placeholder in %s: %s", self.channel, slack_error(e))
            return
        self.ts = resp.get("ts")
        if self.ts and self.job_id and self.on_posted is not None:
            try:
                await self.on_posted(self.job_id, self.ts)
            except Exception:  # only needed after a crash; the job goes on
                log.warning("could not record the placeholder of job %s", self.job_id, exc_info=True)

    async def _update(self, text: str, blocks: list[dict[str, Any]]) -> None:
        assert self.ts is not None
        try:
            await self.client.chat_update(channel=self.channel, ts=self.ts, text=text, blocks=blocks)
        except Exception as e:  # progress is cosmetic: whatever failed, the job goes on
            if isinstance(e, SlackApiError) and slack_error(e) == "ratelimited":
                self.budget.pause(e)
            else:
                log.warning("could not update the placeholder %s: %s", self.ts, slack_error(e))

    async def remove(self) -> None:
        """Delete the placeholder (if posted); no progress is shown after this."""
        async with self._lock:
            self._closed = True
            ts, self.ts = self.ts, None
        if ts is not None:
            await end_message(self.client, self.channel, ts, render.render_progress_ended(self.header))

    async def replace_with(self, text: str) -> None:
        """End with a message everyone in the channel may see."""
        async with self._lock:
            self._closed = True
            ts = self.ts
        try:
            if ts is None:
                await self.client.chat_postMessage(channel=self.channel, thread_ts=self.thread_ts, text=text)
            else:
                await self.client.chat_update(channel=self.channel, ts=ts, text=text, blocks=[])
        except Exception as e:
            log.warning("could not post the outcome in %s: %s", self.channel, slack_error(e))
