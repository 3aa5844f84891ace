"""The aiohttp application: Slack endpoint, health, metrics; resources as cleanup contexts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import text

from bot.deployer import Deployer
from bot.gitlab import GitLabClient
from bot.jobs import Jobs, Poller
from bot.metrics import Metrics
from bot.policy import Policy
from bot.scheduler import Scheduler
from bot.service import Clock, Deps, system_clock
from bot.settings import Settings
from handlers import register_listeners
from handlers.delivery import Deliverer
from handlers.directory import Directory
from handlers.gitlab_webhook import GitLabWebhook
from handlers.notes_text import notes_mrkdwn
from handlers.runtime import Runtime
from storage import queries as q
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade_async

log = logging.getLogger(__name__)
SETTINGS = web.AppKey("settings", Settings)
POLICY = web.AppKey("policy", Policy)
CLOCK = web.AppKey("clock", object)
METRICS = web.AppKey("metrics", Metrics)
DEPS = web.AppKey("deps", Deps)
RUNTIME = web.AppKey("runtime", Runtime)
BOLT = web.AppKey("bolt", AsyncApp)
DEPLOYER = web.AppKey("deployer", Deployer)
POLLER = web.AppKey("poller", Poller)
WEBHOOK = web.AppKey("webhook", GitLabWebhook)
SCHEDULER = web.AppKey("scheduler", Scheduler)
JOBS = web.AppKey("jobs", Jobs)
STOP_SECONDS = 10.0  # how long a stopping app lets acked Slack work and webhook results finish


def create_app(settings: Settings, policy: Policy, *, clock: Clock = system_clock,
               migrate: bool = True) -> web.Application:
    """Build the app; nothing starts until aiohttp runs its cleanup contexts."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS], app[POLICY], app[CLOCK], app[METRICS] = settings, policy, clock, Metrics()
    app.cleanup_ctx.append(_database(migrate))
    app.cleanup_ctx.append(_gitlab)
    app.cleanup_ctx.append(_slack)
    app.cleanup_ctx.append(_scheduler)
    app.router.add_post("/slack/events", slack_events)
    app.router.add_post("/gitlab/webhook", gitlab_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app


def _database(migrate: bool) -> Any:
    """The engine (migrated on start), closed on stop."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        url = app[SETTINGS].database_url
        if migrate:
            await upgrade_async(url)
        engine = make_engine(url)
        transitions = app[METRICS].transitions
        app[DEPS] = Deps(sessions=make_sessionmaker(engine), policy=app[POLICY],
                         clock=app[CLOCK],  # type: ignore[arg-type]
                         on_transition=lambda event, to: transitions.labels(event, to).inc())
        yield
        await engine.dispose()

    return ctx


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


async def _gitlab(app: web.Application) -> AsyncIterator[None]:
    """The GitLab client, the deployer, the poller and the webhook receiver."""
    settings = app[SETTINGS]
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    calls = app[METRICS].gitlab_calls
    client = GitLabClient(settings.gitlab_url, token,
                          on_call=lambda name, status: calls.labels(name, str(status)).inc())
    deployer = Deployer(app[DEPS], client)
    secret = settings.gitlab_webhook_secret
    app[DEPLOYER], app[POLLER] = deployer, Poller(app[DEPS], deployer)
    app[JOBS] = Jobs(app[DEPS], deployer, notes_mrkdwn)
    app[WEBHOOK] = GitLabWebhook(app[DEPS], deployer, secret.get_secret_value() if secret else None)
    yield
    await finish_tasks(app[WEBHOOK].tasks)


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    """Periodic jobs, each tick on one replica: GitLab polling and the jobs of bot.jobs."""
    scheduler = Scheduler(app[DEPS])
    scheduler.every("gitlab-poll", app[SETTINGS].gitlab_poll_seconds, app[POLLER].poll_once)
    jobs, every = app[JOBS], app[SETTINGS].scheduler_seconds
    for name, job in (("deploy-due", jobs.deploy_due), ("remind", jobs.remind),
                      ("close-observed", jobs.close_observed), ("merge-back", jobs.merge_back)):
        scheduler.every(name, every, job)
    scheduler.start()
    app[SCHEDULER] = scheduler
    yield
    scheduler.stop()


async def finish_tasks(tasks: set[asyncio.Task[None]], within: float = STOP_SECONDS) -> None:
    """Let background work end, cancel what is left after `within`, and wait for all of it.

    Work left running would reach the database after the engine is disposed; work cancelled
    and not awaited can hang the loop's shutdown inside the SQLite driver.
    """
    if not tasks:
        return
    _, late = await asyncio.wait(list(tasks), timeout=within)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)


async def gitlab_webhook(request: web.Request) -> web.Response:
    """GitLab's Pipeline Hook."""
    started = time.perf_counter()
    response = await request.app[WEBHOOK].handle(request)
    m = request.app[METRICS]
    m.ack_seconds.labels("gitlab_webhook").observe(time.perf_counter() - started)
    m.requests.labels("gitlab_webhook", str(response.status)).inc()
    return response


def _authorizer(client: AsyncWebClient) -> Any:
    """Our single workspace's token, without Bolt's auth.test before the first ack."""

    async def authorize(enterprise_id: str | None, team_id: str | None,
                        **_: Any) -> AuthorizeResult:
        return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id,
                               bot_token=client.token)

    return authorize


