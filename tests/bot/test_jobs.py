"""Time travel: windows, scheduled deploys, reminders, escalation, observation close, merge-back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta

import pytest

from bot import deploys, golive, releases
from bot.deploys import Deployer
from bot.gitlab import GitLabClient
from bot.jobs import DIGEST_ITEMS, Jobs
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.gitlab import GitLabEmulator
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.notes_text import notes_mrkdwn
from storage import queries as q
from tests.fixtures import (
    ROLLBACK_STEPS,
    SALES_WEEK,
    FakeClock,
    new_release,
    signed_off,
    tick_all,
    who,
)


@pytest.fixture
def jobs(deps: Deps, gitlab: GitLabEmulator) -> Jobs:
    """The scheduled jobs over the test's database, clock and GitLab."""
    return Jobs(deps, Deployer(deps, GitLabClient(gitlab.url, "glpat-test")), notes_mrkdwn)


async def notices(deps: Deps, kind: str | None = None) -> list[dict]:
    """Undelivered direct messages (notify and ask rows)."""
    async with deps.sessions() as session:
        rows = await q.pending_outbox(session, now=deps.clock(), limit=10_000)
    return [{"kind": m.kind, **m.payload} for m in rows if m.kind in ("notify", "ask")
            and (kind is None or m.payload.get("notice", m.kind) == kind)]


async def digests(deps: Deps) -> list[dict]:
    """Queued reminder digests, oldest first."""
    async with deps.sessions() as session:
        rows = await q.pending_outbox(session, now=deps.clock(), limit=10_000)
    return [m.payload for m in rows if m.kind == "digest"]


def waits(digest: dict) -> list[tuple[int, str]]:
    """(release, what it waits for) of each release a digest names."""
    return [(i["release"], i["waits"]) for i in digest["items"]]


async def state(deps: Deps, rid: int) -> State:
    """The stored state."""
    async with deps.sessions() as session:
        return State((await q.get_release(session, rid)).state)


async def test_deploy_outside_windows_names_the_next_allowed_time(deps: Deps,
                                                                  clock: FakeClock) -> None:
    """Tue/Thu 20:00–23:00 Shanghai; on Monday noon the refusal says when it may go."""
    deps.policy = sample_policy(windows=[{"days": ["tue", "thu"], "start": "20:00",
                                          "end": "23:00"}])
    rid = await signed_off(deps, project="web")
    with pytest.raises(Refused) as err:
        await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert "outside the release windows" in err.value.sentence
    assert "The next allowed time is 2026-11-24 20:00 CST." in err.value.sentence
    clock.now = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)  # Tuesday 20:30 in Shanghai
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert start.outcome.to_state is State.DEPLOYING


async def test_window_across_midnight_counts_from_its_start_day(deps: Deps,
                                                                clock: FakeClock) -> None:
    """A Sunday 22:00–02:00 window still holds at Monday 01:00, not at Monday 22:00."""
    deps.policy = sample_policy(windows=[{"days": ["sun"], "start": "22:00", "end": "02:00"}])
    rid = await signed_off(deps, project="web")
    clock.now = datetime(2026, 11, 22, 17, 0, tzinfo=UTC)  # Monday 01:00 Shanghai
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert start.outcome.to_state is State.DEPLOYING
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="failed")
    clock.now = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # Monday 22:00 Shanghai
    with pytest.raises(Refused, match="2026-11-29 22:00 CST"):
        await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))


