"""Deploy, watch, verify and roll back through the running app and both emulators."""

from __future__ import annotations

from sqlmodel import select

from bot.app import DEPS, POLLER
from bot.policy import Policy
from emulators.gitlab import variable
from emulators.sample import CHANNEL, CTO, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from storage import queries as q
from storage.db import transaction
from storage.models import Deployment, Release, SeenDelivery
from tests.scenario.harness import Harness, emulators, readable, running_app
from tests.scenario.test_slack_flow import submit_modal, text_values


async def approved(h: Harness, project: str = "payments", ref: str = "v1.1.0") -> int:
    """A release with report, sign-offs and checklist done, by commands."""
    answer = await h.says(DEV, f"request {project} {ref} Checkout")
    rid = int(answer.split("REL-")[1].split(".")[0])
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
    await h.says(DIRECTOR, f"approve REL-{rid}")
    await h.says(LEAD, f"approve REL-{rid}")
    if project == "payments":
        await h.says(OPS, f"check REL-{rid} 1 2")
        await h.says(DBA, f"check REL-{rid} 3")
    await h.settle()
    return rid


async def state(h: Harness, rid: int) -> str:
    """The stored state."""
    async with h.app[DEPS].sessions() as session:
        return (await q.get_release(session, rid)).state


def broadcasts(h: Harness) -> list[str]:
    """Thread replies also shown in the channel."""
    return [m.text for m in h.slack.all_messages(CHANNEL) if m.reply_broadcast]


async def deploy_and_finish(h: Harness, rid: int, status: str = "success") -> int:
    """Click Deploy, let GitLab finish the pipeline, poll; the pipeline id."""
    await h.click(OPS, ActionId.DEPLOY)
    pipeline = h.pipeline_of(rid)
    h.gitlab.set_status(pipeline.id, "running")
    assert await h.poll() == 0
    h.gitlab.set_status(pipeline.id, status, failed_job="deploy" if status == "failed" else None)
    assert await h.poll() == 1
    return pipeline.id


async def through_production(h: Harness, rid: int) -> None:
    """Deploy staging, a tester passes it there, then deploy production."""
    await deploy_and_finish(h, rid)
    await h.says(TESTER, f"verify REL-{rid} pass")
    await h.settle()  # the card shows Deploy to production
    await deploy_and_finish(h, rid)


async def test_staging_then_production_then_verified(db_url: str, policy: Policy) -> None:
    """Deploy staging, then production, each announced once; verification starts observation."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        assert variable(pipeline.variables, "DEPLOY_ENV") == "staging"
        assert variable(pipeline.variables, "RELEASE_ID") == f"REL-{rid}"
        assert variable(pipeline.variables, "ROLLBACK") == "false"
        assert variable(pipeline.variables, "DEPLOY") == "true"
        assert pipeline.ref == f"release/REL-{rid}"
        assert pipeline.sha == h.gitlab.resolve(h.gitlab.project(pipeline.project.id),
                                                "v1.1.0").sha
        assert variable(pipeline.variables, "RELEASE_SHA") == pipeline.sha
        assert await state(h, rid) == "deploying" and h.buttons(rid) == [ActionId.ABANDON]
        assert f"Deploying `v1.1.0` @ `{pipeline.sha[:7]}` to staging" in str(h.card(rid).blocks)
        h.gitlab.set_status(pipeline.id, "success")
        assert await h.poll() == 1
        assert await h.poll() == 0
        assert h.buttons(rid)[0] == ActionId.VERIFY_PASS and "Staging OK" in str(h.card(rid).blocks)
        assert "Recorded: REL-1 passed acceptance on staging" in await h.click(
            TESTER, ActionId.VERIFY_PASS)
        assert h.buttons(rid)[0] == ActionId.DEPLOY and "production" in str(h.card(rid).blocks)
        await deploy_and_finish(h, rid)
        assert ActionId.VERIFY_PASS in h.buttons(rid) and ActionId.ROLLBACK in h.buttons(rid)
        assert "Verified" in await h.click(TESTER, ActionId.VERIFY_PASS)
        assert await state(h, rid) == "observing"
        thread = "\n".join(h.thread(rid))
        assert thread.count("📦 Deployed") == 2 and "pipeline" in thread
        assert [b for b in broadcasts(h) if "Deployed" in b] and len(broadcasts(h)) == 6
        assert sum("pipeline <http" in b for b in broadcasts(h)) == 2
        assert len(h.slack.messages(CHANNEL)) == 1


async def test_a_failed_verification_is_refused_alike_every_way(db_url: str,
                                                                policy: Policy) -> None:
    """Button, form and command ask the same table: a tester only, and never without a note."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await through_production(h, rid)
        assert "Only a tester can do that." in await h.click(OPS, ActionId.VERIFY_FAIL)
        assert h.slack.modals(OPS) == []
        assert await h.click(TESTER, ActionId.VERIFY_FAIL) == ""
        reply = await submit_modal(h, TESTER, text_values(reason="   "))
        assert reply.json == {"response_action": "errors",
                              "errors": {"reason": "Please give a reason."}}
        assert await h.says(TESTER, f"verify REL-{rid} fail") == (
            f"Please give a reason: `/release verify REL-{rid} fail &lt;reason…&gt;`")
        assert await state(h, rid) == "deployed"
        await submit_modal(h, TESTER, text_values(reason="checkout returns 500"))
        assert await state(h, rid) == "verification_failed"


