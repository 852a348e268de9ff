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
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.errors import ConfigError


@dataclass(frozen=True)
class ModelPrice:
    """USD per 1M tokens."""

    text_input: float
    cached_text_input: float
    image_input: float
    cached_image_input: float
    image_output: float
    text_output: float = 10.0


def _default_prices() -> dict[str, ModelPrice]:
    # SPEC §1 for gpt-image-2; gpt-image-1.5 from OpenAI's pricing page. Text
    # output tokens are rare for image models; priced like gpt-image-1's.
    return {
        "gpt-image-2": ModelPrice(5.00, 1.25, 8.00, 2.00, 30.00),
        "gpt-image-1.5": ModelPrice(5.00, 1.25, 8.00, 2.00, 32.00),
    }


@dataclass(frozen=True)
class OpenAIConfig:
    model: str = "gpt-image-2"
    transparent_model: str = "gpt-image-1.5"  # "" = refuse transparent backgrounds
    timeout_seconds: float = 300.0
    max_concurrent_calls: int = 4
    rate_limit_retries: int = 3  # 429 rate_limit_exceeded only, honouring Retry-After
    max_retry_wait_seconds: float = 60.0  # a Retry-After longer than this is not waited for
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
        default_factory=lambda: {"low": 1, "medium": 1, "high": 4, "auto": 4}
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
    # Merged over the built-in table: a file that prices one model (say, a new
    # one) must not silently drop the prices of the others it still uses.
    models: Mapping[str, ModelPrice] = field(default_factory=_default_prices, metadata={"merge_with_default": True})
    # Used only to reserve before the call (the charge comes from `usage`):
    # output image tokens of one 1024x1024 image per quality, scaled by
    # sqrt(pixels / 1024²) for other sizes. Round up: a reservation that is too
    # small lets a budget be overrun.
    output_tokens_1024: Mapping[str, int] = field(
        default_factory=lambda: {"low": 200, "medium": 1800, "high": 7100, "auto": 7100}
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


@dataclass(frozen=True)
class Config:
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    defaults: DefaultsConfig = field(default_factory=DefaultsConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    pricing: PricingConfig = field(default_factory=PricingConfig)
    slack: SlackConfig = field(default_factory=SlackConfig)
    discord: DiscordConfig = field(default_factory=DiscordConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
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
    cfg = _build(Config, {k: v for k, v in raw.items()}, source, prefix="")
    cfg = dataclasses.replace(cfg, source=source)
    _check_semantics(cfg)
    return cfg


def _build(cls: type, raw: Mapping[str, Any], source: str, prefix: str) -> Any:
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
        factory = fields[key].default_factory
        if fields[key].metadata.get("merge_with_default") and callable(factory):
            values[key] = {**factory(), **values[key]}
    missing = [
        name
        for name, f in fields.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{source}: [{prefix.rstrip('.')}] is missing {', '.join(missing)}.")
    return cls(**values)


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
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
        "limits.max_images_per_request": cfg.limits.max_images_per_request,
        "limits.max_jobs_in_flight_per_user": cfg.limits.max_jobs_in_flight_per_user,
        "limits.policy_blocks_before_cooldown": cfg.limits.policy_blocks_before_cooldown,
    }
    for key, v in positive.items():
        if v <= 0:
            raise ConfigError(f"{src}: '{key}' must be greater than 0, got {v}.")
    non_negative = {
        "limits.daily_images_per_user": cfg.limits.daily_images_per_user,
        "limits.daily_budget_usd_per_workspace": cfg.limits.daily_budget_usd_per_workspace,
        "limits.daily_budget_usd_total": cfg.limits.daily_budget_usd_total,
        "limits.cooldown_minutes": cfg.limits.cooldown_minutes,
    }
    for key, v in non_negative.items():
        if v < 0:
            raise ConfigError(f"{src}: '{key}' must be 0 or more, got {v}.")
    if not 1 <= cfg.limits.max_images_per_request <= 10:
        raise ConfigError(f"{src}: 'limits.max_images_per_request' must be between 1 and 10 (the API's maximum).")
    for q in ("low", "medium", "high"):
        if q not in cfg.limits.quality_weights:
            raise ConfigError(f"{src}: 'limits.quality_weights' must give a weight for '{q}'.")
    if cfg.openai.model not in cfg.pricing.models:
        raise ConfigError(
            f"{src}: no price for model '{cfg.openai.model}' (openai.model). Add a [pricing.models.\"{cfg.openai.model}\"] table "
            "with text_input, cached_text_input, image_input, cached_image_input and image_output (USD per 1M tokens)."
        )
    if cfg.openai.transparent_model and cfg.openai.transparent_model not in cfg.pricing.models:
        raise ConfigError(
            f"{src}: no price for model '{cfg.openai.transparent_model}' (openai.transparent_model). Add a "
            f"[pricing.models.\"{cfg.openai.transparent_model}\"] table with text_input, cached_text_input, image_input, "
            "cached_image_input and image_output (USD per 1M tokens), or set transparent_model = \"\" to refuse transparent backgrounds."
        )
    if cfg.openai.moderation not in ("auto", "low"):
        raise ConfigError(f"{src}: 'openai.moderation' must be \"auto\" or \"low\", got {cfg.openai.moderation!r}.")
    if cfg.defaults.quality not in ("low", "medium", "high", "auto"):
        raise ConfigError(f"{src}: 'defaults.quality' must be one of low, medium, high, auto.")
    if cfg.defaults.format not in ("png", "jpeg", "webp"):
        raise ConfigError(f"{src}: 'defaults.format' must be one of png, jpeg, webp.")
    if not 1 <= cfg.defaults.n <= cfg.limits.max_images_per_request:
        raise ConfigError(f"{src}: 'defaults.n' must be between 1 and limits.max_images_per_request.")
