"""The running app on a real port, with the Slack (and GitLab) emulators and a signed driver."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bot.app import POLLER, RUNTIME, WEBHOOK, create_app
from bot.policy import Policy
from bot.settings import load_settings
from bot.transition import Clock, system_clock
from emulators.gitlab import GitLabEmulator, variable
from emulators.sample import CHANNEL
from emulators.slack import SlackEmulator
from emulators.slack_driver import Reply, SlackDriver
from tests.fixtures import seed_gitlab

SECRET = "test-signing-secret"
HOOK_SECRET = "test-hook-secret"


@dataclass
class Harness:
    """Everything a scenario drives and observes."""

    app: web.Application
    url: str
    slack: SlackEmulator
    driver: SlackDriver
    gitlab: GitLabEmulator

    async def command(self, user: str, text: str, **kw: Any) -> Reply:
        """A signed `/release …` from a user; asserts Slack got its ack."""
        reply = await self.driver.command(user, text, **kw)
        assert reply.status == 200, reply.body
        return reply

    async def says(self, user: str, text: str) -> str:
        """Send a command and return the private answer the user gets."""
        before = len(self.slack.ephemerals(user))
        await self.command(user, text)
        return await self.answer(user, before)

    async def answer(self, user: str, before: int, within: float = 10.0) -> str:
        """The next private answer to a user after `before` earlier ones."""
        await wait_for(lambda: len(self.slack.ephemerals(user)) > before, within)
        return readable(self.slack.ephemerals(user)[before])

    async def click(self, user: str, action_id: str, value: str | None = None,
                    **kw: Any) -> str:
        """Click a button (the newest one with this action id); the private answer, if any."""
        before = len(self.slack.ephemerals(user))
        reply = await self.driver.click(user, action_id, value or "", **kw)
        assert reply.status == 200, reply.body
        await self.settle()
        answers = self.slack.ephemerals(user)
        return readable(answers[before]) if len(answers) > before else ""

    async def settle(self, within: float = 10.0) -> None:
        """Wait until Bolt's listener tasks are done and the outbox is delivered."""
        if not await self.app[RUNTIME].settle(within):
            raise AssertionError("the app did not settle")

    async def poll(self) -> int:
        """One GitLab poll cycle, then delivery; how many results it took."""
        taken = await self.app[POLLER].poll_once()
        await self.settle()
        return taken

    async def hook(self, pipeline_id: int, **kw: Any) -> int:
        """GitLab sends this pipeline's hook to the app; the HTTP status."""
        status = await self.gitlab.send_pipeline_hook(f"{self.url}/gitlab/webhook",
                                                      kw.pop("secret", HOOK_SECRET),
                                                      pipeline_id, **kw)
        await wait_for(lambda: not self.app[WEBHOOK].tasks)
        await self.settle()
        return status

    def pipeline_of(self, release_id: int) -> Any:
        """The newest GitLab pipeline started for a release."""
        runs = [p for p in self.gitlab.pipelines.values()
                if variable(p.variables, "RELEASE_ID") == f"REL-{release_id}"]
        return max(runs, key=lambda p: p.id) if runs else None

    def card(self, release_id: int) -> Any:
        """The channel message that is this release's card."""
        for msg in self.slack.messages(CHANNEL):
            if any(b.get("block_id") == f"card:{release_id}" or
                   f"REL-{release_id} " in (msg.text or "") for b in msg.blocks):
                return msg
        return None

    def thread(self, release_id: int) -> list[str]:
        """The card's thread, as text."""
        card = self.card(release_id)
        return [m.text for m in self.slack.thread(CHANNEL, card.ts)] if card else []

    def buttons(self, release_id: int) -> list[str]:
        """The action ids of the card's buttons."""
        card = self.card(release_id)
        return [e.get("action_id") for b in card.blocks if b["type"] == "actions"
                for e in b["elements"] if e.get("type") == "button"]


def readable(message: Any) -> str:
    """A message's text followed by the text of its blocks."""
    parts = [message.text or ""]
    for block in message.blocks or []:
        for obj in (block.get("text"), *(block.get("elements") or [])):
            if isinstance(obj, dict) and isinstance(obj.get("text"), str):
                parts.append(obj["text"])
    return "\n".join(parts)


async def wait_for(cond: Callable[[], bool], within: float = 10.0) -> None:
    """Poll until cond() holds."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def emulators() -> AsyncIterator[tuple[SlackEmulator, GitLabEmulator]]:
    """Slack and GitLab on loopback, GitLab with its demo projects and the tests' refs."""
    async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
        yield slack, seed_gitlab(gitlab)


@asynccontextmanager
async def running_app(db_url: str, policy: Policy, *, clock: Clock = system_clock,
                      emus: tuple[SlackEmulator, GitLabEmulator] | None = None,
                      **settings: Any) -> AsyncIterator[Harness]:
    """Start the app on loopback (with fresh emulators unless given); stop it after."""
    if emus is None:
        async with emulators() as fresh, running_app(db_url, policy, clock=clock, emus=fresh,
                                                     **settings) as h:
            yield h
        return
    slack, gitlab = emus
    settings = {"gitlab_poll_seconds": 3600, **settings}  # tests poll by hand
    cfg = load_settings(slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                        slack_api_url=slack.base_url, database_url=db_url,
                        gitlab_url=gitlab.url, gitlab_token="glpat-test",
                        gitlab_webhook_secret=HOOK_SECRET, **settings)
    app = create_app(cfg, policy, clock=clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}"
    try:
        async with SlackDriver(url, SECRET, slack) as driver:
            yield Harness(app, url, slack, driver, gitlab)
    finally:
        watchdog = asyncio.create_task(_dump_tasks_after(STOP_WATCH))
        try:
            await runner.cleanup()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)


STOP_WATCH = 30.0  # the app's own stop is bounded at 10 s per stage; longer is a hang to see


async def _dump_tasks_after(seconds: float) -> None:
    """Print every task's stack if the app has not stopped by then: a hang shows where."""
    await asyncio.sleep(seconds)
    print(f"app still stopping after {seconds:.0f} s; its tasks:", file=sys.stderr)
    for task in asyncio.all_tasks():
        task.print_stack(file=sys.stderr)