async def test_scheduled_deploy_held_then_released(deps: Deps, jobs: Jobs, clock: FakeClock,
                                                   gitlab: GitLabEmulator) -> None:
    """At its time it is held for the checklist (told once); once ticked, it deploys itself."""
    at = clock.now + timedelta(hours=2)
    rid = await signed_off(deps, scheduled_at=at, type="campaign")
    assert await state(deps, rid) is State.SCHEDULED
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert await jobs.deploy_due() == 0 and await notices(deps, "held") == []
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 0
    assert await jobs.deploy_due() == 0
    held = await notices(deps, "held")
    assert len(held) == 1 and held[0]["users"] == [DEV] and held[0]["roles"] == [
        "release_manager"]
    assert "Checklist items 1, 2, 3 are still open" in held[0]["detail"]["reason"]
    async with deps.sessions() as session:
        assert (await q.get_release(session, rid)).hold_reason
    await tick_all(deps, rid)
    assert await jobs.deploy_due() == 1
    assert await state(deps, rid) is State.DEPLOYING
    assert [p.ref for p in gitlab.pipelines.values()] == [f"release/REL-{rid}"]
    assert [p.sha for p in gitlab.pipelines.values()] == [gitlab.resolve(
        gitlab.project("acme/payments"), "v1.1.0").sha]


async def test_an_unarmed_release_waits_at_its_time_and_asks_once(
        deps: Deps, jobs: Jobs, clock: FakeClock, gitlab: GitLabEmulator) -> None:
    """Unarmed, nothing deploys; the release manager is asked once an interval; armed, it goes."""
    rid = await signed_off(deps, project="web", scheduled_at=clock.now + timedelta(hours=2),
                           type="campaign")
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 0 and await jobs.deploy_due() == 0
    [asked] = await notices(deps, "arm")
    assert asked["roles"] == ["release_manager"] and asked["detail"] == {
        "when": "2026-11-23 14:00 CST"}
    assert await notices(deps, "held") == [] and gitlab.pipelines == {}
    clock.advance(hours=deps.policy.reminders.interval_hours)
    assert await jobs.deploy_due() == 0 and len(await notices(deps, "arm")) == 2
    with pytest.raises(Refused, match="release manager"):
        await releases.arm(deps, release_id=rid, actor=who(deps, DEV))
    out = await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert out.detail["at"] == clock.now.isoformat() and out.to_state is State.SCHEDULED
    with pytest.raises(Refused, match=f"REL-{rid} is already armed."):
        await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert await jobs.deploy_due() == 1 and await state(deps, rid) is State.DEPLOYING
    async with deps.sessions() as session:
        trail = await q.audit_of(session, rid)
    arming = next(a for a in trail if a.action == "arm")
    assert (arming.actor, arming.at) == (OPS, clock.now)


async def test_armed_in_a_freeze_it_goes_when_the_freeze_ends(
        deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """Held by a freeze, an armed release deploys itself once the freeze is over."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, project="web", scheduled_at=clock.now + timedelta(hours=2),
                           type="campaign")
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 0
    [held] = await notices(deps, "held")
    assert "Sales week" in held["detail"]["reason"]
    clock.now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)  # 10:00 the day after the freeze
    assert await jobs.deploy_due() == 1 and await state(deps, rid) is State.DEPLOYING


async def test_held_only_by_a_freeze_arming_plans_the_next_allowed_time(
        deps: Deps, jobs: Jobs, clock: FakeClock, gitlab: GitLabEmulator) -> None:
    """No planned time, refused for a freeze: arming plans it for the time the refusal names,
    in one transaction with its audit row; an extended freeze holds it; then it goes once."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, project="web")
    with pytest.raises(Refused, match="The next allowed time is 2026-12-01 00:00 CST"):
        await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    out = await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert out.detail["when"] == "2026-12-01 00:00 CST" and "Sales week" in out.detail["held"]
    async with deps.sessions() as session:
        rel = await q.get_release(session, rid)
        arming = next(a for a in await q.audit_of(session, rid) if a.action == "arm")
    assert rel.scheduled_at == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert (rel.armed_by, arming.actor) == (OPS, OPS)
    with pytest.raises(Refused, match="already armed"):
        await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert await jobs.deploy_due() == 0 and await notices(deps, "held") == []

    deps.policy = sample_policy(freezes=[{**SALES_WEEK, "to": date(2026, 12, 2)}])
    clock.now = datetime(2026, 11, 30, 16, 0, tzinfo=UTC)  # the planned time, still frozen
    assert await jobs.deploy_due() == 0 and await jobs.deploy_due() == 0
    [held] = await notices(deps, "held")
    assert "The next allowed time is 2026-12-03 00:00 CST." in held["detail"]["reason"]
    clock.now = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)  # the extended freeze is over
    assert await asyncio.gather(jobs.deploy_due(), jobs.deploy_due()) in ([1, 0], [0, 1])
    assert await jobs.deploy_due() == 0
    assert await state(deps, rid) is State.DEPLOYING and len(gitlab.pipelines) == 1


