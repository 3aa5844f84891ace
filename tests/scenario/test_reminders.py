"""Reminders through the running app: one digest per person and interval, counted in Slack."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, running_app, wait_for
from tests.scenario.test_gitlab_flow import state

START = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday noon in Shanghai


def digests(h: Harness, user: str) -> list[Any]:
    """The reminder digests a person got in their DM."""
    return [m for m in h.slack.dms(user) if m.text.startswith("Reminder:")]


def named(message: Any) -> list[str]:
    """The release IDs a digest lists, in order."""
    return [m for b in message.blocks[1:] if b["type"] == "section"
            for m in re.findall(r"\|(REL-\d+)>", b["text"]["text"])]


async def filed(h: Harness, title: str) -> str:
    """A release of web requested by the developer; its ID."""
    answer = await h.says(DEV, f"request web v1.1.0 {title}")
    found = re.search(r"Filed (REL-\d+)", answer)
    assert found, answer
    return found.group(1)


async def counts_hold(h: Harness, expected: dict[str, int], seconds: float = 3.0) -> None:
    """Several scheduler ticks pass and no one gets another digest."""
    await asyncio.sleep(seconds)
    await h.settle()
    assert {user: len(digests(h, user)) for user in expected} == expected


async def test_reminders_come_as_one_digest_per_person_and_interval(db_url: str,
                                                                    policy: Policy) -> None:
    """12 untested and 3 unsigned releases: each person gets one digest naming all of theirs,
    an approver approves from it, the release manager's escalations are digested too, and
    nobody gets another until the 4 h interval has passed."""
    clock = ShiftClock()
    clock.jump_to(START)
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        untested = [await filed(h, f"Change {i}") for i in range(12)]
        unsigned = [await filed(h, f"Sign {i}") for i in range(3)]
        for rid in unsigned:
            await h.says(TESTER, f"report {rid} https://ci/r/{rid[4:]}")
        await h.settle()
        asks = len(h.slack.dms(DIRECTOR))
        assert asks == 3  # the first asks, one per release, at sign-off time as before

        clock.jump_to(START + timedelta(hours=5))  # past approval_hours (4)
        await wait_for(lambda: all(digests(h, u) for u in (DIRECTOR, LEAD)), 10)
        await counts_hold(h, {DIRECTOR: 1, LEAD: 1, TESTER: 0, OPS: 0})
        [director] = digests(h, DIRECTOR)
        assert named(director) == unsigned
        answer = await h.click(DIRECTOR, ActionId.APPROVE, channel=h.slack.dm_channel(DIRECTOR),
                               message_ts=director.ts)
        assert answer == f"You approved {unsigned[0]} as tech_director."
        assert await state(h, int(unsigned[0][4:])) == "ready_for_signoff"  # the lead's turn

        clock.jump_to(START + timedelta(hours=25))  # reports 24 h late, sign-offs escalated
        await wait_for(lambda: digests(h, TESTER) and digests(h, OPS) and
                       len(digests(h, LEAD)) == 2 and len(digests(h, DIRECTOR)) == 2, 10)
        await counts_hold(h, {DIRECTOR: 2, LEAD: 2, TESTER: 1, OPS: 1})
        assert named(digests(h, TESTER)[0]) == untested
        # Escalated sign-offs still wait on their approvers: the test lead's digest names all
        # three before the untested ones (they are more pressing), the director's the two left.
        assert named(digests(h, LEAD)[1]) == [*unsigned, *untested]  # the test lead tests too
        assert named(digests(h, DIRECTOR)[1]) == unsigned[1:]
        assert named(digests(h, OPS)[0]) == unsigned
        assert "still waits for sign-off by test_lead" in digests(h, OPS)[0].blocks[1][
            "text"]["text"]

        clock.jump_to(START + timedelta(hours=29))  # one interval later: once more each
        await wait_for(lambda: len(digests(h, TESTER)) == 2, 10)
        await counts_hold(h, {DIRECTOR: 3, LEAD: 3, TESTER: 2, OPS: 2})
        assert len(h.slack.dms(TESTER)) == 2  # nothing but the two digests, for 12 releases


async def test_an_escalated_sign_off_stays_in_the_approvers_digests(db_url: str,
                                                                   policy: Policy) -> None:
    """A day on, REL-1 still waits for the lead's and the director's sign-off: each digest names
    everything waiting on that person then, not only what became due since the last one."""
    clock = ShiftClock()
    clock.jump_to(START)
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        first = await filed(h, "Checkout")
        await h.says(TESTER, f"report {first} https://ci/r/1")
        clock.jump_to(START + timedelta(hours=2))
        second = await filed(h, "Search")  # waits for a report
        await h.settle()

        clock.jump_to(START + timedelta(hours=5))  # the sign-off is 4 h late
        await wait_for(lambda: all(digests(h, u) for u in (DIRECTOR, LEAD)), 10)
        await counts_hold(h, {DIRECTOR: 1, LEAD: 1, OPS: 0})
        assert [named(digests(h, u)[0]) for u in (DIRECTOR, LEAD)] == [[first], [first]]

        clock.jump_to(START + timedelta(hours=30))  # escalated; the report is 28 h late
        await wait_for(lambda: len(digests(h, DIRECTOR)) == 2 and len(digests(h, LEAD)) == 2
                       and digests(h, OPS), 10)
        await counts_hold(h, {DIRECTOR: 2, LEAD: 2, OPS: 1})
        assert named(digests(h, LEAD)[1]) == [first, second]
        assert named(digests(h, DIRECTOR)[1]) == [first]
        assert named(digests(h, OPS)[0]) == [first]
