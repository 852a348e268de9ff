"""The plain data that crosses the line between the adapters and the core.

Everything here is frozen: a request or a result, once made, is a fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Awaitable, Callable, Literal, Mapping

# Named by the adapters ("slack", "discord", the CLI's "cli"): the core keeps no closed list.
Platform = str
JobKind = Literal["generate", "edit"]


@dataclass(frozen=True)
class RequesterKey:
    """The key limits are kept on: platform:workspace:user. Built and taken
    apart only here, so the format cannot drift between the places that use it."""

    platform: str
    workspace: str
    user: str

    @classmethod
    def parse(cls, key: str) -> RequesterKey:
        platform, _, rest = key.partition(":")
        workspace, _, user = rest.partition(":")
        return cls(platform, workspace, user)

    @property
    def workspace_key(self) -> str:
        return f"{self.platform}:{self.workspace}"

    def __str__(self) -> str:
        return f"{self.platform}:{self.workspace}:{self.user}"


@dataclass(frozen=True)
class Requester:
    """Who asked, and where. Limits are keyed on `key`, which includes the
    platform and the workspace/server so that the same user id on two
    platforms or in two workspaces never shares a quota."""

    platform: Platform
    workspace: str  # Slack team id, Discord guild id ("dm" outside a guild), "local" for the CLI
    user: str
    channel: str = ""
    display_name: str = ""
    roles: tuple[str, ...] = ()  # Discord role ids and names, for per-role limits
    is_admin: bool = False  # workspace admin (Slack) / Manage Server (Discord)

    @property
    def key(self) -> str:
        return str(RequesterKey(self.platform, self.workspace, self.user))

    @property
    def workspace_key(self) -> str:
        return RequesterKey(self.platform, self.workspace, self.user).workspace_key


@dataclass(frozen=True)
class ImageOptions:
    """Settings of one request, already validated (see core.options)."""

    size: str = "1024x1024"
    quality: str = "medium"
    n: int = 1
    format: str = "png"
    background: str = "auto"
    compression: int | None = None  # 0-100, jpeg/webp only
    model: str = ""  # picked with --model (one of openai.allowed_models); "" = the server's routing
    # Nobody asked for this size: it is [defaults] size. An edit then asks
    # for "auto", which keeps the first input's shape (ImageService.edit).
    size_from_defaults: bool = field(default=False, compare=False, repr=False)
    relax: bool = False  # --relax: through the Batch API at half price, delivered when the batch completes

    def describe(self) -> str:
        parts = [self.size, f"{self.quality} quality", f"{self.n} image" + ("s" if self.n != 1 else ""), self.format]
        if self.background != "auto":
            parts.append(f"{self.background} background")
        if self.model:
            parts.append(self.model)
        return " · ".join(parts)


@dataclass(frozen=True)
class InputImage:
    """An uploaded image that passed the checks in core.images."""

    data: bytes
    filename: str
    mime: str
    width: int
    height: int
    has_alpha: bool = False


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes
    filename: str
    mime: str


@dataclass(frozen=True)
class Usage:
    """Token counts as the API reported them: the fields of the pinned SDK's
    ImagesResponse.usage (openai 3.57), which has no cached-token counts."""

    input_text_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    output_text_tokens: int = 0


@dataclass(frozen=True)
class ImageResult:
    job_id: str
    kind: JobKind
    requester: Requester
    prompt: str
    options: ImageOptions
    images: tuple[GeneratedImage, ...]
    model: str
    usage: Usage
    cost_usd: float
    elapsed_seconds: float


@dataclass(frozen=True)
class Progress:
    """Reported while a job waits for a model slot and while it runs."""

    job_id: str
    state: Literal["queued", "running"]
    position: int | None  # 1 = next to run; None while running
    elapsed_seconds: float
    wait_seconds: float | None = None  # while queued: the estimated wait, when known


ProgressCallback = Callable[[Progress], Awaitable[None]]


@dataclass(frozen=True)
class PaceReport:
    """What an admin sees of the pace (`/imagine-admin pace`, /metrics)."""

    images_per_minute: float  # the budget model calls are paced to
    configured: bool  # [openai] images_per_minute set, not learned
    exact: bool  # configured, or read from OpenAI's own answer
    used: int  # images granted in the current minute, across every process
    paused_for: float  # seconds OpenAI asked us to wait, still to go
    waiting: int  # jobs in line in this process
    running: int  # model calls running in this process

    def text(self) -> str:
        from core.messages import pace_text  # core.messages imports this module

        return pace_text(self.images_per_minute, configured=self.configured, exact=self.exact, used=self.used,
                         waiting=self.waiting, running=self.running, paused_for=self.paused_for)  # fmt: skip


@dataclass(frozen=True)
class QuotaStatus:
    requester_key: str
    used: float  # weighted images today (reserved and settled)
    limit: int
    in_flight: int
    resets_at: datetime  # next midnight in the configured time zone
    cooldown_until: datetime | None = None
    workspace_budget_usd: float = 0.0  # 0 = no budget
    workspace_spent_usd: float = 0.0
    relax_used: float = 0.0  # relax mode's own allowance: images today
    relax_limit: int = 0  # 0 = relax mode is off

    @property
    def remaining(self) -> float:
        return max(0.0, self.limit - self.used)

    @property
    def relax_remaining(self) -> float:
        return max(0.0, self.relax_limit - self.relax_used)


@dataclass(frozen=True)
class InterruptedJob:
    """A job a previous process never finished: refunded at start-up, its
    user still to be told where the platform allows it (`notify`)."""

    job_id: str
    requester_key: str
    kind: JobKind
    prompt: str
    notify: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Upload:
    """An attachment as downloaded by an adapter, not yet checked: the core
    sniffs the real format from the bytes (core.images)."""

    filename: str
    data: bytes
    content_type: str = ""


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: enough to run it "Again" after a restart."""

    job_id: str
    kind: JobKind
    requester_key: str
    prompt: str
    options: ImageOptions
    status: str
    created_at: datetime
    cost_usd: float = 0.0
    error_code: str | None = None
    model_used: str = ""  # the model that made (or was to make) the images
    usage: Usage = Usage()
    images: int = 0  # images made
    input_images: int = 0


@dataclass(frozen=True)
class HistoryEntry:
    """One line of /history: the job, and where its images are (a platform
    reference; None when they were never posted or have been deleted)."""

    job: JobRecord
    result_ref: Mapping[str, Any] | None
