"""Image settings: size presets and the WxH rules, quality, n, format, and the
one `--flag value` parser used by Slack's /imagine and the CLI."""

from __future__ import annotations

import re
from dataclasses import replace

from core.config import QUALITY_NAMES, Config
from core.errors import InvalidInput
from core.models import ImageOptions

SIZE_PRESETS: dict[str, str] = {
    "square": "1024x1024",
    "portrait": "1024x1536",
    "landscape": "1536x1024",
    "2k": "2048x2048",
    "wide-2k": "2048x1152",
    "tall-2k": "1152x2048",
}
QUALITIES = QUALITY_NAMES  # what a model takes is in its catalog entry
FORMATS = ("png", "jpeg", "webp")
BACKGROUNDS = ("auto", "opaque", "transparent")
MAX_PROMPT_CHARS = 32_000

# The API's rules for gpt-image-2's free sizes (SPEC §1).
MIN_PIXELS = 655_360
MAX_PIXELS = 8_294_400
MAX_EDGE = 3840
MAX_ASPECT = 3.0
# Models whose catalog entry says any_size = false take only these.
CLASSIC_SIZES = ("auto", "1024x1024", "1536x1024", "1024x1536")

_WXH = re.compile(r"^(\d{2,5})\s*[x×]\s*(\d{2,5})$")
_FLAGS = ("size", "quality", "n", "format", "background", "model", "relax")
# Flags that take no value: their presence says yes.
_SWITCHES = ("relax",)
# "—" and "–" count as "--": phones and macOS turn a typed double dash into a dash.
_FLAG_PREFIXES = ("--", "—", "–")
_FLAG_ALIASES = {"count": "n", "q": "quality", "s": "size", "fmt": "format", "bg": "background"}


def normalize_size(value: str, config: Config) -> str:
    """A preset name or WxH → "WxH" (or "auto"), checked against the API's rules."""
    v = value.strip().lower()
    # Presets go through the same checks: "2k" must not slip past a server
    # that refuses 2048x2048 (limits.allow_2k, limits.max_pixels).
    v = SIZE_PRESETS.get(v, v)
    if v == "auto":
        return "auto"
    m = _WXH.match(v)
    if not m:
        presets = ", ".join(SIZE_PRESETS)
        raise InvalidInput(f"I don't know the size “{value}”. Use one of {presets}, auto, or WIDTHxHEIGHT like 1536x1024.")
    w, h = int(m.group(1)), int(m.group(2))
    size = f"{w}x{h}"
    # Too large first: "5000x5000 is too large" helps more than "multiples of 16".
    if max(w, h) > MAX_EDGE:
        raise InvalidInput(f"The size {size} is too large: the longest edge can be at most {MAX_EDGE} pixels.")
    if w % 16 or h % 16:
        raise InvalidInput(f"The size {size} doesn't work: both width and height must be multiples of 16 (for example 1536x1024).")
    if max(w, h) / min(w, h) > MAX_ASPECT:
        raise InvalidInput(f"The size {size} is too narrow: the long edge can be at most 3 times the short edge.")
    max_pixels = min(MAX_PIXELS, config.limits.max_pixels)
    if not MIN_PIXELS <= w * h <= max_pixels:
        raise InvalidInput(
            f"The size {size} has {w * h:,} pixels; it must be between {MIN_PIXELS:,} (about 810x810) "
            f"and {max_pixels:,} pixels."
        )
    if not config.limits.allow_2k and w * h > 1536 * 1024:
        raise InvalidInput("Sizes above 1536x1024 are turned off on this server. Try square, portrait or landscape.")
    return size


