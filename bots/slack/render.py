"""Slack's rendering of the core's results and errors: text and Block Kit.

One function per thing the core hands back (ImageResult, Progress,
QuotaStatus, ImagineError, InterruptedJob), plus the few texts that only
exist because of Slack (channel membership, the Edit image modal).
Platform-neutral wording comes from core.messages.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Sequence

from bots.buttons import ACTIONS, LABELS
from core import messages
from core.errors import ImagineError
from core.models import ImageResult, InterruptedJob, Progress, QuotaStatus
from core.options import SIZE_PRESETS

# Long prompts are shown shortened: a Slack message holds 40,000 characters
# but a file comment and a readable placeholder much less. The model always
# gets the prompt as typed; only its display is cut.
PROMPT_DISPLAY_CHARS = 600

CANCEL_ACTION_ID = "imagine_cancel"
EDIT_MODAL_CALLBACK_ID = "edit_image_modal"
EDIT_SHORTCUT_CALLBACK_ID = "edit_image"


def mention(user_id: str) -> str:
    return f"<@{user_id}>"


def escape(text: str) -> str:
    """Slack's three control characters, so a prompt shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def shorten(prompt: str, limit: int = PROMPT_DISPLAY_CHARS) -> str:
    return prompt if len(prompt) <= limit else prompt[: limit - 1].rstrip() + "…"


def slack_date(at: datetime, *, fallback: str) -> str:
    """A date token each reader sees in their own time zone."""
    return f"<!date^{int(at.timestamp())}^{{date_short_pretty}} at {{time}}|{fallback}>"


# -- results -------------------------------------------------------------------


def render_result(result: ImageResult, *, user_id: str) -> str:
    """The comment posted with the images: who asked, the prompt, the settings."""
    shown = dataclasses.replace(result, prompt=escape(shorten(result.prompt)))
    return messages.result_caption(shown, mention=mention(user_id))


def request_header(user_id: str, prompt: str, *, kind: str) -> str:
    verb = "asked for" if kind == "generate" else "asked to edit with"
    return f"{mention(user_id)} {verb}: “{escape(shorten(prompt))}”"


def render_progress(header: str, progress: Progress | None, *, cancel_value: str | None) -> tuple[str, list[dict[str, Any]]]:
    """The placeholder: text (for notifications) and blocks. A Cancel button
    is offered only while the job waits in line: once the model is called,
    stopping would not save the money."""
    state = messages.progress_text(progress) if progress else "Starting…"
    text = f"{header}\n:hourglass_flowing_sand: {state}"
    section: dict[str, Any] = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if cancel_value and progress is not None and progress.state == "queued":
        section["accessory"] = {
            "type": "button",
            "action_id": CANCEL_ACTION_ID,
            "text": {"type": "plain_text", "text": "Cancel"},
            "value": cancel_value,
        }
    return text, [section]


def render_progress_ended(header: str) -> str:
    """What a placeholder says when Slack would not delete it: the job is over
    either way (its images, or a private word to its owner, say how)."""
    return f"{header}\nThis request has ended."


# -- quota --------------------------------------------------------------------


def render_quota(status: QuotaStatus, *, subject_id: str | None = None) -> str:
    """`subject_id` when an admin looks at someone else's usage."""
    reset = slack_date(status.resets_at, fallback=messages.format_clock(status.resets_at))
    text = messages.quota_text(status, reset_display=reset)
    if subject_id:
        text = f"Usage of {mention(subject_id)} today:\n{text}"
    return text


# -- errors and outcomes without images ------------------------------------------


def render_error(error: ImagineError) -> str:
    """The core's text is already written for the user: plain words, what to do next."""
    return error.user_message


def render_unexpected(job_id: str) -> str:
    return messages.unexpected_error_text(job_id)


def render_interrupted(job: InterruptedJob) -> str:
    return f"{messages.interrupted()} Your request was: “{escape(shorten(job.prompt, 200))}”"


def render_cancelled() -> str:
    return "Cancelled. Nothing was charged."


def render_restarting() -> str:
    return messages.shutting_down()


def render_busy() -> str:
    return "I'm handling too many requests right now. Nothing was charged. Please try again in a minute."


def render_cannot_post_here() -> str:
    return (
        "I can't post in this conversation, so I stopped your request. Nothing was charged. "
        "Invite me with `/invite @imaginebot` (or use me in a channel I'm in), then try again."
    )


def render_upload_failed(job_id: str, *, channel_refused: bool = True, given_back: bool = True) -> str:
    """`channel_refused`: Slack said the bot may not post there (else Slack or
    the network failed); `given_back`: the images went back on the limit."""
    if channel_refused:
        why, advice = "Slack didn't let me post them here", "Check that I'm still in this channel and try again."
    else:
        why, advice = "Slack had a problem when I posted them", "Please try again in a moment."
    limit = ", so they don't count against your daily limit" if given_back else ""
    return f"Your images were made, but {why}{limit}. {advice} (Reference: {job_id})"


def render_modal_failed() -> str:
    return "I couldn't open the Edit image form in time. Please use the shortcut again."


def render_cancel_not_yours(owner_id: str) -> str:
    return f"Only {mention(owner_id)} can cancel this request."


def render_cancel_too_late() -> str:
    return "That request is already being drawn, so it can't be cancelled any more."


# -- editing --------------------------------------------------------------------


