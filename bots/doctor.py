"""`imaginebot doctor`: checks every part of a setup and says how to fix what
is wrong. Exit 0 when everything needed is fine, 1 otherwise."""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from bots.compose import UsageError, base_url_hint, database_error, database_problem, open_store
from bots.settings import Settings
from core.ledger_accounting import jobs_recorded_sync
from core.config import Config
from core.errors import ImagineError, NotAllowed
from core.lifecycle import ModelStatus, configured_models, status_of
from core.models import ImageOptions
from core.provider import OpenAIProvider, make_client
from core.store import redact

# (ok, text) — or (ok, text, MARK): "WARN" for something to act on soon that is
# not a failure yet, "note" for what doctor could not check (said, never hidden).
Check = tuple[bool, str] | tuple[bool, str, str]


async def check_database(settings: Settings) -> list[Check]:
    """Opens the database if it is there; never creates it (a doctor run in
    the wrong directory must not leave an empty ledger behind)."""
    db = settings.db_path
    if "://" not in db and not Path(db).exists():
        problem = database_problem(db, must_exist=False)
        if problem:
            return [(False, problem)]
        return [(True, f"no database at {Path(db).resolve()} yet (IMAGINEBOT_DB): the first `imaginebot run` or `generate` creates it there.")]
    try:
        store = await open_store(settings, must_exist=True)
    except UsageError as e:
        return [(False, str(e))]
    try:
        count = await store.run(jobs_recorded_sync, store)
        return [(True, f"database {redact(settings.db_path)} is usable ({count} jobs recorded)")]
    except Exception as e:  # any failure here is the admin's to fix: say what it was
        return [(False, database_error(settings.db_path, e))]
    finally:
        await store.close()


UNCHECKED_ORG = (
    "not checked: whether your OpenAI organisation is verified and has credit — image models need both, and no free "
    "call can tell. Run `imaginebot doctor --live` to make one low-quality image (about $0.006), or look at "
    "https://platform.openai.com/settings/organization/general (Verify) and …/billing."
)
LIVE_NOTICE = "doctor --live makes one low-quality 1024x1024 image to test generation end to end: about $0.006 on your OpenAI account."


async def check_openai(settings: Settings, config: Config, *, live: bool = False) -> list[Check]:
    if not settings.openai_api_key:
        return [(False, "OPENAI_API_KEY is not set: set it in the environment or in .env (https://platform.openai.com/api-keys).")]
    client = make_client(settings.openai_api_key, base_url=settings.openai_base_url, timeout_seconds=30)
    provider = OpenAIProvider(client, config)
    results: list[Check] = []
    today = datetime.now(timezone.utc).date()
    hint = base_url_hint(settings)
    try:
        for model in configured_models(config):
            try:
                api_date = await provider.check_model(model)
            except ImagineError as e:
                status = status_of(config, model, None, today)
                if status.state == "shut_down":  # gone from the API too: the catalog knows why
                    results.append((False, status.advice()))
                elif isinstance(e, NotAllowed):
                    results.append((False, f"OpenAI model {model}: {e.user_message} ({e.detail})"))
                else:  # unreachable, timed out, 5xx: the same for every model
                    results.append((False, f"Could not check OpenAI: {e.detail or e.user_message}. Check the network, or OPENAI_BASE_URL if it is set."))
                    break
                continue
            results.append(_shutdown_check(status_of(config, model, api_date, today)))
        failed = not all(ok for ok, *_ in results)
        if hint and failed:
            results.append((False, hint))
        if live and not failed:
            results.append(await _live_image(provider, config))
        elif not live:
            results.append((True, UNCHECKED_ORG, "note"))
    finally:
        await provider.close()
    return results


def _shutdown_check(status: ModelStatus) -> Check:
    """Past its shutdown date: FAIL naming the replacement; within 30 days: WARN."""
    if status.state == "shut_down":
        return (False, status.advice())
    if status.state == "warn":
        return (True, status.advice(), "WARN")
    return (True, f"OpenAI key works and can see {status.model}")


async def _live_image(provider: OpenAIProvider, config: Config) -> Check:
    """One real, cheap generation: the only way to see verification and credit."""
    model = config.openai.model
    options = ImageOptions(size="1024x1024", quality="low", n=1, format="jpeg")
    try:
        result = await provider.generate(model=model, prompt="imaginebot doctor: a small red circle on white", options=options, user_tag="imaginebot-doctor")
    except ImagineError as e:
        return False, f"live test with {model} failed: {e.user_message} ({e.detail})"
    return True, f"generated one low-quality image with {model} ({result.usage.output_image_tokens} output tokens): generation works end to end."


async def run_doctor(settings: Settings, config: Config, *, live: bool = False) -> int:
    if live:
        print(LIVE_NOTICE, flush=True)  # said before any money is spent
    checks: list[Check] = [(True, f"config {config.source} is valid")]
    checks += await check_database(settings)
    checks += await check_openai(settings, config, live=live)
    platform_checks: list[Callable[[], Awaitable[Sequence[Check]]]] = []
    if settings.slack_enabled:
        from bots.slack.doctor import check_slack

        assert settings.slack_bot_token is not None
        token = settings.slack_bot_token
        platform_checks.append(lambda: check_slack(token, settings.slack_api_url, settings.slack_app_token))
        if not settings.slack_app_token and not settings.slack_signing_secret:
            checks.append((False, "SLACK_SIGNING_SECRET is not set: HTTP mode needs it (Slack app → Basic Information), or set SLACK_APP_TOKEN for Socket Mode."))
    if settings.discord_enabled:
        from bots.discord.doctor import check_discord

        assert settings.discord_bot_token is not None
        dtoken = settings.discord_bot_token
        platform_checks.append(lambda: check_discord(dtoken, settings.discord_api_url))
    if not settings.slack_enabled and not settings.discord_enabled:
        checks.append((False, "no chat platform configured: set SLACK_BOT_TOKEN (and SLACK_SIGNING_SECRET or SLACK_APP_TOKEN) and/or DISCORD_BOT_TOKEN."))
    for check in platform_checks:
        checks += await check()
    for ok, text, *mark in checks:
        print(f"{(mark[0] if mark else 'ok').ljust(4) if ok else 'FAIL'} {text}")
    failed = sum(1 for ok, *_ in checks if not ok)
    unchecked = sum(1 for ok, _, *mark in checks if ok and mark == ["note"])
    if failed:
        print(f"\n{failed} problem(s) to fix.", file=sys.stderr)
    elif unchecked:
        print(f"\nNo problems found, but {unchecked} thing(s) could not be checked (see “note” above).")
    else:
        print("\nAll good.")
    return 0 if not failed else 1
