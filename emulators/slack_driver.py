"""Sends signed Slack requests (commands, clicks, view submissions, events) to an app."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Self, TypedDict, Unpack
from urllib.parse import urlencode, urlsplit

import aiohttp

from emulators.slack import APP_ID, BOT_USER_ID, TEAM_DOMAIN, SlackEmulator

Json = dict[str, Any]
FORM = "application/x-www-form-urlencoded"
VERIFICATION_TOKEN = "emulator-verification-token"


class SendOptions(TypedDict, total=False):
    """Options every send method takes."""

    timestamp: int | None
    sign: bool
    tamper: bool
    headers: dict[str, str]


@dataclass
class Reply:
    """The app's HTTP answer to one request."""

    status: int
    body: str
    json: Json | None
    elapsed: float
    headers: dict[str, str] = field(default_factory=dict)


def signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack's `X-Slack-Signature`: v0= + HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def tampered(body: bytes) -> bytes:
    """The body with one byte changed; a letter's case flips so the body stays parseable."""
    data = bytearray(body or b"x")
    letters = [i for i, b in enumerate(data) if chr(b).isascii() and chr(b).isalpha()]
    index = letters[-1] if letters else len(data) - 1
    data[index] ^= 0x20 if letters else 0x01
    return bytes(data)


def _find_action(messages: list[Json], action_id: str,
                 value: str) -> tuple[Json, str, str] | None:
    """The newest message with a matching button, that button's block_id and its value."""
    fallback: tuple[Json, str, str] | None = None
    for message in reversed(messages):
        for block in message.get("blocks") or []:
            elements = [*(block.get("elements") or []), block.get("accessory") or {}]
            for element in elements:
                if element.get("action_id") != action_id:
                    continue
                found = (message, str(block.get("block_id", "b")), str(element.get("value", "")))
                if element.get("value") == value:
                    return found
                fallback = fallback or found
    return fallback


