"""Stuck deploys: every GitLab pipeline status through the poller and the webhook path; abandon."""

from __future__ import annotations

from typing import Any

import pytest
from sqlmodel import select

from bot.deploys import Deployer
from bot.gitlab import FINAL, WAITING
from bot.jobs import Poller
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.gitlab import PIPELINE_STATUSES, GitLabEmulator, JobSpec
from emulators.sample import DEV, OPS, TESTER, sample_policy
from storage import queries as q
from storage.models import AuditEntry, DeployLock
from tests.fixtures import FakeClock, gitlab_client, signed_off, state_of, who

WEB = 2  # acme/web in the emulator: production only, no checklist
STILL_RUNNING = [s for s in PIPELINE_STATUSES if s not in FINAL | WAITING]
RESULT = {"success": State.DEPLOYED, "failed": State.DEPLOY_FAILED,
          "canceled": State.DEPLOY_FAILED, "skipped": State.DEPLOY_FAILED}


@pytest.fixture
def deployer(deps: Deps, gitlab: GitLabEmulator, clock: FakeClock) -> Deployer:
    """The deployer over the test's GitLab, which shares the test's clock."""
    gitlab.clock = clock
    return Deployer(deps, gitlab_client(gitlab))


@pytest.fixture
def poller(deps: Deps, deployer: Deployer) -> Poller:
    """A poller with no cursor yet."""
    return Poller(deps, deployer)


async def deploying(deps: Deps, deployer: Deployer, gitlab: GitLabEmulator,
                    when: str = "on_success") -> tuple[int, int]:
    """A web release whose production pipeline exists; (release id, pipeline id)."""
    if when != "on_success":
        gitlab.set_jobs(WEB, [JobSpec("build", "build"), JobSpec("deploy", "deploy", True, when)],
                        manual_deploy=when == "manual")
    rid = await signed_off(deps, project="web")
    out = await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    return rid, out.detail["pipeline"]


async def stuck_notices(deps: Deps) -> list[dict[str, Any]]:
    """The stuck reports queued so far (outbox rows, delivered or not)."""
    async with deps.sessions() as session:
        rows = await q.pending_outbox(session, now=deps.clock(), limit=10_000)
    return [m.payload for m in rows if m.kind == "notify" and m.payload["notice"] == "stuck"]


@pytest.mark.parametrize("status", sorted(FINAL))
async def test_a_final_status_moves_the_release(status: str, deps: Deps, deployer: Deployer,
                                               poller: Poller, gitlab: GitLabEmulator) -> None:
    """success deploys; failed, canceled and skipped fail the deploy; nothing is reported."""
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, status)
    assert await poller.poll_once() == 1
    assert await state_of(deps, rid) is RESULT[status]
    assert await stuck_notices(deps) == []


@pytest.mark.parametrize(("status", "when", "job"), [("manual", "manual", "deploy:production"),
                                                     ("scheduled", "delayed",
                                                      "deploy:production")])
async def test_a_waiting_pipeline_is_reported_once(status: str, when: str, job: str, deps: Deps,
                                                   deployer: Deployer, poller: Poller,
                                                   gitlab: GitLabEmulator,
                                                   clock: FakeClock) -> None:
    """manual and scheduled: the thread and the release managers hear why, once."""
    rid, pipeline = await deploying(deps, deployer, gitlab, when)
    gitlab.set_status(pipeline, status)
    gitlab.reset_calls()
    assert await poller.poll_once() == 0
    assert gitlab.count("/projects") == 2  # the list, and the job it waits on
    [report] = await stuck_notices(deps)
    assert report["thread"] and report["roles"] == ["release_manager"]
    assert {k: report["detail"][k] for k in ("kind", "status", "job", "stage", "environment")} == {
        "kind": status, "status": status, "job": job, "stage": "deploy",
        "environment": "production"}
    for minutes in (1, 90):  # long after the timeout, still this one report and one list a cycle
        clock.advance(minutes=minutes)
        gitlab.reset_calls()
        assert await poller.poll_once() == 0
        assert gitlab.count("/projects") == 1
    assert len(await stuck_notices(deps)) == 1
    assert await state_of(deps, rid) is State.DEPLOYING


