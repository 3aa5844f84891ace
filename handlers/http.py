"""Slack's side of the app: the Web API client, Bolt, `POST /slack/events` and Socket Mode."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.logger.messages import (
    warning_client_prioritized_and_token_skipped,
    warning_token_skipped,
)
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bot.deploys import Deployer
from bot.metrics import Metrics
from bot.policy import Policy
from bot.settings import Settings
from bot.transition import Deps
from handlers import register_listeners
from handlers.access import Access
from handlers.delivery import Deliverer
from handlers.directory import Directory
from handlers.runtime import Runtime

log = logging.getLogger(__name__)


class CountingWebClient(AsyncWebClient):
    """The Web API client, counting every call by method and outcome for /metrics."""

    metrics: Metrics | None = None

    async def api_call(self, api_method: str, **kwargs: Any) -> Any:
        """One call, counted."""
        try:
            response = await super().api_call(api_method, **kwargs)
        except SlackApiError as exc:
            self._count(api_method, str(exc.response.get("error")))
            raise
        self._count(api_method, "ok")
        return response

    def _count(self, method: str, outcome: str) -> None:
        """Add one to the counter, when there is one."""
        if self.metrics is not None:
            self.metrics.slack_calls.labels(method, outcome).inc()


def slack_client(settings: Settings, metrics: Metrics | None = None,
                 session: aiohttp.ClientSession | None = None) -> AsyncWebClient:
    """The Web API client: our base URL, and 429s waited out as Slack asks."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    client = CountingWebClient(token=token, base_url=settings.slack_api_url, timeout=15,
                               session=session)
    client.metrics = metrics
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=5))
    return client


def _authorizer(client: AsyncWebClient) -> Any:
    """Our single workspace's token, without Bolt's auth.test before the first ack."""

    async def authorize(enterprise_id: str | None, team_id: str | None,
                        **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id,
                               bot_token=client.token)

    return authorize


