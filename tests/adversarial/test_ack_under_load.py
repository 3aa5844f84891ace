"""Slack is answered before the work: acks stay fast while the database and GitLab crawl."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.app import DEPS, METRICS, RUNTIME
from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR, LEAD, OPS
from emulators.slack_driver import Reply
from handlers.blocks import ActionId
from storage.db import SessionMaker
from tests.adversarial.common import button_value, ready, row_counts, signed
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
        return h.driver.click(DIRECTOR if n % 2 else LEAD, ActionId.APPROVE, approve)
    if kind == 3:
        return h.driver.click(OPS, ActionId.DEPLOY, deploy)
    return h.driver.command(OPS, f"deploy REL-2 {'production' if n % 2 else ''}".strip())


async def test_acks_stay_fast_with_a_slow_database_and_gitlab(db_url: str,
                                                              policy: Policy) -> None:
    """500 commands and clicks, 50 at a time: every ack under 3 s, p99 under 1.5 s."""
    async with running_app(db_url, policy) as h:
        await ready(h)
        await signed(h)
        approve, deploy = button_value(h, 1), button_value(h, 2, ActionId.DEPLOY)
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


async def test_past_the_backlog_people_are_told_to_retry_and_nothing_happens(
        db_url: str, policy: Policy) -> None:
    """A full backlog: the command's ack says so, a click gets the same privately, no row."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        approve = button_value(h, rid)
        runtime = h.app[RUNTIME]
        before = await row_counts(h)
        runtime.backlog = 0
        try:
            reply = await h.driver.command(DEV, "request web v1.2.0 Not now")
            asked = len(h.slack.ephemerals(DIRECTOR))
            clicked = await h.driver.click(DIRECTOR, ActionId.APPROVE, approve)
            await wait_for(lambda: len(h.slack.ephemerals(DIRECTOR)) > asked)
        finally:
            runtime.backlog = 200
        assert reply.status == 200 and "swamped" in reply.body, reply.body
        assert clicked.status == 200 and "swamped" in h.slack.ephemerals(DIRECTOR)[-1].text
        assert await row_counts(h) == before
        assert "releasebot_requests_shed_total 2.0" in h.app[METRICS].render().decode()
        assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")


async def test_work_after_the_ack_runs_a_few_at_a_time(db_url: str, policy: Policy) -> None:
    """However many requests arrive, no more than the worker slots run their work at once."""
    async with running_app(db_url, policy) as h:
        await ready(h)
        runtime, deps = h.app[RUNTIME], h.app[DEPS]
        real, busiest, now = deps.sessions, 0, 0

        @asynccontextmanager
        async def counted() -> AsyncIterator[AsyncSession]:
            nonlocal busiest, now
            now += 1
            busiest = max(busiest, now)
            try:
                await asyncio.sleep(0.05)
                async with real() as session:
                    yield session
            finally:
                now -= 1

        deps.sessions = counted  # type: ignore[assignment]
        try:
            replies = await asyncio.gather(*[h.driver.command(DEV, "status REL-1")
                                             for _ in range(60)])
            await wait_for(lambda: runtime.inflight == 0, 60)
        finally:
            deps.sessions = real
        assert {r.status for r in replies} == {200}
        assert 1 < busiest <= 8 + 2, busiest  # the slots, plus the deliverer and a scheduler tick
