"""The transition table, exhaustively, and each gate of the process on its own."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.workflow import (
    SYSTEM,
    TABLE,
    Actor,
    Ctx,
    Event,
    Facts,
    Report,
    Retype,
    State,
    TransitionError,
    allowed_events,
    decide,
    verdict_event,
)

S, E = State, Event
LIMITS = {"A": 0, "B": 0, "C": 5}
GOOD = Report(bugs={"A": 0, "B": 0, "C": 1}, limits=LIMITS)
BAD = Report(bugs={"A": 1, "B": 0, "C": 9}, limits=LIMITS)
DIRECTOR = Actor("U0DIRECTOR", frozenset({"tech_director"}))
LEAD = Actor("U0TESTLEAD", frozenset({"test_lead", "tester"}))
TESTER = Actor("U0TESTER", frozenset({"tester"}))
OPS = Actor("U0OPS", frozenset({"release_manager"}))
CTO = Actor("U0CTO", frozenset({"executive"}))
DEV = Actor("U0DEV")
BASE = Facts(state=S.REQUESTED, requester=DEV.user, required_roles=("tech_director", "test_lead"),
             report=GOOD, checklist_total=2, checklist_done=frozenset({1, 2}),
             environments=("staging", "production"), rollback_ref="v1.0.0",
             allow_known_issues=True, bypass_allowed=True, plan_reviewer="tech_director",
             plan_review="ok", rel_id="REL-5", type_confirmed=True)

# The specification, written out independently of the table: (state, event) -> destination
# with facts where every guard holds. Pairs missing here must be refused.
EXPECTED: dict[tuple[State, Event], State] = {
    (S.REQUESTED, E.START_TESTING): S.TESTING,
    **{(s, E.REPORT): S.READY_FOR_SIGNOFF for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.REJECTED)},
    (S.TESTING, E.ACCEPT_RISK): S.READY_FOR_SIGNOFF,
    (S.READY_FOR_SIGNOFF, E.APPROVE): S.APPROVED,
    **{(s, E.REJECT): S.REJECTED for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED)},
    (S.REQUESTED, E.CHANGE_REF): S.REQUESTED,
    **{(s, E.CHANGE_REF): S.TESTING for s in
       (S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.ACCEPTANCE_FAILED,
        S.REJECTED)},  # a rejected release comes back for rework
    (S.VERIFICATION_FAILED, E.CHANGE_REF): S.TESTING,  # only with nothing to roll back to
    **{(s, E.TICK): s for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.DEPLOY_FAILED)},
    **{(s, E.OVERRIDE_GATE): s for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.DEPLOY_FAILED)},
    **{(s, E.HOLD): s for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED)},
    **{(s, E.DEPLOY): S.DEPLOYING for s in
       (S.APPROVED, S.SCHEDULED, S.DEPLOYED, S.DEPLOY_FAILED)},
    (S.DEPLOYING, E.DEPLOY_SUCCEEDED): S.DEPLOYED,
    (S.DEPLOYING, E.DEPLOY_FAILED): S.DEPLOY_FAILED,
    (S.DEPLOYED, E.ACCEPTANCE_PASS): S.DEPLOYED,
    (S.DEPLOYED, E.ACCEPTANCE_FAIL): S.ACCEPTANCE_FAILED,
    (S.DEPLOYED, E.VERIFY_PASS): S.VERIFIED,
    (S.DEPLOYED, E.VERIFY_FAIL): S.VERIFICATION_FAILED,
    (S.VERIFIED, E.OBSERVE): S.OBSERVING,
    (S.VERIFIED, E.CLOSE): S.CLOSED,
    (S.OBSERVING, E.CLOSE): S.CLOSED,
    **{(s, E.ROLLBACK): S.ROLLING_BACK for s in
       (S.DEPLOYED, S.VERIFICATION_FAILED, S.VERIFIED, S.OBSERVING, S.DEPLOY_FAILED,
        S.ACCEPTANCE_FAILED)},
    (S.ROLLING_BACK, E.ROLLBACK_SUCCEEDED): S.ROLLED_BACK,
    (S.ROLLING_BACK, E.ROLLBACK_FAILED): S.DEPLOY_FAILED,
    (S.DEPLOYING, E.ABANDON): S.DEPLOY_FAILED,  # a stuck pipeline, given up: counts as failed
    (S.ROLLING_BACK, E.ABANDON): S.DEPLOY_FAILED,
    **{(s, E.CANCEL): S.CANCELLED for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.DEPLOYED,
        S.DEPLOY_FAILED, S.ACCEPTANCE_FAILED, S.REJECTED)},  # until production starts
    **{(s, E.PUBLISH_NOTES): s for s in
       (S.DEPLOYED, S.VERIFICATION_FAILED, S.VERIFIED, S.OBSERVING)},
    # The go-live plan: edited before deploy (a signed-off release is signed off again),
    # approved or sent back by its reviewer.
    **{(s, E.EDIT_PLAN): s for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.REJECTED)},
    **{(s, E.EDIT_PLAN): S.READY_FOR_SIGNOFF for s in (S.APPROVED, S.SCHEDULED)},
    **{(s, event): s for event in (E.PLAN_OK, E.PLAN_CHANGES) for s in
       (S.REQUESTED, S.TESTING, S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.REJECTED)},
    **{(s, E.ARM): s for s in (S.APPROVED, S.SCHEDULED, S.DEPLOYED)},
    # The bug tracker shows new open bugs before production began: back to testing.
    **{(s, E.NEW_BUGS): S.TESTING for s in
       (S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED, S.DEPLOYED, S.DEPLOY_FAILED)},
    # The plan's reviewer corrects the type before deploy; sign-off starts again.
    **{(s, E.RETYPE): s for s in (S.REQUESTED, S.TESTING, S.REJECTED)},
    **{(s, E.RETYPE): S.READY_FOR_SIGNOFF for s in
       (S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED)},
    # After a failed online verification the executive has it fixed, or keeps it live.
    (S.VERIFICATION_FAILED, E.DECIDE_FIX): S.VERIFICATION_FAILED,
    (S.VERIFICATION_FAILED, E.DECIDE_ACCEPT): S.VERIFIED,
}

ACTOR = {
    E.START_TESTING: TESTER, E.REPORT: TESTER, E.ACCEPT_RISK: CTO, E.APPROVE: LEAD,
    E.REJECT: DIRECTOR, E.CHANGE_REF: DEV, E.TICK: OPS, E.OVERRIDE_GATE: CTO, E.DEPLOY: OPS,
    E.VERIFY_PASS: TESTER, E.VERIFY_FAIL: TESTER, E.CLOSE: OPS, E.ROLLBACK: OPS, E.CANCEL: DEV,
    E.PUBLISH_NOTES: OPS, E.EDIT_PLAN: DEV, E.PLAN_OK: DIRECTOR, E.PLAN_CHANGES: DIRECTOR,
    E.ABANDON: OPS, E.ACCEPTANCE_PASS: TESTER, E.ACCEPTANCE_FAIL: TESTER, E.ARM: OPS,
    E.RETYPE: DIRECTOR, E.DECIDE_FIX: CTO, E.DECIDE_ACCEPT: CTO,
}


def happy(state: State, event: Event) -> tuple[Facts, Ctx]:
    """Facts and arguments under which every guard of (state, event) holds."""
    facts = replace(BASE, state=state, approvals={"tech_director": DIRECTOR.user,
                                                  "test_lead": LEAD.user})
    ctx = Ctx(ACTOR.get(event, SYSTEM), reason="because", items=(1,), report=GOOD,
              environment="production")
    if event is E.APPROVE:
        facts = replace(facts, approvals={"tech_director": DIRECTOR.user})
    if event is E.ACCEPT_RISK:
        facts = replace(facts, report=BAD)
    if event is E.PLAN_OK:
        facts = replace(facts, plan_review=None)
    if event is E.DEPLOY:
        ctx = replace(ctx, environment="staging")
    if event in (E.VERIFY_PASS, E.VERIFY_FAIL):
        facts = replace(facts, deployed_envs=frozenset({"staging", "production"}))
    if event in (E.ACCEPTANCE_PASS, E.ACCEPTANCE_FAIL):
        facts = replace(facts, deployed_envs=frozenset({"staging"}))
        ctx = replace(ctx, environment="staging")
    if event is E.ARM:
        facts = replace(facts, has_schedule=True)
    if event is E.CHANGE_REF:
        facts = replace(facts, rollback_ref=None)
    if event is E.DEPLOY_SUCCEEDED:  # the last (or only) component reached production
        facts = replace(facts, deployed_envs=frozenset({"staging", "production"}))
    if event is E.ROLLBACK_SUCCEEDED:  # nothing else waits to be rolled back
        facts = replace(facts, rollback_ref=None)
    if event is E.RETYPE:
        ctx = replace(ctx, retype=Retype("emergency"))
    return facts, ctx


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_every_state_event_pair(state: State, event: Event) -> None:
    """Each pair is either allowed (to the specified state) or refused naming event and state."""
    facts, ctx = happy(state, event)
    if (state, event) in EXPECTED:
        assert decide(facts, event, ctx) is EXPECTED[(state, event)]
        return
    with pytest.raises(TransitionError) as err:
        decide(facts, event, ctx)
    assert event.value in str(err.value) and state.value in str(err.value)
    sentence = err.value.sentence
    assert sentence and not any(s.value in sentence for s in State if "_" in s.value)  # labels


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("event", list(Event))
def test_only_sign_off_waits_for_merge_back(state: State, event: Event) -> None:
    """A hotfix not merged back refuses an approval and changes no other decision."""
    facts, ctx = happy(state, event)
    lacking = replace(facts, rel_id="REL-7",
                      merge_back_missing=("REL-5 (`hotfix/1.2.1` @ abc1234)",))
    if (state, event) == (S.READY_FOR_SIGNOFF, E.APPROVE):
        assert refused(lacking, event, ctx) == (
            "REL-7 does not contain hotfix REL-5 (`hotfix/1.2.1` @ abc1234): merge it back first.")
    elif (state, event) in EXPECTED:
        assert decide(lacking, event, ctx) is EXPECTED[(state, event)]


def test_merge_back_names_every_hotfix_missing() -> None:
    """Two hotfixes lacking are both named."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF, rel_id="REL-9",
                    merge_back_missing=("REL-5 (`hotfix/1` @ abc1234)",
                                        "REL-6 (`hotfix/2` @ def5678)"))
    assert refused(facts, E.APPROVE, Ctx(LEAD)) == (
        "REL-9 does not contain hotfixes REL-5 (`hotfix/1` @ abc1234) and "
        "REL-6 (`hotfix/2` @ def5678): merge them back first.")


