"""Deploys on a real database: gates, environments, rollback, verification, close."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot import deploys, releases
from bot.jobs import Poller
from bot.readmodel import load_view
from bot.transition import Deps
from bot.workflow import Event, Refused, State
from emulators.gitlab import GitLabEmulator, variable
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from handlers.cards import build_release_card
from handlers.status import status_blocks
from storage import queries as q
from tests.fixtures import (
    SALES_WEEK,
    FakeClock,
    gitlab_client,
    signed_off,
    state_of,
    tick_all,
    who,
)


async def test_full_standard_path(deps: Deps, clock: FakeClock) -> None:
    """Request → report → two sign-offs → checklist → staging → production → verify → close."""
    rid = await signed_off(deps)
    assert await state_of(deps, rid) is State.APPROVED
    ops = who(deps, OPS)
    with pytest.raises(Refused, match="Checklist items 1, 2, 3 are still open"):
        await deploys.start_deploy(deps, release_id=rid, actor=ops)
    await tick_all(deps, rid)
    for env in ("staging", "production"):
        start = await deploys.start_deploy(deps, release_id=rid, actor=ops)
        assert start.deployment.environment == env
        await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=7,
                                      url="https://gl/p/7")
        clock.advance(minutes=3)
        done = await deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                           status="success")
        assert done.to_state is State.DEPLOYED and done.detail["seconds"] == 180
        if env == "staging":
            with pytest.raises(Refused, match=f"REL-{rid} is on staging and not yet accepted"):
                await deploys.start_deploy(deps, release_id=rid, actor=ops)
            passed = await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER),
                                          passed=True, note="cases re-run")
            assert passed.event is Event.ACCEPTANCE_PASS and passed.to_state is State.DEPLOYED
            assert passed.detail == {"environment": "staging", "note": "cases re-run",
                                     "passed": True, "next": "production"}
    out = await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    assert out.to_state is State.VERIFIED
    assert await state_of(deps, rid) is State.OBSERVING
    with pytest.raises(Refused, match="under observation until 2026-11-24 12:06 CST"):
        await deploys.close(deps, release_id=rid, actor=ops)
    clock.advance(hours=24)
    closed = await deploys.close(deps, release_id=rid, actor=ops)
    assert closed.to_state is State.CLOSED


async def test_freeze_refuses_with_reason_and_executive_override(deps: Deps,
                                                                 clock: FakeClock) -> None:
    """In a freeze, deploy names the freeze; an emergency override by the executive opens it."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    rid = await signed_off(deps, (CTO, DIRECTOR, LEAD), project="web", type="emergency")
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


async def test_deploy_failure_then_rollback_to_recorded_ref(deps: Deps) -> None:
    """The version live before (tag, commit, release) is recorded at deploy; rollback goes there."""
    ops = who(deps, OPS)
    first = await signed_off(deps, project="web", ref="v1.0.0")
    start = await deploys.start_deploy(deps, release_id=first, actor=ops)
    assert start.deployment.previous_ref is None
    assert start.deployment.ref == f"release/REL-{first}" and start.deployment.sha
    first_sha = start.deployment.sha
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    await deploys.verify(deps, release_id=first, actor=who(deps, TESTER), passed=True)
    second = await signed_off(deps, project="web", ref="v1.1.0")
    start = await deploys.start_deploy(deps, release_id=second, actor=ops)
    assert start.deployment.previous_ref == f"release/REL-{first}"
    assert start.deployment.previous_sha == first_sha
    assert start.deployment.previous_release_id == first
    failed = await deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                         status="failed", failed_job="deploy:production")
    assert failed.to_state is State.DEPLOY_FAILED and failed.detail["failed_job"]
    again = await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="failed")
    assert again.changed is False
    back = await deploys.start_rollback(deps, release_id=second, actor=ops, reason="500s")
    assert back.deployment.ref == f"release/REL-{first}" and back.deployment.rollback
    assert back.deployment.sha == first_sha and back.deployment.runs_release_id == first
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
    assert back.deployment.ref == f"release/REL-{first}"


