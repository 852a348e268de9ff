"""The buttons under every result, the same on every platform: what each one
asks the service for, what it will use (said before anyone clicks), and the
private Info and /history texts.

A button carries only its action and the job id; everything else is read
from the ledger when it is clicked (ImageService.results), so a click on a
message posted before a restart, or handled by another replica, does the
same thing. The adapters fetch the images and run the job through the
JobRunner, exactly like a command.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Callable, Literal, Mapping, Sequence

from PIL import Image

from core.config import Config
from core.errors import InvalidInput
from core.models import HistoryEntry, ImageOptions, ImageResult, JobRecord
from core.options import route_model
from core.pricing import estimate_usd, weighted_units

Action = Literal["again", "vary", "bigger", "edit", "info", "delete"]
ACTIONS: tuple[Action, ...] = ("again", "vary", "bigger", "edit", "info", "delete")
# SPEC §3 "Both": exactly these labels.
LABELS: dict[Action, str] = {
    "again": "Again", "vary": "Vary", "bigger": "Bigger", "edit": "Edit", "info": "Info", "delete": "Delete",
}  # fmt: skip
SPENDING: tuple[Action, ...] = ("again", "vary", "bigger")  # Edit spends too, once its form is sent

# gpt-image-2 has no upscaler or variation endpoint: both are edits of the image.
VARY_INSTRUCTION = (
    "Make a variation of this image: keep its subject, composition and style, and change the details."
)
BIGGER_INSTRUCTION = (
    "Re-draw this exact image at a higher resolution with finer detail. Keep the subject, composition, colours "
    "and style exactly the same."
)
BIGGER_SIZES = {"square": "2048x2048", "wide": "2048x1152", "tall": "1152x2048"}
_SHAPE_TOLERANCE = 1.2  # within 1.2:1 counts as square


def bigger_size(width: int, height: int) -> str:
    """The 2K-class size with the image's shape."""
    if width >= height * _SHAPE_TOLERANCE:
        return BIGGER_SIZES["wide"]
    if height >= width * _SHAPE_TOLERANCE:
        return BIGGER_SIZES["tall"]
    return BIGGER_SIZES["square"]


def size_of(size: str) -> tuple[int, int]:
    """A job's WxH; "auto" is taken as square (the model picks)."""
    if "x" not in size:
        return 1024, 1024
    w, h = size.split("x")
    return int(w), int(h)


def image_dimensions(data: bytes) -> tuple[int, int] | None:
    """Width and height from the image header (no full decode), or None."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except Exception:  # not an image: the core refuses it with a precise message
        return None


@dataclass(frozen=True)
class ButtonJob:
    """What a spending button asks the service for."""

    kind: Literal["generate", "edit"]
    prompt: str
    options: ImageOptions
    # Where the images to edit come from: the job's own inputs (Again on an
    # edit) or the first image of the result the button is under (Vary, Bigger).
    source: Literal["none", "inputs", "result"]


def plan(action: Action, job: JobRecord, *, result_size: tuple[int, int] | None = None) -> ButtonJob:
    """Again: the same prompt and settings (for an edit, the same inputs).
    Vary and Bigger: one edit of the result's first image, with the job's
    quality and format; Bigger at the 2K-class size of the image's shape."""
    if action == "again":
        return ButtonJob(job.kind, job.prompt, job.options, "inputs" if job.kind == "edit" else "none")
    single = replace(job.options, n=1)
    if action == "vary":
        return ButtonJob("edit", VARY_INSTRUCTION, replace(single, size="auto"), "result")
    if action == "bigger":
        width, height = result_size or size_of(job.options.size)
        return ButtonJob("edit", BIGGER_INSTRUCTION, replace(single, size=bigger_size(width, height)), "result")
    raise ValueError(f"{action} runs no job by itself")


def _estimate(config: Config, options: ImageOptions, prompt: str, inputs: int) -> str:
    units = weighted_units(config, options)
    images = f"{units:g} image" + ("" if units == 1 else "s")
    try:
        usd = estimate_usd(config, route_model(config, options.model, options.background), options, prompt, inputs)
    except (InvalidInput, KeyError):
        return images
    return f"{images}, up to ${usd:.2f}"