def test_table_and_specification_agree() -> None:
    """No row of the table is missing from the specification above, and the reverse."""
    table_pairs = {(s, t.event) for t in TABLE for s in t.sources}
    assert table_pairs == set(EXPECTED)
    assert allowed_events(S.CLOSED) == set()


def refused(facts: Facts, event: Event, ctx: Ctx) -> str:
    """The sentence of a refusal."""
    with pytest.raises(TransitionError) as err:
        decide(facts, event, ctx)
    return err.value.sentence


def test_four_eyes_requester_never_approves() -> None:
    """The requester holding an approver role still can't sign their own release."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF, requester=LEAD.user)
    assert "four eyes" in refused(facts, E.APPROVE, Ctx(LEAD))


def test_requester_may_reject_when_an_approver() -> None:
    """Rejecting one's own release is allowed (it only stops it)."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF, requester=LEAD.user)
    assert decide(facts, E.REJECT, Ctx(LEAD, reason="found a bug")) is S.REJECTED


def test_rejection_needs_a_reason() -> None:
    """A bare reject is refused."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF)
    assert refused(facts, E.REJECT, Ctx(DIRECTOR, reason="  ")) == "Please give a reason."


def test_a_person_counts_once() -> None:
    """One person holding both approver roles signs for one of them only."""
    both = Actor("U0BOTH", frozenset({"tech_director", "test_lead"}))
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF)
    assert decide(facts, E.APPROVE, Ctx(both)) is S.READY_FOR_SIGNOFF
    after = replace(facts, approvals={"tech_director": both.user})
    assert refused(after, E.APPROVE, Ctx(both)) == "You have already approved this release."
    allowed = replace(after, one_person_many_roles=True)
    assert decide(allowed, E.APPROVE, Ctx(both)) is S.APPROVED


def test_only_required_roles_approve() -> None:
    """A tester is not an approver of a standard release."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF)
    assert "approver" in refused(facts, E.APPROVE, Ctx(TESTER))


