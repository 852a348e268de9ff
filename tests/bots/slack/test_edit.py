"""Editing: the Edit image shortcut and its modal, and @mentions (with images,
or in the thread of an image the bot posted)."""

from __future__ import annotations

import json
from typing import Any

from tests.bots.slack.conftest import CHANNEL, SlackBot, png
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import BOT_TOKEN, TEAM_ID


def shortcut_payload(message: dict[str, Any], response_url: str, user: str = "UALICE") -> dict[str, Any]:
    return {
        "type": "message_action",
        "callback_id": "edit_image",
        "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user, "team_id": TEAM_ID, "name": user.lower()},
        "channel": {"id": CHANNEL, "name": "general"},
        "message": message,
        "message_ts": message["ts"],
        "response_url": response_url,
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
    }


def submission_payload(
    view: dict[str, Any], instruction: str, *, size: str = "auto", quality: str = "low", count: str = "1", background: str = "auto"
) -> dict[str, Any]:
    def selected(value: str) -> dict[str, Any]:
        return {"type": "static_select", "selected_option": {"text": {"type": "plain_text", "text": value}, "value": value}}

    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": "UALICE", "team_id": TEAM_ID, "name": "ualice"},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "trigger_id": "12345.98765.abcd2358fdea",
        "view": {
            **view,
            "id": "V0MODAL",
            "team_id": TEAM_ID,
            "state": {
                "values": {
                    "instruction": {"value": {"type": "plain_text_input", "value": instruction}},
                    "size": {"value": selected(size)},
                    "quality": {"value": selected(quality)},
                    "count": {"value": selected(count)},
                    "background": {"value": selected(background)},
                }
            },
        },
    }


