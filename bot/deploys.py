"""Deploys and rollbacks through GitLab: commit, start the pipeline, take results; verify, close."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot import bugs
from bot.gitlab import FINAL, WAITING, GitLabClient, GitLabError, Pipeline
from bot.releases import clean_text
from bot.trackers import BugCount
from bot.trains import Train, rollback_targets, train_of
from bot.transition import (
    Apply,
    Deps,
    Outcome,
    check_event,
    check_revision,
    close_step,
    detail_of,
    load_facts,
    locked,
    notify,
    record,
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
    verdict_event,
)
from storage import queries as q
from storage.models import Deployment, Release, ReleaseComponent

log = logging.getLogger(__name__)
FAILED = FINAL - {"success"}  # a deploy or rollback that ended without shipping


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


def ship_tag(deps: Deps, release: Release, comp: ReleaseComponent,
             deployments: Sequence[Deployment]) -> str:
    """The tag this revision of a component ships on: the release's own, unless an earlier
    revision shipped another commit of the project under it (a new ref after a failed
    acceptance); then one of its own, so that every tag keeps naming exactly the commit it
    shipped, for rollback."""
    tag = release_tag(deps, release.id)
    taken = any(d.ref == tag and d.sha != comp.pinned_sha for d in deployments
                if not d.rollback and d.project == comp.project)
    return f"{tag}-r{release.revision}" if taken else tag


def running(dep: Deployment | None) -> Shipped | None:
    """What a successful deploy or rollback left running in its environment."""
    return None if dep is None else Shipped(dep.ref, dep.sha, dep.runs_release_id)


async def _hold(session: AsyncSession, deps: Deps, release: Release, project: str, env: str,
                actor: Actor, *, rollback: bool, ships: Shipped,
                before: Shipped | None) -> Deployment:
    """Take the component's environment's deploy lock and write the deployment row."""
    lock = await q.take_deploy_lock(session, project=project, environment=env,
                                    release_id=release.id, holder=actor.user)
    if lock.release_id != release.id:
        raise Refused(f"{project} {env} is busy: REL-{lock.release_id} is deploying.")
    before = before or Shipped(None)
    return await q.add_deployment(
        session, release=release, project=project, environment=env, rollback=rollback,
        started_by=actor.user, at=deps.clock(), ref=ships.ref or release.ref, sha=ships.sha,
        runs_release_id=ships.release_id, previous_ref=before.ref, previous_sha=before.sha,
        previous_release_id=before.release_id)


class LiveUnknown(Exception):
    """A production deploy with no rollback steps: ask GitLab what runs there, then decide."""

    def __init__(self, projects: list[str], environment: str) -> None:
        super().__init__(f"{', '.join(projects)} {environment}")
        self.projects, self.environment = projects, environment


@dataclass(frozen=True)
class GitLabLive:
    """What GitLab's environment records say runs there, by project (None: nothing)."""

    found: Mapping[str, Shipped | None]


async def start_deploy(deps: Deps, *, release_id: int, actor: Actor,
                       environment: str | None = None, revision: int | None = None,
                       gitlab_live: GitLabLive | None = None,
                       recount: BugCount | None = None) -> DeployStart:
    """Commit to deploying the release to one environment: its first component still to go
    there; the others follow one at a time as each succeeds (`continue_train`).

    Each of them must find its environment free, and production needs a way back for each: a
    version known to run there before (the bot's record, else GitLab's, passed in as
    `gitlab_live` once asked), or rollback steps in the plan. A tracked release needs its bugs
    counted again (`recount`, once asked) before production.
    """

    async def work(session: AsyncSession) -> DeployStart:
        release = await locked(session, release_id)
        check_revision(release, revision)
        facts = await load_facts(session, deps, release,
                                 reads_for(Event.DEPLOY, State(release.state)))
        env = environment or next_environment(facts)
        comps = await q.components_of(session, release)
        train = train_of([c.project for c in comps], deps.policy)
        deployments = await q.deployments_of(session, release.id)
        waiting = train.waiting(deployments, release.revision, env)
        before = {p: await _live(session, p, env, gitlab_live) for p in waiting}
        unknown = [p for p in waiting if env == facts.production and before[p] is None]
        facts = replace(facts, previous_known=not (unknown and gitlab_live is not None))
        dest = traced_decide(deps, release, facts, Event.DEPLOY, Ctx(actor, environment=env))
        if unknown and gitlab_live is None and not facts.rollback_steps:
            raise LiveUnknown(unknown, env)  # the rest allows it: now ask GitLab
        if env == facts.production:
            bugs.gate(session, deps, release, recount, "deploy")
        for project in waiting:  # the train starts only when every project of it may go
            await _environment_free(session, deps, release, project, env, facts.production)
            await _not_busy(session, release, project, env)
        comp = next(c for c in comps if c.project == waiting[0])
        dep = await _deploy_component(session, deps, release, comp, env, actor, deployments,
                                      before[comp.project])
        detail = {"environment": env, **_component_detail(dep, comp, len(comps) > 1),
                  "previous_ref": dep.previous_ref, "previous_sha": dep.previous_sha,
                  "deployment": dep.id}
        if len(comps) > 1:
            detail["components"] = list(waiting)
            detail["there"] = [p for p in train.projects_in(env) if p not in waiting]
        outcome = await record(session, deps, release, Event.DEPLOY, actor, dest, detail)
        return DeployStart(outcome, dep)

    return await run_in_transaction(deps, work)


