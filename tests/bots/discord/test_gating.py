"""Where the bot works: server allowlist, disabled channels, DMs, capacity,
and who the core is told is asking."""

from __future__ import annotations

from tests.fakes.discord_server import CHANNEL_MESSAGE, EPHEMERAL, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


async def test_a_server_outside_the_allowlist_is_refused_privately(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    await make_adapter(discord={"allowed_guilds": ["123456789012345678"]})

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a fox"})

    reply = await fake_discord.wait_for_private(ix)
    assert ix.callbacks[0].json["type"] == CHANNEL_MESSAGE and ix.callbacks[0].json["data"]["flags"] == EPHEMERAL
    assert "isn't enabled on this server" in reply["content"]
    assert fake_openai.requests == []


async def test_allowlisted_server_works_and_dms_do_not(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(discord={"allowed_guilds": ["900000000000000001"]})

    allowed = await fake_discord.send_slash_command("imagine", {"prompt": "a fox"})
    dm = await fake_discord.send_slash_command("imagine", {"prompt": "a fox"}, guild_id=None, channel_id="800000000000000001")

    assert (await fake_discord.wait_for_result(allowed))["attachments"]
    assert "not in direct messages" in (await fake_discord.wait_for_private(dm))["content"]


async def test_dms_work_without_an_allowlist_and_are_keyed_as_dm(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter()

    dm = await fake_discord.send_slash_command("imagine", {"prompt": "a fox"}, guild_id=None, channel_id="800000000000000001")

    result = await fake_discord.wait_for_result(dm)
    job_id = dm.original["components"][0]["components"][0]["custom_id"].rsplit(":", 1)[1]
    record = await adapter.service.job(job_id)
    assert result["attachments"] and record is not None
    assert record.requester_key == "discord:dm:700000000000000001"


async def test_a_disabled_channel_refuses_jobs_but_not_quota(make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    await make_adapter(discord={"disabled_channels": ["900000000000000012"]})

    job = await fake_discord.send_slash_command("imagine", {"prompt": "a fox"}, channel_id="900000000000000012")
    quota = await fake_discord.send_slash_command("quota", channel_id="900000000000000012")

    assert "turned off in this channel" in (await fake_discord.wait_for_private(job))["content"]
    assert "today" in (await fake_discord.wait_for_private(quota))["content"]
    assert fake_openai.requests == []


async def test_role_names_from_the_config_limit_members(make_adapter, fake_discord: FakeDiscord):
    await make_adapter(limits={"roles": {"artists": 1}})
    role = fake_discord.guilds["900000000000000001"].roles[0]
    assert role.name == "artists"

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "two cats", "count": 2}, roles=[role.id])

    assert "you have 1 image left" in (await fake_discord.wait_for_private(ix))["content"]


async def test_when_every_job_slot_is_taken_new_jobs_are_refused_politely(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    await make_adapter(server={"max_background_tasks": 1})
    fake_openai.latency = 0.5
    first = await fake_discord.send_slash_command("imagine", {"prompt": "slow one"})
    await fake_discord.wait_until(lambda: fake_openai.requests)

    second = await fake_discord.send_slash_command("imagine", {"prompt": "one too many"}, user_id="700000000000000002")

    assert "very busy" in (await fake_discord.wait_for_private(second))["content"]
    assert (await fake_discord.wait_for_result(first))["attachments"]
    assert len(fake_openai.requests) == 1
