"""The real bolt AsyncApp behind the adapter's aiohttp handler on loopback,
talking to the fake Slack Web API (and, through the core, the fake OpenAI).

Requests are signed exactly as Slack signs them (v0 HMAC-SHA256 of
"v0:<timestamp>:<body>" with the signing secret).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from bots.slack import SlackAdapter
from core.models import Requester
from core.service import ImageService
from tests.fakes.slack_server import BOT_TOKEN, TEAM_ID, FakeSlack

SIGNING_SECRET = "test-signing-secret-not-real"
CHANNEL = "C0GENERAL"


def sign(body: str, *, timestamp: int | None = None, secret: str = SIGNING_SECRET) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def png(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


@dataclass
class SlackBot:
    """The adapter served over HTTP, and helpers that speak Slack's payloads."""

    adapter: SlackAdapter
    slack: FakeSlack
    service: ImageService
    url: str
    http: aiohttp.ClientSession
    _triggers: int = field(default=0)

    async def post(self, body: str, content_type: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        all_headers = {"Content-Type": content_type, **sign(body), **(headers or {})}
        async with self.http.post(self.url, data=body.encode(), headers=all_headers) as resp:
            return resp.status, await resp.text()

    async def command(
        self,
        command: str,
        text: str,
        *,
        user: str = "UALICE",
        channel: str = CHANNEL,
        thread_ts: str | None = None,
    ) -> tuple[int, str, str]:
        """Send a slash command; returns (status, body, response_url)."""
        response_url = self.slack.response_url()
        self._triggers += 1
        form = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "team_domain": "fake",
            "channel_id": channel,
            "channel_name": "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": "A0FAKE",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{self._triggers}.trigger",
        }
        if thread_ts:
            form["thread_ts"] = thread_ts
        status, body = await self.post(urlencode(form), "application/x-www-form-urlencoded")
        return status, body, response_url

    async def interactive(self, payload: dict[str, Any]) -> tuple[int, str]:
        body = urlencode({"payload": json.dumps(payload)})
        return await self.post(body, "application/x-www-form-urlencoded")

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry_num: int | None = None
    ) -> tuple[int, str]:
        envelope = {
            "token": "legacy-verification-token",
            "team_id": TEAM_ID,
            "api_app_id": "A0FAKE",
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [{"team_id": TEAM_ID, "user_id": self.slack.bot_user_id, "is_bot": True}],
        }
        headers = {"X-Slack-Retry-Num": str(retry_num), "X-Slack-Retry-Reason": "http_timeout"} if retry_num else None
        return await self.post(json.dumps(envelope), "application/json", headers)

    def requester(self, user: str = "UALICE") -> Requester:
        return Requester(platform="slack", workspace=TEAM_ID, user=user)

    async def settle(self) -> None:
        """Wait for every job the adapter started (a hang fails the test)."""
        assert await self.adapter.wait_for_jobs(timeout=30), "Slack jobs still running after 30 s"


MakeBot = Callable[..., Awaitable[SlackBot]]


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        fake.add_user("UALICE")
        fake.add_user("UBOB")
        fake.add_user("UADMIN", is_admin=True)
        yield fake


@pytest.fixture
async def make_bot(make_service: Any, slack: FakeSlack) -> AsyncIterator[MakeBot]:
    """`await make_bot(limits={...})`: a SlackAdapter on a fresh service, served at bot.url."""
    made: list[tuple[SlackAdapter, TestServer, aiohttp.ClientSession]] = []

    async def make(**overrides: Any) -> SlackBot:
        service = await make_service(**overrides)
        adapter = SlackAdapter(
            service, service.config, token=BOT_TOKEN, signing_secret=SIGNING_SECRET, api_url=slack.api_url
        )
        app = web.Application()
        app.router.add_post("/slack/events", adapter.handle_http)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        http = aiohttp.ClientSession()
        made.append((adapter, server, http))
        return SlackBot(adapter, slack, service, str(server.make_url("/slack/events")), http)

    yield make
    for adapter, server, http in made:
        await adapter.close(grace_seconds=5)
        await http.close()
        await server.close()


@pytest.fixture
async def bot(make_bot: MakeBot) -> SlackBot:
    return await make_bot()


def block_actions(
    user: str, action_id: str, value: str, response_url: str, *, ts: str, message: dict[str, Any] | None, ephemeral: bool = False
) -> dict[str, Any]:
    """A button click as Slack sends it (block_actions), with a fresh trigger_id (Slack makes one per click)."""
    return {
        "type": "block_actions",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user, "team_id": TEAM_ID, "name": user.lower()},
        "api_app_id": "A0FAKE",
        "token": "legacy-verification-token",
        "trigger_id": f"111.{uuid.uuid4().hex}",
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL, "is_ephemeral": ephemeral},
        "channel": {"id": CHANNEL, "name": "general"},
        **({"message": message} if message is not None else {}),
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "b", "type": "button", "value": value, "action_ts": "1700000001.1"}],
    }
