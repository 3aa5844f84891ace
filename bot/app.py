"""The aiohttp application: Slack endpoint, health, metrics; resources as cleanup contexts."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from aiohttp import web

from bot.bugs import BugPoller
from bot.deploys import Deployer
from bot.gitlab import GitLabClient
from bot.jobs import Jobs, Poller
from bot.metrics import Metrics
from bot.policy import Policy
from bot.project_ids import StoredProjectIds
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.trackers.registry import build_trackers
from bot.transition import Clock, Deps, system_clock
from handlers.gitlab_webhook import GitLabWebhook
from handlers.http import SlackAdapter, slack_adapter
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
SLACK = web.AppKey("slack", SlackAdapter)
DEPLOYER = web.AppKey("deployer", Deployer)
POLLER = web.AppKey("poller", Poller)
WEBHOOK = web.AppKey("webhook", GitLabWebhook)
SCHEDULER = web.AppKey("scheduler", Scheduler)
JOBS = web.AppKey("jobs", Jobs)
BUGS = web.AppKey("bugs", BugPoller)
STOP_SECONDS = 10.0  # how long a stopping app lets acked Slack work and webhook results finish
RECOUNT_SECONDS = 300  # how often signed-off releases have their open bugs counted again


def create_app(settings: Settings, policy: Policy, *, clock: Clock = system_clock,
               migrate: bool = True, measured: Metrics | None = None) -> web.Application:
    """Build the app; nothing starts until aiohttp runs its cleanup contexts."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS], app[POLICY], app[CLOCK] = settings, policy, clock
    app[METRICS] = measured or Metrics()  # `serve --workers`: metrics all workers share
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
        transitions, refused = app[METRICS].transitions, app[METRICS].refused
        app[DEPS] = Deps(sessions=make_sessionmaker(engine), policy=app[POLICY],
                         clock=app[CLOCK],  # type: ignore[arg-type]
                         on_transition=lambda event, to: transitions.labels(event, to).inc(),
                         on_refused=lambda event: refused.labels(event).inc())
        yield
        await engine.dispose()

    return ctx


async def _gitlab(app: web.Application) -> AsyncIterator[None]:
    """The GitLab client, the deployer, the poller and the webhook receiver."""
    settings = app[SETTINGS]
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    calls = app[METRICS].gitlab_calls
    client = GitLabClient(settings.gitlab_url, token,
                          on_call=lambda name, status: calls.labels(name, str(status)).inc(),
                          ids=StoredProjectIds(app[DEPS].sessions, app[DEPS].clock))
    trackers = build_trackers(app[POLICY], client, zentao_account=settings.zentao_account,
                              zentao_password=settings.zentao_password, clock=app[DEPS].clock)
    # Services pin commits through GitLab and count open bugs through the trackers.
    app[DEPS] = replace(app[DEPS], gitlab=client, trackers=trackers)
    app[BUGS] = BugPoller(app[DEPS])
    deployer = Deployer(app[DEPS], client)
    secret = settings.gitlab_webhook_secret
    app[DEPLOYER], app[POLLER] = deployer, Poller(app[DEPS], deployer)
    app[JOBS] = Jobs(app[DEPS], deployer, notes_mrkdwn)
    app[WEBHOOK] = GitLabWebhook(app[DEPS], deployer, secret.get_secret_value() if secret else None)
    yield
    await finish_tasks(app[WEBHOOK].tasks)


async def _slack(app: web.Application) -> AsyncIterator[None]:
    """Slack's side, built in handlers: Bolt, the directory and the outbox deliverer."""
    async with slack_adapter(app[SETTINGS], app[POLICY], app[DEPS], app[DEPLOYER], app[METRICS],
                             stop_within=STOP_SECONDS) as slack:
        app[SLACK], app[RUNTIME] = slack, slack.runtime
        app[JOBS].people = slack.runtime.directory  # digests reach user-group members too
        yield


async def _scheduler(app: web.Application) -> AsyncIterator[None]:
    """Periodic jobs, each tick on one replica: GitLab polling and the jobs of bot.jobs."""
    scheduler = Scheduler(app[DEPS])
    scheduler.every("gitlab-poll", app[SETTINGS].gitlab_poll_seconds, app[POLLER].poll_once)
    jobs, every = app[JOBS], app[SETTINGS].scheduler_seconds
    for name, job in (("deploy-due", jobs.deploy_due), ("remind", jobs.remind),
                      ("close-observed", jobs.close_observed), ("merge-back", jobs.merge_back)):
        scheduler.every(name, every, job)
    if app[DEPS].trackers and app[DEPS].trackers.items():
        scheduler.every("bug-recount", max(every, RECOUNT_SECONDS), app[BUGS].poll_once)
    scheduler.start()
    app[SCHEDULER] = scheduler
    yield
    # Stop firing, then let ticks in flight finish: APScheduler's shutdown would cancel them
    # inside a database call, and one left running would outlive the engine. A tick handed to
    # the loop just before the pause registers itself at its first step.
    scheduler.pause()
    await asyncio.sleep(0)
    await finish_tasks(scheduler.ticks)
    scheduler.stop()


async def socket_mode(app: web.Application) -> AsyncIterator[None]:
    """Slack traffic over Socket Mode; the HTTP server keeps serving webhooks and health."""
    async with app[SLACK].socket_mode():
        yield


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


async def slack_events(request: web.Request) -> web.Response:
    """Slash commands, clicks, view submissions and events, answered by Slack's side."""
    return await request.app[SLACK].handle(request)


async def gitlab_webhook(request: web.Request) -> web.Response:
    """GitLab's Pipeline Hook."""
    started = time.perf_counter()
    response = await request.app[WEBHOOK].handle(request)
    m = request.app[METRICS]
    m.ack_seconds.labels("gitlab_webhook").observe(time.perf_counter() - started)
    m.requests.labels("gitlab_webhook", str(response.status)).inc()
    return response


async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers; why it does not goes to the log, never to the caller."""
    try:
        async with request.app[DEPS].sessions() as session:
            await q.ping(session)
    except Exception:  # any failure to reach the database is unhealthy
        log.exception("health check: the database did not answer")
        return web.json_response({"ok": False}, status=503)
    return web.json_response({"ok": True})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format, behind METRICS_TOKEN when it is set."""
    token = request.app[SETTINGS].metrics_token
    if token is not None and not _bearer_matches(request, token.get_secret_value()):
        return web.json_response({"error": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    m = request.app[METRICS]
    async with request.app[DEPS].sessions() as session:
        m.outbox_backlog.set(await q.outbox_backlog(session))
    if (last := request.app[POLLER].last_cycle) is not None:
        m.poll_lag.set((request.app[DEPS].clock() - last).total_seconds())
    # Rendering walks every series: in a thread, so Slack's acks are never kept waiting.
    body = await asyncio.to_thread(m.render)
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


def _bearer_matches(request: web.Request, token: str) -> bool:
    """Whether the Authorization header carries exactly this bearer token."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(),
                                                              token.encode())
