"""The application commands: names, options, choices and descriptions.

Each callback only hands its parsed options to the adapter. Annotations are
real objects here (no `from __future__ import annotations`): discord.py reads
them to build the options, and the count's upper bound comes from the config.
"""

import inspect
from typing import TYPE_CHECKING, Any, Callable, Coroutine, Optional, TypeVar

import discord
from discord import app_commands

from core.config import Config
from core.errors import InvalidInput
from core.options import BACKGROUNDS, FORMATS, SIZE_PRESETS, normalize_size, pickable_qualities

if TYPE_CHECKING:
    from bots.discord.bot import DiscordAdapter

F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, None]])
MAX_PROMPT_OPTION = 6000  # Discord's limit for a string option
_SIZE_LABELS = {
    "square": "Square",
    "portrait": "Portrait",
    "landscape": "Landscape",
    "2k": "2K square",
    "wide-2k": "2K wide",
    "tall-2k": "2K tall",
}
_QUALITY_LABELS = {
    "low": "Low (fast, cheap)",
    "medium": "Medium",
    "high": "High (slow, counts more)",
    "xhigh": "Extra high (newer models only)",
    "max": "Max (newer models only)",
    "auto": "Auto",
}
_BACKGROUND_LABELS = {"auto": "Auto", "opaque": "Opaque", "transparent": "Transparent (PNG or WebP)"}


def size_choices(config: Config) -> list[app_commands.Choice[str]]:
    """The presets this config allows (2K ones only where they are allowed), then "auto"."""
    choices = []
    for preset, size in SIZE_PRESETS.items():
        try:
            # Check the WxH, not the preset name: core.options returns presets unchecked.
            normalize_size(size, config)
        except InvalidInput:
            continue
        label = f"{_SIZE_LABELS.get(preset, preset)} ({size.replace('x', '×')})"
        choices.append(app_commands.Choice(name=label, value=preset))
    choices.append(app_commands.Choice(name="Auto (the model picks)", value="auto"))
    return choices


def quality_choices(config: Config) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=_QUALITY_LABELS.get(q, q), value=q) for q in pickable_qualities(config)]


def background_choices() -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=_BACKGROUND_LABELS.get(b, b), value=b) for b in BACKGROUNDS]


def model_choices(config: Config) -> list[app_commands.Choice[str]]:
    """`openai.allowed_models`: the `model` option appears only when the admin allows more than one."""
    return [app_commands.Choice(name=m, value=m) for m in config.openai.allowed_models]


def format_choices() -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=f.upper(), value=f) for f in FORMATS]


def _without_options(*names: str) -> Callable[[F], F]:
    """Leave optional parameters out of the command Discord sees (discord.py
    reads the signature): they keep their default when called."""

    def hide(func: F) -> F:
        signature = inspect.signature(func)
        func.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[p for p in signature.parameters.values() if p.name not in names]
        )
        return func

    return hide


