"""The bot was never invited to the release channel: people are told at once, retries back off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import select

from bot.app import DEPS, RUNTIME
from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.sample import CHANNEL, DEV, OPS, TESTER
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


@pytest.mark.parametrize("error", ["not_in_channel", "channel_not_found"])
async def test_not_in_channel_reaches_the_requester(db_url: str, policy: Policy,
                                                    error: str) -> None:
    """Requester and release manager hear it once; each retry waits longer; then it posts.

    Slack answers `not_in_channel` for a public channel the bot was never invited to, and
    `channel_not_found` for a private one (or one that is gone): the same advice for both.
    """
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        shut_out = (h.slack.outside_channels if error == "not_in_channel"
                    else h.slack.missing_channels)
        shut_out.add(CHANNEL)
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
        shut_out.discard(CHANNEL)  # someone invited the bot
        clock.offset += timedelta(minutes=11)
        await h.settle()
        assert (await release(h, 1)).card_ts is not None
        assert len(h.slack.messages(CHANNEL)) == 1


async def test_a_request_filed_meanwhile_is_not_told_its_card_is_there(db_url: str,
                                                                       policy: Policy) -> None:
    """Once Slack has refused the channel, a new filing says so instead of pointing at it."""
    async with running_app(db_url, policy) as h:
        h.slack.outside_channels.add(CHANNEL)
        await h.says(DEV, "request web v1.1.0 First")
        await wait_for(lambda: bool(h.slack.dms(DEV)))
        answer = await h.says(TESTER, "request web v1.2.0 Second")
        assert "Slack refused my last post in" in answer and "invite me" in answer, answer
        assert "Its card is in" not in answer
        h.slack.outside_channels.discard(CHANNEL)
        await h.says(TESTER, "request web v1.3.0 Third")
        # Its card and then its thread line went out: the bot knows it is in.
        await wait_for(lambda: h.card(3) is not None and bool(h.thread(3)))
        assert "Filed REL-4. Its card is in" in await h.says(TESTER, "request web v1.4.0 Four")
