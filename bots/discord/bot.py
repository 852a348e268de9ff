"""The Discord adapter: parse the interaction → ImageService → render.

Every job command is deferred before anything slow happens (Discord allows 3
seconds), then runs as a tracked background task that keeps the deferred
message fresh with the queue position and elapsed time and finally replaces
it with the images.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable, Mapping, Sequence

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket

from bots.discord import delivery, render
from bots.discord.attachments import allowed_hosts, check_sizes, download_attachments, is_image
from bots.discord.commands import register_commands
from bots.discord.components import EDIT_FORM_PREFIX, JobButton
from bots.discord.result_buttons import ResultButtons, button_note, remember_inputs
from bots.discord.sources import attachment_ref, message_ref
from bots.discord.filesize import options_for_limit
from bots.discord import relax as relax_mode
from bots.discord.replays import claim_key
from bots.discord_shards import ShardPlan
from bots.recent import RecentDeliveries
from bots.discord.requester import notify_for, requester_for, user_key
from bots.discord.turn import DiscordTurn
from bots.jobs import JobCall, JobRunner, Slot
from bots.turns import Reach
from core import messages
from core.config import Config
from core.errors import ImagineError, InvalidInput
from core.models import ImageOptions, ImageResult, InterruptedJob, ProgressCallback, Upload
from core.options import SIZE_PRESETS, build_options, check_prompt
from core.service import ImageService

log = logging.getLogger("imaginebot.discord")

CONNECT_TIMEOUT_SECONDS = 90.0
INTERACTION_LIFETIME = timedelta(minutes=15)
# Leave a margin: a token a few seconds from expiry may die mid-request.
ANNOUNCE_MARGIN = timedelta(seconds=30)
ANNOUNCE_TIMEOUT_SECONDS = 5.0

class _AdapterHooks:
    """What both client classes add to discord.py's: the adapter (buttons and
    modals reach it through `interaction.client.adapter`), the persistent
    buttons, and the connection state health reports."""

    adapter: DiscordAdapter

    async def setup_hook(self) -> None:
        self.add_dynamic_items(JobButton, relax_mode.RelaxCancelButton)  # type: ignore[attr-defined]

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        # The Edit button's form is not kept in memory (EditForm): handled here
        # by whichever process receives it.
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: dict[str, Any] = dict(interaction.data or {})
        custom_id = str(data.get("custom_id", ""))
        if custom_id.startswith(EDIT_FORM_PREFIX):
            try:
                await self.adapter.buttons.on_edit_form(interaction, custom_id.removeprefix(EDIT_FORM_PREFIX))
            except Exception as e:
                await self.adapter.on_unexpected(interaction, e)

    async def on_connect(self) -> None:
        self.adapter._set_connected(None, True)

    async def on_resumed(self) -> None:
        self.adapter._set_connected(None, True)

    async def on_disconnect(self) -> None:
        self.adapter._set_connected(None, False)


# Guilds only: roles for per-role limits come with GUILD_CREATE. No
# privileged intents, no message content: everything arrives as interactions.
INTENTS = discord.Intents(guilds=True)


class ImaginebotClient(_AdapterHooks, discord.Client):
    """One gateway connection (no DISCORD_SHARD_COUNT)."""

    def __init__(self, adapter: DiscordAdapter) -> None:
        super().__init__(intents=INTENTS)
        self.adapter = adapter
        self.tree: app_commands.CommandTree[ImaginebotClient] = _Tree(self)


class ShardedImaginebotClient(_AdapterHooks, discord.AutoShardedClient):
    """Only the shards of this process's plan; health counts each of them."""

    def __init__(self, adapter: DiscordAdapter, plan: ShardPlan) -> None:
        super().__init__(intents=INTENTS, shard_count=plan.count, shard_ids=list(plan.ids))
        self.adapter = adapter
        self.tree: app_commands.CommandTree[ImaginebotClient] = _Tree(self)  # type: ignore[arg-type]

    # discord.py reports shards one by one; on_connect/on_disconnect above say nothing of which.
    async def on_connect(self) -> None:
        pass

    async def on_resumed(self) -> None:
        pass

    async def on_disconnect(self) -> None:
        pass

    async def on_shard_connect(self, shard_id: int) -> None:
        self.adapter._set_connected(shard_id, True)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.adapter._set_connected(shard_id, True)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        self.adapter._set_connected(shard_id, False)


