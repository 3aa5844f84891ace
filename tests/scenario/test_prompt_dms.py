"""DMs that prompt someone with buttons (accept, verify, decide, arm, abandon) lose their
buttons once the prompt is over, each saying in one line what happened."""

from __future__ import annotations

from typing import Any

from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.sample import CTO, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, running_app, wait_for
from tests.scenario.test_ask_dms import card_link, updates_of
from tests.scenario.test_duties import live
from tests.scenario.test_executive_decides import live_emergency
from tests.scenario.test_gitlab_flow import approved, deploy_and_finish, state
from tests.scenario.test_schedule import EIGHT_PM, NOON, scheduled_campaign
from tests.scenario.test_stuck_deploy import WEB


def newest(h: Harness, user: str) -> Any:
    """The person's newest DM."""
    return h.slack.dms(user)[-1]


def now(h: Harness, sent: Any) -> Any:
    """A DM as it shows now."""
    return next(m for m in h.slack.messages(sent.channel) if m.ts == sent.ts)


def buttons(message: Any) -> list[str]:
    """The action ids of a message's buttons."""
    return [e["action_id"] for b in message.blocks if b["type"] == "actions"
            for e in b["elements"]]


def settled(h: Harness, sent: Any, rid: int, line: str) -> bool:
    """The DM is one line, `REL-n` linked to the card, `line` after it, and no buttons."""
    shown = now(h, sent)
    return shown.text == f"<{card_link(h, rid)}|REL-{rid}> {line}" and buttons(shown) == []


async def test_testers_acceptance_and_verification_prompts_say_who_did_it(
        db_url: str, policy: Policy) -> None:
    """The staging prompt settles when one tester passes it from their DM, the production one
    when the other verifies by command: 'you' to the doer, a mention to the other, once each."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid)
        staging = {u: newest(h, u) for u in (TESTER, LEAD)}
        assert all(ActionId.VERIFY_PASS in buttons(m) for m in staging.values())

        await h.click(LEAD, ActionId.VERIFY_PASS, channel=staging[LEAD].channel)
        head = "no longer needs your acceptance on staging:"
        assert settled(h, staging[LEAD], rid, f"{head} you accepted it on staging.")
        assert settled(h, staging[TESTER], rid, f"{head} <@{LEAD}> accepted it on staging.")

        await deploy_and_finish(h, rid)
        production = {u: newest(h, u) for u in (TESTER, LEAD)}
        assert all(ActionId.VERIFY_PASS in buttons(m) for m in production.values())
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.settle()
        head = "no longer needs your verification:"
        assert settled(h, production[TESTER], rid, f"{head} you verified it in production.")
        assert settled(h, production[LEAD], rid,
                       f"{head} <@{TESTER}> verified it in production.")
        assert all(updates_of(h, m) == 1 for m in [*staging.values(), *production.values()])
        assert await state(h, rid) == "observing"


async def test_a_rollback_settles_the_verification_prompt(db_url: str, policy: Policy) -> None:
    """Rolled back before anyone verified: the testers' prompts say so."""
    async with running_app(db_url, policy) as h:
        before = await live(h, "payments", "v1.0.0")
        await h.says(TESTER, f"verify REL-{before} pass")
        rid = await live(h, "payments", "v1.1.0")
        asked = newest(h, TESTER)
        assert ActionId.VERIFY_FAIL in buttons(asked)
        await h.says(OPS, f"rollback REL-{rid} checkout breaks")
        await h.settle()
        assert await state(h, rid) == "rolling_back"
        assert settled(h, asked, rid,
                       "no longer needs your verification: it is being rolled back.")


async def test_the_executives_decision_prompt_and_the_failed_verification(
        db_url: str, policy: Policy) -> None:
    """A tester fails it online: the testers' prompts name who did; the executive is prompted
    and decides by command: their DM says what they decided."""
    async with running_app(db_url, policy) as h:
        rid = await live_emergency(h)
        verify = {u: newest(h, u) for u in (TESTER, LEAD)}
        await h.says(TESTER, f"verify REL-{rid} fail Receipt logo is blurry")
        await h.settle()
        head = "no longer needs your verification:"
        assert settled(h, verify[TESTER], rid, f"{head} you found it failing in production.")
        assert settled(h, verify[LEAD], rid,
                       f"{head} <@{TESTER}> found it failing in production.")

        decide = newest(h, CTO)
        assert buttons(decide) == [ActionId.DECIDE_FIX, ActionId.DECIDE_ACCEPT]
        await h.says(CTO, f"decide REL-{rid} accept Cosmetic; fixed in the next release")
        await h.settle()
        assert await state(h, rid) == "observing"
        assert settled(h, decide, rid, "no longer needs your decision: you decided it stays "
                                       "live with its problems as known issues.")
        assert updates_of(h, decide) == 1


async def test_the_arm_prompt_says_who_armed_it(db_url: str, policy: Policy) -> None:
    """Due and unarmed, the release manager is prompted; armed by command, the prompt says so."""
    clock = ShiftClock()
    clock.jump_to(NOON)
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        await scheduled_campaign(h)
        clock.jump_to(EIGHT_PM)
        await wait_for(lambda: len(h.slack.dms(OPS)) > 0, 10)
        await h.settle()
        [asked] = h.slack.dms(OPS)
        assert buttons(asked) == [ActionId.ARM]
        assert (await h.says(OPS, "arm REL-1")).startswith("Armed: REL-1")
        await h.settle()
        assert settled(h, asked, 1, "no longer needs arming: you armed it.")
        assert updates_of(h, asked) == 1


async def test_the_abandon_prompt_settles_when_the_stuck_pipeline_is_given_up(
        db_url: str, policy: Policy) -> None:
    """Stuck on a manual job: the release manager's prompt offers Abandon; abandoned by
    command, it says who gave the pipeline up."""
    async with running_app(db_url, policy) as h:
        h.gitlab.set_jobs(WEB, manual_deploy=True)
        rid = await approved(h, "web")
        await h.says(OPS, f"deploy REL-{rid}")
        h.gitlab.set_status(h.pipeline_of(rid).id, "manual")
        assert await h.poll() == 0
        stuck = newest(h, OPS)
        assert buttons(stuck) == [ActionId.ABANDON]
        await h.says(OPS, f"abandon REL-{rid} nobody may start the deploy job today")
        await h.settle()
        assert await state(h, rid) == "deploy_failed"
        assert settled(h, stuck, rid,
                       "is no longer stuck in production: you abandoned its pipeline.")
