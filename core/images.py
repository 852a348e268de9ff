"""Checks on uploaded images before anything is spent.

The real format comes from the bytes, never from the file name or the
Content-Type a platform claims. Pixel counts are read from the header, so a
decompression bomb is refused before it is decoded.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from core.errors import InvalidInput
from core.models import InputImage, Upload

MAX_INPUT_BYTES = 50 * 1024 * 1024
MAX_INPUT_IMAGES = 16
MAX_MASK_BYTES = 4 * 1024 * 1024  # the API's limit for masks
# Far above any photo a phone takes (~50 MP) and far below what would exhaust
# memory when decoded (RGBA at 64 MP is 256 MB).
MAX_INPUT_PIXELS = 64_000_000

# Between Pillow's warning and error thresholds an image only warns; our own
# pixel check refuses it with its dimensions, so the warning is noise. Set once
# at import: warnings.catch_warnings() per call is not thread-safe.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

_API_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
# Formats people upload that the API does not take: converted to PNG.
_CONVERTIBLE = {"GIF", "BMP", "TIFF", "ICO", "MPO", "PPM", "TGA"}
_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


def check_input_image(upload: Upload, *, label: str = "image") -> InputImage:
    """Sniff, size-check and fully decode one upload; convert what the API
    cannot take. Raises InvalidInput naming the file and what to do."""
    name = upload.filename or label
    if len(upload.data) == 0:
        raise InvalidInput(f"“{name}” is empty. Please upload the image again.")
    if len(upload.data) > MAX_INPUT_BYTES:
        # Rounded up, so a file just over the limit never reads "50 MB; at most 50 MB".
        mb = math.ceil(len(upload.data) / 1024 / 1024 * 10) / 10
        raise InvalidInput(f"“{name}” is {mb:.1f} MB; images can be at most 50 MB. Please use a smaller version.")
    try:
        im = Image.open(io.BytesIO(upload.data))
    except Image.DecompressionBombError:
        # Pillow refuses these from the header alone (above twice its own
        # ~89 MP limit), before our own check below can name the dimensions.
        raise InvalidInput(
            f"“{name}” has far too many pixels to process (at most {MAX_INPUT_PIXELS // 1_000_000} megapixels). "
            "Please resize it and try again."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidInput(f"“{name}” is not an image I can read. Use a PNG, JPEG or WebP picture.") from None
    width, height = im.size
    if width * height > MAX_INPUT_PIXELS:
        raise InvalidInput(
            f"“{name}” is {width}x{height} pixels, which is too large to process "
            f"(at most {MAX_INPUT_PIXELS // 1_000_000} megapixels). Please resize it and try again."
        )
    fmt = im.format or ""
    try:
        im.load()  # a truncated or corrupt file fails here, not at the API
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidInput(f"“{name}” looks damaged and could not be read. Please upload it again.") from None
    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
    if fmt in _API_FORMATS:
        data, mime = upload.data, _API_FORMATS[fmt]
    elif fmt in _CONVERTIBLE:
        # The API takes only PNG, JPEG and WebP; PNG keeps every pixel and any transparency.
        frame = im.convert("RGBA" if has_alpha else "RGB")
        buf = io.BytesIO()
        frame.save(buf, format="PNG", compress_level=1)
        data, mime = buf.getvalue(), "image/png"
        if len(data) > MAX_INPUT_BYTES:
            raise InvalidInput(f"“{name}” becomes larger than 50 MB as a PNG. Please upload it as a PNG, JPEG or WebP under 50 MB.")
    else:
        raise InvalidInput(f"“{name}” is a {fmt or 'file'} image, which I can't use. Use a PNG, JPEG or WebP picture.")
    stem = (upload.filename.rsplit(".", 1)[0] if upload.filename else label) or label
    return InputImage(
        data=data, filename=f"{stem}.{_EXT[mime]}", mime=mime, width=width, height=height, has_alpha=has_alpha
    )


def check_edit_inputs(images: Sequence[Upload], mask: Upload | None) -> tuple[list[InputImage], InputImage | None]:
    """All inputs of one edit: 1..16 images, and a mask that is a PNG with an
    alpha channel and the size of the first image."""
    if not images:
        raise InvalidInput("Attach at least one image to edit (PNG, JPEG or WebP).")
    if len(images) > MAX_INPUT_IMAGES:
        raise InvalidInput(f"You attached {len(images)} images; an edit can use at most {MAX_INPUT_IMAGES}. Remove some and try again.")
    checked = [check_input_image(u, label=f"image{i + 1}") for i, u in enumerate(images)]
    checked_mask = None
    if mask is not None:
        checked_mask = check_input_image(mask, label="mask")
        if len(checked_mask.data) > MAX_MASK_BYTES:
            raise InvalidInput("The mask must be smaller than 4 MB. Save it as a PNG with fewer colours or a smaller size.")
        first = checked[0]
        if checked_mask.mime != "image/png" or not checked_mask.has_alpha:
            raise InvalidInput(
                "The mask must be a PNG with transparency (an alpha channel): transparent areas mark what to change."
            )
        if (checked_mask.width, checked_mask.height) != (first.width, first.height):
            raise InvalidInput(
                f"The mask is {checked_mask.width}x{checked_mask.height} but the image is {first.width}x{first.height}; "
                "they must be the same size."
            )
    return checked, checked_mask
