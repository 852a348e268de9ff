"""The TOML config: read once, validated, passed in.

A config file names only what it changes; every other key keeps its default.
An unknown key or a wrong type is a ConfigError naming the file, the key and
what is expected, so an admin can fix it without reading code.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError, ImagineError


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens: the older `[pricing.models."<model>"]` spelling of a
    model's prices, still accepted (see ModelInfo)."""

    text_input: float
    cached_text_input: float
    image_input: float
    cached_image_input: float
    image_output: float
    text_output: float = 10.0


QUALITY_NAMES = ("low", "medium", "high", "xhigh", "max", "auto")
CLASSIC_QUALITIES = ("low", "medium", "high", "auto")


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the model catalog (`[models."<model>"]`): what it costs
    and what it can do. Built-in entries below; a config table overrides the
    keys it names and keeps the rest, so correcting a reported fact (a price,
    a quality, transparency, a shutdown date) never needs code."""

    # USD per 1M tokens. The Images API reports no cached tokens (openai 3.57's
    # ImagesResponse.usage has none), so the cached prices are kept for the
    # record and charge nothing today.
    text_input: float
    image_input: float
    image_output: float
    text_output: float = 10.0
    cached_text_input: float = 0.0
    cached_image_input: float = 0.0
    transparent: bool = False  # takes background = "transparent"
    qualities: tuple[str, ...] = CLASSIC_QUALITIES
    any_size: bool = True  # any WxH by gpt-image-2's rules; false = square, landscape, portrait, auto only
    max_input_images: int = 16  # per edit
    batch: bool = True  # the Batch API takes it
    shutdown_date: str = ""  # "YYYY-MM-DD" when known; the API's GET /models answer is checked too
    replacement: str = ""  # what to use instead once it shuts down


def _gpt_image_2_like(**facts: Any) -> ModelInfo:
    # OpenAI's published prices for gpt-image-2; 2.5/2.6 are reported to cost the same.
    return ModelInfo(text_input=5.00, cached_text_input=1.25, image_input=8.00, cached_image_input=2.00, image_output=30.00, **facts)


def _retired(shutdown_date: str, replacement: str, image_output: float, **prices: float) -> ModelInfo:
    base: dict[str, Any] = {"text_input": 5.00, "cached_text_input": 1.25, "image_input": 8.00, "cached_image_input": 2.00, **prices}
    return ModelInfo(image_output=image_output, transparent=True, any_size=False, shutdown_date=shutdown_date,
                     replacement=replacement, **base)  # fmt: skip


def _default_catalog() -> dict[str, ModelInfo]:
    # What is only reported by third parties (2.6's transparency, xhigh/max,
    # 2.5/2.6 prices) is data here, so an admin corrects it in config.
    new_qualities = ("low", "medium", "high", "xhigh", "max", "auto")
    return {
        "gpt-image-2": _gpt_image_2_like(),
        "gpt-image-2.5-flare": _gpt_image_2_like(transparent=True, qualities=new_qualities),
        "gpt-image-2.5-sunburst": _gpt_image_2_like(transparent=True, qualities=new_qualities),
        "gpt-image-2.6-flare": _gpt_image_2_like(transparent=True, qualities=new_qualities),
        "gpt-image-2.6-sunburst": _gpt_image_2_like(transparent=True, qualities=new_qualities),
        # Shut down (OpenAI's deprecations page), kept so that a config naming
        # them gets a clear answer and the replacement instead of a 404.
        "gpt-image-1.5": _retired("2026-12-01", "gpt-image-2.6-sunburst", 32.00),
        "chatgpt-image-latest": _retired("2026-12-01", "gpt-image-2.6-sunburst", 32.00),
        "gpt-image-1-mini": _retired("2026-12-01", "gpt-image-2.6-flare", 8.00, text_input=2.00, cached_text_input=0.20,
                                     image_input=2.50, cached_image_input=0.25),  # fmt: skip
        "gpt-image-1": _retired("2026-10-23", "gpt-image-2.5-sunburst", 40.00, image_input=10.00, cached_image_input=2.50),
    }


@dataclass(frozen=True)
class OpenAIConfig:
    model: str = "gpt-image-2"
    # gpt-image-1.5 until it shut down on 2026-12-01; "" = refuse transparent backgrounds
    transparent_model: str = "gpt-image-2.6-sunburst"
    allowed_models: tuple[str, ...] = ("gpt-image-2",)  # what `--model` may pick
    timeout_seconds: float = 300.0
    max_concurrent_calls: int = 4
    # The account's images per minute (tier 1: 5, tier 2: 20, ...); 0 = learn it
    # from 429s and rate-limit headers. Model calls are paced to it (core/pacer.py).
    images_per_minute: int = 0
    # A job still waiting for its turn after this long is refunded and its user told why.
    max_queue_wait_seconds: float = 600.0
    # The length of OpenAI's rate-limit window. Only tests and benchmarks change it
    # (to scale time down); the API's window is a minute.
    rate_window_seconds: float = 60.0
    # No longer used: a 429 rate_limit_exceeded is not retried in place any
    # more, the job waits in the paced queue. Kept so older configs still load.
    rate_limit_retries: int = 3
    max_retry_wait_seconds: float = 60.0
    server_error_retries: int = 1  # 5xx / connection refused; never timeouts (could bill twice)
    moderation: str = "auto"  # "auto" or "low": the API's moderation strictness


@dataclass(frozen=True)
class DefaultsConfig:
    size: str = "1024x1024"
    quality: str = "medium"
    n: int = 1
    format: str = "png"


@dataclass(frozen=True)
class LimitsConfig:
    timezone: str = "UTC"
    daily_images_per_user: int = 10
    max_images_per_request: int = 8
    max_jobs_in_flight_per_user: int = 2
    quality_weights: Mapping[str, float] = field(
        default_factory=lambda: {"low": 1, "medium": 1, "high": 4, "auto": 4, "xhigh": 6, "max": 8}
    )
    daily_budget_usd_per_workspace: float = 0.0
    daily_budget_usd_total: float = 0.0
    charge_policy_blocks: bool = False
    policy_blocks_before_cooldown: int = 3
    cooldown_minutes: int = 60
    roles: Mapping[str, int] = field(default_factory=dict)  # Discord role name or id -> daily images
    allow_2k: bool = True  # false = nothing larger than 1536x1024 (presets included)
    max_pixels: int = 8_294_400


@dataclass(frozen=True)
class PricingConfig:
    # The older spelling of the catalog's prices, still read: each table here
    # sets the prices of that model's catalog entry ([models."<model>"] keys win).
    models: Mapping[str, ModelPrice] = field(default_factory=dict)
    # Used only to reserve before the call (the charge comes from `usage`):
    # output image tokens of one 1024x1024 image per quality, scaled by
    # sqrt(pixels / 1024²) for other sizes. Round up: a reservation that is too
    # small lets a budget be overrun.
    output_tokens_1024: Mapping[str, int] = field(
        default_factory=lambda: {"low": 200, "medium": 1800, "high": 7100, "auto": 7100, "xhigh": 14200, "max": 28400}
    )
    input_image_tokens_per_edit_image: int = 1600


@dataclass(frozen=True)
class SlackConfig:
    progress_update_seconds: float = 5.0  # how often the placeholder's elapsed time is refreshed


@dataclass(frozen=True)
class DiscordConfig:
    allowed_guilds: tuple[str, ...] = ()  # empty = every server the bot is in
    disabled_channels: tuple[str, ...] = ()
    progress_update_seconds: float = 5.0


@dataclass(frozen=True)
class ServerConfig:
    shutdown_grace_seconds: float = 60.0  # running jobs may finish this long after SIGTERM
    max_background_tasks: int = 500
    # A process whose heartbeat is older than this is dead: a live one refunds
    # its jobs and tells their users. Beats come 4 times per timeout.
    heartbeat_timeout_seconds: float = 60.0


@dataclass(frozen=True)
class RelaxConfig:
    """Relax mode (`--relax`): the Batch API at half price, results when the batch completes."""

    enabled: bool = True
    flush_seconds: float = 60.0  # relax jobs are grouped into one batch this often
    poll_seconds: float = 60.0  # how often pending batches are checked
    daily_images_per_user: int = 20  # relax has its own allowance, beside the fast one


@dataclass(frozen=True)
class Config:
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    relax: RelaxConfig = field(default_factory=RelaxConfig)
    models: Mapping[str, ModelInfo] = field(default_factory=_default_catalog)  # the model catalog
    source: str = field(default="(built-in defaults)", compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.limits.timezone)


def load_config(path: str | Path | None) -> Config:
    """Read `path` (a missing default path means built-in defaults)."""
    if path is None:
        return Config()
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {p} does not exist. Create it or unset IMAGINEBOT_CONFIG.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"Config file {p} is not valid TOML: {e}") from None
    return config_from_mapping(raw, source=str(p))


def config_from_mapping(raw: Mapping[str, Any], *, source: str = "(mapping)") -> Config:
    rest = {k: v for k, v in raw.items() if k != "models"}
    cfg: Config = _build(Config, rest, source, prefix="")
    catalog = _build_catalog(raw.get("models", {}), cfg.pricing.models, source)
    cfg = dataclasses.replace(cfg, models=catalog, source=source)
    _check_semantics(cfg)
    return cfg


def _build_catalog(raw: Any, legacy_prices: Mapping[str, ModelPrice], source: str) -> dict[str, ModelInfo]:
    """Built-in entries, then `[pricing.models."<m>"]` prices (the older
    spelling), then `[models."<m>"]` keys: each layer changes only what it names."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [models] must be a table of models, got {_tname(raw)}.")
    catalog = _default_catalog()
    for model, price in legacy_prices.items():
        prices = dataclasses.asdict(price)
        base = catalog.get(model)
        catalog[model] = dataclasses.replace(base, **prices) if base is not None else ModelInfo(**prices)
    for model, table in raw.items():
        catalog[str(model)] = _build(ModelInfo, table, source, prefix=f'models."{model}".', base=catalog.get(str(model)))
    return catalog


