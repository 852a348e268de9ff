"""The buttons under every result (Again, Vary, Bigger, Edit, Info, Delete)
and /history, each used after the bot restarted (a new client with no views
in memory, a new service on the same database)."""

from __future__ import annotations

from typing import Any

from bots.discord import DiscordAdapter
from core.models import Requester
from tests.bots.discord.conftest import png_bytes
from tests.fakes.discord_server import (
    DEFERRED_CHANNEL_MESSAGE,
    EPHEMERAL,
    MODAL,
    PERM_MANAGE_GUILD,
    FakeDiscord,
    button_custom_ids,
)
from tests.fakes.openai_server import FakeOpenAI

ALICE, BOB, ADMIN = "700000000000000001", "700000000000000002", "700000000000000003"
GUILD = "900000000000000001"
LABELS = ["Again", "Vary", "Bigger", "Edit", "Info", "Delete"]


def button(message: dict[str, Any], action: str) -> str:
    (found,) = [cid for cid in button_custom_ids(message) if cid.split(":")[1] == action]
    return found


def labels(message: dict[str, Any]) -> list[str]:
    return [c["label"] for row in message["components"] for c in row["components"]]


async def _result_of(fake_discord: FakeDiscord, prompt: str, **options: Any) -> dict[str, Any]:
    ix = await fake_discord.send_slash_command("imagine", {"prompt": prompt, **options})
    return await fake_discord.wait_for_result(ix)


async def _restart(adapter: DiscordAdapter, make_adapter: Any, fake_discord: FakeDiscord) -> DiscordAdapter:
    """As after a restart: a new client (no views in memory) and a new service
    on the same database file."""
    await adapter.close()
    fresh = await make_adapter()
    await fake_discord.wait_connected(count=len(fake_discord.gateway_sessions))
    return fresh


async def _open_edit_form(fake_discord: FakeDiscord, message: dict[str, Any], **kw: Any) -> dict[str, Any]:
    click = await fake_discord.click_button(message, button(message, "edit"), **kw)
    await fake_discord.wait_for_callback(click)
    assert click.callbacks[0].json["type"] == MODAL and click.modal is not None
    fields = [row["components"][0]["custom_id"] for row in click.modal["components"]]
    assert fields == ["instruction", "size", "quality"]
    return click.modal


async def _edit_via_modal(fake_discord: FakeDiscord, message: dict[str, Any], values: dict[str, str], **kw: Any) -> Any:
    form = await _open_edit_form(fake_discord, message, **kw)
    return await fake_discord.submit_modal(form, values, message=message, **kw)


