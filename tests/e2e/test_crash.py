"""kill -9 with ten jobs in flight, then a restart on the same database."""

from __future__ import annotations

from typing import Callable

from tests.e2e.conftest import (
    Fakes,
    SlackUser,
    StartBot,
    assert_job_logs,
    assert_no_secrets,
    assert_refunded,
    database_bytes,
    discord_key,
    discord_leftovers,
    discord_outcomes,
    discord_private,
    discord_user_id,
    eventually,
    read_jobs,
    the_job,
)

INTERRUPTED = "interrupted because the bot restarted"
NOTHING_CHARGED = "Nothing was charged"


async def test_kill_9_with_ten_jobs_in_flight_then_restart_refunds_and_tells_every_user(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    bot = await start_bot()
    slack_users = [slack_user(f"UCRASH{i}") for i in range(5)]
    for u in slack_users:
        ack = await u.imagine(bot, f"SLOW:600 a mural for {u.user}")
        assert ack.status == 200 and ack.ack_text == "", ack
    discord_ids = [discord_user_id(10 + i) for i in range(5)]
    interactions = {
        uid: await fakes.discord.send_slash_command("imagine", {"prompt": f"SLOW:600 a saga for {uid}"}, user_id=uid)
        for uid in discord_ids
    }
    # An eleventh job whose user can no longer be reached (see below).
    gone_id = discord_user_id(16)
    gone_ix = await fakes.discord.send_slash_command("imagine", {"prompt": "SLOW:600 an unreachable saga"}, user_id=gone_id)
    await eventually(lambda: fakes.openai.in_flight == 11, what="eleven model calls in flight", seen=lambda: fakes.openai.in_flight)

    await bot.kill9()

    # The crash left every reservation behind: nothing ran the refunds.
    left = read_jobs(bot.db_path)
    assert len(left) == 11 and {j["status"] for j in left} == {"reserved"}, left
    # While the bot was down, one Slack response_url expired (the bot must fall
    # back to an ephemeral message in the channel), and Discord stopped taking
    # one interaction's token (nobody can be told; the refund must still happen).
    slack_users[0].expire_response_urls()
    fakes.discord.expire(gone_ix)

    restarted = await start_bot(db=bot.db_path)

    # Every user hears, once and privately, that their job was interrupted and not charged.
    for u in slack_users:
        await eventually(u.private, what=f"{u.user} to be told about the interrupted job", seen=u.outcomes)
    for ix in interactions.values():
        await fakes.discord.wait_for_private(ix)
    for u in slack_users:
        [told] = u.private()
        assert INTERRUPTED in told and NOTHING_CHARGED in told, told
        assert u.deliveries() == [], u.outcomes()
    assert [c.params["user"] for c in fakes.slack.calls_to("chat.postEphemeral")] == [slack_users[0].user]
    for ix in interactions.values():
        [told] = discord_private(ix)
        assert INTERRUPTED in told and NOTHING_CHARGED in told, discord_outcomes(ix)
        assert discord_leftovers(ix) == [], "the public 'thinking…' message of an interrupted job is still showing"
    await eventually(
        lambda: any("user told: False" in r["message"] for r in restarted.log_records() if r.get("job_id")),
        what="the restarted bot to give up on the unreachable user",
    )
    assert discord_outcomes(gone_ix) == []
    assert_refunded(the_job(bot.db_path, discord_key(gone_id)))

    # The ledger: no reservation pending, each job refunded in full.
    jobs = read_jobs(bot.db_path)
    assert [j for j in jobs if j["status"] == "reserved"] == []
    for key in [u.key for u in slack_users] + [discord_key(uid) for uid in discord_ids]:
        job = the_job(bot.db_path, key)
        assert_refunded(job)
        assert job["status"] == "interrupted", job
    assert_job_logs(restarted.log_records(), jobs)

    # The restarted bot works, and stops cleanly.
    after = slack_user("UAFTER")
    await after.imagine(bot=restarted, text="a calm morning after the crash")
    await eventually(after.deliveries, what="images after the restart", seen=after.outcomes)
    assert await restarted.terminate() == 0
    assert [j for j in read_jobs(bot.db_path) if j["status"] == "reserved"] == []
    for b in (bot, restarted):
        assert_no_secrets("the bot's log output", b.log_text(), fakes.secrets)
    assert_no_secrets("the database", database_bytes(bot.db_path), fakes.secrets)


async def test_after_a_crash_no_slack_progress_message_still_claims_the_job_is_running(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    # Discord deletes the deferred "thinking…" message of an interrupted job
    # when it tells the user (checked above); in Slack the channel should not
    # keep showing "Generating…" for a job that will never finish either.
    bot = await start_bot()
    erin = slack_user("UERIN")
    await erin.imagine(bot, "SLOW:600 a job the crash eats")
    await eventually(erin.live_placeholders, what="the progress message in the channel", seen=erin.outcomes)
    # The bot can only clean up a message it has recorded: posting it and
    # recording its ts are two steps, and a crash between them is not this test.
    await eventually(
        lambda: "placeholder_ts" in (the_job(bot.db_path, erin.key)["notify"] or ""), what="the bot to record its progress message"
    )
    await bot.kill9()

    await start_bot(db=bot.db_path)
    await eventually(erin.private, what="Erin to be told about the interrupted job", seen=erin.outcomes)

    assert_refunded(the_job(bot.db_path, erin.key))
    assert erin.live_placeholders() == [], "the channel still shows the interrupted job as running"