async def deployed(deps: Deps, rid: int) -> int:
    """Deploy the release to its next environment and let the pipeline succeed; the row id."""
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    return start.deployment.id


async def test_only_the_live_release_rolls_back(deps: Deps, gitlab: GitLabEmulator) -> None:
    """An older release can't roll back over a newer one; the newer goes back to the older's
    exact commit, through GitLab, on the older's tag with ROLLBACK=true and RELEASE_SHA."""
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    for ref in ("v1.0.0", "v1.1.0"):  # the second of these is `first`, with a way back
        first = await signed_off(deps, project="web", ref=ref)
        await deployed(deps, first)
        await deploys.verify(deps, release_id=first, actor=who(deps, TESTER), passed=True)
    second = await signed_off(deps, project="web", ref="main")
    await deployed(deps, second)
    pipelines = len(gitlab.pipelines)
    with pytest.raises(Refused, match=f"web production runs REL-{second} now; "
                                      f"roll back REL-{second} first"):
        await deployer.rollback(release_id=first, actor=who(deps, OPS))
    assert len(gitlab.pipelines) == pipelines  # refused before GitLab is asked anything
    started = await deployer.rollback(release_id=second, actor=who(deps, OPS))
    async with deps.sessions() as session:
        pinned = (await q.get_release(session, first)).pinned_sha
        back = await q.get_deployment(session, deployment_id=started.detail["deployment"])
    assert (back.sha, back.runs_release_id) == (pinned, first)
    pipeline = gitlab.pipelines[started.detail["pipeline"]]
    assert (pipeline.ref, pipeline.sha) == (f"release/REL-{first}", pinned)
    assert {v["key"]: v["value"] for v in pipeline.variables if v["key"] in (
        "ROLLBACK", "RELEASE_SHA", "DEPLOY_ENV")} == {
        "ROLLBACK": "true", "RELEASE_SHA": pinned, "DEPLOY_ENV": "production"}
    await deploys.finish_deploy(deps, deployment_id=back.id, status="success")
    async with deps.sessions() as session:
        live = deploys.running(await q.live_deployment(session, "web", "production"))
    assert live == deploys.Shipped(f"release/REL-{first}", pinned, first)
    for rid, who_runs in ((first, "this release"), (second, f"REL-{first}")):
        _, blocks = await status_blocks(deps, rid)
        assert f"production: {who_runs} (`release/REL-{first}` @ `{pinned[:7]}`)" in str(blocks)


async def test_production_takes_one_unverified_change(deps: Deps) -> None:
    """While the live release is unverified, another production deploy is refused."""
    first = await signed_off(deps, project="web")
    await deployed(deps, first)
    second = await signed_off(deps, project="web")
    with pytest.raises(Refused, match=f"runs REL-{first}, which is not verified yet"):
        await deploys.start_deploy(deps, release_id=second, actor=who(deps, OPS))
    await deploys.verify(deps, release_id=first, actor=who(deps, TESTER), passed=True)
    await deployed(deps, second)


async def test_a_failed_deploy_holds_production_until_it_is_put_right(deps: Deps) -> None:
    """Another release can't deploy over a failed production deploy, which would leave the
    failed one no way back; its rollback frees production."""
    ops = who(deps, OPS)
    for verdict in (True, False):  # a verified release live, then one whose deploy fails
        rid = await signed_off(deps, project="web")
        start = await deploys.start_deploy(deps, release_id=rid, actor=ops)
        await deploys.finish_deploy(deps, deployment_id=start.deployment.id,
                                    status="success" if verdict else "failed")
        if verdict:
            await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    failed, other = rid, await signed_off(deps, project="web")
    with pytest.raises(Refused, match=f"REL-{failed}'s deploy to web production failed, so "
                                      "what runs there is unknown until "
                                      f"REL-{failed} is rolled back or deployed again.$"):
        await deploys.start_deploy(deps, release_id=other, actor=ops)
    back = await deploys.start_rollback(deps, release_id=failed, actor=ops, reason="bad")
    await deploys.finish_deploy(deps, deployment_id=back.deployment.id, status="success")
    assert await state_of(deps, failed) is State.ROLLED_BACK
    await deployed(deps, other)


