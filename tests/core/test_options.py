"""`/imagine` text → prompt and options: flags anywhere, the API's size
rules, and a precise message for every mistake. The prompt is never
rewritten, whatever the script."""

from __future__ import annotations

import pytest

from core.config import Config, config_from_mapping
from core.errors import InvalidInput
from core.models import ImageOptions
from core.options import build_options, check_prompt, normalize_size, parse_command, route_model

CONFIG = Config()


@pytest.mark.parametrize(
    ("text", "prompt", "options"),
    [
        ("a red fox in the snow", "a red fox in the snow", ImageOptions()),
        (
            "a red fox --size landscape --quality high --n 4",
            "a red fox",
            ImageOptions(size="1536x1024", quality="high", n=4),
        ),
        ("--quality low a red fox", "a red fox", ImageOptions(quality="low")),
        ("a red --n 2 fox in  snow", "a red fox in  snow", ImageOptions(n=2)),  # inner spacing kept
        ("a red fox —size portrait", "a red fox", ImageOptions(size="1024x1536")),  # phones turn -- into —
        ("a red fox —n=3", "a red fox", ImageOptions(n=3)),
        ("a red fox --n=2", "a red fox", ImageOptions(n=2)),
        ("a red fox --SIZE Square --Quality HIGH", "a red fox", ImageOptions(quality="high")),
        ("a red fox --format jpg", "a red fox", ImageOptions(format="jpeg")),
        ("a red fox --count 2 --q low --s 2k", "a red fox", ImageOptions(size="2048x2048", quality="low", n=2)),
        ("a logo --background transparent", "a logo", ImageOptions(background="transparent")),
        ("a fox -- and a hound — friends", "a fox -- and a hound — friends", ImageOptions()),  # bare dashes are text
        ("a fox --size 2048x1152", "a fox", ImageOptions(size="2048x1152")),
        ("a fox --size 1152×2048", "a fox", ImageOptions(size="1152x2048")),
        ("a fox --size auto", "a fox", ImageOptions(size="auto")),
    ],
)
def test_parse_command(text: str, prompt: str, options: ImageOptions) -> None:
    assert parse_command(text, CONFIG) == (prompt, options)


@pytest.mark.parametrize(
    ("preset", "size"),
    [
        ("square", "1024x1024"),
        ("portrait", "1024x1536"),
        ("landscape", "1536x1024"),
        ("2k", "2048x2048"),
        ("wide-2k", "2048x1152"),
        ("tall-2k", "1152x2048"),
    ],
)
def test_presets(preset: str, size: str) -> None:
    assert normalize_size(preset, CONFIG) == size


