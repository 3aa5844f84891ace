"""Scheduled work: GitLab polling, due deploys, reminders, observation close, merge-back."""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot import bugs, calendar, deploys, releases, transition
from bot.deploys import Deployer, PipelineResult
from bot.gitlab import FINAL, WAITING, GitLabError, Pipeline
from bot.notes import NotesRenderer, notes_text
from bot.people import People, PolicyPeople
from bot.policy import ReleaseType
from bot.readmodel import ReleaseView, load_view
from bot.transition import Deps
from bot.workflow import BEFORE_DEPLOY, SYSTEM, UNTESTED, WENT_LIVE, Refused, State
from storage import queries as q
from storage.db import transaction
from storage.models import Deployment, Release

log = logging.getLogger(__name__)
OVERLAP = timedelta(seconds=60)  # re-read a minute back: GitLab's updated_at and ours may skew
STUCK = timedelta(minutes=5)  # a deploy with no pipeline this long: the bot died while starting it
MAX_BACKOFF = 300.0


# What a release can wait on someone for, most pressing first: the order a digest lists them in.
URGENCY = ("escalation", "verify_deadline", "decide", "approval", "verify", "report")
# Waits a requester never answers for their own release, whatever roles they hold.
HANDED_OVER = ("verify", "report")
# The most releases one digest names; the rest are counted. Slack shows at most 50 blocks.
DIGEST_ITEMS = 40


@dataclass(frozen=True)
class Waiting:
    """A release waiting on the holders of some roles, and what for (one of URGENCY)."""

    view: ReleaseView
    waits: str
    roles: tuple[str, ...]
    detail: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The digest's line about it; the state and revision let delivery skip it if moved on."""
        rel = self.view.release
        return {"release": rel.id, "waits": self.waits, "state": rel.state,
                "revision": rel.revision, "detail": self.detail}


@dataclass
class Jobs:
    """Everything the scheduler runs; each method is one idempotent pass over the database."""

    deps: Deps
    deployer: Deployer
    render_notes: NotesRenderer  # the closing announcement's notes, as Slack text
    # Who holds a role, user groups included; without it, only the policy's own user IDs.
    people: People | None = None

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
            except bugs.SentBack:
                continue  # new bugs: back in testing, and its thread says why
            except Refused as exc:
                if view.state is not State.DEPLOYED:
                    await self._hold(view.release.id, exc.sentence)
        return started

    async def _hold(self, release_id: int, reason: str) -> None:
        """Say why a due release can't go, unless it moved on meanwhile.

        Two ticks overlapping (a slow one on another replica) both find it due: the one whose
        deploy lost the race is refused because the other started it, and there is nothing
        left to hold.
        """
        try:
            await releases.hold(self.deps, release_id=release_id, reason=reason)
        except Refused:
            log.info("REL-%s moved on before it could be held", release_id)

    async def _ask_to_arm(self, release: Release) -> int:
        """Ask the release managers, once an interval, to arm a release whose time has come."""
        when = release.scheduled_at and calendar.format_local(release.scheduled_at,
                                                              self.deps.policy)
        every = timedelta(hours=self.deps.policy.reminders.interval_hours)
        async with transaction(self.deps.sessions) as session:
            if not await q.due_reminder(session, release.id, "arm", now=self.now, every=every):
                return 0
            transition.notify(session, self.deps, release, "arm", roles=["release_manager"],
                              when=when)
        return 1

    # --- reminders: one digest per person and interval ------------------------------------------

    async def remind(self) -> int:
        """Queue one digest to each person something waits on, at most one per interval each."""
        now = self.now  # one instant for the whole pass: what is due and when it was sent
        waiting = await self._waiting(now)
        sent = 0
        for user, items in (await self._by_person(waiting)).items():
            sent += await self._digest(user, items, now)
        return sent

    async def _waiting(self, now: datetime) -> list[Waiting]:
        """Every release that has waited long enough on someone, and on whom."""
        async with self.deps.sessions() as session:
            rels = await q.releases_in(session, [*BEFORE_DEPLOY, State.DEPLOYED,
                                                 State.VERIFICATION_FAILED])
            views = [await load_view(session, self.deps.policy, rel) for rel in rels]
        return [w for view in views for w in self._waits_on(view, now)]

    def _waits_on(self, view: ReleaseView, now: datetime) -> list[Waiting]:
        """What one release waits for, past the policy's time for it (empty: nothing yet).

        An escalation tells the release manager besides, not instead: the release still waits
        on the people who have to act, and their digests keep naming it.
        """
        r, age = self.deps.policy.reminders, now - view.release.state_since
        waits: list[Waiting] = []
        if view.state is State.READY_FOR_SIGNOFF and view.missing_roles:
            if age >= timedelta(hours=r.escalation_hours):
                waits.append(Waiting(view, "escalation", ("release_manager",),
                                     {"waiting_on": view.missing_roles}))
            if age >= timedelta(hours=r.approval_hours):
                waits.append(Waiting(view, "approval", tuple(view.missing_roles)))
        elif view.state in UNTESTED and view.report is None:
            if age >= timedelta(hours=r.report_hours):
                waits.append(Waiting(view, "report", ("tester",)))
        elif view.decision_due:  # the executive's call after a failed online verification
            if age >= timedelta(hours=r.approval_hours):
                waits.append(Waiting(view, "decide", ("executive",)))
        elif view.state is State.DEPLOYED and view.next_env is None:
            if age >= timedelta(minutes=r.verify_deadline_minutes):
                waits.append(Waiting(view, "verify_deadline", ("release_manager",)))
            if age >= timedelta(minutes=r.verify_minutes):
                waits.append(Waiting(view, "verify", ("tester",)))
        return waits

    async def _by_person(self, waiting: list[Waiting]) -> dict[str, list[Waiting]]:
        """Each person's waiting releases, most pressing first; sign-offs only theirs to give."""
        people = self.people or PolicyPeople(self.deps.policy)
        mine: dict[str, list[Waiting]] = defaultdict(list)
        for item in waiting:
            for user in await people.users_in_roles(list(item.roles)):
                actor = await people.actor(user) if item.waits == "approval" else None
                if actor is not None and item.view.may_sign(actor) is None:
                    continue  # the requester, or someone whose every role here is signed
                if item.waits in HANDED_OVER and user == item.view.release.requester:
                    continue  # separated duties: a developer who tests never tests their own
                mine[user].append(item)
        for items in mine.values():
            items.sort(key=lambda w: (URGENCY.index(w.waits), w.view.release.id))
        return mine

    async def _digest(self, user: str, items: list[Waiting], now: datetime) -> int:
        """Queue one digest unless this person had one within the interval."""
        every = timedelta(hours=self.deps.policy.reminders.interval_hours)
        async with transaction(self.deps.sessions) as session:
            if not await q.due_digest(session, user=user, now=now, every=every):
                return 0
            q.add_outbox(session, release_id=None, kind="digest", at=now, payload={
                "user": user, "total": len(items),
                "items": [w.payload() for w in items[:DIGEST_ITEMS]]})
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
        """Whether the hotfix (each project of a hotfix train) is in its default branch
        (unknown counts as merged: no false nags)."""
        async with self.deps.sessions() as session:
            comps = await q.components_of(session, rel)
        gitlab = self.deployer.gitlab
        try:
            for comp in comps:
                project = self.deps.policy.project(comp.project)
                branch = project.default_branch or await gitlab.default_branch(project.gitlab)
                if not await gitlab.is_ancestor(project.gitlab, comp.ref, branch):
                    return False
        except GitLabError as exc:
            log.info("REL-%s merge-back not checked: %s", rel.id, exc)
        return True


