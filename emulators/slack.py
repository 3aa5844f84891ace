"""A local Slack Web API emulator (aiohttp) for tests and the offline demo."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Self

from aiohttp import WSMsgType, web

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
APP_ID = "A0RELEASEBOT"
TEAM_ID = "T0TEAM"
TEAM_DOMAIN = "releasebot-emulator"
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_BLOCK_TEXT = 3000
MAX_BUTTON_VALUE = 2000
MAX_MESSAGE_TEXT = 40000
RESPONSE_URL_USES = 5
RESPONSE_URL_TTL = 30 * 60.0
TRIGGER_TTL = 3.0
FIRST_TS_MICROS = 1_700_000_000_000_000
JSON_FIELDS = ("blocks", "view", "attachments", "metadata")

Json = dict[str, Any]


class SlackError(Exception):
    """A Slack API error, answered as `{"ok": false, "error": ...}`."""

    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra


@dataclass
class Call:
    """One recorded request to the emulator."""

    method: str
    args: Json
    at: float
    response: Json
    status: int


@dataclass
class Version:
    """A message's content before an edit replaced it."""

    text: str
    blocks: list[Json]
    replaced_at: float


@dataclass
class Message:
    """A message stored in a channel (top-level or thread reply)."""

    channel: str
    ts: str
    text: str = ""
    blocks: list[Json] = field(default_factory=list)
    thread_ts: str | None = None
    reply_broadcast: bool = False
    user: str = BOT_USER_ID
    edits: list[Version] = field(default_factory=list)
    deleted: bool = False
    metadata: Json | None = None

    def to_slack(self) -> Json:
        """The message as Slack's API and payloads show it."""
        out: Json = {"type": "message", "user": self.user, "ts": self.ts, "text": self.text,
                     "team": TEAM_ID, "blocks": self.blocks}
        if self.user == BOT_USER_ID:
            out.update(bot_id=BOT_ID, app_id=APP_ID)
        if self.thread_ts:
            out.update(thread_ts=self.thread_ts, parent_user_id=BOT_USER_ID)
        if self.edits:
            out["edited"] = {"user": self.user, "ts": self.ts}
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass
class Ephemeral:
    """A message only one user sees (chat.postEphemeral or a response_url answer)."""

    channel: str | None
    user: str | None
    ts: str
    text: str
    blocks: list[Json]
    source: str


@dataclass
class Fault:
    """A scripted failure for the next `times` calls of a method ("*" = any)."""

    method: str
    times: int
    status: int
    retry_after: int | None
    error: str | None
    land: bool
    delay: float

    @property
    def slow_success(self) -> bool:
        """True when the fault only delays an otherwise normal answer."""
        return self.status == 200 and self.error is None


@dataclass
class ResponseUrl:
    """A response_url handed out with a command or click, and what was posted to it."""

    id: str
    url: str
    issued_at: float
    user: str | None
    channel: str | None
    message_ts: str | None
    posts: list[Json] = field(default_factory=list)


@dataclass
class Trigger:
    """A trigger_id and when it was issued."""

    id: str
    issued_at: float
    user: str | None
    used: bool = False


def _truthy(value: Any) -> bool:
    """Slack's lenient boolean: true/1/"true"/"1"."""
    return value is True or value == 1 or str(value).lower() in ("1", "true")


def _decode_field(key: str, value: Any) -> Any:
    """Form posts carry structured fields as JSON strings; decode those."""
    if key in JSON_FIELDS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _walk_limits(node: Any, path: str) -> Iterator[str]:
    """Yield Block Kit limit violations found under one block."""
    if isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_limits(item, f"{path}/{i}")
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        where = f"{path}/{key}"
        if key == "text" and isinstance(value, str) and len(value) > MAX_BLOCK_TEXT:
            yield f"must be less than {MAX_BLOCK_TEXT + 1} characters [json-pointer:{where}]"
        elif (key == "value" and node.get("type") == "button" and isinstance(value, str)
              and len(value) > MAX_BUTTON_VALUE):
            yield f"must be less than {MAX_BUTTON_VALUE + 1} characters [json-pointer:{where}]"
        else:
            yield from _walk_limits(value, where)


