"""App Home shows each reader only the buttons they may use now; the channel card shows all."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from bot.readmodel import ReleaseView
from bot.workflow import Actor, Ctx, Event, Facts, State, gate_open, permits
from handlers.blocks import ActionId, button
from handlers.cards import build_release_card
from handlers.home import build_home, home_entry, usable
from tests.handlers.test_cards import (
    TZ,
    approval,
    deployment,
    make_release,
    make_view,
    verdict,
)

REQUESTER = Actor("U0DEV", frozenset({"developer"}))
TESTER = Actor("U0TESTER", frozenset({"tester"}))
APPROVER = Actor("U0DIRECTOR", frozenset({"tech_director"}))
MANAGER = Actor("U0OPS", frozenset({"release_manager"}))
EXECUTIVE = Actor("U0CTO", frozenset({"executive"}))
DBA = Actor("U0DBA", frozenset({"dba"}))
CHECKLIST = ["Database backup taken", {"item": "DB scripts run in advance", "role": "dba"}]

_A = ActionId
SIGNOFF = make_view(State.READY_FOR_SIGNOFF, checklist=CHECKLIST)
PINNED = {"pinned_sha": "4f2c9a1" * 5, "pinned_revision": 1}
SIGNED = make_view(State.APPROVED, checklist=CHECKLIST, ticks=[1, 2], **PINNED, approvals=[
    approval("tech_director", "U0DIRECTOR"), approval("test_lead", "U0TESTLEAD")])
UNTICKED = make_view(State.APPROVED, checklist=CHECKLIST, ticks=[1], **PINNED, approvals=[
    approval("tech_director", "U0DIRECTOR"), approval("test_lead", "U0TESTLEAD")])
ON_STAGING = make_view(State.DEPLOYED, deployments=[deployment("staging")])
IN_PRODUCTION = make_view(State.DEPLOYED, acceptances=[verdict()],
                          deployments=[deployment("staging"), deployment("production")])
OBSERVED = make_view(State.VERIFIED, deployments=[deployment("staging"),
                                                  deployment("production")])


def actions(blocks: list[dict[str, Any]]) -> list[str]:
    """The action ids of every button and checkbox group, in order."""
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


def shown(view: ReleaseView, reader: Actor) -> list[str]:
    """What the reader's Home entry for the release offers."""
    return actions(home_entry(view, TZ, reader=reader))


@pytest.mark.parametrize(("view", "reader", "expected"), [
    # Sign-off: approvers approve or reject; testers may replace the report; checklist owners
    # tick; an executive may reject; the requester only waits.
    (SIGNOFF, REQUESTER, []),
    (SIGNOFF, TESTER, [_A.REPORT]),
    (SIGNOFF, APPROVER, [_A.APPROVE, _A.REJECT]),
    (SIGNOFF, MANAGER, [_A.CHECKLIST]),
    (SIGNOFF, EXECUTIVE, [_A.REJECT]),
    (SIGNOFF, DBA, [_A.CHECKLIST]),
    # Signed off: the release manager deploys, once the checklist is done.
    (SIGNED, REQUESTER, []),
    (SIGNED, TESTER, [_A.REPORT]),
    (SIGNED, APPROVER, []),
    (SIGNED, MANAGER, [_A.DEPLOY, _A.CHECKLIST]),
    (SIGNED, EXECUTIVE, []),
    (SIGNED, DBA, [_A.CHECKLIST]),
    (UNTICKED, MANAGER, [_A.CHECKLIST]),
    (UNTICKED, DBA, [_A.CHECKLIST]),
    # On staging: a tester gives the verdict; the release manager may roll back.
    (ON_STAGING, REQUESTER, []),
    (ON_STAGING, TESTER, [_A.VERIFY_PASS, _A.VERIFY_FAIL]),
    (ON_STAGING, APPROVER, []),
    (ON_STAGING, MANAGER, [_A.ROLLBACK]),
    (ON_STAGING, EXECUTIVE, []),
    (ON_STAGING, DBA, []),
    (IN_PRODUCTION, TESTER, [_A.VERIFY_PASS, _A.VERIFY_FAIL]),
    (IN_PRODUCTION, MANAGER, [_A.ROLLBACK]),
    # Verified: the release manager or an executive closes it.
    (OBSERVED, REQUESTER, []),
    (OBSERVED, TESTER, []),
    (OBSERVED, MANAGER, [_A.ROLLBACK, _A.CLOSE]),
    (OBSERVED, EXECUTIVE, [_A.CLOSE]),
    (OBSERVED, DBA, []),
], ids=lambda p: p.user if isinstance(p, Actor) else None)
def test_home_shows_each_reader_only_the_buttons_they_may_use(
        view: ReleaseView, reader: Actor, expected: list[str]) -> None:
    """Per role, as the transition table decides; the card itself keeps every button."""
    assert shown(view, reader) == expected
    drawn = actions(build_release_card(view, TZ)[1])
    assert set(expected) <= set(drawn)


