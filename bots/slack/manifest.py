"""The Slack app manifest matching this build: a new admin creates the app
from it in one paste (api.slack.com/apps → Create New App → From a manifest).

The commands, shortcut, events and scopes come from the same constants the
adapter registers and `imaginebot doctor` checks, so they cannot drift apart.
Written as YAML by hand (block style, every string JSON-quoted, which YAML
reads as-is), since PyYAML is not a dependency.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from bots.slack import render
from bots.slack.app import COMMAND_ADMIN, COMMAND_HISTORY, COMMAND_IMAGINE, COMMAND_QUOTA, SUBSCRIBED_EVENTS

EVENTS_PATH = "/slack/events"

# Bot scopes the code uses, each with what it is for (doctor names the reason).
BOT_SCOPES: dict[str, str] = {
    "commands": "the /imagine commands, the Edit image shortcut and the buttons under results",
    "chat:write": "posting progress, results and private replies",
    "files:write": "uploading the images, and deleting them (Delete under a result)",
    "files:read": "reading the images people share, to edit them",
    "app_mentions:read": "editing when someone mentions the bot",
    "channels:history": "finding the bot's image in a thread (public channels)",
    "groups:history": "finding the bot's image in a thread (private channels)",
    "mpim:history": "finding the bot's image in a thread (group messages)",
    "users:read": "checking who is a workspace admin (users.info)",
}


def manifest_data(request_url: str | None) -> dict[str, Any]:
    """`request_url`: the public HTTPS URL of this bot (…/slack/events, or just
    the origin); None for Socket Mode, which needs no public URL."""
    url = _events_url(request_url) if request_url else None
    with_url: dict[str, Any] = {"url": url} if url else {}
    commands = [
        {
            "command": COMMAND_IMAGINE,
            **with_url,
            "description": "Make an image with gpt-image-2",
            "usage_hint": "a red fox in the snow --size landscape --quality high --n 2",
            # The prompt must arrive exactly as typed.
            "should_escape": False,
        },
        {
            "command": COMMAND_QUOTA,
            **with_url,
            "description": "How many images you have left today",
            "usage_hint": "[@someone (admins)]",
            # Mentions arrive as <@U123|name>, i.e. as user ids.
            "should_escape": True,
        },
        {
            "command": COMMAND_HISTORY,
            **with_url,
            "description": "Your last 10 image jobs, with links and Again buttons",
            "should_escape": True,
        },
        {
            "command": COMMAND_ADMIN,
            **with_url,
            "description": "Limits, budget, history and pace (workspace admins)",
            "usage_hint": "limit @someone 20 | reset @someone | budget 25 | history @someone | pace",
            "should_escape": True,
        },
    ]
    settings: dict[str, Any] = {
        "event_subscriptions": {**({"request_url": url} if url else {}), "bot_events": list(SUBSCRIBED_EVENTS)},
        "interactivity": {"is_enabled": True, **({"request_url": url} if url else {})},
        "org_deploy_enabled": False,
        "socket_mode_enabled": url is None,
        "token_rotation_enabled": False,
    }
    return {
        "display_information": {
            "name": "imaginebot",
            "description": "Images from OpenAI's gpt-image-2, right in Slack",
            "background_color": "#2c2d30",
        },
        "features": {
            "bot_user": {"display_name": "imaginebot", "always_online": True},
            "slash_commands": commands,
            "shortcuts": [
                {
                    "name": "Edit image",
                    "type": "message",
                    "callback_id": render.EDIT_SHORTCUT_CALLBACK_ID,
                    "description": "Edit this message's images with gpt-image-2",
                }
            ],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": settings,
    }


def slack_manifest(request_url: str | None) -> str:
    return "\n".join(_yaml(manifest_data(request_url), 0)) + "\n"


def _events_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.path in ("", "/"):
        return url.rstrip("/") + EVENTS_PATH
    return url


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)


def _yaml(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_yaml(item, indent + 1))
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}: {json.dumps(item)}")  # empty: [] or {}
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    else:
        for item in value:
            if isinstance(item, dict):
                first, *rest = _yaml(item, indent + 1)
                lines.append(f"{pad}- {first.lstrip()}")
                lines.extend(rest)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines
