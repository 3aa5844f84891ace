"""The services before deploy on a real database: request, report, sign-off, ref, cancel."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import deploys, releases, transition
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Event, Refused, State, reason_sentence
from emulators.gitlab import GitLabEmulator
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from storage import queries as q
from tests.fixtures import new_release, signed_off, state_of, tick_all, who


async def test_request_gets_an_id_audit_and_announcement(deps: Deps) -> None:
    """REL-n, state requested, an audit row and an outbox announcement in one go."""
    rid = await new_release(deps)
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        audit = await q.audit_of(session, rid)
        backlog = await q.outbox_backlog(session)
    assert release.rel_id == f"REL-{rid}" and release.state == "requested"
    assert release.checklist == ["Database backup taken", "Rollback plan reviewed",
                                 {"item": "DB scripts run in advance", "role": "dba"}]
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
    """Each problem sits under its field, so a form can show it there; an empty plan is none."""
    new = NewRelease(project="nope", ref="a b", title=" ", type="weekly",
                     scheduled_at=deps.clock() - timedelta(minutes=1),
                     plan={"impact": "x" * 4001})
    problems = releases.request_problems(new, policy=deps.policy, now=deps.clock())
    assert list(problems) == ["project", "type", "ref", "title", "scheduled_at", "plan_impact"]
    assert problems["ref"] == releases.ref_problem("a b")
    assert not releases.request_problems(NewRelease("web", "v1", "Empty plan"),
                                         policy=deps.policy, now=deps.clock())


def test_an_emergency_names_its_ground_and_reason(deps: Deps) -> None:
    """The seeds' grounds only, with a reason; other types take no ground."""
    def problems(**kw: str) -> dict[str, str]:
        return releases.request_problems(NewRelease("web", "v1", "Outage", **kw),
                                         policy=deps.policy, now=deps.clock())

    assert problems(type="emergency") == {
        "ground": "An emergency release needs its ground: --ground live_bug (a serious bug is "
                  "live), urgent_revision (an urgent revision), strategic (an urgent strategic "
                  "deployment).",
        "reason": 'An emergency release needs its reason: --reason "what is broken or urgent".'}
    assert list(problems(type="emergency", ground="boredom", reason="why not")) == ["ground"]
    assert "Unknown ground 'boredom'" in problems(type="emergency", ground="boredom")["ground"]
    assert problems(type="emergency", ground="strategic", reason="Launch with the bank") == {}
    assert problems(ground="live_bug") == {
        "ground": "Only an emergency release names a ground; this is standard."}
    assert "reason" in problems(type="emergency", ground="live_bug", reason="x" * 4001)


async def test_an_emergency_keeps_its_ground_and_the_audit_says_it(deps: Deps) -> None:
    """Ground and reason are stored, audited and announced with the request."""
    rid = await new_release(deps, type="emergency", ground="urgent_revision",
                            reason="The bank changes its API on Friday")
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        audit = await q.audit_of(session, rid)
    assert (release.ground, release.ground_reason) == (
        "urgent_revision", "The bank changes its API on Friday")
    assert audit[0].detail["ground"] == "urgent_revision"
    assert audit[0].detail["reason"] == "The bank changes its API on Friday"


async def test_a_sole_tech_director_requester_is_told_at_once(deps: Deps) -> None:
    """Only the requester holds tech_director: the request says nobody can sign it."""
    out = await releases.request_release(deps, actor=who(deps, DIRECTOR), new=NewRelease(
        project="web", ref="v1.1.0", title="Director's own", plan={"rollback": "redeploy"}))
    assert out.detail["sole_signers"] == ["tech_director"]
    deps.policy = deps.policy.model_copy(update={"roles": {
        **deps.policy.roles, "tech_director": [DIRECTOR, CTO]}})
    out = await releases.request_release(deps, actor=who(deps, DIRECTOR), new=NewRelease(
        project="web", ref="v1.1.0", title="Director's own", plan={"rollback": "redeploy"}))
    assert "sole_signers" not in out.detail
    rid = out.release.id
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=ReportInput("https://ci/r/1", {}))
    for user in (CTO, LEAD):  # another holder signs for tech_director
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    assert await state_of(deps, rid) == "approved"


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


async def test_failing_report_blocks_and_emergency_executive_accepts(deps: Deps) -> None:
    """A report over the standard keeps testing; only an emergency's executive lets it on."""
    rid = await new_release(deps)
    out = await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                  report=ReportInput("https://ci/r/2", {"A": 1}))
    assert out.to_state is State.TESTING and out.detail["failures"] == ["1 open A bug (limit 0)"]
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


