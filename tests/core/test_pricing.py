"""What a call costs: the reservation made before the call must never be
smaller than what the API then bills, for every token count SPEC §1 lists."""

from __future__ import annotations

import pytest

from core.config import Config
from core.models import ImageOptions, Usage
from core.pricing import cost_usd, estimate_usd

# SPEC §1: known output-image token counts for gpt-image-2, per image.
KNOWN_OUTPUT_TOKENS = [
    ("1024x1024", "low", 196),
    ("1024x1024", "high", 7_024),
    ("1536x1024", "high", 5_488),
    ("2048x2048", "high", 14_272),
]
PROMPT = "a red fox in the snow"


@pytest.mark.parametrize(("size", "quality", "tokens"), KNOWN_OUTPUT_TOKENS)
@pytest.mark.parametrize("n", [1, 8])
def test_estimate_is_an_upper_bound_of_every_known_charge(size: str, quality: str, tokens: int, n: int) -> None:
    config = Config()
    price = config.models["gpt-image-2"]
    # Text tokens are at most one per byte of the prompt (usually a quarter).
    billed = cost_usd(price, Usage(input_text_tokens=len(PROMPT.encode()), output_image_tokens=tokens * n))
    estimate = estimate_usd(config, "gpt-image-2", ImageOptions(size=size, quality=quality, n=n), PROMPT)
    assert estimate >= billed, f"{size} {quality} ×{n}: reserved ${estimate:.4f}, billed ${billed:.4f}"


def test_the_2k_high_charge_of_the_issue() -> None:
    # Issue 8 item 7: $0.4260 reserved against $0.4283 billed.
    config = Config()
    billed = cost_usd(config.models["gpt-image-2"], Usage(input_text_tokens=6, output_image_tokens=14_272))
    assert billed == pytest.approx(0.42819, abs=1e-4)
    assert estimate_usd(config, "gpt-image-2", ImageOptions(size="2048x2048", quality="high"), PROMPT) >= billed
