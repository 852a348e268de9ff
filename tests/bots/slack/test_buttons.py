"""The buttons under every Slack result (Again, Vary, Bigger, Edit, Info,
Delete) and /imagine-history, each clicked after the bot restarted (a new
adapter and service on the same database)."""

from __future__ import annotations

import json
from typing import Any

from tests.bots.slack.conftest import CHANNEL, MakeBot, SlackBot, block_actions, png
from tests.bots.slack.test_edit import shortcut_payload, submission_payload
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_server import Message

LABELS = ["Again", "Vary", "Bigger", "Edit", "Info", "Delete"]


def buttons_messages(bot: SlackBot) -> list[Message]:
    """The live messages carrying result buttons, oldest first."""
    return [m for m in bot.slack.live_messages() if any(b.get("type") == "actions" for b in m.blocks or [])]


def latest_buttons(bot: SlackBot) -> Message:
    return buttons_messages(bot)[-1]


def job_of(message: Message) -> str:
    return str(message.blocks[0]["elements"][0]["value"])  # type: ignore[index]


def click(bot: SlackBot, message: Message | None, action: str, job_id: str, *, user: str = "UALICE") -> dict[str, Any]:
    """A block_actions payload as Slack sends it for one of the buttons."""
    ts = message.ts if message else "1700000000.999999"
    as_json = message.as_json() if message else None
    return block_actions(user, f"imagine_{action}", job_id, bot.slack.response_url(), ts=ts, message=as_json, ephemeral=message is None)


async def press(bot: SlackBot, message: Message | None, action: str, *, user: str = "UALICE", job_id: str = "") -> str:
    """Click and wait for the work; returns the response_url the click carried."""
    payload = click(bot, message, action, job_id or job_of(message), user=user)  # type: ignore[arg-type]
    status, body = await bot.interactive(payload)
    assert status == 200 and body == ""  # acked at once, nothing in the ack
    await bot.settle()
    return str(payload["response_url"])


def private(bot: SlackBot, response_url: str) -> list[str]:
    bodies = bot.slack.responses_to(response_url)
    assert all(b["response_type"] == "ephemeral" for b in bodies)
    return [b["text"] for b in bodies]


async def restart(bot: SlackBot, make_bot: MakeBot, db: Any) -> SlackBot:
    await bot.adapter.close(grace_seconds=5)
    fresh = await make_bot(db_path=db)
    assert fresh.service is not bot.service
    fresh._triggers = bot._triggers  # Slack's trigger ids never repeat; the replay claims outlive the restart
    return fresh