def build_options(
    config: Config,
    *,
    size: str | None = None,
    quality: str | None = None,
    n: int | str | None = None,
    format: str | None = None,
    background: str | None = None,
    compression: int | None = None,
    model: str | None = None,
    relax: bool = False,
) -> ImageOptions:
    """Validated options; None means the config's default. Everything the
    model that will make the images can't do is refused here, before any
    money is spent (its catalog entry says what it can do)."""
    d = config.defaults
    size_v = normalize_size(size if size is not None else d.size, config)
    quality_v = (quality if quality is not None else d.quality).strip().lower()
    if quality_v not in QUALITIES:
        raise InvalidInput(f"I don't know the quality “{quality}”. Use {_or(config.models[config.openai.model].qualities)}.")
    max_n = config.limits.max_images_per_request
    if n is None:
        n_v = d.n
    else:
        try:
            n_v = int(str(n).strip())
        except ValueError:
            raise InvalidInput(f"The number of images must be a whole number from 1 to {max_n}, not “{n}”.") from None
    if not 1 <= n_v <= max_n:
        raise InvalidInput(f"You can ask for 1 to {max_n} images at a time, not {n_v}.")
    fmt = (format if format is not None else d.format).strip().lower()
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in FORMATS:
        raise InvalidInput(f"I don't know the format “{format}”. Use png, jpeg or webp.")
    bg = (background or "auto").strip().lower()
    if bg not in BACKGROUNDS:
        raise InvalidInput(f"I don't know the background “{background}”. Use auto, opaque or transparent.")
    picked = _check_model_choice(config, model)
    routed = route_model(config, picked, bg)
    info = config.models[routed]
    if bg == "transparent" and fmt == "jpeg":
        raise InvalidInput("JPEG can't be transparent. Use --format png or --format webp with a transparent background.")
    if quality_v not in info.qualities:
        raise InvalidInput(f"{_made_by(routed, bg)} doesn't offer {quality_v} quality. Use {_or(info.qualities)}.")
    if not info.any_size and size_v not in CLASSIC_SIZES:
        raise InvalidInput(
            f"{_made_by(routed, bg)} makes only square (1024x1024), landscape (1536x1024) or portrait (1024x1536) images."
        )
    if compression is not None:
        if fmt == "png":
            raise InvalidInput("Compression applies only to jpeg and webp images.")
        if not 0 <= compression <= 100:
            raise InvalidInput("Compression must be between 0 and 100.")
    return ImageOptions(
        size=size_v, quality=quality_v, n=n_v, format=fmt, background=bg, compression=compression, model=picked,
        size_from_defaults=size is None, relax=relax,
    )



def _check_model_choice(config: Config, model: str | None) -> str:
    """`--model` may name only what the admin allows: refused before any call."""
    picked = (model or "").strip()
    if not picked:
        return ""
    allowed = config.openai.allowed_models
    for name in allowed:
        if name.lower() == picked.lower():
            return name
    if len(allowed) == 1:
        raise InvalidInput(f"This server makes images only with {allowed[0]}, not “{model}”. Leave out --model.")
    raise InvalidInput(f"I can't use the model “{model}” here. You can pick {_or(allowed)}.")


def route_model(config: Config, picked: str, background: str) -> str:
    """The model that makes the images: the one picked with --model, else the
    transparent model for transparent backgrounds (gpt-image-2 refuses them),
    else openai.model. Refuses what the catalog says the model can't do."""
    transparent = config.openai.transparent_model
    if background != "transparent":
        return picked or config.openai.model
    if picked:
        if config.models[picked].transparent:
            return picked
        other = f" Leave out --model to get one from {transparent}." if transparent else ""
        raise InvalidInput(f"{picked} can't make transparent backgrounds.{other}")
    if not transparent:
        raise InvalidInput("Transparent backgrounds are turned off on this server. Leave out --background transparent.")
    return transparent


def _made_by(model: str, background: str) -> str:
    return f"Transparent backgrounds come from {model}, which" if background == "transparent" else model


