"""The service functions on a real database: each gate of the process end to end."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import deploys, releases, transition
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Event, Refused, State, reason_sentence
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from storage import queries as q
from tests.fixtures import SALES_WEEK, FakeClock


def who(deps: Deps, user: str):
    """The actor for a user of the test policy."""
    return actor_for(deps.policy, user)


async def new_release(deps: Deps, *, project: str = "payments", type: str = "standard",
                      ref: str = "v1.1.0", **kw: object) -> int:
    """File a release as the developer; its number."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project=project, ref=ref, title="Faster checkout", type=type, **kw))  # type: ignore[arg-type]
    return out.release.id


async def signed_off(deps: Deps, approvers: tuple[str, ...] = (DIRECTOR, LEAD),
                     **kw: object) -> int:
    """A release with a passing report and every sign-off."""
    rid = await new_release(deps, **kw)
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/1", {"A": 0, "B": 0, "C": 2}))
    for user in approvers:
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    return rid


async def state_of(deps: Deps, rid: int) -> State:
    """The stored state."""
    async with deps.sessions() as session:
        return State((await q.get_release(session, rid)).state)


async def test_request_gets_an_id_audit_and_announcement(deps: Deps) -> None:
    """REL-n, state requested, an audit row and an outbox announcement in one go."""
    rid = await new_release(deps)
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        audit = await q.audit_of(session, rid)
        backlog = await q.outbox_backlog(session)
    assert release.rel_id == f"REL-{rid}" and release.state == "requested"
    assert release.checklist == ["Database backup taken", "Rollback plan reviewed"]
    assert [(a.action, a.from_state, a.to_state) for a in audit] == [
        ("request", None, "requested")]
    assert backlog == 1


async def test_bad_request_is_refused_plainly(deps: Deps) -> None:
    """Unknown project and type, and an empty title, are named together."""
    with pytest.raises(Refused) as err:
        await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
            project="nope", ref="main", title=" ", type="weekly"))
    assert "nope" in err.value.sentence and "weekly" in err.value.sentence
    assert "title" in err.value.sentence


def test_request_problems_name_their_fields(deps: Deps) -> None:
    """Each problem sits under its field, so a form can show it there; a form needs a plan."""
    new = NewRelease(project="nope", ref="a b", title=" ", type="weekly",
                     scheduled_at=deps.clock() - timedelta(minutes=1))
    problems = releases.request_problems(new, policy=deps.policy, now=deps.clock(),
                                         rollback_plan_required=True)
    assert list(problems) == ["project", "type", "ref", "title", "scheduled_at", "rollback_plan"]
    assert problems["ref"] == releases.ref_problem("a b")
    assert "rollback_plan" not in releases.request_problems(new, policy=deps.policy,
                                                            now=deps.clock())


async def test_a_new_ref_follows_the_request_rule(deps: Deps) -> None:
    """`ref` is refused with the very sentence a request with that ref gets."""
    rid = await new_release(deps)
    with pytest.raises(Refused) as err:
        await releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v1 .2")
    assert err.value.sentence == releases.ref_problem("v1 .2")


async def test_checking_an_event_changes_nothing(deps: Deps) -> None:
    """A button asks the table before opening its form; the reason is asked afterwards."""
    rid = await new_release(deps)
    with pytest.raises(Refused, match="Only an approver of this release or an executive"):
        await transition.check_event(deps, release_id=rid, event=Event.REJECT,
                                     actor=who(deps, TESTER))
    await transition.check_event(deps, release_id=rid, event=Event.REJECT,
                                 actor=who(deps, DIRECTOR))
    assert await state_of(deps, rid) is State.REQUESTED
    assert reason_sentence("  ") == "Please give a reason." and reason_sentence("x") is None