async def test_staging_is_reserved_until_production_or_cancel(deps: Deps) -> None:
    """A second release's staging deploy waits until the first reaches production or ends."""
    ops = who(deps, OPS)
    first, second = await signed_off(deps), await signed_off(deps)
    for rid in (first, second):
        await tick_all(deps, rid)
    await deployed(deps, first)
    with pytest.raises(Refused, match=f"payments staging is reserved for REL-{first} until it "
                                      "reaches production, is rolled back or is cancelled"):
        await deploys.start_deploy(deps, release_id=second, actor=ops)
    await releases.cancel(deps, release_id=first, actor=who(deps, DEV), reason="superseded")
    await deployed(deps, second)
    third = await signed_off(deps)
    await tick_all(deps, third)
    await deploys.verify(deps, release_id=second, actor=who(deps, TESTER), passed=True)
    await deployed(deps, second)  # production: staging is free again
    await deployed(deps, third)


async def test_a_tag_elsewhere_stops_the_deploy(deps: Deps, gitlab: GitLabEmulator) -> None:
    """The release's tag already names another commit: the deploy fails with that sentence."""
    rid = await signed_off(deps, project="web", ref="v1.0.0")
    gitlab.add_tag("acme/web", f"release/REL-{rid}", "main")
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    out = await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    assert out.event is Event.DEPLOY_FAILED
    assert f"the tag release/REL-{rid} already points at" in out.detail["error"]
    assert all(variable(p.variables, "RELEASE_ID") != f"REL-{rid}"
               for p in gitlab.pipelines.values())


async def test_a_rollback_never_undoes_an_earlier_environment_instead(
        deps: Deps, gitlab: GitLabEmulator) -> None:
    """Staging ran a known version, production nothing known: a failed production is rolled
    back by hand, never by redeploying staging; the card offers no Roll back button."""
    payments = gitlab.project("acme/payments")
    payments.deployments.clear()
    staging_before = gitlab.record_deployment(payments, "staging", "v1.0.0")
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    ops, tester = who(deps, OPS), who(deps, TESTER)
    rid = await signed_off(deps)  # its plan has rollback steps
    await tick_all(deps, rid)
    for env in ("staging", "production"):
        out = await deployer.deploy(release_id=rid, actor=ops)
        await deploys.finish_deploy(deps, deployment_id=out.detail["deployment"],
                                    status="success")
        await deploys.verify(deps, release_id=rid, actor=tester, passed=env == "staging",
                             note="checkout returns 500" if env == "production" else "")
    async with deps.sessions() as session:
        staging, production = await q.deployments_of(session, rid)
    assert staging.previous_sha == staging_before.sha and production.previous_sha is None
    assert await state_of(deps, rid) is State.VERIFICATION_FAILED
    with pytest.raises(Refused, match="rollback steps by hand"):
        await deployer.rollback(release_id=rid, actor=ops)
    async with deps.sessions() as session:
        assert len(await q.deployments_of(session, rid)) == 2
        view = await load_view(session, deps.policy, await q.get_release(session, rid))
    _, blocks = build_release_card(view, deps.policy.tz)
    assert "a rollback is by hand" in str(blocks) and ActionId.ROLLBACK not in str(blocks)


