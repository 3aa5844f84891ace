"""The bot was never invited to the release channel: people are told at once, retries back off."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from bot.app import DEPS, RUNTIME
from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.sample import CHANNEL, DEV, OPS
from storage.models import OutboxMessage
from tests.adversarial.common import release
from tests.scenario.harness import Harness, running_app, wait_for


async def _retry_delays(h: Harness) -> list[float]:
    """Seconds from now until each pending announcement is tried again."""
    async with h.app[DEPS].sessions() as session:
        rows = (await session.exec(select(OutboxMessage).where(
            OutboxMessage.sent_at == None))).all()  # noqa: E711
    now = h.app[DEPS].clock()
    return [(r.lease_until - now).total_seconds() for r in rows if r.lease_until]


async def test_not_in_channel_reaches_the_requester(db_url: str, policy: Policy) -> None:
    """Requester and release manager hear it once; each retry waits longer; then it posts."""
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        h.slack.outside_channels.add(CHANNEL)
        assert "Filed REL-1" in await h.says(DEV, "request web v1.1.0 Nobody invited me")
        await wait_for(lambda: bool(h.slack.dms(DEV)) and bool(h.slack.dms(OPS)))
        for user in (DEV, OPS):
            (dm,) = h.slack.dms(user)
            assert "invite me" in dm.text and "REL-1" in dm.text, dm.text
        deliverer = h.app[RUNTIME].deliverer
        delays = []
        await wait_for(lambda: h.app[RUNTIME].inflight == 0)
        for _ in range(3):
            await deliverer.deliver_pending()  # waits for a pass under way: no lease is held
            delays.append(max(await _retry_delays(h)))
            clock.offset += timedelta(seconds=delays[-1] + 1)
        assert delays[0] < delays[1] < delays[2], delays  # backing off, not every 5 s forever
        assert len(h.slack.dms(DEV)) == 1 and len(h.slack.dms(OPS)) == 1  # told once
        h.slack.outside_channels.discard(CHANNEL)  # someone invited the bot
        clock.offset += timedelta(minutes=11)
        await h.settle()
        assert (await release(h, 1)).card_ts is not None
        assert len(h.slack.messages(CHANNEL)) == 1