def spend_note(config: Config, job: JobRecord) -> str:
    """What Again, Vary and Bigger will use, shown under the buttons before
    anyone clicks: counted against the clicker's own daily limit."""
    again = plan("again", job)
    vary = plan("vary", job)
    bigger = plan("bigger", job)
    inputs = job.input_images if job.kind == "edit" else 0
    return (
        f"Again: {_estimate(config, again.options, again.prompt, inputs)} · "
        f"Vary: {_estimate(config, vary.options, vary.prompt, 1)} · "
        f"Bigger ({bigger.options.size}): {_estimate(config, bigger.options, bigger.prompt, 1)}. "
        "gpt-image-2 has no upscaler, so Bigger re-draws the image larger. Buttons use the clicker's own daily limit."
    )


def result_note(config: Config, result: ImageResult, input_images: int) -> str:
    """`spend_note` for a result just made (`input_images`: how many images its edit used)."""
    record = JobRecord(
        job_id=result.job_id, kind=result.kind, requester_key=result.requester.key, prompt=result.prompt,
        options=result.options, status="succeeded", created_at=datetime.now(timezone.utc), input_images=input_images,
    )  # fmt: skip
    return spend_note(config, record)


def info_text(job: JobRecord, *, quote: Callable[[str], str] = lambda s: s) -> str:
    """Info (private): prompt, settings, model, tokens, cost, job id."""
    u = job.usage
    verb = "Edit" if job.kind == "edit" else "Prompt"
    inputs = f" of {job.input_images} image" + ("s" if job.input_images != 1 else "") if job.kind == "edit" else ""
    return "\n".join([
        f"{verb}{inputs}: “{quote(job.prompt)}”",
        f"Settings: {job.options.describe()}",
        f"Model: {job.model_used or 'default'}",
        f"Tokens: {u.input_text_tokens:,} text in · {u.input_image_tokens:,} image in · "
        f"{u.output_image_tokens:,} image out · {u.output_text_tokens:,} text out",
        f"Cost: ${job.cost_usd:.4f}",
        f"Status: {job.status} · {job.images} image" + ("s" if job.images != 1 else ""),
        f"Job id: {job.job_id} · made {job.created_at:%Y-%m-%d %H:%M} UTC",
    ])  # fmt: skip


def history_line(
    entry: HistoryEntry, *, when: Callable[[datetime], str], link: Callable[[Mapping[str, object]], str | None],
    quote: Callable[[str], str] = lambda s: s, prompt_chars: int = 80,
) -> str:  # fmt: skip
    """One job of /history: when, prompt, settings, status, cost, and a link
    to its result message where one exists."""
    job = entry.job
    prompt = job.prompt if len(job.prompt) <= prompt_chars else job.prompt[: prompt_chars - 1].rstrip() + "…"
    kind = "edit: " if job.kind == "edit" else ""
    parts = [when(job.created_at), f"{kind}“{quote(prompt)}”", job.options.describe(), job.status, f"${job.cost_usd:.3f}"]
    target = link(entry.result_ref) if entry.result_ref else None
    if target:
        parts.append(target)
    return " · ".join(parts)


def history_heading(entries: Sequence[HistoryEntry], *, whose: str = "Your") -> str:
    if not entries:
        return f"{whose} history is empty: nothing made yet."
    return f"{whose} last {len(entries)} job" + ("s" if len(entries) != 1 else "") + " (newest first):"


def not_yours_text(owner_mention: str) -> str:
    return f"Only {owner_mention} (who asked for these images) or an admin can delete them."


def deleted_text() -> str:
    return "Deleted. The images are gone from the channel; the job stays in your history."


def already_deleted_text() -> str:
    return "Those images were already deleted."


def job_gone_text() -> str:
    return "I can't find that image job any more, so that button can't be used. Please start a new request."


def inputs_gone_text() -> str:
    return (
        "I can't fetch the images that edit used any more (they were deleted, or uploaded with the command itself). "
        "Use Edit, Vary or Bigger on the result instead."
    )


def result_gone_text() -> str:
    return "Those images were deleted, so there is nothing to vary, enlarge or edit."
