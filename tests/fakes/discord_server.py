"""A local fake of Discord: REST API, gateway websocket and attachment CDN.

The real ``discord.py`` client logs in against it (``discord.http.Route.BASE``
pointed at :attr:`FakeDiscord.api_base`), asks ``GET /gateway/bot`` for the
websocket URL, identifies, receives READY and GUILD_CREATE, and then gets
``INTERACTION_CREATE`` payloads shaped like Discord's own: slash commands
(attachment options under ``data.resolved.attachments``), message context
menus (``data.resolved.messages``), button clicks (with the message that holds
the button) and modal submits. Tests assert on what the fake received: the
interaction callbacks, followups, ``@original`` edits and deletes, with every
uploaded file kept as bytes.

The fake models the Discord behaviours the bot must respect, so a bot that
ignores them fails here as it would in production:

* an interaction can be acknowledged once (a second callback is 400, code 40060);
* after a deferred response, the first followup *replaces* the "thinking"
  message and keeps the defer's visibility, whatever its own flags say;
* a file larger than the interaction's ``attachment_size_limit`` is refused
  with 413 (code 40005), more than 10 attachments or more than 2000
  characters of content with 400 (code 50035);
* a JSON response is sent with ``Content-Type: application/json`` exactly
  (discord.py only parses that as JSON);
* REST calls need ``Authorization: Bot <token>``; interaction webhooks need
  only the interaction token.

Knobs for the unhappy paths: ``expire(ix)`` (the 15-minute token is dead:
webhooks answer 401 50027, the bot must post in the channel itself),
``refuse_uploads = N`` (the next N requests with files get 403 50013),
``fail(route, mode)`` (what a proxy or a bad network does to one kind of
call: a raw ``503`` with a text/plain or HTML body, or a connection dropped
without an answer; see :data:`ROUTES`), ``hold_callbacks()`` (interaction
callbacks wait until released, so commands can be made to arrive together),
``replay(ix)`` (the gateway delivers the same INTERACTION_CREATE again, as
after a RESUME), ``break_cdn(url)`` (an attachment download dies mid-stream),
``drop_gateway()`` (Discord closes the websocket; the client reconnects).

Everything listens on 127.0.0.1. Gateway frames are plain JSON text:
discord.py asks for ``compress=zlib-stream`` but decodes text frames as they
come (``DiscordWebSocket.received_message``), so compression is not needed.

Use::

    async with FakeDiscord() as fake:
        discord.http.Route.BASE = fake.api_base
        ...  # start the bot with token fake.token
        await fake.wait_connected()
        ix = await fake.send_slash_command("imagine", {"prompt": "a fox"})
        defer = await fake.wait_for_callback(ix)
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, Callable, Mapping, Sequence

from aiohttp import WSMsgType, web
from tests.fakes.loopback import serve_on_loopback

DISCORD_EPOCH_MS = 1_420_070_400_000
EPHEMERAL = 1 << 6
LOADING = 1 << 7
DEFAULT_ATTACHMENT_LIMIT = 10 * 1024 * 1024
MAX_ATTACHMENTS = 10
MAX_CONTENT = 2000

# Interaction callback types (Discord "interaction response types").
PONG, CHANNEL_MESSAGE, DEFERRED_CHANNEL_MESSAGE, DEFERRED_UPDATE, UPDATE_MESSAGE, MODAL = 1, 4, 5, 6, 7, 9

# Permission bits used in fake payloads.
PERM_MANAGE_GUILD = 1 << 5
PERM_VIEW_CHANNEL = 1 << 10
PERM_SEND_MESSAGES = 1 << 11
PERM_EMBED_LINKS = 1 << 14
PERM_ATTACH_FILES = 1 << 15
PERM_READ_HISTORY = 1 << 16
MEMBER_PERMISSIONS = PERM_VIEW_CHANNEL | PERM_SEND_MESSAGES | PERM_EMBED_LINKS | PERM_ATTACH_FILES | PERM_READ_HISTORY
APP_PERMISSIONS = MEMBER_PERMISSIONS


class _Snowflakes:
    """Real-looking snowflakes: the creation time is encoded in the id, which
    discord.py reads back (``Interaction.created_at``)."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)

    def next(self) -> str:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (next(self._counter) & 0x3FFFFF))


@dataclass
class RecordedFile:
    field: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class RecordedRequest:
    method: str
    path: str  # below the API base, e.g. "/interactions/1/tok/callback"
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    files: list[RecordedFile]
    received_at: float  # time.perf_counter()
    status: int = 0

    @property
    def payload(self) -> dict[str, Any]:
        """The message payload, whether sent as JSON or as multipart payload_json."""
        return self.json if isinstance(self.json, dict) else {}


@dataclass
class FakeUser:
    id: str
    username: str
    global_name: str | None = None
    bot: bool = False

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name or self.username,
            "avatar": None,
            "bot": self.bot,
            "public_flags": 0,
        }


@dataclass
class FakeRole:
    id: str
    name: str
    permissions: int = 0
    position: int = 1