def test_last_approval_with_a_schedule_goes_to_scheduled() -> None:
    """A release with a planned time waits for it once signed off."""
    facts = replace(BASE, state=S.READY_FOR_SIGNOFF, has_schedule=True,
                    approvals={"tech_director": DIRECTOR.user})
    assert decide(facts, E.APPROVE, Ctx(LEAD)) is S.SCHEDULED


def test_go_live_standard() -> None:
    """A report with open A/B bugs or too many C bugs keeps the release in testing."""
    facts = replace(BASE, state=S.TESTING)
    assert decide(facts, E.REPORT, Ctx(TESTER, report=BAD)) is S.TESTING
    assert BAD.failures == ["1 open A bug (limit 0)", "9 open C bugs (limit 5)"]
    at_limit = Report(bugs={"A": 0, "B": 0, "C": 5}, limits=LIMITS)
    assert decide(facts, E.REPORT, Ctx(TESTER, report=at_limit)) is S.READY_FOR_SIGNOFF
    assert "tester" in refused(facts, E.REPORT, Ctx(DEV, report=GOOD))


def test_emergency_acceptance_needs_executive_policy_and_reason() -> None:
    """Known issues ship only by an executive, with a reason, where the type allows it."""
    facts = replace(BASE, state=S.TESTING, report=BAD)
    assert decide(facts, E.ACCEPT_RISK, Ctx(CTO, reason="outage")) is S.READY_FOR_SIGNOFF
    assert refused(facts, E.ACCEPT_RISK, Ctx(CTO)) == "Please give a reason."
    assert "executive" in refused(facts, E.ACCEPT_RISK, Ctx(DIRECTOR, reason="x"))
    strict = replace(facts, allow_known_issues=False)
    assert "can't ship with open bugs" in refused(strict, E.ACCEPT_RISK, Ctx(CTO, reason="x"))
    passing = replace(facts, report=GOOD)
    assert "already meets" in refused(passing, E.ACCEPT_RISK, Ctx(CTO, reason="x"))


def test_nobody_lifts_a_rule_for_their_own_release() -> None:
    """An executive who requested a release may neither accept its risk nor override its gate."""
    own = Actor(DEV.user, frozenset({"executive"}))
    testing = replace(BASE, state=S.TESTING, report=BAD)
    assert "someone else must decide" in refused(testing, E.ACCEPT_RISK, Ctx(own, reason="x"))
    assert decide(testing, E.ACCEPT_RISK, Ctx(CTO, reason="x")) is S.READY_FOR_SIGNOFF
    frozen = replace(BASE, state=S.APPROVED, gate_open=False, gate_reason="Freeze")
    assert "someone else must decide" in refused(frozen, E.OVERRIDE_GATE, Ctx(own, reason="x"))
    assert decide(frozen, E.OVERRIDE_GATE, Ctx(CTO, reason="x")) is S.APPROVED


def test_deploy_needs_all_signoffs() -> None:
    """Missing approvals of the current revision block deploy."""
    facts = replace(BASE, state=S.APPROVED, approvals={"tech_director": DIRECTOR.user})
    ctx = Ctx(OPS, environment="staging")
    assert refused(facts, E.DEPLOY, ctx) == "Still waiting for sign-off by test_lead."


def test_checklist_must_be_complete() -> None:
    """Unticked items block deploy and are named, with who ticks each and how."""
    facts = replace(BASE, state=S.APPROVED, approvals={"tech_director": "a", "test_lead": "b"},
                    checklist_total=3, checklist_done=frozenset({2}))
    assert refused(facts, E.DEPLOY, Ctx(OPS, environment="staging")) == (
        "Checklist items 1, 3 are still open: the release manager ticks them with "
        "`/release check REL-5 1 3` or on the card.")
    dba = replace(facts, checklist_roles=("release_manager", "release_manager", "dba"))
    assert refused(dba, E.DEPLOY, Ctx(OPS, environment="staging")) == (
        "Checklist items 1, 3 are still open: the release manager ticks 1 and a dba 3, with "
        "`/release check REL-5 <n…>` or on the card.")
    one = replace(dba, checklist_done=frozenset({1, 2}))
    assert refused(one, E.DEPLOY, Ctx(OPS, environment="staging")) == (
        "Checklist item 3 is still open: a dba ticks it with `/release check REL-5 3` or on "
        "the card.")


def test_checklist_item_numbers_are_checked() -> None:
    """Ticking item 9 of 2 is refused plainly."""
    facts = replace(BASE, state=S.APPROVED)
    assert refused(facts, E.TICK, Ctx(OPS, items=(9,))) == (
        "No checklist item 9; this release has 2.")


def test_freeze_blocks_unless_overridden() -> None:
    """A closed gate refuses with its reason; an executive override opens it."""
    facts = replace(BASE, state=S.APPROVED, approvals={"tech_director": "a", "test_lead": "b"},
                    gate_open=False, gate_reason="Year-end freeze until 2027-01-02")
    ctx = Ctx(OPS, environment="staging")
    assert "Year-end freeze" in refused(facts, E.DEPLOY, ctx)
    assert decide(replace(facts, gate_overridden=True), E.DEPLOY, ctx) is S.DEPLOYING
    assert "executive" in refused(facts, E.OVERRIDE_GATE, Ctx(OPS, reason="x"))
    no_bypass = replace(facts, bypass_allowed=False)
    assert "can't bypass" in refused(no_bypass, E.OVERRIDE_GATE, Ctx(CTO, reason="x"))


def test_staging_before_production() -> None:
    """Production waits for staging; a finished environment is not deployed again."""
    facts = replace(BASE, state=S.APPROVED, approvals={"tech_director": "a", "test_lead": "b"})
    assert refused(facts, E.DEPLOY, Ctx(OPS, environment="production")) == (
        "REL-5 goes to staging before production: deploy staging first "
        "(`/release deploy REL-5 staging`).")
    after = replace(facts, state=S.DEPLOYED, deployed_envs=frozenset({"staging"}),
                    accepted_envs=frozenset({"staging"}))
    assert decide(after, E.DEPLOY, Ctx(OPS, environment="production")) is S.DEPLOYING
    assert "already deployed to staging" in refused(after, E.DEPLOY,
                                                    Ctx(OPS, environment="staging"))
    assert "Unknown environment" in refused(after, E.DEPLOY, Ctx(OPS, environment="qa"))


def test_verification_is_of_production() -> None:
    """After staging only, verification is refused."""
    facts = replace(BASE, state=S.DEPLOYED, deployed_envs=frozenset({"staging"}))
    assert refused(facts, E.VERIFY_PASS, Ctx(TESTER)) == (
        "This release is not yet deployed to production.")