class SlackDriver:
    """Plays Slack: sends signed requests in Slack's wire format to `POST /slack/events`.

    `emulator` is a SlackEmulator in this process, or the root URL of one running standalone;
    it supplies real response_urls, trigger_ids and the messages users click on.
    """

    def __init__(self, app_url: str, signing_secret: str,
                 emulator: SlackEmulator | str | None = None, team_id: str = "T0TEAM",
                 session: aiohttp.ClientSession | None = None, *,
                 enterprise_id: str | None = None, org_wide: bool = False) -> None:
        bare_root = urlsplit(app_url).path in ("", "/")
        self.app_url = app_url.rstrip("/") + "/slack/events" if bare_root else app_url
        self.signing_secret = signing_secret
        self.emulator = emulator
        self.team_id = team_id
        # Enterprise Grid: an org-wide install sends `"team": null` in interactivity payloads
        # and names the workspace only in `user.team_id`.
        self.enterprise_id = enterprise_id
        self.org_wide = org_wide
        self._session = session
        self._owns_session = session is None

    async def __aenter__(self) -> Self:
        self._get_session()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session if the driver created it."""
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    # -- Slack requests --------------------------------------------------------------------

    async def command(self, user: str, text: str, *, command: str = "/release",
                      channel: str = "C0RELEASES", **opts: Unpack[SendOptions]) -> Reply:
        """A slash command, form-encoded as Slack sends it: `text` as typed, escaped by Slack."""
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        form = {
            "token": VERIFICATION_TOKEN, "team_id": self.team_id, "team_domain": TEAM_DOMAIN,
            "channel_id": channel, "channel_name": channel.lower(), "user_id": user,
            "user_name": await self._user_name(user), "command": command, "text": text,
            "api_app_id": APP_ID, "is_enterprise_install": str(self.org_wide).lower(),
            "response_url": await self._response_url(user, channel, None),
            "trigger_id": await self._trigger_id(user),
        }
        if self.enterprise_id:
            form |= {"enterprise_id": self.enterprise_id, "enterprise_name": "Emulated Org"}
        return await self.raw(urlencode(form).encode(), FORM, **opts)

    async def click(self, user: str, action_id: str, value: str, *, channel: str = "C0RELEASES",
                    message_ts: str | None = None, block_id: str | None = None,
                    view: Json | None = None, **opts: Unpack[SendOptions]) -> Reply:
        """A button click (`block_actions`) on a message, or on `view` when given.

        Without `message_ts`, clicks the newest message in `channel` showing that button;
        an empty `value` takes that button's own value, as a person's click would.
        """
        payload = await self._actor_payload("block_actions", user)
        action = {"action_id": action_id, "block_id": block_id or "b", "value": value,
                  "type": "button", "action_ts": f"{time.time():.6f}"}
        if view is not None:
            payload.update(container={"type": "view", "view_id": view.get("id", "V1")}, view=view)
        else:
            found = await self._clicked_message(channel, action_id, value, message_ts)
            message, action["block_id"] = found[0], block_id or found[1]
            action["value"] = value or found[2]
            payload.update(await self._message_context(user, channel, message))
        payload["actions"] = [action]
        return await self._send_payload(payload, opts)

    async def set_checkboxes(self, user: str, action_id: str, block_id: str, values: list[str],
                             *, channel: str = "C0RELEASES",
                             **opts: Unpack[SendOptions]) -> Reply:
        """A click on checkboxes (`block_actions`): Slack sends every box now selected, in
        `selected_options`, and no `value`; `values` are the options' values left selected."""
        payload = await self._actor_payload("block_actions", user)
        messages = [m for m in await self._messages(channel)
                    if any(b.get("block_id") == block_id for b in m.get("blocks") or [])]
        message = messages[-1]
        block = next(b for b in message["blocks"] if b.get("block_id") == block_id)
        options = next(e for e in block["elements"] if e.get("action_id") == action_id)["options"]
        payload.update(await self._message_context(user, channel, message))
        payload["actions"] = [{"type": "checkboxes", "action_id": action_id, "block_id": block_id,
                               "selected_options": [o for o in options if o["value"] in values],
                               "action_ts": f"{time.time():.6f}"}]
        return await self._send_payload(payload, opts)

    async def submit_view(self, user: str, callback_id: str, values: Json, *,
                          private_metadata: str = "", view_id: str = "V1",
                          **opts: Unpack[SendOptions]) -> Reply:
        """A modal submission (`view_submission`); `values` is Slack's `state.values` shape."""
        payload = await self._actor_payload("view_submission", user)
        stored = self._stored_view(view_id)
        view = {"id": view_id, "team_id": self.team_id, "type": "modal", "blocks": [],
                "title": {"type": "plain_text", "text": "Release"}, "close": None,
                "submit": {"type": "plain_text", "text": "Submit"}, "hash": "1.emulator",
                "root_view_id": view_id, "previous_view_id": None, "app_id": APP_ID,
                "external_id": "", "bot_id": "BBOT", "clear_on_close": False,
                "notify_on_close": False, "app_installed_team_id": self.team_id, **stored,
                "callback_id": callback_id, "private_metadata": private_metadata,
                "state": {"values": values}}
        payload.update(view=view, response_urls=[])
        return await self._send_payload(payload, opts)

    async def event(self, event: Json, *, event_id: str | None = None,
                    retry_num: int | None = None, retry_reason: str = "http_timeout",
                    **opts: Unpack[SendOptions]) -> Reply:
        """An Events API delivery; `retry_num` marks it as Slack's retry of an earlier one."""
        envelope = {
            "token": VERIFICATION_TOKEN, "team_id": self.team_id, "api_app_id": APP_ID,
            "event": event, "type": "event_callback",
            "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": self.enterprise_id,
                                "team_id": None if self.org_wide else self.team_id,
                                "user_id": BOT_USER_ID, "is_bot": True,
                                "is_enterprise_install": self.org_wide}],
            "is_ext_shared_channel": False,
        }
        if retry_num is not None:
            retry_headers = {"X-Slack-Retry-Num": str(retry_num),
                             "X-Slack-Retry-Reason": retry_reason}
            opts["headers"] = {**retry_headers, **opts.get("headers", {})}
        return await self.raw(json.dumps(envelope).encode(), "application/json", **opts)

    async def ssl_check(self, **opts: Unpack[SendOptions]) -> Reply:
        """Slack's periodic `ssl_check=1` probe."""
        body = urlencode({"ssl_check": "1", "token": VERIFICATION_TOKEN}).encode()
        return await self.raw(body, FORM, **opts)

    async def raw(self, body: bytes, content_type: str, *, timestamp: int | None = None,
                  sign: bool = True, tamper: bool = False,
                  headers: dict[str, str] | None = None) -> Reply:
        """Send any body, signed (or not) as Slack would; `tamper` alters it after signing."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        sent = {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp,
                "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        if sign:
            sent["X-Slack-Signature"] = signature(self.signing_secret, stamp, body)
        sent.update(headers or {})
        start = time.perf_counter()
        async with self._get_session().post(
                self.app_url, data=tampered(body) if tamper else body, headers=sent) as resp:
            text = await resp.text()
            return Reply(resp.status, text, _parse_json(text), time.perf_counter() - start,
                         dict(resp.headers))

    # -- payload pieces --------------------------------------------------------------------

    async def _send_payload(self, payload: Json, opts: SendOptions) -> Reply:
        """Interactivity payloads travel as a form with one `payload` JSON field."""
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.raw(body, FORM, **opts)

    async def _actor_payload(self, kind: str, user: str) -> Json:
        """Fields every interactivity payload carries about who acted."""
        name = await self._user_name(user)
        team: Json | None = {"id": self.team_id, "domain": TEAM_DOMAIN}
        enterprise = {"id": self.enterprise_id, "name": "Emulated Org"} if (
            self.enterprise_id) else None
        if team is not None and enterprise is not None:
            team["enterprise_id"] = self.enterprise_id
        return {"type": kind, "team": None if self.org_wide else team,
                "user": {"id": user, "username": name, "name": name, "team_id": self.team_id},
                "api_app_id": APP_ID, "token": VERIFICATION_TOKEN,
                "trigger_id": await self._trigger_id(user),
                "is_enterprise_install": self.org_wide, "enterprise": enterprise}

    async def _message_context(self, user: str, channel: str, message: Json) -> Json:
        """The payload fields that place a click on a channel message."""
        return {"container": {"type": "message", "message_ts": message["ts"],
                              "channel_id": channel, "is_ephemeral": False},
                "channel": {"id": channel, "name": channel.lower()}, "message": message,
                "response_url": await self._response_url(user, channel, message["ts"]),
                "state": {"values": {}}}

    async def _clicked_message(self, channel: str, action_id: str, value: str,
                               message_ts: str | None) -> tuple[Json, str, str]:
        """The message being clicked (from the emulator when it has it) and its block_id."""
        messages = await self._messages(channel)
        if message_ts is not None:
            messages = [m for m in messages if m.get("ts") == message_ts]
        found = _find_action(messages, action_id, value)
        if found is not None:
            return found
        if message_ts is not None and messages:
            return messages[-1], "b", value
        minimal = {"type": "message", "user": BOT_USER_ID, "ts": message_ts or "1700000000.000000",
                   "text": "", "blocks": []}
        return minimal, "b", value

    def _stored_view(self, view_id: str) -> Json:
        """The emulator's copy of a view, minus the fields the submission sets."""
        if not isinstance(self.emulator, SlackEmulator):
            return {}
        stored = self.emulator.views.get(view_id, {})
        return {k: v for k, v in stored.items() if k not in ("state",)}

    # -- emulator access (in-process object or standalone URL) -----------------------------

    async def _ctl(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the standalone emulator's control API."""
        url = str(self.emulator).rstrip("/") + path
        async with self._get_session().request(method, url, **kwargs) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def _response_url(self, user: str, channel: str, message_ts: str | None) -> str:
        spec = {"user": user, "channel": channel, "message_ts": message_ts}
        if isinstance(self.emulator, SlackEmulator):
            return self.emulator.new_response_url(**spec)
        if isinstance(self.emulator, str):
            return (await self._ctl("POST", "/_emulator/response_url", json=spec))["url"]
        return f"https://hooks.slack.com/actions/{self.team_id}/1/{uuid.uuid4().hex}"

    async def _trigger_id(self, user: str) -> str:
        if isinstance(self.emulator, SlackEmulator):
            return self.emulator.new_trigger_id(user)
        if isinstance(self.emulator, str):
            spec = {"user": user}
            return (await self._ctl("POST", "/_emulator/trigger_id", json=spec))["trigger_id"]
        return f"1.1.{uuid.uuid4().hex[:20]}"

    async def _messages(self, channel: str) -> list[Json]:
        if isinstance(self.emulator, SlackEmulator):
            return [m.to_slack() for m in self.emulator.all_messages(channel)]
        if isinstance(self.emulator, str):
            return await self._ctl("GET", "/_emulator/messages", params={"channel": channel})
        return []

    async def _user_name(self, user: str) -> str:
        if isinstance(self.emulator, SlackEmulator):
            info = self.emulator.user_info(user)
            return str(info["name"]) if info else user.lower()
        return user.lower()


def _parse_json(text: str) -> Json | None:
    """The body as a JSON object, or None."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None