class _Tree(app_commands.CommandTree[ImaginebotClient]):
    async def on_error(self, interaction: discord.Interaction[ImaginebotClient], error: app_commands.AppCommandError, /) -> None:
        cause = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        await self.client.adapter.on_unexpected(interaction, cause)


class DiscordAdapter:
    def __init__(
        self, service: ImageService, config: Config, *, token: str, api_url: str | None = None, shards: ShardPlan | None = None
    ) -> None:
        self.service = service
        self.config = config
        self._token = token
        self._api_url = api_url.rstrip("/") if api_url else None
        self._hosts = allowed_hosts(self._api_url)
        self.shards = shards
        self.client: ImaginebotClient | ShardedImaginebotClient = (
            ImaginebotClient(self) if shards is None else ShardedImaginebotClient(self, shards)
        )
        self._shards_up: set[int | None] = set()
        register_commands(self.client.tree, self, config)
        # Looked up when needed: `imaginebot discord-sync` makes an adapter without a service.
        self._jobs = JobRunner(config.server.max_background_tasks, refund=lambda job_id, why: self.service.delivery_failed(job_id, why), name="discord")
        self._recent = RecentDeliveries()
        self.buttons = ResultButtons(self)  # the buttons under every result, and /history
        self._lanes = delivery.Lanes()
        self._connected = asyncio.Event()
        self._connect_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._closing = False
        self.courier = relax_mode.DiscordCourier(self)  # relax results, posted later with the bot token

    # ------------------------------------------------------------ life cycle

    @property
    def healthy(self) -> bool:
        return self._connected.is_set() and not self.client.is_closed()

    @property
    def jobs_in_flight(self) -> int:
        """Jobs admitted and not yet finished (health, tests)."""
        return len(self._jobs)

    def _set_connected(self, shard_id: int | None, connected: bool) -> None:
        """`shard_id` None: the one connection of an unsharded client."""
        if connected:
            self._shards_up.add(shard_id)
        else:
            self._shards_up.discard(shard_id)
        wanted: set[int | None] = {None} if self.shards is None else set(self.shards.ids)
        if wanted <= self._shards_up:
            self._connected.set()
        else:
            self._connected.clear()

    def _point_at_api(self) -> None:
        # discord.py builds every REST URL (webhooks and interaction callbacks
        # included) from this class attribute.
        if self._api_url:
            discord.http.Route.BASE = self._api_url

    async def _login(self) -> None:
        self._point_at_api()
        if self.client.user is None:
            await self.client.login(self._token)

    async def start(self) -> None:
        """Log in and connect to the gateway; returns once connected. Does not
        sync commands (that is `imaginebot discord-sync`)."""
        await self._login()
        if self._api_url:
            # SPEC §2: with DISCORD_API_URL the gateway URL comes from that API,
            # not discord.py's built-in default.
            _, gateway_url, _ = await self.client.http.get_bot_gateway()
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)
        self._connect_task = asyncio.create_task(self.client.connect(reconnect=True), name="discord-gateway")
        connected = asyncio.create_task(self._connected.wait())
        done, _ = await asyncio.wait({connected, self._connect_task}, timeout=CONNECT_TIMEOUT_SECONDS, return_when=asyncio.FIRST_COMPLETED)
        if connected in done:
            log.info("discord: connected as %s%s", self.client.user, f" ({self.shards})" if self.shards else "")
            return
        connected.cancel()
        if self._connect_task in done:
            exc = self._connect_task.exception()
            await self.client.close()
            raise exc or RuntimeError("The Discord gateway closed the connection.")
        await self.client.close()
        raise TimeoutError(f"Could not connect to the Discord gateway within {CONNECT_TIMEOUT_SECONDS:g} s.")

    async def sync_commands(self, guild_id: int | None = None, *, clear: bool = False) -> int:
        """Register the application commands globally (can take up to an hour
        to show) or in one guild (at once); `clear` removes them instead."""
        await self._login()
        guild = discord.Object(guild_id) if guild_id else None
        if clear:
            self.client.tree.clear_commands(guild=guild)
        elif guild is not None:
            self.client.tree.copy_global_to(guild=guild)
        synced = await self.client.tree.sync(guild=guild)
        return len(synced)

    async def close(self, grace_seconds: float = 0) -> None:
        """Stop taking commands, let running jobs finish for up to `grace_seconds`,
        cancel the rest (the core refunds them; their users are told)."""
        self._closing = True
        await self._jobs.drain(grace_seconds)
        await self.client.close()
        if self._connect_task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._connect_task
        if self._session is not None:
            await self._session.close()
        self._connected.clear()

    async def announce_interrupted(self, job: InterruptedJob) -> bool:
        """Tell the user of a job a previous process never finished, through the
        interaction it came from while its token still lives (15 minutes)."""
        notify = job.notify
        app_id, token = notify.get("discord_application_id"), notify.get("discord_interaction_token")
        if not app_id or not token:
            return False
        created = _parse_time(notify.get("created")) or job.created_at
        if datetime.now(timezone.utc) - created > INTERACTION_LIFETIME - ANNOUNCE_MARGIN:
            return False
        self._point_at_api()
        # Its own short-lived session: the runner also announces after close(),
        # when the client's session is gone. The interaction token is all it needs.
        async with aiohttp.ClientSession() as session:
            webhook = discord.Webhook({"id": int(app_id), "type": 3, "token": token}, session=session)

            def bounded(call: Awaitable[Any]) -> Awaitable[Any]:
                # Each call on its own clock: discord.py retries a 5xx for ~25 s,
                # and a failed delete still leaves the fallback time to run.
                return asyncio.wait_for(call, ANNOUNCE_TIMEOUT_SECONDS)

            def send(text: str) -> Awaitable[Any]:
                return bounded(webhook.send(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS))

            text = render.render_interrupted(job)
            try:
                if notify.get("discord_message_id"):
                    message_id = int(notify["discord_message_id"])
                    told = await delivery.private_after_public_defer(
                        text,
                        delete=lambda: bounded(webhook.delete_message(message_id)),
                        replace=lambda line: bounded(webhook.edit_message(message_id, content=line)),
                        send=send,
                    )
                else:
                    await send(text)
                    told = True
            except Exception as e:
                log.info("could not tell the user of interrupted job %s: %r", job.job_id, e)
                return False
        if not told:
            log.info("could not tell the user of interrupted job %s", job.job_id)
        return told

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        return self._session

    # ------------------------------------------------------------ admission

    def _refusal(self, interaction: discord.Interaction[Any], *, job: bool) -> str | None:
        """Why this interaction must not run here, in words for the user."""
        if self._closing:
            return messages.shutting_down()
        allowed = self.config.discord.allowed_guilds
        if allowed:
            if interaction.guild_id is None:
                return render.render_refusal_dm()
            if str(interaction.guild_id) not in allowed:
                return render.render_refusal_not_allowed_server()
        if job:
            channel = interaction.channel
            ids = {str(interaction.channel_id), str(getattr(channel, "parent_id", None))}
            if ids & set(self.config.discord.disabled_channels):
                return render.render_refusal_channel()
        return None

    async def _admit(self, interaction: discord.Interaction[Any], *, job: bool) -> bool:
        """For interactions that start no job here (a job's modal opening, quota, admin)."""
        if not self._first_delivery(interaction):
            return False
        refusal = self._refusal(interaction, job=job)
        if refusal is None and job and not self._jobs.has_room():
            refusal = render.render_busy()
        if refusal is None:
            return True
        await delivery.send_private(interaction, refusal)
        return False

    async def _admit_job(self, interaction: discord.Interaction[Any]) -> Slot | None:
        """A slot for the job this interaction starts, or None (refused privately,
        or a repeated delivery). The slot is taken before the first await, so
        commands arriving together cannot exceed the cap between the check and
        the start; the caller gives it back (`with slot:`) if no job starts."""
        if not self._first_delivery(interaction):
            return None
        refusal = self._refusal(interaction, job=True)
        slot = self._jobs.try_reserve() if refusal is None else None
        if slot is not None:
            return slot
        await delivery.send_private(interaction, refusal or render.render_busy())
        return None

    def _first_delivery(self, interaction: discord.Interaction[Any]) -> bool:
        """False for an interaction this process has already taken (a gateway
        RESUME replays events). Synchronous: nothing may delay the defer."""
        if self._recent.first_time(interaction.id):
            return True
        log.info("ignoring a repeated delivery of interaction %s", interaction.id)
        return False

    async def _claimed(self, interaction: discord.Interaction[Any]) -> bool:
        """After the defer, before any money: the database claim that holds
        across processes (two shard processes may both get one interaction)."""
        try:
            if await self.service.claim_event(claim_key(interaction.id)):
                return True
        except Exception:
            # Discord took only our acknowledgement, which already rules out a
            # second job; a database hiccup here must not lose this one.
            log.warning("could not record interaction %s as taken", interaction.id, exc_info=True)
            return True
        log.info("interaction %s is already being handled elsewhere", interaction.id)
        with contextlib.suppress(Exception):
            await interaction.delete_original_response()
        return False

    # ------------------------------------------------------------ jobs

    async def on_imagine(
        self, interaction: discord.Interaction[Any], prompt: str, *, size: str | None, quality: str | None,
        count: int | None, format: str | None, background: str | None = None, model: str | None = None,
        relax: bool = False,
    ) -> None:
        slot = await self._admit_job(interaction)
        if slot is None:
            return

        def options() -> ImageOptions:
            check_prompt(prompt)
            return build_options(self.config, size=_wxh(size), quality=quality, n=count, format=format,
                                 background=background, model=model, relax=relax)  # fmt: skip

        if relax:  # the Batch API: queued privately now, posted in the channel when the batch completes
            await relax_mode.queue(self, slot, interaction, prompt, options)
            return
        with slot:
            if ready := await self._checked_and_deferred(interaction, options):
                self._start_generation(slot, interaction, prompt, *ready)

    async def on_again(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        await self.buttons.again(interaction, job_id)

    def _start_generation(
        self, slot: Slot, interaction: discord.Interaction[Any], prompt: str, options: ImageOptions, notify: dict[str, Any]
    ) -> None:
        options, note = options_for_limit(options, interaction.filesize_limit)
        requester = requester_for(interaction)

        async def work(progress: ProgressCallback, reach: Reach) -> ImageResult:
            return await self.service.generate(requester, prompt, options, progress=progress, notify=reach)

        self._start_job(slot, interaction, work, notify, notes=[note] if note else [])

    async def on_edit(
        self, interaction: discord.Interaction[Any], prompt: str, images: Sequence[discord.Attachment], *,
        mask: discord.Attachment | None, size: str | None, quality: str | None, count: int | None,
        background: str | None = None, model: str | None = None,
    ) -> None:
        slot = await self._admit_job(interaction)
        if slot is None:
            return

        def options() -> ImageOptions:
            check_prompt(prompt)
            built = build_options(self.config, size=_wxh(size), quality=quality, n=count, background=background, model=model)
            for attachment in [*images, *([mask] if mask else [])]:
                if not is_image(attachment):
                    raise InvalidInput(f"“{attachment.filename}” isn't an image. Attach a PNG, JPEG or WebP picture.")
            check_sizes([*images, *([mask] if mask else [])])
            return built

        with slot:
            if ready := await self._checked_and_deferred(interaction, options):
                self._start_edit(slot, interaction, prompt, images, *ready, mask=mask)

    async def on_edit_menu(self, interaction: discord.Interaction[Any], message: discord.Message) -> None:
        await self.buttons.open_edit_modal(interaction, message.attachments, message)

    async def on_edit_button(self, interaction: discord.Interaction[Any], job_id: str) -> None:
        await self.buttons.open_edit(interaction, job_id)

    def _start_edit(
        self, slot: Slot, interaction: discord.Interaction[Any], prompt: str, images: Sequence[discord.Attachment],
        options: ImageOptions, notify: dict[str, Any], *, mask: discord.Attachment | None,
        refs: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """`refs`: where the images came from, kept for Again (ids only; an
        image uploaded with the command itself has no message to read again)."""
        options, note = options_for_limit(options, interaction.filesize_limit)
        requester = requester_for(interaction)
        input_refs = list(refs) if refs is not None else [attachment_ref(a, None) for a in images]
        mask_ref = attachment_ref(mask, None) if mask is not None else None

        async def work(progress: ProgressCallback, reach: Reach) -> ImageResult:
            session = await self._http()
            uploads = await download_attachments(session, images, hosts=self._hosts)
            mask_upload: Upload | None = None
            if mask is not None:
                (mask_upload,) = await download_attachments(session, [mask], hosts=self._hosts)
            result = await self.service.edit(
                requester, prompt, uploads, options, mask=mask_upload, progress=progress, notify=reach
            )
            await remember_inputs(self.service, result.job_id, input_refs, mask_ref)
            return result

        self._start_job(slot, interaction, work, notify, notes=[note] if note else [], input_images=len(images))

    async def _checked_and_deferred(
        self, interaction: discord.Interaction[Any], options: Callable[[], ImageOptions]
    ) -> tuple[ImageOptions, dict[str, Any]] | None:
        """Bad input is answered privately at once (nothing deferred, nothing
        spent); good input is deferred. Returns (options, notify) to start the job."""
        try:
            checked = options()
        except InvalidInput as e:
            await delivery.send_private(interaction, render.render_error(e))
            return None
        notify = await self._defer(interaction)
        return None if notify is None else (checked, notify)

    async def _defer(self, interaction: discord.Interaction[Any]) -> dict[str, Any] | None:
        """Acknowledge within Discord's 3 seconds, publicly since the result will
        be public. Returns what the job stores to reach the user after a crash,
        or None if Discord no longer takes the interaction or another process
        has already taken it."""
        try:
            response = await interaction.response.defer(thinking=True)
        except Exception as e:
            # Usually the 3 seconds had passed (10062 Unknown interaction), or
            # Discord or the network failed (a 5xx, a dropped connection):
            # nothing was spent, and the interaction cannot be answered.
            log.warning("could not defer interaction %s: %r", interaction.id, e)
            return None
        # Discord's 3 seconds run from the interaction's creation (its snowflake time), not from our handler.
        waited = (discord.utils.utcnow() - interaction.created_at).total_seconds()
        self.service.observe_ack("discord", max(0.0, waited))
        if not await self._claimed(interaction):
            return None
        return notify_for(interaction, response.message_id if response is not None else None)

    def _start_job(
        self, slot: Slot, interaction: discord.Interaction[Any], call: JobCall, reach: Reach, *, notes: list[str],
        input_images: int = 0,
    ) -> None:  # fmt: skip
        turn = DiscordTurn(
            interaction, reach=reach, min_interval=self.config.discord.progress_update_seconds, lanes=self._lanes, notes=notes,
            button_note=button_note(self.config, input_images), on_posted=self._result_posted,
        )  # fmt: skip
        slot.start(self._jobs.serve(turn, self._jobs.run(turn, call)), name=f"discord-job-{interaction.id}")

    async def _result_posted(self, result: ImageResult, message: discord.Message) -> None:
        await self.service.results.remember_result(result.job_id, message_ref(message))

    async def on_unexpected(self, interaction: discord.Interaction[Any], error: BaseException) -> None:
        """The last resort: log with a reference, apologise privately, leak nothing."""
        reference = getattr(error, "job_id", None) or uuid.uuid4().hex[:12]
        log.error("unexpected error in discord interaction %s (ref %s)", interaction.id, reference, exc_info=error)
        # Anything may be broken at this point (even the HTTP session, at shutdown): never raise from here.
        with contextlib.suppress(Exception):
            await delivery.send_private(interaction, render.render_unexpected(reference))

    # ------------------------------------------------------------ quota and admin

    async def on_quota(self, interaction: discord.Interaction[Any]) -> None:
        if not await self._admit(interaction, job=False):
            return
        await self._private_answer(interaction, lambda: self._quota_text(interaction))

    async def _quota_text(self, interaction: discord.Interaction[Any]) -> str:
        return render.render_quota(await self.service.quota(requester_for(interaction)))

    async def on_history(self, interaction: discord.Interaction[Any]) -> None:
        await self.buttons.history(interaction)

    async def on_admin_history(self, interaction: discord.Interaction[Any], user: discord.abc.User) -> None:
        await self.buttons.history(interaction, user)

    async def on_admin_limit(self, interaction: discord.Interaction[Any], user: discord.abc.User, daily: int | None) -> None:
        async def act() -> str:
            await self.service.set_user_limit(requester_for(interaction), user_key(interaction.guild_id, user.id), daily)
            return render.render_limit_set(user.mention, daily)

        await self._admin(interaction, act)

    async def on_admin_role(self, interaction: discord.Interaction[Any], role: discord.Role, daily: int | None) -> None:
        async def act() -> str:
            await self.service.set_role_limit(requester_for(interaction), str(role.id), daily)
            return render.render_role_limit_set(role.mention, daily)

        await self._admin(interaction, act)

    async def on_admin_reset(self, interaction: discord.Interaction[Any], user: discord.abc.User) -> None:
        async def act() -> str:
            await self.service.reset_user(requester_for(interaction), user_key(interaction.guild_id, user.id))
            return render.render_user_reset(user.mention)

        await self._admin(interaction, act)

    async def on_admin_budget(self, interaction: discord.Interaction[Any], usd: float) -> None:
        async def act() -> str:
            await self.service.set_workspace_budget(requester_for(interaction), usd)
            return render.render_budget_set(usd)

        await self._admin(interaction, act)

    async def on_admin_pace(self, interaction: discord.Interaction[Any]) -> None:
        async def act() -> str:
            return (await self.service.pace_for(requester_for(interaction))).text()

        await self._admin(interaction, act)

    async def _admin(self, interaction: discord.Interaction[Any], act: Callable[[], Awaitable[str]]) -> None:
        if not await self._admit(interaction, job=False):
            return
        await self._private_answer(interaction, act)

    async def _private_answer(self, interaction: discord.Interaction[Any], answer: Callable[[], Awaitable[str]]) -> None:
        """Defer privately (the database may be slow), then answer privately."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            text = await answer()
        except ImagineError as e:
            text = render.render_error(e)
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=render.NO_MENTIONS)


def _wxh(size: str | None) -> str | None:
    """A preset as WxH, so the config's size rules apply to it too (commands
    synced before a config change may still offer a preset now turned off)."""
    return SIZE_PRESETS.get(size, size) if size else None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
