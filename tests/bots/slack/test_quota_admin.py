"""/imagine-quota and /imagine-admin: private answers, admins from users.info."""

from __future__ import annotations

from tests.bots.slack.conftest import MakeBot, SlackBot


async def answers(bot: SlackBot, command: str, text: str, user: str = "UALICE") -> list[str]:
    status, body, response_url = await bot.command(command, text, user=user)
    assert status == 200 and body == ""  # the answer comes privately through response_url
    await bot.settle()
    bodies = bot.slack.responses_to(response_url)
    assert all(b["response_type"] == "ephemeral" for b in bodies)
    return [b["text"] for b in bodies]


async def test_quota_shows_used_remaining_and_reset(bot: SlackBot) -> None:
    await bot.command("/imagine", "a fox --n 2")
    await bot.settle()
    posted_before = len(bot.slack.calls_to("chat.postMessage"))
    (text,) = await answers(bot, "/imagine-quota", "")
    assert "You've used 2 images of 10 today; 8 images left." in text
    assert "<!date^" in text  # the reset time, shown in each reader's own time zone
    assert len(bot.slack.calls_to("chat.postMessage")) == posted_before  # nothing in the channel


async def test_admin_sets_a_limit_and_reads_someone_elses_usage(bot: SlackBot) -> None:
    (done,) = await answers(bot, "/imagine-admin", "limit <@UBOB|bob> 3", user="UADMIN")
    assert done == "<@UBOB> can now make 3 images a day."
    (usage,) = await answers(bot, "/imagine-quota", "<@UBOB|bob>", user="UADMIN")
    assert usage.startswith("Usage of <@UBOB> today:") and "of 3 today" in usage
    assert [c.params["user"] for c in bot.slack.calls_to("users.info")] == ["UADMIN"]  # asked once, then remembered


async def test_admin_reset_forgives_todays_usage(make_bot: MakeBot) -> None:
    bot = await make_bot(limits={"daily_images_per_user": 1})
    await bot.command("/imagine", "a fox", user="UBOB")
    await bot.settle()
    assert (await bot.service.quota(bot.requester("UBOB"))).remaining == 0
    (done,) = await answers(bot, "/imagine-admin", "reset <@UBOB|bob>", user="UADMIN")
    assert "forgiven" in done
    assert (await bot.service.quota(bot.requester("UBOB"))).remaining == 1


async def test_admin_sets_the_workspace_budget(bot: SlackBot) -> None:
    (done,) = await answers(bot, "/imagine-admin", "budget $25", user="UADMIN")
    assert done == "This workspace's daily image budget is now $25.00."
    status = await bot.service.quota(bot.requester())
    assert status.workspace_budget_usd == 25


async def test_non_admins_cannot_use_admin_actions(bot: SlackBot) -> None:
    (refused,) = await answers(bot, "/imagine-admin", "limit <@UBOB|bob> 100", user="UALICE")
    assert refused == "Only workspace admins can do that."
    (refused,) = await answers(bot, "/imagine-quota", "<@UBOB|bob>", user="UALICE")
    assert refused == "Only workspace admins can do that."


async def test_admin_help_for_unknown_text_is_in_the_ack(bot: SlackBot) -> None:
    status, body, _ = await bot.command("/imagine-admin", "please", user="UADMIN")
    assert status == 200 and "/imagine-admin limit @user 20" in body
    assert bot.slack.calls_to("users.info") == []


async def test_admin_sees_the_pace_and_the_queue(bot: SlackBot) -> None:
    await bot.command("/imagine", "a fox")
    await bot.settle()
    (pace,) = await answers(bot, "/imagine-admin", "pace", user="UADMIN")
    # images_per_minute = 0 (the default): learning, from tier 1's 5 a minute.
    assert pace.startswith("Pace: 5 images a minute, a guess that grows while calls succeed")
    assert "Used in the last minute: 1 image." in pace and "0 jobs waiting in line, 0 running" in pace
    (refused,) = await answers(bot, "/imagine-admin", "pace", user="UALICE")
    assert refused == "Only workspace admins can do that."


async def test_quota_shows_the_relax_allowance_beside_the_fast_one(make_bot: MakeBot) -> None:
    bot = await make_bot(relax={"daily_images_per_user": 6})
    await bot.command("/imagine", "a quiet harbor --relax --n 2")  # queued for a batch: its images count already
    await bot.settle()
    (text,) = await answers(bot, "/imagine-quota", "")
    assert "You've used 0 images of 10 today" in text
    assert "Relax mode (half price, results later): 2 images of 6 used today; 4 images left." in text