def _or(items: tuple[str, ...] | list[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]


def pickable_qualities(config: Config) -> tuple[str, ...]:
    """The qualities a menu should offer: those of openai.model and the
    allowed models (xhigh/max only when the catalog gives them to one)."""
    usable = {config.openai.model, *config.openai.allowed_models}
    return tuple(q for q in QUALITIES if any(q in config.models[m].qualities for m in usable))


def check_options(config: Config, options: ImageOptions) -> ImageOptions:
    """`options` checked by the same rules as `build_options` (presets become
    WxH). The service calls this on whatever an adapter hands it, so options
    built by hand can never send a size the API refuses, or spend money on it."""
    checked = build_options(
        config,
        size=options.size,
        quality=options.quality,
        n=options.n,
        format=options.format,
        background=options.background,
        compression=options.compression,
        model=options.model,
        relax=options.relax,
    )
    return replace(checked, size_from_defaults=options.size_from_defaults)


def check_prompt(prompt: str) -> str:
    """The prompt as typed (never rewritten), or InvalidInput."""
    if not prompt or not prompt.strip():
        raise InvalidInput("Tell me what to draw: the prompt is empty. For example: “a red fox in the snow”.")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"That prompt is {len(prompt):,} characters long; the most the model takes is {MAX_PROMPT_CHARS:,}. Please shorten it."
        )
    return prompt


def parse_command(text: str, config: Config) -> tuple[str, ImageOptions]:
    """Split "a red fox --size landscape --n 2" into the prompt and options.

    Flags may stand anywhere; the rest is the prompt, kept exactly as typed
    (inner spacing and non-Latin text included): flag tokens are cut out of
    the original string rather than re-joining split words. "—" counts as
    "--" because phones and macOS turn a typed double dash into an em dash.
    """
    tokens = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
    flags: dict[str, str] = {}
    cut: list[tuple[int, int]] = []
    i = 0
    while i < len(tokens):
        start, end, tok = tokens[i]
        if not tok.startswith(_FLAG_PREFIXES) or tok in _FLAG_PREFIXES:
            i += 1
            continue
        body = tok.lstrip("-—–")
        name, eq, value = body.partition("=")
        name = _FLAG_ALIASES.get(name.lower(), name.lower())
        if name not in _FLAGS and not tok.startswith("--"):
            # "a fox —the best one": a dash that is punctuation, not an option.
            i += 1
            continue
        if name not in _FLAGS:
            known = ", ".join("--" + f for f in _FLAGS)
            raise InvalidInput(f"I don't know the option “{tok}”. You can use {known}.")
        if name in flags:
            raise InvalidInput(f"The option --{name} appears twice. Give it once.")
        if name in _SWITCHES:
            if eq:
                raise InvalidInput(f"The option --{name} takes no value: just add --{name}.")
            flags[name] = "yes"
            cut.append((start, end))
            i += 1
            continue
        if not eq:
            if i + 1 >= len(tokens) or tokens[i + 1][2].startswith(_FLAG_PREFIXES):
                raise InvalidInput(f"The option --{name} needs a value, for example --{name} {_example(name)}.")
            i += 1
            value, end = tokens[i][2], tokens[i][1]
        if not value:
            raise InvalidInput(f"The option --{name} needs a value, for example --{name} {_example(name)}.")
        flags[name] = value
        cut.append((start, end))
        i += 1
    prompt = text
    for start, end in reversed(cut):
        # Take the blanks that followed the flag too, so "fox --n 2 in snow"
        # becomes "fox in snow", not "fox  in snow".
        while end < len(prompt) and prompt[end] in " \t":
            end += 1
        prompt = prompt[:start] + prompt[end:]
    prompt = check_prompt(prompt.strip())
    options = build_options(
        config,
        size=flags.get("size"),
        quality=flags.get("quality"),
        n=flags.get("n"),
        format=flags.get("format"),
        background=flags.get("background"),
        model=flags.get("model"),
        relax="relax" in flags,
    )
    return prompt, options


def _example(flag: str) -> str:
    examples = {"size": "landscape", "quality": "high", "n": "2", "format": "webp", "background": "transparent"}
    return examples.get(flag, "gpt-image-2")