async def _not_busy(session: AsyncSession, release: Release, project: str, env: str) -> None:
    """Refuse while another release's pipeline holds the project's environment."""
    holder = await q.deploy_lock_holder(session, project=project, environment=env)
    if holder is not None and holder != release.id:
        raise Refused(f"{project} {env} is busy: REL-{holder} is deploying.")


async def _live(session: AsyncSession, project: str, env: str,
                gitlab_live: GitLabLive | None) -> Shipped | None:
    """What runs in a project's environment: the bot's record, else GitLab's once asked."""
    found = running(await q.live_deployment(session, project, env))
    if found is None and gitlab_live is not None:
        return gitlab_live.found.get(project)
    return found


def _component_detail(dep: Deployment, comp: ReleaseComponent, train: bool) -> dict[str, Any]:
    """How a deploy row names what it ships: the component, its ref, commit and tag."""
    detail: dict[str, Any] = {"component": comp.project, "ref": comp.ref, "sha": dep.sha,
                              "tag": dep.ref}
    if train:
        detail["train"] = True  # thread lines name the component
    return detail


async def _deploy_component(session: AsyncSession, deps: Deps, release: Release,
                            comp: ReleaseComponent, env: str, actor: Actor,
                            deployments: Sequence[Deployment],
                            before: Shipped | None) -> Deployment:
    """Hold one component's environment and record its deploy on its own tag."""
    tag = ship_tag(deps, release, comp, deployments)
    ships = Shipped(tag, comp.pinned_sha, release.id)
    return await _hold(session, deps, release, comp.project, env, actor, rollback=False,
                       ships=ships, before=before)


async def continue_train(session: AsyncSession, deps: Deps, release: Release,
                         done: Deployment, waiting: Sequence[str]) -> Deployment | None:
    """After a component deployed, commit to the next one in that environment.

    The train stops, as a failed deploy naming the component, when its environment is held
    or reserved by another release now.
    """
    comps = {c.project: c for c in await q.components_of(session, release)}
    comp, env = comps[waiting[0]], done.environment
    actor = Actor(done.started_by)
    train = train_of(list(comps), deps.policy)
    try:
        production = train.environments[-1]
        await _environment_free(session, deps, release, comp.project, env, production)
        before = running(await q.live_deployment(session, comp.project, env))
        return await _deploy_component(session, deps, release, comp, env, actor,
                                       await q.deployments_of(session, release.id), before)
    except Refused as exc:
        detail = {"environment": env, "component": comp.project, "ref": comp.ref,
                  "train": True, "error": exc.sentence,
                  **await _stopped(session, release, train, env, comp.project)}
        await step(session, deps, release, Event.DEPLOY_FAILED,
                   Ctx(SYSTEM, environment=env), detail_of(detail))
        return None


async def start_rollback(deps: Deps, *, release_id: int, actor: Actor, reason: str = "",
                         revision: int | None = None) -> DeployStart:
    """Commit to redeploying what was live before this release: in the environment it last
    deployed to, each component it changed there, last deployed first, one at a time."""
    reason = clean_text(reason)
    holder: list[Deployment] = []

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        comps = await q.components_of(session, rel)
        targets = rollback_targets(await q.deployments_of(session, rel.id),
                                   [c.project for c in comps])
        if not targets:  # the can_roll_back guard has already refused this
            raise Refused("There is no recorded previous version to roll back to.")
        dep = await _roll_back(session, deps, rel, targets[0], actor)
        holder[:] = [dep]
        detail = {"environment": dep.environment, **_rollback_detail(dep, targets[0]),
                  "reason": reason.strip(), "deployment": dep.id}
        if len(comps) > 1:
            detail |= {"train": True, "components": [t.project for t in targets]}
        return detail

    ctx = Ctx(actor, reason=reason, revision=revision)
    outcome = await transition(deps, release_id, Event.ROLLBACK, ctx, apply)
    return DeployStart(outcome, holder[0])