def block_errors(blocks: Any, limit: int = MAX_MESSAGE_BLOCKS) -> list[str]:
    """Slack's Block Kit validation messages for a blocks array (empty when valid)."""
    if not isinstance(blocks, list):
        return ["must be an array [json-pointer:/blocks]"]
    errors = []
    if len(blocks) > limit:
        errors.append(f"no more than {limit} items allowed [json-pointer:/blocks]")
    for i, block in enumerate(blocks):
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"missing required field: type [json-pointer:/blocks/{i}]")
            continue
        errors.extend(_walk_limits(block, f"/blocks/{i}"))
    return errors


def _check_content(text: str, blocks: Any) -> None:
    """Raise Slack's error for a message body that breaks a limit."""
    if len(text) > MAX_MESSAGE_TEXT:
        raise SlackError("msg_too_long")
    errors = block_errors(blocks) if blocks else []
    if errors:
        raise SlackError("invalid_blocks", errors=errors,
                         response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})


def _plain(obj: Any) -> str:
    """The text of a Block Kit text object (or a bare string)."""
    if isinstance(obj, dict):
        return str(obj.get("text", ""))
    return str(obj) if obj else ""


def _element_label(element: Json) -> str:
    """How an interactive element looks to a reader, e.g. `[Approve]`."""
    label = _plain(element.get("text")) or _plain(element.get("placeholder"))
    return f"[{label or element.get('type', 'element')}]"


def _render_block(block: Json) -> list[str]:
    """Readable lines for one block."""
    kind = block.get("type")
    if kind == "header":
        return [_plain(block.get("text"))]
    if kind == "section":
        lines = _plain(block.get("text")).splitlines()
        lines += [_plain(f) for f in block.get("fields", [])]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") != "image":
            lines.append(_element_label(accessory))
        return lines
    if kind == "context":
        texts = [_plain(e) for e in block.get("elements", []) if e.get("type") != "image"]
        return [" · ".join(t for t in texts if t)]
    if kind == "actions":
        return [" ".join(_element_label(e) for e in block.get("elements", []))]
    if kind == "divider":
        return ["---"]
    if kind == "input":
        return [f"{_plain(block.get('label'))}: {_element_label(block.get('element', {}))}"]
    if kind == "image":
        return [f"[image: {block.get('alt_text', '')}]"]
    return []


def render_message(message: Message) -> list[str]:
    """A message as a reader sees it: block text and button labels, else its text."""
    lines = [line for b in message.blocks for line in _render_block(b) if line]
    lines = lines or message.text.splitlines() or [""]
    if message.edits:
        lines[0] += " (edited)"
    return lines


