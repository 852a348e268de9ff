"""Composition: the settings and config become a running ImageService.

Every mistake an operator can make here (no key, a database path that can't
be opened) becomes a UsageError naming the variable: exit 2, one line.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from bots.settings import Settings
from core.config import Config, load_config
from core.errors import ImagineError, ProviderError
from core.provider import OpenAIProvider, make_client
from core.service import ImageService
from core.store import DATABASE_FAULTS, Store, is_postgres, redact, store_for
from core.store_schema import SchemaTooNew


class UsageError(Exception):
    """Wrong invocation or missing setting: exit 2 with this text."""


def read_config(settings: Settings) -> Config:
    path = Path(settings.config_path)
    if not settings.config_path_explicit and not path.exists():
        return Config()  # no config file where we run: built-in defaults
    return load_config(path)


def database_problem(db: str, *, must_exist: bool) -> str | None:
    """What is wrong with IMAGINEBOT_DB before SQLite is asked (its own words,
    "unable to open database file", say neither what nor where)."""
    if "://" in db:
        return None
    path = Path(db)
    if path.is_dir():
        return f"IMAGINEBOT_DB={db} is a directory. Set IMAGINEBOT_DB to a file path, e.g. {path / 'imaginebot.db'}."
    if path.exists():
        return None
    if must_exist:
        return (f"no database at {path.resolve()} (IMAGINEBOT_DB). Nothing has been recorded there yet, "
                "or IMAGINEBOT_DB points somewhere else: set it to the bot's database file.")  # fmt: skip
    parent = path.resolve().parent
    if not parent.is_dir():
        return f"IMAGINEBOT_DB={db}: the directory {parent} does not exist. Create it, or set IMAGINEBOT_DB to a file in an existing directory."
    return None


def database_error(db: str, e: BaseException) -> str:
    """One line for an exception the database raised while opening IMAGINEBOT_DB."""
    text = str(e).strip()
    if is_postgres(db):
        # The server's own words say what is wrong (refused, no such database, password);
        # the URL is shown without its password.
        first = text.splitlines()[0] if text else type(e).__name__
        return (f"IMAGINEBOT_DB={redact(db)} can't be opened (PostgreSQL says: {first}). Check that the server is up "
                "and the URL's host, port, database, user and password are right.")  # fmt: skip
    if isinstance(e, sqlite3.DatabaseError) and "not a database" in text:
        return (f"IMAGINEBOT_DB={db} is not a database (SQLite says: {text}). Point IMAGINEBOT_DB at the bot's "
                "database file, or at a new path to create one there.")  # fmt: skip
    if "readonly" in text or getattr(e, "errno", None) in (errno.EACCES, errno.EROFS, errno.EPERM):
        return (f"IMAGINEBOT_DB={db} is in a read-only place ({text}): the bot must be able to write the file and "
                "its directory. Fix the permissions, or set IMAGINEBOT_DB to a writable path.")  # fmt: skip
    if "unable to open" in text:  # the directory exists (checked before): it is the permissions
        return (f"IMAGINEBOT_DB={db} can't be created or opened ({text}): its directory is probably read-only for "
                "this user. Make the file and its directory writable, or set IMAGINEBOT_DB to a writable path.")  # fmt: skip
    return f"IMAGINEBOT_DB={db} can't be opened ({type(e).__name__}: {text}). Check the path and its permissions."


# What opening a database can raise that an operator must hear about in words.
OPEN_FAULTS: tuple[type[BaseException], ...] = (*DATABASE_FAULTS, SchemaTooNew)


async def open_store(settings: Settings, *, must_exist: bool = False) -> Store:
    """The database, opened, or a UsageError naming IMAGINEBOT_DB."""
    db = settings.db_path
    problem = database_problem(db, must_exist=must_exist)
    if problem:
        raise UsageError(problem)
    store = store_for(db)
    try:
        await store.open()
    except OPEN_FAULTS as e:
        await store.close()
        raise UsageError(database_error(db, e)) from None
    return store


async def open_service(settings: Settings, config: Config, *, need_openai: bool = True) -> ImageService:
    """`need_openai=False` for commands that make no model call (admin)."""
    if need_openai and not settings.openai_api_key:
        raise UsageError("OPENAI_API_KEY is not set. Set it in the environment or in a .env file.")
    problem = database_problem(settings.db_path, must_exist=False)
    if problem:
        raise UsageError(problem)
    key = settings.openai_api_key or "no-key:this-command-makes-no-openai-call"
    client = make_client(key, base_url=settings.openai_base_url, timeout_seconds=config.openai.timeout_seconds)
    provider = OpenAIProvider(client, config)
    try:
        return await ImageService.open(config, settings.db_path, provider)
    except OPEN_FAULTS as e:
        await provider.close()
        raise UsageError(database_error(settings.db_path, e)) from None


def base_url_hint(settings: Settings) -> str | None:
    """OPENAI_BASE_URL without /v1 makes every call a 404 ("model not
    available"): name the likely cause instead."""
    url = settings.openai_base_url
    if not url or urlsplit(url).path.rstrip("/").endswith("/v1"):
        return None
    return (f"OPENAI_BASE_URL is {url}, without /v1 at the end: OpenAI and most gateways serve the API under /v1 "
            f"(e.g. {url.rstrip('/')}/v1). That is probably what is wrong.")  # fmt: skip


def operator_message(settings: Settings, e: ImagineError) -> str:
    """A refused or failed model call as an operator needs it: the chat words,
    the request and its error, and the likely fix."""
    lines = [e.user_message]
    if e.detail:
        lines.append(f"  ({e.detail})")
    hint = base_url_hint(settings) if isinstance(e, ProviderError) else None
    if hint:
        lines.append("  " + hint)
    return "\n".join(lines)