async def _new_ref(deps: Deps, rid: int) -> None:
    await releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v1.2.0")


async def _new_report(deps: Deps, rid: int) -> None:
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=ReportInput("https://ci/r/2", {}))


async def _new_plan(deps: Deps, rid: int) -> None:
    await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV),
                           changes={"rollback": "Redeploy v1.0.0 by hand"})


@pytest.mark.parametrize("revise", [_new_ref, _new_report, _new_plan])
async def test_a_new_revision_takes_back_the_time_arming_planned(
        deps: Deps, jobs: Jobs, clock: FakeClock, revise: Callable[[Deps, int], Awaitable[None]]
        ) -> None:
    """Arming in a freeze planned the next allowed time; voiding the arming unplans it, in the
    same audit row, so it never falls due and nobody is asked to arm it."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, project="web")
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    await revise(deps, rid)
    async with deps.sessions() as session:
        rel = await q.get_release(session, rid)
        revised = (await q.audit_of(session, rid))[-1]
    assert rel.scheduled_at is None and rel.armed_revision == rel.revision - 1
    assert revised.detail["unplanned"] == "2026-12-01 00:00 CST"
    clock.now = datetime(2026, 12, 2, 16, 0, tzinfo=UTC)
    assert await jobs.deploy_due() == 0 and await notices(deps, "arm") == []


async def test_a_new_revision_keeps_the_time_the_requester_chose(deps: Deps) -> None:
    """A time given with --at is the requester's: voiding the arming leaves it planned."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    at = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)  # in the freeze: held then, yet chosen
    rid = await signed_off(deps, project="web", scheduled_at=at)
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    await _new_ref(deps, rid)
    async with deps.sessions() as session:
        rel = await q.get_release(session, rid)
        revised = (await q.audit_of(session, rid))[-1]
    assert rel.scheduled_at == at and "unplanned" not in revised.detail


async def test_with_deploys_open_an_unplanned_release_has_nothing_to_arm(deps: Deps) -> None:
    """Nothing holds it: it is deployed from the card, not armed."""
    rid = await signed_off(deps, project="web")
    with pytest.raises(Refused, match="has no planned time, so there is nothing to arm"):
        await releases.arm(deps, release_id=rid, actor=who(deps, OPS))


async def test_a_new_revision_voids_arming(deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """A new ref needs testing, sign-off and arming again; arming waits for sign-off."""
    rid = await signed_off(deps, project="web", scheduled_at=clock.now + timedelta(hours=2),
                           type="campaign")
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    await releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v1.2.0")
    with pytest.raises(Refused, match="armed once it is signed off; this one is testing"):
        await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=ReportInput("https://ci/r/2", {}))
    for user in (DIRECTOR, LEAD):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    assert await state(deps, rid) is State.SCHEDULED
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 0 and len(await notices(deps, "arm")) == 1
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    assert await jobs.deploy_due() == 1