async def test_failed_deploy_rolls_back_to_the_recorded_ref(db_url: str, policy: Policy) -> None:
    """The live commit comes from GitLab the first time, from the bot after; rollback ships it."""
    async with running_app(db_url, policy) as h:
        seeded = h.gitlab.create_pipeline("acme/web", "v1.0.0",
                                          [{"key": "DEPLOY_ENV", "value": "production"}])
        h.gitlab.set_status(seeded.id, "success")
        first = await approved(h, "web", "v1.1.0")
        await deploy_and_finish(h, first, "failed")
        assert await state(h, first) == "deploy_failed"
        failure = next(m for m in broadcasts(h) if "failed" in m)
        assert "deploy:production" in failure and ActionId.ROLLBACK in h.buttons(first)
        assert failure.endswith(" Roll back from the card.")
        # GitLab's v1.0.0 was live: the rollback runs on a tag the bot makes at that commit.
        old = seeded.sha
        answer = await h.click(OPS, ActionId.ROLLBACK)
        assert f"Rolling REL-1 back to `release/REL-1-rollback` @ `{old[:7]}`" in answer
        back = h.pipeline_of(first)
        assert back.ref == "release/REL-1-rollback" and back.sha == old
        assert variable(back.variables, "ROLLBACK") == "true"
        assert variable(back.variables, "RELEASE_SHA") == old
        assert variable(back.variables, "DEPLOY_ENV") == "production"
        h.gitlab.set_status(back.id, "success")
        assert await h.poll() == 1
        assert await state(h, first) == "rolled_back"
        assert any(f"Rolled back production to `release/REL-1-rollback` @ `{old[:7]}`" in m
                   for m in broadcasts(h))
        second = await approved(h, "web", "main")
        await deploy_and_finish(h, second)
        async with h.app[DEPS].sessions() as session:
            deps = await q.deployments_of(session, second)
        assert (deps[0].previous_ref, deps[0].previous_sha) == ("release/REL-1-rollback", old)


async def test_a_first_deploy_that_fails_is_deployed_again_not_rolled_back(
        db_url: str, policy: Policy) -> None:
    """Staging ran nothing known before: the thread points at the Deploy the card offers,
    not at a Roll back it does not have."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid, "failed")
        await h.settle()
        failure = next(m for m in broadcasts(h) if "failed" in m)
        assert failure.endswith(" Deploy again from the card."), failure
        assert h.buttons(rid) == [ActionId.DEPLOY]


async def test_a_failed_rollback_can_be_tried_again(db_url: str, policy: Policy) -> None:
    """A rollback pipeline that fails leaves the release's change in production: Roll back on
    the card tries it again, to the same commit, and the release ends rolled back."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h, "web", "v1.1.0")
        await deploy_and_finish(h, rid, "failed")
        await h.click(OPS, ActionId.ROLLBACK)
        first = h.pipeline_of(rid)
        h.gitlab.set_status(first.id, "failed", failed_job="deploy")
        assert await h.poll() == 1
        assert await state(h, rid) == "deploy_failed"
        assert broadcasts(h)[-1].endswith(
            "Someone needs to look now; once the cause is fixed, roll back again from the card.")
        assert ActionId.ROLLBACK in h.buttons(rid)
        answer = await h.click(OPS, ActionId.ROLLBACK)
        assert answer.startswith("Rolling REL-1 back to `release/REL-1-rollback` @ "), answer
        again = h.pipeline_of(rid)
        assert again.id != first.id and (again.ref, again.sha) == (first.ref, first.sha)
        h.gitlab.set_status(again.id, "success")
        assert await h.poll() == 1
        assert await state(h, rid) == "rolled_back"


