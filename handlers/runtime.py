"""What every listener needs, built once per app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.deploys import Deployer
from bot.transition import Deps
from handlers.access import Access
from handlers.delivery import Deliverer
from handlers.directory import Directory
from storage import queries as q


@dataclass
class Runtime:
    """The service's dependencies, the Slack client, directory, deliverer and GitLab deployer."""

    deps: Deps
    client: AsyncWebClient
    directory: Directory
    deliverer: Deliverer
    deployer: Deployer
    access: Access
    inflight: int = 0  # listeners still working after their ack; shutdown and tests wait on it
    idle: asyncio.Event = field(default_factory=lambda: _set(asyncio.Event()))  # inflight == 0
    # At most `workers` listeners touch the database at once (fewer than the pool holds), and at
    # most `backlog` wait for a turn: beyond that people are told to retry, so memory and the
    # pool stay bounded however fast Slack sends, and acks stay fast.
    workers: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(8))
    backlog: int = 200
    # One person may hold at most this share of the backlog, so their flood sheds only their own
    # requests and never anyone else's (a release manager's click included).
    per_user: int = 20
    inflight_by_user: dict[str, int] = field(default_factory=dict)
    on_shed: Callable[[], None] = lambda: None  # counts requests answered "busy"
    tasks: set[asyncio.Task[None]] = field(default_factory=set)  # listeners' work after the ack

    def admit(self, user: str, shed: bool = True) -> bool:
        """Count a request of `user` in flight; with `shed`, not past the backlog or their share."""
        mine = self.inflight_by_user.get(user, 0)
        if shed and (self.inflight >= self.backlog or mine >= self.per_user):
            return False
        self.inflight_by_user[user] = mine + 1
        self.inflight += 1
        self.idle.clear()
        return True

    def background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a listener's work as a task, kept referenced until it ends."""
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def release(self, user: str) -> None:
        """The request of `user` is done."""
        left = self.inflight_by_user.get(user, 1) - 1
        if left > 0:
            self.inflight_by_user[user] = left
        else:
            self.inflight_by_user.pop(user, None)
        self.inflight -= 1
        if not self.inflight:
            self.idle.set()

    async def settle(self, within: float = 10.0) -> bool:
        """Wait until listeners are done and every announcement is posted; False on timeout."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            if self.inflight:
                continue
            await self.deliverer.deliver_pending()  # now, not at the loop's next tick
            async with self.deps.sessions() as session:
                if await q.outbox_backlog(session) == 0 and not self.inflight:
                    return True
        return False


def _set(event: asyncio.Event) -> asyncio.Event:
    """The event, set."""
    event.set()
    return event