@pytest.mark.parametrize(
    "size",
    ["1024x1024", "816x816", "3840x2160", "2160x3840", "2880x960", "960x2880", "1536x1024", "3840x1280"],
)
def test_sizes_inside_the_rules(size: str) -> None:
    assert normalize_size(size, CONFIG) == size


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("1000x1000", "The size 1000x1000 doesn't work: both width and height must be multiples of 16"),
        ("1024x1000", "both width and height must be multiples of 16"),
        ("3008x992", "The size 3008x992 is too narrow: the long edge can be at most 3 times the short edge."),
        ("992x3008", "too narrow"),
        ("512x512", "The size 512x512 has 262,144 pixels; it must be between 655,360"),
        ("800x800", "has 640,000 pixels"),
        ("3840x2176", "has 8,355,840 pixels; it must be between 655,360 (about 810x810) and 8,294,400 pixels."),
        ("4096x2048", "The size 4096x2048 is too large: the longest edge can be at most 3840 pixels."),
        ("huge", "I don't know the size “huge”"),
        ("1024*1024", "I don't know the size “1024*1024”"),
    ],
)
def test_sizes_outside_the_rules(size: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_command(f"a fox --size {size}", CONFIG)
    assert message in info.value.user_message


def test_size_limits_from_config() -> None:
    small = config_from_mapping({"limits": {"allow_2k": False}})
    with pytest.raises(InvalidInput) as info:
        normalize_size("2k", small)
    assert "turned off on this server" in info.value.user_message
    capped = config_from_mapping({"limits": {"max_pixels": 2_000_000}})
    with pytest.raises(InvalidInput) as info:
        normalize_size("2048x2048", capped)
    assert "and 2,000,000 pixels" in info.value.user_message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a fox --style vivid", "I don't know the option “--style”. You can use --size, --quality, --n, --format, --background, --model, --relax."),
        ("a fox --quality ultra", "I don't know the quality “ultra”. Use low, medium, high or auto."),
        ("a fox --format gif", "I don't know the format “gif”. Use png, jpeg or webp."),
        ("a fox --background green", "I don't know the background “green”"),
        ("a fox --n 9", "You can ask for 1 to 8 images at a time, not 9."),
        ("a fox --n 0", "You can ask for 1 to 8 images at a time, not 0."),
        ("a fox --n -1", "You can ask for 1 to 8 images at a time, not -1."),
        ("a fox --n two", "The number of images must be a whole number from 1 to 8, not “two”."),
        ("a fox --n 2.5", "not “2.5”"),
        ("a fox --size", "The option --size needs a value, for example --size landscape."),
        ("a fox --n --size square", "The option --n needs a value"),
        ("a fox --n=", "The option --n needs a value"),
        ("a fox --n 2 --count 3", "The option --n appears twice."),
        ("--size square", "the prompt is empty"),
        ("   ", "the prompt is empty"),
        ("a fox --background transparent --format jpeg", "JPEG can't be transparent"),
        ("a fox --quality xhigh", "gpt-image-2 doesn't offer xhigh quality. Use low, medium, high or auto."),
        ("a fox --model gpt-image-2.6-flare", "This server makes images only with gpt-image-2, not “gpt-image-2.6-flare”. Leave out --model."),
        ("a fox --model", "The option --model needs a value, for example --model gpt-image-2."),
    ],
)
def test_mistakes_get_precise_messages(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_command(text, CONFIG)
    assert message in info.value.user_message


def test_transparent_refused_when_no_transparent_model() -> None:
    cfg = config_from_mapping({"openai": {"transparent_model": ""}})
    with pytest.raises(InvalidInput) as info:
        parse_command("a logo --background transparent", cfg)
    assert "Transparent backgrounds are turned off on this server" in info.value.user_message


def test_n_limit_follows_config() -> None:
    cfg = config_from_mapping({"limits": {"max_images_per_request": 3}})
    assert parse_command("a fox --n 3", cfg)[1].n == 3
    with pytest.raises(InvalidInput) as info:
        parse_command("a fox --n 4", cfg)
    assert "1 to 3 images" in info.value.user_message


def test_prompt_length_limit() -> None:
    exactly = "a" * 32_000
    assert check_prompt(exactly) == exactly
    assert parse_command(exactly + " --n 2", CONFIG) == (exactly, ImageOptions(n=2))
    with pytest.raises(InvalidInput) as info:
        parse_command("a" * 32_001, CONFIG)
    assert info.value.user_message == (
        "That prompt is 32,001 characters long; the most the model takes is 32,000. Please shorten it."
    )
    # Characters, not bytes: 32,000 Japanese characters are 96,000 UTF-8 bytes and still fine.
    assert check_prompt("狐" * 32_000) == "狐" * 32_000


@pytest.mark.parametrize(
    "prompt",
    [
        "富士山の上に浮かぶ赤い狐、水彩画風",
        "富士山\u3000赤い狐",  # ideographic space inside the prompt
        "ثعلب أحمر في الثلج، بأسلوب الألوان المائية",
        "बर्फ में लाल लोमड़ी",
        "🦊❄️ fox 👩🏽‍🎨 with ZWJ, e\u0301 combining, \u200f rtl mark",
        "Ünïcödé  double  spaces\tand tab",
    ],
)
def test_prompts_kept_exactly_as_typed(prompt: str) -> None:
    assert parse_command(prompt, CONFIG) == (prompt, ImageOptions())
    assert parse_command(f"{prompt} --quality low", CONFIG) == (prompt, ImageOptions(quality="low"))
    assert parse_command(f"--n 2 {prompt}", CONFIG) == (prompt, ImageOptions(n=2))
    assert check_prompt(prompt) == prompt


def test_build_options_defaults_come_from_config() -> None:
    cfg = config_from_mapping({"defaults": {"size": "landscape", "quality": "low", "n": 2, "format": "webp"}})
    assert build_options(cfg) == ImageOptions(size="1536x1024", quality="low", n=2, format="webp")
    assert build_options(cfg, quality="high") == ImageOptions(size="1536x1024", quality="high", n=2, format="webp")


def test_compression_rules() -> None:
    assert build_options(CONFIG, format="webp", compression=70).compression == 70
    with pytest.raises(InvalidInput) as info:
        build_options(CONFIG, format="png", compression=70)
    assert "Compression applies only to jpeg and webp" in info.value.user_message
    with pytest.raises(InvalidInput) as info:
        build_options(CONFIG, format="jpeg", compression=101)
    assert "between 0 and 100" in info.value.user_message


def test_a_dash_before_an_unknown_word_is_punctuation_not_an_option() -> None:
    # Only "--" marks an unknown option; "—"/"–" before a word that is no
    # option is prose (autocorrected dashes are common in real prompts).
    prompt, options = parse_command("a fox —the best one –size landscape", Config())
    assert prompt == "a fox —the best one"
    assert options.size == "1536x1024"


OPEN = config_from_mapping({"openai": {"allowed_models": ["gpt-image-2", "gpt-image-2.6-flare", "gpt-image-1.5"]}})


def test_model_flag_picks_an_allowed_model() -> None:
    prompt, options = parse_command("a fox --model GPT-image-2.6-flare --quality max", OPEN)
    assert (prompt, options.model, options.quality) == ("a fox", "gpt-image-2.6-flare", "max")
    assert parse_command("a fox", OPEN)[1].model == ""  # the server's routing
    with pytest.raises(InvalidInput) as info:
        parse_command("a fox --model dall-e-3", OPEN)
    assert info.value.user_message == "I can't use the model “dall-e-3” here. You can pick gpt-image-2, gpt-image-2.6-flare or gpt-image-1.5."


def test_transparency_follows_the_catalog() -> None:
    # The transparent model by default; a picked model only if its catalog entry takes transparency.
    assert route_model(OPEN, "", "transparent") == "gpt-image-2.6-sunburst"
    assert route_model(OPEN, "gpt-image-2.6-flare", "transparent") == "gpt-image-2.6-flare"
    assert route_model(OPEN, "", "auto") == "gpt-image-2"
    with pytest.raises(InvalidInput) as info:
        parse_command("a logo --background transparent --model gpt-image-2", OPEN)
    assert info.value.user_message == "gpt-image-2 can't make transparent backgrounds. Leave out --model to get one from gpt-image-2.6-sunburst."
    # Facts are data: an admin who learns 2.6 takes only the classic sizes says so in config.
    fixed = config_from_mapping({"models": {"gpt-image-2.6-sunburst": {"any_size": False}}})
    assert parse_command("a logo --background transparent --size landscape", fixed)[1].size == "1536x1024"
    with pytest.raises(InvalidInput) as info:
        parse_command("a logo --background transparent --size 2k", fixed)
    assert "gpt-image-2.6-sunburst, which makes only square (1024x1024), landscape (1536x1024) or portrait" in info.value.user_message
    assert parse_command("a logo --background transparent --size 2k", OPEN)[1].size == "2048x2048"


def test_relax_is_a_switch_anywhere_in_the_text() -> None:
    prompt, options = parse_command("a quiet harbor --relax --size landscape", CONFIG)
    assert (prompt, options.relax, options.size) == ("a quiet harbor", True, "1536x1024")
    assert parse_command("—relax a quiet harbor", CONFIG)[1].relax  # a phone's em dash counts too
    assert not parse_command("a quiet harbor", CONFIG)[1].relax
    with pytest.raises(InvalidInput, match="takes no value"):
        parse_command("a harbor --relax=yes", CONFIG)
