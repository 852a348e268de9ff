"""A local fake of the Slack Web API, its file hosts and Socket Mode, on 127.0.0.1.

The real slack-sdk `AsyncWebClient` is pointed at `api_url` (its `base_url`);
every call is recorded so that tests assert on what Slack would have received.
It keeps enough state to behave like Slack where the bot depends on it:
messages posted, updated and deleted; files uploaded through the three steps of
`files_upload_v2` (getUploadURLExternal → POST to the upload URL →
completeUploadExternal) become a message with files in the channel or thread;
private file URLs demand the bot token and, like Slack, answer an HTML login
page with status 200 when it is missing.

`break_http(method, how)` makes a call fail below Slack's JSON, the way a
proxy or a flaky network does: a 503 text/plain body, a 502 HTML page, or a
connection dropped without an answer.

`ForeignHost` is a second server reached as `localhost` (a host name other
than the API's 127.0.0.1) that records every request, to prove no token leaks.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from tests.fakes.loopback import serve_on_loopback

BOT_TOKEN = "xoxb-test-fake"
APP_TOKEN = "xapp-test-fake"
TEAM_ID = "T0FAKE"
BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
ALL_SCOPES = (
    "commands",
    "chat:write",
    "files:write",
    "files:read",
    "app_mentions:read",
    "channels:history",
    "groups:history",
    "mpim:history",
    "users:read",
)
# How a request can fail below Slack's JSON (see FakeSlack.break_http).
RAW_FAILURES = ("text", "html", "drop")
# The endpoints that are not Web API methods, by the names break_http takes.
UPLOAD, RESPONSE_URL, FILE_HOST = "upload", "response_url", "file_host"
LOGIN_PAGE = b"<!DOCTYPE html><html><head><title>Slack</title></head><body>Sign in to Slack</body></html>"


@dataclass
class ApiCall:
    method: str  # "chat.postMessage"
    params: dict[str, Any]  # query, form and JSON body merged
    headers: Mapping[str, str]
    failed: bool = False  # answered with an error (fail() or break_http()): Slack did nothing

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None


@dataclass
class FileRequest:
    path: str
    headers: Mapping[str, str]

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


@dataclass
class Upload:
    file_id: str
    filename: str
    data: bytes
    headers: Mapping[str, str]


@dataclass
class HostedFile:
    data: bytes
    content_type: str
    redirect_to: str | None = None  # answer 302 to this URL instead


@dataclass
class Message:
    channel: str
    ts: str
    user: str
    text: str
    thread_ts: str | None = None
    blocks: list[Any] | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    bot_id: str | None = None
    deleted: bool = False

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "message", "ts": self.ts, "user": self.user, "text": self.text}
        if self.thread_ts:
            out["thread_ts"] = self.thread_ts
        if self.blocks:
            out["blocks"] = self.blocks
        if self.files:
            out["files"] = self.files
        if self.bot_id:
            out["bot_id"] = self.bot_id
        return out


class FakeSlack:
    """Start with `async with FakeSlack() as slack:`; point the client at `slack.api_url`."""

    def __init__(
        self,
        *,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        team_id: str = TEAM_ID,
        bot_user_id: str = BOT_USER_ID,
        scopes: tuple[str, ...] = ALL_SCOPES,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.scopes = scopes
        self.calls: list[ApiCall] = []
        self.file_requests: list[FileRequest] = []
        self.uploads: list[Upload] = []
        self.responses: dict[str, list[dict[str, Any]]] = {}  # response_url id -> JSON bodies posted
        self.messages: list[Message] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.deleted_files: list[str] = []  # ids removed through files.delete
        self.hosted: dict[str, HostedFile] = {}  # path under /files-pri/ -> content
        self.users: dict[str, dict[str, Any]] = {}
        self.socket_acks: list[dict[str, Any]] = []
        self._failures: dict[str, list[str]] = {}
        self._raw_failures: dict[str, list[str]] = {}
        self._pending_uploads: dict[str, str] = {}  # file id -> filename
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_get("/files-pri/{path:.*}", self._private_file)
        app.router.add_post("/response/{rid}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner, self.port = await serve_on_loopback(app)

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    # -- test set-up -----------------------------------------------------

    def add_user(self, user_id: str, *, is_admin: bool = False, name: str = "") -> None:
        self.users[user_id] = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name or user_id.lower(),
            "is_admin": is_admin,
            "is_owner": False,
            "is_primary_owner": False,
            "is_bot": False,
        }

    def add_file(
        self,
        data: bytes,
        *,
        name: str = "photo.png",
        mimetype: str = "image/png",
        content_type: str | None = None,
        url: str | None = None,
        redirect_to: str | None = None,
        user: str = "UALICE",
    ) -> dict[str, Any]:
        """A file as Slack describes it in messages and files.info. Served at
        its url_private (on this server, with the token) unless `url` puts it
        elsewhere; `content_type` is what the file host answers (default: the
        mimetype), `redirect_to` makes the file host answer a 302."""
        file_id = f"F{next(self._ids):06d}"
        path = f"{self.team_id}-{file_id}/{name}"
        if url is None:
            self.hosted[path] = HostedFile(data, content_type or mimetype, redirect_to)
            url = f"{self.base_url}/files-pri/{path}"
        info = {
            "id": file_id,
            "name": name,
            "title": name,
            "mimetype": mimetype,
            "filetype": name.rsplit(".", 1)[-1].lower(),
            "size": len(data),
            "user": user,
            "url_private": url,
            "url_private_download": url,
        }
        self.files[file_id] = info
        return info

    def add_message(
        self,
        channel: str,
        *,
        user: str = "UALICE",
        text: str = "",
        files: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
        bot_id: str | None = None,
    ) -> Message:
        msg = Message(channel, self._next_ts(), user, text, thread_ts, None, list(files or []), bot_id)
        self.messages.append(msg)
        return msg

    def fail(self, method: str, error: str, *, times: int = 1) -> None:
        """Make the next `times` calls of `method` answer {"ok": false, "error": error}."""
        self._failures.setdefault(method, []).extend([error] * times)

    def break_http(self, method: str, how: str = "text", *, times: int = 1) -> None:
        """Make the next `times` requests to `method` fail below Slack's JSON:
        "text" answers 503 text/plain (what proxies and load balancers send),
        "html" a 502 HTML error page, "drop" closes the connection unanswered
        (the SDKs retry that once: use times=2 or more to make it stick).
        `method` is a Web API method ("chat.delete") or UPLOAD (the upload URL
        of files_upload_v2), RESPONSE_URL or FILE_HOST (private file downloads)."""
        if how not in RAW_FAILURES:
            raise ValueError(f"how must be one of {RAW_FAILURES}")
        self._raw_failures.setdefault(method, []).extend([how] * times)

    def response_url(self) -> str:
        rid = uuid.uuid4().hex[:12]
        self.responses[rid] = []
        return f"{self.base_url}/response/{rid}"

    def responses_to(self, url: str) -> list[dict[str, Any]]:
        return self.responses[url.rsplit("/", 1)[-1]]

    # -- what tests read -------------------------------------------------

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def live_messages(self, channel: str | None = None) -> list[Message]:
        return [m for m in self.messages if not m.deleted and (channel is None or m.channel == channel)]

    def completed_uploads(self) -> list[ApiCall]:
        return self.calls_to("files.completeUploadExternal")

    def ephemerals_for(self, user: str) -> list[str]:
        """Every text shown only to `user`: chat.postEphemeral and response_url posts."""
        texts = [c.params.get("text", "") for c in self.calls_to("chat.postEphemeral") if c.params.get("user") == user and not c.failed]
        for bodies in self.responses.values():
            texts.extend(b.get("text", "") for b in bodies if b.get("response_type", "ephemeral") == "ephemeral")
        return texts

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        """Wait until `predicate()` holds (re-checked on every request this
        fake receives); a timeout fails the test with what was seen."""

        async def loop() -> None:
            while not predicate():
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), 0.2)
                except TimeoutError:
                    pass

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            seen = [c.method for c in self.calls]
            raise AssertionError(f"condition not met; Slack API calls seen: {seen}") from None

    # -- Socket Mode -----------------------------------------------------

    async def send_envelope(self, type_: str, payload: Mapping[str, Any], **extra: Any) -> str:
        """Push one Socket Mode envelope to every connected client; returns its id."""
        envelope_id = uuid.uuid4().hex
        body = {"envelope_id": envelope_id, "type": type_, "payload": payload, "accepts_response_payload": type_ != "events_api", **extra}
        for ws in self._sockets:
            await ws.send_str(json.dumps(body))
        return envelope_id

    @property
    def socket_connected(self) -> bool:
        return any(not ws.closed for ws in self._sockets)

    # -- handlers --------------------------------------------------------

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    def _notify(self) -> None:
        self._changed.set()

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        body = await request.read()
        ctype = request.content_type
        if body and ctype == "application/json":
            params.update(json.loads(body))
        elif body and ctype == "application/x-www-form-urlencoded":
            params.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        elif body and ctype.startswith("multipart/"):
            return web.json_response({"ok": False, "error": "multipart_not_expected"})
        for key in ("view", "blocks"):  # form-encoded calls carry these as JSON strings
            if isinstance(params.get(key), str):
                params[key] = _maybe_json(params[key])
        call = ApiCall(method, params, dict(request.headers))
        self.calls.append(call)
        self._notify()
        if (broken := self._raw_failure(request, method)) is not None:
            call.failed = True
            return broken
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if call.token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        failures = self._failures.get(method)
        if failures:
            call.failed = True
            return web.json_response({"ok": False, "error": failures.pop(0)})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result = handler(params)
        headers = {"x-oauth-scopes": ",".join(self.scopes)} if method == "auth.test" else None
        return web.json_response({"ok": True, **result}, headers=headers)

    def _raw_failure(self, request: web.Request, name: str) -> web.Response | None:
        """The answer of a call made to fail by break_http, if this one is."""
        queue = self._raw_failures.get(name)
        if not queue:
            return None
        how = queue.pop(0)
        if how == "text":
            return web.Response(status=503, text="upstream connect error or disconnect/reset before headers", content_type="text/plain")
        if how == "html":
            return web.Response(status=502, text="<html><body><h1>502 Bad Gateway</h1></body></html>", content_type="text/html")
        assert request.transport is not None
        request.transport.close()  # the client sees the connection drop with no answer
        return web.Response(status=500)

    def _m_auth_test(self, p: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake Team",
            "user": "imaginebot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_apps_connections_open(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://127.0.0.1:{self.port}/socket"}

    def _m_chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        blocks = _maybe_json(p.get("blocks"))
        msg = Message(p["channel"], self._next_ts(), self.bot_user_id, p.get("text", ""), p.get("thread_ts") or None, blocks, [], BOT_ID)
        self.messages.append(msg)
        return {"channel": msg.channel, "ts": msg.ts, "message": msg.as_json()}

    def _find(self, channel: str, ts: str) -> Message | None:
        return next((m for m in self.messages if m.channel == channel and m.ts == ts and not m.deleted), None)

    def _m_chat_update(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._find(p["channel"], p["ts"])
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        msg.text = p.get("text", msg.text)
        if "blocks" in p:
            msg.blocks = _maybe_json(p["blocks"])
        return {"channel": msg.channel, "ts": msg.ts, "text": msg.text}

    def _m_chat_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._find(p["channel"], p["ts"])
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        msg.deleted = True
        return {"channel": msg.channel, "ts": msg.ts}

    def _m_chat_getPermalink(self, p: dict[str, Any]) -> dict[str, Any]:
        msg = self._find(p["channel"], p["message_ts"])
        if msg is None:
            return {"ok": False, "error": "message_not_found"}
        return {"channel": msg.channel, "permalink": f"https://fake.slack.com/archives/{msg.channel}/p{msg.ts.replace('.', '')}"}

    def _m_files_delete(self, p: dict[str, Any]) -> dict[str, Any]:
        """Like Slack: the file is gone, and a message left without files goes with it."""
        info = self.files.pop(p.get("file", ""), None)
        if info is None:
            return {"ok": False, "error": "file_deleted" if p.get("file") in self.deleted_files else "file_not_found"}
        self.deleted_files.append(info["id"])
        for path in [k for k in self.hosted if k.startswith(f"{self.team_id}-{info['id']}/")]:
            del self.hosted[path]
        for msg in self.messages:
            if any(f.get("id") == info["id"] for f in msg.files):
                msg.files = [f for f in msg.files if f.get("id") != info["id"]]
                msg.deleted = msg.deleted or not msg.files
        return {}

    def _m_chat_postEphemeral(self, p: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self._next_ts()}

    def _m_views_open(self, p: dict[str, Any]) -> dict[str, Any]:
        view = _maybe_json(p.get("view")) or {}
        return {"view": {"id": f"V{next(self._ids):06d}", **view}}

    def _m_users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        user = self.users.get(p.get("user", ""))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"user": user}

    def _m_files_info(self, p: dict[str, Any]) -> dict[str, Any]:
        info = self.files.get(p.get("file", ""))
        if info is None:
            return {"ok": False, "error": "file_not_found"}
        return {"file": info}

    def _m_conversations_replies(self, p: dict[str, Any]) -> dict[str, Any]:
        channel, ts = p["channel"], p["ts"]
        thread = [
            m.as_json()
            for m in self.messages
            if m.channel == channel and not m.deleted and (m.ts == ts or m.thread_ts == ts)
        ]
        if not thread:
            return {"ok": False, "error": "thread_not_found"}
        return {"messages": sorted(thread, key=lambda m: m["ts"]), "has_more": False}

    def _m_files_getUploadURLExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = f"F{next(self._ids):06d}"
        self._pending_uploads[file_id] = p.get("filename", "file")
        return {"upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _m_files_completeUploadExternal(self, p: dict[str, Any]) -> dict[str, Any]:
        files = json.loads(p["files"])
        described = []
        for f in files:
            upload = next((u for u in self.uploads if u.file_id == f["id"]), None)
            if upload is None:
                return {"ok": False, "error": "file_not_found"}
            path = f"{self.team_id}-{upload.file_id}/{upload.filename}"
            mimetype = _sniff_mime(upload.data)
            self.hosted[path] = HostedFile(upload.data, mimetype)
            info = {
                "id": upload.file_id,
                "name": upload.filename,
                "title": f.get("title") or upload.filename,
                "mimetype": mimetype,
                "filetype": upload.filename.rsplit(".", 1)[-1].lower(),
                "size": len(upload.data),
                "user": self.bot_user_id,
                "url_private": f"{self.base_url}/files-pri/{path}",
                "url_private_download": f"{self.base_url}/files-pri/{path}",
            }
            self.files[upload.file_id] = info
            described.append(info)
        channel = p.get("channel_id")
        if channel:
            self.messages.append(
                Message(channel, self._next_ts(), self.bot_user_id, p.get("initial_comment", ""), p.get("thread_ts") or None, None, described, BOT_ID)
            )
        return {"files": [{"id": d["id"], "title": d["title"]} for d in described]}

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        data = await request.read()
        self.uploads.append(Upload(file_id, self._pending_uploads.get(file_id, "file"), data, dict(request.headers)))
        self._notify()
        if (broken := self._raw_failure(request, UPLOAD)) is not None:
            return broken
        if file_id not in self._pending_uploads:
            return web.Response(status=404, text="unknown upload")
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _private_file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.file_requests.append(FileRequest(path, dict(request.headers)))
        self._notify()
        if (broken := self._raw_failure(request, FILE_HOST)) is not None:
            return broken
        hosted = self.hosted.get(path)
        if hosted is None:
            return web.Response(status=404, text="not found")
        if request.headers.get("Authorization") != f"Bearer {self.bot_token}":
            # What Slack really does without a valid token: a sign-in page, status 200.
            return web.Response(body=LOGIN_PAGE, content_type="text/html")
        if hosted.redirect_to:
            raise web.HTTPFound(hosted.redirect_to)
        return web.Response(body=hosted.data, content_type=hosted.content_type)

    async def _response_url(self, request: web.Request) -> web.Response:
        rid = request.match_info["rid"]
        await request.read()
        self._notify()
        if (broken := self._raw_failure(request, RESPONSE_URL)) is not None:
            return broken
        if rid not in self.responses:
            return web.Response(status=404, text="expired_url")
        self.responses[rid].append(await request.json())
        self._notify()
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_str(json.dumps({"type": "hello", "num_connections": 1}))
        self._notify()
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                self.socket_acks.append(json.loads(msg.data))
                self._notify()
        self._sockets.remove(ws)
        return ws


class ForeignHost:
    """A file host that is not Slack's, reached as http://localhost:<port>.
    Records every request (with its headers) and serves a small PNG."""

    def __init__(self, body: bytes, content_type: str = "image/png") -> None:
        self.body = body
        self.content_type = content_type
        self.requests: list[FileRequest] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def __aenter__(self) -> ForeignHost:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._serve)
        self._runner, self.port = await serve_on_loopback(app)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def url(self, path: str) -> str:
        return f"http://localhost:{self.port}/{path.lstrip('/')}"

    async def _serve(self, request: web.Request) -> web.Response:
        self.requests.append(FileRequest(request.path, dict(request.headers)))
        return web.Response(body=self.body, content_type=self.content_type)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _sniff_mime(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"