@pytest.mark.parametrize("status", STILL_RUNNING)
async def test_a_pipeline_on_its_way_is_reported_only_after_the_timeout(
        status: str, deps: Deps, deployer: Deployer, poller: Poller, gitlab: GitLabEmulator,
        clock: FakeClock) -> None:
    """Not final: nothing until deploy_timeout_minutes, then its status and time, once.

    GitLab no longer lists the pipeline as updated, so the late one is read on its own.
    """
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, status)
    assert await poller.poll_once() == 0
    clock.advance(minutes=59)
    assert await poller.poll_once() == 0
    assert await stuck_notices(deps) == []
    clock.advance(minutes=2)
    gitlab.reset_calls()
    assert await poller.poll_once() == 0
    assert gitlab.count("/projects") == 2  # the list, then this late pipeline
    [report] = await stuck_notices(deps)
    assert report["detail"]["kind"] == "timeout" and report["detail"]["status"] == status
    assert report["detail"]["minutes"] == 61
    gitlab.reset_calls()
    assert await poller.poll_once() == 0
    assert gitlab.count("/projects") == 1 and len(await stuck_notices(deps)) == 1
    assert await state_of(deps, rid) is State.DEPLOYING


async def test_the_timeout_is_the_policy_s(deps: Deps, deployer: Deployer, poller: Poller,
                                           gitlab: GitLabEmulator, clock: FakeClock) -> None:
    """deploy_timeout_minutes: 10 reports a running deploy after ten minutes."""
    deps.policy = sample_policy(deploy_timeout_minutes=10)
    _, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, "running")
    clock.advance(minutes=10)
    await poller.poll_once()
    [report] = await stuck_notices(deps)
    assert report["detail"]["minutes"] == 10


async def test_the_webhook_path_reports_a_waiting_pipeline(deps: Deps, deployer: Deployer,
                                                           gitlab: GitLabEmulator) -> None:
    """A hook only triggers a read: GitLab's manual is reported; running changes nothing."""
    rid, pipeline = await deploying(deps, deployer, gitlab, "manual")
    gitlab.set_status(pipeline, "running")
    assert await deployer.take_hook("web", pipeline) is None
    assert await stuck_notices(deps) == []
    gitlab.set_status(pipeline, "manual")
    assert await deployer.take_hook("web", pipeline) is None
    assert await deployer.take_hook("web", pipeline) is None
    assert len(await stuck_notices(deps)) == 1
    assert await state_of(deps, rid) is State.DEPLOYING


# --- abandon ------------------------------------------------------------------------------------

async def audit(deps: Deps, rid: int) -> list[AuditEntry]:
    """The release's audit rows."""
    async with deps.sessions() as session:
        return list(await q.audit_of(session, rid))


async def locks(deps: Deps) -> list[DeployLock]:
    """Every deploy lock held."""
    async with deps.sessions() as session:
        return list((await session.exec(select(DeployLock))).all())


async def test_abandon_cancels_in_gitlab_frees_the_lock_and_a_new_deploy_starts(
        deps: Deps, deployer: Deployer, gitlab: GitLabEmulator) -> None:
    """A pipeline stuck on a manual job: cancelled in GitLab (which leaves the manual job),
    counted as failed, audited with the reason, and the environment free again."""
    rid, pipeline = await deploying(deps, deployer, gitlab, "manual")
    gitlab.set_status(pipeline, "manual")
    out = await deployer.abandon(release_id=rid, actor=who(deps, OPS),
                                 reason="nobody can start the job")
    assert out.to_state is State.DEPLOY_FAILED and out.detail["gitlab_status"] == "manual"
    assert gitlab.count(f"/projects/{WEB}/pipelines/{pipeline}/cancel", "POST") == 1
    assert gitlab.pipelines[pipeline].status == "manual"  # GitLab cancels no manual job
    assert await locks(deps) == []
    row = (await audit(deps, rid))[-1]
    assert (row.action, row.actor, row.to_state) == ("abandon", OPS, "deploy_failed")
    assert row.detail["reason"] == "nobody can start the job"
    again = await deployer.deploy(release_id=rid, actor=who(deps, OPS))
    assert again.to_state is State.DEPLOYING and again.detail["pipeline"] != pipeline


