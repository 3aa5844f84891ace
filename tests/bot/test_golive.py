"""The go-live plan on a real database: its parts, its review, what editing it voids."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from bot import deploys, golive, releases
from bot.deploys import Deployer
from bot.readmodel import load_view
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.gitlab import GitLabEmulator
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.cards import build_release_card
from storage import queries as q
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade
from tests.fixtures import gitlab_client, new_release, state_of, who

REVIEWED = {"standard": {"plan": {"required": ["impact", "rollback", "db_scripts"],
                                  "reviewer": "tech_director"}}}
PLAN = {"impact": "Checkout is read-only for 2 minutes", "rollback": "Redeploy v1.0.0",
        "db_scripts": "none"}


@pytest.fixture
def reviewed(deps: Deps) -> Deps:
    """Deps under a policy whose standard releases need a reviewed plan."""
    deps.policy = sample_policy(policies=REVIEWED)
    return deps


async def reported(deps: Deps, plan: dict[str, str]) -> int:
    """A payments release with a passing report, ready for sign-off but for its plan."""
    rid = await new_release(deps, plan=plan)
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=releases.ReportInput("https://ci/r/1", {"C": 1}))
    return rid


async def test_an_empty_plan_holds_sign_off_naming_what_is_missing(reviewed: Deps) -> None:
    """The one-line request files; approving names the missing parts, then waits for review."""
    deps = reviewed
    rid = await reported(deps, {})
    with pytest.raises(Refused) as err:
        await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    assert err.value.sentence == (
        "The go-live plan is missing impact scope, rollback steps and database scripts: the "
        "requester adds it with Edit plan on the card or `/release plan`.")
    out = await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV), changes=PLAN)
    assert out.detail["changed"] == ["impact scope", "rollback steps", "database scripts"]
    with pytest.raises(Refused, match="waits for review by the tech_director"):
        await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=True)
    await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    await releases.approve(deps, release_id=rid, actor=who(deps, DIRECTOR))
    assert await state_of(deps, rid) is State.APPROVED


async def test_changes_asked_hold_until_the_plan_is_edited(reviewed: Deps) -> None:
    """The reviewer's note is what approvers are refused with; editing asks for review again."""
    deps = reviewed
    rid = await reported(deps, PLAN)
    with pytest.raises(Refused, match="Please give a reason"):
        await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=False)
    await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=False,
                             note="Add the database rollback")
    with pytest.raises(Refused, match="asked for changes to the go-live plan: Add the "
                                      "database rollback"):
        await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))
    out = await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV), changes={
        "rollback": "Redeploy v1.0.0; run down.sql"})
    assert out.detail["review_voided"] is True
    with pytest.raises(Refused, match="waits for review"):
        await releases.approve(deps, release_id=rid, actor=who(deps, LEAD))


async def test_nobody_reviews_their_own_plan_and_only_the_reviewer_does(reviewed: Deps) -> None:
    """The requester, even holding the role, and other roles are refused; nothing is written."""
    deps = reviewed
    out = await releases.request_release(deps, actor=who(deps, DIRECTOR), new=releases.NewRelease(
        "payments", "v1.1.0", "Director's own", plan=PLAN))
    rid = out.release.id
    with pytest.raises(Refused, match="four eyes"):
        await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=True)
    with pytest.raises(Refused, match="Only the go-live plan's reviewer"):
        await golive.review_plan(deps, release_id=rid, actor=who(deps, LEAD), ok=True)
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        assert release.plan_review is None
        assert [a.action for a in await q.audit_of(session, rid)] == ["request"]


async def test_editing_after_sign_off_voids_it_and_keeps_commit_and_report(reviewed: Deps
                                                                           ) -> None:
    """Approvers sign the changed plan again; the pin and the test report still count."""
    deps = reviewed
    rid = await reported(deps, PLAN)
    await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=True)
    for user in (LEAD, DIRECTOR):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    async with deps.sessions() as session:
        before = await q.get_release(session, rid)
    out = await golive.edit_plan(deps, release_id=rid, actor=who(deps, OPS),
                                 changes={"on_duty": "Olga, Diego"})
    assert out.to_state is State.READY_FOR_SIGNOFF and out.detail["voided_approvals"] == 2
    async with deps.sessions() as session:
        after = await q.get_release(session, rid)
        report = await q.latest_report(session, after)
        approvals = await q.approvals_of(session, after)
    assert after.revision == before.revision + 1 and approvals == []
    assert (after.pinned_sha, after.pinned_revision) == (before.pinned_sha, after.revision)
    assert report is not None and report.passes and report.url == "https://ci/r/1"
    assert after.plan_review is None  # the changed plan is reviewed again
    await golive.review_plan(deps, release_id=rid, actor=who(deps, DIRECTOR), ok=True)
    for user in (LEAD, DIRECTOR):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    assert await state_of(deps, rid) is State.APPROVED