async def test_the_scheduler_never_promotes_past_an_unaccepted_environment(
        deps: Deps, jobs: Jobs, clock: FakeClock, gitlab: GitLabEmulator) -> None:
    """Staging goes on schedule; production waits for a tester's pass there, then goes too."""
    rid = await signed_off(deps, scheduled_at=clock.now + timedelta(hours=2), type="campaign")
    await tick_all(deps, rid)
    await releases.arm(deps, release_id=rid, actor=who(deps, OPS))
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 1
    async with deps.sessions() as session:
        [staging] = await q.deployments_of(session, rid)
    await deploys.finish_deploy(deps, deployment_id=staging.id, status="success")
    [asked] = await notices(deps, "accept")
    assert asked["roles"] == ["tester"] and asked["detail"] == {"environment": "staging"}
    for _ in range(3):
        clock.advance(minutes=30)
        assert await jobs.deploy_due() == 0
    assert len(gitlab.pipelines) == 1 and await state(deps, rid) is State.DEPLOYED
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    assert await jobs.deploy_due() == 1
    async with deps.sessions() as session:
        assert [d.environment for d in await q.deployments_of(session, rid)] == [
            "staging", "production"]


async def test_campaign_needs_its_time(deps: Deps) -> None:
    """A campaign without --at is refused with the way to give it."""
    with pytest.raises(Refused, match="campaign release needs its launch time"):
        await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
            project="web", ref="v1.1.0", title="Sale", type="campaign"))


async def test_approval_reminder_then_escalation_each_once(deps: Deps, jobs: Jobs,
                                                          clock: FakeClock) -> None:
    """After 4 h the missing approver gets a digest, again each 4 h; after 24 h the release
    manager's digest says so too, and the approver's still names it."""
    rid = await signed_off(deps, approvers=(DIRECTOR,))
    clock.advance(hours=3)
    assert await jobs.remind() == 0
    clock.advance(hours=1)
    assert await jobs.remind() == 1
    assert await jobs.remind() == 0
    clock.advance(hours=3)
    assert await jobs.remind() == 0  # within the 4 h interval
    clock.advance(hours=1)
    assert await jobs.remind() == 1  # 8 h: reminded again
    assert [(d["user"], waits(d)) for d in await digests(deps)] == [
        (LEAD, [(rid, "approval")]), (LEAD, [(rid, "approval")])]
    clock.advance(hours=16)
    assert await jobs.remind() == 2
    *_, still, escalation = sorted(await digests(deps), key=lambda d: d["user"] == OPS)
    assert still["user"] == LEAD and waits(still) == [(rid, "approval")]
    assert escalation["user"] == OPS and waits(escalation) == [(rid, "escalation")]
    assert escalation["items"][0]["detail"]["waiting_on"] == ["test_lead"]
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    clock.advance(hours=48)
    assert await jobs.remind() == 0  # answered: quiet


