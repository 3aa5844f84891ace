"""The scheduled half through the running app: nobody clicks Deploy, the scheduler does it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bot.app import DEPS
from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.gitlab import variable
from emulators.sample import CTO, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from tests.fixtures import EMERGENCY, SALES_WEEK
from tests.scenario.harness import Harness, readable, running_app, wait_for
from tests.scenario.test_gitlab_flow import state

NOON = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # Monday noon in Shanghai
EIGHT_PM = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai


async def started(h: Harness, rid: int, pipelines: int) -> None:
    """Wait until the scheduler's deploy has its pipeline in GitLab and on record in the bot.

    GitLab has the pipeline a moment before the bot's own transaction records it; a poll in
    between would find nothing of the bot's to follow.
    """
    async def recorded() -> bool:
        async with h.app[DEPS].sessions() as session:
            runs = [d for d in await q.deployments_of(session, rid) if d.pipeline_id]
        return len(runs) == pipelines

    await wait_for(lambda: len(h.gitlab.pipelines) == pipelines, 10)
    for _ in range(500):
        if await recorded():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"REL-{rid}'s pipeline {pipelines} was never recorded")


async def scheduled_campaign(h: Harness) -> None:
    """REL-1: a campaign for 20:00, reported, signed off and its checklist ticked."""
    answer = await h.says(DEV, 'request payments v1.1.0 Winter sale --type campaign '
                               '--at "2026-11-23 20:00"')
    assert "Filed REL-1" in answer, answer
    await h.says(TESTER, "report REL-1 https://ci/r/1")
    await h.says(DIRECTOR, "approve REL-1")
    await h.says(LEAD, "approve REL-1")
    await h.says(OPS, "check REL-1 1 2")
    await h.says(DBA, "check REL-1 3")
    await h.settle()
    assert await state(h, 1) == "scheduled"


def pipelines(h: Harness) -> list[str]:
    """Each pipeline's DEPLOY_ENV, in order."""
    return [variable(p.variables, "DEPLOY_ENV")
            for p in sorted(h.gitlab.pipelines.values(), key=lambda p: p.id)]


async def test_campaign_deploys_itself_at_its_time(db_url: str, policy: Policy) -> None:
    """Requested with --at, signed off, checklist done, armed: at its time the pipeline starts."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        assert "*Scheduled releases*\n• none\n" in await h.says(DEV, "calendar")
        await scheduled_campaign(h)
        calendar = await h.says(DEV, "calendar")
        assert "2026-11-23 20:00 CST *REL-1*" in calendar and "Deploys are open now" in calendar
        assert "_scheduled_ · not armed" in calendar
        assert await h.says(OPS, "arm REL-1") == (
            "Armed: REL-1 deploys on its own at 2026-11-23 20:00 CST.")
        assert "_scheduled_ · armed" in await h.says(DEV, "calendar")
        clock.jump_to(EIGHT_PM)
        await started(h, 1, 1)
        pipeline = h.pipeline_of(1)
        assert pipeline.ref == "release/REL-1"
        assert pipeline.sha == h.gitlab.resolve(h.gitlab.project(pipeline.project.id),
                                                "v1.1.0").sha
        await h.settle()
        assert await state(h, 1) == "deploying"
        assert any("started the deploy" in t for t in h.thread(1))
        assert len([p for p in h.gitlab.pipelines.values()]) == 1


async def test_unarmed_it_waits_and_asks_then_armed_it_goes_and_waits_for_acceptance(
        db_url: str, policy: Policy) -> None:
    """At its time an unarmed release does not deploy and the release manager is asked once,
    with an Arm button; armed, staging goes; production waits for a tester's pass there."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        await scheduled_campaign(h)
        card = readable(h.card(1))
        assert "not armed: deploys only after the release manager arms it" in card
        assert ActionId.ARM in h.buttons(1)
        assert "Only the release manager can do that." in await h.says(DEV, "arm REL-1")

        clock.jump_to(EIGHT_PM)
        await wait_for(lambda: len(h.slack.dms(OPS)) > 0, 10)
        await asyncio.sleep(2.5)  # a few more scheduler ticks: still waiting, asked only once
        await h.settle()
        assert h.gitlab.pipelines == {} and await state(h, 1) == "scheduled"
        [asked] = h.slack.dms(OPS)
        assert asked.text == ("🔑 REL-1 was due to deploy at 2026-11-23 20:00 CST but is not "
                              "armed: it deploys on its own only after the release manager "
                              "arms it. Arm it from the card or with `/release arm REL-1`.")

        answer = await h.click(OPS, ActionId.ARM, channel=h.slack.dm_channel(OPS))
        assert answer.startswith("Armed: REL-1 deploys on its own at 2026-11-23 20:00 CST.")
        await started(h, 1, 1)
        await h.settle()
        assert any("armed the scheduled deploy: it goes on its own at 2026-11-23 20:00 CST."
                   in t for t in h.thread(1))
        assert f"armed by <@{OPS}> at 2026-11-23 20:0" in readable(h.card(1))

        h.gitlab.set_status(h.pipeline_of(1).id, "success")
        assert await h.poll() == 1
        await asyncio.sleep(2.5)  # the scheduler ticks, and leaves production alone
        assert pipelines(h) == ["staging"] and await state(h, 1) == "deployed"
        assert "accepted there" in await h.says(OPS, "deploy REL-1")
        await h.says(TESTER, "verify REL-1 pass")
        await started(h, 1, 2)
        await h.settle()
        assert pipelines(h) == ["staging", "production"]


