"""/edit with attachments, and the Edit image message context menu."""

from __future__ import annotations

from tests.bots.discord.conftest import png_bytes
from tests.fakes.discord_server import DEFERRED_CHANNEL_MESSAGE, EPHEMERAL, MODAL, FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


async def test_edit_downloads_the_attachments_from_the_cdn_and_edits_them(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    first, second = png_bytes(color=(10, 200, 10)), png_bytes(color=(10, 10, 200))
    image = fake_discord.add_attachment(first, "cat.png")
    image2 = fake_discord.add_attachment(second, "hat.png")

    ix = await fake_discord.send_slash_command(
        "edit", {"image": image, "prompt": "put the hat on the cat", "image2": image2, "quality": "low"}
    )

    result = await fake_discord.wait_for_result(ix)
    assert ix.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE}
    (call,) = fake_openai.calls("/images/edits")
    assert call.form["prompt"] == "put the hat on the cat" and call.form["quality"] == "low"
    assert [f.data for f in call.files if f.name.startswith("image")] == [first, second]
    assert len(fake_discord.cdn_hits) == 2
    assert "asked to edit with: “put the hat on the cat”" in result["content"]
    assert len(result["attachments"]) == 1


async def test_edit_with_a_mask(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    image = fake_discord.add_attachment(png_bytes(), "room.png")
    mask = fake_discord.add_attachment(png_bytes(color=(0, 0, 0, 0), mode="RGBA"), "mask.png")

    ix = await fake_discord.send_slash_command("edit", {"image": image, "prompt": "add a sofa", "mask": mask})

    await fake_discord.wait_for_result(ix)
    (call,) = fake_openai.calls("/images/edits")
    assert [f.name for f in call.files].count("mask") == 1


async def test_edit_refuses_an_attachment_outside_discords_hosts(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    # Same server, but a host name that is neither Discord's CDN nor DISCORD_API_URL's host.
    image = fake_discord.add_attachment(png_bytes(), "cat.png", host="localhost")

    ix = await fake_discord.send_slash_command("edit", {"image": image, "prompt": "make it blue"})

    reply = await fake_discord.wait_for_private(ix)
    assert "only read images uploaded to this chat" in reply["content"]
    assert fake_discord.cdn_hits == [] and fake_openai.requests == []
    assert fake_discord.public_messages(ix) == []


async def test_edit_refuses_a_file_that_is_not_an_image_before_deferring(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    doc = fake_discord.add_attachment(b"%PDF-1.7 not an image", "notes.pdf", "application/pdf")

    ix = await fake_discord.send_slash_command("edit", {"image": doc, "prompt": "make it blue"})

    reply = await fake_discord.wait_for_private(ix)
    assert ix.callbacks[0].json["data"]["flags"] == EPHEMERAL
    assert "“notes.pdf” isn't an image" in reply["content"]
    assert fake_discord.cdn_hits == [] and fake_openai.requests == []


async def test_edit_refuses_a_disguised_non_image_after_download(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    fake = fake_discord.add_attachment(b"<html>login</html>", "cat.png", "image/png")

    ix = await fake_discord.send_slash_command("edit", {"image": fake, "prompt": "make it blue"})

    reply = await fake_discord.wait_for_private(ix)
    assert "not an image I can read" in reply["content"]
    assert fake_openai.requests == []


async def test_context_menu_opens_a_modal_and_edits_every_image_of_the_message(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI
):
    a, b = png_bytes(color=(1, 2, 3)), png_bytes(color=(4, 5, 6))
    target = fake_discord.user_message(
        "look at these",
        [
            fake_discord.add_attachment(a, "one.png"),
            fake_discord.add_attachment(b"just text", "readme.txt", "text/plain"),
            fake_discord.add_attachment(b, "two.png"),
        ],
    )

    menu = await fake_discord.send_message_command("Edit image", target)
    callback = await fake_discord.wait_for_callback(menu)
    assert callback.json["type"] == MODAL
    modal = menu.modal
    assert modal is not None and modal["title"] == "Edit 2 images"

    submit = await fake_discord.submit_modal(modal, {modal["components"][0]["components"][0]["custom_id"]: "make it night"})

    result = await fake_discord.wait_for_result(submit)
    assert submit.callbacks[0].json == {"type": DEFERRED_CHANNEL_MESSAGE}
    (call,) = fake_openai.calls("/images/edits")
    assert call.form["prompt"] == "make it night"
    assert [f.data for f in call.files if f.name.startswith("image")] == [a, b]
    assert "make it night" in result["content"]


async def test_context_menu_on_a_message_without_images_answers_privately(adapter, fake_discord: FakeDiscord):
    target = fake_discord.user_message("no pictures here")

    menu = await fake_discord.send_message_command("Edit image", target)

    reply = await fake_discord.wait_for_private(menu)
    assert menu.modal is None and "no images" in reply["content"]


async def test_a_malformed_interaction_gets_a_private_apology_with_a_logged_reference(
    adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI, caplog
):
    payload = fake_discord.slash_command_payload(
        "edit", {"image": fake_discord.add_attachment(png_bytes(), "a.png"), "prompt": "x"}
    )
    del payload["data"]["resolved"]  # the attachment option now points at nothing

    ix = await fake_discord.dispatch(payload)

    reply = await fake_discord.wait_for_private(ix)
    assert reply["content"].startswith("Sorry, something went wrong on my side")
    reference = reply["content"].rsplit("Reference: ", 1)[1].rstrip(")")
    assert any(reference in r.getMessage() for r in caplog.records if r.name == "imaginebot.discord")
    assert fake_openai.requests == []


async def test_edit_with_a_transparent_background(adapter, fake_discord: FakeDiscord, fake_openai: FakeOpenAI):
    image = fake_discord.add_attachment(png_bytes(), "cat.png")
    ix = await fake_discord.send_slash_command("edit", {"image": image, "prompt": "cut the cat out", "background": "transparent"})
    await fake_discord.wait_for_result(ix)
    (call,) = fake_openai.calls("/images/edits")
    assert (call.form["model"], call.form["background"]) == ("gpt-image-2.6-sunburst", "transparent")