async def test_full_standard_path(deps: Deps, clock: FakeClock) -> None:
    """Request → report → two sign-offs → checklist → staging → production → verify → close."""
    rid = await signed_off(deps)
    assert await state_of(deps, rid) is State.APPROVED
    ops = who(deps, OPS)
    with pytest.raises(Refused, match="Checklist items still open: 1, 2"):
        await deploys.start_deploy(deps, release_id=rid, actor=ops)
    await releases.tick(deps, release_id=rid, actor=ops, items=(1, 2))
    for env in ("staging", "production"):
        start = await deploys.start_deploy(deps, release_id=rid, actor=ops)
        assert start.deployment.environment == env
        await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=7,
                                      url="https://gl/p/7")
        clock.advance(minutes=3)
        done = await deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                           status="success")
        assert done.to_state is State.DEPLOYED and done.detail["seconds"] == 180
    out = await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    assert out.to_state is State.VERIFIED
    assert await state_of(deps, rid) is State.OBSERVING
    closed = await deploys.close(deps, release_id=rid, actor=ops)
    assert closed.to_state is State.CLOSED


async def test_failing_report_blocks_and_emergency_executive_accepts(deps: Deps) -> None:
    """A report over the standard keeps testing; only an emergency's executive lets it on."""
    rid = await new_release(deps)
    out = await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                  report=ReportInput("https://ci/r/2", {"A": 1}))
    assert out.to_state is State.TESTING and out.detail["failures"] == ["1 open A bugs (limit 0)"]
    with pytest.raises(Refused, match="can't ship with open bugs"):
        await releases.accept_risk(deps, release_id=rid, actor=who(deps, CTO), reason="outage")
    emergency = await new_release(deps, type="emergency")
    await releases.attach_report(deps, release_id=emergency, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/3", {"A": 1}))
    with pytest.raises(Refused, match="Please give a reason"):
        await releases.accept_risk(deps, release_id=emergency, actor=who(deps, CTO), reason="")
    out = await releases.accept_risk(deps, release_id=emergency, actor=who(deps, CTO),
                                reason="payments outage")
    assert out.to_state is State.READY_FOR_SIGNOFF
    async with deps.sessions() as session:
        audit = await q.audit_of(session, emergency)
    assert audit[-1].actor == CTO and audit[-1].detail["reason"] == "payments outage"


async def test_four_eyes_on_the_database(deps: Deps) -> None:
    """The requester's approval is refused even when they hold the role."""
    out = await releases.request_release(deps, actor=who(deps, LEAD), new=NewRelease(
        project="web", ref="main", title="Copy fix", type="hotfix"))
    assert out.to_state is State.REQUESTED
    await releases.attach_report(deps, release_id=out.release.id, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/4", {}))
    with pytest.raises(Refused, match="four eyes"):
        await releases.approve(deps, release_id=out.release.id, actor=who(deps, LEAD))


async def test_new_report_or_ref_voids_approvals(deps: Deps) -> None:
    """After an approval, a new report or ref means signing again."""
    rid = await new_release(deps)
    tester = who(deps, TESTER)
    await releases.attach_report(deps, release_id=rid, actor=tester,
                            report=ReportInput("https://ci/r/5", {}))
    await releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR))
    out = await releases.attach_report(deps, release_id=rid, actor=tester,
                                  report=ReportInput("https://ci/r/6", {"C": 1}))
    assert out.detail["voided_approvals"] == 1
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    assert await state_of(deps, rid) is State.READY_FOR_SIGNOFF  # director must sign again
    await releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR))
    assert await state_of(deps, rid) is State.APPROVED
    out = await releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v1.1.1")
    assert out.to_state is State.TESTING and out.detail["voided_approvals"] == 2
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        assert await q.approvals_of(session, release) == []
        assert await q.latest_report(session, release) is None