async def test_a_new_ref_reads_the_release_once_before_gitlab(
        deps: Deps, gitlab: GitLabEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check and the component the ref is for come from one read, then GitLab is asked."""
    rid = await new_release(deps)
    reads: list[int] = []
    read_release = q.get_release

    async def counted(session: object, release_id: int) -> object:
        reads.append(release_id)
        return await read_release(session, release_id)  # type: ignore[arg-type]

    monkeypatch.setattr(q, "get_release", counted)
    out = await releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v1.1.1")
    assert reads == [rid] and out.detail["ref"] == "v1.1.1"
    with pytest.raises(Refused, match="no release REL-999"):
        await releases.change_ref(deps, release_id=999, actor=who(deps, DEV), ref="v1.1.1")


async def test_cancel_until_production_starts(deps: Deps) -> None:
    """Cancel works before deploy and after staging, and is refused once production began."""
    rid = await new_release(deps)
    out = await releases.cancel(deps, release_id=rid, actor=who(deps, DEV), reason="not needed")
    assert out.to_state is State.CANCELLED
    ops = who(deps, OPS)
    rid = await signed_off(deps)
    await tick_all(deps, rid)
    staged = await deploys.start_deploy(deps, release_id=rid, actor=ops)
    await deploys.finish_deploy(deps, deployment_id=staged.deployment.id, status="success")
    out = await releases.cancel(deps, release_id=rid, actor=who(deps, DEV), reason="too late")
    assert out.to_state is State.CANCELLED
    rid = await signed_off(deps, project="web")
    await deploys.start_deploy(deps, release_id=rid, actor=ops)
    with pytest.raises(Refused, match="production deploy has started, so it can't be "
                                      "cancelled: once it ends"):
        await releases.cancel(deps, release_id=rid, actor=who(deps, DEV))


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


async def test_a_too_long_reason_is_refused_naming_the_limit(deps: Deps) -> None:
    """A reason longer than its column: the limit named, nothing changed (forms and API too)."""
    rid = await new_release(deps)
    with pytest.raises(Refused, match=r"The reason is too long \(5000 characters; at most 4000\)"):
        await releases.reject(deps, release_id=rid, actor=who(deps, CTO), reason="x" * 5000)
    assert await state_of(deps, rid) is State.REQUESTED


async def pinned(deps: Deps, rid: int) -> str | None:
    """The commit the release's current revision is pinned to."""
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
    return release.pinned_sha if release.pinned_revision == release.revision else None


async def test_every_way_into_sign_off_pins_the_commit(deps: Deps, gitlab: GitLabEmulator) -> None:
    """A passing report, an executive's acceptance and a type with no report all pin what the
    ref names in GitLab then; a full SHA typed as the ref is pinned as it is, once GitLab shows
    the project has it."""
    head = gitlab.resolve(gitlab.project("acme/payments"), "release")
    rid = await new_release(deps, ref="release")
    assert await pinned(deps, rid) is None
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=ReportInput("https://ci/r/1", {}))
    assert await pinned(deps, rid) == head.sha
    emergency = await new_release(deps, type="emergency", ref="release")
    await releases.attach_report(deps, release_id=emergency, actor=who(deps, TESTER),
                                 report=ReportInput("https://ci/r/2", {"B": 1}))
    assert await pinned(deps, emergency) is None
    await releases.accept_risk(deps, release_id=emergency, actor=who(deps, CTO),
                               reason="payouts are down")
    assert await pinned(deps, emergency) == head.sha
    deps.policy = sample_policy(policies={"hotfix": {"require_test_report": False}})
    hotfix = await new_release(deps, type="hotfix", ref="release")
    assert await state_of(deps, hotfix) is State.READY_FOR_SIGNOFF
    assert await pinned(deps, hotfix) == head.sha
    old = gitlab.resolve(gitlab.project("acme/payments"), "v1.0.0")
    gitlab.reset_calls()
    by_sha = await new_release(deps, type="hotfix", ref=old.sha)
    assert await pinned(deps, by_sha) == old.sha
    # looked up when requested, then pinned when it reaches sign-off
    assert gitlab.count("/projects/1/repository/commits") == 2
    with pytest.raises(Refused, match=r"GitLab has no ref `f{40}` in payments"):
        await new_release(deps, type="hotfix", ref="f" * 40)  # no such commit: nothing filed
