"""Logging in, the gateway, command registration, doctor and the invite URL."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import discord
import pytest

from bots.discord.doctor import check_discord
from bots.discord.invite import invite_url
from tests.fakes.discord_server import FakeDiscord


async def test_start_logs_in_and_connects_through_the_gateway_the_api_names(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter()

    assert adapter.healthy
    paths = [(r.method, r.path) for r in fake_discord.requests]
    assert ("GET", "/users/@me") in paths
    assert ("GET", "/gateway/bot") in paths
    assert all(r.headers["authorization"] == "Bot fake-discord-token" for r in fake_discord.requests)
    session = await fake_discord.wait_connected()
    assert session.identify is not None and session.identify["token"] == "fake-discord-token"
    # Guilds intent only (roles for per-role limits); nothing privileged.
    assert session.identify["intents"] == discord.Intents(guilds=True).value
    assert session.query["v"] == "10" and session.query["encoding"] == "json"
    # Starting never re-registers commands.
    assert not [r for r in fake_discord.requests if r.method == "PUT"]

    await adapter.close()
    assert not adapter.healthy


async def test_start_with_a_wrong_token_raises(make_adapter, fake_discord: FakeDiscord):
    with pytest.raises(discord.LoginFailure):
        await make_adapter(token="another-fake-token")

    assert not fake_discord.gateway_sessions


async def test_sync_commands_registers_every_command_globally(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter(start=False)

    count = await adapter.sync_commands()

    (put,) = [r for r in fake_discord.requests if r.method == "PUT"]
    assert put.path == f"/applications/{fake_discord.application_id}/commands"
    by_name = {c["name"]: c for c in put.json}
    assert count == len(by_name) == 6
    assert by_name["history"]["options"] == []  # /history: the requester's own
    assert by_name["Edit image"]["type"] == 3  # message context menu
    imagine = {o["name"]: o for o in by_name["imagine"]["options"]}
    assert imagine["prompt"]["required"] is True
    assert {c["value"] for c in imagine["size"]["choices"]} >= {"square", "portrait", "landscape", "2k", "wide-2k", "tall-2k"}
    assert {c["value"] for c in imagine["quality"]["choices"]} == {"low", "medium", "high", "auto"}
    assert {c["value"] for c in imagine["format"]["choices"]} == {"png", "jpeg", "webp"}
    assert (imagine["count"]["min_value"], imagine["count"]["max_value"]) == (1, 8)
    edit = {o["name"]: o for o in by_name["edit"]["options"]}
    assert [edit[n]["type"] for n in ("image", "image2", "image3", "mask")] == [11, 11, 11, 11]
    assert edit["image"]["required"] and not edit["mask"].get("required", False)
    admin = by_name["imagine-admin"]
    assert int(admin["default_member_permissions"]) == discord.Permissions(manage_guild=True).value
    assert {o["name"] for o in admin["options"]} == {"limit", "role", "reset", "budget", "history", "pace"}


async def test_sync_commands_to_one_guild(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter(start=False)

    count = await adapter.sync_commands(guild_id=900000000000000001)

    (put,) = [r for r in fake_discord.requests if r.method == "PUT"]
    assert put.path == f"/applications/{fake_discord.application_id}/guilds/900000000000000001/commands"
    assert count == 6


async def test_size_choices_follow_the_config(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter(start=False, limits={"allow_2k": False})
    await adapter.sync_commands()

    (put,) = [r for r in fake_discord.requests if r.method == "PUT"]
    imagine = {o["name"]: o for o in next(c for c in put.json if c["name"] == "imagine")["options"]}
    assert {c["value"] for c in imagine["size"]["choices"]} == {"square", "portrait", "landscape", "auto"}


async def test_doctor_reports_token_gateway_commands_and_invite(make_adapter, fake_discord: FakeDiscord):
    before = await check_discord(fake_discord.token, fake_discord.api_base)
    assert before[0][0] and "imaginebot" in before[0][1]
    unregistered = [text for ok, text in before if not ok]
    assert len(unregistered) == 1 and "imaginebot discord-sync" in unregistered[0]
    invite = before[-1][1]
    assert invite_url(fake_discord.application_id) in invite

    adapter = await make_adapter(start=False)
    await adapter.sync_commands()
    after = await check_discord(fake_discord.token, fake_discord.api_base)
    assert all(ok for ok, _ in after)


async def test_doctor_explains_a_refused_token_without_printing_it(fake_discord: FakeDiscord):
    results = await check_discord("wrong-fake-token", fake_discord.api_base)

    assert results == [(False, results[0][1])]
    assert "Reset Token" in results[0][1] and "wrong-fake-token" not in results[0][1]
    requests_before = len(fake_discord.requests)
    ((ok, text),) = await check_discord("", fake_discord.api_base)
    assert not ok and text.startswith("DISCORD_BOT_TOKEN is not set.") and "Reset Token" in text
    assert len(fake_discord.requests) == requests_before  # nothing to ask Discord without a token


async def test_doctor_warns_about_an_interactions_endpoint_url(fake_discord: FakeDiscord):
    fake_discord.interactions_endpoint_url = "https://example.invalid/interactions"

    results = await check_discord(fake_discord.token, fake_discord.api_base)

    assert any(not ok and "Interactions Endpoint URL" in text for ok, text in results)


def test_invite_url_has_exact_scopes_and_permissions():
    url = urlsplit(invite_url(1234))
    query = parse_qs(url.query)

    assert url.netloc == "discord.com"
    assert query["client_id"] == ["1234"]
    assert query["scope"] == ["bot applications.commands"]
    perms = discord.Permissions(int(query["permissions"][0]))
    assert perms == discord.Permissions(view_channel=True, send_messages=True, send_messages_in_threads=True, attach_files=True)


async def test_the_bot_reconnects_to_the_gateway_the_api_named_after_a_drop(make_adapter, fake_discord: FakeDiscord):
    adapter = await make_adapter()
    await fake_discord.wait_connected()

    await fake_discord.drop_gateway()

    # Discord.py resumes, the fake refuses to resume, so it identifies afresh:
    # against the fake's gateway, never discord.gg.
    await fake_discord.wait_connected(count=2)
    await fake_discord.wait_until(lambda: adapter.healthy)
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "after the reconnect"})
    assert (await fake_discord.wait_for_result(ix))["attachments"]