async def test_a_member_takes_a_result_through_again_bigger_edit_info_delete_across_restarts(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    """Done when (issue 13): no command typed after the first, the bot restarted before every click."""
    adapter = await make_adapter()
    first = await _result_of(fake_discord, "a lighthouse at dusk", quality="low")
    assert labels(first) == LABELS
    assert "Bigger (2048x2048)" in first["content"] and "no upscaler" in first["content"]  # what the buttons use

    adapter = await _restart(adapter, make_adapter, fake_discord)
    again = await fake_discord.click_button(first, button(first, "again"))
    second = await fake_discord.wait_for_result(again)
    generate_1, generate_2 = fake_openai.calls("/images/generations")
    assert generate_2.json["prompt"] == "a lighthouse at dusk" and generate_2.json["quality"] == "low"

    adapter = await _restart(adapter, make_adapter, fake_discord)
    bigger = await fake_discord.click_button(second, button(second, "bigger"))
    third = await fake_discord.wait_for_result(bigger)
    (bigger_call,) = fake_openai.calls("/images/edits")
    assert bigger_call.form["size"] == "2048x2048" and bigger_call.form["n"] == "1"
    assert [f.data for f in bigger_call.files if f.name.startswith("image")] == [
        fake_discord.cdn_bytes(second["attachments"][0]["url"])
    ]

    adapter = await _restart(adapter, make_adapter, fake_discord)
    form = await _open_edit_form(fake_discord, third)
    adapter = await _restart(adapter, make_adapter, fake_discord)  # even between opening the form and sending it
    submit = await fake_discord.submit_modal(form, {"instruction": "add a full moon", "size": "landscape", "quality": "low"}, message=third)
    fourth = await fake_discord.wait_for_result(submit)
    _, edit_call = fake_openai.calls("/images/edits")
    assert (edit_call.form["prompt"], edit_call.form["size"], edit_call.form["quality"]) == ("add a full moon", "1536x1024", "low")
    assert labels(fourth) == LABELS

    adapter = await _restart(adapter, make_adapter, fake_discord)
    info = await fake_discord.click_button(fourth, button(fourth, "info"))
    text = (await fake_discord.wait_for_private(info))["content"]
    job_id = button(fourth, "info").split(":")[2]
    assert f"Job id: {job_id}" in text and "add a full moon" in text and "Cost: $" in text and "Tokens:" in text
    assert fake_discord.public_messages(info) == []

    adapter = await _restart(adapter, make_adapter, fake_discord)
    delete = await fake_discord.click_button(fourth, button(fourth, "delete"))
    assert "Deleted" in (await fake_discord.wait_for_private(delete))["content"]
    assert fake_discord.deleted_messages == [fourth["id"]]
    assert len(fake_openai.calls("/images/generations")) == 2 and len(fake_openai.calls("/images/edits")) == 2


async def test_again_runs_the_same_job_for_the_clicker_on_their_own_quota(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    message = await _result_of(fake_discord, "a lantern festival", size="portrait", quality="low", count=2)
    fresh = await _restart(adapter, make_adapter, fake_discord)

    click = await fake_discord.click_button(message, button(message, "again"), user_id=BOB)

    result = await fake_discord.wait_for_result(click)
    assert click.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE}
    first, second = fake_openai.calls("/images/generations")
    assert {k: second.json[k] for k in ("prompt", "size", "quality", "n")} == {
        k: first.json[k] for k in ("prompt", "size", "quality", "n")
    }
    assert f"<@{BOB}>" in result["content"] and len(result["attachments"]) == 2
    bob = await fresh.service.quota(Requester(platform="discord", workspace=GUILD, user=BOB))
    assert bob.used == 2
    assert button(result, "again") != button(message, "again")  # a new job with its own buttons


async def test_again_on_an_edit_sends_the_same_input_images_read_again_through_the_api(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    a, b = png_bytes(color=(1, 2, 3)), png_bytes(color=(4, 5, 6))
    target = fake_discord.user_message("two photos", [fake_discord.add_attachment(a, "one.png"), fake_discord.add_attachment(b, "two.png")])
    adapter = await make_adapter()
    menu = await fake_discord.send_message_command("Edit image", target)
    await fake_discord.wait_for_callback(menu)
    assert menu.modal is not None
    submit = await fake_discord.submit_modal(menu.modal, {menu.modal["components"][0]["components"][0]["custom_id"]: "make it night"})
    edited = await fake_discord.wait_for_result(submit)
    await _restart(adapter, make_adapter, fake_discord)

    again = await fake_discord.click_button(edited, button(edited, "again"))

    await fake_discord.wait_for_result(again)
    first, second = fake_openai.calls("/images/edits")
    assert second.form["prompt"] == "make it night" == first.form["prompt"]
    assert [f.data for f in second.files if f.name.startswith("image")] == [a, b]
    assert fake_discord.message_fetches == [target["id"]]  # fresh URLs from Discord, not stored ones


async def test_again_on_an_edit_whose_uploads_cannot_be_fetched_again_says_so_privately(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    image = fake_discord.add_attachment(png_bytes(), "cat.png")
    ix = await fake_discord.send_slash_command("edit", {"image": image, "prompt": "make it blue"})
    edited = await fake_discord.wait_for_result(ix)

    again = await fake_discord.click_button(edited, button(edited, "again"))

    assert "can't fetch the images" in (await fake_discord.wait_for_private(again))["content"]
    assert len(fake_openai.calls("/images/edits")) == 1
    assert fake_discord.public_messages(again) == []


async def test_vary_after_a_restart_edits_the_first_image_with_a_variation_instruction(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    message = await _result_of(fake_discord, "two cats", count=2, quality="low")
    await _restart(adapter, make_adapter, fake_discord)

    vary = await fake_discord.click_button(message, button(message, "vary"), user_id=BOB)

    await fake_discord.wait_for_result(vary)
    (call,) = fake_openai.calls("/images/edits")
    assert "variation" in call.form["prompt"] and call.form["n"] == "1" and call.form["quality"] == "low"
    assert [f.data for f in call.files if f.name.startswith("image")] == [fake_discord.cdn_bytes(message["attachments"][0]["url"])]


async def test_bigger_keeps_the_shape_of_a_wide_image(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    message = await _result_of(fake_discord, "a wide valley", size="landscape", quality="low")

    bigger = await fake_discord.click_button(message, button(message, "bigger"))

    await fake_discord.wait_for_result(bigger)
    (call,) = fake_openai.calls("/images/edits")
    assert call.form["size"] == "2048x1152"


async def test_delete_by_someone_else_is_refused_privately_and_an_admin_may(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    message = await _result_of(fake_discord, "my picture")

    refused = await fake_discord.click_button(message, button(message, "delete"), user_id=BOB)
    reply = await fake_discord.wait_for_private(refused)
    assert f"Only <@{ALICE}>" in reply["content"] and fake_discord.deleted_messages == []

    done = await fake_discord.click_button(message, button(message, "delete"), user_id=ADMIN, permissions=PERM_MANAGE_GUILD)
    assert "Deleted" in (await fake_discord.wait_for_private(done))["content"]
    assert fake_discord.deleted_messages == [message["id"]]


async def test_info_is_private_and_charges_nothing(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    message = await _result_of(fake_discord, "a kite")

    info = await fake_discord.click_button(message, button(message, "info"), user_id=BOB)

    reply = await fake_discord.wait_for_private(info)
    assert reply["flags"] & EPHEMERAL and "Cost: $0.0" in reply["content"] and "Model: gpt-image-2" in reply["content"]
    bob = await adapter.service.quota(Requester(platform="discord", workspace=GUILD, user=BOB))
    assert bob.used == 0 and len(fake_openai.requests) == 1


async def test_history_lists_the_last_jobs_with_links_and_again_buttons(
    make_adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    adapter = await make_adapter()
    first = await _result_of(fake_discord, "first picture", quality="low")
    second = await _result_of(fake_discord, "second picture", quality="low")
    await _restart(adapter, make_adapter, fake_discord)

    ix = await fake_discord.send_slash_command("history")

    reply = await fake_discord.wait_for_private(ix)
    text = reply["content"]
    assert text.index("second picture") < text.index("first picture")
    for message in (first, second):
        assert f"https://discord.com/channels/{GUILD}/{message['channel_id']}/{message['id']}" in text
    assert labels(reply) == ["Again 1", "Again 2"]
    assert fake_discord.public_messages(ix) == []

    again = await fake_discord.click_button(reply, button_custom_ids(reply)[1])
    await fake_discord.wait_for_result(again)
    assert fake_openai.calls("/images/generations")[-1].json["prompt"] == "first picture"


async def test_admin_history_of_a_member_and_refused_to_others(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    await _result_of(fake_discord, "alice's picture")
    alice = fake_discord.users[ALICE]

    refused = await fake_discord.send_slash_command("imagine-admin", {"user": alice}, subcommand="history", user_id=BOB)
    assert "alice's picture" not in (await fake_discord.wait_for_private(refused))["content"]

    ix = await fake_discord.send_slash_command(
        "imagine-admin", {"user": alice}, subcommand="history", user_id=ADMIN, permissions=PERM_MANAGE_GUILD
    )
    assert "alice's picture" in (await fake_discord.wait_for_private(ix))["content"]


async def test_a_bad_size_in_the_edit_form_is_answered_privately_and_spends_nothing(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    message = await _result_of(fake_discord, "a boat")

    submit = await _edit_via_modal(fake_discord, message, {"instruction": "make it red", "size": "enormous"})

    assert "enormous" in (await fake_discord.wait_for_private(submit))["content"]
    assert fake_openai.calls("/images/edits") == [] and fake_discord.public_messages(submit) == []