async def test_abandon_of_a_running_pipeline_cancels_it(deps: Deps, deployer: Deployer,
                                                        gitlab: GitLabEmulator) -> None:
    """Running jobs are cancelled; a later result of that pipeline changes nothing."""
    gitlab.canceling_seconds = None
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, "running")
    await deployer.abandon(release_id=rid, actor=who(deps, OPS), reason="hangs")
    assert gitlab.pipelines[pipeline].status == "canceling"
    gitlab.finish_canceling(pipeline)
    assert await deployer.take_hook("web", pipeline) is None
    assert await state_of(deps, rid) is State.DEPLOY_FAILED


@pytest.mark.parametrize(("user", "reason", "sentence"), [
    (DEV, "stuck", "Only the release manager can do that."),
    (TESTER, "stuck", "Only the release manager can do that."),
    (OPS, "  ", "Please give a reason."),
])
async def test_abandon_is_refused_before_gitlab(user: str, reason: str, sentence: str,
                                               deps: Deps, deployer: Deployer,
                                               gitlab: GitLabEmulator) -> None:
    """Wrong role or no reason: a sentence, no GitLab call, nothing written."""
    rid, pipeline = await deploying(deps, deployer, gitlab, "manual")
    gitlab.set_status(pipeline, "manual")
    before = len(await audit(deps, rid))
    gitlab.reset_calls()
    with pytest.raises(Refused) as err:
        await deployer.abandon(release_id=rid, actor=who(deps, user), reason=reason)
    assert err.value.sentence == sentence
    assert gitlab.count("/projects") == 0 and len(await audit(deps, rid)) == before
    assert await state_of(deps, rid) is State.DEPLOYING and len(await locks(deps)) == 1


async def test_abandon_only_while_a_pipeline_runs(deps: Deps, deployer: Deployer,
                                                  gitlab: GitLabEmulator) -> None:
    """After the result is in, there is nothing to abandon."""
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, "success")
    await deployer.take_hook("web", pipeline)
    with pytest.raises(Refused, match="Only a running deploy or rollback can be abandoned"):
        await deployer.abandon(release_id=rid, actor=who(deps, OPS), reason="late")


async def test_a_pipeline_that_ended_before_the_cancel_takes_its_own_result(
        deps: Deps, deployer: Deployer, gitlab: GitLabEmulator) -> None:
    """GitLab says success (the cancel changed nothing): the deploy succeeded, not abandoned."""
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, "success")
    out = await deployer.abandon(release_id=rid, actor=who(deps, OPS), reason="looked stuck")
    assert out.to_state is State.DEPLOYED and out.detail["status"] == "success"
    assert [a.action for a in await audit(deps, rid)][-1] == "deploy succeeded"


async def test_a_failed_cancel_refuses_and_writes_nothing(deps: Deps, deployer: Deployer,
                                                         gitlab: GitLabEmulator) -> None:
    """GitLab errs on the cancel and shows the pipeline running: refused, the lock stays."""
    rid, pipeline = await deploying(deps, deployer, gitlab)
    gitlab.set_status(pipeline, "running")
    gitlab.fail(status=500, times=-1, path_prefix=f"/projects/{WEB}/pipelines/{pipeline}/cancel")
    before = len(await audit(deps, rid))
    with pytest.raises(Refused) as err:
        await deployer.abandon(release_id=rid, actor=who(deps, OPS), reason="hangs")
    assert err.value.sentence.startswith(f"GitLab did not cancel pipeline #{pipeline}: GitLab "
                                         "unavailable (500). Nothing was changed")
    assert await state_of(deps, rid) is State.DEPLOYING and len(await locks(deps)) == 1
    assert len(await audit(deps, rid)) == before
    gitlab.set_status(pipeline, "failed")  # the same error, but GitLab shows it finished
    out = await deployer.abandon(release_id=rid, actor=who(deps, OPS), reason="hangs")
    assert out.to_state is State.DEPLOY_FAILED and out.detail["status"] == "failed"
    assert [a.action for a in await audit(deps, rid)][-1] == "deploy failed"