async def _roll_back(session: AsyncSession, deps: Deps, release: Release, undo: Deployment,
                     actor: Actor) -> Deployment:
    """Hold the environment again and record the redeploy of what `undo` replaced."""
    await _still_ours(session, release, undo.project, undo.environment)
    if not undo.previous_sha:  # the guard refuses the first; a train's later ones end here
        raise Refused(f"{undo.project} {undo.environment} ran `{undo.previous_ref}` before, "
                      "recorded with no commit, so it can't be put back as it was; follow the "
                      "go-live plan's rollback steps by hand.")
    back = _rollback_ref(deps, release, undo)
    ships = Shipped(back, undo.previous_sha, undo.previous_release_id)
    return await _hold(session, deps, release, undo.project, undo.environment, actor,
                       rollback=True, ships=ships, before=running(undo))


def _rollback_detail(dep: Deployment, undo: Deployment) -> dict[str, Any]:
    """How a rollback row names what it puts back: the component, the ref, commit and tag."""
    return {"component": dep.project, "ref": undo.previous_ref or dep.ref,
            "sha": undo.previous_sha, "tag": dep.ref}


async def continue_rollback(session: AsyncSession, deps: Deps, release: Release,
                            done: Deployment, undo: Deployment) -> Deployment | None:
    """After one component rolled back, commit to rolling back the next (None: it can't be,
    recorded as a failed rollback naming the component)."""
    try:
        return await _roll_back(session, deps, release, undo, Actor(done.started_by))
    except Refused as exc:
        detail = {"environment": undo.environment, "component": undo.project, "train": True,
                  "error": exc.sentence}
        await step(session, deps, release, Event.ROLLBACK_FAILED,
                   Ctx(SYSTEM, environment=undo.environment), detail_of(detail))
        return None


async def _environment_free(session: AsyncSession, deps: Deps, release: Release, project: str,
                            env: str, production: str) -> None:
    """Refuse a deploy that would overwrite what another release holds or has not verified.

    A project's environment before production is reserved from a release's successful deploy
    there until the release (all of its train) reaches production, is rolled back or is
    cancelled; production takes one unverified change at a time, and a failed deploy or
    rollback leaves the environment to its release until that release puts it right.
    """
    await _not_left_failed(session, release, project, env, production)
    if env != production:
        for other in await q.deployed_releases(session, project, env, states=ACTIVE):
            if other.id != release.id and not await _reached(session, deps, other, production):
                raise Refused(f"{project} {env} is reserved for {other.rel_id} until "
                              f"it reaches {production}, is rolled back or is cancelled.")
        return
    live = running(await q.live_deployment(session, project, env))
    if live is None or live.release_id in (None, release.id):
        return
    other = await q.get_release(session, live.release_id)
    if other is not None and State(other.state) is State.VERIFICATION_FAILED:
        raise Refused(f"{project} {production} runs {other.rel_id}, which failed its "
                      f"verification: roll it back first.")
    if other is not None and State(other.state) in UNVERIFIED:
        raise Refused(f"{project} {production} runs {other.rel_id}, which is not "
                      f"verified yet: verify it or roll it back first.")


async def _not_left_failed(session: AsyncSession, release: Release, project: str,
                           env: str, production: str) -> None:
    """Refuse to deploy over another release's failed deploy there: what runs is unknown, and
    that release's rollback would be refused for good once another deploy went over it."""
    latest = await q.latest_deployment(session, project, env)
    if latest is None or latest.release_id == release.id or latest.status not in FAILED:
        return
    other = await q.get_release(session, latest.release_id)
    if other is None or State(other.state) is not State.DEPLOY_FAILED:
        return
    what = "rollback" if latest.rollback else "deploy"
    frees = "rolled back or deployed again" + (", or cancelled" if env != production else "")
    raise Refused(f"{other.rel_id}'s {what} to {project} {env} failed, so what runs there is "
                  f"unknown until {other.rel_id} is {frees}.")


async def _reached(session: AsyncSession, deps: Deps, release: Release, env: str) -> bool:
    """Whether this revision of the release (every component going there) deployed to env."""
    comps = await q.components_of(session, release)
    train = train_of([c.project for c in comps], deps.policy)
    return env in train.reached(await q.deployments_of(session, release.id), release.revision)