def _build(cls: type, raw: Mapping[str, Any], source: str, prefix: str, base: Any = None) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] must be a table, got {_tname(raw)}.")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != "source"}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{source}: unknown key '{dotted}'. Known keys here: {known}.")
        values[key] = _convert(hints[key], value, source, dotted)
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if base is not None:
        return dataclasses.replace(base, **values)
    if missing:
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] is missing {', '.join(missing)}.")
    return cls(**values)


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, value, source, prefix=f"{key}.")
    if origin in (collections.abc.Mapping, dict):
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: '{key}' must be a table (like {{ name = value }}), got {_tname(value)}.")
        return {str(k): _convert(val_t, v, source, f"{key}.{k}") for k, v in value.items()}
    if origin is tuple:
        (item_t, _ellipsis) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{key}' must be a list, got {_tname(value)}.")
        return tuple(_convert(item_t, v, source, f"{key}[{i}]") for i, v in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise AssertionError(f"unsupported config type {hint}")  # keep config types simple
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: '{key}' must be true or false, got {_tname(value)}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: '{key}' must be a whole number, got {_tname(value)}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: '{key}' must be a number, got {_tname(value)}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f'{source}: \'{key}\' must be a string in quotes (like "text"), got {_tname(value)}.')
        return value
    raise AssertionError(f"unsupported config type {hint}")


