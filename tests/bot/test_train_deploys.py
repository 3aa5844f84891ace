"""A train's deploys through the services: what stops it between two components, and the way on."""

from __future__ import annotations

import pytest

from bot import deploys
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.sample import DEV, LEAD, OPS, TESTER
from storage import queries as q
from tests.fixtures import FakeClock, signed_off, state_of, tick_all, who

TRAIN = {"ref": "v2.0.0", "more": (("web", "v2.0.0"),)}  # payments, then web
PREVIOUS = deploys.Shipped("v1.0.0", "1" * 40)


async def run(deps: Deps, start: deploys.DeployStart, status: str = "success") -> deploys.Outcome:
    """The committed deploy's pipeline starts (GitLab knows v1.0.0 ran there) and ends."""
    await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=7,
                                  url="https://gl/p/7", previous=PREVIOUS)
    return await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status=status)


async def to_production(deps: Deps) -> int:
    """A payments-and-web train deployed to staging (payments alone) and accepted there."""
    rid = await signed_off(deps, **TRAIN)
    await tick_all(deps, rid)
    await run(deps, await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS)))
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    return rid


async def web_deploying(deps: Deps) -> deploys.DeployStart:
    """Another release of web, its production pipeline under way."""
    other = await signed_off(deps, project="web", ref="v1.1.0")
    return await deploys.start_deploy(deps, release_id=other, actor=who(deps, OPS))


async def test_a_train_does_not_start_while_a_later_project_is_busy(deps: Deps) -> None:
    """web's production is held by another release: the train's production deploy is refused
    before anything is written, naming the project."""
    rid = await to_production(deps)
    other = await web_deploying(deps)
    with pytest.raises(Refused, match=f"web production is busy: REL-{other.deployment.release_id} "
                                      "is deploying."):
        await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert await state_of(deps, rid) is State.DEPLOYED


async def test_a_project_taken_meanwhile_stops_the_train_and_it_goes_on_later(
        deps: Deps, clock: FakeClock) -> None:
    """payments deploys; meanwhile another release takes web's production: the train stops
    there as a failed deploy naming web; deployed again later, only web goes."""
    rid = await to_production(deps)
    first = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert first.deployment.project == "payments"
    other = await web_deploying(deps)
    done = await run(deps, first)
    assert done.follow_up is None and await state_of(deps, rid) is State.DEPLOY_FAILED
    async with deps.sessions() as session:
        failed = (await q.audit_of(session, rid))[-1]
    assert failed.action == "deploy failed" and failed.detail["component"] == "web"
    assert failed.detail["error"] == (f"web production is busy: REL-{other.deployment.release_id} "
                                      "is deploying.")
    assert failed.detail["stopped"] == [] and failed.detail["undo"] == ["payments"]
    await run(deps, other)
    await deploys.verify(deps, release_id=other.deployment.release_id,
                         actor=who(deps, TESTER), passed=True)
    again = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    assert (again.deployment.project, again.deployment.environment) == ("web", "production")
    assert (await run(deps, again)).to_state is State.DEPLOYED


async def test_a_train_is_one_release_for_requests_and_sign_off(deps: Deps) -> None:
    """One row, one report, one sign-off; components in deploy order, pinned together."""
    rid = await signed_off(deps, ref="v2.0.0", more=(("web", "v2.0.0"),))
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        comps = await q.components_of(session, release)
        approvals = await q.approvals_of(session, release)
    assert (release.project, release.ref, release.pinned_sha) == (
        "payments", "v2.0.0", comps[0].pinned_sha)
    assert [(c.position, c.project) for c in comps] == [(0, "payments"), (1, "web")]
    assert all(c.pinned_sha for c in comps) and release.pinned_revision == release.revision
    assert len(approvals) == 2 and release.requester == DEV
    assert {a.approver for a in approvals} >= {LEAD}