async def _slack(app: web.Application) -> AsyncIterator[None]:
    """Bolt, the directory and the outbox deliverer (whose loop runs while the app does)."""
    settings = app[SETTINGS]
    # One connection pool for every Web API call and response_url answer, not one per call.
    http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15))
    client = slack_client(settings, app[METRICS], http)
    secret = settings.slack_signing_secret.get_secret_value() if (
        settings.slack_signing_secret) else ""
    # Bolt gets a token-less client: our authorize function hands it the token per request.
    bolt = AsyncApp(client=AsyncWebClient(base_url=settings.slack_api_url),
                    signing_secret=secret, process_before_response=False,
                    request_verification_enabled=bool(secret), authorize=_authorizer(client))
    directory = Directory(app[POLICY], client)
    runtime = Runtime(app[DEPS], client, directory, Deliverer(app[DEPS], client, directory),
                      app[DEPLOYER])
    runtime.on_shed = app[METRICS].shed.inc
    register_listeners(bolt, runtime)
    app[BOLT], app[RUNTIME] = bolt, runtime
    task = asyncio.create_task(runtime.deliverer.run(), name="outbox")
    yield
    with contextlib.suppress(TimeoutError):  # acked work is finished, not lost
        await asyncio.wait_for(runtime.idle.wait(), STOP_SECONDS)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await http.close()


async def socket_mode(app: web.Application) -> AsyncIterator[None]:
    """Slack traffic over Socket Mode; the HTTP server keeps serving webhooks and health."""
    from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

    token = app[SETTINGS].slack_app_token
    handler = AsyncSocketModeHandler(app[BOLT], token.get_secret_value() if token else "")
    await handler.connect_async()
    yield
    await handler.close_async()


async def slack_events(request: web.Request) -> web.Response:
    """Slash commands, clicks, view submissions and events, through Bolt (which verifies them)."""
    started = time.perf_counter()
    bolt_request = await _bolt_request(request)
    if bolt_request is None:  # refused like a bad signature: no listener, no write, no call
        response = web.json_response({"error": "invalid request"}, status=401)
    else:
        response = await to_aiohttp_response(await request.app[BOLT].async_dispatch(bolt_request))
    kind = _slack_kind(bolt_request.body) if bolt_request else "invalid"
    m = request.app[METRICS]
    m.ack_seconds.labels(kind).observe(time.perf_counter() - started)
    m.requests.labels(kind, str(response.status)).inc()
    return response


async def _bolt_request(request: web.Request) -> AsyncBoltRequest | None:
    """The request as Bolt reads it, or None when Bolt could not verify it safely.

    Without a secret (Socket Mode) Bolt would skip verification, so HTTP is refused outright.
    A timestamp int() can't parse, a body that is not UTF-8 JSON or form data with an object
    inside, or parts of the wrong type would crash Bolt into a 500 (before it checks the
    signature, for the first two); Slack never sends any of them.
    """
    stamp = request.headers.get("X-Slack-Request-Timestamp", "0")
    digits = stamp[1:] if stamp.startswith("-") else stamp
    if not (request.app[SETTINGS].slack_signing_secret and len(stamp) <= 20
            and digits.isascii() and digits.isdigit()):
        return None
    try:
        bolt_request = await to_bolt_request(request)
    except (ValueError, TypeError, AttributeError, KeyError):
        return None
    return bolt_request if _well_formed(bolt_request.body) else None


# What Bolt's matchers and our listeners index without looking: Slack always sends these shapes.
_SHAPES: dict[str, type] = {"event": dict, "actions": list, "view": dict, "user": dict,
                            "team": dict, "channel": dict, "container": dict}


def _well_formed(body: Any) -> bool:
    """A body whose parts have the types Slack gives them (a string for actions crashes Bolt)."""
    if not isinstance(body, dict) or any(
            key in body and not isinstance(body[key], kind) for key, kind in _SHAPES.items()):
        return False
    actions = body.get("actions") or []
    view = body.get("view") or {}
    return (all(isinstance(a, dict) and isinstance(a.get("action_id"), str) for a in actions)
            and isinstance(view.get("type", ""), str) and isinstance(body.get("type", ""), str)
            and (not view or "type" in view)
            and (not body.get("event") or isinstance(body["event"].get("type"), str)))


def _slack_kind(body: dict[str, Any]) -> str:
    """command, block_actions, view_submission, event_callback… for metrics labels."""
    if "command" in body:
        return "command"
    if isinstance(body.get("type"), str):
        return body["type"]
    return "other"


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers."""
    try:
        async with request.app[DEPS].sessions() as session:
            await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
    except Exception as exc:  # any failure to reach the database is unhealthy
        return web.json_response({"ok": False, "database": str(exc)[:200]}, status=503)
    return web.json_response({"ok": True})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    m = request.app[METRICS]
    async with request.app[DEPS].sessions() as session:
        m.outbox_backlog.set(await q.outbox_backlog(session))
    if (last := request.app[POLLER].last_cycle) is not None:
        m.poll_lag.set((request.app[DEPS].clock() - last).total_seconds())
    return web.Response(body=m.render(), content_type="text/plain", charset="utf-8")
