"""The TOML config: defaults match the shipped file, a file names only what
it changes, and every mistake names the file, the key and what is expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Config, ModelInfo, ModelPrice, load_config
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "imaginebot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_file_equals_builtin_defaults() -> None:
    # Admins copy config/imaginebot.toml as documentation of the defaults:
    # the two must never drift apart.
    assert load_config(REPO / "config" / "imaginebot.toml") == Config()


def test_no_path_means_defaults() -> None:
    assert load_config(None) == Config()


def test_a_file_naming_some_keys_keeps_the_rest(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[openai]
max_concurrent_calls = 9

[limits]
timezone = "Asia/Tokyo"
quality_weights = { low = 1, medium = 2, high = 5 }

[limits.roles]
"Patreon" = 50
"123456789" = 20

[pricing.models."gpt-image-2"]
text_input = 6.0
cached_text_input = 1.5
image_input = 9
cached_image_input = 2.25
image_output = 31.5
""",
    )
    cfg = load_config(path)
    default = Config()
    assert cfg.openai.max_concurrent_calls == 9
    assert cfg.openai.model == default.openai.model
    assert cfg.openai.timeout_seconds == default.openai.timeout_seconds
    assert cfg.limits.timezone == "Asia/Tokyo" and cfg.zone.key == "Asia/Tokyo"
    assert dict(cfg.limits.quality_weights) == {"low": 1, "medium": 2, "high": 5}
    assert dict(cfg.limits.roles) == {"Patreon": 50, "123456789": 20}
    assert cfg.limits.daily_images_per_user == default.limits.daily_images_per_user
    assert cfg.pricing.models["gpt-image-2"] == ModelPrice(6.0, 1.5, 9.0, 2.25, 31.5, 10.0)
    assert isinstance(cfg.pricing.models["gpt-image-2"].image_input, float)  # an integer in TOML is still a price
    # The older [pricing.models] spelling still prices the catalog entry, which keeps its other facts;
    # pricing one model keeps the built-in prices of the others (the transparent model needs its own).
    entry = cfg.models["gpt-image-2"]
    assert (entry.text_input, entry.image_input, entry.image_output) == (6.0, 9.0, 31.5)
    assert (entry.qualities, entry.transparent) == (default.models["gpt-image-2"].qualities, False)
    assert cfg.models["gpt-image-2.6-sunburst"] == default.models["gpt-image-2.6-sunburst"]
    assert cfg.defaults == default.defaults
    assert cfg.slack == default.slack and cfg.discord == default.discord and cfg.server == default.server
    assert cfg.source == str(path)