async def test_a_member_takes_a_result_through_again_bigger_edit_info_delete_across_restarts(
    make_bot: MakeBot, fake_openai: FakeOpenAI, tmp_path
) -> None:
    """Done when (issue 13): no command typed after the first, the bot restarted before every click."""
    bot = await make_bot(db_path=tmp_path / "bot.db")
    await bot.command("/imagine", "a lighthouse at dusk --quality low")
    await bot.settle()
    first = latest_buttons(bot)
    assert [e["text"]["text"] for e in first.blocks[0]["elements"]] == LABELS  # type: ignore[index]
    assert "Bigger (2048x2048)" in first.text and "no upscaler" in first.text  # what the buttons will use

    bot = await restart(bot, make_bot, tmp_path / "bot.db")
    await press(bot, first, "again")
    _, generate = fake_openai.calls("/images/generations")
    assert generate.json["prompt"] == "a lighthouse at dusk" and generate.json["quality"] == "low"
    second = latest_buttons(bot)
    assert job_of(second) != job_of(first)

    bot = await restart(bot, make_bot, tmp_path / "bot.db")
    await press(bot, second, "bigger")
    (bigger,) = fake_openai.calls("/images/edits")
    assert bigger.form["size"] == "2048x2048" and bigger.form["n"] == "1"
    second_upload = bot.slack.uploads[1].data
    assert [f.data for f in bigger.files if f.name.startswith("image")] == [second_upload]
    third = latest_buttons(bot)

    bot = await restart(bot, make_bot, tmp_path / "bot.db")
    await press(bot, third, "edit")
    opened = bot.slack.calls_to("views.open")[-1]
    view = opened.params["view"]
    bot = await restart(bot, make_bot, tmp_path / "bot.db")  # even between opening the form and sending it
    status, _ = await bot.interactive(submission_payload(view, "add a full moon", size="1536x1024", quality="low"))
    assert status == 200
    await bot.settle()
    _, edit = fake_openai.calls("/images/edits")
    assert (edit.form["prompt"], edit.form["size"], edit.form["quality"]) == ("add a full moon", "1536x1024", "low")
    assert [f.data for f in edit.files if f.name.startswith("image")] == [bot.slack.uploads[2].data]
    fourth = latest_buttons(bot)

    bot = await restart(bot, make_bot, tmp_path / "bot.db")
    url = await press(bot, fourth, "info")
    (info,) = private(bot, url)
    assert f"Job id: {job_of(fourth)}" in info and "add a full moon" in info and "Cost: $" in info and "Tokens:" in info

    bot = await restart(bot, make_bot, tmp_path / "bot.db")
    url = await press(bot, fourth, "delete")
    assert "Deleted" in private(bot, url)[0]
    fourth_file = json.loads(bot.slack.completed_uploads()[-1].params["files"])[0]["id"]
    assert bot.slack.deleted_files == [fourth_file]
    assert fourth not in bot.slack.live_messages()  # its buttons went too
    assert not any(fourth_file in [f["id"] for f in m.files] for m in bot.slack.live_messages())
    assert len(fake_openai.calls("/images/generations")) == 2 and len(fake_openai.calls("/images/edits")) == 2


async def test_again_on_an_edit_sends_the_same_input_images(make_bot: MakeBot, fake_openai: FakeOpenAI, tmp_path) -> None:
    bot = await make_bot(db_path=tmp_path / "bot.db")
    red, blue = png(color=(255, 0, 0)), png(color=(0, 0, 255))
    files = [bot.slack.add_file(red, name="red.png"), bot.slack.add_file(blue, name="blue.png")]
    message = bot.slack.add_message(CHANNEL, text="two pictures", files=files).as_json()
    await bot.interactive(shortcut_payload(message, bot.slack.response_url()))
    await bot.settle()
    view = bot.slack.calls_to("views.open")[-1].params["view"]
    await bot.interactive(submission_payload(view, "make it a watercolor painting"))
    await bot.settle()
    edited = latest_buttons(bot)
    bot = await restart(bot, make_bot, tmp_path / "bot.db")

    await press(bot, edited, "again", user="UBOB")

    first, second = fake_openai.calls("/images/edits")
    assert second.form["prompt"] == first.form["prompt"] == "make it a watercolor painting"
    assert [f.data for f in second.files if f.name.startswith("image")] == [red, blue]
    assert [f.data for f in first.files if f.name.startswith("image")] == [red, blue]
    assert [c.params["file"] for c in bot.slack.calls_to("files.info")][-2:] == [files[0]["id"], files[1]["id"]]


async def test_vary_after_a_restart_edits_the_first_image_with_a_variation_instruction(
    make_bot: MakeBot, fake_openai: FakeOpenAI, tmp_path
) -> None:
    bot = await make_bot(db_path=tmp_path / "bot.db")
    await bot.command("/imagine", "two cats --n 2 --quality low")
    await bot.settle()
    bot = await restart(bot, make_bot, tmp_path / "bot.db")

    await press(bot, latest_buttons(bot), "vary", user="UBOB")

    (call,) = fake_openai.calls("/images/edits")
    assert "variation" in call.form["prompt"] and call.form["n"] == "1" and call.form["quality"] == "low"
    assert [f.data for f in call.files if f.name.startswith("image")] == [bot.slack.uploads[0].data]
    assert "<@UBOB>" in bot.slack.completed_uploads()[-1].params["initial_comment"]  # the clicker's job