async def test_plan_edits_are_checked(deps: Deps) -> None:
    """Unknown parts, overlong text, no change and other people are refused plainly."""
    rid = await new_release(deps)
    with pytest.raises(Refused, match="'rollout' is not a part of the go-live plan"):
        golive.plan_field("rollout")
    assert golive.plan_field("Stop-Services").value == "stop_services"
    with pytest.raises(Refused, match="Too long: the plan's impact scope"):
        await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV),
                               changes={"impact": "x" * 4001})
    with pytest.raises(Refused, match="unchanged"):
        await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV), changes={
            "rollback": "Redeploy the previous release tag; no database changes"})
    with pytest.raises(Refused, match="Only the requester or the release manager"):
        await golive.edit_plan(deps, release_id=rid, actor=who(deps, TESTER),
                               changes={"impact": "none"})
    out = await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV),
                                 changes={"impact": "a\u202ebc\x00"})
    assert out.release.plan["impact"] == "abc"  # bidi and control characters are stripped


async def test_production_without_a_way_back_is_refused(deps: Deps,
                                                        gitlab: GitLabEmulator) -> None:
    """No earlier version known to the bot or GitLab and no rollback steps: refused, nothing
    written; rollback steps let it go, and the card says rollback is by hand."""
    gitlab.project("acme/web").deployments.clear()  # a project GitLab never deployed
    deployer = Deployer(deps, gitlab_client(gitlab))
    rid = await new_release(deps, project="web", plan={})
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=releases.ReportInput("https://ci/r/1", {}))
    for user in (LEAD, DIRECTOR):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    with pytest.raises(Refused) as err:
        await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    assert "no rollback steps" in err.value.sentence
    assert await state_of(deps, rid) is State.APPROVED
    async with deps.sessions() as session:
        assert await q.deployments_of(session, rid) == []
    await golive.edit_plan(deps, release_id=rid, actor=who(deps, DEV), changes={
        "rollback": "Restore the web bundle from the CDN backup"})
    for user in (LEAD, DIRECTOR):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    out = await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    assert out.to_state is State.DEPLOYING
    async with deps.sessions() as session:
        view = await load_view(session, deps.policy, out.release)
    _, blocks = build_release_card(view, deps.policy.tz)
    assert "a rollback is by hand, following the go-live plan's rollback steps" in str(blocks)
    async with deps.sessions() as session:
        dep = (await q.deployments_of(session, rid))[0]
    await deploys.finish_deploy(deps, deployment_id=dep.id, status="success")
    with pytest.raises(Refused, match="follow the go-live plan's rollback steps by hand"):
        await deployer.rollback(release_id=rid, actor=who(deps, OPS))


async def test_gitlabs_record_of_production_is_a_way_back(deps: Deps,
                                                          gitlab: GitLabEmulator) -> None:
    """What GitLab last deployed to production is recorded as the version to roll back to."""
    deployer = Deployer(deps, gitlab_client(gitlab))
    web = gitlab.project("acme/web")
    web.deployments.clear()
    earlier = gitlab.record_deployment(web, "production", "v1.0.0")
    rid = await new_release(deps, project="web", plan={})
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                                 report=releases.ReportInput("https://ci/r/1", {}))
    for user in (LEAD, DIRECTOR):
        await releases.approve(deps, release_id=rid, actor=who(deps, user))
    await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    async with deps.sessions() as session:
        dep = (await q.deployments_of(session, rid))[0]
    assert (dep.previous_ref, dep.previous_sha) == ("v1.0.0", earlier.sha)


async def test_the_migration_moves_old_plan_columns_into_the_plan(tmp_path: Path) -> None:
    """A release filed before plans keeps its rollback plan, impact, order and DB answer."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0004")
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO releases (id, project, ref, version_label, title, type, requester, "
            "state, revision, planned_window, rollback_plan, db_scripts, impact, deploy_order, "
            "checklist, created_at, updated_at, state_since, version, newer_commits) VALUES "
            "(1, 'web', 'v1', '', 't', 'standard', 'U0DEV', 'requested', 1, '', 'Redeploy v0', "
            "1, 'Checkout', 'web last', '[]', '2026-11-23 04:00:00', '2026-11-23 04:00:00', "
            "'2026-11-23 04:00:00', 1, 0)"))
    await engine.dispose()
    await asyncio.to_thread(upgrade, url)
    engine = make_engine(url)
    async with make_sessionmaker(engine)() as session:
        release = await q.get_release(session, 1)
    await engine.dispose()
    assert release is not None and release.plan == {
        "rollback": "Redeploy v0", "impact": "Checkout", "deploy_order": "web last",
        "db_scripts": "yes"}