def test_a_new_model_needs_only_a_price_table(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[openai]
model = "gpt-image-3"

[pricing.models."gpt-image-3"]
text_input = 4.0
cached_text_input = 1.0
image_input = 7.0
cached_image_input = 1.75
image_output = 25.0
""",
    )
    cfg = load_config(path)
    assert cfg.openai.model == "gpt-image-3"
    assert cfg.models["gpt-image-3"] == ModelInfo(text_input=4.0, cached_text_input=1.0, image_input=7.0,
                                                   cached_image_input=1.75, image_output=25.0)  # fmt: skip


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("[openai]\nmodle = 'gpt-image-2'\n", "openai.modle", "Known keys here"),
        ("[limit]\ntimezone = 'UTC'\n", "limit", "Known keys here"),
        ("[limits]\ndaily_images_per_user = 'ten'\n", "limits.daily_images_per_user", "whole number"),
        ("[limits]\ndaily_images_per_user = 10.5\n", "limits.daily_images_per_user", "whole number"),
        ("[limits]\ncharge_policy_blocks = 'yes'\n", "limits.charge_policy_blocks", "true or false"),
        ("[openai]\ntimeout_seconds = '300'\n", "openai.timeout_seconds", "must be a number"),
        ("[openai]\nmodel = 2\n", "openai.model", "string in quotes"),
        ("[limits]\nquality_weights = { low = 'one', medium = 1, high = 4 }\n", "limits.quality_weights.low", "must be a number"),
        ("[limits]\nquality_weights = 4\n", "limits.quality_weights", "must be a table"),
        ("[discord]\nallowed_guilds = '123'\n", "discord.allowed_guilds", "must be a list"),
        ("[discord]\nallowed_guilds = [123]\n", "discord.allowed_guilds[0]", "string in quotes"),
        ("openai = 5\n", "openai", "must be a table"),
        ("[limits]\ntimezone = 'Mars/Olympus_Mons'\n", "limits.timezone", "IANA time zone"),
        ("[limits]\ntimezone = 'UTC+9'\n", "limits.timezone", "IANA time zone"),
        ("[openai]\nmax_concurrent_calls = 0\n", "openai.max_concurrent_calls", "greater than 0"),
        ("[limits]\ndaily_images_per_user = -1\n", "limits.daily_images_per_user", "0 or more"),
        ("[openai]\nmoderation = 'off'\n", "openai.moderation", '"auto" or "low"'),
        ("[defaults]\nquality = 'ultra'\n", "defaults.quality", "low, medium, high"),
        ("[openai]\nallowed_models = ['gpt-image-2', 'gpt-image-9']\n", "openai.allowed_models", '[models."gpt-image-9"]'),
        ("[openai]\ntransparent_model = 'gpt-image-2'\n", "openai.transparent_model", "does not take transparent backgrounds"),
        ('[models."gpt-image-2.6-sunburst"]\ntransparent = false\n', "openai.transparent_model", "transparent_model = \"\""),
        ('[models."gpt-image-2"]\nqualities = ["low", "ultra"]\n', 'models."gpt-image-2".qualities', "xhigh"),
        ('[models."gpt-image-2"]\nshutdown_date = "next year"\n', 'models."gpt-image-2".shutdown_date', "2026-12-01"),
        ('[models."gpt-image-2"]\nimage_ouput = 30\n', 'models."gpt-image-2".image_ouput', "Known keys here"),
        ('[models."gpt-image-2"]\ntransparent = "yes"\n', 'models."gpt-image-2".transparent', "true or false"),
        ('[models."gpt-image-3"]\ntransparent = true\n', 'models."gpt-image-3"', "image_output"),
        ("[limits]\nquality_weights = { low = 1, medium = 1 }\n", "limits.quality_weights", "'high'"),
    ],
)
def test_mistakes_name_file_key_and_expectation(tmp_path: Path, text: str, key: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.user_message
    assert str(path) in message
    assert key in message
    assert expected in message


def test_missing_price_for_the_model(tmp_path: Path) -> None:
    path = write(tmp_path, '[openai]\nmodel = "gpt-image-3"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.user_message
    assert str(path) in message
    assert "openai.model" in message  # the key the admin changed
    assert '[models."gpt-image-3"]' in message  # the table to add
    assert "image_output" in message  # and what goes in it


def test_missing_price_for_the_transparent_model(tmp_path: Path) -> None:
    path = write(tmp_path, '[openai]\ntransparent_model = "gpt-image-9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.user_message
    assert str(path) in message and "openai.transparent_model" in message
    assert '[models."gpt-image-9"]' in message


def test_incomplete_price_table(tmp_path: Path) -> None:
    path = write(tmp_path, '[pricing.models."gpt-image-2"]\ntext_input = 5.0\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = info.value.user_message
    assert str(path) in message
    assert "pricing.models.gpt-image-2" in message
    assert "image_output" in message


def test_missing_file_and_bad_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.toml")
    assert "nope.toml" in info.value.user_message and "IMAGINEBOT_CONFIG" in info.value.user_message
    path = write(tmp_path, "[openai\nmodel = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in info.value.user_message and "not valid TOML" in info.value.user_message


def test_transparent_model_may_be_turned_off(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[openai]\ntransparent_model = ""\n'))
    assert cfg.openai.transparent_model == ""


def test_the_catalog_is_data_an_admin_corrects_key_by_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
[openai]
transparent_model = "gpt-image-2.5-flare"
allowed_models = ["gpt-image-2", "gpt-image-2.6-flare", "gpt-image-4"]

[models."gpt-image-2.6-flare"]
qualities = ["low", "medium", "high", "auto"]   # xhigh/max turned out not to exist
image_output = 28

[models."gpt-image-4"]
text_input = 4
image_input = 6
image_output = 20
transparent = true
shutdown_date = "2027-06-30"
replacement = "gpt-image-5"
""",
    )
    cfg = load_config(path)
    default = Config()
    flare = cfg.models["gpt-image-2.6-flare"]
    assert flare.qualities == ("low", "medium", "high", "auto") and flare.image_output == 28.0
    assert flare.transparent and flare.image_input == default.models["gpt-image-2.6-flare"].image_input
    four = cfg.models["gpt-image-4"]
    assert (four.transparent, four.shutdown_date, four.replacement, four.any_size) == (True, "2027-06-30", "gpt-image-5", True)
    assert cfg.openai.allowed_models == ("gpt-image-2", "gpt-image-2.6-flare", "gpt-image-4")


def test_built_in_catalog_knows_what_shut_down() -> None:
    cfg = Config()
    assert (cfg.openai.model, cfg.openai.transparent_model, cfg.openai.allowed_models) == (
        "gpt-image-2", "gpt-image-2.6-sunburst", ("gpt-image-2",))  # fmt: skip
    for model in ("gpt-image-1.5", "gpt-image-1-mini", "chatgpt-image-latest"):
        assert cfg.models[model].shutdown_date == "2026-12-01"
        assert cfg.models[model].replacement.startswith("gpt-image-2.6-")
    assert cfg.models["gpt-image-1"].shutdown_date == "2026-10-23"
    assert not cfg.models["gpt-image-2"].transparent and cfg.models["gpt-image-2.6-sunburst"].transparent
    assert "xhigh" not in cfg.models["gpt-image-2"].qualities and "max" in cfg.models["gpt-image-2.5-flare"].qualities
    assert {"xhigh", "max"} <= set(cfg.limits.quality_weights)
