"""`imaginebot run` / `slack` / `discord`: one asyncio process with the
adapters, the HTTP server, graceful shutdown and crash recovery."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import signal
from typing import Any

from aiohttp import web

from bots.compose import UsageError, open_service
from bots.server import build_web_app
from bots.settings import Settings
from core.config import Config
from core.errors import ConfigError
from core.models import InterruptedJob, RequesterKey
from core.service import interrupted_log_fields

log = logging.getLogger("imaginebot.runner")

NO_ADAPTER = (
    "No chat platform is configured. Set SLACK_BOT_TOKEN (plus SLACK_SIGNING_SECRET for HTTP mode, "
    "or SLACK_APP_TOKEN for Socket Mode) and/or DISCORD_BOT_TOKEN, in the environment or in .env."
)


def _check_settings(settings: Settings, only: str | None) -> tuple[bool, bool]:
    if only == "slack" and not settings.slack_enabled:
        raise UsageError("SLACK_BOT_TOKEN is not set. Set it (and SLACK_SIGNING_SECRET or SLACK_APP_TOKEN) to run the Slack adapter.")
    if only == "discord" and not settings.discord_enabled:
        raise UsageError("DISCORD_BOT_TOKEN is not set. Set it to run the Discord adapter.")
    want_slack = settings.slack_enabled and only in (None, "slack")
    want_discord = settings.discord_enabled and only in (None, "discord")
    if not (want_slack or want_discord):
        raise UsageError(NO_ADAPTER)
    if want_slack and not settings.slack_app_token and not settings.slack_signing_secret:
        raise UsageError("SLACK_SIGNING_SECRET is not set: HTTP mode needs it (Slack app → Basic Information), or set SLACK_APP_TOKEN for Socket Mode.")
    return want_slack, want_discord


async def run(settings: Settings, config: Config, *, only: str | None) -> int:
    want_slack, want_discord = _check_settings(settings, only)
    service = await open_service(settings, config)
    interrupted = await service.recover()
    await service.watch_models()  # shutdown dates: warnings now, re-read daily
    adapters: dict[str, Any] = {}
    slack = discord = None
    if want_slack:
        from bots.slack import SlackAdapter

        slack = SlackAdapter(
            service,
            config,
            token=settings.slack_bot_token or "",
            signing_secret=settings.slack_signing_secret,
            app_token=settings.slack_app_token,
            api_url=settings.slack_api_url,
        )
        adapters["slack"] = slack
    if want_discord:
        from bots.discord import DiscordAdapter

        discord = DiscordAdapter(
            service, config, token=settings.discord_bot_token or "", api_url=settings.discord_api_url, shards=settings.discord_shards
        )
        adapters["discord"] = discord

    app = build_web_app(service, adapters, slack=slack if slack is not None and not settings.slack_app_token else None)
    web_runner = web.AppRunner(app, access_log=None)
    await web_runner.setup()
    try:
        await web.TCPSite(web_runner, "0.0.0.0", settings.port).start()
    except OSError as e:
        await web_runner.cleanup()
        await service.close()
        if e.errno == errno.EADDRINUSE:
            raise UsageError(f"PORT {settings.port} is already in use by another process. Stop it, or set PORT to a free port.") from None
        raise UsageError(f"can't listen on PORT {settings.port} ({e.strerror}). Set PORT to a port this user may open.") from None
    log.info("HTTP server listening on port %d", settings.port)

    stop = asyncio.Event()
    config_errors: list[str] = []
    starting: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if slack is not None and settings.slack_app_token:
            starting.append(asyncio.create_task(_keep_starting("slack", slack, settings.slack_api_url or "https://slack.com/api/",
                                                               stop, config_errors), name="slack-start"))  # fmt: skip
        if discord is not None:
            # In the background: an unreachable Discord must not keep Slack
            # (or /healthz) from serving; a refused token stops the process.
            starting.append(asyncio.create_task(_keep_starting("discord", discord, settings.discord_api_url or "https://discord.com",
                                                               stop, config_errors), name="discord-start"))  # fmt: skip
        # Everything made at start-up (SDKs, command trees, config) lives for
        # the whole run: keep the collector from re-scanning it, which cut the
        # defer p99 from ~25 ms to ~5 ms in bench/discord_defer.py.
        gc.freeze()
        log.info("imaginebot is running: %s", ", ".join(adapters))
        await _announce(interrupted, adapters)
        # From now on a process on this database that dies (kill -9, a lost
        # host) has its jobs refunded and their users told by a survivor.
        service.announce_recovered(lambda jobs: _announce(jobs, adapters))
        # Relax mode: flush jobs into Batch API batches and deliver finished ones, here and on any replica.
        service.relax.start({name: adapter.courier for name, adapter in adapters.items()})
        await stop.wait()
        log.info("shutting down: letting running jobs finish (up to %.0f s)", config.server.shutdown_grace_seconds)
    finally:
        for task in starting:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        service.stop_accepting()
        await service.stop_recovering()  # no new announcements while the adapters close
        await service.relax.close()  # nor relax deliveries: whatever is left, the next process (or a replica) delivers
        grace = config.server.shutdown_grace_seconds
        await asyncio.gather(*(a.close(grace) for a in adapters.values()), return_exceptions=True)
        await web_runner.cleanup()
        # Anything still reserved now was cut short: refund it and tell its user.
        leftovers = await service.refund_own()
        await _announce(leftovers, adapters)
        await service.close()
    log.info("stopped")
    if config_errors:
        raise UsageError(config_errors[0])
    return 0


RETRY_FIRST_SECONDS, RETRY_MAX_SECONDS = 2.0, 60.0


async def _keep_starting(name: str, adapter: Any, where: str, stop: asyncio.Event, config_errors: list[str]) -> None:
    """Connect one platform in the background, so that the other adapter and
    the HTTP server serve meanwhile (its /healthz entry says "down"). A
    credential the platform refuses is a config error: stop the process, which
    then exits 2. Anything else is the platform being unreachable: retry with
    backoff."""
    from discord.errors import LoginFailure

    delay = RETRY_FIRST_SECONDS
    while True:
        try:
            await (adapter.start_socket_mode() if name == "slack" else adapter.start())
            return
        except (ConfigError, LoginFailure) as e:
            config_errors.append(str(e) if isinstance(e, ConfigError) else
                                 "Discord refused DISCORD_BOT_TOKEN. Copy the bot token again from the Discord Developer "
                                 "Portal (your application → Bot → Reset Token) into DISCORD_BOT_TOKEN.")  # fmt: skip
            stop.set()
            return
        except Exception as e:  # unreachable, timed out, 5xx: say so in one line and try again
            log.warning("%s: can't connect to %s (%s: %s); retrying in %.0f s", name, where, type(e).__name__, e, delay)
        if name == "discord" and adapter.client.is_closed():
            adapter.client.clear()  # start() closed it on a gateway timeout: re-open for the next try
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_SECONDS)


async def _announce(jobs: list[InterruptedJob], adapters: dict[str, Any]) -> None:
    """Tell each user whose job a restart, or the death of another process on
    this database, cut short, where the platform allows."""
    for job in jobs:
        adapter = adapters.get(RequesterKey.parse(job.requester_key).platform)
        told = False
        if adapter is not None:
            try:
                told = await adapter.announce_interrupted(job)
            except Exception:  # one unreachable user must not stop the others being told
                log.warning("could not tell the user of interrupted job %s", job.job_id, exc_info=True)
        log.info("interrupted job %s refunded; user told: %s", job.job_id, told, extra=interrupted_log_fields(job))