async def test_bigger_keeps_the_shape_of_a_tall_image(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    await bot.command("/imagine", "a tall tower --size portrait --quality low")
    await bot.settle()

    await press(bot, latest_buttons(bot), "bigger")

    (call,) = fake_openai.calls("/images/edits")
    assert call.form["size"] == "1152x2048"


async def test_delete_by_someone_else_is_refused_privately_and_an_admin_may(bot: SlackBot) -> None:
    await bot.command("/imagine", "my picture")
    await bot.settle()
    message = latest_buttons(bot)

    url = await press(bot, message, "delete", user="UBOB")
    assert "Only <@UALICE>" in private(bot, url)[0]
    assert bot.slack.deleted_files == [] and message in bot.slack.live_messages()

    url = await press(bot, message, "delete", user="UADMIN")
    assert "Deleted" in private(bot, url)[0]
    assert len(bot.slack.deleted_files) == 1 and message not in bot.slack.live_messages()

    url = await press(bot, message, "delete", user="UALICE")
    assert "already deleted" in private(bot, url)[0]


async def test_info_is_private_and_charges_nothing(bot: SlackBot, fake_openai: FakeOpenAI) -> None:
    await bot.command("/imagine", "a kite")
    await bot.settle()
    posted = len(bot.slack.calls_to("chat.postMessage"))

    url = await press(bot, latest_buttons(bot), "info", user="UBOB")

    (text,) = private(bot, url)
    assert "Model: gpt-image-2" in text and "Cost: $0.0" in text and "Prompt: “a kite”" in text
    assert len(bot.slack.calls_to("chat.postMessage")) == posted and len(fake_openai.requests) == 1
    assert (await bot.service.quota(bot.requester("UBOB"))).used == 0


async def test_history_lists_the_jobs_with_links_and_again_buttons(make_bot: MakeBot, fake_openai: FakeOpenAI, tmp_path) -> None:
    bot = await make_bot(db_path=tmp_path / "bot.db")
    for prompt in ("first picture", "second picture"):
        await bot.command("/imagine", f"{prompt} --quality low")
        await bot.settle()
    first, second = buttons_messages(bot)
    bot = await restart(bot, make_bot, tmp_path / "bot.db")

    _, _, url = await bot.command("/imagine-history", "")
    await bot.settle()

    (body,) = bot.slack.responses_to(url)
    assert body["response_type"] == "ephemeral"
    rows = body["blocks"][1:]
    assert ["second picture" in rows[0]["text"]["text"], "first picture" in rows[1]["text"]["text"]] == [True, True]
    for row, message in zip(rows, (second, first)):
        assert f"/archives/{CHANNEL}/p{message.ts.replace('.', '')}|open>" in row["text"]["text"]
        assert row["accessory"]["text"]["text"] == "Again" and row["accessory"]["value"] == job_of(message)

    await press(bot, None, "again", job_id=rows[1]["accessory"]["value"])  # from the ephemeral list
    assert fake_openai.calls("/images/generations")[-1].json["prompt"] == "first picture"


async def test_admin_history_of_a_member_and_refused_to_others(bot: SlackBot) -> None:
    await bot.command("/imagine", "alice's picture")
    await bot.settle()

    _, _, refused = await bot.command("/imagine-admin", "history <@UALICE|alice>", user="UBOB")
    await bot.settle()
    assert "alice's picture" not in json.dumps(bot.slack.responses_to(refused))

    _, _, url = await bot.command("/imagine-admin", "history <@UALICE|alice>", user="UADMIN")
    await bot.settle()
    (body,) = bot.slack.responses_to(url)
    assert "alice's picture" in body["text"] and "<@UALICE>'s" in body["text"]