class SlackEmulator:
    """An in-memory Slack workspace serving the Web API, response_urls and a control API."""

    def __init__(self, *, clock: Callable[[], float] = time.time, latency: float = 0.0) -> None:
        self.clock = clock
        self.latency = latency
        self.users: dict[str, Json] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.disabled_usergroups: set[str] = set()  # Slack's "delete": members kept, hidden
        self.channels: dict[str, Json] = {}
        self.missing_channels: set[str] = set()
        # Channels the bot is not a member of: posting there answers `not_in_channel`.
        self.outside_channels: set[str] = set()
        self.enterprise_id: str | None = None  # the Grid organization the workspace belongs to
        self.calls: list[Call] = []
        self.views: dict[str, Json] = {}
        self.response_urls: dict[str, ResponseUrl] = {}
        self._ts_counter = itertools.count(1)
        self._id_counter = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.sockets: list[web.WebSocketResponse] = []
        self._acks: dict[str, asyncio.Future[Json]] = {}
        self._host = "127.0.0.1"
        self._port = 0
        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.open": self._conversations_open,
            "conversations.info": self._conversations_info,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_push,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
        }
        self.reset()
        self.latency = latency

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start serving on host:port (port 0 picks a free one)."""
        self._runner = web.AppRunner(self.build_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._port = self._runner.addresses[0][1]
        self._host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    async def stop(self) -> None:
        """Stop serving (Socket Mode connections first, or cleanup waits on them)."""
        for ws in list(self.sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Server root, without a trailing slash, e.g. `http://127.0.0.1:PORT`."""
        if not self._port:
            raise RuntimeError("SlackEmulator is not started")
        return f"http://{self._host}:{self._port}"

    @property
    def base_url(self) -> str:
        """Web API base URL for `AsyncWebClient(base_url=...)` (trailing slash kept)."""
        return f"{self.url}/api/"

    def build_app(self) -> web.Application:
        """The aiohttp application serving the API, response_urls and control routes."""
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{rid}", self._handle_response_url)
        app.router.add_get("/_emulator/calls", self._ctl_calls)
        app.router.add_post("/_emulator/fault", self._ctl_fault)
        app.router.add_post("/_emulator/reset", self._ctl_reset)
        app.router.add_post("/_emulator/config", self._ctl_config)
        app.router.add_post("/_emulator/response_url", self._ctl_response_url)
        app.router.add_post("/_emulator/trigger_id", self._ctl_trigger_id)
        app.router.add_get("/_emulator/messages", self._ctl_messages)
        app.router.add_get("/_emulator/render", self._ctl_render)
        app.router.add_get("/socket", self._socket)
        return app

    # -- Socket Mode -----------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        """A Socket Mode connection: hello, then envelopes out and acks back."""
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": len(self.sockets),
                            "debug_info": {"host": "emulator"}, "connection_info": {}})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    ack = json.loads(msg.data)
                    waiter = self._acks.pop(str(ack.get("envelope_id")), None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(ack)
        finally:
            self.sockets.remove(ws)
        return ws

    async def send_envelope(self, kind: str, payload: Json, within: float = 3.0) -> Json:
        """Deliver one Socket Mode envelope to the app and return its ack (Slack waits 3 s)."""
        if not self.sockets:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = uuid.uuid4().hex
        waiter: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._acks[envelope_id] = waiter
        await self.sockets[-1].send_json({"envelope_id": envelope_id, "type": kind,
                                          "payload": payload, "accepts_response_payload": True,
                                          "retry_attempt": 0, "retry_reason": ""})
        async with asyncio.timeout(within):
            return await waiter

    def reset(self) -> None:
        """Forget traffic, stored state, faults and latency; keep users/groups/channels config."""
        self.calls.clear()
        self.views.clear()
        self.response_urls.clear()
        self.latency = 0.0
        self._messages: dict[str, list[Message]] = {}
        self._ephemerals: list[Ephemeral] = []
        self._homes: dict[str, Json] = {}
        self._modals: list[tuple[str | None, str]] = []
        self._triggers: dict[str, Trigger] = {}
        self._faults: list[Fault] = []

    # -- scripting -------------------------------------------------------------------------

    def fail(self, method: str, *, times: int = 1, status: int | None = None,
             retry_after: int | None = None, error: str | None = None, land: bool = False,
             delay: float = 0.0) -> None:
        """Fail the next `times` calls of `method` ("*" = any); status: 200 if error else 429."""
        status = status if status is not None else (200 if error else 429)
        self._faults.append(Fault(method, times, status, retry_after, error, land, delay))

    def new_response_url(self, *, user: str | None = None, channel: str | None = None,
                         message_ts: str | None = None) -> str:
        """Issue a response_url (5 uses, 30 minutes) tied to who triggered it and where."""
        rid = uuid.uuid4().hex
        url = f"{self.url}/response/{rid}"
        self.response_urls[rid] = ResponseUrl(rid, url, self.clock(), user, channel, message_ts)
        return url

    def new_trigger_id(self, user: str | None = None) -> str:
        """Issue a trigger_id usable once, within 3 s, by views.open/push."""
        n = next(self._id_counter)
        tid = f"{n}.{1_000_000 + n}.{uuid.uuid4().hex[:20]}"
        self._triggers[tid] = Trigger(tid, self.clock(), user)
        return tid

    # -- inspection ------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        """Recorded calls of one method, in order."""
        return [c for c in self.calls if c.method == method]

    def all_messages(self, channel: str) -> list[Message]:
        """Every live message of a channel, replies included, in posting order."""
        return [m for m in self._messages.get(channel, []) if not m.deleted]

    def messages(self, channel: str) -> list[Message]:
        """Top-level messages of a channel, in order."""
        return [m for m in self.all_messages(channel) if m.thread_ts is None]

    def thread(self, channel: str, ts: str) -> list[Message]:
        """Replies in the thread of message `ts`, in order."""
        return [m for m in self.all_messages(channel) if m.thread_ts == ts]

    def message(self, channel: str, ts: str) -> Message | None:
        """One live message by channel and ts."""
        return next((m for m in self.all_messages(channel) if m.ts == ts), None)

    def ephemerals(self, user: str | None = None) -> list[Ephemeral]:
        """Ephemeral messages, optionally only those shown to `user`."""
        return [e for e in self._ephemerals if user is None or e.user == user]

    def dms(self, user: str) -> list[Message]:
        """Messages the bot sent to a user's DM channel."""
        return self.messages(self.dm_channel(user))

    def home(self, user: str) -> Json | None:
        """The App Home view last published for a user."""
        return self._homes.get(user)

    def modals(self, user: str | None = None) -> list[Json]:
        """Views opened or pushed as modals (current versions), in order."""
        return [self.views[vid] for who, vid in self._modals if user is None or who == user]

    def responses(self, url: str) -> list[Json]:
        """Bodies posted to one response_url."""
        return self.response_urls[url.rstrip("/").rsplit("/", 1)[-1]].posts

    def render_channel(self, channel: str) -> str:
        """The channel as a reader sees it: messages, then their thread replies indented."""
        out: list[str] = []
        for message in self.messages(channel):
            out.extend(render_message(message))
            for reply in self.thread(channel, message.ts):
                lines = render_message(reply)
                mark = "(also sent to channel) " if reply.reply_broadcast else ""
                out.append(f"    ↳ {mark}{lines[0]}")
                out.extend(f"      {line}" for line in lines[1:])
            out.append("")
        return "\n".join(out).rstrip("\n") + ("\n" if out else "")

    def user_info(self, user: str) -> Json | None:
        """The user object users.info answers, or None for an unknown id."""
        override = self.users.get(user, {})
        if not override and user[:1] not in ("U", "W"):
            return None
        name = override.get("name", user.lower())
        real_name = override.get("real_name", f"User {user}")
        profile = {"display_name": name, "real_name": real_name, **override.get("profile", {})}
        # Guests: is_restricted (multi-channel) and is_ultra_restricted (single-channel);
        # a Slack Connect user's team_id is their own workspace's, not ours.
        return {"id": user, "team_id": TEAM_ID, "name": name, "real_name": real_name,
                "deleted": False, "is_bot": user == BOT_USER_ID, "is_restricted": False,
                "is_ultra_restricted": False, "tz": "Asia/Shanghai",
                "tz_label": "China Standard Time", "tz_offset": 8 * 3600, **self._grid_user(),
                **override, "profile": profile}

    def _grid_user(self) -> Json:
        """On Enterprise Grid, users.info names the user's organization in enterprise_user."""
        if not self.enterprise_id:
            return {}
        return {"enterprise_user": {"id": "", "enterprise_id": self.enterprise_id,
                                    "enterprise_name": "Emulated Org", "teams": [TEAM_ID]}}

    def post_as(self, user: str, channel: str, text: str) -> Message:
        """A message a person wrote (in a channel, or their DM with the bot)."""
        message = self._store(channel, text, [])
        message.user = user
        return message

    def dm_channel(self, user: str) -> str:
        """The DM channel id conversations.open gives for a user."""
        return f"D{user}"

    # -- HTTP: Web API ---------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        """Serve `/api/{method}` (GET or POST, query, form or JSON arguments)."""
        method = request.match_info["method"]
        try:
            args = await _read_args(request)
        except ValueError:
            args, status, body, headers = {}, 200, {"ok": False, "error": "invalid_json"}, {}
        else:
            status, body, headers = await self._dispatch(method, args, _bearer(request, args))
        self.calls.append(Call(method, args, self.clock(), body, status))
        return web.json_response(body, status=status, headers=headers)

    async def _dispatch(self, method: str, args: Json,
                        token: str | None) -> tuple[int, Json, dict[str, str]]:
        """Auth, scripted faults, then the method itself."""
        if self.latency:
            await asyncio.sleep(self.latency)
        if method == "apps.connections.open":  # Socket Mode: the app-level token, not the bot's
            if not (token or "").startswith("xapp-"):
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            return 200, {"ok": True, "url": self.url.replace("http", "ws", 1) + "/socket"}, {}
        if token is None or not token.startswith("xoxb-"):
            return 200, {"ok": False, "error": "not_authed"}, {}
        if token == "xoxb-invalid":
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        fault = self._take_fault(method)
        if fault is None:
            return 200, self._invoke(method, args), {}
        return await self._faulted(fault, method, args)

    def _take_fault(self, method: str) -> Fault | None:
        """Consume one use of the first fault scripted for this method."""
        for fault in self._faults:
            if fault.method in (method, "*") and fault.times > 0:
                fault.times -= 1
                return fault
        return None

    async def _faulted(self, fault: Fault, method: str,
                       args: Json) -> tuple[int, Json, dict[str, str]]:
        """Answer according to a fault; `land` applies the call before failing."""
        if fault.slow_success:
            await asyncio.sleep(fault.delay)
            return 200, self._invoke(method, args), {}
        if fault.land:
            self._invoke(method, args)
        if fault.delay:
            await asyncio.sleep(fault.delay)
        headers: dict[str, str] = {}
        if fault.status == 429:
            headers["Retry-After"] = str(fault.retry_after if fault.retry_after is not None else 1)
        error = fault.error or _default_error(fault.status)
        return fault.status, {"ok": False, "error": error}, headers

    def _invoke(self, method: str, args: Json) -> Json:
        """Run a method handler and shape its result as a Slack response."""
        handler = self._methods.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        try:
            return {"ok": True, **handler(args)}
        except SlackError as exc:
            return {"ok": False, "error": exc.error, **exc.extra}

    # -- methods ---------------------------------------------------------------------------

    def _auth_test(self, args: Json) -> Json:
        # On Enterprise Grid, auth.test adds the organization's enterprise_id.
        grid = {"enterprise_id": self.enterprise_id} if self.enterprise_id else {}
        return {"url": f"https://{TEAM_DOMAIN}.slack.com/", "team": "ReleaseBot Emulator",
                "user": "releasebot", "team_id": TEAM_ID, "user_id": BOT_USER_ID,
                "bot_id": BOT_ID, "is_enterprise_install": False, **grid}

    def _chat_post_message(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"))
        if channel in self.outside_channels:  # Slack's answer when the bot was never invited
            raise SlackError("not_in_channel")
        text, blocks = str(args.get("text") or ""), args.get("blocks") or []
        if not text and not blocks:
            raise SlackError("no_text")
        _check_content(text, blocks)
        thread_ts = self._thread_root(channel, args.get("thread_ts"))
        broadcast = bool(thread_ts) and _truthy(args.get("reply_broadcast"))
        message = self._store(channel, text, blocks, thread_ts, broadcast)
        message.metadata = args.get("metadata") or None
        return {"channel": channel, "ts": message.ts, "message": message.to_slack()}

    def _conversations_history(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"), allow_user=False)
        newest_first = list(reversed(self.messages(channel)))
        return _page(newest_first, args, 100)

    def _conversations_replies(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"), allow_user=False)
        parent = self.message(channel, str(args.get("ts") or ""))
        if parent is None:
            raise SlackError("thread_not_found")
        return _page([parent, *self.thread(channel, parent.ts)], args, 1000)

    def _chat_update(self, args: Json) -> Json:
        # Unlike chat.postMessage, a user id is no channel here: a DM is updated by its IM's id
        # (the `channel` chat.postMessage answered), else Slack says channel_not_found.
        channel = self._resolve_channel(args.get("channel"), allow_user=False)
        message = self.message(channel, str(args.get("ts") or ""))
        if message is None:
            raise SlackError("message_not_found")
        if message.user != BOT_USER_ID:  # a bot may edit only its own messages
            raise SlackError("cant_update_message")
        if not args.get("text") and not args.get("blocks"):
            raise SlackError("no_text")
        _check_content(str(args.get("text") or ""), args.get("blocks") or [])
        self._edit(message, args)
        return {"channel": channel, "ts": message.ts, "text": message.text,
                "message": message.to_slack()}

    def _chat_post_ephemeral(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"))
        user = str(args.get("user") or "")
        if self.user_info(user) is None:
            raise SlackError("user_not_found")
        text, blocks = str(args.get("text") or ""), args.get("blocks") or []
        if not text and not blocks:
            raise SlackError("no_text")
        _check_content(text, blocks)
        ts = self._next_ts()
        self._ephemerals.append(Ephemeral(channel, user, ts, text, blocks, "chat.postEphemeral"))
        return {"message_ts": ts}

    def _chat_get_permalink(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"))
        ts = str(args.get("message_ts") or "")
        if self.message(channel, ts) is None:
            raise SlackError("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{ts.replace('.', '')}"
        return {"channel": channel, "permalink": link}

    def _conversations_open(self, args: Json) -> Json:
        if args.get("channel"):
            return {"channel": {"id": self._resolve_channel(args["channel"])}}
        users = args.get("users") or ""
        ids = users if isinstance(users, list) else [u for u in str(users).split(",") if u]
        if not ids:
            raise SlackError("users_list_not_supplied")
        if any(self.user_info(u) is None for u in ids):
            raise SlackError("user_not_found")
        cid = self.dm_channel(ids[0]) if len(ids) == 1 else "G" + "".join(sorted(ids))
        return {"channel": {"id": cid}}

    def _conversations_info(self, args: Json) -> Json:
        channel = self._resolve_channel(args.get("channel"), allow_user=False)
        is_im = channel.startswith("D")
        info = {"id": channel, "name": channel.lower(), "is_channel": channel.startswith("C"),
                "is_group": channel.startswith("G"), "is_im": is_im,
                "is_private": not channel.startswith("C"), "is_archived": False,
                "is_member": channel not in self.outside_channels, "created": 1_700_000_000}
        if is_im:
            info["user"] = channel[1:]
        return {"channel": {**info, **self.channels.get(channel, {})}}

    def _users_info(self, args: Json) -> Json:
        user = self.user_info(str(args.get("user") or ""))
        if user is None:
            raise SlackError("user_not_found")
        return {"user": user}

    def _usergroups_users_list(self, args: Json) -> Json:
        group = str(args.get("usergroup") or "")
        hidden = group in self.disabled_usergroups and not _truthy(args.get("include_disabled"))
        if group not in self.usergroups or hidden:
            raise SlackError("no_such_subteam")
        return {"users": list(self.usergroups[group])}

    def _views_open(self, args: Json) -> Json:
        trigger = self._trigger(args.get("trigger_id"))
        view = self._new_view(args.get("view"), previous=None)
        trigger.used = True
        self._modals.append((trigger.user, view["id"]))
        return {"view": view}

    def _views_push(self, args: Json) -> Json:
        trigger = self._trigger(args.get("trigger_id"))
        previous = next((vid for who, vid in reversed(self._modals) if who == trigger.user), None)
        view = self._new_view(args.get("view"), previous=previous)
        trigger.used = True
        self._modals.append((trigger.user, view["id"]))
        return {"view": view}

    def _views_update(self, args: Json) -> Json:
        current = self._find_view(args.get("view_id"), args.get("external_id"))
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        content = _view_content(args.get("view"))
        current.update(content, hash=self._view_hash())
        return {"view": current}

    def _views_publish(self, args: Json) -> Json:
        user = str(args.get("user_id") or "")
        if self.user_info(user) is None:
            raise SlackError("user_not_found")
        view = self._new_view(args.get("view"), previous=None)
        self._homes[user] = view
        return {"view": view}

    # -- state helpers ---------------------------------------------------------------------

    def _next_ts(self) -> str:
        """A unique, increasing Slack-style ts."""
        micros = FIRST_TS_MICROS + next(self._ts_counter) * 100
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _resolve_channel(self, channel: Any, *, allow_user: bool = True) -> str:
        """A channel id that exists; user ids map to their DM channel."""
        cid = str(channel or "")
        if allow_user and cid[:1] in ("U", "W") and self.user_info(cid) is not None:
            cid = self.dm_channel(cid)
        if cid in self.missing_channels or cid[:1] not in ("C", "G", "D"):
            raise SlackError("channel_not_found")
        return cid

    def _thread_root(self, channel: str, thread_ts: Any) -> str | None:
        """Slack threads a reply-to-a-reply under the original parent."""
        if not thread_ts:
            return None
        target = self.message(channel, str(thread_ts))
        return target.thread_ts if target and target.thread_ts else str(thread_ts)

    def _store(self, channel: str, text: str, blocks: list[Json], thread_ts: str | None = None,
               broadcast: bool = False) -> Message:
        """Append a new bot message to a channel."""
        message = Message(channel, self._next_ts(), text, blocks, thread_ts, broadcast)
        self._messages.setdefault(channel, []).append(message)
        return message

    def _edit(self, message: Message, update: Json) -> None:
        """Apply an edit, keeping the previous version; absent fields are left as they were."""
        message.edits.append(Version(message.text, message.blocks, self.clock()))
        if "text" in update:
            message.text = str(update.get("text") or "")
        if "blocks" in update:
            message.blocks = update.get("blocks") or []

    def _trigger(self, trigger_id: Any) -> Trigger:
        """A trigger that is known, unused and younger than 3 s."""
        trigger = self._triggers.get(str(trigger_id or ""))
        if trigger is None or trigger.used or self.clock() - trigger.issued_at > TRIGGER_TTL:
            raise SlackError("expired_trigger_id")
        return trigger

    def _view_hash(self) -> str:
        return f"{int(self.clock())}.{uuid.uuid4().hex[:8]}"

    def _new_view(self, view: Any, *, previous: str | None) -> Json:
        """Store a new view with the fields Slack adds."""
        content = _view_content(view)
        vid = f"V{next(self._id_counter):010d}"
        stored = {"id": vid, "team_id": TEAM_ID, "type": "modal", "blocks": [],
                  "private_metadata": "", "callback_id": "", "external_id": "",
                  "state": {"values": {}}, "clear_on_close": False, "notify_on_close": False,
                  "root_view_id": vid, "previous_view_id": previous, "app_id": APP_ID,
                  "bot_id": BOT_ID, **content, "hash": self._view_hash()}
        self.views[vid] = stored
        return stored

    def _find_view(self, view_id: Any, external_id: Any) -> Json:
        """A stored view by id or external_id."""
        if view_id and view_id in self.views:
            return self.views[view_id]
        match = [v for v in self.views.values() if external_id and v["external_id"] == external_id]
        if not match:
            raise SlackError("not_found")
        return match[-1]

    # -- HTTP: response_url ----------------------------------------------------------------

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        """Serve a response_url post with Slack's 5-uses / 30-minutes rules."""
        if self.latency:
            await asyncio.sleep(self.latency)
        entry = self.response_urls.get(request.match_info["rid"])
        try:
            body = json.loads(await request.text() or "{}")
        except ValueError:
            body = None
        status, text = self._response_outcome(entry, body)
        record = {"url": str(request.url), **(body if isinstance(body, dict) else {})}
        outcome = {"ok": status == 200, "body": text}
        self.calls.append(Call("response_url", record, self.clock(), outcome, status))
        return web.Response(status=status, text=text)

    def _response_outcome(self, entry: ResponseUrl | None, body: Any) -> tuple[int, str]:
        """Validate and apply one response_url post; (status, body text)."""
        if entry is None:
            return 404, "no_service"
        if self.clock() - entry.issued_at > RESPONSE_URL_TTL:
            return 404, "expired_url"
        if len(entry.posts) >= RESPONSE_URL_USES:
            return 404, "used_url"
        if not isinstance(body, dict):
            return 400, "invalid_payload"
        try:
            if not body.get("delete_original"):
                _check_content(str(body.get("text") or ""), body.get("blocks") or [])
        except SlackError as exc:
            return 400, exc.error
        entry.posts.append(body)
        self._apply_response(entry, body)
        return 200, '{"ok":true}'

    def _apply_response(self, entry: ResponseUrl, body: Json) -> None:
        """Delete, replace, post in channel, or answer ephemerally, as the body asks."""
        original = self.message(entry.channel, entry.message_ts) if (
            entry.channel and entry.message_ts) else None
        if _truthy(body.get("delete_original")):
            if original is not None:
                original.deleted = True
            return
        text, blocks = str(body.get("text") or ""), body.get("blocks") or []
        if _truthy(body.get("replace_original")) and original is not None:
            self._edit(original, {"text": text, "blocks": blocks})
        elif body.get("response_type") == "in_channel" and entry.channel:
            self._store(entry.channel, text, blocks, self._thread_root(
                entry.channel, body.get("thread_ts")))
        else:
            self._ephemerals.append(
                Ephemeral(entry.channel, entry.user, self._next_ts(), text, blocks, entry.url))

    # -- HTTP: control API (used across processes) -----------------------------------------

    async def _ctl_calls(self, request: web.Request) -> web.Response:
        method = request.query.get("method")
        calls = self.calls_to(method) if method else self.calls
        return web.json_response([asdict(c) for c in calls])

    async def _ctl_fault(self, request: web.Request) -> web.Response:
        spec = await request.json()
        self.fail(spec.pop("method"), **spec)
        return web.json_response({"ok": True})

    async def _ctl_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _ctl_config(self, request: web.Request) -> web.Response:
        config = await request.json()
        self.users.update(config.get("users", {}))
        self.usergroups.update(config.get("usergroups", {}))
        self.channels.update(config.get("channels", {}))
        self.missing_channels.update(config.get("missing_channels", []))
        self.outside_channels.update(config.get("outside_channels", []))
        self.enterprise_id = config.get("enterprise_id", self.enterprise_id)
        self.latency = float(config.get("latency", self.latency))
        return web.json_response({"ok": True})

    async def _ctl_response_url(self, request: web.Request) -> web.Response:
        spec = await request.json()
        return web.json_response({"url": self.new_response_url(**spec)})

    async def _ctl_trigger_id(self, request: web.Request) -> web.Response:
        spec = await request.json()
        return web.json_response({"trigger_id": self.new_trigger_id(spec.get("user"))})

    async def _ctl_messages(self, request: web.Request) -> web.Response:
        channel = request.query.get("channel", "")
        return web.json_response([m.to_slack() for m in self.all_messages(channel)])

    async def _ctl_render(self, request: web.Request) -> web.Response:
        return web.Response(text=self.render_channel(request.query.get("channel", "")))


def _page(messages: list[Message], args: Json, default_limit: int) -> Json:
    """One page of messages, with Slack's cursor pagination (`limit`, `cursor`, `has_more`)."""
    limit = int(args.get("limit") or default_limit)
    cursor = str(args.get("cursor") or "")
    start = int(cursor.removeprefix("page:")) if cursor.startswith("page:") else 0
    end = start + limit
    more = end < len(messages)
    return {"messages": [m.to_slack() for m in messages[start:end]], "has_more": more,
            "response_metadata": {"next_cursor": f"page:{end}" if more else ""}}


def _view_content(view: Any) -> Json:
    """A view argument, checked the way views.* check it."""
    if not isinstance(view, dict) or view.get("type", "modal") not in ("modal", "home"):
        raise SlackError("invalid_arguments",
                         response_metadata={"messages": ["[ERROR] invalid `view` argument"]})
    errors = block_errors(view.get("blocks", []), MAX_VIEW_BLOCKS)
    if errors:
        raise SlackError("invalid_arguments",
                         response_metadata={"messages": [f"[ERROR] {e}" for e in errors]})
    return {k: v for k, v in view.items() if k not in ("id", "hash")}


def _default_error(status: int) -> str:
    """Slack's error code for a bare HTTP failure status."""
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return "fatal_error"
    return "internal_error" if status == 200 else "invalid_request"


def _bearer(request: web.Request, args: Json) -> str | None:
    """The token from `Authorization: Bearer` or, as Slack also allows, a `token` argument."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer "):].strip()
    token = args.get("token")
    return str(token) if token else None


async def _read_args(request: web.Request) -> Json:
    """Merge query string, form and JSON body arguments; raise ValueError on bad JSON."""
    args: Json = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            body = json.loads(await request.text() or "{}")
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            args.update(body)
        else:
            args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    return {k: _decode_field(k, v) for k, v in args.items()}


async def _serve(host: str, port: int) -> None:
    """Run an emulator until SIGINT/SIGTERM."""
    emulator = SlackEmulator()
    await emulator.start(host, port)
    print(emulator.base_url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await emulator.stop()


def main(argv: list[str] | None = None) -> None:
    """`python -m emulators.slack --port N`: serve and print the base URL."""
    parser = argparse.ArgumentParser(description="Local Slack Web API emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
