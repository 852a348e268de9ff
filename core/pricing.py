"""What a call costs: estimated before (to reserve against budgets) and
computed after from the response's `usage` with the config's price table."""

from __future__ import annotations

import math

from core.config import Config, ModelPrice
from core.models import ImageOptions, Usage

_PER_TOKEN = 1 / 1_000_000


def cost_usd(price: ModelPrice, usage: Usage) -> float:
    """The charge for one response. Cached tokens are part of the input
    counts and billed at the cached rate instead of the full one."""
    text_full = max(0, usage.input_text_tokens - usage.cached_text_tokens)
    image_full = max(0, usage.input_image_tokens - usage.cached_image_tokens)
    usd = (
        text_full * price.text_input
        + usage.cached_text_tokens * price.cached_text_input
        + image_full * price.image_input
        + usage.cached_image_tokens * price.cached_image_input
        + usage.output_image_tokens * price.image_output
        + usage.output_text_tokens * price.text_output
    ) * _PER_TOKEN
    return round(usd, 6)


def _pixels(size: str) -> int:
    if size == "auto":
        return 1536 * 1024  # the largest size "auto" picks
    w, h = size.split("x")
    return int(w) * int(h)


def estimate_usd(config: Config, model: str, options: ImageOptions, prompt: str, input_images: int = 0) -> float:
    """A deliberately generous estimate, reserved against budgets until the
    real usage is known."""
    price = config.pricing.models[model]
    per_image = config.pricing.output_tokens_1024.get(options.quality, max(config.pricing.output_tokens_1024.values()))
    scale = max(1.0, math.sqrt(_pixels(options.size) / (1024 * 1024)))
    output_tokens = math.ceil(per_image * scale) * options.n
    text_tokens = len(prompt.encode("utf-8")) // 2 + 1  # a token is ~4 bytes; halve for slack
    image_tokens = input_images * config.pricing.input_image_tokens_per_edit_image
    usage = Usage(input_text_tokens=text_tokens, input_image_tokens=image_tokens, output_image_tokens=output_tokens)
    return cost_usd(price, usage)


def weighted_units(config: Config, options: ImageOptions) -> float:
    """Images counted against the daily limit: n × the quality's weight."""
    weights = config.limits.quality_weights
    weight = weights.get(options.quality, max(weights.values()))
    return float(weight) * options.n
