"""The Slack adapter: bolt's AsyncApp, its listeners, HTTP and Socket Mode.

Each listener acks at once (bolt answers Slack's HTTP request or Socket Mode
envelope as soon as `ack()` is called) and leaves the slow work — SQLite,
OpenAI, downloads, uploads — to a task this adapter keeps, caps and drains.
The work itself is thin: read the payload → ImageService → render.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from contextvars import ContextVar
from dataclasses import replace
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack import render
from bots.slack.admin_commands import AdminCommand, parse_admin_command
from bots.slack.admins import AdminDirectory
from bots.slack.files import download_images, files_by_id, image_files, latest_bot_images
from bots.slack.payloads import (
    Origin,
    command_origin,
    mentioned_users,
    requester,
    strip_mention,
    team_of,
    unescape,
    user_key,
)
from bots.buttons import bigger_size, image_dimensions
from bots.jobs import JobCall, JobRunner
from bots.recent import RecentDeliveries
from bots.slack.deliveries import delivery_key
from bots.slack.edit_form import EditFormMetadata
from bots.slack.failures import slack_error
from bots.slack.placeholder import UpdateBudget, end_message
from bots.slack.relax import RELAX_CANCEL_ACTION_ID, SlackCourier, SlackRelax
from bots.slack.replies import PrivateReplies
from bots.slack.result_buttons import ACTION_PATTERN, SlackResultButtons, button_note
from bots.slack.signature import RefusalLog, Refused, verified_body
from bots.slack.turn import SlackTurn
from bots.turns import Turn
from core.config import Config
from core.errors import ConfigError, ImagineError, InvalidInput
from core.images import MAX_INPUT_IMAGES
from core.models import ImageOptions, ImageResult, InterruptedJob, ProgressCallback
from core.options import build_options, parse_command, pickable_qualities
from core.relax import relax_edits_unsupported
from core.service import ImageService

log = logging.getLogger("imaginebot.slack")

DEFAULT_API_URL = "https://slack.com/api/"
COMMAND_IMAGINE = "/imagine"
COMMAND_QUOTA = "/imagine-quota"
COMMAND_ADMIN = "/imagine-admin"
COMMAND_HISTORY = "/imagine-history"
# Every event the manifest subscribes to has a listener here.
SUBSCRIBED_EVENTS = ("app_mention",)

# The delivery key of the payload being handled (`_once` sets it; the listener's
# task, which bolt starts inside the middleware chain, inherits it).
_delivery: ContextVar[str | None] = ContextVar("slack_delivery", default=None)

# Socket Mode's first connection: waits between tries when Slack does not answer.
OPEN_RETRY_WAITS = (0.5, 1.0, 2.0)

# Per Slack call; uploads of a few MB over a slow link need more than the SDK's 30 s.
SLACK_TIMEOUT_SECONDS = 60.0


class SlackAdapter:
    def __init__(
        self,
        service: ImageService,
        config: Config,
        *,
        token: str,
        signing_secret: str | None,
        app_token: str | None = None,
        api_url: str | None = None,
    ) -> None:
        if not signing_secret and not app_token:
            raise ConfigError(
                "Slack needs SLACK_SIGNING_SECRET for HTTP mode (Slack app → Basic Information → Signing Secret), "
                "or SLACK_APP_TOKEN (an xapp- token with connections:write) for Socket Mode."
            )
        self.service = service
        self.config = config
        self.api_url = api_url or DEFAULT_API_URL
        self._token = token
        self._signing_secret = signing_secret or None
        self._app_token = app_token or None
        self.client = AsyncWebClient(token=token, base_url=self.api_url)
        # The client carries the token; bolt takes it from there. Signatures
        # are checked in handle_http, on the raw body, before bolt sees a
        # request (bolt's own check parses first and logs whole bodies);
        # without a signing secret (Socket Mode only) HTTP requests are refused.
        self.app = AsyncApp(
            client=self.client,
            signing_secret=self._signing_secret or "",
            request_verification_enabled=False,
            process_before_response=False,
            logger=logging.getLogger("imaginebot.slack.bolt"),
            name="imaginebot",
        )
        self.replies = PrivateReplies(self.client)
        self.relax = SlackRelax(service, self.client, self.replies)
        self.courier = SlackCourier(
            self.client, self.replies, self._session, button_note=button_note(self.config), on_posted=self._result_posted
        )  # relax results, posted later
        self.admins = AdminDirectory(self.client)
        self.runner = JobRunner(config.server.max_background_tasks, refund=service.delivery_failed, name="slack")
        self.buttons = SlackResultButtons(self)  # the buttons under every result, and /imagine-history
        self._update_budget = UpdateBudget()
        self._refusals = RefusalLog()
        self._recent = RecentDeliveries()
        self._socket: AsyncSocketModeHandler | None = None
        self._closing = False
        self._closed = False
        self._register()

    # -- wiring --------------------------------------------------------------

    def _register(self) -> None:
        app = self.app
        app.middleware(self._once)  # after bolt's own: the signature is checked first
        app.command(COMMAND_IMAGINE)(self._on_imagine)
        app.command(COMMAND_QUOTA)(self._on_quota)
        app.command(COMMAND_ADMIN)(self._on_admin)
        app.command(COMMAND_HISTORY)(self._on_history)
        app.action(ACTION_PATTERN)(self.buttons.on_action)
        app.shortcut(render.EDIT_SHORTCUT_CALLBACK_ID)(self._on_edit_shortcut)
        app.view(render.EDIT_MODAL_CALLBACK_ID)(self._on_edit_submit)
        app.action(render.CANCEL_ACTION_ID)(self._on_cancel)
        app.action(RELAX_CANCEL_ACTION_ID)(self._on_relax_cancel)
        app.event("app_mention")(self._on_mention)
        app.error(self._on_error)

    async def _once(self, req: AsyncBoltRequest, body: dict[str, Any], next: Callable[[], Awaitable[None]]) -> BoltResponse | None:
        """Every payload runs once, however often Slack (or a replay) delivers
        it: a repeat is acked, so Slack stops retrying, and does nothing.

        Only a memory look-up happens here, before the ack: a database write
        would queue every ack behind the store's thread (a burst of 200
        commands acked at half the speed). The claim that holds across
        processes is taken after the ack, before the work (`_claimed`)."""
        timestamps: Sequence[str | None] = req.headers.get("x-slack-request-timestamp") or [None]
        key = delivery_key(body, raw_body=req.raw_body, timestamp=timestamps[0])
        if key is not None and not self._recent.first_time(key):
            log.info("ignoring a repeated delivery of %s", key)
            return BoltResponse(status=200, body="")
        # bolt runs the listener in a task started inside next(): it inherits this.
        _delivery.set(key)
        await next()
        return None

    async def _claimed(self, key: str | None) -> bool:
        """The cross-process claim of a delivery: False if another process (or
        an earlier life of this one) already took it."""
        if key is None:
            return True
        try:
            first = await self.service.claim_event(key)
        except Exception:  # the database is down: the job can't reserve either, and says so
            log.warning("could not record delivery %s; handling it anyway", key, exc_info=True)
            return True
        if not first:
            log.info("ignoring a delivery another process took: %s", key)
        return first

    def _session(self) -> aiohttp.ClientSession:
        """One HTTP session for the Web API, uploads, response_urls and
        downloads (made lazily: it must be created inside the event loop).
        No cookie jar: nothing one host sets may travel to another."""
        session = self.client.session
        if session is None or session.closed:
            # The SDK applies its own timeout only to sessions it creates itself.
            session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=SLACK_TIMEOUT_SECONDS))
            self.client.session = session
        return session

    # -- entry points for the runner --------------------------------------------

    async def handle_http(self, request: web.Request) -> web.Response:
        """POST /slack/events: slash commands, events and interactivity.
        The signature is checked on the raw body before anything parses it."""
        if self._signing_secret is None:
            return web.Response(status=401, text="This bot takes Slack requests over Socket Mode only.")
        try:
            body = await verified_body(request, self._signing_secret)
        except Refused as e:
            self._refusals.refused(request, str(e))
            return web.Response(status=401, text="invalid request")
        if self._closed:
            return web.Response(status=503, text="shutting down")
        self._session()
        started = time.monotonic()
        bolt_request = AsyncBoltRequest(body=body.decode("utf-8", "replace"), query=request.query_string, headers=dict(request.headers))
        bolt_response = await self.app.async_dispatch(bolt_request)
        # With process_before_response=False bolt answers as soon as ack() is called: this is the ack time.
        self.service.observe_ack("slack", time.monotonic() - started)
        return await to_aiohttp_response(bolt_response)

    async def start_socket_mode(self) -> None:
        """Connect to Slack over Socket Mode and return; the connection lives
        (and reconnects) in the background until close()."""
        if self._app_token is None:
            raise ConfigError("Socket Mode needs SLACK_APP_TOKEN (an xapp- token with connections:write).")
        self._session()
        # Ask for the connection URL ourselves first: a refused app token is a
        # config error to report, where the SDK would retry it forever.
        opened = await self._open_connection(self._app_token)
        self._socket = AsyncSocketModeHandler(self.app, self._app_token, web_client=self.client)
        self._socket.client.wss_uri = opened["url"]
        await self._socket.connect_async()

    async def _open_connection(self, app_token: str) -> Any:
        """apps.connections.open, told apart: Slack refusing the token (the
        operator must fix it) from Slack or a proxy not answering (retried a
        few times, then reported as what it is)."""
        failure = ""
        for wait in (*OPEN_RETRY_WAITS, None):
            try:
                return await self.client.apps_connections_open(app_token=app_token)
            except Exception as e:
                failure = slack_error(e)
                data = e.response.data if isinstance(e, SlackApiError) and e.response is not None else None
                if isinstance(data, dict) and data.get("error"):  # Slack's own answer: retrying won't change it
                    raise ConfigError(
                        f"Slack refused SLACK_APP_TOKEN ({failure}). Create an app-level token with the "
                        "connections:write scope (Slack app → Basic Information → App-Level Tokens) and enable Socket Mode."
                    ) from None
            if wait is not None:
                await asyncio.sleep(wait)
        raise ConfigError(
            f"Slack did not answer apps.connections.open ({failure}, {len(OPEN_RETRY_WAITS) + 1} tries): Slack, or a proxy "
            f"on the way to {self.api_url}, is down. SLACK_APP_TOKEN was not checked; try again later (status.slack.com)."
        )

    @property
    def healthy(self) -> bool:
        if self._closing:
            return False
        if self._socket is not None:
            session = self._socket.client.current_session
            return session is not None and not session.closed
        return self._app_token is None  # Socket Mode not connected (yet): down; HTTP mode needs no connection

    async def close(self, grace_seconds: float = 0) -> None:
        """Stop taking new work; let running jobs finish for `grace_seconds`,
        then cancel the rest (the core refunds them; each user is told)."""
        self._closing = True
        await self.runner.drain(grace_seconds)
        self._closed = True
        if self._socket is not None:
            await self._socket.close_async()
        if self.client.session is not None:
            await self.client.session.close()

    async def wait_for_jobs(self, timeout: float | None = None) -> bool:
        """Wait until no background work is left (tests, benchmarks); True if idle."""
        return await self.runner.wait(timeout)

    async def announce_interrupted(self, job: InterruptedJob) -> bool:
        notify = job.notify
        if notify.get("platform") != "slack" or not notify.get("user"):
            return False
        origin = Origin(
            team=str(notify.get("team") or ""),
            user=str(notify["user"]),
            channel=str(notify.get("channel") or ""),
            thread_ts=notify.get("thread_ts") or None,
            response_url=notify.get("slack_response_url") or None,
            user_thread_ts=notify.get("user_thread_ts") or None,
        )
        self._session()
        try:
            placeholder_ts = notify.get("placeholder_ts")
            if placeholder_ts and origin.channel:
                # The channel must not keep saying "Generating…" for a job that will never finish.
                ended = render.render_progress_ended(render.request_header(origin.user, job.prompt, kind=job.kind))
                await end_message(self.client, origin.channel, str(placeholder_ts), ended)
            return await self.replies.send(origin, render.render_interrupted(job))
        finally:
            if self._closed and self.client.session is not None:
                # The runner announces leftovers after close(): leave no session open.
                await self.client.session.close()

    # -- listeners: ack first, work in a task -------------------------------------

    def _spawn(self, origin: Origin, work: Callable[[SlackTurn], Awaitable[None]], name: str) -> bool:
        """Run `work` after the ack, once across processes; False (and nothing started) at the cap."""
        turn = SlackTurn(self.client, self.replies, origin, button_note=button_note(self.config), on_posted=self._result_posted)
        key = _delivery.get()

        async def once(turn: SlackTurn) -> None:
            if await self._claimed(key):
                await work(turn)

        return self.runner.spawn(turn, once, name=f"{name}-{origin.user}")  # type: ignore[arg-type]

    async def _on_imagine(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        if self._closing:
            await ack(text=render.render_restarting(), response_type="ephemeral")
            return
        try:
            prompt, options = parse_command(unescape(command.get("text", "")), self.config)
        except InvalidInput as e:
            await ack(text=render.render_error(e), response_type="ephemeral")
            return
        started = self._spawn(command_origin(command), lambda turn: self._generate(turn, prompt, options), "slack-imagine")
        await (ack() if started else ack(text=render.render_busy(), response_type="ephemeral"))

    async def _on_quota(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        if self._closing:
            await ack(text=render.render_restarting(), response_type="ephemeral")
            return
        text = command.get("text", "")
        started = self._spawn(command_origin(command), lambda turn: self._quota(turn, text), "slack-quota")
        await (ack() if started else ack(text=render.render_busy(), response_type="ephemeral"))

    async def _on_history(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        if self._closing:
            await ack(text=render.render_restarting(), response_type="ephemeral")
            return
        started = self._spawn(command_origin(command), lambda turn: self.buttons.history(turn), "slack-history")
        await (ack() if started else ack(text=render.render_busy(), response_type="ephemeral"))

    async def _on_admin(self, ack: AsyncAck, command: dict[str, Any]) -> None:
        if self._closing:
            await ack(text=render.render_restarting(), response_type="ephemeral")
            return
        parsed = parse_admin_command(command.get("text", ""))
        if parsed is None:
            await ack(text=render.render_admin_help(), response_type="ephemeral")
            return
        started = self._spawn(command_origin(command), lambda turn: self._admin(turn, parsed), "slack-admin")
        await (ack() if started else ack(text=render.render_busy(), response_type="ephemeral"))

    async def _on_edit_shortcut(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        message = body.get("message") or {}
        origin = Origin(
            team=team_of(body),
            user=body.get("user", {}).get("id", ""),
            channel=body.get("channel", {}).get("id", ""),
            thread_ts=message.get("thread_ts") or message.get("ts"),
            response_url=body.get("response_url"),
            user_thread_ts=message.get("thread_ts"),
        )
        trigger_id = body.get("trigger_id", "")
        if self._closing:
            await self.replies.send(origin, render.render_restarting())
        elif not self._spawn(origin, lambda turn: self._open_edit_modal(turn, trigger_id, message), "slack-edit-modal"):
            await self.replies.send(origin, render.render_busy())

    async def _on_edit_submit(self, ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        values = view.get("state", {}).get("values", {})
        instruction = (values.get("instruction", {}).get("value", {}).get("value") or "").strip()

        def chosen(block: str) -> str | None:
            option = values.get(block, {}).get("value", {}).get("selected_option")
            return option.get("value") if option else None

        # Problems with the form are shown in the form, which stays open.
        if not instruction:
            await ack(response_action="errors", errors={"instruction": "Tell me what to change."})
            return
        if self._closing:
            await ack(response_action="errors", errors={"instruction": render.render_restarting()})
            return
        try:
            options = build_options(self.config, size=chosen("size"), quality=chosen("quality"), n=chosen("count"),
                                    background=chosen("background"))  # fmt: skip
        except InvalidInput as e:
            await ack(response_action="errors", errors={"size": e.user_message})
            return
        form = EditFormMetadata.decode(view.get("private_metadata"))
        origin = form.origin(team=team_of(body), user=body.get("user", {}).get("id", ""))
        file_ids = list(form.file_ids)
        if not self._spawn(origin, lambda turn: self._edit_from_modal(turn, instruction, file_ids, options), "slack-edit"):
            await ack(response_action="errors", errors={"instruction": render.render_busy()})
            return
        await ack()

    async def _on_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        job_id = action.get("value", "")
        clicker = body.get("user", {}).get("id", "")
        job = self.runner.find(lambda turn: _placeholder_job(turn) == job_id)
        if job is None:
            return  # already over: its outcome is on its way
        origin = Origin(
            team=team_of(body),
            user=clicker,
            channel=body.get("channel", {}).get("id", ""),
            response_url=body.get("response_url"),
            user_thread_ts=body.get("message", {}).get("thread_ts"),
        )
        owner = job.turn.requester.user
        placeholder = job.turn.placeholder if isinstance(job.turn, SlackTurn) else None
        if owner != clicker:
            await self.replies.send(origin, render.render_cancel_not_yours(owner))
        elif placeholder is None or placeholder.state != "queued" or not job.stop("cancelled"):
            await self.replies.send(origin, render.render_cancel_too_late())

    async def _on_relax_cancel(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        origin = Origin(team=team_of(body), user=body.get("user", {}).get("id", ""), channel=body.get("channel", {}).get("id", ""),
                        response_url=body.get("response_url"))  # fmt: skip
        if not self._spawn(origin, lambda turn: self.relax.cancel(origin, str(action.get("value", ""))), "slack-relax-cancel"):
            await self.replies.send(origin, render.render_busy())

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        # bolt has already acked: events are acknowledged before listeners run.
        origin = Origin(
            team=team_of(body) or event.get("team", ""),
            user=event.get("user", ""),
            channel=event.get("channel", ""),
            thread_ts=event.get("thread_ts") or event.get("ts"),
            user_thread_ts=event.get("thread_ts"),
        )
        bot_user_id = context.bot_user_id or ""
        if self._closing:
            await self.replies.send(origin, render.render_restarting())
        elif not self._spawn(origin, lambda turn: self._mention(turn, event, bot_user_id), "slack-mention"):
            await self.replies.send(origin, render.render_busy())

    async def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        """Last resort for a bug in a listener: log it, apologise with a reference."""
        reference = uuid.uuid4().hex[:12]
        log.error("Slack listener failed (reference %s)", reference, exc_info=error)
        response_url = body.get("response_url")
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        if response_url and user:
            origin = Origin(team=team_of(body), user=user, channel="", response_url=response_url)
            await self.replies.send(origin, render.render_unexpected(reference))

    # -- the work ------------------------------------------------------------------

    async def _generate(self, turn: SlackTurn, prompt: str, options: ImageOptions) -> None:
        if options.relax:  # queued for a batch: told privately now, posted when the batch completes
            await self.relax.queue(turn, prompt, options)
            return
        who = turn.requester
        await self._run_job(
            turn,
            prompt,
            "generate",
            lambda progress, notify: self.service.generate(who, prompt, options, progress=progress, notify=notify),
        )

    async def _quota(self, turn: SlackTurn, text: str) -> None:
        origin = turn.origin
        targets = mentioned_users(text)
        try:
            if targets:
                admin = requester(origin, is_admin=await self.admins.is_admin(origin.user))
                status = await self.service.quota_for(admin, user_key(origin.team, targets[0]))
                answer = render.render_quota(status, subject_id=targets[0])
            elif text.strip():
                answer = render.render_need_mention(COMMAND_QUOTA)
            else:
                answer = render.render_quota(await self.service.quota(requester(origin)))
        except ImagineError as e:
            answer = render.render_error(e)
        await turn.tell(answer)

    async def _admin(self, turn: SlackTurn, command: AdminCommand) -> None:
        if command.action == "history":
            await self.buttons.history(turn, command.user)
            return
        origin = turn.origin
        admin = requester(origin, is_admin=await self.admins.is_admin(origin.user))
        target = user_key(origin.team, command.user or "")
        try:
            if command.action == "limit":
                await self.service.set_user_limit(admin, target, command.daily)
                answer = render.render_limit_set(command.user or "", command.daily)
            elif command.action == "reset":
                await self.service.reset_user(admin, target)
                answer = render.render_reset_done(command.user or "")
            elif command.action == "pace":
                answer = (await self.service.pace_for(admin)).text()
            else:
                await self.service.set_workspace_budget(admin, command.usd)
                answer = render.render_budget_set(command.usd)
        except ImagineError as e:
            answer = render.render_error(e)
        await turn.tell(answer)

    async def _open_edit_modal(self, turn: SlackTurn, trigger_id: str, message: Mapping[str, Any]) -> None:
        files = image_files(message)
        if not files:
            await turn.tell(render.render_no_images_in_message())
            return
        if len(files) > MAX_INPUT_IMAGES:
            await turn.tell(render.render_too_many_images(len(files), MAX_INPUT_IMAGES))
            return
        origin = turn.origin
        view = render.render_edit_modal(
            metadata=EditFormMetadata.of(origin, [str(f.get("id")) for f in files]).encode(),
            image_count=len(files),
            default_size="auto",
            default_quality=self.config.defaults.quality,
            max_n=self.config.limits.max_images_per_request,
            qualities_offered=pickable_qualities(self.config),
        )
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except Exception as e:  # Slack's error, a text body, a dropped connection
            log.warning("views.open failed: %s", slack_error(e))
            await turn.tell(render.render_modal_failed())
            return
        turn.delivered()  # the form is the answer; sending it is a new request

    async def _edit_from_modal(self, turn: SlackTurn, prompt: str, file_ids: Sequence[str], options: ImageOptions) -> None:
        try:
            files = await files_by_id(self.client, file_ids)
        except InvalidInput as e:
            await turn.tell(render.render_error(e))
            return
        await self._edit(turn, prompt, files, options)

    async def _mention(self, turn: SlackTurn, event: Mapping[str, Any], bot_user_id: str) -> None:
        # A repeated delivery of this event never gets here (see _once).
        files = image_files(event)
        if not files and not event.get("thread_ts"):
            await turn.tell(render.render_mention_help())
            return
        if not files:
            files = await self._bot_images_in_thread(turn.origin.channel, str(event["thread_ts"]), str(event.get("ts")), bot_user_id)
        if not files:
            await turn.tell(render.render_no_bot_image_in_thread())
            return
        text = strip_mention(str(event.get("text") or ""), bot_user_id)
        if not text:
            await turn.tell(render.render_empty_edit_instruction())
            return
        try:
            prompt, options = parse_command(text, self.config)
        except InvalidInput as e:
            await turn.tell(render.render_error(e))
            return
        await self._edit(turn, prompt, files, options)

    async def _bot_images_in_thread(self, channel: str, thread_ts: str, before_ts: str, bot_user_id: str) -> list[Mapping[str, Any]]:
        try:
            resp = await self.client.conversations_replies(channel=channel, ts=thread_ts, limit=200)
        except Exception as e:  # Slack's error, a text body, a dropped connection
            log.warning("conversations.replies failed in %s: %s", channel, slack_error(e))
            return []
        return latest_bot_images(resp.get("messages") or [], bot_user_id=bot_user_id, before_ts=before_ts)

    async def _edit(
        self, turn: SlackTurn, prompt: str, files: Sequence[Mapping[str, Any]], options: ImageOptions, *,
        sized_by_image: bool = False,
    ) -> None:  # fmt: skip
        """`sized_by_image`: Bigger, at the 2K-class size of the first image's shape."""
        if options.relax:
            await turn.tell(relax_edits_unsupported())
            return
        if len(files) > MAX_INPUT_IMAGES:
            await turn.tell(render.render_too_many_images(len(files), MAX_INPUT_IMAGES))
            return
        try:
            uploads = await download_images(self._session(), self.client, files, token=self._token, api_url=self.api_url)
        except InvalidInput as e:
            await turn.tell(render.render_error(e))
            return
        if sized_by_image and (dims := image_dimensions(uploads[0].data)):
            options = replace(options, size=bigger_size(*dims))
        who = turn.requester
        turn.input_images = len(uploads)
        refs = [{"file": str(f.get("id"))} for f in files]  # ids only: Again looks them up again

        async def edit(progress: ProgressCallback, notify: Mapping[str, Any]) -> ImageResult:
            result = await self.service.edit(who, prompt, uploads, options, progress=progress, notify=notify)
            try:
                await self.service.results.remember_inputs(result.job_id, refs)
            except Exception:  # paid for: deliver it; only Again on it is lost
                log.warning("job %s: could not record its input images", result.job_id, exc_info=True)
            return result

        await self._run_job(turn, prompt, "edit", edit)

    async def _run_job(self, turn: SlackTurn, prompt: str, kind: str, call: JobCall) -> None:
        """One job, its progress on a placeholder message in the channel."""
        turn.show_progress(
            render.request_header(turn.origin.user, prompt, kind=kind),
            min_interval=self.config.slack.progress_update_seconds,
            budget=self._update_budget,
            on_unreachable=lambda: self._stop(turn, "unreachable"),
            on_posted=lambda job_id, ts: self.service.remember(job_id, {"placeholder_ts": ts}),
        )
        await self.runner.run(turn, call)

    async def _result_posted(self, result: ImageResult, ref: Mapping[str, Any]) -> None:
        await self.service.results.remember_result(result.job_id, ref)

    def _stop(self, turn: SlackTurn, reason: str) -> None:
        job = self.runner.find(lambda t: t is turn)
        if job is not None:
            job.stop(reason)


def _placeholder_job(turn: Turn) -> str | None:
    placeholder = turn.placeholder if isinstance(turn, SlackTurn) else None
    return placeholder.job_id if placeholder is not None else None


__all__ = ["SlackAdapter", "SUBSCRIBED_EVENTS", "DEFAULT_API_URL"]