async def test_held_by_a_freeze_armed_it_goes_on_its_own_when_deploys_open(db_url: str) -> None:
    """No planned time and a freeze over today: the refusal names the next allowed time, and
    arming lets the release go on its own then, said in the thread and on the card."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, sample_policy(freezes=[SALES_WEEK]), clock=clock,
                           scheduler_seconds=1) as h:
        assert "Filed REL-1" in await h.says(DEV, "request web v1.1.0 Checkout")
        await h.says(TESTER, "report REL-1 https://ci/r/1")
        await h.says(DIRECTOR, "approve REL-1")
        await h.says(LEAD, "approve REL-1")
        await h.settle()
        assert await state(h, 1) == "approved"
        refusal = await h.says(OPS, "deploy REL-1")
        assert "Deploys are closed now: Sales week" in refusal
        assert "The next allowed time is 2026-12-01 00:00 CST." in refusal
        assert await h.says(OPS, "arm REL-1") == (
            "Armed: REL-1 deploys on its own at 2026-12-01 00:00 CST.")
        await h.settle()
        assert any("it goes on its own at 2026-12-01 00:00 CST once deploys are open again"
                   in t for t in h.thread(1))
        card = readable(h.card(1))
        assert f"*Deploys at* 2026-12-01 00:00 CST   ·   armed by <@{OPS}>" in card, card
        await asyncio.sleep(2.5)  # the scheduler ticks, and leaves it until then
        assert h.gitlab.pipelines == {} and await state(h, 1) == "approved"

        clock.jump_to(datetime(2026, 11, 30, 16, 0, tzinfo=UTC))  # 2026-12-01 00:00 CST
        await started(h, 1, 1)
        await asyncio.sleep(2.5)
        await h.settle()
        assert await state(h, 1) == "deploying" and len(h.gitlab.pipelines) == 1
        assert all("not armed" not in m.text for m in h.slack.dms(OPS))  # never asked to arm


async def test_a_new_ref_takes_back_the_time_arming_planned(db_url: str) -> None:
    """Armed in a freeze, the release was planned for the next allowed time; a new ref voids
    the arming and that time with it: card, status and calendar show no planned time."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, sample_policy(freezes=[SALES_WEEK]), clock=clock) as h:
        assert "Filed REL-1" in await h.says(DEV, "request web v1.1.0 Checkout")
        await h.says(TESTER, "report REL-1 https://ci/r/1")
        await h.says(DIRECTOR, "approve REL-1")
        await h.says(LEAD, "approve REL-1")
        assert await h.says(OPS, "arm REL-1") == (
            "Armed: REL-1 deploys on its own at 2026-12-01 00:00 CST.")
        assert "2026-12-01 00:00 CST *REL-1*" in await h.says(DEV, "calendar")
        assert "needs testing and sign-off again" in await h.says(DEV, "ref REL-1 v1.2.0")
        await h.settle()
        assert "Deploys at" not in readable(h.card(1))
        assert "2026-12-01" not in await h.says(DEV, "status REL-1")
        calendar = await h.says(DEV, "calendar")
        assert "REL-1" not in calendar and "*Scheduled releases*\n• none" in calendar, calendar
        assert any("The planned time 2026-12-01 00:00 CST, set when it was armed, no longer "
                   "holds" in line for line in h.thread(1)), h.thread(1)