# --- watching running pipelines: one GitLab request per project with a deploy running ------------

@dataclass
class Poller:
    """Polls GitLab for active deploys; backs off per project on 429 and 5xx.

    Besides one list per project, a late deploy not yet reported as stuck costs one read of
    its pipeline, and a report the read of the job it waits on: each once per deployment.
    """

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
        listed = {p.id: p for p in pipelines}
        taken = 0
        for dep in active:
            found = listed.get(dep.pipeline_id or 0) or await self._look_again(project, dep)
            if found is not None:
                taken += await self._take(project, dep, found)
        return taken

    async def _take(self, project: str, dep: Deployment, found: Pipeline) -> int:
        """A final or waiting status goes to the deployer, which checks the commit GitLab ran;
        one still on its way may make the deploy late, if it runs what the bot deployed."""
        result = PipelineResult(project, found.id, found.status, sha=found.sha)
        if found.status in FINAL | WAITING:
            out = await self.deployer.take_result(result)
            return int(out is not None and out.changed)
        if not self.deployer.ran_other_commit(dep, result):
            await self.deployer.watch(dep, found.status)
        return 0

    async def _look_again(self, project: str, dep: Deployment) -> Pipeline | None:
        """A pipeline GitLab no longer updates, read once it is late and not yet reported.

        The list only shows pipelines that changed; one blocked or hung since shows up here,
        at most one request per deploy in that cycle, and none once it has been reported.
        """
        if self.deps.clock() - dep.started_at < self.deployer.timeout:
            return None
        if await deploys.stuck_reported(self.deps, dep, ("timeout", *WAITING)):
            return None
        gitlab_project = self.deps.policy.project(project).gitlab
        try:
            return await self.deployer.gitlab.get_pipeline(gitlab_project, dep.pipeline_id or 0)
        except GitLabError as exc:
            log.info("REL-%s: pipeline %s not read: %s", dep.release_id, dep.pipeline_id, exc)
            return None

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