def test_who_deploys() -> None:
    """The release manager deploys; the requester only where the policy allows it."""
    facts = replace(BASE, state=S.APPROVED, approvals={"tech_director": "a", "test_lead": "b"})
    ctx = Ctx(DEV, environment="staging")
    assert "release manager" in refused(facts, E.DEPLOY, ctx)
    assert decide(replace(facts, requester_can_deploy=True), E.DEPLOY, ctx) is S.DEPLOYING
    assert refused(facts, E.DEPLOY, Ctx(TESTER, environment="staging")) == (
        "Only the release manager can do that.")
    assert refused(replace(facts, requester_can_deploy=True), E.DEPLOY,
                   Ctx(TESTER, environment="staging")) == (
        "Only the release manager or the requester can do that.")


def test_cancel_until_production_starts() -> None:
    """Cancel frees staging; once production has begun, only a rollback undoes it."""
    envs = ("staging", "production")
    for state in (S.DEPLOYING, S.VERIFIED, S.OBSERVING):
        facts = replace(BASE, state=state, environments=envs,
                        started_envs=frozenset({"staging", "production"}))
        assert refused(facts, E.CANCEL, Ctx(DEV)) == (
            "REL-5's production deploy has started, so it can't be cancelled: " + (
                "once it ends, roll it back if it must not stay." if state is S.DEPLOYING else
                "roll it back instead (`/release rollback REL-5`)."))
    staging = replace(BASE, state=S.DEPLOYING, environments=envs,
                      started_envs=frozenset({"staging"}))
    assert refused(staging, E.CANCEL, Ctx(DEV)) == (  # what holds it is the running deploy
        "A deploy is running: wait for it to end, or have the release manager abandon it, "
        "then cancel.")
    for state in (S.DEPLOYED, S.DEPLOY_FAILED):
        staged = replace(BASE, state=state, environments=envs, started_envs=frozenset({"staging"}))
        assert decide(staged, E.CANCEL, Ctx(DEV)) is S.CANCELLED
        begun = replace(staged, started_envs=frozenset(envs))
        assert refused(begun, E.CANCEL, Ctx(DEV)) == (
            "REL-5's production deploy has started, so it can't be cancelled: roll it back "
            "instead (`/release rollback REL-5`).")


def test_new_bugs_send_back_to_testing_until_production_starts() -> None:
    """Only the bot sends a release back for new bugs, and not once production has begun."""
    envs = ("staging", "production")
    staged = replace(BASE, state=S.DEPLOYED, environments=envs,
                     started_envs=frozenset({"staging"}))
    assert decide(staged, E.NEW_BUGS, Ctx(SYSTEM)) is S.TESTING
    assert refused(staged, E.NEW_BUGS, Ctx(OPS)) == "Only the bot can do that."
    begun = replace(staged, state=S.DEPLOY_FAILED, started_envs=frozenset(envs))
    assert refused(begun, E.NEW_BUGS, Ctx(SYSTEM)).startswith(
        "REL-5's production deploy has started")


def test_only_the_release_manager_abandons_with_a_reason() -> None:
    """Abandon is the release manager's, needs words, and only while a pipeline runs."""
    for state in (S.DEPLOYING, S.ROLLING_BACK):
        facts = replace(BASE, state=state)
        assert decide(facts, E.ABANDON, Ctx(OPS, reason="stuck on a manual job")) is (
            S.DEPLOY_FAILED)
        assert refused(facts, E.ABANDON, Ctx(OPS, reason=" ")) == "Please give a reason."
        for other in (DEV, TESTER, CTO, SYSTEM):
            assert refused(facts, E.ABANDON, Ctx(other, reason="x")) == (
                "Only the release manager can do that.")
    deployer = replace(BASE, state=S.DEPLOYING, requester_can_deploy=True)
    assert "release manager" in refused(deployer, E.ABANDON, Ctx(DEV, reason="x"))
    assert refused(replace(BASE, state=S.DEPLOYED), E.ABANDON, Ctx(OPS, reason="x")) == (
        "Only a running deploy or rollback can be abandoned; this release is deployed.")
    after = allowed_events(S.DEPLOY_FAILED)
    assert {E.DEPLOY, E.ROLLBACK} <= after  # from there: deploy again, or roll back


def test_rollback_needs_a_previous_version() -> None:
    """Without a recorded live version there is nowhere to go back to."""
    facts = replace(BASE, state=S.DEPLOY_FAILED, rollback_ref=None)
    assert "no recorded previous version" in refused(facts, E.ROLLBACK, Ctx(OPS))


def test_signoff_and_deploy_wait_for_the_whole_plan_reviewed() -> None:
    """Missing parts, then the review, then changes asked: each named word for word."""
    facts, ctx = happy(S.READY_FOR_SIGNOFF, E.APPROVE)
    missing = replace(facts, plan_missing=("impact scope", "rollback steps"))
    with pytest.raises(TransitionError) as err:
        decide(missing, E.APPROVE, ctx)
    assert err.value.sentence == (
        "The go-live plan is missing impact scope and rollback steps: the requester adds it "
        "with Edit plan on the card or `/release plan`.")
    waiting = replace(facts, plan_review=None)
    with pytest.raises(TransitionError) as err:
        decide(waiting, E.APPROVE, ctx)
    assert err.value.sentence == ("The go-live plan waits for review by the tech_director: "
                                  "Plan OK on the card or `/release review`.")
    changes = replace(facts, plan_review="changes", plan_review_note="Add the DB rollback")
    deploy_facts, deploy_ctx = happy(S.APPROVED, E.DEPLOY)
    with pytest.raises(TransitionError, match="asked for changes to the go-live plan: Add the "
                                              "DB rollback"):
        decide(replace(deploy_facts, plan_review="changes", plan_review_note="Add the DB "
                       "rollback"), E.DEPLOY, deploy_ctx)
    with pytest.raises(TransitionError, match="asked for changes"):
        decide(changes, E.APPROVE, ctx)
    assert decide(replace(facts, plan_reviewer=None, plan_review=None), E.APPROVE, ctx) is (
        S.APPROVED)


