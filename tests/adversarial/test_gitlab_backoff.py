"""GitLab answering 429 without Retry-After: the poller backs off with jitter, one try a window."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from bot.app import POLLER
from bot.policy import Policy
from emulators.sample import OPS
from handlers.blocks import ActionId
from tests.adversarial.common import release, signed
from tests.fixtures import FakeClock
from tests.scenario.harness import running_app

STEP = timedelta(seconds=0.5)


async def test_429_without_retry_after_backs_off_with_jitter(db_url: str,
                                                            policy: Policy) -> None:
    """Polled every 0.5 s for 150 s of 429s: requests only at window ends, windows growing."""
    clock = FakeClock(datetime.now(UTC))  # stands still between polls: windows measure exactly
    async with running_app(db_url, policy, clock=clock) as h:
        rid = await signed(h)
        await h.click(OPS, ActionId.DEPLOY)
        poller = h.app[POLLER]
        h.gitlab.fail(status=429, times=-1, path_prefix="/projects")
        h.gitlab.reset_calls()
        tries: list[tuple[datetime, float]] = []  # when each request went, and the wait it set
        for _ in range(300):
            sent = h.gitlab.count("/projects")
            assert await poller.poll_once() == 0
            assert h.gitlab.count("/projects") - sent in (0, 1)
            if h.gitlab.count("/projects") > sent:
                now = clock()
                tries.append((now, (poller.backoff_until["web"] - now).total_seconds()))
            clock.advance(seconds=STEP.total_seconds())
        waits = [w for _, w in tries]
        for k, wait in enumerate(waits, start=1):
            assert 0.5 * 2 ** k <= wait <= 2 ** k, (k, waits)  # exponential, jittered down
        assert len(set(waits)) == len(waits) and any(w < 2 ** k for k, w in enumerate(waits, 1))
        for (sent, wait), (after, _) in itertools.pairwise(tries):
            gap = (after - sent).total_seconds()
            assert wait <= gap < wait + STEP.total_seconds(), (wait, gap)
        assert 5 <= len(tries) <= 8, waits
        h.gitlab.faults.clear()
        h.gitlab.set_status(h.pipeline_of(rid).id, "success")
        clock.advance(seconds=300)
        assert await poller.poll_once() == 1 and "web" not in poller.backoff_until
        await h.settle()
        assert (await release(h, rid)).state == "deployed"
