"""Scheduled work: GitLab polling, due deploys, reminders, observation close, merge-back."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot import calendar, deploys, releases, transition
from bot.deploys import Deployer, PipelineResult
from bot.gitlab import FINAL, GitLabError
from bot.notes import NotesRenderer, notes_text
from bot.policy import ReleaseType
from bot.readmodel import load_view
from bot.transition import Deps
from bot.workflow import BEFORE_DEPLOY, SYSTEM, UNTESTED, WENT_LIVE, Refused, State
from storage import queries as q
from storage.db import transaction
from storage.models import Deployment, Release

log = logging.getLogger(__name__)
OVERLAP = timedelta(seconds=60)  # re-read a minute back: GitLab's updated_at and ours may skew
STUCK = timedelta(minutes=5)  # a deploy with no pipeline this long: the bot died while starting it
MAX_BACKOFF = 300.0


@dataclass
class Jobs:
    """Everything the scheduler runs; each method is one idempotent pass over the database."""

    deps: Deps
    deployer: Deployer
    render_notes: NotesRenderer  # the closing announcement's notes, as Slack text

    @property
    def now(self) -> datetime:
        """The injected clock's now."""
        return self.deps.clock()

    # --- scheduled deploys ------------------------------------------------------------------

    async def deploy_due(self) -> int:
        """Deploy releases whose time has come; hold, and say why, those that can't go."""
        async with self.deps.sessions() as session:
            due = await q.due_scheduled(session, self.now, [*BEFORE_DEPLOY, State.DEPLOYED])
            views = [await load_view(session, self.deps.policy, r) for r in due]
        started = 0
        for view in views:
            if view.state is State.DEPLOYED and (view.next_env is None or
                                                 view.awaiting_acceptance):
                continue  # production is done, or testers have yet to accept what comes before
            if view.unarmed:  # nobody confirmed it may go unattended: wait, and ask once
                await self._ask_to_arm(view.release)
                continue
            try:
                await self.deployer.deploy(release_id=view.release.id, actor=SYSTEM)
                started += 1
            except Refused as exc:
                if view.state is State.DEPLOYED:
                    continue
                await releases.hold(self.deps, release_id=view.release.id, reason=exc.sentence)
        return started

    async def _ask_to_arm(self, release: Release) -> int:
        """Ask the release managers, once an interval, to arm a release whose time has come."""
        when = release.scheduled_at and calendar.format_local(release.scheduled_at,
                                                              self.deps.policy)
        return await self._nudge(release, "arm", roles=["release_manager"], when=when)

    # --- reminders --------------------------------------------------------------------------

    async def remind(self) -> int:
        """Nudge whoever a release waits on; each kind at most once per interval."""
        r = self.deps.policy.reminders
        sent = 0
        async with self.deps.sessions() as session:
            waiting = await q.releases_in(session, [*BEFORE_DEPLOY, State.DEPLOYED])
            views = [await load_view(session, self.deps.policy, rel) for rel in waiting]
        for view in views:
            rel, age = view.release, self.now - view.release.state_since
            if view.state is State.READY_FOR_SIGNOFF and view.missing_roles:
                if age >= timedelta(hours=r.escalation_hours):
                    sent += await self._nudge(rel, "escalation", roles=["release_manager"],
                                              waiting_on=view.missing_roles)
                elif age >= timedelta(hours=r.approval_hours):
                    sent += await self._nudge(rel, "approval", roles=view.missing_roles,
                                              kind="ask")
            elif view.state in UNTESTED and view.report is None:
                if age >= timedelta(hours=r.report_hours):
                    sent += await self._nudge(rel, "report", roles=["tester"])
            elif view.state is State.DEPLOYED and view.next_env is None:
                if age >= timedelta(minutes=r.verify_deadline_minutes):
                    sent += await self._nudge(rel, "verify_deadline", roles=["release_manager"])
                elif age >= timedelta(minutes=r.verify_minutes):
                    sent += await self._nudge(rel, "verify", roles=["tester"])
        return sent

    async def _nudge(self, release: Release, notice: str, *, roles: Sequence[str],
                     kind: str = "notify", **detail: object) -> int:
        """Queue one reminder unless the same one went out within the interval."""
        every = timedelta(hours=self.deps.policy.reminders.interval_hours)
        async with transaction(self.deps.sessions) as session:
            if not await q.due_reminder(session, release.id, notice, now=self.now, every=every):
                return 0
            if kind == "ask":  # approvers get the Approve/Reject buttons again
                q.add_outbox(session, release_id=release.id, kind="ask", at=self.now, payload={
                    "roles": list(roles), "revision": release.revision, "reminder": True})
            else:
                transition.notify(session, self.deps, release, notice, roles=list(roles),
                           users=[], **detail)
        return 1

    # --- observation and close --------------------------------------------------------------

    async def close_observed(self) -> int:
        """Close releases whose observation period is over, with notes in the summary."""
        async with self.deps.sessions() as session:
            observing = await q.releases_in(session, [State.OBSERVING])
        closed = 0
        for rel in observing:
            if rel.observe_until and rel.observe_until <= self.now:
                notes = await notes_text(self.deps, self.deployer, release_id=rel.id,
                                         render=self.render_notes)
                try:
                    await deploys.close(self.deps, release_id=rel.id, actor=SYSTEM, notes=notes)
                    closed += 1
                except Refused:
                    continue  # someone closed it meanwhile
        return closed

    # --- hotfix merge-back ------------------------------------------------------------------

    async def merge_back(self) -> int:
        """Until a shipped hotfix's ref is in the default branch, remind every so often."""
        async with self.deps.sessions() as session:
            shipped = await q.releases_in(session, WENT_LIVE)
        every = timedelta(hours=self.deps.policy.reminders.merge_back_hours)
        sent = 0
        for rel in (r for r in shipped if r.type == ReleaseType.HOTFIX.value):
            async with self.deps.sessions() as session:
                done = await q.reminder_of(session, rel.id, "merged")
                last = await q.reminder_of(session, rel.id, "merge_back")
            if done or (last and self.now - last.last_sent < every):
                continue  # GitLab is asked only when a reminder would be due
            if await self._merged(rel):
                async with transaction(self.deps.sessions) as session:
                    await q.due_reminder(session, rel.id, "merged", now=self.now, every=every)
                continue
            sent += await self._merge_back_nudge(rel, every)
        return sent

    async def _merge_back_nudge(self, rel: Release, every: timedelta) -> int:
        """One merge-back reminder to the requester and the release manager."""
        days = self.deps.policy.merge_back_days(ReleaseType.HOTFIX) or 7
        due = rel.created_at + timedelta(days=days)
        async with transaction(self.deps.sessions) as session:
            if not await q.due_reminder(session, rel.id, "merge_back", now=self.now, every=every):
                return 0
            transition.notify(session, self.deps, rel, "merge_back", users=[rel.requester],
                       roles=["release_manager"], ref=rel.ref, due=due.isoformat(),
                       overdue=self.now > due)
        return 1

    async def _merged(self, rel: Release) -> bool:
        """Whether the hotfix is in the default branch (unknown counts as merged: no false nags)."""
        project = self.deps.policy.project(rel.project)
        try:
            branch = project.default_branch or await self.deployer.gitlab.default_branch(
                project.gitlab)
            return await self.deployer.gitlab.is_ancestor(project.gitlab, rel.ref, branch)
        except GitLabError as exc:
            log.info("REL-%s merge-back not checked: %s", rel.id, exc)
            return True


# --- watching running pipelines: one GitLab request per project with a deploy running ------------

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
                out = await self.deployer.take_result(PipelineResult(project, p.id, p.status,
                                                                     sha=p.sha))
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