def test_the_plan_review_is_the_reviewers_and_not_the_requesters() -> None:
    """Only the reviewer role; never on one's own release; whole plans; changes need words."""
    facts, ctx = happy(S.TESTING, E.PLAN_OK)
    with pytest.raises(TransitionError, match="Only the go-live plan's reviewer"):
        decide(facts, E.PLAN_OK, replace(ctx, actor=LEAD))
    own = replace(facts, requester=DIRECTOR.user)
    with pytest.raises(TransitionError, match="four eyes"):
        decide(own, E.PLAN_OK, ctx)
    with pytest.raises(TransitionError, match="can't be approved while it is missing database "
                                              "scripts: the requester or the release manager "
                                              "completes it with `/release plan REL-"):
        decide(replace(facts, plan_missing=("database scripts",)), E.PLAN_OK, ctx)
    with pytest.raises(TransitionError, match="already approved"):
        decide(replace(facts, plan_review="ok"), E.PLAN_OK, ctx)
    with pytest.raises(TransitionError, match="needs no review"):
        decide(replace(facts, plan_reviewer=None), E.PLAN_OK, ctx)
    with pytest.raises(TransitionError, match="Please give a reason"):
        decide(facts, E.PLAN_CHANGES, replace(ctx, reason=" "))


def test_production_needs_a_way_back() -> None:
    """No known earlier version and no rollback steps: production is refused, staging is not."""
    facts, ctx = happy(S.DEPLOYED, E.DEPLOY)
    facts = replace(facts, deployed_envs=frozenset({"staging"}),
                    accepted_envs=frozenset({"staging"}), previous_known=False)
    prod = replace(ctx, environment="production")
    with pytest.raises(TransitionError) as err:
        decide(facts, E.DEPLOY, prod)
    assert err.value.sentence == (
        "Nothing is on record as running in production before this release, and its go-live "
        "plan has no rollback steps: add them with Edit plan or `/release plan`, so a failure "
        "has a way back.")
    assert decide(replace(facts, rollback_steps=True), E.DEPLOY, prod) is S.DEPLOYING
    assert decide(replace(facts, previous_known=True), E.DEPLOY, prod) is S.DEPLOYING


def test_terminal_states_refuse_everything() -> None:
    """A closed, cancelled or rolled back release stays so."""
    for state in (S.CLOSED, S.CANCELLED, S.ROLLED_BACK):
        assert allowed_events(state) == set()
        assert f"is {state.label}" in refused(replace(BASE, state=state), E.APPROVE, Ctx(LEAD))


def test_system_events_are_the_bots_only() -> None:
    """People can't report a pipeline result."""
    facts = replace(BASE, state=S.DEPLOYING)
    assert refused(facts, E.DEPLOY_SUCCEEDED, Ctx(OPS)) == "Only the bot can do that."


def test_labels() -> None:
    """The words people see."""
    assert S.READY_FOR_SIGNOFF.label == "ready for sign-off"
    assert S.DEPLOY_FAILED.label == "deploy failed"


def test_production_waits_for_acceptance_on_staging() -> None:
    """A tester passes the release on staging before production may be deployed."""
    facts = replace(BASE, state=S.DEPLOYED, approvals={"tech_director": "a", "test_lead": "b"},
                    deployed_envs=frozenset({"staging"}))
    assert refused(facts, E.DEPLOY, Ctx(OPS, environment="production")) == (
        "REL-5 is on staging and not yet accepted there: a tester passes it with "
        "`/release verify REL-5 pass`.")
    assert facts.awaiting_acceptance == "staging"
    accepted = replace(facts, accepted_envs=frozenset({"staging"}))
    assert accepted.awaiting_acceptance is None
    assert decide(accepted, E.DEPLOY, Ctx(OPS, environment="production")) is S.DEPLOYING


def test_a_verdict_is_acceptance_before_production_and_verification_in_it() -> None:
    """`/release verify` applies to the newest environment reached; a button names its own."""
    staged = replace(BASE, state=S.DEPLOYED, deployed_envs=frozenset({"staging"}))
    assert verdict_event(staged, True) is E.ACCEPTANCE_PASS
    assert verdict_event(staged, False) is E.ACCEPTANCE_FAIL
    live = replace(staged, deployed_envs=frozenset({"staging", "production"}))
    assert verdict_event(live, True) is E.VERIFY_PASS
    assert verdict_event(live, True, "staging") is E.ACCEPTANCE_PASS
    single = replace(BASE, state=S.DEPLOYED, environments=("production",),
                     deployed_envs=frozenset({"production"}))
    assert verdict_event(single, False) is E.VERIFY_FAIL


def test_acceptance_is_given_once_on_the_newest_environment() -> None:
    """A tester's verdict: once a revision, on the environment the release is on, with a note
    when it fails; a stale "Staging OK" never passes production."""
    staged = replace(BASE, state=S.DEPLOYED, deployed_envs=frozenset({"staging"}))
    ctx = Ctx(TESTER, environment="staging")
    assert decide(staged, E.ACCEPTANCE_PASS, ctx) is S.DEPLOYED
    assert refused(staged, E.ACCEPTANCE_FAIL, ctx) == "Please give a reason."
    assert decide(staged, E.ACCEPTANCE_FAIL, replace(ctx, reason="500s")) is S.ACCEPTANCE_FAILED
    assert "tester" in refused(staged, E.ACCEPTANCE_PASS, Ctx(OPS, environment="staging"))
    done = replace(staged, accepted_envs=frozenset({"staging"}))
    assert refused(done, E.ACCEPTANCE_PASS, ctx) == (
        "REL-5 is already accepted on staging; production is next.")
    live = replace(done, deployed_envs=frozenset({"staging", "production"}))
    assert refused(live, E.ACCEPTANCE_PASS, ctx) == (
        "REL-5 is on production now, not staging; look at the updated card.")


def test_a_failed_acceptance_holds_for_a_new_ref_or_cancel() -> None:
    """No deploy and no second verdict; a new ref restarts testing, cancel ends it."""
    failed = replace(BASE, state=S.ACCEPTANCE_FAILED, deployed_envs=frozenset({"staging"}),
                     started_envs=frozenset({"staging"}))
    assert allowed_events(S.ACCEPTANCE_FAILED) == {E.CHANGE_REF, E.CANCEL, E.ROLLBACK}
    held = ("REL-5 already failed acceptance: give it a new ref (`/release ref REL-5 <ref>`) to "
            "test again, or cancel it.")
    assert refused(failed, E.ACCEPTANCE_PASS, Ctx(TESTER, environment="staging")) == held
    assert refused(failed, E.DEPLOY, Ctx(OPS, environment="production")) == held
    assert decide(failed, E.CHANGE_REF, Ctx(DEV)) is S.TESTING
    assert decide(failed, E.CANCEL, Ctx(DEV)) is S.CANCELLED
    assert S.ACCEPTANCE_FAILED.label == "acceptance failed"


