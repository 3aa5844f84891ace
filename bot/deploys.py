"""Service functions for the second half of a release: deploy, verify, roll back, close."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.service import (
    Apply,
    Deps,
    Outcome,
    check_revision,
    load_facts,
    locked,
    record,
    rollback_target,
    run_in_transaction,
    step,
    transition,
)
from bot.workflow import SYSTEM, Actor, Ctx, Event, Facts, Refused, State, decide
from storage import queries as q
from storage.models import Deployment, Release

FINAL = frozenset({"success", "failed", "canceled", "skipped"})


@dataclass(frozen=True)
class DeployStart:
    """A deploy or rollback the bot has committed to; the caller starts its pipeline."""

    outcome: Outcome
    deployment: Deployment


def next_environment(facts: Facts) -> str:
    """The first environment this release has not reached (staging before production)."""
    return next((e for e in facts.environments if e not in facts.deployed_envs), facts.production)


async def _hold(session: AsyncSession, deps: Deps, release: Release, env: str, actor: Actor,
                *, rollback: bool, ref: str, previous_ref: str | None) -> Deployment:
    """Take the environment's deploy lock and write the deployment row."""
    lock = await q.take_deploy_lock(session, project=release.project, environment=env,
                                    release_id=release.id, holder=actor.user)
    if lock.release_id != release.id:
        raise Refused(f"{release.project} {env} is busy: REL-{lock.release_id} is deploying.")
    dep = Deployment(release_id=release.id, revision=release.revision, project=release.project,
                     environment=env, ref=ref, previous_ref=previous_ref, rollback=rollback,
                     started_by=actor.user, started_at=deps.clock())
    session.add(dep)
    await session.flush()
    return dep


async def start_deploy(deps: Deps, *, release_id: int, actor: Actor,
                       environment: str | None = None, revision: int | None = None
                       ) -> DeployStart:
    """Commit to deploying the release's current ref to one environment."""
    holder: list[Deployment] = []

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_revision(release, revision)
        facts = await load_facts(session, deps, release)
        env = environment or next_environment(facts)
        dest = decide(facts, Event.DEPLOY, Ctx(actor, environment=env))
        previous = await q.live_ref(session, release.project, env)
        dep = await _hold(session, deps, release, env, actor, rollback=False, ref=release.ref,
                          previous_ref=previous)
        holder[:] = [dep]
        return record(session, deps, release, Event.DEPLOY, actor, dest, {
            "environment": env, "ref": release.ref, "previous_ref": previous,
            "deployment": dep.id})

    outcome = await run_in_transaction(deps, work)
    return DeployStart(outcome, holder[0])


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
        dep = await session.get(Deployment, deployment_id)
        if dep is None:
            raise Refused(f"No deployment {deployment_id}.")
        release = await locked(session, dep.release_id)
        dep.pipeline_id, dep.pipeline_url, dep.status = pipeline_id, url, "running"
        if dep.previous_ref is None and previous_ref:
            dep.previous_ref = previous_ref
        session.add(dep)
        detail = {"environment": dep.environment, "pipeline": pipeline_id, "url": url,
                  "ref": dep.ref, "rollback": dep.rollback, "deployment": dep.id}
        return record(session, deps, release, "pipeline started", SYSTEM,
                      State(release.state), detail)

    return await run_in_transaction(deps, work)


async def finish_deploy(deps: Deps, *, deployment_id: int, status: str,
                        failed_job: str | None = None, failed_job_url: str | None = None,
                        error: str | None = None) -> Outcome:
    """A pipeline ended; announced once however many times GitLab or the poller report it."""

    async def work(session: AsyncSession) -> Outcome:
        dep = await session.get(Deployment, deployment_id, with_for_update=True)
        if dep is None:
            raise Refused(f"No deployment {deployment_id}.")
        release = await locked(session, dep.release_id)
        await session.refresh(dep)  # read after the release lock: a racing finisher committed
        if dep.status in FINAL:
            return Outcome(release, "duplicate", State(release.state), State(release.state),
                           {"deployment": dep.id}, changed=False)
        return await _finish(session, deps, release, dep, status, failed_job, failed_job_url,
                             error)

    return await run_in_transaction(deps, work)