class _DropTokenSkipped(logging.Filter):
    """Bolt warns that the token it read from SLACK_BOT_TOKEN goes unused beside our client,
    and that our authorize function makes it ignore a token: both by design."""

    texts = (warning_client_prioritized_and_token_skipped(), warning_token_skipped())

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep every record but those two."""
        return record.getMessage() not in self.texts


_TOKEN_SKIPPED = _DropTokenSkipped()


def quiet_token_warning() -> None:
    """Drop Bolt's warnings about the token our client and authorizer replace, which are harmless.

    Bolt reads SLACK_BOT_TOKEN from the environment itself whatever it is given, so the warning
    can't be avoided by passing no token; one shared filter, added once however many apps start.
    """
    logging.getLogger("slack_bolt.AsyncApp").addFilter(_TOKEN_SKIPPED)


@dataclass
class SlackAdapter:
    """Bolt with every listener registered, reached over HTTP or over Socket Mode."""

    bolt: AsyncApp
    runtime: Runtime
    settings: Settings
    metrics: Metrics

    async def handle(self, request: web.Request) -> web.Response:
        """Slash commands, clicks, view submissions and events, verified before anything reads them.

        The signature is checked over the raw bytes first: an unsigned body is never parsed,
        labelled or logged, so it can neither grow the metrics nor reach a listener.
        """
        started = time.perf_counter()
        kind = "invalid"
        raw = await read_body(request)
        if raw is None:
            response = web.json_response({"error": "body not received in time"}, status=408)
        elif _ssl_check(raw):  # Slack's certificate probe is unsigned and wants an empty 200
            kind, response = "ssl_check", web.Response(status=200)
        elif not self._signed(request, raw):
            response = web.json_response({"error": "invalid request"}, status=401)
        elif (bolt_request := await self._bolt_request(request)) is None:
            response = web.json_response({"error": "malformed request"}, status=400)
        else:
            kind = slack_kind(bolt_request.body)
            response = await to_aiohttp_response(await self.bolt.async_dispatch(bolt_request))
        self.metrics.ack_seconds.labels(kind).observe(time.perf_counter() - started)
        self.metrics.requests.labels(kind, str(response.status)).inc()
        return response

    def _signed(self, request: web.Request, raw: bytes) -> bool:
        """Whether Slack signed these bytes within the last five minutes.

        Without a secret (Socket Mode) nothing could be verified, so HTTP is refused outright;
        a timestamp that int() can't parse, or a huge one, is refused before it is used.
        """
        stamp = request.headers.get("X-Slack-Request-Timestamp", "0")
        digits = stamp[1:] if stamp.startswith("-") else stamp
        secret = self.settings.slack_signing_secret
        if not (secret and len(stamp) <= 20 and digits.isascii() and digits.isdigit()):
            return False
        try:  # the verifier decodes the body; Slack's bodies are always UTF-8
            return SignatureVerifier(secret.get_secret_value()).is_valid(
                body=raw, timestamp=stamp, signature=request.headers.get("X-Slack-Signature"))
        except UnicodeDecodeError:
            return False

    async def _bolt_request(self, request: web.Request) -> AsyncBoltRequest | None:
        """The signed request as Bolt reads it, or None when its body is not what Slack sends.

        A body that is not UTF-8 JSON or form data, nested deeper than the parser allows, or
        with parts of the wrong type would crash Bolt into a 500; Slack never sends any of them.
        """
        try:
            bolt_request = await to_bolt_request(request)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
            return None
        return bolt_request if _well_formed(bolt_request.body) else None

    @asynccontextmanager
    async def socket_mode(self) -> AsyncIterator[None]:
        """Slack traffic over Socket Mode while the context lasts."""
        from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

        token = self.settings.slack_app_token
        handler = AsyncSocketModeHandler(self.bolt, token.get_secret_value() if token else "")
        await handler.connect_async()
        yield
        await handler.close_async()


@asynccontextmanager
async def slack_adapter(settings: Settings, policy: Policy, deps: Deps, deployer: Deployer,
                        metrics: Metrics, *, stop_within: float) -> AsyncIterator[SlackAdapter]:
    """Bolt, the directory and the outbox deliverer (whose loop runs while the context does)."""
    # One connection pool for every Web API call and response_url answer, not one per call.
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    client = slack_client(settings, metrics, http)
    secret = settings.slack_signing_secret.get_secret_value() if (
        settings.slack_signing_secret) else ""
    # Bolt gets a token-less client: our authorize function hands it the token per request.
    quiet_token_warning()
    # `handle` verifies every HTTP request's signature before Bolt sees it (Socket Mode needs
    # none), so Bolt does not check it again. Our listeners return once they have acked and
    # leave their work running (handlers._bind), so Bolt answers as soon as they return.
    bolt = AsyncApp(client=AsyncWebClient(base_url=settings.slack_api_url),
                    signing_secret=secret, process_before_response=True,
                    request_verification_enabled=False, authorize=_authorizer(client))
    directory = Directory(policy, client)
    runtime = Runtime(deps, client, directory, Deliverer(deps, client, directory), deployer,
                      Access(policy.slack, client))
    runtime.on_shed = metrics.shed.inc
    register_listeners(bolt, runtime)
    task = asyncio.create_task(runtime.deliverer.run(), name="outbox")
    yield SlackAdapter(bolt, runtime, settings, metrics)
    with contextlib.suppress(TimeoutError):  # acked work is finished, not lost
        async with asyncio.timeout(stop_within):
            await runtime.idle.wait()
    task.cancel()
    # Bounded: a loop that ignored its cancel must not hold the whole stop (and its log says so).
    if not (await asyncio.wait({task}, timeout=stop_within))[0]:
        log.error("the outbox deliverer did not stop within %.0f s", stop_within)
    await http.close()


# The request kinds Slack sends that we count by name; anything else is counted as "other".
KINDS = frozenset({"block_actions", "view_submission", "view_closed", "event_callback",
                   "url_verification", "shortcut", "message_action", "block_suggestion",
                   "interactive_message", "app_rate_limited"})
BODY_SECONDS = 10.0  # Slack sends its few kilobytes at once; a slower body is an attack

# What Bolt's matchers and our listeners index without looking: Slack always sends these shapes.
_SHAPES: dict[str, type] = {"event": dict, "actions": list, "view": dict, "user": dict,
                            "channel": dict, "container": dict}
# Parts Slack sends as an object or as null: an org-wide install sends `"team": null`.
_NULLABLE: dict[str, type] = {"team": dict, "enterprise": dict}


def _well_formed(body: Any) -> bool:
    """A body whose parts have the types Slack gives them (a string for actions crashes Bolt)."""
    if not isinstance(body, dict) or any(
            key in body and not isinstance(body[key], kind) for key, kind in _SHAPES.items()
    ) or any(body.get(key) is not None and not isinstance(body[key], kind)
             for key, kind in _NULLABLE.items()):
        return False
    actions = body.get("actions") or []
    view = body.get("view") or {}
    return (all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
            and isinstance(view.get("type", ""), str) and isinstance(body.get("type", ""), str)
            and (not view or "type" in view)
            and (not body.get("event") or isinstance(body["event"].get("type"), str)))


def slack_kind(body: dict[str, Any]) -> str:
    """command, block_actions, view_submission, event_callback… for metrics labels.

    Only names from a closed set: a label per value someone sends would grow without bound.
    """
    if "command" in body:
        return "command"
    kind = body.get("type")
    return kind if kind in KINDS else "other"


def _ssl_check(raw: bytes) -> bool:
    """Whether the body is Slack's `ssl_check=1` probe: a fixed shape, compared, not parsed."""
    return len(raw) < 200 and b"ssl_check=1" in raw.split(b"&")


async def read_body(request: web.Request, within: float = BODY_SECONDS) -> bytes | None:
    """The whole body, or None when the sender is too slow (a held connection costs memory)."""
    try:
        async with asyncio.timeout(within):  # not wait_for: on 3.11 it may swallow a cancel
            return await request.read()
    except TimeoutError:
        return None
