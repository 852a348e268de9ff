"""/quota and /imagine-admin."""

from __future__ import annotations

import re

from tests.fakes.discord_server import (
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    MEMBER_PERMISSIONS,
    PERM_MANAGE_GUILD,
    FakeDiscord,
)
from tests.fakes.openai_server import FakeOpenAI

ADMIN = MEMBER_PERMISSIONS | PERM_MANAGE_GUILD
BOB = "700000000000000002"


async def test_quota_is_private_and_shows_the_reset_as_a_discord_timestamp(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(limits={"daily_images_per_user": 5})
    done = await fake_discord.send_slash_command("imagine", {"prompt": "two owls", "count": 2})
    await fake_discord.wait_for_result(done)

    ix = await fake_discord.send_slash_command("quota")

    reply = await fake_discord.wait_for_private(ix)
    assert ix.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE, "data": {"flags": EPHEMERAL}}
    assert "used 2 images of 5 today; 3 images left" in reply["content"]
    assert re.search(r"<t:\d+:R>", reply["content"])
    assert fake_discord.public_messages(ix) == []


async def test_admin_sets_a_members_limit_which_then_applies(make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    await make_adapter()
    bob = fake_discord.users[BOB]

    ix = await fake_discord.send_slash_command(
        "imagine-admin", {"user": bob, "daily": 0}, subcommand="limit", permissions=ADMIN
    )

    reply = await fake_discord.wait_for_private(ix)
    assert f"<@{BOB}> can now make 0 images a day" in reply["content"]
    denied = await fake_discord.send_slash_command("imagine", {"prompt": "a bee"}, user_id=BOB)
    refusal = await fake_discord.wait_for_private(denied)
    assert "isn't enabled for you" in refusal["content"]
    assert fake_openai.requests == []


async def test_only_members_with_manage_server_can_use_admin_commands(make_adapter, fake_discord: FakeDiscord):
    await make_adapter()

    ix = await fake_discord.send_slash_command(
        "imagine-admin", {"user": fake_discord.users[BOB], "daily": 50}, subcommand="limit"
    )

    reply = await fake_discord.wait_for_private(ix)
    assert "Only members with the Manage Server permission" in reply["content"]


async def test_role_limit_applies_to_members_with_that_role(make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    await make_adapter(limits={"daily_images_per_user": 10})
    role = fake_discord.guilds["900000000000000001"].roles[0]

    ix = await fake_discord.send_slash_command("imagine-admin", {"role": role, "daily": 1}, subcommand="role", permissions=ADMIN)
    reply = await fake_discord.wait_for_private(ix)
    assert f"<@&{role.id}>" in reply["content"]

    over = await fake_discord.send_slash_command("imagine", {"prompt": "two cats", "count": 2}, roles=[role.id])
    refusal = await fake_discord.wait_for_private(over)
    assert "you have 1 image left" in refusal["content"]
    fine = await fake_discord.send_slash_command("imagine", {"prompt": "two cats", "count": 2}, user_id=BOB)
    assert (await fake_discord.wait_for_result(fine))["attachments"]


async def test_admin_reset_forgives_todays_usage(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(limits={"daily_images_per_user": 1})
    used = await fake_discord.send_slash_command("imagine", {"prompt": "one moon"}, user_id=BOB)
    await fake_discord.wait_for_result(used)

    ix = await fake_discord.send_slash_command("imagine-admin", {"user": fake_discord.users[BOB]}, subcommand="reset", permissions=ADMIN)
    reply = await fake_discord.wait_for_private(ix)
    assert "forgiven" in reply["content"]

    again = await fake_discord.send_slash_command("imagine", {"prompt": "another moon"}, user_id=BOB)
    assert (await fake_discord.wait_for_result(again))["attachments"]


async def test_admin_budget_is_shown_in_quota(make_adapter, fake_discord: FakeDiscord):
    await make_adapter()

    ix = await fake_discord.send_slash_command("imagine-admin", {"usd": 2.5}, subcommand="budget", permissions=ADMIN)
    reply = await fake_discord.wait_for_private(ix)
    assert "$2.50" in reply["content"]

    quota = await fake_discord.send_slash_command("quota")
    assert "of its $2.50 daily budget" in (await fake_discord.wait_for_private(quota))["content"]


async def test_admin_sees_the_pace_and_the_queue(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(openai={"images_per_minute": 20})
    ix = await fake_discord.send_slash_command("imagine-admin", {}, subcommand="pace", permissions=ADMIN)
    reply = await fake_discord.wait_for_private(ix)
    assert reply["content"].startswith("Pace: 20 images a minute, as configured")
    assert "0 jobs waiting in line" in reply["content"] and fake_discord.public_messages(ix) == []
    denied = await fake_discord.send_slash_command("imagine-admin", {}, subcommand="pace")
    assert "Only members with the Manage Server permission" in (await fake_discord.wait_for_private(denied))["content"]


async def test_quota_shows_the_relax_allowance_beside_the_fast_one(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(relax={"daily_images_per_user": 6})
    queued = await fake_discord.send_slash_command("imagine", {"prompt": "a quiet harbor", "relax": True})
    await fake_discord.wait_for_private(queued)

    quota = await fake_discord.send_slash_command("quota")
    content = (await fake_discord.wait_for_private(quota))["content"]
    assert "used 0 images of 10 today" in content
    assert "Relax mode (half price, results later): 1 image of 6 used today; 5 images left." in content