def test_the_bot_deploys_on_schedule_only_when_armed() -> None:
    """Unattended deploys need the release manager's arming; people deploying need none."""
    facts = replace(BASE, state=S.SCHEDULED, has_schedule=True,
                    approvals={"tech_director": "a", "test_lead": "b"})
    ctx = Ctx(SYSTEM, environment="staging")
    assert refused(facts, E.DEPLOY, ctx) == (
        "REL-5 is not armed: it deploys on its own only after the release manager arms it "
        "(`/release arm REL-5`).")
    assert decide(replace(facts, armed=True), E.DEPLOY, ctx) is S.DEPLOYING
    assert decide(facts, E.DEPLOY, Ctx(OPS, environment="staging")) is S.DEPLOYING


def test_arming() -> None:
    """The release manager arms a signed-off planned deploy, once a revision."""
    facts = replace(BASE, state=S.SCHEDULED, has_schedule=True)
    assert decide(facts, E.ARM, Ctx(OPS)) is S.SCHEDULED
    assert "release manager" in refused(facts, E.ARM, Ctx(DEV))
    assert refused(replace(facts, armed=True), E.ARM, Ctx(OPS)) == "REL-5 is already armed."
    unplanned = replace(facts, state=S.APPROVED, has_schedule=False)
    assert "no planned time" in refused(unplanned, E.ARM, Ctx(OPS))
    live = replace(facts, state=S.DEPLOYED, deployed_envs=frozenset({"staging", "production"}))
    assert refused(live, E.ARM, Ctx(OPS)) == "REL-5 is already deployed to production."
    assert refused(replace(facts, state=S.TESTING), E.ARM, Ctx(OPS)) == (
        "A release is armed once it is signed off; this one is testing.")


# --- refusals say what holds the release and what would free it -----------------------------------

REL5 = replace(BASE, rel_id="REL-5", known_issue_types=("emergency",), allow_known_issues=False)


def test_in_testing_names_the_open_bugs_and_the_way_on() -> None:
    """Approving or deploying a release whose report fails names its bugs and the way past."""
    one_b = Report(bugs={"A": 0, "B": 1, "C": 0}, limits=LIMITS)
    facts = replace(REL5, state=S.TESTING, report=one_b)
    sentence = ("REL-5 is in testing: its report shows 1 open B bug (limit 0). It needs a "
                "passing report, or an executive's acceptance on an emergency release.")
    assert refused(facts, E.APPROVE, Ctx(LEAD)) == sentence
    assert refused(facts, E.DEPLOY, Ctx(OPS, environment="staging")) == sentence
    own_type = replace(facts, allow_known_issues=True)
    assert refused(own_type, E.APPROVE, Ctx(LEAD)) == (
        "REL-5 is in testing: its report shows 1 open B bug (limit 0). It needs a passing "
        "report, or an executive's acceptance of the open bugs (`/release accept REL-5 "
        "<reason…>`).")
    nobody = replace(facts, known_issue_types=())
    assert refused(nobody, E.APPROVE, Ctx(LEAD)) == (
        "REL-5 is in testing: its report shows 1 open B bug (limit 0). It needs a passing "
        "report.")


def test_without_a_report_the_tester_is_shown_the_command() -> None:
    """Requested or in testing with no report: who attaches one, and how."""
    for state, where in ((S.REQUESTED, "requested"), (S.TESTING, "in testing")):
        facts = replace(REL5, state=state, report=None)
        assert refused(facts, E.APPROVE, Ctx(LEAD)) == (
            f"REL-5 is {where}: no test report yet. A tester attaches one with "
            "`/release report REL-5 <url> A=n B=n C=n`.")


def test_sign_off_names_the_roles_still_missing() -> None:
    """Ready for sign-off: which roles it waits for."""
    facts = replace(REL5, state=S.READY_FOR_SIGNOFF, approvals={"tech_director": "U0X"})
    assert refused(facts, E.DEPLOY, Ctx(OPS, environment="staging")) == (
        "REL-5 is ready for sign-off: waiting for test_lead. It is approved once that role "
        "approves (`/release approve REL-5`).")
    none = replace(facts, approvals={})
    assert "waiting for tech_director and test_lead. It is approved once they approve" in (
        refused(none, E.VERIFY_PASS, Ctx(TESTER)))


def test_approved_names_the_checklist_and_the_gate() -> None:
    """Approved but held: the open checklist items and the closed gate, then the way on."""
    facts = replace(REL5, state=S.APPROVED, approvals={"tech_director": "a", "test_lead": "b"},
                    checklist_total=3, checklist_done=frozenset({1}), gate_open=False,
                    gate_reason="Sales week", bypass_allowed=False)
    assert refused(facts, E.VERIFY_PASS, Ctx(TESTER)) == (
        "REL-5 is approved and not deployed yet. Checklist items 2, 3 are still open: the "
        "release manager ticks them with `/release check REL-5 2 3` or on the card. Deploys "
        "are closed now: Sales week. It can deploy once these are cleared.")
    clear = replace(facts, checklist_done=frozenset({1, 2, 3}), gate_open=True)
    assert refused(clear, E.CLOSE, Ctx(OPS)) == (
        "REL-5 is approved and not deployed yet. The release manager deploys it with "
        "`/release deploy REL-5`.")
    assert refused(replace(clear, state=S.SCHEDULED), E.CLOSE, Ctx(OPS)).endswith(
        "It deploys at its planned time.")