def register_commands(tree: app_commands.CommandTree[discord.Client], adapter: "DiscordAdapter", config: Config) -> None:
    Count = app_commands.Range[int, 1, config.limits.max_images_per_request]
    Prompt = app_commands.Range[str, 1, MAX_PROMPT_OPTION]
    sizes, qualities, formats = size_choices(config), quality_choices(config), format_choices()
    backgrounds, models = background_choices(), model_choices(config)
    pick_model = len(models) > 1  # an admin exposes `model` by allowing more than one
    imagine_help = {
        "prompt": "What to draw, in any language",
        "size": "Shape and size of the image",
        "quality": "Higher quality takes longer and may count more against your daily limit",
        "count": "How many images",
        "format": "File format",
        "background": "Transparent needs PNG or WebP",
    }
    if config.relax.enabled:
        imagine_help["relax"] = "Half price through the Batch API: posted here when ready (can take hours)"
    edit_help = {
        "image": "The image to edit",
        "prompt": "What to change, in any language",
        "image2": "Another image to use",
        "image3": "Another image to use",
        "mask": "PNG with transparent areas marking where to edit (same size as the image)",
        "size": "Shape and size of the result",
        "quality": "Higher quality takes longer and may count more against your daily limit",
        "count": "How many versions",
        "background": "Transparent gives a PNG with see-through areas",
    }
    model_help = {"model": "The image model (only those this server allows)"} if pick_model else {}
    model_choice = {"model": models} if pick_model else {}

    hidden = () if pick_model else ("model",)
    imagine_hidden = hidden if config.relax.enabled else (*hidden, "relax")  # relax off: no option to offer

    @app_commands.command(name="imagine", description="Make images from a text prompt")
    @app_commands.describe(**imagine_help, **model_help)
    @app_commands.choices(size=sizes, quality=qualities, format=formats, background=backgrounds, **model_choice)
    @_without_options(*imagine_hidden)
    async def imagine(
        interaction: discord.Interaction,
        prompt: Prompt,
        size: Optional[str] = None,
        quality: Optional[str] = None,
        count: Optional[Count] = None,
        format: Optional[str] = None,
        background: Optional[str] = None,
        model: Optional[str] = None,
        relax: Optional[bool] = None,
    ) -> None:
        await adapter.on_imagine(interaction, prompt, size=size, quality=quality, count=count, format=format,
                                 background=background, model=model, relax=bool(relax))  # fmt: skip

    @app_commands.command(name="edit", description="Change an image you upload, following your instruction")
    @app_commands.describe(**edit_help, **model_help)
    @app_commands.choices(size=sizes, quality=qualities, background=backgrounds, **model_choice)
    @_without_options(*hidden)
    async def edit(
        interaction: discord.Interaction,
        image: discord.Attachment,
        prompt: Prompt,
        image2: Optional[discord.Attachment] = None,
        image3: Optional[discord.Attachment] = None,
        mask: Optional[discord.Attachment] = None,
        size: Optional[str] = None,
        quality: Optional[str] = None,
        count: Optional[Count] = None,
        background: Optional[str] = None,
        model: Optional[str] = None,
    ) -> None:
        images = [a for a in (image, image2, image3) if a is not None]
        await adapter.on_edit(interaction, prompt, images, mask=mask, size=size, quality=quality, count=count,
                              background=background, model=model)  # fmt: skip

    @app_commands.command(name="quota", description="How many images you can still make today")
    async def quota(interaction: discord.Interaction) -> None:
        await adapter.on_quota(interaction)

    @app_commands.command(name="history", description="Your last 10 image jobs, with links and Again buttons")
    async def history(interaction: discord.Interaction) -> None:
        await adapter.on_history(interaction)

    admin = app_commands.Group(
        name="imagine-admin",
        description="Limits and budget for this server",
        guild_only=True,
        default_permissions=discord.Permissions(manage_guild=True),
    )

    @admin.command(name="limit", description="Set one member's daily image limit")
    @app_commands.describe(user="The member", daily="Images per day; leave empty to go back to the default")
    async def admin_limit(
        interaction: discord.Interaction, user: discord.User, daily: Optional[app_commands.Range[int, 0, 10_000]] = None
    ) -> None:
        await adapter.on_admin_limit(interaction, user, daily)

    @admin.command(name="role", description="Set the daily image limit of a role's members")
    @app_commands.describe(role="The role", daily="Images per day; leave empty to go back to the default")
    async def admin_role(
        interaction: discord.Interaction, role: discord.Role, daily: Optional[app_commands.Range[int, 0, 10_000]] = None
    ) -> None:
        await adapter.on_admin_role(interaction, role, daily)

    @admin.command(name="reset", description="Forgive a member's usage today and lift any pause")
    @app_commands.describe(user="The member")
    async def admin_reset(interaction: discord.Interaction, user: discord.User) -> None:
        await adapter.on_admin_reset(interaction, user)

    @admin.command(name="budget", description="Set this server's daily spending budget in US dollars (0 = none)")
    @app_commands.describe(usd="US dollars per day; 0 removes the budget")
    async def admin_budget(interaction: discord.Interaction, usd: app_commands.Range[float, 0, 100_000]) -> None:
        await adapter.on_admin_budget(interaction, usd)

    @admin.command(name="history", description="A member's last 10 image jobs")
    @app_commands.describe(user="The member")
    async def admin_history(interaction: discord.Interaction, user: discord.User) -> None:
        await adapter.on_admin_history(interaction, user)

    @admin.command(name="pace", description="The images-per-minute pace (configured or learned) and the queue")
    async def admin_pace(interaction: discord.Interaction) -> None:
        await adapter.on_admin_pace(interaction)

    async def edit_menu(interaction: discord.Interaction, message: discord.Message) -> None:
        await adapter.on_edit_menu(interaction, message)

    tree.add_command(imagine)
    tree.add_command(edit)
    tree.add_command(quota)
    tree.add_command(history)
    tree.add_command(admin)
    tree.add_command(app_commands.ContextMenu(name="Edit image", callback=edit_menu))
