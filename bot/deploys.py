"""Deploys and rollbacks through GitLab: commit, start the pipeline, take results; verify, close."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.gitlab import FINAL, GitLabClient, GitLabError
from bot.transition import (
    Deps,
    Outcome,
    check_revision,
    close_step,
    detail_of,
    load_facts,
    locked,
    record,
    rollback_target,
    run_in_transaction,
    step,
    traced_decide,
    transition,
)
from bot.workflow import EVENTS, SYSTEM, Actor, Ctx, Event, Facts, Refused, State
from storage import queries as q
from storage.models import Deployment, Release

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineResult:
    """A pipeline's end as GitLab reported it (webhook or poll)."""

    project: str  # the policy's project key
    pipeline_id: int
    status: str
    failed_job: str | None = None
    failed_job_url: str | None = None


@dataclass(frozen=True)
class DeployStart:
    """A deploy or rollback the bot has committed to; the caller starts its pipeline."""

    outcome: Outcome
    deployment: Deployment


def next_environment(facts: Facts) -> str:
    """The first environment this release has not reached (staging before production)."""
    return next((e for e in facts.environments if e not in facts.deployed_envs), facts.production)


# --- committing to a deploy, in one transaction each ---------------------------------------------

async def _hold(session: AsyncSession, deps: Deps, release: Release, env: str, actor: Actor,
                *, rollback: bool, ref: str, previous_ref: str | None) -> Deployment:
    """Take the environment's deploy lock and write the deployment row."""
    lock = await q.take_deploy_lock(session, project=release.project, environment=env,
                                    release_id=release.id, holder=actor.user)
    if lock.release_id != release.id:
        raise Refused(f"{release.project} {env} is busy: REL-{lock.release_id} is deploying.")
    return await q.add_deployment(session, release=release, environment=env, ref=ref,
                                  previous_ref=previous_ref, rollback=rollback,
                                  started_by=actor.user, at=deps.clock())


async def start_deploy(deps: Deps, *, release_id: int, actor: Actor,
                       environment: str | None = None, revision: int | None = None
                       ) -> DeployStart:
    """Commit to deploying the release's current ref to one environment."""

    async def work(session: AsyncSession) -> DeployStart:
        release = await locked(session, release_id)
        check_revision(release, revision)
        facts = await load_facts(session, deps, release, EVENTS[Event.DEPLOY].reads)
        env = environment or next_environment(facts)
        dest = traced_decide(deps, release, facts, Event.DEPLOY, Ctx(actor, environment=env))
        previous = await q.live_ref(session, release.project, env)
        dep = await _hold(session, deps, release, env, actor, rollback=False, ref=release.ref,
                          previous_ref=previous)
        outcome = await record(session, deps, release, Event.DEPLOY, actor, dest, {
            "environment": env, "ref": release.ref, "previous_ref": previous,
            "deployment": dep.id})
        return DeployStart(outcome, dep)

    return await run_in_transaction(deps, work)


async def start_rollback(deps: Deps, *, release_id: int, actor: Actor, reason: str = "",
                         revision: int | None = None) -> DeployStart:
    """Commit to redeploying the version that was live before this release."""
    holder: list[Deployment] = []

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        env, ref = rollback_target(await q.deployments_of(session, rel.id))
        if env is None or ref is None:  # the can_roll_back guard has already refused this
            raise Refused("There is no recorded previous version to roll back to.")
        dep = await _hold(session, deps, rel, env, actor, rollback=True, ref=ref,
                          previous_ref=rel.ref)
        holder[:] = [dep]
        return {"environment": env, "ref": ref, "reason": reason.strip(), "deployment": dep.id}

    ctx = Ctx(actor, reason=reason, revision=revision)
    outcome = await transition(deps, release_id, Event.ROLLBACK, ctx, apply)
    return DeployStart(outcome, holder[0])


async def record_pipeline(deps: Deps, *, deployment_id: int, pipeline_id: int, url: str,
                          previous_ref: str | None = None) -> Outcome:
    """The pipeline for a committed deploy exists: say so, with its link."""

    async def work(session: AsyncSession) -> Outcome:
        dep = await q.get_deployment(session, deployment_id=deployment_id)
        if dep is None:
            raise Refused(f"No deployment {deployment_id}.")
        release = await locked(session, dep.release_id)
        dep.pipeline_id, dep.pipeline_url, dep.status = pipeline_id, url, "running"
        if dep.previous_ref is None and previous_ref:
            dep.previous_ref = previous_ref
        detail = {"environment": dep.environment, "pipeline": pipeline_id, "url": url,
                  "ref": dep.ref, "rollback": dep.rollback, "deployment": dep.id}
        return await record(session, deps, release, Event.PIPELINE_STARTED, SYSTEM,
                            State(release.state), detail)

    return await run_in_transaction(deps, work)


def _result_event(dep: Deployment, status: str) -> Event:
    """The event a finished pipeline raises: deploy or rollback, succeeded or failed."""
    if dep.rollback:
        return Event.ROLLBACK_SUCCEEDED if status == "success" else Event.ROLLBACK_FAILED
    return Event.DEPLOY_SUCCEEDED if status == "success" else Event.DEPLOY_FAILED


async def finish_deploy(deps: Deps, *, deployment_id: int, status: str,
                        failed_job: str | None = None, failed_job_url: str | None = None,
                        error: str | None = None) -> Outcome:
    """A pipeline ended; announced once however many times GitLab or the poller report it."""

    async def work(session: AsyncSession) -> Outcome:
        dep = await q.get_deployment(session, deployment_id=deployment_id, lock=True)
        if dep is None:
            raise Refused(f"No deployment {deployment_id}.")
        release = await locked(session, dep.release_id)
        # Read again after the release lock: a racing finisher may have committed meanwhile.
        dep = await q.get_deployment(session, deployment_id=deployment_id, fresh=True)
        assert dep is not None  # deployments are never deleted
        if dep.status in FINAL:
            state = State(release.state)
            return Outcome(release, _result_event(dep, dep.status), state, state,
                           {"deployment": dep.id}, changed=False)
        return await _finish(session, deps, release, dep, status, failed_job, failed_job_url,
                             error)

    return await run_in_transaction(deps, work)


