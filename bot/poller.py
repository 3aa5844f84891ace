"""Watches the pipelines of active deploys: one GitLab request per project with a deploy running."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import deploys
from bot.deploys import Deployer, PipelineResult
from bot.gitlab import FINAL, GitLabError
from bot.transition import Deps
from storage import queries as q
from storage.models import Deployment

log = logging.getLogger(__name__)
OVERLAP = timedelta(seconds=60)  # re-read a minute back: GitLab's updated_at and ours may skew
STUCK = timedelta(minutes=5)  # a deploy with no pipeline this long: the bot died while starting it
MAX_BACKOFF = 300.0


@dataclass
class Poller:
    """Polls GitLab for active deploys; backs off per project on 429 and 5xx."""

    deps: Deps
    deployer: Deployer
    cursors: dict[str, datetime] = field(default_factory=dict)
    backoff_until: dict[str, datetime] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    last_cycle: datetime | None = None

    async def poll_once(self) -> int:
        """One cycle; how many results it took."""
        async with self.deps.sessions() as session:
            active = await q.active_deployments(session)
        by_project: dict[str, list[Deployment]] = defaultdict(list)
        taken = 0
        for dep in active:
            if dep.pipeline_id is None:
                taken += await self._unstarted(dep)
            else:
                by_project[dep.project].append(dep)
        for project, deps in by_project.items():
            taken += await self._poll_project(project, deps)
        self.last_cycle = self.deps.clock()
        return taken

    async def _poll_project(self, project: str, active: list[Deployment]) -> int:
        """One list request for the project; results for its active deploys."""
        now = self.deps.clock()
        if (until := self.backoff_until.get(project)) and now < until:
            return 0
        since = self._since(project, active)
        gitlab_project = self.deps.policy.project(project).gitlab
        try:
            pipelines = await self.deployer.gitlab.pipelines_updated_since(gitlab_project, since)
        except GitLabError as exc:
            self._back_off(project, exc, now)
            return 0
        self.failures.pop(project, None)
        self.backoff_until.pop(project, None)
        self.cursors[project] = now
        wanted = {d.pipeline_id for d in active}
        taken = 0
        for p in pipelines:
            if p.id in wanted and p.status in FINAL:
                out = await self.deployer.take_result(PipelineResult(project, p.id, p.status))
                taken += out is not None and out.changed
        return taken

    def _since(self, project: str, active: list[Deployment]) -> datetime:
        """From the oldest active deploy's start, or the last successful poll, less the overlap."""
        oldest = min(d.started_at for d in active)
        cursor = self.cursors.get(project)
        return (max(oldest, cursor) if cursor else oldest) - OVERLAP

    def _back_off(self, project: str, exc: GitLabError, now: datetime) -> None:
        """Wait as GitLab asks, else exponentially with jitter; the release is left alone."""
        self.failures[project] += 1
        if exc.retry_after is not None:
            delay = exc.retry_after
        else:
            delay = min(MAX_BACKOFF, 2.0 ** self.failures[project]) * random.uniform(0.5, 1.0)
        self.backoff_until[project] = now + timedelta(seconds=delay)
        log.warning("GitLab poll of %s failed (%s); next try in %.0f s", project, exc, delay)

    async def _unstarted(self, dep: Deployment) -> int:
        """A deploy whose pipeline never started (the bot died in between) ends as failed."""
        if self.deps.clock() - dep.started_at < STUCK:
            return 0
        out = await deploys.finish_deploy(
            self.deps, deployment_id=dep.id, status="failed",
            error="the pipeline was never started (the bot restarted); deploy again")
        return int(out.changed)
