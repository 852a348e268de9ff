"""/imagine end to end: real discord.py client ↔ fake Discord, real core ↔ fake OpenAI."""

from __future__ import annotations

import io
from typing import Any

from PIL import Image

from bots.discord import DiscordAdapter
from core.models import Requester
from tests.fakes.discord_server import (
    CHANNEL_MESSAGE,
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    FakeDiscord,
    button_custom_ids,
)
from tests.fakes.openai_server import FakeOpenAI

ALICE = "700000000000000001"


async def test_imagine_defers_then_posts_all_images_in_one_message_with_buttons(
    adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await fake_discord.send_slash_command(
        "imagine", {"prompt": "a red fox in the snow", "size": "landscape", "quality": "low", "count": 3}
    )

    defer = await fake_discord.wait_for_callback(ix)
    assert defer.json == {"type": DEFERRED_CHANNEL_MESSAGE}  # public "thinking…", no ephemeral flag
    result = await fake_discord.wait_for_result(ix)

    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None
    assert (call.json["prompt"], call.json["size"], call.json["quality"], call.json["n"]) == (
        "a red fox in the snow", "1536x1024", "low", 3,
    )
    upload = next(r for r in ix.webhook_requests if r.files)
    assert upload.method == "PATCH" and upload.path.endswith("/messages/@original")
    assert len(upload.files) == 3 == len(result["attachments"])
    assert all(len(f.data) <= ix.attachment_size_limit for f in upload.files)
    assert [Image.open(io.BytesIO(f.data)).size for f in upload.files] == [(1536, 1024)] * 3
    assert not result["flags"] & EPHEMERAL
    assert f"<@{ALICE}>" in result["content"] and "“a red fox in the snow”" in result["content"]
    assert "1536x1024 · low quality · 3 images · png" in result["content"]
    job_id = button_custom_ids(result)[0].rsplit(":", 1)[1]
    assert button_custom_ids(result) == [f"imaginebot:{a}:{job_id}" for a in ("again", "vary", "bigger", "edit", "info", "delete")]
    record = await adapter.service.job(job_id)
    assert record is not None and record.prompt == "a red fox in the snow" and record.status == "succeeded"


async def test_prompt_in_any_script_reaches_the_model_unchanged(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    prompt = "富士山と桜、水彩画風 🌸 — قطة في الثلج  और एक हाथी"
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt})

    result = await fake_discord.wait_for_result(ix)

    assert fake_openai.calls("/images/generations")[0].json["prompt"] == prompt
    assert f"“{prompt}”" in result["content"]


async def test_a_prompt_with_mentions_pings_nobody_but_the_requester(adapter, fake_discord: FakeDiscord):
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "@everyone look at <@&900000000000000101>"})

    await fake_discord.wait_for_result(ix)

    upload = next(r for r in ix.webhook_requests if r.files)
    assert upload.payload["allowed_mentions"] == {"parse": [], "users": [int(ALICE)]}


async def test_a_long_prompt_is_cut_for_display_only(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    prompt = "a very detailed castle " * 200  # 4,600 characters: Discord messages hold 2,000
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt[:5999]})

    result = await fake_discord.wait_for_result(ix)

    assert len(result["content"]) <= 2000 and "…" in result["content"]
    assert fake_openai.calls("/images/generations")[0].json["prompt"] == prompt[:5999]


async def test_the_deferred_message_shows_the_queue_position_then_the_result(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    await make_adapter(openai={"max_concurrent_calls": 1})
    fake_openai.latency = 1.0  # the first stays running while the other two queue
    first = await fake_discord.send_slash_command("imagine", {"prompt": "first in line"})
    await fake_discord.wait_until(lambda: fake_openai.requests)
    second = await fake_discord.send_slash_command("imagine", {"prompt": "second in line"}, user_id="700000000000000002")
    await fake_discord.wait_until(lambda: _shown(second))
    third = await fake_discord.send_slash_command("imagine", {"prompt": "third in line"}, user_id="700000000000000003")

    await fake_discord.wait_for_result(third)

    # One running, then one waiting: the second is next; the third is told its number.
    assert _shown(second)[0] == "Waiting for a free slot — you're next…"
    assert _shown(third)[0] == "Waiting in line — position 2…"
    edits = [r for r in third.webhook_requests if r.method == "PATCH"]
    assert edits[-1].files and not any(r.files for r in edits[:-1])  # the result comes last
    assert (await fake_discord.wait_for_result(first))["attachments"]
    assert (await fake_discord.wait_for_result(second))["attachments"]


def _shown(ix) -> list[str]:
    """The texts the deferred message was edited to, in order."""
    return [r.payload["content"] for r in ix.webhook_requests if r.method == "PATCH" and r.payload.get("content")]


async def test_invalid_input_is_answered_privately_at_once(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "   "})

    reply = await fake_discord.wait_for_private(ix)

    (callback,) = ix.callbacks
    assert callback.json["type"] == CHANNEL_MESSAGE and callback.json["data"]["flags"] == EPHEMERAL
    assert "prompt is empty" in reply["content"]
    assert fake_openai.requests == []


async def test_a_limit_reached_after_the_defer_goes_privately_and_leaves_nothing_public(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter(limits={"daily_images_per_user": 2})
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "three foxes", "count": 3})

    reply = await fake_discord.wait_for_private(ix)

    assert ix.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE}
    # The public "thinking…" message was deleted first; otherwise the
    # followup would have replaced it and been public.
    methods = [(r.method, r.path.rsplit("/", 1)[-1]) for r in ix.webhook_requests]
    assert methods.index(("DELETE", "@original")) < methods.index(("POST", ix.token))
    assert fake_discord.public_messages(ix) == []
    assert "daily limit" in reply["content"] and "Nothing was charged" in reply["content"]
    assert fake_openai.requests == []
    quota = await adapter.service.quota(_requester())
    assert quota.used == 0


