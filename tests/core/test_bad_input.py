"""SPEC §5 through the service itself: every bad input gets a precise,
friendly message before any money is spent — no request reaches OpenAI, no
quota is used, no job row holds anything, nothing crashes."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from core.errors import InvalidInput
from core.images import MAX_INPUT_BYTES
from core.models import ImageOptions, Upload
from core.service import ImageService
from tests.conftest import MakeService
from tests.core.sample_images import PNG_SIGNATURE, bomb_png, corrupt_png, image_bytes, mask_png, png, truncated_png
from tests.core.scenario import assert_nothing_held, member
from tests.fakes.openai_server import FakeOpenAI

PERSON = member()


async def refused(service: ImageService, fake: FakeOpenAI, call: Any) -> str:
    """Run `call`, which must fail with InvalidInput, and check nothing was spent."""
    with pytest.raises(InvalidInput) as info:
        await call
    assert fake.requests == [], "a bad input reached the API"
    await assert_nothing_held(service, PERSON)
    return info.value.user_message


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("", "the prompt is empty"),
        ("  \n\t ", "the prompt is empty"),
        ("x" * 32_001, "That prompt is 32,001 characters long; the most the model takes is 32,000."),
    ],
)
async def test_bad_prompts(make_service: MakeService, fake_openai: FakeOpenAI, prompt: str, message: str) -> None:
    service = await make_service()
    assert message in await refused(service, fake_openai, service.generate(PERSON, prompt, ImageOptions()))
    edit = service.edit(PERSON, prompt, [Upload("a.png", png())], ImageOptions())
    assert message in await refused(service, fake_openai, edit)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # Options built by hand (not through core.options) are checked again:
        # the service is the last line before money is spent.
        (ImageOptions(size="1000x1000"), "multiples of 16"),
        (ImageOptions(size="3008x992"), "too narrow"),
        (ImageOptions(size="512x512"), "pixels; it must be between 655,360"),
        (ImageOptions(size="3840x2176"), "8,355,840 pixels"),
        (ImageOptions(size="4096x2048"), "at most 3840 pixels"),
        (ImageOptions(size="enormous"), "I don't know the size “enormous”"),
        (ImageOptions(n=9), "You can ask for 1 to 8 images at a time, not 9."),
        (ImageOptions(n=0), "You can ask for 1 to 8 images at a time, not 0."),
        (ImageOptions(quality="ultra"), "I don't know the quality “ultra”"),
        (ImageOptions(format="gif"), "I don't know the format “gif”"),
        (ImageOptions(background="green"), "I don't know the background “green”"),
        (ImageOptions(quality="max"), "gpt-image-2 doesn't offer max quality"),
        (ImageOptions(model="gpt-image-2.6-flare"), "makes images only with gpt-image-2"),  # not in allowed_models
        (ImageOptions(model="gpt-image-2", background="transparent"), "gpt-image-2 can't make transparent backgrounds"),
        (ImageOptions(background="transparent", format="jpeg"), "JPEG can't be transparent"),
    ],
)
async def test_bad_options(make_service: MakeService, fake_openai: FakeOpenAI, options: ImageOptions, message: str) -> None:
    service = await make_service()
    assert message in await refused(service, fake_openai, service.generate(PERSON, "a red fox", options))


async def test_transparent_refused_without_a_transparent_model(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service(openai={"transparent_model": ""})
    message = await refused(service, fake_openai, service.generate(PERSON, "a logo", ImageOptions(background="transparent")))
    assert "transparent" in message.lower() and "Leave out --background transparent" in message
    edit = service.edit(PERSON, "a logo", [Upload("a.png", png())], ImageOptions(background="transparent"))
    assert "Leave out --background transparent" in await refused(service, fake_openai, edit)


@pytest.mark.parametrize(
    ("upload", "message"),
    [
        (Upload("notes.png", b"these are my notes, not a picture"), "“notes.png” is not an image I can read. Use a PNG, JPEG or WebP picture."),
        (Upload("page.pdf", b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n"), "“page.pdf” is not an image I can read."),
        (Upload("empty.png", b""), "“empty.png” is empty."),
        (Upload("cut.png", truncated_png()), "“cut.png” looks damaged and could not be read."),
        (Upload("broken.png", corrupt_png()), "“broken.png” looks damaged and could not be read."),
        (Upload("header-only.png", PNG_SIGNATURE + b"\x00\x00\x00\x0dIHDR"), "“header-only.png” is not an image I can read."),
        (Upload("huge.png", b"\x89PNG" + b"\x00" * MAX_INPUT_BYTES), "“huge.png” is 50.1 MB; images can be at most 50 MB."),
        (Upload("bomb.png", bomb_png(20_000, 20_000)), "“bomb.png” has far too many pixels to process (at most 64 megapixels)"),
        (Upload("big.png", bomb_png(8_200, 8_200)), "“big.png” is 8200x8200 pixels, which is too large to process (at most 64 megapixels)."),
        (Upload("scan.ico", image_bytes(32, 32, "RGB", "ICO")), None),  # a convertible format: accepted (control case)
    ],
    ids=["text", "pdf", "empty", "truncated", "corrupt", "header-only", "over-50MB", "bomb-400MP", "bomb-67MP", "ico-ok"],
)
async def test_bad_attachments(make_service: MakeService, fake_openai: FakeOpenAI, upload: Upload, message: str | None) -> None:
    service = await make_service()
    if message is None:
        result = await service.edit(PERSON, "make it blue", [upload], ImageOptions())
        assert len(result.images) == 1
        return
    # The bad file is the second one: a good first image must not let it through.
    edit = service.edit(PERSON, "make it blue", [Upload("ok.png", png()), upload], ImageOptions())
    assert message in await refused(service, fake_openai, edit)


async def test_bomb_is_refused_from_its_header(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    """A small file that would decode to 400 MB: refused on the header's
    dimensions, so its pixels are never decoded (a decode would either take
    the memory or fail with the "damaged" message instead)."""
    bomb = bomb_png(20_000, 20_000)
    assert len(bomb) < 100_000
    service = await make_service()
    message = await refused(service, fake_openai, service.edit(PERSON, "p", [Upload("bomb.png", bomb)], ImageOptions()))
    assert "too many pixels" in message and "damaged" not in message
    mask_bomb = service.edit(PERSON, "p", [Upload("a.png", png())], ImageOptions(), mask=Upload("m.png", bomb))
    assert "too many pixels" in await refused(service, fake_openai, mask_bomb)


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (Upload("m.png", png(64, 64, "RGB")), "The mask must be a PNG with transparency (an alpha channel)"),
        (Upload("m.png", png(64, 64, "L")), "The mask must be a PNG with transparency"),
        (Upload("m.jpg", image_bytes(64, 64, "RGB", "JPEG")), "The mask must be a PNG with transparency"),
        (Upload("m.webp", image_bytes(64, 64, "RGBA", "WEBP")), "The mask must be a PNG with transparency"),
        (Upload("m.png", mask_png(32, 64)), "The mask is 32x64 but the image is 64x64; they must be the same size."),
        (Upload("m.png", b"GIF89a not really"), "“m.png” is not an image I can read."),
    ],
    ids=["rgb", "greyscale", "jpeg", "webp", "other-size", "junk"],
)
async def test_bad_masks(make_service: MakeService, fake_openai: FakeOpenAI, mask: Upload, message: str) -> None:
    service = await make_service()
    edit = service.edit(PERSON, "make it blue", [Upload("a.png", png(64, 64))], ImageOptions(), mask=mask)
    assert message in await refused(service, fake_openai, edit)


async def test_too_many_and_no_input_images(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    service = await make_service()
    seventeen = [Upload(f"{i}.png", png(32, 32)) for i in range(17)]
    message = await refused(service, fake_openai, service.edit(PERSON, "collage", seventeen, ImageOptions()))
    assert message == "You attached 17 images; an edit can use at most 16. Remove some and try again."
    assert "Attach at least one image" in await refused(service, fake_openai, service.edit(PERSON, "p", [], ImageOptions()))
    # Sixteen is allowed (control case).
    result = await service.edit(PERSON, "collage", seventeen[:16], ImageOptions())
    (call,) = fake_openai.calls("/images/edits")
    assert [f.name for f in call.files] == ["image[]"] * 16
    assert result.images


@pytest.mark.parametrize(
    ("fmt", "mode"),
    [("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGB"), ("GIF", "RGBA")],
)
async def test_other_formats_are_converted_to_png(
    make_service: MakeService, fake_openai: FakeOpenAI, fmt: str, mode: str
) -> None:
    original = image_bytes(80, 48, mode, fmt, color=(10, 200, 30) if mode != "P" else 5)
    service = await make_service()
    await service.edit(PERSON, "make it blue", [Upload(f"photo.{fmt.lower()}", original, "image/whatever")], ImageOptions())
    (call,) = fake_openai.calls("/images/edits")
    (part,) = call.files
    assert (part.name, part.filename, part.content_type) == ("image[]", "photo.png", "image/png")
    assert part.data.startswith(PNG_SIGNATURE)
    converted = Image.open(io.BytesIO(part.data))
    assert converted.format == "PNG" and converted.size == (80, 48)


async def test_mask_over_the_apis_4_mb_is_refused_locally(make_service: MakeService, fake_openai: FakeOpenAI) -> None:
    import os

    # Noise does not compress: 1100x1100 RGBA is about 4.6 MB as a PNG.
    noise = Image.frombytes("RGBA", (1100, 1100), os.urandom(1100 * 1100 * 4))
    buf = io.BytesIO()
    noise.save(buf, "PNG", compress_level=0)
    assert len(buf.getvalue()) > 4 * 1024 * 1024
    service = await make_service()
    edit = service.edit(PERSON, "make it blue", [Upload("a.png", png(1100, 1100))], ImageOptions(), mask=Upload("m.png", buf.getvalue()))
    assert "The mask must be smaller than 4 MB" in await refused(service, fake_openai, edit)