def test_after_the_deploy_each_state_says_what_comes_next() -> None:
    """Deploying, deployed, deploy failed, rolling back: what people wait for or do."""
    assert refused(replace(REL5, state=S.DEPLOYING), E.APPROVE, Ctx(LEAD)) == (
        "REL-5 is deploying: its pipeline is still running. Wait for the result on the card; "
        "a pipeline cancelled in GitLab counts as a failed deploy.")
    unaccepted = replace(REL5, state=S.DEPLOYED, deployed_envs=frozenset({"staging"}))
    assert refused(unaccepted, E.CLOSE, Ctx(OPS)) == (
        "REL-5 is on staging and not yet accepted there: a tester passes it with "
        "`/release verify REL-5 pass`.")
    staged = replace(unaccepted, accepted_envs=frozenset({"staging"}))
    assert refused(staged, E.CLOSE, Ctx(OPS)) == (
        "REL-5 is deployed to staging; production comes next (`/release deploy REL-5 "
        "production`).")
    live = replace(staged, deployed_envs=frozenset({"staging", "production"}))
    assert refused(live, E.CLOSE, Ctx(OPS)) == (
        "REL-5 is deployed to production but not verified yet. A tester verifies it with "
        "`/release verify REL-5 pass|fail`; the release manager may roll it back.")
    assert refused(replace(REL5, state=S.DEPLOY_FAILED), E.CLOSE, Ctx(OPS)) == (
        "REL-5's last deploy failed. The release manager deploys again with "
        "`/release deploy REL-5`, or rolls it back.")
    assert "rollback pipeline is still running" in refused(
        replace(REL5, state=S.ROLLING_BACK), E.CLOSE, Ctx(OPS))
    observing = replace(REL5, state=S.OBSERVING, observing_until="2026-11-24 12:00 CST")
    assert refused(observing, E.DEPLOY, Ctx(OPS, environment="production")) == (
        "REL-5 is verified and under observation until 2026-11-24 12:00 CST; then it closes "
        "and is handed over to operations.")


def test_a_rejected_release_waits_for_rework() -> None:
    """Rejected is not an end: the refusal says how the rework comes back."""
    rejected = replace(REL5, state=S.REJECTED)
    assert refused(rejected, E.APPROVE, Ctx(LEAD)) == (
        "REL-5 was rejected and is back for rework. A new ref (`/release ref REL-5 <ref>`) or "
        "a new test report restarts testing; `/release cancel REL-5` ends it.")
    assert refused(rejected, E.REJECT, Ctx(DIRECTOR, reason="again")).startswith(
        "REL-5 was rejected")
    assert decide(rejected, E.CHANGE_REF, Ctx(DEV)) is S.TESTING


def test_ended_releases_stay_ended() -> None:
    """Terminal states keep their sentence, with what to do instead."""
    assert refused(replace(REL5, state=S.CLOSED), E.APPROVE, Ctx(LEAD)) == (
        "REL-5 is closed; nothing more can happen to it. Later changes go out as a new release.")
    assert refused(replace(REL5, state=S.ROLLED_BACK), E.DEPLOY, Ctx(OPS)) == (
        "REL-5 is rolled back; nothing more can happen to it. Ship the fix as a new release.")


# --- separated duties ----------------------------------------------------------------------------

def test_the_requester_neither_tests_nor_verifies_their_own_release() -> None:
    """A developer who is also a tester hands their release over to another tester."""
    dev_tester = Actor(DEV.user, frozenset({"tester"}))
    ctx = Ctx(dev_tester, report=GOOD, reason="broken")
    assert refused(replace(BASE, state=S.REQUESTED), E.START_TESTING, ctx) == (
        "You requested this release, so another tester must test it (separated duties).")
    assert refused(replace(BASE, state=S.TESTING), E.REPORT, ctx) == (
        "You requested this release, so another tester must attach its test report "
        "(separated duties).")
    live = replace(BASE, state=S.DEPLOYED, deployed_envs=frozenset({"staging", "production"}))
    for event in (E.VERIFY_PASS, E.VERIFY_FAIL):
        assert refused(live, event, ctx) == (
            "You requested this release, so another tester must verify it (separated duties).")
    assert decide(live, E.VERIFY_PASS, Ctx(TESTER)) is S.VERIFIED


DBA = Actor("U0DBA", frozenset({"dba"}))


def test_a_checklist_item_with_a_role_is_ticked_by_that_role_only() -> None:
    """The DBA ticks the DB item; the release manager the others; neither the other's."""
    facts = replace(BASE, state=S.APPROVED, checklist_total=3, checklist_done=frozenset(),
                    checklist_roles=("release_manager", "release_manager", "dba"))
    assert decide(facts, E.TICK, Ctx(OPS, items=(1, 2))) is S.APPROVED
    assert decide(facts, E.TICK, Ctx(DBA, items=(3,))) is S.APPROVED
    assert refused(facts, E.TICK, Ctx(OPS, items=(1, 3))) == (
        "Only a dba can tick checklist item 3.")
    assert refused(facts, E.TICK, Ctx(DBA, items=(1, 2, 3))) == (
        "Only the release manager can tick checklist items 1, 2.")
    assert refused(facts, E.TICK, Ctx(TESTER, items=(3,))) == (
        "Only the release manager or a dba can do that.")
    done = replace(facts, checklist_done=frozenset({3}))  # the card resends ticked boxes
    assert decide(done, E.TICK, Ctx(OPS, items=(1, 3))) is S.APPROVED


# --- a verdict stays a verdict -------------------------------------------------------------------

def test_a_failed_verification_is_never_passed_later() -> None:
    """After a failure: roll back, or (with nothing to roll back to) a new ref."""
    failed = replace(REL5, state=S.VERIFICATION_FAILED,
                     deployed_envs=frozenset({"staging", "production"}))
    assert refused(failed, E.VERIFY_PASS, Ctx(TESTER)) == (
        "REL-5 failed its online verification, and that verdict stands. Roll it back with "
        "`/release rollback REL-5`, then ship the fix as a new release.")
    assert decide(failed, E.ROLLBACK, Ctx(OPS)) is S.ROLLING_BACK
    assert refused(failed, E.CHANGE_REF, Ctx(DEV)) == (
        "REL-5 failed its online verification and still runs in production: roll it back "
        "first (`/release rollback REL-5`), then ship the fix as a new release.")
    first_ever = replace(failed, rollback_ref=None)
    assert "set the fixed ref with `/release ref REL-5 <ref>`" in refused(
        first_ever, E.VERIFY_PASS, Ctx(TESTER))
    assert decide(first_ever, E.CHANGE_REF, Ctx(DEV)) is S.TESTING
    assert decide(replace(first_ever, report_required=False), E.CHANGE_REF,
                  Ctx(DEV)) is S.READY_FOR_SIGNOFF
    by_ref = replace(failed, rollback_unpinned="v1.0.0")  # recorded with no commit
    assert "recorded only as `v1.0.0`, not as a commit" in refused(by_ref, E.ROLLBACK, Ctx(OPS))
    assert decide(by_ref, E.CHANGE_REF, Ctx(DEV)) is S.TESTING


# --- observation means observation ---------------------------------------------------------------

