"""The buttons under every Slack result, and /imagine-history.

A click carries the action (its action_id, `imagine_<action>`) and the job
id (its value); the rest comes from the ledger, so a click on a message
posted before a restart, or received by another replica, does the same.
Clicks are claimed once (SlackAdapter._once, on their trigger_id), acked at
once, and run as a task under the JobRunner like a slash command, on the
clicker's quota.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from slack_bolt.async_app import AsyncAck

from bots import buttons
from bots.slack import render
from bots.slack.failures import slack_error
from bots.slack.files import files_by_id
from bots.slack.payloads import Origin, requester, team_of, user_key
from bots.slack.turn import SlackTurn
from core.errors import ImagineError, InvalidInput
from core.models import HistoryEntry, ImageResult, RequesterKey
from core.results import may_delete

if TYPE_CHECKING:
    from bots.slack.app import SlackAdapter

log = logging.getLogger("imaginebot.slack")

ACTION_PATTERN = re.compile(rf"^{render.RESULT_ACTION_PREFIX}({'|'.join(buttons.ACTIONS)})$")


class SlackResultButtons:
    def __init__(self, adapter: SlackAdapter) -> None:
        self.adapter = adapter

    @property
    def service(self) -> Any:
        return self.adapter.service

    # -- the listener ------------------------------------------------------------------

    async def on_action(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()  # at once, like the commands: everything else happens in the task
        adapter = self.adapter
        match = ACTION_PATTERN.match(action.get("action_id", ""))
        job_id = str(action.get("value") or "")
        message = body.get("message") or {}
        container = body.get("container") or {}
        origin = Origin(
            team=team_of(body),
            user=body.get("user", {}).get("id", ""),
            channel=body.get("channel", {}).get("id", "") or container.get("channel_id", ""),
            thread_ts=message.get("thread_ts") or container.get("thread_ts"),
            response_url=body.get("response_url"),
            user_thread_ts=message.get("thread_ts") or container.get("thread_ts"),
        )
        if match is None or not job_id:
            return
        name, trigger_id = match.group(1), body.get("trigger_id", "")
        if adapter._closing:
            await adapter.replies.send(origin, render.render_restarting())
        elif not adapter._spawn(origin, lambda turn: self._clicked(turn, name, job_id, trigger_id), f"slack-{name}"):
            await adapter.replies.send(origin, render.render_busy())

    async def _clicked(self, turn: SlackTurn, action: str, job_id: str, trigger_id: str) -> None:
        record = await self.service.results.job(job_id)
        if record is None:
            await turn.tell(buttons.job_gone_text())
        elif action == "again":
            await self._again(turn, record)
        elif action in ("vary", "bigger"):
            await self._vary_or_bigger(turn, action, record)
        elif action == "edit":
            await self._open_edit(turn, job_id, trigger_id)
        elif action == "info":
            await turn.tell(buttons.info_text(record, quote=lambda s: render.escape(render.shorten(s))))
        elif action == "delete":
            await turn.tell(await self._delete(turn, record))

    # -- spending buttons --------------------------------------------------------------

    async def _again(self, turn: SlackTurn, record: Any) -> None:
        """The same prompt and settings; for an edit, the same input images
        (their file ids looked up again with files.info)."""
        if record.kind == "generate":
            await self.adapter._generate(turn, record.prompt, record.options)
            return
        inputs = await self.service.results.inputs(record.job_id)
        if not inputs.images or not all(ref.get("file") for ref in inputs.images):
            await turn.tell(buttons.inputs_gone_text())
            return
        files = await self._files([str(ref["file"]) for ref in inputs.images], turn)
        if files is not None:
            await self.adapter._edit(turn, record.prompt, files, record.options)

    async def _vary_or_bigger(self, turn: SlackTurn, action: str, record: Any) -> None:
        """An edit of the result's first image (Bigger at the 2K size of its shape)."""
        ref = await self.service.results.result(record.job_id)
        if not ref or not ref.get("files"):
            await turn.tell(buttons.result_gone_text())
            return
        files = await self._files([str(ref["files"][0])], turn)
        if files is None:
            return
        planned = buttons.plan(action, record)  # type: ignore[arg-type]
        await self.adapter._edit(turn, planned.prompt, files, planned.options, sized_by_image=action == "bigger")

    async def _files(self, file_ids: Sequence[str], turn: SlackTurn) -> list[Mapping[str, Any]] | None:
        try:
            return await files_by_id(self.adapter.client, file_ids)
        except InvalidInput:
            await turn.tell(buttons.inputs_gone_text())
            return None

    # -- Edit: the Edit image modal on the result's images ------------------------------

    async def _open_edit(self, turn: SlackTurn, job_id: str, trigger_id: str) -> None:
        ref = await self.service.results.result(job_id)
        if not ref or not ref.get("files"):
            await turn.tell(buttons.result_gone_text())
            return
        # Stubs: the modal keeps only file ids, looked up again when it is sent.
        message = {"files": [{"id": fid, "file_access": "check_file_info"} for fid in ref["files"]]}
        await self.adapter._open_edit_modal(turn, trigger_id, message)

    # -- Delete --------------------------------------------------------------------------

    async def _delete(self, turn: SlackTurn, record: Any) -> str:
        origin = turn.origin
        clicker = requester(origin, is_admin=await self.adapter.admins.is_admin(origin.user))
        if not may_delete(clicker, record):
            return buttons.not_yours_text(render.mention(RequesterKey.parse(record.requester_key).user))
        ref = await self.service.results.result(record.job_id)
        if ref is None:
            return buttons.already_deleted_text()
        client = self.adapter.client
        for file_id in ref.get("files") or []:
            try:
                await client.files_delete(file=file_id)  # the bot's own upload: its message goes with it
            except Exception as e:
                if slack_error(e) != "file_deleted":
                    log.warning("job %s: could not delete file %s: %s", record.job_id, file_id, slack_error(e))
                    return "I couldn't delete those images just now. Please try again in a moment."
        if ref.get("ts"):
            try:
                await client.chat_delete(channel=ref["channel"], ts=ref["ts"])
            except Exception as e:  # the images are gone; the buttons would only say the job is gone
                log.info("job %s: could not delete the buttons message: %s", record.job_id, slack_error(e))
        await self.service.results.forget_result(record.job_id)
        log.info("job %s: result deleted by %s", record.job_id, clicker.key)
        return buttons.deleted_text()

    # -- /imagine-history ----------------------------------------------------------------

    async def history(self, turn: SlackTurn, target_user: str | None = None) -> None:
        """The requester's last 10 jobs (or, for an admin, a member's), privately:
        each with a link to its result and an Again button."""
        origin = turn.origin
        try:
            if target_user is None:
                entries = await self.service.results.history(requester(origin))
            else:
                admin = requester(origin, is_admin=await self.adapter.admins.is_admin(origin.user))
                entries = await self.service.results.history_for(admin, user_key(origin.team, target_user))
        except ImagineError as e:
            await turn.tell(render.render_error(e))
            return
        links = await asyncio.gather(*(self._permalink(e.result_ref) for e in entries))
        lines = [(history_text(e, link), e.job.job_id) for e, link in zip(entries, links)]
        whose = "Your" if target_user is None else f"{render.mention(target_user)}'s"
        text, blocks = render.render_history(buttons.history_heading(entries, whose=whose), lines)
        turn.delivered()
        await self.adapter.replies.send(origin, text, blocks=blocks)

    async def _permalink(self, ref: Mapping[str, Any] | None) -> str | None:
        if not ref or not ref.get("ts"):
            return None
        try:
            resp = await self.adapter.client.chat_getPermalink(channel=ref["channel"], message_ts=ref["ts"])
        except Exception as e:  # the line shows without its link
            log.info("no permalink for %s/%s: %s", ref.get("channel"), ref.get("ts"), slack_error(e))
            return None
        return str(resp.get("permalink") or "") or None


def history_text(entry: HistoryEntry, link: str | None) -> str:
    return buttons.history_line(
        entry,
        when=lambda at: render.slack_date(at, fallback=f"{at:%Y-%m-%d %H:%M} UTC"),
        link=lambda _ref: f"<{link}|open>" if link else None,
        quote=render.escape,
    )


def button_note(config: Any) -> Any:
    def note(result: ImageResult, input_images: int) -> str:
        return buttons.result_note(config, result, input_images)

    return note
