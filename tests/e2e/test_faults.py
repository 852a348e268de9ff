"""Faults injected through the fakes while `imaginebot run` serves both
platforms: every user gets exactly one final outcome, and a job that failed
costs its user nothing."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any, Callable

from tests.e2e.conftest import (
    Fakes,
    SlackUser,
    StartBot,
    assert_charged,
    assert_job_logs,
    assert_refunded,
    discord_key,
    discord_leftovers,
    discord_outcomes,
    discord_private,
    discord_results,
    discord_user_id,
    eventually,
    read_jobs,
    the_job,
)
from tests.fakes.discord_server import FakeInteraction

TIMEOUT_SECONDS = 2
# A configured pace: learning would take the fake's "Limit 5" at its word and
# slow every case down. The storm's 12 429s each ask for a pause of 1 s.
FAULT_CONFIG = {"openai": {"timeout_seconds": TIMEOUT_SECONDS, "server_error_retries": 1, "images_per_minute": 1000,
                           "max_queue_wait_seconds": 120}}
# A short patience for a 429 that never ends.
ENDLESS_CONFIG = {"openai": {**FAULT_CONFIG["openai"], "max_queue_wait_seconds": 4}}


@dataclass(frozen=True)
class Fault:
    trigger: str  # prompt prefix understood by the fake OpenAI
    told: str  # what the user must read
    attempts: int  # model calls the bot may make for it
    at_least: bool = False  # attempts is a floor: the job retries in line until it gives up


FAULTS = [
    Fault("SERVER_ERROR", "isn't answering right now", attempts=2),
    Fault("NO_CREDIT", "out of credit", attempts=1),  # insufficient_quota: never retried
    Fault("SLOW:30", f"took longer than {TIMEOUT_SECONDS} seconds", attempts=1),  # timeouts: never retried (double billing)
    Fault("BLOCK_INPUT", "safety system blocked this prompt", attempts=1),
]


# 429s are a schedule: back in line after each one (at its head: the other case
# may never get a call in), refunded and told only after max_queue_wait_seconds.
ENDLESS_429 = Fault("RATE_LIMIT", "images a minute", attempts=0, at_least=True)


def assert_attempts(fault: Fault, made: int, prompt: str) -> None:
    assert made >= fault.attempts if fault.at_least else made == fault.attempts, (prompt, made)


def requests_for(fakes: Fakes, prompt: str) -> list[Any]:
    return [r for r in fakes.openai.calls("/images/generations") if r.prompt == prompt]


async def one_private_answer_each(bot: Any, fakes: Fakes, slack_user: Callable[[str], SlackUser], faults: list[Fault], first: int
) -> None:
    """Each fault once on Slack and once on Discord, all at once: one private answer each, nothing charged."""
    slack_cases: list[tuple[Fault, SlackUser, str]] = []
    discord_cases: list[tuple[Fault, FakeInteraction, str, str]] = []
    for i, fault in enumerate(faults, start=first):  # a user of their own per case
        u = slack_user(f"UFAULT{i}")
        prompt = f"{fault.trigger} slack case {i}"
        ack = await u.imagine(bot, prompt)
        assert ack.status == 200 and ack.ack_text == "", ack
        slack_cases.append((fault, u, prompt))
        uid = discord_user_id(20 + i)
        prompt = f"{fault.trigger} discord case {i}"
        ix = await fakes.discord.send_slash_command("imagine", {"prompt": prompt}, user_id=uid)
        discord_cases.append((fault, ix, uid, prompt))

    for fault, u, prompt in slack_cases:
        await eventually(u.private, what=f"the answer to {prompt!r}", seen=u.outcomes)
    for fault, ix, uid, prompt in discord_cases:
        await fakes.discord.wait_for_private(ix)
    # A late second answer would show up by the time every job is settled in the database.
    await eventually(
        lambda: not [j for j in read_jobs(bot.db_path) if j["status"] == "reserved"], what="every job to be settled"
    )

    for fault, u, prompt in slack_cases:
        [told] = u.private()
        assert fault.told in told and "Nothing was charged" in told, (prompt, u.outcomes())
        assert u.outcomes() == [f"private: {told}"] and u.live_placeholders() == [], u.outcomes()
        assert_refunded(the_job(bot.db_path, u.key))
        assert_attempts(fault, len(requests_for(fakes, prompt)), prompt)
    for fault, ix, uid, prompt in discord_cases:
        [told] = discord_private(ix)
        assert fault.told in told and "Nothing was charged" in told, (prompt, discord_outcomes(ix))
        assert discord_outcomes(ix) == [f"private: {told}"] and discord_leftovers(ix) == [], ix.messages()
        assert_refunded(the_job(bot.db_path, discord_key(uid)))
        assert_attempts(fault, len(requests_for(fakes, prompt)), prompt)


async def test_openai_errors_and_timeouts_get_one_private_answer_and_cost_nothing(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    bot = await start_bot(config=FAULT_CONFIG)
    await one_private_answer_each(bot, fakes, slack_user, FAULTS, first=0)

    # -- a 429 storm: the next 12 model calls all answer rate_limit_exceeded, while 10
    # jobs arrive together. A 429 is a schedule, not a failure: every job goes back to
    # the head of the line, and all 10 end with their images, charged once, nobody told "busy".
    fakes.openai.fail_next("RATE_LIMIT", times=12)
    storm_slack = [slack_user(f"USTORM{i}") for i in range(5)]
    for u in storm_slack:
        await u.imagine(bot, f"a calm lake in a storm of 429s, for {u.user}")
    storm_discord = {
        discord_user_id(40 + i): await fakes.discord.send_slash_command(
            "imagine", {"prompt": f"a calm sea in a storm of 429s, {i}"}, user_id=discord_user_id(40 + i)
        )
        for i in range(5)
    }
    for u in storm_slack:
        await eventually(u.outcomes, what=f"an outcome for {u.user}")
    for ix in storm_discord.values():
        await fakes.discord.wait_until(lambda ix=ix: discord_outcomes(ix))
    await eventually(
        lambda: not [j for j in read_jobs(bot.db_path) if j["status"] == "reserved"], what="every job to be settled"
    )

    for u in storm_slack:
        [outcome] = u.outcomes()
        assert outcome.startswith("images:"), outcome
        assert_charged(the_job(bot.db_path, u.key))
        assert u.live_placeholders() == []
    for uid, ix in storm_discord.items():
        assert discord_results(ix) and len(discord_outcomes(ix)) == 1, discord_outcomes(ix)
        assert_charged(the_job(bot.db_path, discord_key(uid)))
        assert discord_leftovers(ix) == []
    assert sum(1 for r in fakes.openai.calls("/images/generations") if r.status == 429 and "storm" in (r.prompt or "")) == 12

    assert_job_logs(bot.log_records(), read_jobs(bot.db_path))
    assert await bot.terminate() == 0


async def test_a_429_that_never_ends_is_refunded_and_told_after_the_maximum_wait(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    # A 429 holds the whole line (it is the account's limit), so this has a bot of its own.
    bot = await start_bot(config=ENDLESS_CONFIG)
    await one_private_answer_each(bot, fakes, slack_user, [ENDLESS_429], first=0)
    endless = [r.status for r in fakes.openai.calls("/images/generations") if (r.prompt or "").startswith("RATE_LIMIT")]
    assert len(endless) >= 2 and set(endless) == {429}, endless  # retried in line, never given up on before the wait
    assert_job_logs(bot.log_records(), read_jobs(bot.db_path))
    assert await bot.terminate() == 0


async def test_slack_upload_failure_tells_the_user_and_gives_the_images_back(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    bot = await start_bot()
    frank = slack_user("UFRANK")
    fakes.slack.fail("files.completeUploadExternal", "not_in_channel")

    await frank.imagine(bot, "a poster nobody will see")

    await eventually(frank.private, what="Frank to be told", seen=frank.outcomes)
    await eventually(lambda: the_job(bot.db_path, frank.key)["status"] != "succeeded", what="the job to be given back")
    [told] = frank.private()
    assert "didn't let me post them" in told and "don't count against your daily limit" in told, told
    assert frank.outcomes() == [f"private: {told}"] and frank.live_placeholders() == []
    job = the_job(bot.db_path, frank.key)
    assert job["status"] == "undelivered" and job["units"] == 0, job
    assert_job_logs(bot.log_records(), read_jobs(bot.db_path))
    assert await bot.terminate(signal.SIGINT) == 0


async def test_discord_413_on_the_result_tells_the_user_once_and_charges_nothing(start_bot: StartBot, fakes: Fakes) -> None:
    bot = await start_bot()
    uid = discord_user_id(60)
    ix = await fakes.discord.send_slash_command("imagine", {"prompt": "a picture Discord refuses"}, user_id=uid)
    # Discord refuses the upload with 413 (40005) although the file is within the
    # limit the interaction announced (10 MiB): the fake now enforces 1 KiB.
    ix.attachment_size_limit = 1024

    await fakes.discord.wait_until(lambda: discord_outcomes(ix) or None)
    await eventually(
        lambda: not [j for j in read_jobs(bot.db_path) if j["status"] == "reserved"], what="the job to be settled"
    )
    assert any(r.status == 413 for r in ix.webhook_requests), "the fake never refused an upload"

    [outcome] = discord_outcomes(ix)
    assert outcome.startswith("private:"), outcome
    assert discord_leftovers(ix) == [], ix.messages()
    job = the_job(bot.db_path, discord_key(uid))
    assert job["units"] == 0, (
        f"the user was charged for images they never got (job {job['status']}, {job['units']} image(s) counted) "
        f"and was told {outcome!r}"
    )
    assert job["status"] == "undelivered" and "don't count against your daily limit" in outcome, (job, outcome)
    assert_job_logs(bot.log_records(), read_jobs(bot.db_path))
    assert await bot.terminate() == 0
