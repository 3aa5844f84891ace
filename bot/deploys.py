"""Deploys and rollbacks through GitLab: commit, start the pipeline, take results; verify, close."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.gitlab import FINAL, GitLabClient, GitLabError
from bot.releases import clean_text
from bot.transition import (
    Deps,
    Outcome,
    check_revision,
    close_step,
    detail_of,
    load_facts,
    locked,
    reached_envs,
    record,
    rollback_target,
    run_in_transaction,
    step,
    traced_decide,
    transition,
)
from bot.workflow import (
    ACTIVE,
    SYSTEM,
    UNVERIFIED,
    Actor,
    Ctx,
    Event,
    Facts,
    Refused,
    State,
    reads_for,
)
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
    sha: str | None = None  # the commit GitLab says the pipeline ran


@dataclass(frozen=True)
class DeployStart:
    """A deploy or rollback the bot has committed to; the caller starts its pipeline."""

    outcome: Outcome
    deployment: Deployment


def next_environment(facts: Facts) -> str:
    """The first environment this release has not reached (staging before production)."""
    return next((e for e in facts.environments if e not in facts.deployed_envs), facts.production)


# --- committing to a deploy, in one transaction each ---------------------------------------------

@dataclass(frozen=True)
class Shipped:
    """A version in an environment: the tag or ref it came from, its commit, its release."""

    ref: str | None
    sha: str | None = None
    release_id: int | None = None  # None: not one the bot deployed


def release_tag(deps: Deps, release_id: int) -> str:
    """The tag every deploy of a release runs on."""
    return f"{deps.policy.tag_prefix}REL-{release_id}"


async def _tag_for(session: AsyncSession, deps: Deps, release: Release) -> str:
    """The release's tag; a fix set after a failed verification ships on a tag of its own.

    That is the one way a release deploys a second commit; its first tag stays where it was.
    """
    tag = release_tag(deps, release.id)
    shipped = {d.sha for d in await q.deployments_of(session, release.id)
               if not d.rollback and d.sha}
    if release.pinned_sha and shipped - {release.pinned_sha}:
        return f"{tag}-{release.pinned_sha[:7]}"
    return tag


def running(dep: Deployment | None) -> Shipped | None:
    """What a successful deploy or rollback left running in its environment."""
    return None if dep is None else Shipped(dep.ref, dep.sha, dep.runs_release_id)


async def _hold(session: AsyncSession, deps: Deps, release: Release, env: str, actor: Actor,
                *, rollback: bool, ships: Shipped, before: Shipped | None) -> Deployment:
    """Take the environment's deploy lock and write the deployment row."""
    lock = await q.take_deploy_lock(session, project=release.project, environment=env,
                                    release_id=release.id, holder=actor.user)
    if lock.release_id != release.id:
        raise Refused(f"{release.project} {env} is busy: REL-{lock.release_id} is deploying.")
    before = before or Shipped(None)
    return await q.add_deployment(
        session, release=release, environment=env, rollback=rollback, started_by=actor.user,
        at=deps.clock(), ref=ships.ref or release.ref, sha=ships.sha,
        runs_release_id=ships.release_id, previous_ref=before.ref, previous_sha=before.sha,
        previous_release_id=before.release_id)


async def start_deploy(deps: Deps, *, release_id: int, actor: Actor,
                       environment: str | None = None, revision: int | None = None
                       ) -> DeployStart:
    """Commit to deploying the release's current ref to one environment."""

    async def work(session: AsyncSession) -> DeployStart:
        release = await locked(session, release_id)
        check_revision(release, revision)
        facts = await load_facts(session, deps, release,
                                 reads_for(Event.DEPLOY, State(release.state)))
        env = environment or next_environment(facts)
        dest = traced_decide(deps, release, facts, Event.DEPLOY, Ctx(actor, environment=env))
        await _environment_free(session, release, env, facts.production)
        before = running(await q.live_deployment(session, release.project, env))
        ships = Shipped(await _tag_for(session, deps, release), release.pinned_sha, release.id)
        dep = await _hold(session, deps, release, env, actor, rollback=False, ships=ships,
                          before=before)
        outcome = await record(session, deps, release, Event.DEPLOY, actor, dest, {
            "environment": env, "ref": release.ref, "sha": release.pinned_sha, "tag": dep.ref,
            "previous_ref": dep.previous_ref, "previous_sha": dep.previous_sha,
            "deployment": dep.id})
        return DeployStart(outcome, dep)

    return await run_in_transaction(deps, work)


