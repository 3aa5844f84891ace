"""The outbox loop ends when cancelled, even when the cancel lands as it wakes up."""

from __future__ import annotations

import asyncio

import pytest

from handlers.delivery import Deliverer


class Idle(Deliverer):
    """A deliverer with nothing to deliver: only its loop is under test."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    async def deliver_pending(self) -> int:
        """Nothing pending."""
        return 0


@pytest.mark.parametrize("steps", range(6))
async def test_a_cancel_beside_a_kick_stops_the_loop(steps: int) -> None:
    """A commit's kick and the stop's cancel in the same moment: the cancel still wins.

    (asyncio.wait_for on Python 3.11 returns the wake-up and drops such a cancel.)
    """
    loop = Idle()
    task = asyncio.create_task(loop.run(interval=60))
    await asyncio.sleep(0.01)  # the loop waits for a kick
    loop.kick()
    for _ in range(steps):  # every point of the wake-up's path
        await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=2)
    assert done, "the loop ignored its cancel"
