"""What a call costs: estimated before (to reserve against budgets) and
computed after from the response's `usage` with the model catalog's prices."""

from __future__ import annotations

import math

from core.config import Config, ModelInfo
from core.models import ImageOptions, Usage

_PER_TOKEN = 1 / 1_000_000
# Output tokens grow a little faster than sqrt(pixels): per OpenAI's published token counts, 2048x2048
# high is 14,272 tokens, 2.03 × the 7,024 of 1024x1024. The reservation must
# never be below the charge (a budget would be overrun), so it gets headroom.
_ESTIMATE_HEADROOM = 1.10


def cost_usd(price: ModelInfo, usage: Usage) -> float:
    """The charge for one response, at the full token rates: the Images API
    reports no cached tokens (see README, Pricing)."""
    usd = (
        usage.input_text_tokens * price.text_input
        + usage.input_image_tokens * price.image_input
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
    real usage is known: an upper bound of every known charge (tests/core/test_pricing.py)."""
    price = config.models[model]
    per_image = config.pricing.output_tokens_1024.get(options.quality, max(config.pricing.output_tokens_1024.values()))
    scale = max(1.0, math.sqrt(_pixels(options.size) / (1024 * 1024)))
    output_tokens = math.ceil(per_image * scale * _ESTIMATE_HEADROOM) * options.n
    text_tokens = len(prompt.encode("utf-8")) + 1  # never more than one token per byte
    image_tokens = input_images * config.pricing.input_image_tokens_per_edit_image
    usage = Usage(input_text_tokens=text_tokens, input_image_tokens=image_tokens, output_image_tokens=output_tokens)
    return cost_usd(price, usage)


def weighted_units(config: Config, options: ImageOptions) -> float:
    """Images counted against the daily limit: n × the quality's weight."""
    weights = config.limits.quality_weights
    weight = weights.get(options.quality, max(weights.values()))
    return float(weight) * options.n