async def start_rollback(deps: Deps, *, release_id: int, actor: Actor, reason: str = "",
                         revision: int | None = None) -> DeployStart:
    """Commit to redeploying the version that was live before this release."""
    holder: list[Deployment] = []

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        undo = rollback_target(await q.deployments_of(session, rel.id))
        if undo is None:  # the can_roll_back guard has already refused this
            raise Refused("There is no recorded previous version to roll back to.")
        await _still_ours(session, rel, undo.environment)
        back = _rollback_ref(deps, rel, undo)
        ships = Shipped(back, undo.previous_sha, undo.previous_release_id)
        dep = await _hold(session, deps, rel, undo.environment, actor, rollback=True,
                          ships=ships, before=running(undo))
        holder[:] = [dep]
        return {"environment": dep.environment, "ref": undo.previous_ref or back,
                "sha": undo.previous_sha, "tag": back, "reason": reason.strip(),
                "deployment": dep.id}

    ctx = Ctx(actor, reason=reason, revision=revision)
    outcome = await transition(deps, release_id, Event.ROLLBACK, ctx, apply)
    return DeployStart(outcome, holder[0])


async def _environment_free(session: AsyncSession, release: Release, env: str,
                            production: str) -> None:
    """Refuse a deploy that would overwrite what another release holds or has not verified.

    An environment before production is reserved from a release's successful deploy there
    until it reaches production, is rolled back or is cancelled; production takes one
    unverified change at a time.
    """
    if env != production:
        for other in await q.deployed_releases(session, release.project, env, states=ACTIVE):
            if other.id != release.id and not await _reached(session, other, production):
                raise Refused(f"{release.project} {env} is reserved for {other.rel_id} until "
                              f"it reaches {production}, is rolled back or is cancelled.")
        return
    live = running(await q.live_deployment(session, release.project, env))
    if live is None or live.release_id in (None, release.id):
        return
    other = await q.get_release(session, live.release_id)
    if other is not None and State(other.state) is State.VERIFICATION_FAILED:
        raise Refused(f"{release.project} {production} runs {other.rel_id}, which failed its "
                      f"verification: roll it back first.")
    if other is not None and State(other.state) in UNVERIFIED:
        raise Refused(f"{release.project} {production} runs {other.rel_id}, which is not "
                      f"verified yet: verify it or roll it back first.")


async def _reached(session: AsyncSession, release: Release, env: str) -> bool:
    """Whether this revision of the release deployed to env successfully."""
    return env in reached_envs(await q.deployments_of(session, release.id), release.revision)


async def _still_ours(session: AsyncSession, release: Release, env: str) -> None:
    """Roll back only what this release put in env, while it is still there."""
    latest = await q.latest_deployment(session, release.project, env)
    if latest is None or (latest.release_id == release.id and not latest.rollback):
        return
    runs = running(await q.live_deployment(session, release.project, env))
    holder = runs.release_id if runs else None
    if holder is not None and holder != release.id:
        raise Refused(f"{release.project} {env} runs REL-{holder} now; roll back REL-{holder} "
                      "first.")
    raise Refused(f"{release.project} {env} no longer runs {release.rel_id}; "
                  "rolling it back would overwrite what runs there now.")


def _rollback_ref(deps: Deps, release: Release, undo: Deployment) -> str:
    """A ref at exactly the commit that ran before: the bot's own tag, or one made for it."""
    previous = undo.previous_ref or ""
    if not undo.previous_sha or previous.startswith(deps.policy.tag_prefix):
        return previous or str(undo.previous_sha)
    return f"{release_tag(deps, release.id)}-rollback"