async def test_a_verdict_on_a_failed_deploy_says_where_the_release_stands(
        db_url: str, policy: Policy) -> None:
    """Production failed to deploy: a tester's pass is refused with what the release manager
    does next, not as an acceptance with nothing to accept."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid)
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.settle()
        await deploy_and_finish(h, rid, "failed")
        assert await state(h, rid) == "deploy_failed"
        assert await h.says(TESTER, f"verify REL-{rid} pass") == (
            f"REL-{rid}'s last deploy failed. The release manager deploys again with "
            f"`/release deploy REL-{rid}`, or rolls it back.")


async def test_production_before_staging_names_the_command(db_url: str,
                                                            policy: Policy) -> None:
    """Asking for production first answers with the environment that comes before it."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        assert await h.says(OPS, f"deploy REL-{rid} production") == (
            f"REL-{rid} goes to staging before production: deploy staging first "
            f"(`/release deploy REL-{rid} staging`).")
        assert h.pipeline_of(rid) is None


async def test_webhook_alone_reports_the_result(db_url: str, policy: Policy) -> None:
    """With no polling at all, the Pipeline Hook moves the release; a duplicate does nothing."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h, "web")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "success")
        assert await h.hook(pipeline.id, idempotency_key="k-1") == 200
        assert await h.hook(pipeline.id, idempotency_key="k-1") == 200
        assert await h.hook(pipeline.id, idempotency_key="k-2") == 200
        assert await state(h, rid) == "deployed"
        assert sum("📦 Deployed" in t for t in h.thread(rid)) == 1
        assert await h.poll() == 0


async def test_wrong_webhook_token_is_refused(db_url: str, policy: Policy) -> None:
    """401 for a wrong or missing token, and nothing is written."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h, "web")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "success")
        assert await h.hook(pipeline.id, secret="wrong") == 401
        assert await h.hook(pipeline.id, secret=None) == 401
        assert await state(h, rid) == "deploying"
        async with h.app[DEPS].sessions() as session:
            seen = (await session.exec(select(SeenDelivery))).all()
            audit = await q.audit_of(session, rid)
        assert seen == [] and audit[-1].action == "pipeline started"


