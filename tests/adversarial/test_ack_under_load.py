"""Slack is answered before the work: acks stay fast while the database and GitLab crawl."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import DEPS, RUNTIME
from bot.policy import Policy
from emulators.slack_driver import Reply
from handlers.blocks import A
from storage.db import SessionMaker
from tests.adversarial.common import DEV, DIRECTOR, LEAD, OPS, button_value, ready, signed
from tests.scenario.harness import Harness, running_app, wait_for

REQUESTS, AT_ONCE, SLOW = 500, 50, 5.0


@dataclass
class SlowSessions:
    """The app's session factory, with every session taking `delay` seconds to open."""

    real: SessionMaker
    delay: float = SLOW

    def __call__(self) -> AsyncIterator[AsyncSession]:
        """Like async_sessionmaker(): a context manager yielding a session."""
        return self._open()  # type: ignore[return-value]

    @asynccontextmanager
    async def _open(self) -> AsyncIterator[AsyncSession]:
        await asyncio.sleep(self.delay)
        async with self.real() as session:
            yield session


def mixed(h: Harness, n: int, approve: str, deploy: str) -> Awaitable[Reply]:
    """The n-th request of the load: commands that write, read and fail, and clicks."""
    kind = n % 5
    if kind == 0:
        return h.driver.command(DEV, f"request web v1.1.0 Load {n}")
    if kind == 1:
        return h.driver.command(DEV, "status REL-1" if n % 2 else "list all")
    if kind == 2:
        return h.driver.click(DIRECTOR if n % 2 else LEAD, A.APPROVE, approve)
    if kind == 3:
        return h.driver.click(OPS, A.DEPLOY, deploy)
    return h.driver.command(OPS, f"deploy REL-2 {'production' if n % 2 else ''}".strip())


async def test_acks_stay_fast_with_a_slow_database_and_gitlab(db_url: str,
                                                              policy: Policy) -> None:
    """500 commands and clicks, 50 at a time: every ack under 3 s, p99 under 1.5 s."""
    async with running_app(db_url, policy) as h:
        await ready(h)
        await signed(h)
        approve, deploy = button_value(h, 1), button_value(h, 2, A.DEPLOY)
        deps, runtime = h.app[DEPS], h.app[RUNTIME]
        real = deps.sessions
        deps.sessions = SlowSessions(real)  # type: ignore[assignment]
        h.gitlab.latency = SLOW
        elapsed: list[float] = []
        try:
            for start in range(0, REQUESTS, AT_ONCE):
                replies = await asyncio.gather(*[mixed(h, n, approve, deploy)
                                                 for n in range(start, start + AT_ONCE)])
                assert {r.status for r in replies} == {200}, [r.body for r in replies][:3]
                elapsed += [r.elapsed for r in replies]
            assert runtime.inflight > 0  # the work is still going on: the acks came first
        finally:
            deps.sessions, h.gitlab.latency = real, 0.0
            await wait_for(lambda: runtime.inflight == 0, 60)
        p99 = statistics.quantiles(elapsed, n=100)[98]
        assert len(elapsed) == REQUESTS
        assert max(elapsed) < 3.0, max(elapsed)
        assert p99 < 1.5, p99