async def _still_ours(session: AsyncSession, release: Release, project: str, env: str) -> None:
    """Roll back only what this release put in a project's env, while it is still there."""
    latest = await q.latest_deployment(session, project, env)
    # A rollback of ours that failed left this release's change in place: try it again.
    if latest is None or (latest.release_id == release.id and (
            not latest.rollback or latest.status in FAILED)):
        return
    runs = running(await q.live_deployment(session, project, env))
    holder = runs.release_id if runs else None
    if holder is not None and holder != release.id:
        raise Refused(f"{project} {env} runs REL-{holder} now; roll back REL-{holder} "
                      "first.")
    raise Refused(f"{project} {env} no longer runs {release.rel_id}; "
                  "rolling it back would overwrite what runs there now.")


def _rollback_ref(deps: Deps, release: Release, undo: Deployment) -> str:
    """A ref at exactly the commit that ran before: the bot's own tag, or one made for it."""
    previous = undo.previous_ref or ""
    if previous.startswith(deps.policy.tag_prefix):
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
        if dep.previous_sha is None and previous is not None:  # GitLab knows its commit
            if dep.previous_ref not in (None, previous.ref):  # not the release the bot recorded
                dep.previous_release_id = None
            dep.previous_ref, dep.previous_sha = previous.ref, previous.sha
        comps = await q.components_of(session, release)
        if not dep.rollback:
            await _newer_commits(session, release, comps, dep.project, newer_commits)
        detail = {"environment": dep.environment, "component": dep.project,
                  "pipeline": pipeline_id, "url": url, "ref": dep.ref, "sha": dep.sha,
                  "rollback": dep.rollback, "deployment": dep.id}
        if len(comps) > 1:
            detail["train"] = True
        return await record(session, deps, release, Event.PIPELINE_STARTED, SYSTEM,
                            State(release.state), detail)

    return await run_in_transaction(deps, work)


async def _newer_commits(session: AsyncSession, release: Release,
                         comps: Sequence[ReleaseComponent], project: str, count: int) -> None:
    """Keep how far a component's ref moved on beyond its pin (the first component's on the
    release row too, where a one-project release's card reads it)."""
    for comp in comps:
        if comp.project == project:
            comp.newer_commits = count
    if comps and comps[0].project == project:
        release.newer_commits = count


def _result_event(dep: Deployment, status: str) -> Event:
    """The event a finished pipeline raises: deploy or rollback, succeeded or failed."""
    if dep.rollback:
        return Event.ROLLBACK_SUCCEEDED if status == "success" else Event.ROLLBACK_FAILED
    return Event.DEPLOY_SUCCEEDED if status == "success" else Event.DEPLOY_FAILED


async def _locked_deployment(session: AsyncSession,
                             deployment_id: int) -> tuple[Deployment, Release]:
    """A deployment and its release, both locked, the deployment read after the release lock."""
    dep = await q.get_deployment(session, deployment_id=deployment_id, lock=True)
    if dep is None:
        raise Refused(f"No deployment {deployment_id}.")
    release = await locked(session, dep.release_id)
    # Read again after the release lock: a racing finisher may have committed meanwhile.
    dep = await q.get_deployment(session, deployment_id=deployment_id, fresh=True)
    assert dep is not None  # deployments are never deleted
    return dep, release