def render_no_images_in_message() -> str:
    return "That message has no images I can edit. Use Edit image on a message with a PNG, JPEG or WebP picture."


def render_too_many_images(count: int, limit: int) -> str:
    return f"That message has {count} images; an edit can use at most {limit}. Share fewer images in one message and try again."


def render_no_bot_image_in_thread() -> str:
    return (
        "I didn't find an image of mine in this thread to edit. Attach the image to your message, "
        "or use the Edit image shortcut (⋮ → Edit image) on a message with images."
    )


def render_mention_help() -> str:
    return (
        "Mention me in a message with images to edit them (“@imaginebot make it watercolor”), "
        "or in the thread of an image I made. To make a new image, use /imagine followed by what to draw."
    )


def render_empty_edit_instruction() -> str:
    return "Tell me how to change the image, for example: @imaginebot make it a watercolor painting"


def render_edit_modal(
    *, metadata: str, image_count: int, default_size: str, default_quality: str, max_n: int,
    qualities_offered: Sequence[str],
) -> dict[str, Any]:
    """The Edit image modal: the instruction, then size, quality, count and background."""
    sizes = [("auto", "Match the original (auto)")] + [(v, f"{k} ({v})") for k, v in SIZE_PRESETS.items()]
    qualities = [(q, q) for q in qualities_offered]
    backgrounds = [("auto", "auto"), ("opaque", "opaque"), ("transparent", "transparent (PNG)")]
    counts = [(str(i), str(i)) for i in range(1, max_n + 1)]
    what = "this image" if image_count == 1 else f"these {image_count} images"
    return {
        "type": "modal",
        "callback_id": EDIT_MODAL_CALLBACK_ID,
        "title": {"type": "plain_text", "text": "Edit image"},
        "submit": {"type": "plain_text", "text": "Edit"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": metadata,  # bots/slack/edit_form.py
        "blocks": [
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": f"I'll edit {what}; the result goes to the message's thread."}],
            },
            {
                "type": "input",
                "block_id": "instruction",
                "label": {"type": "plain_text", "text": "What should change?"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 3000,
                    "placeholder": {"type": "plain_text", "text": "make it a watercolor painting"},
                },
            },
            _select("size", "Size", sizes, default_size),
            _select("quality", "Quality", qualities, default_quality),
            _select("count", "Number of images", counts, "1"),
            _select("background", "Background", backgrounds, "auto"),
        ],
    }


def _select(block_id: str, label: str, options: Sequence[tuple[str, str]], initial: str) -> dict[str, Any]:
    opts = [{"text": {"type": "plain_text", "text": text}, "value": value} for value, text in options]
    chosen = next((o for o in opts if o["value"] == initial), opts[0])
    return {
        "type": "input",
        "block_id": block_id,
        "label": {"type": "plain_text", "text": label},
        "element": {"type": "static_select", "action_id": "value", "options": opts, "initial_option": chosen},
    }


# -- admin ----------------------------------------------------------------------


def render_admin_help() -> str:
    return (
        "Admin commands:\n"
        "• `/imagine-admin limit @user 20`: set someone's daily image limit (`default` to go back to the normal limit)\n"
        "• `/imagine-admin reset @user`: forgive today's usage and lift a cool-down\n"
        "• `/imagine-admin budget 25`: this workspace's daily budget in USD (`0` = no budget)\n"
        "• `/imagine-admin history @user`: someone's last 10 jobs\n"
        "• `/imagine-admin pace`: the images-per-minute pace (configured or learned) and the queue\n"
        "• `/imagine-quota @user`: someone's usage today"
    )


def render_need_mention(command: str) -> str:
    return f"Mention the person so Slack links the name, for example `{command} @alex`."


def render_limit_set(user_id: str, daily: int | None) -> str:
    return messages.limit_set(mention(user_id), daily)


def render_reset_done(user_id: str) -> str:
    return messages.user_reset(mention(user_id))


def render_budget_set(usd: float) -> str:
    return messages.budget_set(usd, "workspace")


# -- the buttons under every result, and /imagine-history ----------------------------

RESULT_ACTION_PREFIX = "imagine_"  # + again, vary, bigger, edit, info, delete (CANCEL_ACTION_ID is apart)


def result_action_id(action: str) -> str:
    return f"{RESULT_ACTION_PREFIX}{action}"


def _button(action: str, job_id: str, label: str) -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "action_id": result_action_id(action),
        "text": {"type": "plain_text", "text": label},
        "value": job_id,  # the job id only: the rest is read from the ledger at click time
    }
    if action == "delete":
        button["style"] = "danger"
    return button


def render_result_buttons(job_id: str, note: str) -> tuple[str, list[dict[str, Any]]]:
    """The message right after the images: Again, Vary, Bigger, Edit, Info,
    Delete, and what the spending ones will use."""
    return note, [
        {"type": "actions", "block_id": f"result_{job_id}", "elements": [_button(a, job_id, LABELS[a]) for a in ACTIONS]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": escape(note)}]},
    ]


def render_history(heading: str, lines: Sequence[tuple[str, str]]) -> tuple[str, list[dict[str, Any]]]:
    """/imagine-history: one section per job (`(text, job id)`), each with Again."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": heading}}]
    for text, job_id in lines:
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}, "accessory": _button("again", job_id, "Again")}
        )
    return "\n".join([heading, *(text for text, _ in lines)]), blocks