async def test_shortcut_opens_modal_and_submission_edits_all_images_into_the_thread(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    first = bot.slack.add_file(png(color=(255, 0, 0)), name="red.png")
    second = bot.slack.add_file(png(color=(0, 0, 255)), name="blue.png", mimetype="image/png")
    message = bot.slack.add_message(CHANNEL, text="two pictures", files=[first, second]).as_json()
    response_url = bot.slack.response_url()

    status, _ = await bot.interactive(shortcut_payload(message, response_url))
    assert status == 200
    await bot.slack.wait_until(lambda: bool(bot.slack.calls_to("views.open")))
    await bot.settle()
    (opened,) = bot.slack.calls_to("views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "edit_image_modal"
    assert opened.params["trigger_id"] == "13345224609.738474920.8088930838d88f008e0"
    assert json.loads(view["private_metadata"])["f"] == [first["id"], second["id"]]

    status, body = await bot.interactive(submission_payload(view, "make it a watercolor painting", count="2"))
    assert status == 200 and body == ""  # the modal closes
    await bot.settle()

    (edit,) = fake_openai.calls("/images/edits")
    assert edit.form["prompt"] == "make it a watercolor painting"
    assert [f.name for f in edit.files] == ["image[]", "image[]"]
    (complete,) = bot.slack.completed_uploads()
    assert complete.params["channel_id"] == CHANNEL
    assert complete.params["thread_ts"] == message["ts"]
    assert len(json.loads(complete.params["files"])) == 2
    # The modal kept only file ids; files.info gave the download URLs back.
    assert [c.params["file"] for c in bot.slack.calls_to("files.info")] == [first["id"], second["id"]]
    # The images were fetched from Slack's (fake) file host with the bot token.
    assert len(bot.slack.file_requests) == 2
    assert all(r.authorization == f"Bearer {BOT_TOKEN}" for r in bot.slack.file_requests)
    assert bot.slack.responses_to(response_url) == []


async def test_modal_refuses_an_empty_instruction_in_the_form(bot: SlackBot) -> None:
    file = bot.slack.add_file(png())
    view = {"type": "modal", "callback_id": "edit_image_modal", "private_metadata": json.dumps({"c": CHANNEL, "t": "1.2", "f": [file["id"]]})}
    status, body = await bot.interactive(submission_payload(view, "   "))
    assert status == 200
    assert json.loads(body) == {"response_action": "errors", "errors": {"instruction": "Tell me what to change."}}
    await bot.settle()
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_shortcut_on_a_message_without_images_answers_privately(bot: SlackBot) -> None:
    message = bot.slack.add_message(CHANNEL, text="just words").as_json()
    response_url = bot.slack.response_url()
    await bot.interactive(shortcut_payload(message, response_url))
    await bot.settle()
    (answer,) = bot.slack.responses_to(response_url)
    assert "no images" in answer["text"] and answer["response_type"] == "ephemeral"
    assert bot.slack.calls_to("views.open") == []


async def test_shortcut_on_more_than_16_images_is_refused_before_downloading(bot: SlackBot) -> None:
    files = [bot.slack.add_file(png(), name=f"p{i}.png") for i in range(17)]
    message = bot.slack.add_message(CHANNEL, files=files).as_json()
    response_url = bot.slack.response_url()
    await bot.interactive(shortcut_payload(message, response_url))
    await bot.settle()
    (answer,) = bot.slack.responses_to(response_url)
    assert "17 images" in answer["text"] and "16" in answer["text"]
    assert bot.slack.file_requests == []


def mention_event(text: str, *, ts: str, files: list[dict[str, Any]] | None = None, thread_ts: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": "app_mention",
        "user": "UALICE",
        "text": text,
        "ts": ts,
        "channel": CHANNEL,
        "event_ts": ts,
        "team": TEAM_ID,
    }
    if files:
        event["files"] = files
    if thread_ts:
        event["thread_ts"] = thread_ts
    return event


async def test_mention_with_images_edits_them_with_the_message_text(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png(), name="cat.png")
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> make it watercolor", files=[file])
    status, _ = await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    assert status == 200
    await bot.settle()

    (edit,) = fake_openai.calls("/images/edits")
    assert edit.form["prompt"] == "make it watercolor"
    assert edit.form["size"] == "auto"  # an edit keeps the picture's shape unless --size says otherwise
    (complete,) = bot.slack.completed_uploads()
    assert complete.params["thread_ts"] == msg.ts
    assert "asked to edit with" in complete.params["initial_comment"]


async def test_mention_in_a_thread_edits_the_image_the_bot_posted(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    await bot.command("/imagine", "a castle")
    await bot.settle()
    (result_message,) = [m for m in bot.slack.live_messages(CHANNEL) if m.files]
    bot_file_id = result_message.files[0]["id"]

    reply = bot.slack.add_message(CHANNEL, text="<@UBOT> add a dragon", thread_ts=result_message.ts)
    await bot.event(mention_event(reply.text, ts=reply.ts, thread_ts=result_message.ts))
    await bot.settle()

    (edit,) = fake_openai.calls("/images/edits")
    assert edit.form["prompt"] == "add a dragon"
    assert any(bot_file_id in r.path for r in bot.slack.file_requests)
    uploads = bot.slack.completed_uploads()
    assert len(uploads) == 2 and uploads[1].params["thread_ts"] == result_message.ts


async def test_mention_in_a_thread_without_a_bot_image_explains_privately(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    root = bot.slack.add_message(CHANNEL, text="planning")
    reply = bot.slack.add_message(CHANNEL, text="<@UBOT> make it blue", thread_ts=root.ts)
    await bot.event(mention_event(reply.text, ts=reply.ts, thread_ts=root.ts))
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert ephemeral.params["user"] == "UALICE" and ephemeral.params["thread_ts"] == root.ts
    assert "didn't find an image of mine" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []


async def test_a_non_image_attachment_is_refused_clearly(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(b"%PDF-1.7 not an image", name="photo.png", mimetype="image/png", content_type="image/png")
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> sharpen", files=[file])
    await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "photo.png" in ephemeral.params["text"] and "not an image" in ephemeral.params["text"]
    assert fake_openai.calls("/images/edits") == []
    assert bot.slack.calls_to("chat.postMessage") == []


async def test_mention_without_images_outside_a_thread_explains_how_to_use_it(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> hello")
    await bot.event(mention_event(msg.text, ts=msg.ts))
    await bot.settle()
    (ephemeral,) = bot.slack.calls_to("chat.postEphemeral")
    assert "/imagine" in ephemeral.params["text"] and ephemeral.params["user"] == "UALICE"
    assert "thread_ts" not in ephemeral.params  # said where the person wrote, not in a thread nobody opened
    assert bot.slack.calls_to("conversations.replies") == []
    assert fake_openai.requests == []


async def test_mention_edit_takes_a_transparent_background(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png(), name="cat.png")
    msg = bot.slack.add_message(CHANNEL, text="<@UBOT> cut the cat out --background transparent", files=[file])
    await bot.event(mention_event(msg.text, ts=msg.ts, files=[file]))
    await bot.settle()
    (edit,) = fake_openai.calls("/images/edits")
    assert (edit.form["prompt"], edit.form["model"], edit.form["background"]) == (
        "cut the cat out", "gpt-image-2.6-sunburst", "transparent")  # fmt: skip


async def test_modal_offers_a_transparent_background_and_only_qualities_the_model_has(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    file = bot.slack.add_file(png(), name="cat.png")
    message = bot.slack.add_message(CHANNEL, text="a cat", files=[file]).as_json()
    await bot.interactive(shortcut_payload(message, bot.slack.response_url()))
    await bot.slack.wait_until(lambda: bool(bot.slack.calls_to("views.open")))
    view = bot.slack.calls_to("views.open")[0].params["view"]
    selects = {b["block_id"]: [o["value"] for o in b["element"]["options"]] for b in view["blocks"] if b["type"] == "input" and "options" in b["element"]}
    assert selects["background"] == ["auto", "opaque", "transparent"]
    assert selects["quality"] == ["low", "medium", "high", "auto"]  # gpt-image-2 has no xhigh/max
    status, body = await bot.interactive(submission_payload(view, "cut the cat out", background="transparent"))
    assert status == 200 and body == ""
    await bot.settle()
    (edit,) = fake_openai.calls("/images/edits")
    assert (edit.form["model"], edit.form["background"]) == ("gpt-image-2.6-sunburst", "transparent")
