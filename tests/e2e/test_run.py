"""`imaginebot run` end to end: one /imagine through each platform, health and
metrics, structured logs without secrets, then SIGTERM with jobs running."""

from __future__ import annotations

import json
import signal
from typing import Callable

from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import (
    Fakes,
    SlackUser,
    StartBot,
    assert_charged,
    assert_job_logs,
    assert_no_secrets,
    assert_refunded,
    database_bytes,
    decode_image,
    discord_images,
    discord_key,
    discord_leftovers,
    discord_outcomes,
    discord_private,
    discord_results,
    discord_user_id,
    eventually,
    jobs_by_user,
    read_jobs,
    the_job,
)

RESTARTING = "restarting"
INTERRUPTED = "interrupted because the bot restarted"
NOTHING_CHARGED = "Nothing was charged"


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


async def test_one_imagine_per_platform_then_sigterm_finishes_or_refunds_every_job(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    bot = await start_bot()

    # -- one /imagine through each platform ------------------------------------------
    alice = slack_user("UALICE")
    ack = await alice.imagine(bot, "a red fox in the snow --size landscape")
    assert ack.status == 200 and ack.ack_text == "", ack
    ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a lighthouse at dawn"}, user_id=discord_user_id(1))

    await eventually(alice.deliveries, what="Alice's images in the Slack channel", seen=alice.outcomes)
    [slack_png] = alice.uploaded_files()
    assert decode_image(slack_png) == (1536, 1024)
    await fakes.discord.wait_for_result(ix)
    [discord_png] = discord_images(fakes.discord, ix)
    assert decode_image(discord_png) == (1024, 1024)
    assert alice.outcomes() == [f"images: {alice.deliveries()[0].text}"]
    assert len(discord_outcomes(ix)) == 1 and discord_leftovers(ix) == []

    # -- health and metrics ----------------------------------------------------------
    status, body = await bot.get("/healthz")
    health = json.loads(body)
    assert status == 200 and health["slack"] == "up" and health["discord"] == "up" and health["database"] == "up", health
    status, metrics = await bot.get("/metrics")
    assert status == 200
    jobs = metric_samples(metrics, "imaginebot_jobs_total")
    for platform in ("slack", "discord"):
        assert jobs[(("kind", "generate"), ("outcome", "succeeded"), ("platform", platform))] == 1, jobs
        assert metric_samples(metrics, "imaginebot_images_generated_total")[(("platform", platform),)] == 1
        assert metric_samples(metrics, "imaginebot_spent_usd_total")[(("platform", platform),)] > 0

    # -- SIGTERM while jobs run: a short one finishes within the grace, a long one
    # is cut short, refunded and its user told; new commands are turned away.
    bob, carol, dave = slack_user("UBOB"), slack_user("UCAROL"), slack_user("UDAVE")
    calls_before = len(fakes.openai.calls("/images/generations"))
    await bob.imagine(bot, "SLOW:2 a quick watercolor")
    await carol.imagine(bot, "SLOW:300 an endless mural")
    quick_ix = await fakes.discord.send_slash_command("imagine", {"prompt": "SLOW:2 a quick sketch"}, user_id=discord_user_id(2))
    slow_ix = await fakes.discord.send_slash_command("imagine", {"prompt": "SLOW:300 a long saga"}, user_id=discord_user_id(3))
    await eventually(
        lambda: len(fakes.openai.calls("/images/generations")) == calls_before + 4,
        what="the four slow jobs to reach OpenAI",
    )

    bot.send(signal.SIGTERM)

    # While the running jobs get their grace period, new commands are refused politely.
    await bot.wait_health(503)
    late = await dave.imagine(bot, "a late request")
    assert late.status == 200 and RESTARTING in late.ack_text and NOTHING_CHARGED in late.ack_text, late
    late_ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a late request"}, user_id=discord_user_id(4))
    late_reply = await fakes.discord.wait_for_private(late_ix)
    assert RESTARTING in late_reply["content"], late_reply

    assert await bot.wait_exit() == 0

    # The short jobs finished during the grace period and were delivered.
    assert len(bob.deliveries()) == 1 and bob.private() == [], bob.outcomes()
    assert len(discord_results(quick_ix)) == 1 and discord_private(quick_ix) == [], discord_outcomes(quick_ix)
    # The long ones were refunded and their users told, once, in private.
    [carol_told] = carol.private()
    assert (RESTARTING in carol_told or INTERRUPTED in carol_told) and NOTHING_CHARGED in carol_told, carol_told
    assert carol.deliveries() == [], carol.outcomes()
    assert carol.live_placeholders() == []
    [slow_told] = discord_private(slow_ix)
    assert INTERRUPTED in slow_told and NOTHING_CHARGED in slow_told, discord_outcomes(slow_ix)
    assert discord_results(slow_ix) == [] and discord_leftovers(slow_ix) == []

    # The ledger agrees with what each user was shown.
    db = bot.db_path
    for key in (alice.key, bob.key, discord_key(discord_user_id(1)), discord_key(discord_user_id(2))):
        assert_charged(the_job(db, key))
    for key in (carol.key, discord_key(discord_user_id(3))):
        assert_refunded(the_job(db, key))
    by_user = jobs_by_user(db)
    assert dave.key not in by_user and discord_key(discord_user_id(4)) not in by_user
    assert [j for j in read_jobs(db) if j["status"] == "reserved"] == []

    # Logs: JSON, one line per job outcome with who/where/what/how long; no secret anywhere.
    assert_job_logs(bot.log_records(), read_jobs(db))
    assert_no_secrets("the bot's log output", bot.log_text(), fakes.secrets)
    assert_no_secrets("the database", database_bytes(db), fakes.secrets)


async def test_metrics_time_each_slack_ack_and_discord_defer(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    # README (Operations → Metrics): "ack/defer latency histograms".
    bot = await start_bot()
    grace = slack_user("UGRACE")
    await grace.imagine(bot, "a timed ack")
    ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a timed defer"}, user_id=discord_user_id(5))
    await eventually(grace.deliveries, what="Grace's images", seen=grace.outcomes)
    await fakes.discord.wait_for_result(ix)

    status, metrics = await bot.get("/metrics")

    assert status == 200
    counts = metric_samples(metrics, "imaginebot_ack_seconds_count")
    assert counts.get((("platform", "slack"),)) == 1 and counts.get((("platform", "discord"),)) == 1, (
        f"imaginebot_ack_seconds observations by platform: {counts}"
    )
    assert await bot.terminate() == 0