def _tname(value: Any) -> str:
    return {bool: "true/false", int: "a whole number", float: "a number", str: "a string", list: "a list", dict: "a table"}.get(
        type(value), type(value).__name__
    ) + f" ({value!r})"


def _check_semantics(cfg: Config) -> None:
    src = cfg.source
    try:
        ZoneInfo(cfg.limits.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"{src}: 'limits.timezone' must be an IANA time zone like \"UTC\" or \"Europe/Paris\", got {cfg.limits.timezone!r}."
        ) from None
    positive = {
        "openai.timeout_seconds": cfg.openai.timeout_seconds,
        "openai.max_concurrent_calls": cfg.openai.max_concurrent_calls,
        "openai.max_queue_wait_seconds": cfg.openai.max_queue_wait_seconds,
        "openai.rate_window_seconds": cfg.openai.rate_window_seconds,
        "limits.max_images_per_request": cfg.limits.max_images_per_request,
        "limits.max_jobs_in_flight_per_user": cfg.limits.max_jobs_in_flight_per_user,
        "limits.policy_blocks_before_cooldown": cfg.limits.policy_blocks_before_cooldown,
        "server.heartbeat_timeout_seconds": cfg.server.heartbeat_timeout_seconds,
        "relax.flush_seconds": cfg.relax.flush_seconds,
        "relax.poll_seconds": cfg.relax.poll_seconds,
    }
    for key, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{src}: '{key}' must be greater than 0, got {v}.")
    non_negative = {
        "openai.images_per_minute": cfg.openai.images_per_minute,
        "limits.daily_images_per_user": cfg.limits.daily_images_per_user,
        "limits.daily_budget_usd_per_workspace": cfg.limits.daily_budget_usd_per_workspace,
        "limits.daily_budget_usd_total": cfg.limits.daily_budget_usd_total,
        "limits.cooldown_minutes": cfg.limits.cooldown_minutes,
        "relax.daily_images_per_user": cfg.relax.daily_images_per_user,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise ConfigError(f"{src}: '{key}' must be 0 or more, got {v}.")
    if not 1 <= cfg.limits.max_images_per_request <= 10:
        raise ConfigError(f"{src}: 'limits.max_images_per_request' must be between 1 and 10 (the API's maximum).")
    for q in ("low", "medium", "high"):
        if q not in cfg.limits.quality_weights:
            raise ConfigError(f"{src}: 'limits.quality_weights' must give a weight for '{q}'.")
    _check_catalog(cfg)
    if cfg.openai.moderation not in ("auto", "low"):
        raise ConfigError(f"{src}: 'openai.moderation' must be \"auto\" or \"low\", got {cfg.openai.moderation!r}.")
    if cfg.defaults.quality not in QUALITY_NAMES:
        raise ConfigError(f"{src}: 'defaults.quality' must be one of {', '.join(QUALITY_NAMES)}.")
    if cfg.defaults.format not in ("png", "jpeg", "webp"):
        raise ConfigError(f"{src}: 'defaults.format' must be one of png, jpeg, webp.")
    if not 1 <= cfg.defaults.n <= cfg.limits.max_images_per_request:
        raise ConfigError(f"{src}: 'defaults.n' must be between 1 and limits.max_images_per_request.")
    _check_default_size(cfg)


def _check_default_size(cfg: Config) -> None:
    """A default size the model refuses would refuse every request without --size."""
    from core.options import normalize_size  # core.options imports this module

    try:
        normalize_size(cfg.defaults.size, cfg)
    except ImagineError as e:
        raise ConfigError(f"{cfg.source}: 'defaults.size' = {cfg.defaults.size!r} can't be used: {e.user_message}") from None


def _check_catalog(cfg: Config) -> None:
    """Every model the config names has a catalog entry that fits its role."""
    src = cfg.source
    for model, info in cfg.models.items():
        key = f'models."{model}"'
        bad = [q for q in info.qualities if q not in QUALITY_NAMES]
        if bad or not info.qualities:
            raise ConfigError(f"{src}: '{key}.qualities' must list some of {', '.join(QUALITY_NAMES)}, got {list(info.qualities)}.")
        if info.shutdown_date and not _is_date(info.shutdown_date):
            raise ConfigError(f"{src}: '{key}.shutdown_date' must be a date like \"2026-12-01\" (or \"\" for none), got {info.shutdown_date!r}.")
        if not 1 <= info.max_input_images <= 16:
            raise ConfigError(f"{src}: '{key}.max_input_images' must be between 1 and 16, got {info.max_input_images}.")
    named = [("openai.model", cfg.openai.model)]
    if cfg.openai.transparent_model:
        named.append(("openai.transparent_model", cfg.openai.transparent_model))
    named += [("openai.allowed_models", m) for m in cfg.openai.allowed_models]
    for key, model in named:
        if model not in cfg.models:
            raise ConfigError(
                f"{src}: no catalog entry (so no price) for model '{model}' ({key}). Add a [models.\"{model}\"] table "
                "with at least text_input, image_input and image_output (USD per 1M tokens); known models: "
                f"{', '.join(cfg.models)}."
            )
    transparent = cfg.openai.transparent_model
    if transparent and not cfg.models[transparent].transparent:
        raise ConfigError(
            f"{src}: 'openai.transparent_model' is {transparent!r}, which does not take transparent backgrounds "
            f"(models.\"{transparent}\".transparent = false). Pick a model that does, like gpt-image-2.6-sunburst, "
            "or set transparent_model = \"\" to refuse transparent backgrounds."
        )


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10