async def _finish(session: AsyncSession, deps: Deps, release: Release, dep: Deployment,
                  status: str, failed_job: str | None, failed_job_url: str | None,
                  error: str | None) -> Outcome:
    """Write the result, free the environment and move the release."""
    now = deps.clock()
    dep.status = status if status in FINAL else "failed"
    dep.finished_at, dep.failed_job, dep.failed_job_url = now, failed_job, failed_job_url
    await q.release_deploy_lock(session, project=dep.project, environment=dep.environment,
                                release_id=release.id)
    started = dep.started_at
    detail = {"environment": dep.environment, "ref": dep.ref, "pipeline": dep.pipeline_id,
              "url": dep.pipeline_url, "status": dep.status, "failed_job": failed_job,
              "failed_job_url": failed_job_url, "error": error, "deployment": dep.id,
              "seconds": round((now - started).total_seconds()) if started else None}
    return await step(session, deps, release, _result_event(dep, status),
                      Ctx(SYSTEM, environment=dep.environment), detail_of(detail))


# --- after the deploy -----------------------------------------------------------------------------

async def verify(deps: Deps, *, release_id: int, actor: Actor, passed: bool,
                 note: str = "", revision: int | None = None) -> Outcome:
    """Online verification; a pass starts observation (or closes when there is none)."""
    event = Event.VERIFY_PASS if passed else Event.VERIFY_FAIL

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        rel.verification_note = note.strip() or None
        return {"note": note.strip()}

    ctx = Ctx(actor, reason=note, revision=revision)
    return await transition(deps, release_id, event, ctx, apply)


async def close(deps: Deps, *, release_id: int, actor: Actor, revision: int | None = None,
                notes: str = "") -> Outcome:
    """End the release (after observation, or early by the release manager)."""

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_revision(release, revision)
        return await close_step(session, deps, release, actor, notes)

    return await run_in_transaction(deps, work)


# --- GitLab ---------------------------------------------------------------------------------------

class Deployer:
    """The one path from a decision to deploy to a GitLab pipeline, and back."""

    def __init__(self, deps: Deps, gitlab: GitLabClient) -> None:
        self.deps, self.gitlab = deps, gitlab

    async def deploy(self, *, release_id: int, actor: Actor, environment: str | None = None,
                     revision: int | None = None) -> Outcome:
        """Deploy the release's ref to its next (or the named) environment."""
        start = await start_deploy(self.deps, release_id=release_id, actor=actor,
                                   environment=environment, revision=revision)
        return await self.launch(start.deployment)

    async def rollback(self, *, release_id: int, actor: Actor, reason: str = "",
                       revision: int | None = None) -> Outcome:
        """Redeploy the version that was live before."""
        start = await start_rollback(self.deps, release_id=release_id, actor=actor,
                                     reason=reason, revision=revision)
        return await self.launch(start.deployment)

    async def launch(self, dep: Deployment) -> Outcome:
        """Start the committed deployment's pipeline; a GitLab refusal ends it as failed."""
        project = self.deps.policy.project(dep.project)
        previous = dep.previous_ref
        if previous is None and not dep.rollback:
            previous = await self._live_in_gitlab(project.gitlab, dep.environment)
        variables = {**project.deploy_variables, "RELEASE_ID": f"REL-{dep.release_id}",
                     "DEPLOY_ENV": dep.environment, "ROLLBACK": "true" if dep.rollback else "false"}
        try:
            pipeline = await self.gitlab.create_pipeline(project.gitlab, dep.ref, variables)
        except GitLabError as exc:
            log.warning("REL-%s: pipeline not started: %s", dep.release_id, exc)
            return await finish_deploy(self.deps, deployment_id=dep.id, status="failed",
                                       error=str(exc))
        return await record_pipeline(self.deps, deployment_id=dep.id, pipeline_id=pipeline.id,
                                     url=pipeline.web_url, previous_ref=previous)

    async def _live_in_gitlab(self, project: str | int, environment: str) -> str | None:
        """What GitLab last deployed there, when the bot has no record of its own."""
        try:
            return await self.gitlab.last_deployed_ref(project, environment)
        except GitLabError as exc:
            log.info("live ref of %s %s unknown: %s", project, environment, exc)
            return None

    async def take_result(self, result: PipelineResult) -> Outcome | None:
        """A pipeline ended: move its release once, however often this is called."""
        if result.status not in FINAL:
            return None
        async with self.deps.sessions() as session:
            dep = await q.deployment_by_pipeline(session, result.project, result.pipeline_id)
        if dep is None or dep.status in FINAL:
            return None
        job, url = result.failed_job, result.failed_job_url
        if result.status == "failed" and url is None:  # hooks name the job but give no link
            job, url = await self._failed_job(dep, job)
        return await finish_deploy(self.deps, deployment_id=dep.id, status=result.status,
                                   failed_job=job, failed_job_url=url)

    async def _failed_job(self, dep: Deployment,
                          known: str | None) -> tuple[str | None, str | None]:
        """The job that failed and its link, for the announcement (best effort)."""
        project = self.deps.policy.project(dep.project)
        try:
            job = await self.gitlab.failed_job(project.gitlab, dep.pipeline_id or 0)
        except GitLabError:
            return known, None
        return (job.name, job.web_url) if job else (known, None)