async def finish_deploy(deps: Deps, *, deployment_id: int, status: str,
                        failed_job: str | None = None, failed_job_url: str | None = None,
                        error: str | None = None) -> Outcome:
    """A pipeline ended; announced once however many times GitLab or the poller report it."""

    async def work(session: AsyncSession) -> Outcome:
        dep, release = await _locked_deployment(session, deployment_id)
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
    """Write the result, free the environment and move the release; a train goes on with its
    next component (or rollback), committed here and started by the caller."""
    now = deps.clock()
    dep.status = status if status in FINAL else "failed"
    dep.finished_at, dep.failed_job, dep.failed_job_url = now, failed_job, failed_job_url
    await q.release_deploy_lock(session, project=dep.project, environment=dep.environment,
                                release_id=release.id)
    comps = await q.components_of(session, release)
    comp = next((c for c in comps if c.project == dep.project), comps[0])
    train = train_of([c.project for c in comps], deps.policy)
    started = dep.started_at
    shown = dep.ref if dep.rollback else comp.ref  # people know a release by its ref
    detail = {"environment": dep.environment, "component": dep.project, "ref": shown,
              "sha": dep.sha, "tag": dep.ref, "pipeline": dep.pipeline_id,
              "url": dep.pipeline_url, "status": dep.status, "failed_job": failed_job,
              "failed_job_url": failed_job_url, "error": error, "deployment": dep.id,
              "seconds": round((now - started).total_seconds()) if started else None}
    waiting, undo = await _what_follows(session, release, dep, train)
    if len(comps) > 1:
        detail["train"] = True
    if dep.status != "success" and not dep.rollback:  # the thread names the way on
        stopped = await _stopped(session, release, train, dep.environment, dep.project)
        detail |= stopped if len(comps) > 1 else {"undo": stopped["undo"]}
    if nxt := (waiting[0] if waiting else undo[0].project if undo else None):
        detail["next"] = nxt
    out = await step(session, deps, release, _result_event(dep, status),
                     Ctx(SYSTEM, environment=dep.environment), detail_of(detail))
    follow_up = None
    if out.event is Event.DEPLOY_SUCCEEDED and out.to_state is State.DEPLOYING:
        follow_up = await continue_train(session, deps, release, dep, waiting)
    elif out.event is Event.ROLLBACK_SUCCEEDED and out.to_state is State.ROLLING_BACK:
        follow_up = await continue_rollback(session, deps, release, dep, undo[0])
    elif out.event is Event.DEPLOY_SUCCEEDED and dep.environment != train.environments[-1]:
        # Testers accept there before anything goes further: ask them now, not on a timer.
        notify(session, deps, release, "accept", roles=["tester"], not_requester=True,
               environment=dep.environment)
    elif out.event is Event.DEPLOY_SUCCEEDED:
        # Testers verify online as soon as production runs it; reminders follow as before.
        notify(session, deps, release, "verify_now", roles=["tester"], not_requester=True)
    return replace(out, follow_up=follow_up)


async def _stopped(session: AsyncSession, release: Release, train: Train, env: str,
                   project: str) -> dict[str, list[str]]:
    """A train stopped at `project`: the components that did not deploy after it, and what a
    rollback would undo, in its order."""
    deployments = await q.deployments_of(session, release.id)
    waiting = train.waiting(deployments, release.revision, env)
    return {"stopped": [p for p in waiting if p != project],
            "undo": [d.project for d in rollback_targets(deployments, train.projects)]}


async def _what_follows(session: AsyncSession, release: Release, dep: Deployment,
                        train: Train) -> tuple[tuple[str, ...], list[Deployment]]:
    """After a successful deploy, the components still to go to its environment; after a
    successful rollback, the deploys still to undo (nothing follows a failure)."""
    if dep.status != "success":
        return (), []
    deployments = await q.deployments_of(session, release.id)  # with this one's result
    if dep.rollback:
        return (), rollback_targets(deployments, train.projects)
    return train.waiting(deployments, release.revision, dep.environment), []


# --- stuck pipelines: reported once per reason; abandoned by the release manager ---------------

STUCK_ONCE = timedelta(days=36500)  # the reminders table's interval for "at most once"


@dataclass(frozen=True)
class Stuck:
    """Why a deploy's pipeline is not getting anywhere, as GitLab shows it."""

    kind: str  # manual, scheduled or timeout: each reported once per deployment
    status: str | None  # GitLab's pipeline status (None: GitLab could not be asked)
    minutes: int  # since the bot started the deploy
    job: str | None = None  # the manual or delayed job it waits on
    stage: str | None = None


def stuck_kind(dep: Deployment, status: str | None, now: datetime,
               timeout: timedelta) -> str | None:
    """manual or scheduled while GitLab waits on a person or timer; timeout once it is late."""
    if status in WAITING:
        return status
    if status in FINAL:
        return None
    return "timeout" if now - dep.started_at >= timeout else None


def stuck_key(dep: Deployment, kind: str) -> str:
    """The reminders row that says this deployment was reported for this reason."""
    return f"stuck:{dep.id}:{kind}"


async def stuck_reported(deps: Deps, dep: Deployment, kinds: tuple[str, ...]) -> bool:
    """Whether the deployment was reported stuck for any of these reasons."""
    async with deps.sessions() as session:
        for kind in kinds:
            if await q.reminder_of(session, dep.release_id, stuck_key(dep, kind)):
                return True
    return False


async def report_stuck(deps: Deps, *, deployment_id: int, stuck: Stuck) -> bool:
    """Tell the card's thread and the release managers, once per deployment and reason."""

    async def work(session: AsyncSession) -> bool:
        dep = await q.get_deployment(session, deployment_id=deployment_id, fresh=True)
        if dep is None or dep.status in FINAL:
            return False
        release = await q.get_release(session, dep.release_id)
        if release is None or not await q.due_reminder(
                session, release.id, stuck_key(dep, stuck.kind), now=deps.clock(),
                every=STUCK_ONCE):
            return False
        train = len(await q.components_of(session, release)) > 1
        notify(session, deps, release, "stuck", roles=["release_manager"], thread=True,
               component=dep.project if train else None,
               environment=dep.environment, rollback=dep.rollback, pipeline=dep.pipeline_id,
               url=dep.pipeline_url, kind=stuck.kind, status=stuck.status,
               minutes=stuck.minutes, job=stuck.job, stage=stuck.stage)
        return True

    return bool(await run_in_transaction(deps, work))


