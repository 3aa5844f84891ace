"""Deploys and rollbacks through GitLab: commit to the deploy, start its pipeline, take results."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot import deploys
from bot.gitlab import GitLabClient, GitLabError
from bot.service import Deps, Outcome
from bot.workflow import Actor
from storage import queries as q
from storage.models import Deployment

log = logging.getLogger(__name__)
FINAL = {"success", "failed", "canceled", "skipped"}


@dataclass(frozen=True)
class PipelineResult:
    """A pipeline's end as GitLab reported it (webhook or poll)."""

    project: str  # the policy's project key
    pipeline_id: int
    status: str
    failed_job: str | None = None
    failed_job_url: str | None = None


class Deployer:
    """The one path from a decision to deploy to a GitLab pipeline, and back."""

    def __init__(self, deps: Deps, gitlab: GitLabClient) -> None:
        self.deps, self.gitlab = deps, gitlab

    async def deploy(self, *, release_id: int, actor: Actor, environment: str | None = None,
                     revision: int | None = None) -> Outcome:
        """Deploy the release's ref to its next (or the named) environment."""
        start = await deploys.start_deploy(self.deps, release_id=release_id, actor=actor,
                                           environment=environment, revision=revision)
        return await self.launch(start.deployment)

    async def rollback(self, *, release_id: int, actor: Actor, reason: str = "",
                       revision: int | None = None) -> Outcome:
        """Redeploy the version that was live before."""
        start = await deploys.start_rollback(self.deps, release_id=release_id, actor=actor,
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
            return await deploys.finish_deploy(self.deps, deployment_id=dep.id, status="failed",
                                               error=str(exc))
        return await deploys.record_pipeline(self.deps, deployment_id=dep.id,
                                             pipeline_id=pipeline.id, url=pipeline.web_url,
                                             previous_ref=previous)

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
        return await deploys.finish_deploy(self.deps, deployment_id=dep.id, status=result.status,
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
