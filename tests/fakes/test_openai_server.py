"""The OpenAI fake, driven by the real AsyncOpenAI SDK over loopback (no mocks).

These tests pin down that the fake behaves like SPEC §1 says the API does, so
that bot tests built on it test the bot, not the fake.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from PIL import Image

from tests.fakes.openai_server import FakeOpenAI, RecordedRequest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeOpenAI) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: error tests must see the first answer, not a retried one.
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test-fake", max_retries=0)
    yield sdk
    await sdk.close()


def png(width: int = 256, height: int = 256, mode: str = "RGB") -> bytes:
    color: Any = (200, 30, 30, 0) if mode == "RGBA" else (200, 30, 30)
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def decode(b64: str | None) -> Image.Image:
    assert b64 is not None
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


# --------------------------------------------------------------------------
# generations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "fmt", "compression", "n", "expected_size", "pil_format"),
    [
        ("1024x1024", "png", None, 2, (1024, 1024), "PNG"),
        ("1536x1024", "jpeg", 50, 1, (1536, 1024), "JPEG"),
        ("2048x1152", "webp", 80, 3, (2048, 1152), "WEBP"),
        ("auto", None, None, 1, (1024, 1024), "PNG"),
    ],
)
async def test_generate_returns_n_real_images(
    client: openai.AsyncOpenAI,
    fake: FakeOpenAI,
    size: str,
    fmt: str | None,
    compression: int | None,
    n: int,
    expected_size: tuple[int, int],
    pil_format: str,
) -> None:
    kwargs: dict[str, Any] = {"model": "gpt-image-2", "prompt": "a red fox", "n": n, "size": size}
    if fmt:
        kwargs["output_format"] = fmt
    if compression is not None:
        kwargs["output_compression"] = compression
    result = await client.images.generate(**kwargs)

    assert result.data is not None and len(result.data) == n
    for item in result.data:
        assert item.url is None and item.revised_prompt is None  # GPT image models: base64 only
        image = decode(item.b64_json)
        assert image.size == expected_size
        assert image.format == pil_format
    assert result.size == f"{expected_size[0]}x{expected_size[1]}"
    assert result.output_format == (fmt or "png")
    assert result.quality == "medium"  # auto resolves to a concrete quality
    assert result.background == "opaque"
    assert result.usage is not None and result.usage.output_tokens_details is not None
    assert result.usage.input_tokens_details.text_tokens == len(b"a red fox") // 4 + 1
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    assert [r.status for r in fake.calls("/images/generations")] == [200]


async def test_n_images_differ(client: openai.AsyncOpenAI) -> None:
    result = await client.images.generate(model="gpt-image-2", prompt="same prompt", n=3, size="1024x1024")
    assert result.data is not None
    assert len({d.b64_json for d in result.data}) == 3


@pytest.mark.parametrize(
    ("size", "quality", "n", "expected_output_tokens"),
    [
        ("1024x1024", "low", 1, 196),
        ("1024x1024", "medium", 1, 1756),
        ("1024x1024", "high", 2, 2 * 7024),
        ("1536x1024", "high", 1, 5488),
        ("2048x2048", "high", 1, 14272),
        ("1024x1024", "auto", 1, 1756),
    ],
)
async def test_usage_matches_spec_token_counts(
    client: openai.AsyncOpenAI, size: str, quality: Any, n: int, expected_output_tokens: int
) -> None:
    result = await client.images.generate(model="gpt-image-2", prompt="tokens", size=size, quality=quality, n=n)
    assert result.usage is not None and result.usage.output_tokens_details is not None
    assert result.usage.output_tokens == expected_output_tokens
    assert result.usage.output_tokens_details.image_tokens == expected_output_tokens
    assert result.usage.input_tokens_details.image_tokens == 0


@pytest.mark.parametrize(
    ("kwargs", "param", "code"),
    [
        ({"size": "1000x1000"}, "size", "invalid_value"),  # not multiples of 16
        ({"size": "3840x1024"}, "size", "invalid_value"),  # aspect ratio > 3:1
        ({"size": "512x512"}, "size", "invalid_value"),  # too few pixels
        ({"size": "4096x2048"}, "size", "invalid_value"),  # longest edge > 3840
        ({"size": "big"}, "size", "invalid_value"),
        ({"model": "gpt-image-1.5", "size": "2048x2048"}, "size", "invalid_value"),
        ({"n": 0}, "n", "invalid_value"),
        ({"n": 11}, "n", "invalid_value"),
        ({"quality": "ultra"}, "quality", "invalid_value"),
        ({"output_format": "gif"}, "output_format", "invalid_value"),
        ({"output_format": "png", "output_compression": 50}, "output_compression", "invalid_value"),
        ({"output_format": "jpeg", "output_compression": 101}, "output_compression", "invalid_value"),
        ({"background": "transparent"}, "background", "invalid_value"),  # gpt-image-2 refuses it
        ({"quality": "xhigh"}, "quality", "invalid_value"),  # only gpt-image-2.5/2.6
        ({"quality": "max"}, "quality", "invalid_value"),
        ({"model": "dall-e-3"}, "model", "invalid_value"),
        ({"prompt": ""}, "prompt", "invalid_value"),
        ({"prompt": "x" * 32_001}, "prompt", "string_above_max_length"),
        ({"extra_body": {"colour": "red"}}, "colour", "unknown_parameter"),
    ],
)
async def test_invalid_generation_params_rejected(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, kwargs: dict[str, Any], param: str, code: str
) -> None:
    call: dict[str, Any] = {"model": "gpt-image-2", "prompt": "a fox", **kwargs}
    fake.today = datetime.date(2026, 11, 30)  # gpt-image-1.5 still ran then
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.generate(**call)
    err = info.value
    assert err.status_code == 400
    assert err.code == code
    assert err.param == param
    assert isinstance(err.body, dict) and err.body["type"] == "invalid_request_error"
    assert fake.requests[-1].status == 400


async def test_gpt_image_2_accepts_edge_sizes(client: openai.AsyncOpenAI) -> None:
    # Exactly at the limits: max pixels (3840x2160), min pixels (1024x640), 3:1.
    for size in ("3840x2160", "1024x640", "2496x832"):
        result = await client.images.generate(model="gpt-image-2", prompt="edge", size=size, quality="low")
        assert result.size == size


@pytest.mark.parametrize("model", ["gpt-image-2.6-sunburst", "gpt-image-2.6-flare", "gpt-image-2.5-flare"])
async def test_transparent_background_on_newer_models(client: openai.AsyncOpenAI, model: str) -> None:
    result = await client.images.generate(
        model=model, prompt="a sticker", background="transparent", output_format="png", size="2048x2048"
    )
    assert result.background == "transparent"
    assert result.data is not None
    image = decode(result.data[0].b64_json)
    assert image.format == "PNG" and image.mode == "RGBA" and image.size == (2048, 2048)
    assert image.getchannel("A").getextrema() == (0, 255)  # real transparency, and a visible subject


@pytest.mark.parametrize("quality", ["xhigh", "max"])
async def test_newer_qualities_on_newer_models(client: openai.AsyncOpenAI, quality: Any) -> None:
    result = await client.images.generate(model="gpt-image-2.6-flare", prompt="detail", quality=quality)
    assert result.usage is not None and result.quality == quality
    assert result.usage.output_tokens > 7_024  # more than high


async def test_shut_down_models_answer_404_from_their_date(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    listed = {m.id: m.shutdown_date async for m in client.models.list()}
    assert listed["gpt-image-1.5"] == listed["gpt-image-1-mini"] == listed["chatgpt-image-latest"] == "2026-12-01"
    assert listed["gpt-image-1"] == "2026-10-23"
    assert listed["gpt-image-2"] is None and listed["gpt-image-2.6-sunburst"] is None

    fake.today = datetime.date(2026, 11, 30)
    sticker = {"prompt": "a sticker", "background": "transparent", "output_format": "png"}
    assert (await client.images.generate(model="gpt-image-1.5", **sticker)).data
    fake.today = datetime.date(2026, 12, 1)
    with pytest.raises(openai.NotFoundError) as info:
        await client.images.generate(model="gpt-image-1.5", **sticker)
    assert info.value.code == "model_not_found" and "gpt-image-1.5" in info.value.message
    with pytest.raises(openai.NotFoundError):
        await client.images.edit(model="gpt-image-1.5", image=[("a.png", png(), "image/png")], prompt="x")
    # The models endpoint still describes it, date included.
    assert (await client.models.retrieve("gpt-image-1.5")).shutdown_date == "2026-12-01"

    # A date set by a test (OpenAI retiring a model the bot still thinks is fine).
    fake.shutdown_dates["gpt-image-2.6-flare"] = "2026-12-01"
    assert (await client.models.retrieve("gpt-image-2.6-flare")).shutdown_date == "2026-12-01"
    with pytest.raises(openai.NotFoundError):
        await client.images.generate(model="gpt-image-2.6-flare", prompt="late")


# --------------------------------------------------------------------------
# edits
# --------------------------------------------------------------------------


async def test_edit_with_two_images_and_mask(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    first, second, mask = png(512, 512), png(300, 200), png(512, 512, "RGBA")
    result = await client.images.edit(
        model="gpt-image-2",
        image=[("first.png", first, "image/png"), ("second.png", second, "image/png")],
        mask=("mask.png", mask, "image/png"),
        prompt="make it watercolor",
        n=2,
        size="1024x1536",
        quality="low",
        output_format="jpeg",
        output_compression=70,
    )
    assert result.data is not None and len(result.data) == 2
    assert decode(result.data[0].b64_json).size == (1024, 1536)
    assert result.usage is not None
    assert result.usage.input_tokens_details.image_tokens == 2 * 1024

    (record,) = fake.calls("/images/edits")
    assert [(f.name, f.filename, f.content_type) for f in record.files] == [
        ("image[]", "first.png", "image/png"),
        ("image[]", "second.png", "image/png"),
        ("mask", "mask.png", "image/png"),
    ]
    assert record.files[0].data == first and record.files[2].data == mask
    assert record.form == {
        "model": "gpt-image-2",
        "prompt": "make it watercolor",
        "n": "2",
        "size": "1024x1536",
        "quality": "low",
        "output_format": "jpeg",
        "output_compression": "70",
    }
    assert record.json is None


async def test_edit_single_image_part_and_auto_size_follows_input(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    result = await client.images.edit(model="gpt-image-2", image=("tall.png", png(400, 800), "image/png"), prompt="p")
    assert result.size == "1024x1536"
    assert [f.name for f in fake.calls("/images/edits")[0].files] == ["image"]


async def test_edit_rejects_octet_stream(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.edit(model="gpt-image-2", image=[png()], prompt="bare bytes")
    err = info.value
    assert (err.code, err.param) == ("invalid_value", "image")
    assert "unsupported mimetype ('application/octet-stream')" in err.message
    (file,) = fake.calls("/images/edits")[0].files
    assert (file.filename, file.content_type) == ("upload", "application/octet-stream")


@pytest.mark.parametrize(
    ("image", "mask", "param", "code"),
    [
        ([("a.png", png(512, 512), "image/png")], ("m.png", png(256, 256, "RGBA"), "image/png"), "mask", None),
        ([("a.png", png(512, 512), "image/png")], ("m.png", png(512, 512, "RGB"), "image/png"), "mask", None),
        ([(f"{i}.png", png(64, 64), "image/png") for i in range(17)], None, "image", None),
        ([("a.png", b"not an image", "image/png")], None, "image", "invalid_image_file"),
        ([("a.gif", png(), "image/gif")], None, "image", None),
    ],
    ids=["mask-size", "mask-no-alpha", "17-images", "junk-bytes", "gif-mime"],
)
async def test_edit_rejects_bad_files(
    client: openai.AsyncOpenAI, image: Any, mask: Any, param: str, code: str | None
) -> None:
    kwargs: dict[str, Any] = {"model": "gpt-image-2", "image": image, "prompt": "edit"}
    if mask is not None:
        kwargs["mask"] = mask
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.edit(**kwargs)
    assert info.value.param == param
    assert info.value.code == (code or "invalid_value")


async def test_edit_input_fidelity_refused_for_gpt_image_2(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.edit(
            model="gpt-image-2", image=[("a.png", png(), "image/png")], prompt="p", input_fidelity="high"
        )
    assert info.value.param == "input_fidelity"


# --------------------------------------------------------------------------
# trigger prompts
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "exc_class", "status", "code", "err_type"),
    [
        ("BLOCK_INPUT a fight", openai.BadRequestError, 400, "moderation_blocked", "image_generation_user_error"),
        ("BLOCK_OUTPUT", openai.BadRequestError, 400, "moderation_blocked", "image_generation_user_error"),
        ("BLOCK_LEGACY", openai.BadRequestError, 400, "content_policy_violation", "invalid_request_error"),
        ("RATE_LIMIT", openai.RateLimitError, 429, "rate_limit_exceeded", "requests"),
        ("NO_CREDIT", openai.RateLimitError, 429, "insufficient_quota", "insufficient_quota"),
        ("SERVER_ERROR", openai.InternalServerError, 500, None, "server_error"),
    ],
)
async def test_trigger_prompts_map_to_sdk_errors(
    client: openai.AsyncOpenAI,
    prompt: str,
    exc_class: type[openai.APIStatusError],
    status: int,
    code: str | None,
    err_type: str,
) -> None:
    with pytest.raises(exc_class) as info:
        await client.images.generate(model="gpt-image-2", prompt=prompt)
    err = info.value
    assert err.status_code == status
    assert err.code == code
    assert err.type == err_type
    assert isinstance(err.body, dict)  # the SDK hands over the inner "error" object
    assert set(err.body) >= {"message", "type", "param", "code"}
    assert err.request_id is not None and err.request_id.startswith("req_")
    if code == "moderation_blocked":
        stage, category = ("input", "violence") if "INPUT" in prompt else ("output", "sexual")
        assert err.body["moderation_details"] == {"moderation_stage": stage, "categories": [category]}
        assert f"safety_violations=[{category}]" in err.body["message"]
    if code == "content_policy_violation":
        assert "moderation_details" not in err.body
    if code == "rate_limit_exceeded":
        assert err.response.headers["retry-after"] == "1"
        assert "images per min (IPM): Limit 5, Used 5, Requested 1" in err.body["message"]


async def test_triggers_also_work_on_edits(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        await client.images.edit(model="gpt-image-2", image=[("a.png", png(), "image/png")], prompt="BLOCK_OUTPUT")
    assert info.value.code == "moderation_blocked"


async def test_once_triggers_fail_only_first_time(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    for prompt, exc_class in (("RATE_LIMIT_ONCE x", openai.RateLimitError),
                              ("SERVER_ERROR_ONCE x", openai.InternalServerError)):  # fmt: skip
        with pytest.raises(exc_class):
            await client.images.generate(model="gpt-image-2", prompt=prompt)
        result = await client.images.generate(model="gpt-image-2", prompt=prompt)
        assert result.data is not None
    fake.reset()  # forgets the "seen" memory too
    with pytest.raises(openai.InternalServerError):
        await client.images.generate(model="gpt-image-2", prompt="SERVER_ERROR_ONCE x")


async def test_sdk_default_retry_recovers_from_server_error_once(fake: FakeOpenAI) -> None:
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test-fake")  # default: 2 retries
    try:
        result = await sdk.images.generate(model="gpt-image-2", prompt="SERVER_ERROR_ONCE retry me")
    finally:
        await sdk.close()
    assert result.data is not None
    records = fake.calls("/images/generations")
    assert [r.status for r in records] == [500, 200]
    assert [r.headers["x-stainless-retry-count"] for r in records] == ["0", "1"]


async def test_fail_next_overrides_prompt(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    fake.fail_next("NO_CREDIT")
    with pytest.raises(openai.RateLimitError) as info:
        await client.images.generate(model="gpt-image-2", prompt="harmless")
    assert info.value.code == "insufficient_quota"
    assert (await client.images.generate(model="gpt-image-2", prompt="harmless")).data


async def test_slow_trigger_and_latency(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    # A client timeout far below the delay proves the delay, without timing anything.
    with pytest.raises(openai.APITimeoutError):
        await client.images.generate(model="gpt-image-2", prompt="SLOW:30 too slow", timeout=0.2)
    assert (await client.images.generate(model="gpt-image-2", prompt="SLOW:0 a fox")).data

    fake.latency = 30
    with pytest.raises(openai.APITimeoutError):
        await client.models.retrieve("gpt-image-2", timeout=0.2)
    fake.latency = 0
    assert (await client.models.retrieve("gpt-image-2")).id == "gpt-image-2"


async def test_hundreds_of_concurrent_requests(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    # Held at the gate until all 200 are inside: served concurrently, not one
    # after another, whatever the machine's speed (no duration is asserted).
    fake.gate = asyncio.Event()
    calls = asyncio.gather(
        *(client.images.generate(model="gpt-image-2", prompt=f"bench {i % 4}", quality="low") for i in range(200))
    )
    for _ in range(3000):  # bounded: a fake that serialises requests fails here instead of hanging
        if fake.in_flight == 200 or calls.done():
            break
        await asyncio.sleep(0.01)
    assert fake.in_flight == 200
    fake.gate.set()
    results = await calls
    assert all(r.data for r in results)
    assert fake.max_in_flight == 200 and fake.in_flight == 0


# --------------------------------------------------------------------------
# recording, auth, models, wire details
# --------------------------------------------------------------------------

UNICODE_PROMPTS = [
    "富士山の上に浮かぶ赤い狐、水彩画風",
    "ثعلب أحمر في الثلج، بأسلوب الألوان المائية",
    "बर्फ में लाल लोमड़ी",
    "🦊❄️ fox 👩🏽‍🎨 with ZWJ, e\u0301 combining, \u200f rtl mark",
]


@pytest.mark.parametrize("prompt", UNICODE_PROMPTS)
async def test_unicode_prompts_recorded_byte_for_byte(
    client: openai.AsyncOpenAI, fake: FakeOpenAI, prompt: str
) -> None:
    await client.images.generate(model="gpt-image-2", prompt=prompt)
    await client.images.edit(model="gpt-image-2", image=[("a.png", png(), "image/png")], prompt=prompt)
    gen: RecordedRequest = fake.calls("/images/generations")[0]
    edit: RecordedRequest = fake.calls("/images/edits")[0]
    assert gen.json is not None and gen.json["prompt"] == prompt
    assert prompt.encode("utf-8") in gen.body  # raw UTF-8 on the wire, not mangled
    assert edit.form["prompt"] == prompt
    assert gen.prompt == edit.prompt == prompt


async def test_missing_and_bad_keys_get_401(fake: FakeOpenAI) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/images/generations", json={"prompt": "x"}) as resp:
            assert resp.status == 401
            body = await resp.json()
    assert body["error"]["code"] == "invalid_api_key"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] is None

    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-test-fake", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as info:
            await sdk.images.generate(model="gpt-image-2", prompt="x", extra_headers={"Authorization": openai.Omit()})
        assert info.value.code == "invalid_api_key"
        with pytest.raises(openai.AuthenticationError):
            await sdk.with_options(api_key="sk-invalid-key-1234").models.retrieve("gpt-image-2")
    finally:
        await sdk.close()
    assert "authorization" not in fake.requests[1].headers


async def test_unverified_org_gets_403(fake: FakeOpenAI) -> None:
    sdk = openai.AsyncOpenAI(base_url=fake.base_url, api_key="sk-unverified-org", max_retries=0)
    try:
        with pytest.raises(openai.PermissionDeniedError) as info:
            await sdk.images.generate(model="gpt-image-2", prompt="a fox")
    finally:
        await sdk.close()
    assert info.value.status_code == 403
    assert info.value.code is None
    assert "Your organization must be verified to use the model `gpt-image-2`" in info.value.message


async def test_models_endpoint(client: openai.AsyncOpenAI) -> None:
    model = await client.models.retrieve("gpt-image-2")
    assert (model.id, model.object, model.owned_by) == ("gpt-image-2", "model", "openai")
    with pytest.raises(openai.NotFoundError) as info:
        await client.models.retrieve("gpt-image-9")
    assert info.value.code == "model_not_found"


async def test_response_headers_and_unknown_route(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    raw = await client.images.with_raw_response.generate(model="gpt-image-2", prompt="headers")
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"].startswith("req_")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{fake.base_url}/images/variations", headers={"Authorization": "Bearer k"}) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["message"] == "Invalid URL (POST /v1/images/variations)"


async def test_calls_and_reset(client: openai.AsyncOpenAI, fake: FakeOpenAI) -> None:
    await client.images.generate(model="gpt-image-2", prompt="one")
    await client.models.retrieve("gpt-image-2")
    assert [r.path for r in fake.requests] == ["/v1/images/generations", "/v1/models/gpt-image-2"]
    assert len(fake.calls("/images/generations")) == 1
    assert fake.requests[0].headers["authorization"] == "Bearer sk-test-fake"
    fake.reset()
    assert fake.requests == [] and fake.calls("/images/generations") == []


async def test_standalone_process() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_server", "--port", "0",
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), timeout=10)).decode()
        assert line.startswith("listening http://127.0.0.1:")
        base_url = line.split()[1]
        sdk = openai.AsyncOpenAI(base_url=base_url, api_key="sk-test-fake", max_retries=0)
        try:
            result = await sdk.images.generate(model="gpt-image-2", prompt="e2e", size="1024x1024")
        finally:
            await sdk.close()
        assert result.data is not None
        root = base_url.removesuffix("/v1")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{root}/_fake/requests") as resp:
                recorded = await resp.json()
            assert [(r["path"], r["json"]["prompt"], r["status"]) for r in recorded] == [
                ("/v1/images/generations", "e2e", 200)
            ]
            async with http.post(f"{root}/_fake/reset") as resp:
                assert resp.status == 200
            async with http.get(f"{root}/_fake/requests") as resp:
                assert await resp.json() == []
    finally:
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), timeout=10) == 0  # SIGTERM is a clean shutdown