@dataclass
class FakeGuild:
    id: str
    name: str
    channels: dict[str, str]  # id -> name (text channels)
    roles: list[FakeRole]

    def payload(self) -> dict[str, Any]:
        everyone = {"id": self.id, "name": "@everyone", "permissions": str(MEMBER_PERMISSIONS), "position": 0}
        roles = [everyone] + [
            {"id": r.id, "name": r.name, "permissions": str(r.permissions), "position": r.position} for r in self.roles
        ]
        for role in roles:
            role.update({"color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0})
        return {
            "id": self.id,
            "name": self.name,
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "member_count": 3,
            "large": False,
            "features": [],
            "roles": roles,
            "emojis": [],
            "stickers": [],
            "channels": [self.channel_payload(cid) for cid in self.channels],
            "threads": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "premium_tier": 0,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "joined_at": "2024-01-01T00:00:00+00:00",
        }

    def channel_payload(self, channel_id: str) -> dict[str, Any]:
        return {
            "id": channel_id,
            "type": 0,
            "guild_id": self.id,
            "name": self.channels[channel_id],
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "flags": 0,
        }


@dataclass
class FakeInteraction:
    """One interaction the fake delivered, and everything the bot did with it."""

    id: str
    token: str
    type: int
    payload: dict[str, Any]
    attachment_size_limit: int
    dispatched_at: float = 0.0  # time.perf_counter() when the gateway frame was sent
    callbacks: list[RecordedRequest] = field(default_factory=list)
    webhook_requests: list[RecordedRequest] = field(default_factory=list)
    original: dict[str, Any] | None = None  # the response message, once there is one
    original_loading: bool = False  # deferred and not yet replaced by an edit or followup
    original_deleted: bool = False
    followups: list[dict[str, Any]] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    expired: bool = False

    @property
    def acknowledged(self) -> bool:
        return any(0 < r.status < 300 for r in self.callbacks)

    def messages(self) -> list[dict[str, Any]]:
        """Visible messages the interaction produced, original first."""
        out = [] if self.original is None or self.original_deleted else [self.original]
        return out + [m for m in self.followups if m is not self.original]


# The kinds of call a fault can hit. "upload" is any request carrying files.
ROUTES = ("callback", "followup", "edit_original", "delete_original", "channel_message", "upload")
FAULT_MODES = ("503-text", "503-html", "drop")
_PROXY_503_HTML = (
    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
    "<body><center><h1>503 Service Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>"
)


@dataclass
class _Fault:
    route: str
    mode: str
    times: int | None  # None: until healed
    hits: int = 0


class _DiscordError(Exception):
    def __init__(self, status: int, code: int, message: str, errors: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.errors = status, code, message, errors

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            body["errors"] = self.errors
        return body


def shard_of(guild_id: str | None, count: int) -> int:
    return (int(guild_id) >> 22) % count if guild_id else 0


class _GatewaySession:
    def __init__(self, ws: web.WebSocketResponse, query: Mapping[str, str]) -> None:
        self.ws = ws
        self.query = dict(query)
        self.identify: dict[str, Any] | None = None
        self.session_id = uuid.uuid4().hex
        self.seq = 0
        self.ready = asyncio.Event()
        self.heartbeats = 0
        self.lock = asyncio.Lock()

    @property
    def shard(self) -> tuple[int, int]:
        """(shard id, shard count) this session identified as; (0, 1) unsharded."""
        shard = (self.identify or {}).get("shard") or [0, 1]
        return int(shard[0]), int(shard[1])

    def serves(self, guild_id: str | None) -> bool:
        """Discord's routing: a guild's events go to shard (guild_id >> 22) % count, DMs to shard 0."""
        shard_id, count = self.shard
        return shard_of(guild_id, count) == shard_id

    async def send(self, op: int, d: Any, t: str | None = None) -> None:
        async with self.lock:
            frame: dict[str, Any] = {"op": op, "d": d, "s": None, "t": t}
            if op == 0:
                self.seq += 1
                frame["s"] = self.seq
            await self.ws.send_str(json.dumps(frame, ensure_ascii=False))


class FakeDiscord:
    """Discord's REST API, gateway and CDN on one loopback port."""

    API_PREFIX = "/api/v10"

    def __init__(
        self,
        *,
        token: str = "fake-discord-token",
        application_id: str = "1100000000000000001",
        bot_user_id: str = "1100000000000000001",
        interactions_endpoint_url: str | None = None,
    ) -> None:
        self.token = token
        self.application_id = application_id
        self.bot_user = FakeUser(bot_user_id, "imaginebot", "imaginebot", bot=True)
        self.interactions_endpoint_url = interactions_endpoint_url
        self.ids = _Snowflakes()
        self.requests: list[RecordedRequest] = []
        self.interactions: dict[str, FakeInteraction] = {}  # by id
        self._by_token: dict[str, FakeInteraction] = {}
        self.messages: dict[str, dict[str, Any]] = {}  # every message the bot made (and user_message()s), by id
        self.commands: dict[str | None, list[dict[str, Any]]] = {}  # guild id (None = global) -> commands
        self.cdn: dict[str, tuple[bytes, str]] = {}  # path -> (bytes, content type)
        self.cdn_hits: list[str] = []
        self.channel_messages: list[dict[str, Any]] = []
        # Posting without an interaction (relax results): channels the bot may not post in
        # (403 50013), users who accept no DM (403 50007), and the DM channels opened.
        self.forbidden_channels: set[str] = set()
        self.closed_dms: set[str] = set()
        self.dm_channels: dict[str, str] = {}  # DM channel id -> user id
        self.deleted_messages: list[str] = []  # ids deleted through DELETE /channels/{c}/messages/{m}
        self.message_fetches: list[str] = []  # ids read through GET /channels/{c}/messages/{m}
        self.refuse_uploads = 0  # refuse the next N requests carrying files (403 Missing Permissions)  # posted by the bot itself, not via an interaction
        self.gateway_sessions: list[_GatewaySession] = []
        self.recommended_shards = 1  # what GET /gateway/bot recommends
        self.faults: list[_Fault] = []
        self.broken_cdn: set[str] = set()  # CDN paths whose download dies mid-stream
        self._callbacks_open = asyncio.Event()
        self._callbacks_open.set()
        self.guilds: dict[str, FakeGuild] = {}
        self.users: dict[str, FakeUser] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.add_guild("900000000000000001", "Fox Den", {"900000000000000011": "general", "900000000000000012": "quiet"})
        self.add_user("700000000000000001", "alice")
        self.add_user("700000000000000002", "bob")

    # ------------------------------------------------------------------ setup

    def add_guild(self, guild_id: str, name: str, channels: dict[str, str], roles: Sequence[FakeRole] = ()) -> FakeGuild:
        guild = FakeGuild(guild_id, name, dict(channels), list(roles) or [FakeRole(str(int(guild_id) + 100), "artists")])
        self.guilds[guild_id] = guild
        return guild

    def add_user(self, user_id: str, username: str) -> FakeUser:
        user = FakeUser(user_id, username)
        self.users[user_id] = user
        return user

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.origin + self.API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> None:
        app = web.Application(client_max_size=200 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{channel}/{attachment}/{filename}", self._cdn_get)
        app.router.add_route("*", self.API_PREFIX + "/{tail:.*}", self._api)
        self._runner, self.port = await serve_on_loopback(app)

    async def close(self) -> None:
        for session in self.gateway_sessions:
            if not session.ws.closed:
                await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # ---------------------------------------------------------------- waiting

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait until `predicate()` is truthy and return its value. The timeout
        only turns a hang into a clear failure; it is not a timing assertion."""

        async def wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    # Woken by every request the fake gets; the short poll
                    # covers predicates on other things (e.g. the fake OpenAI).
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), 0.02)
                return value

        return await asyncio.wait_for(wait(), timeout)

    async def wait_connected(self, count: int = 1, timeout: float = 15.0) -> _GatewaySession:
        """Wait for the `count`-th gateway session to be READY."""
        await self.wait_until(lambda: sum(1 for s in self.gateway_sessions if s.ready.is_set()) >= count, timeout)
        return [s for s in self.gateway_sessions if s.ready.is_set()][count - 1]

    async def wait_for_callback(self, ix: FakeInteraction, timeout: float = 15.0) -> RecordedRequest:
        return await self.wait_until(lambda: ix.callbacks[0] if ix.callbacks else None, timeout)

    async def wait_for_webhook(
        self, ix: FakeInteraction, predicate: Callable[[RecordedRequest], bool] = lambda r: True, timeout: float = 15.0
    ) -> RecordedRequest:
        return await self.wait_until(lambda: next((r for r in ix.webhook_requests if predicate(r)), None), timeout)

    async def wait_for_result(self, ix: FakeInteraction, timeout: float = 15.0) -> dict[str, Any]:
        """The interaction's response message, once it carries files."""
        return await self.wait_until(lambda: ix.original if ix.original and ix.original["attachments"] else None, timeout)

    async def wait_for_private(self, ix: FakeInteraction, timeout: float = 15.0) -> dict[str, Any]:
        """The first message only the user can see: an ephemeral response or followup."""

        def find() -> dict[str, Any] | None:
            return next((m for m in ix.messages() if m["flags"] & EPHEMERAL and m["content"]), None)

        return await self.wait_until(find, timeout)

    def public_messages(self, ix: FakeInteraction) -> list[dict[str, Any]]:
        return [m for m in ix.messages() if not m["flags"] & EPHEMERAL]

    # ---------------------------------------------------------------- CDN

    def add_attachment(
        self,
        data: bytes,
        filename: str,
        content_type: str = "image/png",
        *,
        channel_id: str = "900000000000000011",
        host: str | None = None,
        width: int | None = None,
        height: int | None = None,
    ) -> dict[str, Any]:
        """Put a file on the fake CDN and return its attachment payload. `host`
        changes only the host written in the URL (e.g. "localhost", to test
        the download allowlist); the bytes are always served here."""
        att_id = self.ids.next()
        path = f"/attachments/{channel_id}/{att_id}/{filename}"
        self.cdn[path] = (data, content_type)
        url = f"http://{host or '127.0.0.1'}:{self.port}{path}?ex=6800&is=67ff&hm=fake"
        payload: dict[str, Any] = {
            "id": att_id,
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }
        if width and height:
            payload.update(width=width, height=height)
        return payload

    def cdn_bytes(self, url: str) -> bytes:
        """The bytes stored behind an attachment URL the fake handed out."""
        return self.cdn[_cdn_path(url)][0]

    def break_cdn(self, url: str) -> None:
        """Downloads of this attachment send half the bytes, then the connection dies."""
        self.broken_cdn.add(_cdn_path(url))

    async def _cdn_get(self, request: web.Request) -> web.StreamResponse:
        self.cdn_hits.append(request.path)
        found = self.cdn.get(request.path)
        if found is None:
            return web.Response(status=404, text="Not Found")
        data, content_type = found
        if request.path in self.broken_cdn:
            response = web.StreamResponse(headers={"Content-Type": content_type.split(";")[0]})
            response.content_length = len(data)
            await response.prepare(request)
            await response.write(data[: len(data) // 2])
            assert request.transport is not None
            request.transport.abort()
            return response
        return web.Response(body=data, content_type=content_type.split(";")[0])

    # ---------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        session = _GatewaySession(ws, request.query)
        self.gateway_sessions.append(session)
        await session.send(10, {"heartbeat_interval": 41250})
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                continue
            frame = json.loads(msg.data)
            op = frame.get("op")
            if op == 1:
                session.heartbeats += 1
                await session.send(11, None)
            elif op == 2:
                await self._identify(session, frame["d"])
            elif op == 6:
                # Resuming is not modelled: invalidate so the client identifies afresh.
                await session.send(9, False)
        await self._notify()
        return ws

    async def _identify(self, session: _GatewaySession, d: dict[str, Any]) -> None:
        session.identify = d
        if d.get("token") != self.token:
            await session.ws.close(code=4004, message=b"Authentication failed.")
            return
        ready = {
            "v": 10,
            "user": self.bot_user.payload(),
            "guilds": [{"id": gid, "unavailable": True} for gid in self.guilds],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
            "session_type": "normal",
        }
        if d.get("shard"):
            ready["shard"] = list(session.shard)
        mine = [guild for guild in self.guilds.values() if session.serves(guild.id)]
        ready["guilds"] = [{"id": guild.id, "unavailable": True} for guild in mine]
        await session.send(0, ready, "READY")
        for guild in mine:
            await session.send(0, guild.payload(), "GUILD_CREATE")
        session.ready.set()
        await self._notify()

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway connection, as Discord does now and then (the
        client must reconnect by itself)."""
        for session in self.gateway_sessions:
            if not session.ws.closed:
                await session.ws.close(code=code, message=b"fake: reconnect")

    def _live_session(self, guild_id: str | None = None) -> _GatewaySession:
        """The newest connected session whose shard serves `guild_id`."""
        for session in reversed(self.gateway_sessions):
            if session.ready.is_set() and not session.ws.closed and session.serves(guild_id):
                return session
        raise RuntimeError(f"no bot connected to the fake gateway serves guild {guild_id}")

    async def dispatch(self, payload: dict[str, Any]) -> FakeInteraction:
        """Deliver an INTERACTION_CREATE to the newest connected bot."""
        ix = FakeInteraction(
            id=payload["id"],
            token=payload["token"],
            type=payload["type"],
            payload=payload,
            attachment_size_limit=payload["attachment_size_limit"],
        )
        self.interactions[ix.id] = ix
        self._by_token[ix.token] = ix
        session = self._live_session(payload.get("guild_id"))
        ix.dispatched_at = time.perf_counter()
        await session.send(0, payload, "INTERACTION_CREATE")
        return ix

    async def replay(self, ix: FakeInteraction, session: _GatewaySession | None = None) -> None:
        """Deliver the same INTERACTION_CREATE again (a RESUME replays missed
        events; two shard processes may both see one), to `session` or the
        newest connected bot. Whatever the bot does is recorded on `ix`."""
        await (session or self._live_session(ix.payload.get("guild_id"))).send(0, ix.payload, "INTERACTION_CREATE")

    # ------------------------------------------------------- interaction payloads

    def _base_interaction(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user_id: str,
        guild_id: str | None,
        channel_id: str,
        permissions: int | None,
        roles: Sequence[str],
        attachment_size_limit: int,
        app_permissions: int,
        locale: str,
    ) -> dict[str, Any]:
        user = self.users.get(user_id) or self.add_user(user_id, f"user{user_id[-4:]}")
        payload: dict[str, Any] = {
            "id": self.ids.next(),
            "application_id": self.application_id,
            "type": type_,
            "data": data,
            "token": "ixtoken-" + uuid.uuid4().hex,
            "version": 1,
            "locale": locale,
            "app_permissions": str(app_permissions),
            "attachment_size_limit": attachment_size_limit,
            "entitlements": [],
            "authorizing_integration_owners": {"0": guild_id} if guild_id else {"1": user_id},
            "context": 0 if guild_id else 1,
        }
        if guild_id:
            guild = self.guilds[guild_id]
            payload["guild_id"] = guild_id
            payload["guild"] = {"id": guild_id, "locale": "en-US", "features": []}
            payload["guild_locale"] = "en-US"
            payload["channel_id"] = channel_id
            payload["channel"] = guild.channel_payload(channel_id) if channel_id in guild.channels else {
                "id": channel_id, "type": 0, "guild_id": guild_id, "name": "elsewhere", "position": 0,
                "permission_overwrites": [], "nsfw": False, "parent_id": None, "flags": 0,
            }
            payload["member"] = {
                "user": user.payload(),
                "roles": list(roles),
                "joined_at": "2024-01-01T00:00:00+00:00",
                "deaf": False,
                "mute": False,
                "flags": 0,
                "pending": False,
                "nick": None,
                "avatar": None,
                "permissions": str(MEMBER_PERMISSIONS if permissions is None else permissions),
            }
        else:
            payload["channel_id"] = channel_id
            payload["channel"] = {"id": channel_id, "type": 1, "recipients": [user.payload()], "flags": 0}
            payload["user"] = user.payload()
        return payload

    def _options(self, options: Mapping[str, Any], resolved: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for name, value in options.items():
            if isinstance(value, dict) and "filename" in value:  # an attachment payload
                resolved.setdefault("attachments", {})[value["id"]] = value
                out.append({"name": name, "type": 11, "value": value["id"]})
            elif isinstance(value, FakeUser):
                resolved.setdefault("users", {})[value.id] = value.payload()
                out.append({"name": name, "type": 6, "value": value.id})
            elif isinstance(value, FakeRole):
                resolved.setdefault("roles", {})[value.id] = {
                    "id": value.id, "name": value.name, "permissions": str(value.permissions), "position": value.position,
                    "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0,
                }
                out.append({"name": name, "type": 8, "value": value.id})
            elif isinstance(value, bool):
                out.append({"name": name, "type": 5, "value": value})
            elif isinstance(value, int):
                out.append({"name": name, "type": 4, "value": value})
            elif isinstance(value, float):
                out.append({"name": name, "type": 10, "value": value})
            else:
                out.append({"name": name, "type": 3, "value": str(value)})
        return out

    def _command_id(self, name: str, guild_id: str | None) -> str:
        for scope in (guild_id, None):
            for cmd in self.commands.get(scope, []):
                if cmd["name"] == name:
                    return cmd["id"]
        return self.ids.next()  # unsynced: Discord would not offer it, but the id is opaque to the bot

    def slash_command_payload(
        self,
        name: str,
        options: Mapping[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        user_id: str = "700000000000000001",
        guild_id: str | None = "900000000000000001",
        channel_id: str = "900000000000000011",
        permissions: int | None = None,
        roles: Sequence[str] = (),
        attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT,
        app_permissions: int = APP_PERMISSIONS,
        locale: str = "en-US",
    ) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        opts = self._options(options or {}, resolved)
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        data: dict[str, Any] = {"id": self._command_id(name, guild_id), "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        return self._base_interaction(
            2, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, permissions=permissions, roles=roles,
            attachment_size_limit=attachment_size_limit, app_permissions=app_permissions, locale=locale,
        )

    async def send_slash_command(self, name: str, options: Mapping[str, Any] | None = None, **kw: Any) -> FakeInteraction:
        return await self.dispatch(self.slash_command_payload(name, options, **kw))

    def user_message(
        self,
        content: str,
        attachments: Sequence[dict[str, Any]] = (),
        *,
        author_id: str = "700000000000000002",
        channel_id: str = "900000000000000011",
        guild_id: str | None = "900000000000000001",
    ) -> dict[str, Any]:
        """A message somebody posted (a context-menu target)."""
        author = self.users.get(author_id) or self.add_user(author_id, f"user{author_id[-4:]}")
        msg = self._message(content, list(attachments), author=author.payload(), channel_id=channel_id, guild_id=guild_id)
        self.messages[msg["id"]] = msg  # the bot may read it back (GET channel message)
        return msg

    def _message(
        self,
        content: str,
        attachments: list[dict[str, Any]],
        *,
        author: dict[str, Any],
        channel_id: str,
        guild_id: str | None,
        components: list[dict[str, Any]] | None = None,
        flags: int = 0,
        embeds: list[dict[str, Any]] | None = None,
        webhook_id: str | None = None,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": self.ids.next(),
            "type": 0,
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": datetime.now(timezone.utc).isoformat(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": embeds or [],
            "pinned": False,
            "flags": flags,
            "components": components or [],
        }
        if guild_id:
            msg["guild_id"] = guild_id
        if webhook_id:
            msg["webhook_id"] = webhook_id
        return msg

    def message_command_payload(self, name: str, target: dict[str, Any], **kw: Any) -> dict[str, Any]:
        data = {
            "id": self._command_id(name, kw.get("guild_id", "900000000000000001")),
            "name": name,
            "type": 3,
            "target_id": target["id"],
            "resolved": {"messages": {target["id"]: target}},
        }
        return self._interaction_of_type(2, data, **kw)

    async def send_message_command(self, name: str, target: dict[str, Any], **kw: Any) -> FakeInteraction:
        return await self.dispatch(self.message_command_payload(name, target, **kw))

    def _interaction_of_type(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user_id: str = "700000000000000001",
        guild_id: str | None = "900000000000000001",
        channel_id: str = "900000000000000011",
        permissions: int | None = None,
        roles: Sequence[str] = (),
        attachment_size_limit: int = DEFAULT_ATTACHMENT_LIMIT,
        app_permissions: int = APP_PERMISSIONS,
        locale: str = "en-US",
        message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        payload = self._base_interaction(
            type_, data, user_id=user_id, guild_id=guild_id, channel_id=channel_id, permissions=permissions, roles=roles,
            attachment_size_limit=attachment_size_limit, app_permissions=app_permissions, locale=locale,
        )
        if message is not None:
            payload["message"] = message
        return payload

    def button_click_payload(self, message: dict[str, Any], custom_id: str, **kw: Any) -> dict[str, Any]:
        if not any(c.get("custom_id") == custom_id for row in message.get("components", []) for c in row.get("components", [])):
            raise AssertionError(f"message {message['id']} has no button {custom_id!r}")
        kw.setdefault("channel_id", message["channel_id"])
        return self._interaction_of_type(3, {"custom_id": custom_id, "component_type": 2}, message=message, **kw)

    async def click_button(self, message: dict[str, Any], custom_id: str, **kw: Any) -> FakeInteraction:
        """Click a button on a message the bot sent (Discord includes the message)."""
        return await self.dispatch(self.button_click_payload(message, custom_id, **kw))

    def modal_submit_payload(
        self, modal: dict[str, Any], values: Mapping[str, str], *, message: dict[str, Any] | None = None, **kw: Any
    ) -> dict[str, Any]:
        """Fill the text inputs of a modal the bot opened (`values` by input custom_id)."""
        rows = []
        for row in modal["components"]:
            comps = []
            for comp in row["components"]:
                comps.append({"type": comp["type"], "custom_id": comp["custom_id"], "value": values.get(comp["custom_id"], "")})
            rows.append({"type": 1, "components": comps})
        data = {"custom_id": modal["custom_id"], "components": rows}
        return self._interaction_of_type(5, data, message=message, **kw)

    async def submit_modal(
        self, modal: dict[str, Any], values: Mapping[str, str], *, message: dict[str, Any] | None = None, **kw: Any
    ) -> FakeInteraction:
        return await self.dispatch(self.modal_submit_payload(modal, values, message=message, **kw))

    # ---------------------------------------------------------------- REST

    def _json(self, body: Any, status: int = 200) -> web.Response:
        # Exactly "application/json": discord.py parses nothing else as JSON.
        return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = request.path[len(self.API_PREFIX):]
        record = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=None,
            files=[],
            received_at=time.perf_counter(),
        )
        self.requests.append(record)
        try:
            await self._read_body(request, record)
            if path.endswith("/callback") and not self._callbacks_open.is_set():
                await self._notify()
                await self._callbacks_open.wait()
            fault = self._fault_for(record)
            if fault is not None:
                return await self._fail(request, record, fault)
            response = await self._route(request, record, path)
        except _DiscordError as e:
            response = self._json(e.body(), e.status)
        record.status = response.status
        await self._notify()
        return response

    async def _fail(self, request: web.Request, record: RecordedRequest, fault: _Fault) -> web.Response:
        # Kept with the interaction's own requests too: the bot did make the call.
        parts = [p for p in record.path.split("/") if p]
        if parts[:1] == ["interactions"] and (ix := self.interactions.get(parts[1])) is not None:
            ix.callbacks.append(record)
        elif parts[:1] == ["webhooks"] and (ix := self._by_token.get(parts[2])) is not None:
            ix.webhook_requests.append(record)
        if fault.mode == "drop":
            record.status = -1  # no answer at all
            await self._notify()
            assert request.transport is not None
            request.transport.abort()
            return web.Response()  # never reaches the client
        if fault.mode == "503-html":
            response = web.Response(status=503, text=_PROXY_503_HTML, content_type="text/html")
        else:
            response = web.Response(status=503, text="upstream connect error or disconnect/reset before headers",
                                    content_type="text/plain")
        record.status = 503
        await self._notify()
        return response

    async def _read_body(self, request: web.Request, record: RecordedRequest) -> None:
        if not request.can_read_body:
            return
        ctype = request.content_type
        if ctype == "application/json":
            record.json = json.loads(await request.read() or b"null")
        elif ctype.startswith("multipart/"):
            reader = await request.multipart()
            async for part in reader:
                name = part.name or ""
                data = await part.read(decode=False)  # type: ignore[union-attr]
                if name == "payload_json":
                    record.json = json.loads(data)
                else:
                    record.files.append(
                        RecordedFile(name, part.filename or "", part.headers.get("Content-Type", ""), bytes(data))  # type: ignore[union-attr]
                    )
        else:
            await request.read()

    def _check_bot_auth(self, record: RecordedRequest) -> None:
        if record.headers.get("authorization") != f"Bot {self.token}":
            raise _DiscordError(401, 0, "401: Unauthorized")

    async def _route(self, request: web.Request, record: RecordedRequest, path: str) -> web.Response:
        parts = [p for p in path.split("/") if p]
        m = record.method
        if parts[:1] == ["interactions"] and len(parts) == 4 and parts[3] == "callback" and m == "POST":
            return self._callback(parts[1], parts[2], record)
        if parts[:1] == ["webhooks"] and len(parts) >= 3:
            return self._webhook(parts[1], parts[2], parts[3:], record)
        self._check_bot_auth(record)
        if len(parts) == 3 and parts[0] == "channels" and parts[2] == "messages" and m == "POST":
            return self._json(self._channel_message(parts[1], record))
        if parts == ["users", "@me", "channels"] and m == "POST":  # open a DM with a user
            return self._json(self._open_dm(str((record.json or {}).get("recipient_id"))))
        if len(parts) == 4 and parts[0] == "channels" and parts[2] == "messages" and m in ("GET", "DELETE"):
            return self._message_by_id(parts[1], parts[3], m)
        if parts == ["users", "@me"] and m == "GET":
            return self._json(self.bot_user.payload() | {"verified": True, "mfa_enabled": False, "flags": 0})
        if parts == ["users", "@me", "guilds"] and m == "GET":  # the servers the bot is in (partial guilds)
            return self._json([{"id": g.id, "name": g.name, "owner": False, "permissions": "0", "features": []} for g in self.guilds.values()])
        if parts == ["oauth2", "applications", "@me"] and m == "GET":
            return self._json(self._application())
        if parts in (["gateway", "bot"], ["gateway"]) and m == "GET":
            body: dict[str, Any] = {"url": self.gateway_url}
            if parts == ["gateway", "bot"]:
                body.update(
                    shards=self.recommended_shards,
                    session_start_limit={"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
                )
            return self._json(body)
        if parts[:1] == ["applications"] and len(parts) >= 3 and parts[1] == self.application_id:
            guild_id = parts[3] if len(parts) == 5 and parts[2] == "guilds" and parts[4] == "commands" else None
            if parts[2:] == ["commands"] or guild_id:
                if m == "PUT":
                    return self._json(self._put_commands(guild_id, record.json or []))
                if m == "GET":
                    return self._json(self.commands.get(guild_id, []))
        raise _DiscordError(404, 0, "404: Not Found")

    def _message_by_id(self, channel_id: str, message_id: str, method: str) -> web.Response:
        """GET (with fresh attachment URLs, as Discord signs them anew) or
        DELETE one message of a channel."""
        msg = self.messages.get(message_id)
        if msg is None or msg.get("deleted") or msg["channel_id"] != channel_id:
            raise _DiscordError(404, 10008, "Unknown Message")
        if method == "DELETE":
            msg["deleted"] = True
            self.deleted_messages.append(message_id)
            return web.Response(status=204)
        self.message_fetches.append(message_id)
        fresh = dict(msg, attachments=[dict(a, url=_refreshed(a["url"]), proxy_url=_refreshed(a["url"])) for a in msg["attachments"]])
        return self._json(fresh)

    def _channel_message(self, channel_id: str, record: RecordedRequest) -> dict[str, Any]:
        """A message the bot posts itself (not through an interaction)."""
        guild_id = next((g.id for g in self.guilds.values() if channel_id in g.channels), None)
        if channel_id in self.dm_channels:
            if self.dm_channels[channel_id] in self.closed_dms:
                raise _DiscordError(403, 50007, "Cannot send messages to this user")
        elif guild_id is None:
            raise _DiscordError(404, 10003, "Unknown Channel")
        if channel_id in self.forbidden_channels:
            raise _DiscordError(403, 50013, "Missing Permissions")
        msg = self._message("", [], author=self.bot_user.payload(), channel_id=channel_id, guild_id=guild_id)
        for f in record.files:
            if len(f.data) > DEFAULT_ATTACHMENT_LIMIT:
                raise _DiscordError(413, 40005, "Request entity too large")
        fake_ix = FakeInteraction(id="0", token="", type=0, payload={}, attachment_size_limit=DEFAULT_ATTACHMENT_LIMIT)
        self._apply_edit(msg, record.payload, record, fake_ix)
        self.messages[msg["id"]] = msg
        self.channel_messages.append(msg)
        return msg

    def _open_dm(self, user_id: str) -> dict[str, Any]:
        user = self.users.get(user_id)
        if user is None:
            raise _DiscordError(400, 50035, "Invalid Form Body", {"recipient_id": "NUMBER_TYPE_COERCE"})
        channel_id = next((c for c, u in self.dm_channels.items() if u == user_id), None) or self.ids.next()
        self.dm_channels[channel_id] = user_id
        return {"id": channel_id, "type": 1, "last_message_id": None, "flags": 0, "recipients": [user.payload()]}

    def dms_to(self, user_id: str) -> list[dict[str, Any]]:
        """Messages the bot sent to `user_id` in a direct message."""
        return [m for m in self.channel_messages if self.dm_channels.get(m["channel_id"]) == user_id]

    def _application(self) -> dict[str, Any]:
        return {
            "id": self.application_id,
            "name": "imaginebot",
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": {"id": "700000000000000009", "username": "owner", "discriminator": "0", "avatar": None},
            "verify_key": "0" * 64,
            "flags": 0,
            "summary": "",
            "team": None,
            "interactions_endpoint_url": self.interactions_endpoint_url,
            "bot": self.bot_user.payload(),
        }

    def _put_commands(self, guild_id: str | None, payload: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for cmd in payload:
            if not 1 <= len(cmd.get("name", "")) <= 32:
                raise _DiscordError(400, 50035, "Invalid Form Body", {"name": "BASE_TYPE_BAD_LENGTH"})
            stored = dict(cmd)
            stored.setdefault("type", 1)
            stored.setdefault("description", "")
            stored.update(id=self.ids.next(), application_id=self.application_id, version=self.ids.next())
            if guild_id:
                stored["guild_id"] = guild_id
            out.append(stored)
        self.commands[guild_id] = out
        return out

    # ------------------------------------------------------- interaction webhooks

    def _interaction_by_token(self, token: str) -> FakeInteraction:
        ix = self._by_token.get(token)
        if ix is None or ix.expired:
            raise _DiscordError(401, 50027, "Invalid Webhook Token")
        return ix

    def expire(self, ix: FakeInteraction) -> None:
        """Make the interaction's token invalid, as Discord does 15 minutes after it was created."""
        ix.expired = True

    # ---------------------------------------------------------------- faults

    def fail(self, route: str, mode: str = "503-text", *, times: int | None = None) -> None:
        """Make every call of `route` (one of ROUTES) fail as a proxy or a bad
        network would, before Discord does anything with it: "503-text" and
        "503-html" answer 503 with that body (not Discord's JSON), "drop"
        closes the connection without an answer. `times` limits it to the next
        N such calls; without it the fault lasts until `heal()`. (discord.py
        itself retries a webhook call that gets a 5xx, five times in all.)"""
        if route not in ROUTES or mode not in FAULT_MODES:
            raise ValueError(f"unknown route {route!r} or mode {mode!r}")
        self.faults.append(_Fault(route, mode, times))

    def heal(self) -> None:
        self.faults.clear()

    def fault_hits(self, route: str) -> int:
        return sum(f.hits for f in self.faults if f.route == route)

    def _fault_for(self, record: RecordedRequest) -> _Fault | None:
        route = _route_of(record)
        for fault in self.faults:
            if fault.times is not None and fault.hits >= fault.times:
                continue
            if fault.route == route or (fault.route == "upload" and record.files):
                fault.hits += 1
                return fault
        return None

    def hold_callbacks(self) -> None:
        """Interaction callbacks wait (after being recorded) until `release_callbacks()`."""
        self._callbacks_open.clear()

    def release_callbacks(self) -> None:
        self._callbacks_open.set()

    def _callback(self, interaction_id: str, token: str, record: RecordedRequest) -> web.Response:
        ix = self.interactions.get(interaction_id)
        if ix is None or ix.token != token:
            raise _DiscordError(404, 10062, "Unknown interaction")
        already = ix.acknowledged
        ix.callbacks.append(record)
        if already:
            raise _DiscordError(400, 40060, "Interaction has already been acknowledged.")
        body = record.payload
        rtype = body.get("type")
        data = body.get("data") or {}
        flags = int(data.get("flags") or 0)
        message: dict[str, Any] | None = None
        if rtype == DEFERRED_CHANNEL_MESSAGE:
            message = self._bot_message("", [], flags=(flags & EPHEMERAL) | LOADING, ix=ix)
            ix.original, ix.original_loading = message, True
        elif rtype == CHANNEL_MESSAGE:
            message = self._bot_message_from(data, record, ix, flags=flags & EPHEMERAL)
            ix.original = message
        elif rtype == MODAL:
            self._check_modal(data)
            ix.modal = data
        elif rtype in (DEFERRED_UPDATE, UPDATE_MESSAGE):
            if ix.type not in (3, 5):
                raise _DiscordError(400, 50035, "Invalid Form Body", {"type": "only for component interactions"})
            if rtype == UPDATE_MESSAGE and ix.payload.get("message"):
                self._apply_edit(ix.payload["message"], data, record, ix)
        else:
            raise _DiscordError(400, 50035, "Invalid Form Body", {"type": f"unknown response type {rtype}"})
        interaction = {"id": ix.id, "type": ix.type}
        if message is not None:
            interaction.update(
                response_message_id=message["id"],
                response_message_loading=bool(message["flags"] & LOADING),
                response_message_ephemeral=bool(message["flags"] & EPHEMERAL),
            )
        response: dict[str, Any] = {"interaction": interaction}
        if message is not None:
            response["resource"] = {"type": rtype, "message": message}
        record.status = 200
        return self._json(response)

    def _check_modal(self, data: dict[str, Any]) -> None:
        if not data.get("custom_id") or not data.get("title") or not data.get("components"):
            raise _DiscordError(400, 50035, "Invalid Form Body", {"data": "modal needs custom_id, title and components"})
        if len(data["custom_id"]) > 100:
            raise _DiscordError(400, 50035, "Invalid Form Body", {"custom_id": "BASE_TYPE_MAX_LENGTH"})

    def _webhook(self, app_id: str, token: str, rest: list[str], record: RecordedRequest) -> web.Response:
        if app_id != self.application_id:
            raise _DiscordError(404, 10015, "Unknown Webhook")
        ix = self._interaction_by_token(token)
        ix.webhook_requests.append(record)
        m = record.method
        if not rest and m == "POST":
            return self._json(self._followup(ix, record))
        if len(rest) == 2 and rest[0] == "messages":
            msg = self._find_message(ix, rest[1])
            if m == "GET":
                return self._json(msg)
            if m == "PATCH":
                if msg is ix.original:
                    ix.original_loading = False
                    msg["flags"] &= ~LOADING
                self._apply_edit(msg, record.payload, record, ix)
                return self._json(msg)
            if m == "DELETE":
                if msg is ix.original:
                    ix.original_deleted = True
                msg["deleted"] = True
                return web.Response(status=204)
        raise _DiscordError(404, 0, "404: Not Found")

    def _find_message(self, ix: FakeInteraction, message_id: str) -> dict[str, Any]:
        if message_id == "@original" or (ix.original is not None and ix.original["id"] == message_id):
            if ix.original is None or ix.original_deleted:
                raise _DiscordError(404, 10008, "Unknown Message")
            return ix.original
        for msg in ix.followups:
            if msg["id"] == message_id and not msg.get("deleted"):
                return msg
        raise _DiscordError(404, 10008, "Unknown Message")

    def _followup(self, ix: FakeInteraction, record: RecordedRequest) -> dict[str, Any]:
        if not ix.acknowledged:
            raise _DiscordError(404, 10015, "Unknown Webhook")  # no followup before the interaction is answered
        body = record.payload
        if ix.original is not None and ix.original_loading and not ix.original_deleted:
            # Discord: the first followup after a defer edits the "thinking"
            # message in place; its visibility is the defer's, whatever the
            # followup's own flags say.
            msg = ix.original
            keep = msg["flags"] & EPHEMERAL
            self._apply_edit(msg, body, record, ix)
            msg["flags"] = keep
            ix.original_loading = False
        else:
            msg = self._bot_message_from(body, record, ix, flags=int(body.get("flags") or 0) & EPHEMERAL)
        ix.followups.append(msg)
        return msg

    def _bot_message(
        self, content: str, attachments: list[dict[str, Any]], *, flags: int, ix: FakeInteraction,
        components: list[dict[str, Any]] | None = None, embeds: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        msg = self._message(
            content, attachments, author=self.bot_user.payload(), channel_id=ix.payload["channel_id"],
            guild_id=ix.payload.get("guild_id"), components=components, flags=flags, embeds=embeds,
            webhook_id=self.application_id,
        )
        msg["interaction_metadata"] = {
            "id": ix.id, "type": ix.type, "user": (ix.payload.get("member") or ix.payload)["user"],
            "authorizing_integration_owners": ix.payload.get("authorizing_integration_owners", {}),
        }
        self.messages[msg["id"]] = msg
        return msg

    def _bot_message_from(
        self, body: dict[str, Any], record: RecordedRequest, ix: FakeInteraction, *, flags: int
    ) -> dict[str, Any]:
        msg = self._bot_message("", [], flags=flags, ix=ix)
        self._apply_edit(msg, body, record, ix)
        return msg

    def _apply_edit(self, msg: dict[str, Any], body: dict[str, Any], record: RecordedRequest, ix: FakeInteraction) -> None:
        """Validate like Discord, then apply content/embeds/components/attachments."""
        if record.files and self.refuse_uploads:
            self.refuse_uploads -= 1
            raise _DiscordError(403, 50013, "Missing Permissions")
        content = body.get("content")
        if content is not None and len(content) > MAX_CONTENT:
            raise _DiscordError(400, 50035, "Invalid Form Body", {"content": "BASE_TYPE_MAX_LENGTH"})
        for f in record.files:
            if len(f.data) > ix.attachment_size_limit:
                raise _DiscordError(413, 40005, "Request entity too large")
        if "attachments" in body or record.files:
            kept = {a["id"]: a for a in msg.get("attachments", [])}
            attachments: list[dict[str, Any]] = []
            for entry in body.get("attachments", []):
                if isinstance(entry.get("id"), int):  # a new upload: the index of its files[n] part
                    f = record.files[entry["id"]]
                    filename = entry.get("filename") or f.filename
                    attachments.append(self.add_attachment(f.data, filename, _mime_of(f), channel_id=msg["channel_id"]))
                elif str(entry.get("id")) in kept:  # an attachment the message keeps
                    attachments.append(kept[str(entry["id"])])
            if len(attachments) > MAX_ATTACHMENTS:
                raise _DiscordError(400, 50035, "Invalid Form Body", {"attachments": "BASE_TYPE_MAX_LENGTH"})
            msg["attachments"] = attachments
        if content is not None:
            msg["content"] = content
        if "embeds" in body:
            msg["embeds"] = body["embeds"] or []
        if "components" in body:
            for row in body["components"] or []:
                for comp in row.get("components", []):
                    if len(comp.get("custom_id", "")) > 100:
                        raise _DiscordError(400, 50035, "Invalid Form Body", {"custom_id": "BASE_TYPE_MAX_LENGTH"})
            msg["components"] = body["components"] or []
        msg["edited_timestamp"] = datetime.now(timezone.utc).isoformat()


def _route_of(record: RecordedRequest) -> str:
    """Which of ROUTES a request is (files aside), or "" for any other call."""
    parts = [p for p in record.path.split("/") if p]
    m = record.method
    if parts[:1] == ["interactions"] and parts[-1:] == ["callback"]:
        return "callback"
    if parts[:1] == ["webhooks"] and len(parts) == 3 and m == "POST":
        return "followup"
    if parts[:1] == ["webhooks"] and len(parts) == 5 and parts[3] == "messages":
        return {"PATCH": "edit_original", "DELETE": "delete_original"}.get(m, "")
    if parts[:1] == ["channels"] and parts[2:] == ["messages"] and m == "POST":
        return "channel_message"
    return ""


def _refreshed(url: str) -> str:
    """The same CDN file with a newly signed query, as Discord hands out on every read."""
    return url.split("?", 1)[0] + f"?ex={int(time.time()) + 86400:x}&is={int(time.time()):x}&hm=fresh"


def _cdn_path(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1].split("?", 1)[0]


def _mime_of(f: RecordedFile) -> str:
    # discord.py sends every file as application/octet-stream; Discord sniffs
    # the real type. So does the fake, from the magic bytes.
    head = f.data[:12]
    if head.startswith(b"\x89PNG"):
        return "image/png"
    if head.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return f.content_type or "application/octet-stream"


def button_custom_ids(message: Mapping[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message.get("components", []) for c in row.get("components", []) if "custom_id" in c]
