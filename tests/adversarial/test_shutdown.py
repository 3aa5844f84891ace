"""Stopping the app: acked commands and received hooks are finished, and nothing is left running."""

from __future__ import annotations

import asyncio
import json

from bot.app import DEPS
from bot.policy import Policy
from emulators.sample import DEV
from storage import queries as q
from tests.adversarial.test_webhook import deploying, post_hook
from tests.scenario.harness import HOOK_SECRET, emulators, running_app


async def test_stopping_finishes_acked_work_and_leaves_no_task(db_url: str,
                                                             policy: Policy) -> None:
    """30 hooks and 10 commands in flight when the app stops: all done, no task outlives it."""
    ours = set(asyncio.all_tasks())
    async with emulators() as emus:
        async with running_app(db_url, policy, emus=emus) as h:
            body = json.dumps((await deploying(h))[1]).encode()
            hooks = [post_hook(h, body, {"X-Gitlab-Token": HOOK_SECRET,
                                         "Idempotency-Key": f"stop-{n}"}) for n in range(30)]
            commands = [h.driver.command(DEV, f"request web main Late {n}") for n in range(10)]
            replies = await asyncio.gather(*hooks, *commands)
            assert [r if isinstance(r, int) else r.status for r in replies] == [200] * 40
        left = [t for t in asyncio.all_tasks() - ours if not _emulators(t)]
        if left:  # let them end, so that a failure is reported rather than hung on at teardown
            await asyncio.wait(left, timeout=15)
        assert [t.get_coro() for t in left] == []
        async with running_app(db_url, policy, emus=emus) as again, again.app[DEPS].sessions(
                ) as session:
            titles = [r.title for r in await q.list_releases(session)]
            assert sorted(t for t in titles if t.startswith("Late")) == sorted(
                f"Late {n}" for n in range(10))
            assert (await q.get_release(session, 1)).state == "deployed"


def _emulators(task: asyncio.Task[object]) -> bool:
    """Tasks of the emulators, which outlive the app: their workers and connection handlers."""
    code = getattr(task.get_coro(), "cr_code", None)
    where = code.co_filename if code else ""
    return "/emulators/" in where or where.endswith("aiohttp/web_protocol.py")
