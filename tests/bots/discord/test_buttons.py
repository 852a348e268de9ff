"""Again and Edit under a result, including after the bot restarted."""

from __future__ import annotations

from typing import Any

from bots.discord import DiscordAdapter
from core.models import Requester
from tests.fakes.discord_server import DEFERRED_CHANNEL_MESSAGE, MODAL, FakeDiscord, button_custom_ids
from tests.fakes.openai_server import FakeOpenAI

BOB = "700000000000000002"


async def _result_of(fake_discord: FakeDiscord, prompt: str, **options: Any) -> dict[str, Any]:
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt, **options})
    return await fake_discord.wait_for_result(ix)


async def _restart(adapter: DiscordAdapter, make_adapter: Any, fake_discord: FakeDiscord) -> DiscordAdapter:
    """As after a restart: a new client (no views in memory) and a new service
    on the same database file."""
    await adapter.close()
    fresh = await make_adapter()
    await fake_discord.wait_connected(count=2)
    return fresh


async def test_again_after_a_restart_reruns_the_job_for_the_clicker(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    message = await _result_of(fake_discord, "a lantern festival", size="portrait", quality="low", count=2)
    again_id = button_custom_ids(message)[0]
    fresh = await _restart(adapter, make_adapter, fake_discord)
    assert fresh.service is not adapter.service

    click = await fake_discord.click_button(message, again_id, user_id=BOB)

    result = await fake_discord.wait_for_result(click)
    assert click.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE}
    first, second = fake_openai.calls("/images/generations")
    assert {k: second.json[k] for k in ("prompt", "size", "quality", "n")} == {
        k: first.json[k] for k in ("prompt", "size", "quality", "n")
    }
    assert f"<@{BOB}>" in result["content"] and len(result["attachments"]) == 2
    # The clicker pays, on their own quota.
    bob = await fresh.service.quota(Requester(platform="discord", workspace="900000000000000001", user=BOB))
    assert bob.used == 2
    assert button_custom_ids(result)[0] != again_id  # a new job with its own buttons


async def test_edit_button_after_a_restart_edits_the_images_of_that_result(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    message = await _result_of(fake_discord, "a paper boat")
    produced = fake_discord.cdn_bytes(message["attachments"][0]["url"])
    edit_id = button_custom_ids(message)[1]
    await _restart(adapter, make_adapter, fake_discord)

    click = await fake_discord.click_button(message, edit_id)
    await fake_discord.wait_for_callback(click)
    assert click.callbacks[0].json["type"] == MODAL and click.modal is not None
    field = click.modal["components"][0]["components"][0]["custom_id"]
    submit = await fake_discord.submit_modal(click.modal, {field: "make the boat red"}, message=message)

    result = await fake_discord.wait_for_result(submit)
    (call,) = fake_openai.calls("/images/edits")
    assert call.form["prompt"] == "make the boat red"
    assert [f.data for f in call.files if f.name.startswith("image")] == [produced]
    assert "make the boat red" in result["content"]
    # An edited result offers Edit again; Again needs the source images, which are not kept.
    assert [cid.split(":")[1] for cid in button_custom_ids(result)] == ["edit"]


async def test_again_on_an_unknown_job_says_so_privately(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    message = await _result_of(fake_discord, "a kite")
    message = dict(message, components=[{"type": 1, "components": [
        {"type": 2, "style": 2, "label": "Again", "custom_id": "imaginebot:again:000000000000"}
    ]}])

    click = await fake_discord.click_button(message, "imaginebot:again:000000000000")

    reply = await fake_discord.wait_for_private(click)
    assert "can't find that image job" in reply["content"]
    assert len(fake_openai.calls("/images/generations")) == 1
    assert fake_discord.public_messages(click) == []