async def test_a_policy_block_is_private_and_says_what_to_do(adapter, fake_discord: FakeDiscord):
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "BLOCK_INPUT something"})

    reply = await fake_discord.wait_for_private(ix)

    assert fake_discord.public_messages(ix) == []
    assert "safety system" in reply["content"] and "rephras" in reply["content"]


async def test_a_size_too_big_for_png_asks_the_api_for_jpeg(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    limit = 1024 * 1024  # a channel with a 1 MiB upload limit
    ix = await fake_discord.send_slash_command(
        "imagine", {"prompt": "a harbour at dusk", "size": "2k"}, attachment_size_limit=limit
    )

    result = await fake_discord.wait_for_result(ix)

    sent = fake_openai.calls("/images/generations")[0].json
    assert sent["output_format"] == "jpeg" and isinstance(sent["output_compression"], int)
    upload = next(r for r in ix.webhook_requests if r.files)
    assert all(len(f.data) <= limit for f in upload.files)
    assert result["attachments"][0]["filename"].endswith(".jpg")
    assert "instead of PNG" in result["content"]


async def test_a_result_that_still_does_not_fit_is_reencoded_with_a_note(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    limit = 4000  # smaller than anything the model returns
    ix = await fake_discord.send_slash_command(
        "imagine", {"prompt": "a lighthouse", "count": 2}, attachment_size_limit=limit
    )

    result = await fake_discord.wait_for_result(ix)

    upload = next(r for r in ix.webhook_requests if r.files)
    assert len(upload.files) == 2 and all(len(f.data) <= limit for f in upload.files)
    assert all(Image.open(io.BytesIO(f.data)).format == "JPEG" for f in upload.files)
    assert "re-encoded as JPEG" in result["content"]
    assert not [r for r in ix.webhook_requests if r.status >= 400]  # never a refused upload


async def test_a_result_after_the_interaction_expired_is_posted_in_the_channel(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake_openai.latency = 0.3
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a slow painting"})
    await fake_discord.wait_for_callback(ix)
    fake_discord.expire(ix)  # as if the job had taken more than 15 minutes

    msg = await fake_discord.wait_until(lambda: fake_discord.channel_messages[0] if fake_discord.channel_messages else None)

    post = next(r for r in fake_discord.requests if r.path == f"/channels/{ix.payload['channel_id']}/messages")
    assert post.headers["authorization"] == "Bot fake-discord-token" and len(post.files) == 1
    assert f"<@{ALICE}>" in msg["content"] and len(button_custom_ids(msg)) == 6


def _requester(user: str = ALICE) -> Requester:
    return Requester(platform="discord", workspace="900000000000000001", user=user)


async def test_a_size_the_config_turned_off_is_refused_even_from_stale_commands(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    # Commands registered before the admin set allow_2k = false still offer "2k".
    await make_adapter(limits={"allow_2k": False})

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a wide valley", "size": "2k"})

    reply = await fake_discord.wait_for_private(ix)
    assert "turned off on this server" in reply["content"]
    assert fake_openai.requests == []


async def test_a_result_discord_refuses_to_take_does_not_eat_the_quota(
    adapter: DiscordAdapter, fake_discord: FakeDiscord
):
    fake_discord.refuse_uploads = 5

    ix = await fake_discord.send_slash_command("imagine", {"prompt": "an unlucky owl", "count": 2})

    reply = await fake_discord.wait_for_private(ix)
    assert "didn't let me post them" in reply["content"] and "don't count against your daily limit" in reply["content"]
    assert any(r.files and r.status == 403 for r in ix.webhook_requests)
    assert (await adapter.service.quota(_requester())).used == 0


async def test_background_option_makes_a_transparent_png(
    adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a sticker of a cat", "background": "transparent"})
    result = await fake_discord.wait_for_result(ix)
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and (call.json["model"], call.json["background"]) == ("gpt-image-2.6-sunburst", "transparent")
    upload = next(r for r in ix.webhook_requests if r.files)
    with Image.open(io.BytesIO(upload.files[0].data)) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
    assert result is not None


async def test_transparent_jpeg_is_refused_privately_with_a_reason(
    adapter: DiscordAdapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a logo", "background": "transparent", "format": "jpeg"})
    reply = (await fake_discord.wait_for_callback(ix)).json["data"]
    assert "JPEG can't be transparent" in reply["content"] and reply["flags"] & EPHEMERAL
    assert fake_openai.requests == []


def _imagine_options(adapter: DiscordAdapter) -> dict[str, list[str]]:
    command = adapter.client.tree.get_command("imagine")
    assert command is not None
    return {p.name: [c.value for c in p.choices] for p in command.parameters}  # type: ignore[union-attr]


async def test_model_option_appears_when_the_admin_allows_several(make_adapter: Any, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    plain = await make_adapter(start=False)
    assert "model" not in _imagine_options(plain) and _imagine_options(plain)["background"] == ["auto", "opaque", "transparent"]
    assert "xhigh" not in _imagine_options(plain)["quality"]
    await plain.close()
    adapter = await make_adapter(openai={"allowed_models": ["gpt-image-2", "gpt-image-2.6-flare"]})
    options = _imagine_options(adapter)
    assert options["model"] == ["gpt-image-2", "gpt-image-2.6-flare"] and "max" in options["quality"]
    ix = await fake_discord.send_slash_command("imagine", {"prompt": "a fox", "model": "gpt-image-2.6-flare", "quality": "max"})
    await fake_discord.wait_for_result(ix)
    (call,) = fake_openai.calls("/images/generations")
    assert call.json is not None and (call.json["model"], call.json["quality"]) == ("gpt-image-2.6-flare", "max")
