"""The environment, read once (SPEC §2). Nothing else reads os.environ."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from dotenv import dotenv_values

from bots.discord_shards import ShardPlan, shard_plan

DEFAULT_CONFIG = "config/imaginebot.toml"


@dataclass(frozen=True)
class Settings:
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_api_url: str | None = None
    discord_bot_token: str | None = None
    discord_api_url: str | None = None
    discord_shards: ShardPlan | None = None
    config_path: str = DEFAULT_CONFIG
    config_path_explicit: bool = False
    db_path: str = "imaginebot.db"
    port: int = 3000
    log_format: str = "text"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dotenv_path: str = ".env") -> Settings:
        """The process environment wins over a `.env` file in the working directory."""
        env: dict[str, str] = {k: v for k, v in dotenv_values(dotenv_path).items() if v is not None} if os.path.exists(dotenv_path) else {}
        env.update(os.environ if environ is None else environ)

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        port_text = get("PORT") or "3000"
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"PORT must be a number, got {port_text!r}.") from None
        return cls(
            openai_api_key=get("OPENAI_API_KEY"),
            openai_base_url=get("OPENAI_BASE_URL"),
            slack_bot_token=get("SLACK_BOT_TOKEN"),
            slack_signing_secret=get("SLACK_SIGNING_SECRET"),
            slack_app_token=get("SLACK_APP_TOKEN"),
            slack_api_url=get("SLACK_API_URL"),
            discord_bot_token=get("DISCORD_BOT_TOKEN"),
            discord_api_url=get("DISCORD_API_URL"),
            discord_shards=shard_plan(get("DISCORD_SHARD_COUNT"), get("DISCORD_SHARD_IDS")),
            config_path=get("IMAGINEBOT_CONFIG") or DEFAULT_CONFIG,
            config_path_explicit=get("IMAGINEBOT_CONFIG") is not None,
            # DATABASE_URL: what Heroku, Render and Railway set for their PostgreSQL add-ons.
            db_path=get("IMAGINEBOT_DB") or get("DATABASE_URL") or "imaginebot.db",
            port=port,
            log_format=(get("LOG_FORMAT") or "text").lower(),
        )

    def secrets(self) -> list[str]:
        """Values that must never reach a log line."""
        return [
            s
            for s in (
                self.openai_api_key,
                self.slack_bot_token,
                self.slack_signing_secret,
                self.slack_app_token,
                self.discord_bot_token,
            )
            if s
        ]

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token)

    @property
    def discord_enabled(self) -> bool:
        return bool(self.discord_bot_token)
