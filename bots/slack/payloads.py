"""Reading Slack's payloads: who asked, where the answer goes, and the text.

Slack escapes `&`, `<` and `>` in text it sends and writes mentions as
`<@U123>` or `<@U123|name>`; the helpers here undo exactly that, so the prompt
the model gets is what the person typed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from core.models import Requester, RequesterKey

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Origin:
    """Where one request came from, and so where its answers go."""

    team: str
    user: str
    channel: str
    thread_ts: str | None = None  # the thread the result and placeholder go to
    response_url: str | None = None  # slash commands and shortcuts: private answers work even where I'm not a member
    # The thread the person was writing in (None: the channel itself). Private
    # answers go there: an ephemeral in a thread nobody has open goes unseen.
    user_thread_ts: str | None = None

    def notify(self) -> dict[str, Any]:
        """Stored with the job by the core, to tell the user after a crash."""
        return {
            "platform": "slack",
            "team": self.team,
            "user": self.user,
            "channel": self.channel,
            "thread_ts": self.thread_ts,
            "user_thread_ts": self.user_thread_ts,
            "slack_response_url": self.response_url,
        }


def requester(origin: Origin, *, display_name: str = "", is_admin: bool = False) -> Requester:
    return Requester(
        platform="slack",
        workspace=origin.team,
        user=origin.user,
        channel=origin.channel,
        display_name=display_name,
        is_admin=is_admin,
    )


def user_key(team: str, user: str) -> str:
    return str(RequesterKey("slack", team, user))


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The message text without the mention(s) of the bot, unescaped."""
    if bot_user_id:
        # The blanks after a mention go with it: "<@B> make it blue" → "make it blue".
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>[ \t]*", "", text)
    return unescape(text.strip())


def mentioned_users(text: str) -> list[str]:
    return _USER_MENTION.findall(text)


def command_origin(command: Mapping[str, Any]) -> Origin:
    return Origin(
        team=command.get("team_id", ""),
        user=command.get("user_id", ""),
        channel=command.get("channel_id", ""),
        # Slack sends thread_ts when the command was typed in a thread.
        thread_ts=command.get("thread_ts") or None,
        response_url=command.get("response_url") or None,
        user_thread_ts=command.get("thread_ts") or None,
    )


def team_of(body: Mapping[str, Any]) -> str:
    team = body.get("team")
    if isinstance(team, Mapping) and team.get("id"):
        return str(team["id"])
    user = body.get("user")
    if isinstance(user, Mapping) and user.get("team_id"):
        return str(user["team_id"])
    return str(body.get("team_id", ""))


def names_size(text: str) -> bool:
    """Whether the text sets --size (or its alias --s) itself; mirrors how
    core.options.parse_command reads flags, "—" included."""
    for token in text.split():
        if token.startswith(("--", "—")):
            name = token.lstrip("-—").partition("=")[0].lower()
            if name in ("size", "s"):
                return True
    return False
