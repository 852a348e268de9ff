"""Relax mode on Slack: `/imagine … --relax` queues a Batch API job and tells
the requester privately (with a Cancel button) when to expect it; hours
later, `SlackCourier` posts the images to the same channel or thread,
mentioning them, from the reach stored with the job (no token in it)."""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable, Mapping

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bots.slack import render
from bots.slack.failures import slack_error
from bots.slack.payloads import Origin, requester
from bots.slack.replies import PrivateReplies
from bots.slack.turn import SlackTurn
from bots.turns import DeliveryFailed
from core import relax
from core.errors import ImagineError
from core.models import ImageOptions, ImageResult
from core.service import ImageService

log = logging.getLogger("imaginebot.slack")

RELAX_CANCEL_ACTION_ID = "imagine_relax_cancel"


def relax_reach(origin: Origin) -> dict[str, Any]:
    """Where the result goes and whom it mentions: no response_url (a
    capability that dies in 30 minutes) and no token."""
    return {"platform": "slack", "team": origin.team, "user": origin.user, "channel": origin.channel,
            "thread_ts": origin.thread_ts, "user_thread_ts": origin.user_thread_ts}  # fmt: skip


def _origin(reach: Mapping[str, Any]) -> Origin:
    return Origin(team=str(reach.get("team") or ""), user=str(reach.get("user") or ""), channel=str(reach.get("channel") or ""),
                  thread_ts=reach.get("thread_ts") or None, user_thread_ts=reach.get("user_thread_ts") or None)  # fmt: skip


def render_queued(text: str, job_id: str) -> list[dict[str, Any]]:
    return [{
        "type": "section",
        "text": {"type": "mrkdwn", "text": f":zzz: {text}"},
        "accessory": {"type": "button", "action_id": RELAX_CANCEL_ACTION_ID, "value": job_id,
                      "text": {"type": "plain_text", "text": "Cancel"}},
    }]  # fmt: skip


class SlackRelax:
    """The adapter's relax requests and Cancel clicks."""

    def __init__(self, service: ImageService, client: AsyncWebClient, replies: PrivateReplies) -> None:
        self.service = service
        self.client = client
        self.replies = replies

    async def queue(self, turn: SlackTurn, prompt: str, options: ImageOptions) -> None:
        try:
            ticket = await self.service.relax.submit(turn.requester, prompt, options, relax_reach(turn.origin))
        except ImagineError as e:
            await turn.tell(render.render_error(e))
            return
        turn.delivered()
        await self.replies.send(turn.origin, ticket.message, blocks=render_queued(ticket.message, ticket.job_id))

    async def cancel(self, origin: Origin, job_id: str) -> None:
        outcome = await self.service.relax.cancel(job_id, requester(origin))
        text = relax.cancel_answer(outcome)
        if origin.response_url:  # the queued note itself becomes the answer
            try:
                webhook = AsyncWebhookClient(origin.response_url, session=self.client.session)
                resp = await webhook.send(text=text, replace_original=outcome == "cancelled", response_type="ephemeral")
                if resp.status_code == 200:
                    return
            except Exception as e:  # a dropped connection: say it another way
                log.info("response_url failed (%s)", slack_error(e))
        await self.replies.send(Origin(origin.team, origin.user, origin.channel), text)


class SlackCourier:
    """Posts a finished relax job later, from its stored reach (core.relax.Courier)."""

    ready = True  # the Web API needs no connection

    def __init__(
        self, client: AsyncWebClient, replies: PrivateReplies, ensure_session: Callable[[], Any], *,
        button_note: Callable[[ImageResult, int], str] | None = None,
        on_posted: Callable[[ImageResult, Mapping[str, Any]], Awaitable[None]] | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        self.replies = replies
        self._ensure_session = ensure_session
        self._button_note = button_note  # the buttons under the result, as under any other
        self._on_posted = on_posted

    async def post_result(self, reach: Mapping[str, Any], result: ImageResult) -> None:
        self._ensure_session()
        turn = SlackTurn(self.client, self.replies, _origin(reach), button_note=self._button_note, on_posted=self._on_posted)
        try:
            await turn.deliver(result)  # files_upload_v2 to the channel/thread, mentioning the requester
        except DeliveryFailed as e:
            raise relax.CourierFailed(e.detail) from e

    async def tell(self, reach: Mapping[str, Any], text: str) -> bool:
        """chat.postEphemeral where they asked, else a direct message."""
        self._ensure_session()
        return await self.replies.send(_origin(reach), text)