async def check_abandon(deps: Deps, *, release_id: int, actor: Actor, reason: str,
                        revision: int | None = None) -> Deployment:
    """The running deployment a release manager may abandon; refused before any GitLab call."""
    await check_event(deps, release_id=release_id, event=Event.ABANDON, actor=actor,
                      revision=revision, reason=reason)
    async with deps.sessions() as session:
        dep = await q.running_deployment(session, release_id)
    if dep is None:
        raise Refused(f"REL-{release_id} has no pipeline running.")
    if dep.pipeline_id is None:  # cancelling now would miss the pipeline about to start
        raise Refused(f"REL-{release_id}'s pipeline is still being started; try again in a "
                      "minute.")
    return dep


async def abandon_deploy(deps: Deps, *, deployment_id: int, actor: Actor, reason: str,
                         revision: int | None = None, gitlab_status: str | None = None
                         ) -> Outcome:
    """Count the deploy as failed and free its environment, as the release manager asked."""

    async def work(session: AsyncSession) -> Outcome:
        dep, release = await _locked_deployment(session, deployment_id)
        if dep.status in FINAL:
            raise Refused(f"{release.rel_id}'s pipeline ended meanwhile ({dep.status}); "
                          "look at the card.")

        async def apply(_s: AsyncSession, rel: Release, _f: Facts) -> dict[str, Any]:
            dep.status, dep.finished_at = "canceled", deps.clock()
            await q.release_deploy_lock(session, project=dep.project,
                                        environment=dep.environment, release_id=rel.id)
            train = len(await q.components_of(session, rel)) > 1
            return {"environment": dep.environment, "component": dep.project,
                    "rollback": dep.rollback, "pipeline": dep.pipeline_id,
                    "url": dep.pipeline_url, "tag": dep.ref, "sha": dep.sha,
                    "reason": reason.strip(), "gitlab_status": gitlab_status,
                    "deployment": dep.id, **({"train": True} if train else {})}

        ctx = Ctx(actor, reason=reason, environment=dep.environment, revision=revision)
        return await step(session, deps, release, Event.ABANDON, ctx, apply)

    return await run_in_transaction(deps, work)


# --- after the deploy -----------------------------------------------------------------------------

async def verify(deps: Deps, *, release_id: int, actor: Actor, passed: bool,
                 note: str = "", revision: int | None = None,
                 environment: str | None = None) -> Outcome:
    """A tester's verdict on the newest environment reached (or the one a button names).

    Before production it is acceptance: a pass lets the next environment be deployed, a fail
    holds the release for a new ref or cancel. In production it is online verification: a
    pass starts observation (or closes when there is none).
    """
    note = clean_text(note).strip()

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_revision(release, revision)
        facts = await load_facts(session, deps, release, frozenset({"deployments"}))
        event = verdict_event(facts, passed, environment)
        env = environment or facts.newest_env
        ctx = Ctx(actor, reason=note, revision=revision, environment=env)
        if event in (Event.ACCEPTANCE_PASS, Event.ACCEPTANCE_FAIL):
            return await step(session, deps, release, event, ctx,
                              _accepted(deps, actor, str(env), passed, note))
        ask: dict[str, Any] = {}  # what the executives are asked, if the failure asks them
        out = await step(session, deps, release, event, ctx,
                         _verified(note, event is Event.VERIFY_FAIL, ask))
        if ask:  # queued after the verdict's own line, so the thread tells the failure first
            notify(session, deps, release, "decide", roles=["executive"], thread=True, **ask)
        return out

    return await run_in_transaction(deps, work)


def _accepted(deps: Deps, actor: Actor, env: str, passed: bool, note: str) -> Apply:
    """Record the acceptance verdict on `env` (one per revision and environment)."""

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        q.add_acceptance(session, release=rel, environment=env, passed=passed,
                         tester=actor.user, note=note, at=deps.clock())
        following = facts.environments[facts.environments.index(env) + 1]
        return {"environment": env, "note": note, "passed": passed, "next": following}

    return apply