@pytest.mark.parametrize("status", ["success", "manual"])
async def test_a_pipeline_that_ran_another_commit_changes_nothing(
        status: str, deps: Deps, gitlab: GitLabEmulator) -> None:
    """GitLab says the deployment's pipeline ran another commit than the one recorded: neither
    the webhook's trigger nor the poller moves the release or reports it."""
    rid = await signed_off(deps, project="web")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    gitlab.set_jobs("acme/web", manual_deploy=status == "manual")
    other = gitlab.create_pipeline("acme/web", "unapproved",
                                   [{"key": "DEPLOY_ENV", "value": "production"}])
    gitlab.set_status(other.id, status)
    assert other.sha != start.deployment.sha
    await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=other.id,
                                  url=f"{gitlab.url}/acme/web/-/pipelines/{other.id}")
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    assert await deployer.take_hook("web", other.id) is None
    assert await Poller(deps, deployer).poll_once() == 0
    assert await state_of(deps, rid) is State.DEPLOYING
    async with deps.sessions() as session:
        rows = await q.pending_outbox(session, now=deps.clock(), limit=1000)
    assert not [r for r in rows if r.kind == "notify" and r.payload["notice"] == "stuck"]


async def _legacy_live(deps: Deps) -> int:
    """A release live in web production on a row from before commits were pinned: its ref,
    no commit."""
    first = await signed_off(deps, project="web", ref="v1.0.0")
    dep_id = await deployed(deps, first)
    await deploys.verify(deps, release_id=first, actor=who(deps, TESTER), passed=True)
    async with deps.sessions() as session:
        dep = await q.get_deployment(session, deployment_id=dep_id)
        dep.ref, dep.sha = "v1.0.0", None
        session.add(dep)
        await session.commit()
    return first


async def test_a_version_known_only_by_its_ref_is_rolled_back_by_hand(
        deps: Deps, gitlab: GitLabEmulator) -> None:
    """Redeploying `v1.0.0` would deploy what it names today, not what ran: refused with the
    way on, before GitLab is asked; the card offers no Roll back and says why."""
    gitlab.project("acme/web").deployments.clear()
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    await _legacy_live(deps)
    rid = await signed_off(deps, project="web", ref="v1.1.0")
    dep_id = (await deployer.deploy(release_id=rid, actor=who(deps, OPS))).detail["deployment"]
    await deploys.finish_deploy(deps, deployment_id=dep_id, status="failed")
    async with deps.sessions() as session:
        dep = await q.get_deployment(session, deployment_id=dep_id)
    assert (dep.previous_ref, dep.previous_sha) == ("v1.0.0", None)
    pipelines = len(gitlab.pipelines)
    with pytest.raises(Refused) as refused:
        await deployer.rollback(release_id=rid, actor=who(deps, OPS))
    assert refused.value.sentence == (
        f"REL-{rid} can't be rolled back here: the version that ran before is recorded only "
        "as `v1.0.0`, not as a commit, and deploying `v1.0.0` now would not bring back what "
        "ran; follow the rollback steps in its go-live plan by hand.")
    assert len(gitlab.pipelines) == pipelines and await state_of(deps, rid) is State.DEPLOY_FAILED
    async with deps.sessions() as session:
        view = await load_view(session, deps.policy, await q.get_release(session, rid))
    _, blocks = build_release_card(view, deps.policy.tz)
    assert "recorded only as `v1.0.0`, with no commit: a rollback is by hand" in str(blocks)
    assert ActionId.ROLLBACK not in str(blocks)


async def test_a_version_gitlab_knows_as_a_commit_is_rolled_back_to_it(
        deps: Deps, gitlab: GitLabEmulator) -> None:
    """The bot's row has no commit, GitLab's last deployment there has: that commit is what
    the deploy records as before, and what the rollback puts back."""
    web = gitlab.project("acme/web")
    web.deployments.clear()
    deployer = deploys.Deployer(deps, gitlab_client(gitlab))
    await _legacy_live(deps)
    ran = gitlab.record_deployment(web, "production", "v1.0.0")
    rid = await signed_off(deps, project="web", ref="v1.1.0")
    dep_id = (await deployer.deploy(release_id=rid, actor=who(deps, OPS))).detail["deployment"]
    await deploys.finish_deploy(deps, deployment_id=dep_id, status="failed")
    started = await deployer.rollback(release_id=rid, actor=who(deps, OPS))
    pipeline = gitlab.pipelines[started.detail["pipeline"]]
    assert pipeline.sha == ran.sha and variable(pipeline.variables, "RELEASE_SHA") == ran.sha