async def test_freeze_refuses_with_reason_and_executive_override(deps: Deps,
                                                                 clock: FakeClock) -> None:
    """In a freeze, deploy names the freeze; an emergency override by the executive opens it."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, (CTO, DIRECTOR), project="web", type="emergency")
    ops = who(deps, OPS)
    with pytest.raises(Refused, match="Sales week"):
        await deploys.start_deploy(deps, release_id=rid, actor=ops)
    with pytest.raises(Refused, match="executive"):
        await releases.override_gate(deps, release_id=rid, actor=ops, reason="x")
    await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason="hotfix outage")
    start = await deploys.start_deploy(deps, release_id=rid, actor=ops)
    assert start.outcome.to_state is State.DEPLOYING


async def test_standard_release_cannot_override_a_freeze(deps: Deps) -> None:
    """Only types whose policy allows it may bypass."""
    rid = await signed_off(deps, project="web")
    with pytest.raises(Refused, match="can't bypass"):
        await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason="please")


async def test_cancel_before_deploy_only(deps: Deps) -> None:
    """Cancel works before deploy and is refused after."""
    rid = await new_release(deps)
    out = await releases.cancel(deps, release_id=rid, actor=who(deps, DEV), reason="not needed")
    assert out.to_state is State.CANCELLED
    rid = await signed_off(deps, project="web")
    await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    with pytest.raises(Refused, match="only be cancelled before it is deployed"):
        await releases.cancel(deps, release_id=rid, actor=who(deps, DEV))


async def test_deploy_failure_then_rollback_to_recorded_ref(deps: Deps) -> None:
    """The ref live before is recorded at deploy and is where rollback goes."""
    ops = who(deps, OPS)
    first = await signed_off(deps, project="web", ref="v1.0.0")
    start = await deploys.start_deploy(deps, release_id=first, actor=ops)
    assert start.deployment.previous_ref is None
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    second = await signed_off(deps, project="web", ref="v1.1.0")
    start = await deploys.start_deploy(deps, release_id=second, actor=ops)
    assert start.deployment.previous_ref == "v1.0.0"
    failed = await deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                         status="failed", failed_job="deploy:production")
    assert failed.to_state is State.DEPLOY_FAILED and failed.detail["failed_job"]
    again = await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="failed")
    assert again.changed is False
    back = await deploys.start_rollback(deps, release_id=second, actor=ops, reason="500s")
    assert back.deployment.ref == "v1.0.0" and back.deployment.rollback
    done = await deploys.finish_deploy(deps, deployment_id=back.deployment.id, status="success")
    assert done.to_state is State.ROLLED_BACK


async def test_one_deploy_per_environment(deps: Deps) -> None:
    """A second release can't deploy the same project's environment while one runs."""
    ops = who(deps, OPS)
    a = await signed_off(deps, project="web")
    b = await signed_off(deps, project="web")
    await deploys.start_deploy(deps, release_id=a, actor=ops)
    with pytest.raises(Refused, match=f"REL-{a} is deploying"):
        await deploys.start_deploy(deps, release_id=b, actor=ops)
    assert await state_of(deps, b) is State.APPROVED


async def test_scheduled_release_waits(deps: Deps, clock: FakeClock) -> None:
    """A release with a planned time is scheduled once signed off."""
    rid = await signed_off(deps, scheduled_at=clock.now + timedelta(days=1))
    assert await state_of(deps, rid) is State.SCHEDULED


async def test_verification_fail_then_rollback(deps: Deps) -> None:
    """A failed online check leads to rollback."""
    ops = who(deps, OPS)
    first = await signed_off(deps, project="web", ref="v1.0.0")
    start = await deploys.start_deploy(deps, release_id=first, actor=ops)
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    await deploys.verify(deps, release_id=first, actor=who(deps, TESTER), passed=True)
    rid = await signed_off(deps, project="web", ref="v2.0.0")
    start = await deploys.start_deploy(deps, release_id=rid, actor=ops)
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    with pytest.raises(Refused, match="reason"):
        await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=False)
    out = await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=False,
                               note="login broken")
    assert out.to_state is State.VERIFICATION_FAILED
    back = await deploys.start_rollback(deps, release_id=rid, actor=ops)
    assert back.deployment.ref == "v1.0.0"


async def test_unknown_release(deps: Deps) -> None:
    """A missing ID is a plain sentence."""
    with pytest.raises(Refused, match="There is no release REL-999"):
        await releases.approve(deps, release_id=999, actor=who(deps, LEAD))


def test_parse_release_id() -> None:
    """REL-42, rel42 and 42 all work; nonsense is refused."""
    assert releases.parse_release_id("REL-42") == releases.parse_release_id("rel42") == 42
    assert releases.parse_release_id(" 42 ") == 42
    with pytest.raises(Refused, match="REL-42"):
        releases.parse_release_id("banana")
