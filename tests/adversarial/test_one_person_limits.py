"""One member cannot starve everyone: per-person limits on requests and on the busy backlog."""

from __future__ import annotations

import asyncio

from bot.app import RUNTIME
from bot.policy import Policy
from emulators.sample import DEV, OPS, TESTER, sample_policy
from handlers.answer import BUSY
from tests.adversarial.common import row_counts
from tests.scenario.harness import running_app, wait_for

FLOOD = 260


async def test_a_flood_by_one_member_does_not_refuse_a_release_manager(
        db_url: str, policy: Policy) -> None:
    """260 commands from one member wait behind busy workers; the release manager is served."""
    async with running_app(db_url, policy) as h:
        runtime = h.app[RUNTIME]
        for _ in range(8):  # every worker busy: everything acked waits in the backlog
            await runtime.workers.acquire()
        try:
            replies = []
            for start in range(0, FLOOD, 20):
                replies += await asyncio.gather(*[h.driver.command(DEV, "list all")
                                                  for _ in range(start, min(start + 20, FLOOD))])
            assert runtime.inflight_by_user[DEV] == runtime.per_user
            before = len(h.slack.ephemerals(OPS))
            assert (await h.driver.command(OPS, "list all")).status == 200
            assert runtime.inflight_by_user.get(OPS) == 1  # queued, not shed
        finally:
            for _ in range(8):
                runtime.workers.release()
        await wait_for(lambda: len(h.slack.ephemerals(OPS)) > before)
        await h.settle()
        assert all(BUSY not in e.text for e in h.slack.ephemerals(OPS))
        assert sum(BUSY in r.body for r in replies) == FLOOD - runtime.per_user  # only theirs


async def test_requests_per_hour_are_limited_per_person(db_url: str) -> None:
    """The third request in an hour is refused with the limit named; others may still file."""
    policy = sample_policy(limits={"requests_per_hour": 2, "open_releases_per_requester": 50})
    async with running_app(db_url, policy) as h:
        for n in (1, 2):
            assert "Filed" in await h.says(DEV, f"request web v1.{n}.0 Change {n}")
        before = await row_counts(h)
        answer = await h.says(DEV, "request web v1.3.0 One too many")
        assert "the limit is 2" in answer, answer
        assert await row_counts(h) == before
        assert "Filed" in await h.says(TESTER, "request web v1.4.0 Someone else")


async def test_a_train_past_the_limit_asks_gitlab_nothing(db_url: str) -> None:
    """A person at their hourly limit files a train: refused before its refs are looked up."""
    policy = sample_policy(limits={"requests_per_hour": 1, "open_releases_per_requester": 50})
    async with running_app(db_url, policy) as h:
        assert "Filed" in await h.says(DEV, "request web v1.1.0 First")
        calls, before = len(h.gitlab.calls), await row_counts(h)
        answer = await h.says(DEV, "request payments@v1.1.0 web@v1.2.0 Train")
        assert "the limit is 1" in answer, answer
        assert len(h.gitlab.calls) == calls and await row_counts(h) == before


async def test_open_releases_are_limited_per_person(db_url: str) -> None:
    """With two open releases, a third is refused until one is cancelled."""
    policy = sample_policy(limits={"requests_per_hour": 50, "open_releases_per_requester": 2})
    async with running_app(db_url, policy) as h:
        for n in (1, 2):
            assert "Filed" in await h.says(DEV, f"request web v1.{n}.0 Change {n}")
        answer = await h.says(DEV, "request web v1.3.0 Third")
        assert "2 open releases" in answer and "the limit is 2" in answer, answer
        assert "cancelled" in await h.says(DEV, "cancel REL-1 not needed")
        assert "Filed" in await h.says(DEV, "request web v1.3.0 Third")
