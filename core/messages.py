"""Everything the bot says to people, in one place, in plain words.

Each text says what happened and what to do next. No internals: no status
codes, no exception text, no request ids — only our own job id, which an
admin can look up in the database.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Sequence

from core.models import ImageResult, Progress, QuotaStatus


def format_duration(delta: timedelta) -> str:
    minutes = max(1, int(delta.total_seconds() + 59) // 60)
    hours, minutes = divmod(minutes, 60)
    if hours and minutes:
        return f"{hours} h {minutes} min"
    if hours:
        return f"{hours} h"
    return f"{minutes} min"


def format_clock(at: datetime) -> str:
    """“00:00 UTC” — in the configured zone, which `at` already carries."""
    return f"{at:%H:%M} {at.tzname()}"


def when(at: datetime, now: datetime) -> str:
    return f"{format_clock(at)} (in {format_duration(at - now)})"


def _images(n: float) -> str:
    n_text = f"{n:g}"
    return f"{n_text} image" + ("" if n == 1 else "s")


def limit_reached(used: float, limit: int, units: float, resets_at: datetime, now: datetime) -> str:
    if limit == 0:
        return "Image generation isn't enabled for you here. Ask an admin if you think it should be."
    left = max(0.0, limit - used)
    if left <= 0:
        head = f"You've used all {_images(limit)} of your daily limit."
    else:
        head = f"That request needs {_images(units)} of your daily limit, but you have {_images(left)} left."
        head += " Try fewer images or a lower quality."
    return f"{head} Nothing was charged. Your limit resets at {when(resets_at, now)}."


def budget_exhausted(scope: str, resets_at: datetime, now: datetime) -> str:
    where = "this workspace's" if scope == "workspace" else "the bot's"
    return (
        f"Today's image budget for {where} spending has been reached, so I can't make more images right now. "
        f"Nothing was charged. The budget resets at {when(resets_at, now)}, or an admin can raise it."
    )


def too_many_jobs(limit: int) -> str:
    return (
        f"You already have {limit} image job" + ("s" if limit != 1 else "")
        + " running. Wait for one to finish, then try again. Nothing was charged."
    )


def cooling_down(until: datetime, now: datetime) -> str:
    return (
        "Several of your recent prompts were blocked by OpenAI's safety system, so image requests are paused "
        f"for you until {when(until, now)}. Nothing was charged."
    )


def policy_blocked(
    stage: str, categories: Sequence[str], *, charged: bool, cooldown_until: datetime | None = None, now: datetime | None = None
) -> str:
    if stage == "output":
        head = "The image was generated, but OpenAI's safety system blocked it before it could be shown."
    else:
        head = "OpenAI's safety system blocked this prompt."
    if categories:
        head += " It was flagged for: " + ", ".join(c.replace("_", " ").replace("/", " / ") for c in categories) + "."
    charge = "It counted against your daily limit." if charged else "Nothing was charged."
    advice = "Try rephrasing: describe the scene without that content, and avoid real people's names or explicit details."
    text = f"{head} {charge} {advice}"
    if cooldown_until is not None and now is not None:
        text += f" Because of repeated blocks, requests are paused for you until {when(cooldown_until, now)}."
    return text


def not_admin(platform: str) -> str:
    who = "workspace admins" if platform == "slack" else "members with the Manage Server permission"
    return f"Only {who} can do that."


def rate_limited() -> str:
    return "The image service is busy right now (too many images per minute). Nothing was charged. Please try again in a minute."


def queue_timeout(waited_seconds: float, images_per_minute: float) -> str:
    return (
        f"Your image waited {_about(waited_seconds)} in line without its turn: the bot's "
        f"OpenAI account can make only {images_per_minute:g} images a minute, and many people are asking right now. "
        "Nothing was charged. Please try again later."
    )


def above_rate_limit(n: int, images_per_minute: float) -> str:
    return (
        f"This request asks for {_images(n)} at once, but the bot's OpenAI account can make only "
        f"{_images(images_per_minute)} a minute. Ask for {images_per_minute:g} or fewer. Nothing was charged."
    )


def pace_text(
    images_per_minute: float, *, configured: bool, exact: bool, used: int, waiting: int, running: int, paused_for: float
) -> str:
    """What an admin sees of the pace (`/imagine-admin pace`)."""
    if configured:
        how = "as configured ([openai] images_per_minute)"
    elif exact:
        how = "learned from OpenAI's own answers"
    else:
        how = "a guess that grows while calls succeed (learning; [openai] images_per_minute = 0)"
    lines = [
        f"Pace: {images_per_minute:g} images a minute, {how}.",
        f"Used in the last minute: {_images(used)}.",
        f"Here: {waiting} job" + ("" if waiting == 1 else "s") + f" waiting in line, {running} running.",
    ]
    if paused_for > 0:
        lines.append(f"OpenAI asked for a pause: calls resume in {paused_for:.0f} s.")
    return "\n".join(lines)


def out_of_credit() -> str:
    return (
        "The bot's OpenAI account is out of credit, so no images can be made. Nothing was charged. "
        "Please tell an admin: they need to add credit or raise the spending limit in the OpenAI billing settings."
    )


def not_allowed(verification: bool) -> str:
    if verification:
        return (
            "The bot's OpenAI organization isn't verified for this image model yet. Nothing was charged. "
            "Please tell an admin: they can verify the organization in the OpenAI settings (Organization → General → Verify)."
        )
    return (
        "The bot's OpenAI key was refused. Nothing was charged. Please tell an admin: they should check "
        "OPENAI_API_KEY and run `imaginebot doctor`."
    )


def model_unavailable() -> str:
    return (
        "The image model configured for this bot isn't available to its OpenAI account. Nothing was charged. "
        "Please tell an admin: they should check [openai] model in the config and run `imaginebot doctor`."
    )


def model_shut_down(model: str, on: str, replacement: str, *, transparent: bool) -> str:
    """A model OpenAI shut down: said before any call when the bot knows it,
    or after the API answered 404 for it (refunded either way)."""
    when_text = f" on {on}" if on else ""
    fix = f"switch the bot to {replacement}" if replacement else "pick another model"
    if transparent:
        return (
            f"Transparent backgrounds aren't available right now: OpenAI shut down {model}, the model that makes them"
            f"{when_text}. Nothing was charged. Please tell an admin: they should {fix} (`imaginebot doctor` says how). "
            "Meanwhile, leave out --background transparent."
        )
    return (
        f"I can't make images with {model} any more: OpenAI shut it down{when_text}. Nothing was charged. "
        f"Please tell an admin: they should {fix} (`imaginebot doctor` says how)."
    )


def invalid_request(reason: str) -> str:
    return f"OpenAI couldn't take this request: {reason} Nothing was charged."


def timed_out(seconds: float) -> str:
    return (
        f"The image took longer than {seconds:g} seconds and was cancelled. Nothing was charged. "
        "Try again, perhaps with a lower quality or fewer images."
    )


def unavailable() -> str:
    return "The image service isn't answering right now. Nothing was charged. Please try again in a few minutes."


def ledger_unavailable() -> str:
    return (
        "I can't record image jobs right now (the bot's database isn't taking writes), so I didn't start this one. "
        "Nothing was charged. Please try again later, and tell an admin if it keeps happening."
    )


def shutting_down() -> str:
    return "The bot is restarting. Nothing was charged. Please try again in a minute."


def interrupted() -> str:
    return "Your image job was interrupted because the bot restarted. Nothing was charged. Please try again."


def unexpected_error_text(job_id: str) -> str:
    return f"Sorry, something went wrong on my side and no images were made. Nothing was charged. (Reference: {job_id})"


def limit_set(who: str, daily: int | None) -> str:
    """`who` as the platform shows it: a user or "Members of <role>"."""
    if daily is None:
        return f"{who} is back to the default daily limit."
    return f"{who} can now make {_images(daily)} a day."


def user_reset(who: str) -> str:
    return f"Today's usage of {who} is forgiven and any cool-down is lifted."


def budget_set(usd: float, place: str) -> str:
    """`place` is "workspace" (Slack) or "server" (Discord)."""
    if usd == 0:
        return f"This {place} no longer has a daily image budget."
    return f"This {place}'s daily image budget is now ${usd:,.2f}."


def quota_text(status: QuotaStatus, *, reset_display: str) -> str:
    """`reset_display` is the reset time as the platform shows it best (a
    Discord timestamp, a Slack date token, or plain text)."""
    lines = [
        f"You've used {_images(status.used)} of {status.limit} today; {_images(status.remaining)} left.",
        f"Your limit resets {reset_display}.",
    ]
    if status.relax_limit:
        lines.append(f"Relax mode (half price, results later): {_images(status.relax_used)} of {status.relax_limit} used today; "
                     f"{_images(status.relax_remaining)} left.")  # fmt: skip
    if status.in_flight:
        lines.append(f"{status.in_flight} job" + (" is" if status.in_flight == 1 else "s are") + " running now.")
    if status.cooldown_until is not None:
        lines.append(f"Requests are paused for you until {format_clock(status.cooldown_until)} after repeated safety blocks.")
    if status.workspace_budget_usd:
        lines.append(
            f"This workspace has spent ${status.workspace_spent_usd:.2f} of its ${status.workspace_budget_usd:.2f} daily budget."
        )
    return "\n".join(lines)


def result_caption(result: ImageResult, *, mention: str) -> str:
    verb = "asked for" if result.kind == "generate" else "asked to edit with"
    return f"{mention} {verb}: “{result.prompt}”\n{result.options.describe()}"


def _about(seconds: float) -> str:
    if seconds < 60:
        return f"{max(1, round(seconds))} s" if seconds < 10 else f"{round(seconds / 5) * 5} s"
    return format_duration(timedelta(seconds=seconds))


def progress_text(progress: Progress) -> str:
    if progress.state == "queued":
        pos = progress.position or 1
        text = "Waiting for a free slot — you're next…" if pos == 1 else f"Waiting in line — position {pos}…"
        if progress.wait_seconds is not None and progress.wait_seconds >= 1:
            text += f" (about {_about(progress.wait_seconds)})"
        return text
    return f"Generating… {int(progress.elapsed_seconds)} s"