async def test_a_freeze_refusal_names_the_override_where_the_type_has_one(db_url: str) -> None:
    """An emergency release held by a freeze is told the executive's way through; a standard
    one, which has none, is not."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, sample_policy(freezes=[SALES_WEEK]), clock=clock) as h:
        await h.says(DEV, "request web v1.1.0 Checkout")
        await h.says(DEV, 'request web v1.1.0 Payouts hang --type emergency --ground live_bug '
                          '--reason "Payouts hang"')
        for rid, approvers in ((1, (DIRECTOR, LEAD)), (2, (CTO, DIRECTOR, LEAD))):
            await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
            for approver in approvers:
                await h.says(approver, f"approve REL-{rid}")
        await h.settle()
        assert await h.says(OPS, "deploy REL-1") == (
            "Deploys are closed now: Sales week (freeze from 2026-11-20 to 2026-11-30). The next "
            "allowed time is 2026-12-01 00:00 CST.")
        assert await h.says(OPS, "deploy REL-2") == (
            "Deploys are closed now: Sales week (freeze from 2026-11-20 to 2026-11-30). The next "
            "allowed time is 2026-12-01 00:00 CST. An executive may let it deploy now, with a "
            "reason: `/release override REL-2 &lt;reason…&gt;`.")


async def test_a_planned_time_in_a_freeze_is_told_where_it_is_shown(db_url: str) -> None:
    """A time given with --at that the freeze holds: the answer, the card and the calendar say
    it goes at the next allowed time instead; a time outside the freeze says nothing more."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    held = ("falls in a freeze: Sales week (freeze from 2026-11-20 to 2026-11-30), so it goes "
            "at 2026-12-01 00:00 CST instead")
    async with running_app(db_url, sample_policy(freezes=[SALES_WEEK]), clock=clock) as h:
        answer = await h.says(DEV, 'request web v1.1.0 Checkout --at "2026-11-28 20:00"')
        assert answer.startswith("Filed REL-1.") and f"⚠️ Its planned time {held}." in answer
        free = await h.says(DEV, 'request web v1.1.0 Later --at "2026-12-02 20:00"')
        assert free.startswith("Filed REL-2.") and "⚠️" not in free
        await h.settle()
        assert f"⚠️ The planned time {held}." in readable(h.card(1))
        assert "⚠️" not in readable(h.card(2))
        calendar = await h.says(DEV, "calendar")
        assert "*REL-1* web `v1.1.0`" in calendar
        line = next(t for t in calendar.splitlines() if "*REL-1*" in t)
        assert line.endswith(f"not armed · ⚠️ that time {held}"), line
        assert "⚠️" not in next(t for t in calendar.splitlines() if "*REL-2*" in t)


async def test_an_emergency_planned_in_a_freeze_is_told_an_executive_may_let_it_go(
        db_url: str) -> None:
    """An emergency may bypass the freeze with an executive's override: its answer, card and
    calendar say so beside when it would go instead."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    unless = ("so it goes at 2026-12-01 00:00 CST instead, unless an executive overrides the "
              "freeze for it (`/release override`)")
    async with running_app(db_url, sample_policy(freezes=[SALES_WEEK]), clock=clock) as h:
        answer = await h.says(DEV, f'request web v1.1.0 Outage --type emergency {EMERGENCY} '
                                   '--at "2026-11-28 20:00"')
        assert answer.startswith("Filed REL-1.") and answer.endswith(f"{unless}."), answer
        await h.settle()
        assert f"{unless}." in readable(h.card(1))
        line = next(t for t in (await h.says(DEV, "calendar")).splitlines() if "*REL-1*" in t)
        assert line.endswith(unless), line
