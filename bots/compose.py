"""Composition: the settings and config become a running ImageService."""

from __future__ import annotations

from pathlib import Path

from bots.settings import Settings
from core.config import Config, load_config
from core.provider import OpenAIProvider, make_client
from core.service import ImageService


class UsageError(Exception):
    """Wrong invocation or missing setting: exit 2 with this text."""


def read_config(settings: Settings) -> Config:
    path = Path(settings.config_path)
    if not settings.config_path_explicit and not path.exists():
        return Config()  # no config file where we run: built-in defaults
    return load_config(path)


async def open_service(settings: Settings, config: Config) -> ImageService:
    if not settings.openai_api_key:
        raise UsageError("OPENAI_API_KEY is not set. Set it in the environment or in a .env file.")
    client = make_client(settings.openai_api_key, base_url=settings.openai_base_url, timeout_seconds=config.openai.timeout_seconds)
    return await ImageService.open(config, settings.db_path, OpenAIProvider(client, config))


async def open_service(settings: Settings, config: Config) -> ImageService:
    if not settings.openai_api_key:
        raise UsageError("OPENAI_API_KEY is not set. Set it in the environment or in a .env file.")
    client = make_client(settings.openai_api_key, base_url=settings.openai_base_url, timeout_seconds=config.openai.timeout_seconds)
    return await ImageService.open(config, settings.db_path, OpenAIProvider(client, config))
