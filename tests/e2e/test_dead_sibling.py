"""Two `imaginebot run` processes on one database; one is killed with -9
mid-job. The other notices from the heartbeat, refunds the dead one's jobs
and tells their users, without anyone restarting anything; and those users
can go again at once."""

from __future__ import annotations

from typing import Callable

from tests.e2e.conftest import (
    Fakes,
    SlackUser,
    StartBot,
    assert_job_logs,
    assert_refunded,
    discord_key,
    discord_leftovers,
    discord_private,
    discord_results,
    discord_user_id,
    eventually,
    read_jobs,
    the_job,
)
from tests.e2e.test_crash import INTERRUPTED, NOTHING_CHARGED
# Short, so the test waits little; one job in flight per user, so a
# reservation the dead process left behind would refuse the user's next one.
SIBLINGS_CONFIG = {"server": {"heartbeat_timeout_seconds": 2}, "limits": {"max_jobs_in_flight_per_user": 1}}


async def test_kill_9_of_one_process_the_other_refunds_its_jobs_and_tells_their_users(
    start_bot: StartBot, fakes: Fakes, slack_user: Callable[[str], SlackUser]
) -> None:
    survivor = await start_bot(config=SIBLINGS_CONFIG)
    doomed = await start_bot(config=SIBLINGS_CONFIG, db=survivor.db_path)  # the newest: Discord sends it the commands

    grace = slack_user("UGRACE")
    ack = await grace.imagine(doomed, "SLOW:600 a lighthouse the crash eats")
    assert ack.status == 200, ack
    uid = discord_user_id(70)
    ix = await fakes.discord.send_slash_command("imagine", {"prompt": "SLOW:600 a harbour the crash eats"}, user_id=uid)
    await eventually(lambda: fakes.openai.in_flight == 2, what="both model calls in flight", seen=lambda: fakes.openai.in_flight)
    await eventually(grace.live_placeholders, what="the Slack progress message", seen=grace.outcomes)
    await eventually(  # recorded, so that whoever announces the job can remove it
        lambda: "placeholder_ts" in the_job(doomed.db_path, grace.key)["notify"], what="the progress message to be recorded"
    )

    await doomed.kill9()

    # The survivor tells both users, once and privately; nothing is left saying "Generating…".
    await eventually(grace.private, what="Grace to be told by the survivor", seen=grace.outcomes)
    await fakes.discord.wait_for_private(ix)
    [told] = grace.private()
    assert INTERRUPTED in told and NOTHING_CHARGED in told, told
    assert grace.live_placeholders() == [] and grace.deliveries() == [], grace.outcomes()
    [told] = discord_private(ix)
    assert INTERRUPTED in told and NOTHING_CHARGED in told, told
    assert discord_leftovers(ix) == [], ix.messages()

    # Refunded exactly once, by the survivor, which says so in its log.
    for key in (grace.key, discord_key(uid)):
        job = the_job(survivor.db_path, key)
        assert_refunded(job)
        assert job["status"] == "interrupted", job
    assert_job_logs(survivor.log_records(), read_jobs(survivor.db_path))

    # Both can go again at once: nothing held on their one job in flight.
    await grace.imagine(survivor, "a lighthouse, second try")
    await eventually(grace.deliveries, what="Grace's images from the survivor", seen=grace.outcomes)
    again = await fakes.discord.send_slash_command("imagine", {"prompt": "a harbour, second try"}, user_id=uid)
    await fakes.discord.wait_until(lambda: discord_results(again) or None)
    assert await survivor.terminate() == 0
    assert [j for j in read_jobs(survivor.db_path) if j["status"] == "reserved"] == []