def _verified(note: str, failed: bool, ask: dict[str, Any]) -> Apply:
    """Record the online verification's note; where the type may ship with known issues, a
    failure fills `ask`: the executives decide whether its problems get fixed (S3's
    emergency flow)."""

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        rel.verification_note = note or None
        if not failed:
            return {"note": note}
        if facts.allow_known_issues:
            ask.update(found=note, rollback=facts.rollback_ref is not None)
        # What the tester is told comes next: a rollback, and whether an executive decides.
        return {"note": note, "rollback": facts.rollback_ref is not None,
                "decides": facts.allow_known_issues}

    return apply


async def decide(deps: Deps, *, release_id: int, actor: Actor, fix: bool, reason: str,
                 revision: int | None = None) -> Outcome:
    """The executive's decision after a failed online verification, with the reason.

    Fix: the requester (the developers) is told to set the fixed ref, which restarts testing
    as any rework does. Accept: the release stays live, its problems recorded as known issues.
    """
    reason = clean_text(reason).strip()
    event = Event.DECIDE_FIX if fix else Event.DECIDE_ACCEPT

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        rel.decision, rel.decided_by = ("fix" if fix else "accept"), actor.user
        rel.decision_reason, rel.decided_revision = reason, rel.revision
        if fix:
            notify(session, deps, rel, "fix", users=[rel.requester], reason=reason,
                   found=rel.verification_note or "")
        return {"reason": reason, "found": rel.verification_note or "",
                "requester": rel.requester}

    ctx = Ctx(actor, reason=reason, revision=revision)
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
        args: dict[str, Any] = {"release_id": release_id, "actor": actor,
                                "environment": environment, "revision": revision}
        for _ in range(3):  # each question is asked outside the transaction, at most once
            try:
                start = await start_deploy(self.deps, **args)
                break
            except LiveUnknown as need:  # only GitLab can tell whether there is a way back
                if "gitlab_live" in args:
                    raise self._changed(release_id) from None
                found = {p: await self._gitlab_live(p, need.environment) for p in need.projects}
                args["gitlab_live"] = GitLabLive(found)
            except bugs.RecountNeeded:  # production: the tracker counts the open bugs again
                if "recount" in args:
                    raise self._changed(release_id) from None
                args["recount"] = await bugs.recount(self.deps, release_id, moment="deploy")
        else:
            raise self._changed(release_id)
        out = await self.launch(start.deployment)
        if after := start.outcome.detail.get("components", [])[1:]:  # for the answer only
            return replace(out, detail={**out.detail, "then": after})
        return out

    @staticmethod
    def _changed(release_id: int) -> Refused:
        """The release moved between a question to GitLab or the tracker and the decision."""
        return Refused(f"REL-{release_id} changed while it was being checked; please try again.")

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
        """What GitLab last deployed there, when the bot has no commit of its own for it."""
        if dep.previous_sha:
            return None
        return await self._ask_gitlab_live(project, dep.environment)

    async def _gitlab_live(self, project_key: str, environment: str) -> Shipped | None:
        """What GitLab says runs in a project's environment, by the policy's project key."""
        return await self._ask_gitlab_live(self.deps.policy.project(project_key).gitlab,
                                           environment)

    async def _ask_gitlab_live(self, project: str | int, environment: str) -> Shipped | None:
        """GitLab's last successful deployment there (best effort: unknown is None)."""
        try:
            found = await self.gitlab.last_deployment(project, environment)
        except GitLabError as exc:
            log.info("live version of %s %s unknown: %s", project, environment, exc)
            return None
        return Shipped(found[1], found[0]) if found else None

    async def _newer_commits(self, project: str | int, dep: Deployment) -> int:
        """How far the component's ref has moved on since its commit was pinned (best effort)."""
        async with self.deps.sessions() as session:
            release = await q.get_release(session, dep.release_id)
            comps = await q.components_of(session, release) if release else []
        ref = next((c.ref for c in comps if c.project == dep.project), None)
        if ref is None or not dep.sha or ref == dep.sha:
            return 0
        try:
            return await self.gitlab.commits_between(project, dep.sha, ref)
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
        """A pipeline ended (as GitLab reports it): move its release once, however often.

        A pipeline waiting on a manual or delayed job is reported instead; one still on its
        way (created … running, canceling) changes nothing: the poller watches its time.
        """
        if result.status not in FINAL | WAITING:
            return None
        async with self.deps.sessions() as session:
            dep = await q.deployment_by_pipeline(session, result.project, result.pipeline_id)
        if dep is None or dep.status in FINAL:
            return None
        if self.ran_other_commit(dep, result):
            return None
        if result.status in WAITING:
            await self.watch(dep, result.status)
            return None
        job, url = result.failed_job, result.failed_job_url
        if result.status == "failed" and url is None:
            job, url = await self._failed_job(dep, job)
        out = await finish_deploy(self.deps, deployment_id=dep.id, status=result.status,
                                  failed_job=job, failed_job_url=url)
        if out.follow_up is not None:  # a train's next component (or rollback) goes now
            await self.launch(out.follow_up)
        return out

    @staticmethod
    def ran_other_commit(dep: Deployment, result: PipelineResult) -> bool:
        """GitLab ran another commit than the deployment's: not the bot's to act on (logged)."""
        if not (dep.sha and result.sha and result.sha != dep.sha):
            return False
        log.warning("REL-%s: pipeline %s ran %s, not the deployment's %s; ignored",
                    dep.release_id, result.pipeline_id, result.sha, dep.sha)
        return True

    async def _failed_job(self, dep: Deployment,
                          known: str | None) -> tuple[str | None, str | None]:
        """The job that failed and its link, for the announcement (best effort)."""
        project = self.deps.policy.project(dep.project)
        try:
            job = await self.gitlab.failed_job(project.gitlab, dep.pipeline_id or 0)
        except GitLabError:
            return known, None
        return (job.name, job.web_url) if job else (known, None)

    # --- stuck pipelines ------------------------------------------------------------------------

    @property
    def timeout(self) -> timedelta:
        """How long a deploy may run before it is reported as stuck."""
        return timedelta(minutes=self.deps.policy.deploy_timeout_minutes)

    async def watch(self, dep: Deployment, status: str | None) -> bool:
        """Report a deploy stuck on a manual or delayed job, or past the timeout: once a reason.

        GitLab is asked for the job it waits on only when a report is due.
        """
        kind = stuck_kind(dep, status, self.deps.clock(), self.timeout)
        if kind is None or await stuck_reported(self.deps, dep, (kind,)):
            return False
        return await report_stuck(self.deps, deployment_id=dep.id,
                                  stuck=await self._why(dep, status, kind))

    async def _why(self, dep: Deployment, status: str | None, kind: str) -> Stuck:
        """The reason as GitLab gives it: the job waited on, or the status and how long."""
        minutes = int((self.deps.clock() - dep.started_at).total_seconds() // 60)
        if status not in WAITING:
            return Stuck(kind, status, minutes)
        project = self.deps.policy.project(dep.project).gitlab
        try:
            job = await self.gitlab.waiting_job(project, dep.pipeline_id or 0, status)
        except GitLabError as exc:
            log.info("REL-%s: the job pipeline %s waits on is unknown: %s", dep.release_id,
                     dep.pipeline_id, exc)
            job = None
        return Stuck(kind, status, minutes, job.name if job else None, job.stage if job else None)

    # --- abandon --------------------------------------------------------------------------------

    async def abandon(self, *, release_id: int, actor: Actor, reason: str,
                      revision: int | None = None) -> Outcome:
        """Cancel the running pipeline in GitLab and count the deploy as failed.

        A pipeline GitLab shows finished before the cancel takes its own result instead;
        any other GitLab error refuses, with nothing written.
        """
        reason = clean_text(reason)  # checked as it will be stored, before GitLab is asked
        dep = await check_abandon(self.deps, release_id=release_id, actor=actor, reason=reason,
                                  revision=revision)
        found = await self._cancel(dep)
        if found.status in FINAL and found.status != "canceled":
            out = await self.take_result(PipelineResult(dep.project, found.id, found.status,
                                                        sha=found.sha))
            if out is None or not out.changed:
                raise Refused(f"REL-{release_id}'s pipeline had already ended "
                              f"({found.status}); look at the card.")
            return out
        return await abandon_deploy(self.deps, deployment_id=dep.id, actor=actor, reason=reason,
                                    revision=revision, gitlab_status=found.status)

    async def _cancel(self, dep: Deployment) -> Pipeline:
        """GitLab's cancel; on an error, the pipeline only if GitLab shows it finished."""
        project = self.deps.policy.project(dep.project).gitlab
        pipeline_id = dep.pipeline_id or 0
        try:
            return await self.gitlab.cancel_pipeline(project, pipeline_id)
        except GitLabError as exc:
            error = exc
        try:
            found = await self.gitlab.get_pipeline(project, pipeline_id)
        except GitLabError:
            found = None
        if found is not None and found.status in FINAL:
            return found
        raise Refused(f"GitLab did not cancel pipeline #{pipeline_id}: {error}. Nothing was "
                      "changed; try again, or cancel it in GitLab.")
