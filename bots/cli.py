"""`imaginebot`: the console script, and the only place that composes the
service from the environment.

Exit status: 0 success; 2 usage or config error; 1 anything else, including
a refused request (its friendly message goes to stderr).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import logging
import sys
import tempfile
from pathlib import Path
from typing import Sequence, cast

from bots.admin_cli import add_admin_parser, cli_requester, run_admin
from bots.compose import UsageError, open_service, operator_message, read_config
from bots.settings import Settings
from core.config import Config
from core.errors import ConfigError, ImagineError, LimitReached
from core.models import ImageResult, Progress, Upload
from core.options import BACKGROUNDS, FORMATS, QUALITIES, build_options
from core.service import ImageService

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imaginebot", description="gpt-image-2 in Slack and Discord, with limits and budgets.")
    p.add_argument("--version", action="version", version=f"imaginebot {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", help="start every adapter whose credentials are set, plus the HTTP server")
    sub.add_parser("slack", help="start the Slack adapter only (plus the HTTP server)")
    sub.add_parser("discord", help="start the Discord adapter only (plus the HTTP server)")

    g = sub.add_parser("generate", help="generate images from the terminal, through the same limits and accounting")
    g.add_argument("prompt")
    _image_flags(g)
    g.add_argument("--format", choices=FORMATS)
    g.add_argument("--relax", action="store_true", help="through the Batch API at half price: waits for the batch (can take hours)")

    e = sub.add_parser("edit", help="edit images from the terminal")
    e.add_argument("images", nargs="+", metavar="IMAGE")
    e.add_argument("--prompt", required=True)
    e.add_argument("--mask")
    _image_flags(e)
    e.add_argument("--format", choices=FORMATS)

    u = sub.add_parser("usage", help="spend and images per user and per workspace/server")
    u.add_argument("--days", type=int, default=7, help="how many days back, today included (default 7)")
    u.add_argument("--json", action="store_true", help="print JSON instead of tables")

    mg = sub.add_parser("migrate", help="copy every row of this database (IMAGINEBOT_DB) into another, empty one")
    mg.add_argument("--to", required=True, metavar="URL", help="a postgresql:// URL or a SQLite file path")
    doc = sub.add_parser("doctor", help="check config, database, OpenAI, Slack and Discord credentials")
    doc.add_argument("--live", action="store_true", help="also make one low-quality image (about $0.006): the only check of organisation verification and credit")
    m = sub.add_parser("slack-manifest", help="print the Slack app manifest for this build")
    m.add_argument("--url", help="public base URL of this bot (for HTTP mode), e.g. https://bot.example.com")
    d = sub.add_parser("discord-sync", help="register the Discord application commands")
    d.add_argument("--guild", type=int, help="register in one server only (instant) instead of globally")
    d.add_argument("--clear", action="store_true", help="remove the commands instead (from --guild's server, or the global ones)")
    add_admin_parser(sub)
    for subparser in sub.choices.values():
        subparser.set_defaults(usage_of=subparser)  # an unknown flag is shown with this command's usage
    return p


def _version() -> str:
    try:
        return importlib.metadata.version("imaginebot")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown (not installed)"


def _image_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", help="square, portrait, landscape, 2k, wide-2k, tall-2k, auto or WxH")
    p.add_argument("--quality", choices=QUALITIES)
    p.add_argument("--n", help="number of images")  # checked by the core, so "two" and "0" get the same answer
    p.add_argument("--background", choices=BACKGROUNDS, help="transparent needs --format png or webp")
    p.add_argument("--model", help="one of the config's openai.allowed_models")
    p.add_argument("--out", default=".", help="directory to write the images into (default: .)")


def main(argv: Sequence[str] | None = None) -> int:
    args, unknown = build_parser().parse_known_args(argv)
    if unknown:  # argparse would show the top-level usage; the command's own helps more
        args.usage_of.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        settings = Settings.from_env()
        config = read_config(settings)
        return asyncio.run(_dispatch(args, settings, config))
    except (ConfigError, UsageError, ValueError) as e:
        print(f"imaginebot: {getattr(e, 'user_message', None) or e}", file=sys.stderr)
        return EXIT_USAGE
    except ImagineError as e:  # a refused request: the words a chat user would see
        print(e.user_message, file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL


async def _dispatch(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    from bots.logs import setup_logging

    quiet = args.command in ("generate", "edit", "usage", "migrate", "slack-manifest", "doctor", "discord-sync")
    setup_logging(json_format=settings.log_format == "json", secrets=settings.secrets(), level=logging.WARNING if quiet else logging.INFO)
    if args.command in ("generate", "edit"):
        return await _make_images(args, settings, config)
    if args.command == "migrate":
        from bots.migrate import migrate_to

        return await migrate_to(settings, args.to)
    if args.command == "usage":
        from bots.usage_report import print_usage

        return await print_usage(settings, config, days=args.days, as_json=args.json)
    if args.command == "doctor":
        from bots.doctor import run_doctor

        return await run_doctor(settings, config, live=args.live)
    if args.command == "slack-manifest":
        from bots.slack.manifest import slack_manifest

        print(slack_manifest(args.url))
        return EXIT_OK
    if args.command == "discord-sync":
        return await _discord_sync(settings, config, args.guild, clear=args.clear)
    if args.command == "admin":
        return await run_admin(args, settings, config)
    from bots.runner import run

    return await run(settings, config, only=None if args.command == "run" else args.command)


async def _make_images(args: argparse.Namespace, settings: Settings, config: Config) -> int:
    options = build_options(
        config, size=args.size, quality=args.quality, n=args.n, format=args.format, background=args.background, model=args.model
    )
    out = writable_dir(args.out)  # before any money is spent
    service = await open_service(settings, config)
    try:
        await service.recover(tell_users=False)  # a bot tells a crashed bot's users; we can't
        requester = cli_requester()
        try:
            if args.command == "generate" and args.relax:
                from bots.cli_relax import wait_for_relax

                outcome = await wait_for_relax(service, requester, args.prompt, options)
                if isinstance(outcome, str):  # refunded: the words a chat user would get
                    print(outcome, file=sys.stderr)
                    return EXIT_FAIL
                result = outcome
            elif args.command == "generate":
                result = await service.generate(requester, args.prompt, options, progress=show_progress)
            else:
                images = [_read_upload(p) for p in args.images]
                mask = _read_upload(args.mask) if args.mask else None
                result = await service.edit(requester, args.prompt, images, options, mask=mask, progress=show_progress)
        except ImagineError as e:
            print(operator_message(settings, e), file=sys.stderr)
            if isinstance(e, LimitReached):
                print("  You run this bot: `imaginebot admin reset me` gives today's images back, "
                      "`imaginebot admin limit me N` sets your own limit.", file=sys.stderr)  # fmt: skip
            return EXIT_FAIL
        try:
            paths = _write_images(out, result)
        except OSError as e:
            # Paid for but not delivered: the images go back on the limit (the
            # same path a chat upload that fails takes), and the user is told.
            given_back = await service.delivery_failed(result.job_id, "write_failed")
            after = "They were given back to your daily limit" if given_back else "Nothing more was charged"
            print(f"imaginebot: couldn't write the images into {out} ({e.strerror or e}). {after}; "
                  f"job {result.job_id}.", file=sys.stderr)  # fmt: skip
            return EXIT_FAIL
        for path in paths:
            print(path)
        print(f"{len(result.images)} image(s), ${result.cost_usd:.4f}, job {result.job_id}", file=sys.stderr)
        return EXIT_OK
    finally:
        await service.close()


async def show_progress(progress: Progress) -> None:
    """What a chat user sees while waiting: the queue position, then the time
    so far (from the first report after a second; quick calls stay quiet)."""
    if progress.elapsed_seconds < 1:
        return
    where = f"queued, position {progress.position}" if progress.state == "queued" else "working"
    print(f"imaginebot: {where}, {progress.elapsed_seconds:.0f} s so far…", file=sys.stderr, flush=True)


def writable_dir(text: str) -> Path:
    """`--out`, created if missing and proven writable, or a UsageError."""
    out = Path(text)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass  # what os.access can't tell (root, read-only mounts, immutable directories)
    except OSError as e:
        raise UsageError(f"--out {out}: can't write there ({e.strerror or e}). Pick a directory you can write to.") from None
    return out


def _write_images(out: Path, result: ImageResult) -> list[Path]:
    """All the images, or none: a partial set is removed before the error goes up."""
    written: list[Path] = []
    try:
        for image in result.images:
            path = out / image.filename
            path.write_bytes(image.data)
            written.append(path)
    except OSError:
        for path in written:
            with contextlib.suppress(OSError):
                path.unlink()
        raise
    return written


def _read_upload(path: str) -> Upload:
    try:
        return Upload(filename=Path(path).name, data=Path(path).read_bytes())
    except OSError as e:
        raise UsageError(f"can't read {path}: {e.strerror}.") from None


async def _discord_sync(settings: Settings, config: Config, guild: int | None, *, clear: bool = False) -> int:
    """Registering commands needs only the Discord token: no OpenAI key, no database."""
    if not settings.discord_bot_token:
        raise UsageError("DISCORD_BOT_TOKEN is not set. Set it to register the Discord commands.")
    from discord.errors import LoginFailure

    from bots.discord import DiscordAdapter

    # The adapter reaches its service only when a command runs, never while syncing.
    adapter = DiscordAdapter(cast(ImageService, None), config, token=settings.discord_bot_token, api_url=settings.discord_api_url)
    try:
        count = await adapter.sync_commands(guild, clear=clear)
    except LoginFailure:
        raise UsageError("Discord refused DISCORD_BOT_TOKEN. Copy the bot token again from the Discord Developer Portal "
                         "(your application → Bot → Reset Token).") from None  # fmt: skip
    finally:
        await adapter.client.close()
    if clear:
        print(f"Removed the commands {f'of server {guild}' if guild else 'registered globally'}.")
        return EXIT_OK
    where = f"server {guild}" if guild else "every server (global commands can take up to an hour to appear)"
    print(f"Registered {count} commands for {where}.")
    return EXIT_OK
