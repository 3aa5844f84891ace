"""Races on SQLite and PostgreSQL: double clicks, simultaneous approvers, ref changes."""

from __future__ import annotations

import asyncio

import pytest

from bot import deploys, releases
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER
from storage import queries as q
from tests.fixtures import ROLLBACK_STEPS, who


async def ready(deps: Deps, project: str = "payments") -> int:
    """A release waiting for sign-off."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project=project, ref="v1", title="Race", plan=ROLLBACK_STEPS))
    await releases.attach_report(deps, release_id=out.release.id, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r", {}))
    return out.release.id


async def settle(*calls: object) -> list[object]:
    """Run calls at once; refusals are results, anything else fails the test."""
    results = await asyncio.gather(*calls, return_exceptions=True)  # type: ignore[arg-type]
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, Refused):
            raise r
    return results


async def announcements(deps: Deps, rid: int, event: str) -> list[dict]:
    """Outbox events of one kind for a release."""
    async with deps.sessions() as session:
        rows = await q.pending_outbox(session, now=deps.clock(), limit=1000)
    return [m.payload for m in rows if m.release_id == rid and m.payload.get("event") == event]


async def test_double_click_approve_is_one_row(deps: Deps) -> None:
    """50 trials of two concurrent approvals by one person: one row, one announcement."""
    for _ in range(50):
        rid = await ready(deps)
        lead = who(deps, LEAD)
        results = await settle(releases.approve(deps, release_id=rid, actor=lead),
                               releases.approve(deps, release_id=rid, actor=lead))
        refusals = [r for r in results if isinstance(r, Refused)]
        assert len(refusals) == 1 and "already approved" in refusals[0].sentence
        async with deps.sessions() as session:
            rel = await q.get_release(session, rid)
            assert len(await q.approvals_of(session, rel)) == 1
        assert len(await announcements(deps, rid, "approve")) == 1


async def test_two_approvers_at_once_approve_once(deps: Deps) -> None:
    """Both rows land and exactly one transition to approved is recorded and announced."""
    for _ in range(20):
        rid = await ready(deps)
        await settle(releases.approve(deps, release_id=rid, actor=who(deps, LEAD)),
                     releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR)))
        async with deps.sessions() as session:
            rel = await q.get_release(session, rid)
            assert rel.state == State.APPROVED
            assert len(await q.approvals_of(session, rel)) == 2
            audit = await q.audit_of(session, rid)
        assert [a.to_state for a in audit if a.action == "approve"].count("approved") == 1
        approved = [p for p in await announcements(deps, rid, "approve") if p["to"] == "approved"]
        assert len(approved) == 1


async def test_approval_racing_a_ref_change_never_lands_on_the_new_ref(deps: Deps) -> None:
    """Whatever order the race takes, no approval counts for the new ref."""
    for _ in range(25):
        rid = await ready(deps)
        await settle(releases.approve(deps, release_id=rid, actor=who(deps, LEAD)),
                     releases.change_ref(deps, release_id=rid, actor=who(deps, DEV), ref="v2"))
        async with deps.sessions() as session:
            rel = await q.get_release(session, rid)
            assert rel.ref == "v2"
            assert await q.approvals_of(session, rel) == []


async def test_ref_change_racing_deploy_never_deploys_an_unapproved_ref(deps: Deps) -> None:
    """Either the approved commit deploys and the change is refused, or the change wins alone."""
    ops = who(deps, OPS)
    for _ in range(25):
        rid = await ready(deps, project="web")
        await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
        await releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR))
        async with deps.sessions() as session:
            approved = (await q.get_release(session, rid)).pinned_sha
        results = await settle(deploys.start_deploy(deps, release_id=rid, actor=ops),
                               releases.change_ref(deps, release_id=rid, actor=who(deps, DEV),
                                                   ref="v-unapproved"))
        async with deps.sessions() as session:
            deployed = await q.deployments_of(session, rid)
        assert approved and all(d.sha == approved for d in deployed)
        assert sum(not isinstance(r, Refused) for r in results) == 1
        if deployed:
            await deploys.finish_deploy(deps, deployment_id=deployed[0].id, status="failed")


@pytest.mark.parametrize("n", [8])
async def test_racing_pipeline_results_announced_once(deps: Deps, n: int) -> None:
    """Webhook and poller reporting the same result at once: one transition, one announcement."""
    rid = await ready(deps, project="web")
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    await releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR))
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    results = await settle(*[deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                                   status="success") for _ in range(n)])
    assert sum(r.changed for r in results) == 1  # type: ignore[union-attr]
    assert len(await announcements(deps, rid, "deploy succeeded")) == 1