async def _finish(session: AsyncSession, deps: Deps, release: Release, dep: Deployment,
                  status: str, failed_job: str | None, failed_job_url: str | None,
                  error: str | None) -> Outcome:
    """Write the result, free the environment and move the release."""
    ok = status == "success"
    now = deps.clock()
    dep.status = status if status in FINAL else "failed"
    dep.finished_at, dep.failed_job, dep.failed_job_url = now, failed_job, failed_job_url
    session.add(dep)
    await q.release_deploy_lock(session, project=dep.project, environment=dep.environment,
                                release_id=release.id)
    if dep.rollback:
        event = Event.ROLLBACK_SUCCEEDED if ok else Event.ROLLBACK_FAILED
    else:
        event = Event.DEPLOY_SUCCEEDED if ok else Event.DEPLOY_FAILED
    started = dep.started_at
    detail = {"environment": dep.environment, "ref": dep.ref, "pipeline": dep.pipeline_id,
              "url": dep.pipeline_url, "status": dep.status, "failed_job": failed_job,
              "failed_job_url": failed_job_url, "error": error, "deployment": dep.id,
              "seconds": round((now - started).total_seconds()) if started else None}

    async def apply(_s: AsyncSession, _r: Release, _f: Facts) -> dict[str, Any]:
        return detail

    return await step(session, deps, release, event, Ctx(SYSTEM, environment=dep.environment),
                      apply)


async def verify(deps: Deps, *, release_id: int, actor: Actor, passed: bool,
                 note: str = "", revision: int | None = None) -> Outcome:
    """Online verification; a pass starts observation (or closes when there is none)."""
    event = Event.VERIFY_PASS if passed else Event.VERIFY_FAIL

    async def apply(session: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        rel.verification_note = note.strip() or None
        return {"note": note.strip()}

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        ctx = Ctx(actor, reason=note, revision=revision)
        out = await step(session, deps, release, event, ctx, apply)
        if passed:
            await _after_verified(session, deps, release)
        return out

    return await run_in_transaction(deps, work)


async def _after_verified(session: AsyncSession, deps: Deps, release: Release) -> None:
    """Observation begins, or the release closes at once when the policy has none."""
    hours = deps.policy.observation_hours
    if hours <= 0:
        await _close_step(session, deps, release, SYSTEM)
        return
    release.observe_until = deps.clock() + timedelta(hours=hours)
    apply: Apply = _observe_detail(release)
    await step(session, deps, release, Event.OBSERVE, Ctx(SYSTEM), apply)


def _observe_detail(release: Release) -> Apply:
    """The audit detail of an observation start."""

    async def apply(_s: AsyncSession, _r: Release, _f: Facts) -> dict[str, Any]:
        return {"until": release.observe_until.isoformat() if release.observe_until else None}

    return apply


async def _close_step(session: AsyncSession, deps: Deps, release: Release,
                      actor: Actor, notes: str = "") -> Outcome:
    """Close inside a transaction; the notes go into the announcement."""

    async def apply(_s: AsyncSession, rel: Release, _f: Facts) -> dict[str, Any]:
        rel.closed_at = deps.clock()
        return {"notes": notes} if notes else {}

    return await step(session, deps, release, Event.CLOSE, Ctx(actor), apply)


async def close(deps: Deps, *, release_id: int, actor: Actor, revision: int | None = None,
                notes: str = "") -> Outcome:
    """End the release (after observation, or early by the release manager)."""

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_revision(release, revision)
        return await _close_step(session, deps, release, actor, notes)

    return await run_in_transaction(deps, work)