async def test_gitlab_errors_for_a_cycle_then_one_announcement(db_url: str,
                                                              policy: Policy) -> None:
    """500s and a 429 leave the release alone; the next good cycle announces once."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h, "web")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        h.gitlab.set_status(pipeline.id, "success")
        h.gitlab.fail(status=500, times=2, path_prefix="/api/v4/projects")
        assert await h.poll() == 0
        assert await state(h, rid) == "deploying"
        h.app[POLLER].backoff_until.clear()
        assert await h.poll() == 1
        assert await h.poll() == 0
        assert sum("📦 Deployed" in t for t in h.thread(rid)) == 1


async def test_restart_while_a_pipeline_runs_announces_once(db_url: str,
                                                           policy: Policy) -> None:
    """The bot stops mid-deploy; after a restart it finds the result and says it once."""
    async with emulators() as emus:
        async with running_app(db_url, policy, emus=emus) as h:
            rid = await approved(h, "web")
            answer = await h.click(OPS, ActionId.DEPLOY)
            pipeline = h.pipeline_of(rid)
            assert pipeline is not None, answer
        emus[1].set_status(pipeline.id, "success")
        async with running_app(db_url, policy, emus=emus) as h2:
            assert await h2.poll() == 1
            assert await h2.poll() == 0
            assert await state(h2, rid) == "deployed"
            assert sum("📦 Deployed" in t for t in h2.thread(rid)) == 1
            assert len(h2.slack.messages(CHANNEL)) == 1


async def seed_active(h: Harness, per_project: dict[str, int]) -> None:
    """Active deploys with real pipelines, written straight to the database."""
    async with transaction(h.app[DEPS].sessions) as session:
        for key, count in per_project.items():
            path = h.app[DEPS].policy.project(key).gitlab
            for i in range(count):
                rel = Release(project=key, ref="main", title=f"load {i}", type="standard",
                              requester=DEV, state="deploying", checklist=[])
                session.add(rel)
                await session.flush()
                pipeline = h.gitlab.create_pipeline(path, "main")
                session.add(Deployment(release_id=rel.id, revision=1, project=key,
                                       environment=f"env{i}", ref="main", status="running",
                                       pipeline_id=pipeline.id, started_by=OPS))


async def test_poll_cost_grows_with_projects_not_pipelines(db_url: str, policy: Policy) -> None:
    """0 calls when idle, 1 for one deploy, 2 for 20 deploys over 2 projects."""
    async with running_app(db_url, policy) as h:
        poller = h.app[POLLER]
        for key in ("web", "payments"):  # each project's ID is looked up once, then kept
            await poller.deployer.gitlab.project_id(policy.project(key).gitlab)
        h.gitlab.reset_calls()
        await poller.poll_once()
        assert h.gitlab.count("/projects") == 0
        await seed_active(h, {"web": 1})
        h.gitlab.reset_calls()
        await poller.poll_once()
        assert h.gitlab.count("/projects") == 1
        await seed_active(h, {"web": 9, "payments": 10})
        h.gitlab.reset_calls()
        await poller.poll_once()
        assert h.gitlab.count("/projects") == 2


async def test_release_notes_listed_published_and_posted_at_close(db_url: str,
                                                                  policy: Policy) -> None:
    """Notes between the previous release and this one; a tag becomes a GitLab Release."""
    async with running_app(db_url, policy) as h:
        first = await approved(h, "payments", "v1.0.0")
        await through_production(h, first)
        await h.says(TESTER, f"verify REL-{first} pass")  # production takes one change at a time
        rid = await approved(h, "payments", "v1.1.0")
        notes = await h.says(DEV, f"notes REL-{rid}")
        titles = [mr.title for mr in h.gitlab.projects[1].merge_requests.values()
                  if mr.iid in (1, 2)]
        assert all(t in notes for t in titles) and "!1" in notes
        assert "published once the release is deployed" in await h.says(
            OPS, f"notes REL-{rid} publish")
        assert "v1.1.0" not in h.gitlab.projects[1].releases
        await through_production(h, rid)
        assert "Only the release manager" in await h.says(DEV, f"notes REL-{rid} publish")
        answer = await h.says(OPS, f"notes REL-{rid} publish")
        assert "Published v1.1.0 as a GitLab release" in answer
        assert "v1.1.0" in h.gitlab.projects[1].releases
        assert "already exists" in await h.says(OPS, f"notes REL-{rid} publish")
        await h.click(TESTER, ActionId.VERIFY_PASS)
        assert "under observation until" in await h.says(OPS, f"close REL-{rid}")
        assert f"REL-{rid} is closed" in await h.says(CTO, f"close REL-{rid} all quiet")
        await h.settle()
        closing = h.thread(rid)[-1]
        assert f"REL-{rid} is closed" in closing and titles[0] in closing
        for part in ("Signed off by", "test report", "*Deploys*", "*Timeline*", "Release notes"):
            assert part in closing


async def test_a_push_after_sign_off_ships_the_pinned_commit(db_url: str, policy: Policy) -> None:
    """The branch moves after approval: the tag and pipeline carry the signed-off commit."""
    async with running_app(db_url, policy) as h:
        signed = h.gitlab.resolve(h.gitlab.project("acme/web"), "release")
        short = signed.sha[:7]
        answer = await h.says(DEV, "request web release Checkout")
        rid = int(answer.split("REL-")[1].split(".")[0])
        await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
        await h.settle()  # the asks are read before anyone signs: a signed ask is not sent
        asks = [readable(m) for who in (DIRECTOR, LEAD) for m in h.slack.dms(who)
                if "needs your sign-off" in readable(m)]
        assert len(asks) == 2 and all(f"@ `{short}`" in ask for ask in asks)
        for approver in (DIRECTOR, LEAD):
            await h.says(approver, f"approve REL-{rid}")
        await h.settle()
        assert f"`release` @ `{short}`" in str(h.card(rid).blocks)
        assert f"`release` @ `{short}`" in await h.says(DEV, f"status REL-{rid}")
        h.gitlab.push("acme/web", "release", title="Untested change pushed after sign-off")
        await h.click(OPS, ActionId.DEPLOY)
        pipeline = h.pipeline_of(rid)
        assert (pipeline.ref, pipeline.sha) == (f"release/REL-{rid}", signed.sha)
        assert variable(pipeline.variables, "RELEASE_SHA") == signed.sha
        assert h.gitlab.project("acme/web").tags[f"release/REL-{rid}"].sha == signed.sha
        await h.settle()
        assert ("`release` has 1 newer commit that is not in this release"
                in str(h.card(rid).blocks))