def test_the_channel_card_and_a_readerless_home_keep_every_button() -> None:
    """Everyone sees the channel card: nothing is taken off it, nor off Home without a reader."""
    card = actions(build_release_card(SIGNOFF, TZ)[1])
    assert card == [_A.REPORT, _A.APPROVE, _A.REJECT, _A.CHECKLIST]
    assert actions(build_home([SIGNOFF], [], [], TZ)["blocks"]) == card
    assert actions(build_home([SIGNOFF], [], [], TZ, reader=REQUESTER)["blocks"]) == []


def test_a_row_left_without_buttons_is_dropped() -> None:
    """No empty actions block (Slack refuses one)."""
    entry = home_entry(SIGNED, TZ, reader=APPROVER)
    assert all(b["elements"] for b in entry if b["type"] == "actions")
    assert not [b for b in entry if b["type"] == "actions"]


def test_four_eyes_and_separated_duties_hold_on_home() -> None:
    """The requester never sees Approve, even holding the role; nor a verdict on their own
    release as a tester; an approver who signed keeps Reject but not Approve."""
    assert _A.APPROVE not in shown(SIGNOFF, Actor("U0DEV", frozenset({"tech_director"})))
    assert shown(ON_STAGING, Actor("U0DEV", frozenset({"tester"}))) == []
    signed = make_view(approvals=[approval("tech_director", "U0DIRECTOR")])
    assert shown(signed, APPROVER) == [_A.REJECT]
    assert shown(signed, Actor("U0TESTLEAD", frozenset({"test_lead"}))) == [
        _A.APPROVE, _A.REJECT]


def test_the_requester_deploys_where_the_type_lets_them() -> None:
    """`requester_can_deploy` reaches Home through the view."""
    assert _A.DEPLOY not in shown(SIGNED, REQUESTER)
    assert shown(replace(SIGNED, requester_can_deploy=True), REQUESTER) == [_A.DEPLOY]


def test_the_plan_and_decision_buttons_go_to_their_people() -> None:
    """Edit plan to the requester and the release manager; Plan OK/changes to the reviewer;
    Fix/Accept to an executive other than the requester."""
    plan = replace(make_view(State.READY_FOR_SIGNOFF, plan={"impact": "Payouts"}),
                   plan_reviewer="tech_director", plan_required=("impact",))
    assert shown(plan, REQUESTER) == [_A.EDIT_PLAN]
    assert shown(plan, MANAGER) == [_A.EDIT_PLAN, _A.CHECKLIST]
    # Approve waits for the plan's review: the reviewer sees Reject and the review's buttons.
    assert shown(plan, APPROVER) == [_A.REJECT, _A.PLAN_OK, _A.PLAN_CHANGES]
    failed = replace(make_view(release=make_release(State.VERIFICATION_FAILED,
                                                    type="emergency")),
                     executive_decides=True,
                     deployments=[deployment("staging"), deployment("production")])
    assert shown(failed, EXECUTIVE) == [_A.DECIDE_FIX, _A.DECIDE_ACCEPT]
    assert shown(failed, Actor("U0DEV", frozenset({"executive"}))) == []
    assert shown(failed, MANAGER) == [_A.ROLLBACK]


def test_informational_buttons_stay_for_anyone() -> None:
    """Release notes raise no event: anyone may read them."""
    notes = button("Release notes", ActionId.NOTES, "42")
    assert usable(SIGNOFF, REQUESTER, notes) and usable(OBSERVED, DBA, notes)


def test_a_guard_on_facts_the_view_lacks_keeps_the_button() -> None:
    """The deploy gate is not in the view: Deploy stays for the release manager; the table
    still refuses a closed gate when the click comes."""
    facts = Facts(state=State.APPROVED, requester="U0DEV", gate_open=False, pinned=True)
    ctx = Ctx(MANAGER, environment="production")
    assert not permits(facts, Event.DEPLOY, ctx)
    assert permits(facts, Event.DEPLOY, ctx, unknown=(gate_open,))
    assert not permits(facts, Event.DEPLOY, Ctx(TESTER, environment="production"),
                       unknown=(gate_open,))


def test_a_reason_the_form_asks_for_later_does_not_hide_a_button() -> None:
    """Reject needs a reason, asked in its form after the click."""
    assert SIGNOFF.may(APPROVER, Event.REJECT)
    assert not SIGNOFF.may(REQUESTER, Event.REJECT)
