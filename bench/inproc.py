"""The app on a loopback port in this process, with in-process emulators and a signed driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bench.common import HOOK_SECRET, SECRET, policy
from bot.app import DEPS, POLLER, RUNTIME, create_app
from bot.settings import load_settings
from emulators.gitlab import GitLabEmulator, variable
from emulators.slack import SlackEmulator
from emulators.slack_driver import SlackDriver
from storage import queries as q


@dataclass
class App:
    """The running app and what drives and watches it."""

    app: web.Application
    slack: SlackEmulator
    gitlab: GitLabEmulator
    driver: SlackDriver

    async def settle(self, within: float = 10.0) -> None:
        """Until listeners are done and the outbox is delivered."""
        runtime = self.app[RUNTIME]
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)
            if runtime.inflight:
                continue
            await runtime.deliverer.deliver_pending()
            async with self.app[DEPS].sessions() as session:
                if await q.outbox_backlog(session) == 0 and not runtime.inflight:
                    return
        raise RuntimeError("the app did not settle")

    async def command(self, user: str, text: str) -> None:
        """A signed `/release …`, then settle."""
        reply = await self.driver.command(user, text)
        if reply.status != 200:
            raise RuntimeError(f"/release {text}: HTTP {reply.status}")
        await self.settle()

    async def click(self, user: str, action_id: str) -> None:
        """Click the newest button with this action id, then settle."""
        reply = await self.driver.click(user, action_id, "")
        if reply.status != 200:
            raise RuntimeError(f"{action_id}: HTTP {reply.status}")
        await self.settle()

    async def poll(self) -> None:
        """One GitLab poll cycle, then settle."""
        await self.app[POLLER].poll_once()
        await self.settle()

    def pipeline_of(self, release_id: int) -> Any:
        """The newest pipeline started for a release."""
        runs = [p for p in self.gitlab.pipelines.values()
                if variable(p.variables, "RELEASE_ID") == f"REL-{release_id}"]
        return max(runs, key=lambda p: p.id)


@asynccontextmanager
async def running_app(db_url: str) -> AsyncIterator[App]:
    """Emulators, the app on a free port and a driver; all stopped afterwards."""
    async with SlackEmulator() as slack, GitLabEmulator(token="glpat-bench") as gitlab:
        gitlab.seed_demo()
        cfg = load_settings(slack_bot_token="xoxb-bench", slack_signing_secret=SECRET,
                            slack_api_url=slack.base_url, database_url=db_url,
                            gitlab_url=gitlab.url, gitlab_token="glpat-bench",
                            gitlab_webhook_secret=HOOK_SECRET, gitlab_poll_seconds=3600)
        app = create_app(cfg, policy())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with SlackDriver(f"http://127.0.0.1:{port}", SECRET, slack) as driver:
                yield App(app, slack, gitlab, driver)
        finally:
            await runner.cleanup()