def test_observation_ends_early_only_by_an_executive_with_a_reason() -> None:
    """The release manager waits; an executive other than the requester gives a reason."""
    observing = replace(REL5, state=S.OBSERVING, observing_until="2026-11-24 12:00 CST")
    assert refused(observing, E.CLOSE, Ctx(OPS)) == (
        "REL-5 is under observation until 2026-11-24 12:00 CST; it closes on its own then. "
        "Only an executive may end observation early, with a reason.")
    assert refused(observing, E.CLOSE, Ctx(CTO)) == (
        "Ending observation early needs a reason: `/release close REL-5 <reason…>`.")
    assert decide(observing, E.CLOSE, Ctx(CTO, reason="quiet night")) is S.CLOSED
    own = Actor(DEV.user, frozenset({"executive"}))
    assert "someone else must decide" in refused(observing, E.CLOSE, Ctx(own, reason="x"))
    assert decide(observing, E.CLOSE, Ctx(SYSTEM)) is S.CLOSED
    over = replace(observing, observing_until=None)
    assert decide(over, E.CLOSE, Ctx(OPS)) is S.CLOSED
    assert "Only the release manager or an executive" in refused(over, E.CLOSE, Ctx(TESTER))


# --- the release type is confirmed at review (B9) ------------------------------------------------

def test_sign_off_and_deploy_wait_for_the_type_confirmed_at_review() -> None:
    """Where the plan is reviewed, an unconfirmed type holds every approval and the deploy."""
    facts, ctx = happy(S.READY_FOR_SIGNOFF, E.APPROVE)
    unconfirmed = replace(facts, type_confirmed=False, release_type="emergency")
    assert refused(unconfirmed, E.APPROVE, ctx) == (
        "REL-5's release type (emergency) is not confirmed yet: the tech_director confirms it "
        "by approving the go-live plan (`/release review REL-5 ok`) or corrects it "
        "(`/release review REL-5 changes --type <type> <why…>`).")
    deploy, dctx = happy(S.APPROVED, E.DEPLOY)
    assert "is not confirmed yet" in refused(replace(deploy, type_confirmed=False), E.DEPLOY,
                                             dctx)
    unreviewed = replace(unconfirmed, plan_reviewer=None)  # no review: nobody confirms it
    assert decide(unreviewed, E.APPROVE, ctx) is S.APPROVED


def test_only_the_plans_reviewer_corrects_the_type_with_a_reason() -> None:
    """Another role, the requester, no reason, the same type or an impossible one: refused."""
    facts, ctx = happy(S.READY_FOR_SIGNOFF, E.RETYPE)
    assert refused(facts, E.RETYPE, replace(ctx, actor=TESTER)) == (
        "Only the go-live plan's reviewer can do that.")
    own = Actor(DEV.user, frozenset({"tech_director"}))
    assert "You requested this release" in refused(facts, E.RETYPE, replace(ctx, actor=own))
    assert refused(facts, E.RETYPE, replace(ctx, reason=" ")) == "Please give a reason."
    assert refused(facts, E.RETYPE, replace(ctx, retype=Retype("standard"))) == (
        "REL-5 is already standard.")
    no_time = Retype("campaign", "A campaign release needs its launch time, and REL-5 has none.")
    assert refused(facts, E.RETYPE, replace(ctx, retype=no_time)) == no_time.problem
    assert refused(replace(facts, plan_reviewer=None), E.RETYPE, ctx) == (
        "This release type's go-live plan needs no review.")


def test_a_type_whose_standard_the_report_fails_goes_back_to_testing() -> None:
    """Corrected to a stricter type, a signed-off release is tested again; else signed again."""
    for state in (S.READY_FOR_SIGNOFF, S.APPROVED, S.SCHEDULED):
        facts, ctx = happy(state, E.RETYPE)
        strict = replace(ctx, retype=Retype("standard", signable=False))
        assert decide(replace(facts, release_type="emergency"), E.RETYPE, strict) is S.TESTING
        assert decide(facts, E.RETYPE, ctx) is S.READY_FOR_SIGNOFF
    assert "settled once deploys start" in refused(
        replace(BASE, state=S.DEPLOYED), E.RETYPE, Ctx(DIRECTOR, reason="x",
                                                      retype=Retype("standard")))


# --- after online verification the executive decides (E5) ----------------------------------------

def test_only_an_executive_decides_and_only_where_known_issues_may_ship() -> None:
    """Who, which types, once, with a reason; never on their own release."""
    facts, ctx = happy(S.VERIFICATION_FAILED, E.DECIDE_FIX)
    for event in (E.DECIDE_FIX, E.DECIDE_ACCEPT):
        assert refused(facts, event, replace(ctx, actor=OPS)) == (
            "Only an executive can do that.")
        assert refused(facts, event, replace(ctx, reason="")) == "Please give a reason."
        assert refused(replace(facts, allow_known_issues=False, release_type="standard"),
                       event, ctx) == (
            "A standard release that fails its online verification is rolled back or fixed "
            "as a new revision; no executive decision is taken for it.")
        assert refused(replace(facts, decided="fix"), event, ctx) == (
            "The executive already decided for REL-5: the problems get fixed.")
        assert "someone else must decide" in refused(replace(facts, requester=CTO.user),
                                                     event, ctx)
        assert "once an online verification has failed" in refused(
            replace(facts, state=S.DEPLOYED), event, ctx)


def test_a_fix_decision_opens_the_way_to_a_new_revision() -> None:
    """Undecided, a failed emergency is rolled back or decided; decided fix, a new ref tests."""
    failed = replace(REL5, state=S.VERIFICATION_FAILED, allow_known_issues=True,
                     deployed_envs=frozenset({"staging", "production"}))
    assert refused(failed, E.CHANGE_REF, Ctx(DEV)) == (
        "REL-5 failed its online verification and still runs in production: an executive "
        "decides first whether its problems get fixed (`/release decide REL-5 fix|accept "
        "<reason…>`), or the release manager rolls it back (`/release rollback REL-5`).")
    assert "An executive decides whether its problems get fixed" in refused(
        failed, E.VERIFY_PASS, Ctx(TESTER))
    fixing = replace(failed, decided="fix")
    assert decide(fixing, E.CHANGE_REF, Ctx(DEV)) is S.TESTING
    assert "The executive decided its problems get fixed" in refused(
        fixing, E.VERIFY_PASS, Ctx(TESTER))
    assert decide(fixing, E.ROLLBACK, Ctx(OPS)) is S.ROLLING_BACK  # rollback stays open
    assert decide(failed, E.DECIDE_ACCEPT, Ctx(CTO, reason="Cosmetic; fix in 1.3")) is (
        S.VERIFIED)