async def test_report_reminder_goes_to_testers(deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """A release in test without a report for 24 h: each tester's digest names it."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="v1.1.0", title="Copy"))
    clock.advance(hours=24)
    assert await jobs.remind() == 2  # the tester and the test lead, who tests too
    assert await jobs.remind() == 0
    assert {d["user"] for d in await digests(deps)} == {TESTER, LEAD}
    await releases.attach_report(deps, release_id=out.release.id, actor=who(deps, TESTER),
                            report=ReportInput("https://r/1", {}))
    clock.advance(hours=24)
    await jobs.remind()  # now it waits on sign-off (24 h: escalated), not on testers
    rid = out.release.id
    assert sorted((d["user"], waits(d)) for d in (await digests(deps))[2:]) == sorted([
        (OPS, [(rid, "escalation")]), (DIRECTOR, [(rid, "approval")]),
        (LEAD, [(rid, "approval")])])


async def test_a_tester_who_requested_is_not_reminded_to_test_it(deps: Deps, jobs: Jobs,
                                                                  clock: FakeClock) -> None:
    """The test lead, a tester too, filed it: only the other tester's digest names it."""
    await releases.request_release(deps, actor=who(deps, LEAD), new=NewRelease(
        project="web", ref="v1.1.0", title="Lead's own"))
    clock.advance(hours=24)
    assert await jobs.remind() == 1
    assert [d["user"] for d in await digests(deps)] == [TESTER]


async def test_verification_reminder_then_rollback_prompt(deps: Deps, jobs: Jobs,
                                                         clock: FakeClock) -> None:
    """Deployed but unverified: testers after 60 min, the release manager after 240 min."""
    rid = await signed_off(deps, project="web")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    clock.advance(minutes=59)
    assert await jobs.remind() == 0
    clock.advance(minutes=1)
    assert await jobs.remind() == 2
    assert {(d["user"], w) for d in await digests(deps) for w in waits(d)} == {
        (TESTER, (rid, "verify")), (LEAD, (rid, "verify"))}
    clock.advance(minutes=180)
    assert await jobs.remind() == 1
    last = (await digests(deps))[-1]
    assert last["user"] == OPS and waits(last) == [(rid, "verify_deadline")]
    assert await jobs.remind() == 0
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    clock.advance(hours=5)
    assert await jobs.remind() == 0


async def test_a_tester_with_many_waiting_releases_gets_one_digest_per_interval(
        deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """45 releases wait for a report: one digest per tester each 4 h, naming 40, counting 45."""
    rids = [await new_release(deps, project="web") for _ in range(DIGEST_ITEMS + 5)]
    clock.advance(hours=24)
    assert await jobs.remind() == 2
    for _ in range(3):
        assert await jobs.remind() == 0
    tester = next(d for d in await digests(deps) if d["user"] == TESTER)
    assert tester["total"] == len(rids) and waits(tester) == [
        (rid, "report") for rid in rids[:DIGEST_ITEMS]]
    clock.advance(hours=3, minutes=59)
    assert await jobs.remind() == 0
    clock.advance(minutes=1)
    assert await jobs.remind() == 2
    assert sorted(d["user"] for d in await digests(deps)) == sorted([LEAD, LEAD, TESTER, TESTER])


async def test_an_approvers_digest_names_only_what_they_may_sign(deps: Deps, jobs: Jobs,
                                                                 clock: FakeClock) -> None:
    """The tech director filed one release: their digest names only the other one."""
    theirs = await releases.request_release(deps, actor=who(deps, DIRECTOR), new=NewRelease(
        project="web", ref="v1.1.0", title="Director's own"))
    other = await new_release(deps, project="web")
    for rid in (theirs.release.id, other):
        await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                     report=ReportInput("https://ci/r/1", {}))
    clock.advance(hours=4)
    assert await jobs.remind() == 2
    by_user = {d["user"]: waits(d) for d in await digests(deps)}
    assert by_user == {DIRECTOR: [(other, "approval")],
                       LEAD: [(theirs.release.id, "approval"), (other, "approval")]}


async def test_the_release_managers_escalations_and_deadlines_share_one_digest(
        deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """A sign-off overdue and a verification overdue: one digest, escalation first."""
    live = await signed_off(deps, project="web")
    start = await deploys.start_deploy(deps, release_id=live, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    stuck = await signed_off(deps, approvers=(DIRECTOR,), project="web", ref="v2.0.0")
    clock.advance(hours=24)
    await jobs.remind()
    ops = [d for d in await digests(deps) if d["user"] == OPS]
    assert len(ops) == 1 and waits(ops[0]) == [(stuck, "escalation"), (live, "verify_deadline")]


async def test_racing_reminder_passes_queue_one_digest_each(deps: Deps, jobs: Jobs,
                                                           clock: FakeClock) -> None:
    """Two replicas' passes at once (a slow tick overlapping the next): one digest per person."""
    for _ in range(3):
        await new_release(deps, project="web")
    clock.advance(hours=24)
    results = await asyncio.gather(*(jobs.remind() for _ in range(4)))
    assert sum(results) == 2
    assert sorted(d["user"] for d in await digests(deps)) == sorted([LEAD, TESTER])


async def test_observation_ends_in_close_with_notes(deps: Deps, jobs: Jobs,
                                                   clock: FakeClock) -> None:
    """24 h after verification the release closes by itself, notes attached."""
    rid = await signed_off(deps, project="web")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    assert await state(deps, rid) is State.OBSERVING
    clock.advance(hours=23, minutes=59)
    assert await jobs.close_observed() == 0
    clock.advance(minutes=1)
    assert await jobs.close_observed() == 1
    assert await state(deps, rid) is State.CLOSED
    async with deps.sessions() as session:
        audit = await q.audit_of(session, rid)
    assert audit[-1].actor == "releasebot" and audit[-1].detail["notes"].startswith("*acme/web ")
    assert await jobs.close_observed() == 0


async def test_hotfix_merge_back_reminded_until_merged(deps: Deps, jobs: Jobs, clock: FakeClock,
                                                       gitlab: GitLabEmulator) -> None:
    """A shipped hotfix on a branch not in main is chased every 24 h until it is merged."""
    fix = gitlab.add_commit("acme/web", title="Hotfix: null check", branches=["hotfix-1"],
                            parent="v1.1.0")
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="hotfix-1", title="Null check", type="hotfix",
        plan=ROLLBACK_STEPS))
    rid = out.release.id
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://r/1", {}))
    for approver in (DIRECTOR, LEAD):
        await releases.approve(deps, release_id=rid, actor=who(deps, approver))
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    assert await jobs.merge_back() == 1
    assert await jobs.merge_back() == 0
    reminder = (await notices(deps, "merge_back"))[0]
    assert reminder["users"] == [DEV] and reminder["detail"]["ref"] == "hotfix-1"
    assert reminder["detail"]["overdue"] is False
    clock.advance(days=8)
    assert await jobs.merge_back() == 1
    assert (await notices(deps, "merge_back"))[-1]["detail"]["overdue"] is True
    gitlab.add_commit("acme/web", title="Merge hotfix-1", branches=["main"], parent=fix.sha)
    clock.advance(days=1)
    assert await jobs.merge_back() == 0
    clock.advance(days=3)
    assert await jobs.merge_back() == 0


async def test_emergency_override_is_audited_and_shown(deps: Deps, clock: FakeClock) -> None:
    """Only an executive, with a reason; the audit row says who and why."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, (CTO, DIRECTOR, LEAD), project="web", type="emergency")
    with pytest.raises(Refused, match="reason"):
        await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason=" ")
    await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason="card outage")
    async with deps.sessions() as session:
        audit = await q.audit_of(session, rid)
        release = await q.get_release(session, rid)
    assert (audit[-1].action, audit[-1].actor) == ("override gate", CTO)
    assert audit[-1].detail["reason"] == "card outage" and "Sales week" in audit[-1].detail["gate"]
    assert release.gate_override_by == CTO


async def test_an_undecided_failed_emergency_reminds_the_executive(deps: Deps, jobs: Jobs,
                                                                   clock: FakeClock) -> None:
    """After the policy's approval hours the executives' digest names it; decided, it stops."""
    rid = await signed_off(deps, approvers=(CTO, DIRECTOR, LEAD), project="web",
                           type="emergency")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=False,
                         note="Refunds charged twice")
    assert [n["roles"] for n in await notices(deps, "decide")] == [["executive"]]
    clock.advance(hours=3, minutes=59)
    assert await jobs.remind() == 0
    clock.advance(minutes=1)
    assert await jobs.remind() == 1
    assert [(d["user"], waits(d)) for d in await digests(deps)] == [(CTO, [(rid, "decide")])]
    await deploys.decide(deps, release_id=rid, actor=who(deps, CTO), fix=True,
                         reason="Refunds must be exact")
    clock.advance(hours=5)
    assert await jobs.remind() == 0
