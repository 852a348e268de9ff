"""Making every result fit Discord's upload limit.

First choice: ask the API for a format and compression that will fit
(before generating), so the image keeps its provenance metadata (C2PA).
Last resort, for a file that still does not fit: re-encode it here and say so
— never a failed upload after the user's quota was spent.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass

from PIL import Image

from core.models import GeneratedImage, ImageOptions

DEFAULT_LIMIT = 10 * 1024 * 1024
MAX_FILES_PER_MESSAGE = 10

# Bytes per pixel the model's output takes, measured on busy photographic
# images (the worst usual case); flat illustrations are far smaller.
PNG_BYTES_PER_PIXEL = 2.2
# JPEG/WebP at a given output_compression (higher = better quality, bigger).
LOSSY_BYTES_PER_PIXEL = ((95, 0.9), (85, 0.5), (75, 0.35), (60, 0.25), (45, 0.18))
# Leave room for the estimate being optimistic.
HEADROOM = 0.85
# The size the model returns for "auto": assume the largest classic size.
AUTO_PIXELS = 1536 * 1024


def pixels_of(size: str) -> int:
    if "x" not in size:
        return AUTO_PIXELS
    w, h = size.split("x", 1)
    return int(w) * int(h)


def options_for_limit(options: ImageOptions, limit: int) -> tuple[ImageOptions, str | None]:
    """Options whose files should fit in `limit` bytes each, and a note for
    the user when they differ from what was asked."""
    budget = limit * HEADROOM
    pixels = pixels_of(options.size)
    if options.format == "png":
        if pixels * PNG_BYTES_PER_PIXEL <= budget:
            return options, None
        if options.background == "transparent":
            # Only PNG and WebP keep transparency.
            fitted = dataclasses.replace(options, format="webp", compression=_compression_for(pixels, budget))
        else:
            fitted = dataclasses.replace(options, format="jpeg", compression=_compression_for(pixels, budget))
        mb = limit / 1024 / 1024
        return fitted, f"Asked for {fitted.format.upper()} instead of PNG so each file fits Discord's {mb:g} MB upload limit."
    asked = 100 if options.compression is None else options.compression  # the API's default is 100
    if _lossy_estimate(pixels, asked) <= budget:
        return options, None
    return dataclasses.replace(options, compression=_compression_for(pixels, budget)), None


def _lossy_estimate(pixels: int, compression: int) -> float:
    for level, bpp in LOSSY_BYTES_PER_PIXEL:
        if compression >= level:
            return pixels * bpp
    return pixels * LOSSY_BYTES_PER_PIXEL[-1][1]


def _compression_for(pixels: int, budget: float) -> int:
    for level, bpp in LOSSY_BYTES_PER_PIXEL:
        if pixels * bpp <= budget:
            return level
    return LOSSY_BYTES_PER_PIXEL[-1][0]


@dataclass(frozen=True)
class FittedImage:
    image: GeneratedImage
    note: str | None = None


def fit_image(image: GeneratedImage, limit: int, *, label: str = "") -> FittedImage:
    """The image itself if it fits, else a JPEG re-encoding that does (CPU
    heavy: call through asyncio.to_thread)."""
    if len(image.data) <= limit:
        return FittedImage(image)
    with Image.open(io.BytesIO(image.data)) as im:
        im.load()
        rgb = _flatten(im)
    data = b""
    scale = 1.0
    for _ in range(8):
        frame = rgb if scale == 1.0 else rgb.resize((max(1, int(rgb.width * scale)), max(1, int(rgb.height * scale))), Image.Resampling.LANCZOS)
        for quality in (90, 80, 70, 60):
            data = _jpeg(frame, quality)
            if len(data) <= limit:
                break
        if len(data) <= limit:
            break
        scale *= max(0.5, min(0.9, (limit / len(data)) ** 0.5))
    stem = image.filename.rsplit(".", 1)[0]
    before, after = len(image.data) / 1024 / 1024, len(data) / 1024 / 1024
    what = f"{label} was" if label else "It was"
    resized = "" if scale == 1.0 else f", scaled to {int(scale * 100)}%"
    note = (
        f"{what} {before:.1f} MB, over Discord's {limit / 1024 / 1024:g} MB limit, "
        f"so it was re-encoded as JPEG ({after:.1f} MB{resized})."
    )
    return FittedImage(GeneratedImage(data=data, filename=f"{stem}.jpg", mime="image/jpeg"), note)


def _flatten(im: Image.Image) -> Image.Image:
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return im.convert("RGB")


def _jpeg(im: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def batches(items: list[GeneratedImage], size: int = MAX_FILES_PER_MESSAGE) -> list[list[GeneratedImage]]:
    """Discord takes at most 10 attachments per message."""
    return [items[i : i + size] for i in range(0, len(items), size)] or [[]]