async def record_pipeline(deps: Deps, *, deployment_id: int, pipeline_id: int, url: str,
                          previous: Shipped | None = None, newer_commits: int = 0) -> Outcome:
    """The pipeline for a committed deploy exists: say so, with its link."""

    async def work(session: AsyncSession) -> Outcome:
        dep = await q.get_deployment(session, deployment_id=deployment_id)
        if dep is None:
            raise Refused(f"No deployment {deployment_id}.")
        release = await locked(session, dep.release_id)
        dep.pipeline_id, dep.pipeline_url, dep.status = pipeline_id, url, "running"
        if dep.previous_ref is None and dep.previous_sha is None and previous is not None:
            dep.previous_ref, dep.previous_sha = previous.ref, previous.sha
        if not dep.rollback:
            release.newer_commits = newer_commits
        detail = {"environment": dep.environment, "pipeline": pipeline_id, "url": url,
                  "ref": dep.ref, "sha": dep.sha, "rollback": dep.rollback,
                  "deployment": dep.id}
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
    shown = dep.ref if dep.rollback else release.ref  # people know a release by its ref
    detail = {"environment": dep.environment, "ref": shown, "sha": dep.sha, "tag": dep.ref,
              "pipeline": dep.pipeline_id,
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
                notes: str = "", reason: str = "") -> Outcome:
    """End the release after observation (early only by an executive, with a reason)."""

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_revision(release, revision)
        return await close_step(session, deps, release, actor, notes, clean_text(reason))

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
        """Tag the commit, start the pipeline on the tag; a GitLab refusal ends it as failed."""
        project = self.deps.policy.project(dep.project).gitlab
        try:
            if dep.sha:
                await self._tag(project, dep.ref, dep.sha)
            previous = None if dep.rollback else await self._live_in_gitlab(project, dep)
            newer = 0 if dep.rollback else await self._newer_commits(project, dep)
            pipeline = await self.gitlab.create_pipeline(project, dep.ref, self._variables(dep))
        except GitLabError as exc:
            log.warning("REL-%s: pipeline not started: %s", dep.release_id, exc)
            return await finish_deploy(self.deps, deployment_id=dep.id, status="failed",
                                       error=str(exc))
        return await record_pipeline(self.deps, deployment_id=dep.id, pipeline_id=pipeline.id,
                                     url=pipeline.web_url, previous=previous,
                                     newer_commits=newer)

    def _variables(self, dep: Deployment) -> dict[str, str]:
        """The project's deploy variables and the bot's own, for the pipeline."""
        project = self.deps.policy.project(dep.project)
        return {**project.deploy_variables, "RELEASE_ID": f"REL-{dep.release_id}",
                "DEPLOY_ENV": dep.environment, "ROLLBACK": "true" if dep.rollback else "false",
                "RELEASE_SHA": dep.sha or ""}

    async def _tag(self, project: str | int, tag: str, sha: str) -> None:
        """Make `tag` point at `sha`; a tag already elsewhere stops the deploy."""
        at = await self.gitlab.ensure_tag(project, tag, sha)
        if at != sha:
            raise GitLabError(f"the tag {tag} already points at {at[:7]}, not at {sha[:7]}; "
                              "remove or rename that tag, then deploy again")

    async def _live_in_gitlab(self, project: str | int, dep: Deployment) -> Shipped | None:
        """What GitLab last deployed there, when the bot has no record of its own."""
        if dep.previous_ref or dep.previous_sha:
            return None
        try:
            found = await self.gitlab.last_deployment(project, dep.environment)
        except GitLabError as exc:
            log.info("live version of %s %s unknown: %s", project, dep.environment, exc)
            return None
        return Shipped(found[1], found[0]) if found else None

    async def _newer_commits(self, project: str | int, dep: Deployment) -> int:
        """How far the release's ref has moved on since its commit was pinned (best effort)."""
        async with self.deps.sessions() as session:
            release = await q.get_release(session, dep.release_id)
        if release is None or not dep.sha or release.ref == dep.sha:
            return 0
        try:
            return await self.gitlab.commits_between(project, dep.sha, release.ref)
        except GitLabError as exc:
            log.info("REL-%s: newer commits unknown: %s", dep.release_id, exc)
            return 0

    async def take_hook(self, project: str, pipeline_id: int) -> Outcome | None:
        """A webhook named a pipeline: act on what GitLab itself says of it, never the hook."""
        async with self.deps.sessions() as session:
            dep = await q.deployment_by_pipeline(session, project, pipeline_id)
        if dep is None or dep.status in FINAL:
            return None
        gitlab_project = self.deps.policy.project(project).gitlab
        found = await self.gitlab.get_pipeline(gitlab_project, pipeline_id)
        return await self.take_result(PipelineResult(project, found.id, found.status,
                                                     sha=found.sha))

    async def take_result(self, result: PipelineResult) -> Outcome | None:
        """A pipeline ended (as GitLab reports it): move its release once, however often."""
        if result.status not in FINAL:
            return None
        async with self.deps.sessions() as session:
            dep = await q.deployment_by_pipeline(session, result.project, result.pipeline_id)
        if dep is None or dep.status in FINAL:
            return None
        if dep.sha and result.sha and result.sha != dep.sha:
            log.warning("REL-%s: pipeline %s ran %s, not the deployment's %s; ignored",
                        dep.release_id, result.pipeline_id, result.sha, dep.sha)
            return None
        job, url = result.failed_job, result.failed_job_url
        if result.status == "failed" and url is None:
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
