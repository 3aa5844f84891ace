"""Time travel: windows, scheduled deploys, reminders, escalation, observation close, merge-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot import deploys, releases
from bot.deploys import Deployer
from bot.gitlab import GitLabClient
from bot.jobs import Jobs
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.gitlab import GitLabEmulator
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.notes_text import notes_mrkdwn
from storage import queries as q
from tests.fixtures import SALES_WEEK, FakeClock, signed_off, tick_all, who


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
    assert await jobs.deploy_due() == 0 and await notices(deps, "held") == []
    clock.advance(hours=2)
    assert await jobs.deploy_due() == 0
    assert await jobs.deploy_due() == 0
    held = await notices(deps, "held")
    assert len(held) == 1 and held[0]["users"] == [DEV] and held[0]["roles"] == [
        "release_manager"]
    assert "Checklist items still open: 1, 2" in held[0]["detail"]["reason"]
    async with deps.sessions() as session:
        assert (await q.get_release(session, rid)).hold_reason
    await tick_all(deps, rid)
    assert await jobs.deploy_due() == 1
    assert await state(deps, rid) is State.DEPLOYING
    assert [p.ref for p in gitlab.pipelines.values()] == [f"release/REL-{rid}"]
    assert [p.sha for p in gitlab.pipelines.values()] == [gitlab.resolve(
        gitlab.project("acme/payments"), "v1.1.0").sha]


async def test_campaign_needs_its_time(deps: Deps) -> None:
    """A campaign without --at is refused with the way to give it."""
    with pytest.raises(Refused, match="campaign release needs its launch time"):
        await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
            project="web", ref="v1.1.0", title="Sale", type="campaign"))


async def test_approval_reminder_then_escalation_each_once(deps: Deps, jobs: Jobs,
                                                          clock: FakeClock) -> None:
    """After 4 h the missing approver is asked again; after 24 h the release manager hears."""
    rid = await signed_off(deps, approvers=(DIRECTOR,))
    start = len(await notices(deps))  # the first ask, queued when sign-off began
    clock.advance(hours=3)
    assert await jobs.remind() == 0
    clock.advance(hours=1)
    assert await jobs.remind() == 1
    assert await jobs.remind() == 0
    clock.advance(hours=3)
    assert await jobs.remind() == 0  # within the 4 h interval
    clock.advance(hours=1)
    assert await jobs.remind() == 1  # 8 h: asked again
    asks = [n for n in await notices(deps) if n["kind"] == "ask"][start:]
    assert len(asks) == 2 and asks[0]["roles"] == ["test_lead"] and asks[0]["reminder"]
    clock.advance(hours=16)
    assert await jobs.remind() == 1
    escalation = await notices(deps, "escalation")
    assert escalation[0]["roles"] == ["release_manager"]
    assert escalation[0]["detail"]["waiting_on"] == ["test_lead"]
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    clock.advance(hours=48)
    assert await jobs.remind() == 0  # answered: quiet


async def test_report_reminder_goes_to_testers(deps: Deps, jobs: Jobs, clock: FakeClock) -> None:
    """A release in test without a report for 24 h: testers are reminded, once per interval."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="v1.1.0", title="Copy"))
    clock.advance(hours=24)
    assert await jobs.remind() == 1
    assert await jobs.remind() == 0
    assert (await notices(deps, "report"))[0]["roles"] == ["tester"]
    await releases.attach_report(deps, release_id=out.release.id, actor=who(deps, TESTER),
                            report=ReportInput("https://r/1", {}))
    clock.advance(hours=24)
    await jobs.remind()  # now it waits on approvers, not testers
    assert len(await notices(deps, "report")) == 1


async def test_verification_reminder_then_rollback_prompt(deps: Deps, jobs: Jobs,
                                                         clock: FakeClock) -> None:
    """Deployed but unverified: testers after 60 min, the release manager after 240 min."""
    rid = await signed_off(deps, project="web")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    clock.advance(minutes=59)
    assert await jobs.remind() == 0
    clock.advance(minutes=1)
    assert await jobs.remind() == 1
    assert (await notices(deps, "verify"))[0]["roles"] == ["tester"]
    clock.advance(minutes=180)
    assert await jobs.remind() == 1
    assert (await notices(deps, "verify_deadline"))[0]["roles"] == ["release_manager"]
    assert await jobs.remind() == 0
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    clock.advance(hours=5)
    assert await jobs.remind() == 0


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
    assert audit[-1].actor == "releasebot" and "Release notes" in audit[-1].detail["notes"]
    assert await jobs.close_observed() == 0


async def test_hotfix_merge_back_reminded_until_merged(deps: Deps, jobs: Jobs, clock: FakeClock,
                                                       gitlab: GitLabEmulator) -> None:
    """A shipped hotfix on a branch not in main is chased every 24 h until it is merged."""
    fix = gitlab.add_commit("acme/web", title="Hotfix: null check", branches=["hotfix-1"],
                            parent="v1.1.0")
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="hotfix-1", title="Null check", type="hotfix"))
    rid = out.release.id
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://r/1", {}))
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
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
    rid = await signed_off(deps, (CTO, DIRECTOR), project="web", type="emergency")
    with pytest.raises(Refused, match="reason"):
        await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason=" ")
    await releases.override_gate(deps, release_id=rid, actor=who(deps, CTO), reason="card outage")
    async with deps.sessions() as session:
        audit = await q.audit_of(session, rid)
        release = await q.get_release(session, rid)
    assert (audit[-1].action, audit[-1].actor) == ("override gate", CTO)
    assert audit[-1].detail["reason"] == "card outage" and "Sales week" in audit[-1].detail["gate"]
    assert release.gate_override_by == CTO
