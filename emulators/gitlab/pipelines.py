"""Pipelines, jobs and deployments: created on a ref, moved by tests, cancelled, retried."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

from emulators.gitlab import ci
from emulators.gitlab.records import (
    CANCELABLE,
    DEPLOYMENT_FOR_JOB,
    DEVELOPER,
    FINISHED,
    MAINTAINER,
    PIPELINE_STATUSES,
    RETRYABLE,
    VARIABLE_ROLES,
    AutoAdvance,
    Deployment,
    Environment,
    GitLabError,
    Job,
    Pipeline,
    Project,
    User,
    forbidden,
    not_found,
    ref_matches,
)


class PipelineEngine(ABC):
    """The CI half of the emulator; GitLabEmulator supplies the clock, ids and hooks."""

    pipelines: dict[int, Pipeline]
    auto: AutoAdvance | None
    current_user: User
    # Seconds a cancelled running job spends in canceling (its after_script) before canceled;
    # None leaves it canceling until finish_canceling() is called.
    canceling_seconds: float | None

    @abstractmethod
    def now(self) -> datetime:
        """The emulator's clock."""

    @abstractmethod
    def project(self, ref: Project | int | str) -> Project:
        """A project by record, id or path."""

    @abstractmethod
    def _next_id(self, kind: str) -> int:
        """Next global id for a kind of record."""

    @abstractmethod
    def _changed(self, pl: Pipeline) -> None:
        """Queue a pipeline hook for the pipeline's new status."""

    @abstractmethod
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task the emulator owns."""

    # ------------------------------------------------------------ creating

    def create_pipeline(
        self, project: Project | int | str, ref: str,
        variables: Sequence[dict[str, str]] = (), *, source: str = "api",
    ) -> Pipeline:
        """Create a pipeline on a branch or tag, as POST /projects/:id/pipeline does.

        The checks run in the order of GitLab's creation chain: the variables permission,
        the right to run on the ref, then the ref itself.
        """
        p = self.project(project)
        cleaned = _clean_variables(variables)
        level = p.access_level(self.current_user)
        if level < DEVELOPER:
            raise forbidden()
        if cleaned and not _may_set_variables(p, level):
            raise _chain_error("Insufficient permissions to set pipeline variables")
        if not self._may_run_on(p, ref, self.current_user):
            raise _chain_error(
                f"You do not have sufficient permission to run a pipeline on '{ref}'. Please "
                "select a different branch or contact your administrator for assistance.")
        if ref in p.branches and ref in p.tags:
            raise _chain_error("Ref is ambiguous")
        if ref not in p.branches and ref not in p.tags:
            raise _chain_error("Reference not found")
        return self._new_pipeline(p, ref, cleaned, source)

    @staticmethod
    def _may_run_on(p: Project, ref: str, user: User) -> bool:
        """Protected refs: the default branch takes a maintainer, a protected tag its creators."""
        if ref in p.branches:
            return ref != p.default_branch or p.access_level(user) >= MAINTAINER
        if ref in p.tags:
            return may_create_tag(p, ref, user)
        return True  # an unknown ref is refused afterwards, as "Reference not found"

    def _new_pipeline(
        self, p: Project, ref: str, variables: list[dict[str, str]], source: str,
    ) -> Pipeline:
        """The pipeline record with one job per configured job, first-stage manual jobs waiting."""
        commit_sha = p.branches[ref] if ref in p.branches else p.tags[ref].sha
        commit = p.commits[commit_sha]
        now = self.now()
        pl = Pipeline(
            self._next_id("pipeline"), p.next_pipeline_iid, p, ref, commit.sha,
            commit.parent_ids[0] if commit.parent_ids else "0" * 40, ref in p.tags, source,
            "created", variables, self.current_user, now, now,
            stages=list(dict.fromkeys(spec.stage for spec in p.jobs)),
        )
        p.next_pipeline_iid += 1
        self.pipelines[pl.id] = pl
        for spec in p.jobs:
            env = pl.deploy_env if spec.deploys else None
            name = f"{spec.name}:{env}" if env else spec.name
            self._add_job(pl, name, spec.stage, env, spec.when, spec.allow_failure, now)
        for job in pl.latest_jobs():
            if job.manual and pl.stages.index(job.stage) == 0:
                # processing reaches the first stage at once
                self._move_job(job, job.waiting_status, now)
        pl.status = ci.composite(pl.latest_jobs())
        self._changed(pl)
        self._maybe_auto(pl)
        return pl

    def _add_job(
        self, pl: Pipeline, name: str, stage: str, env: str | None, when: str,
        allow_failure: bool, now: datetime,
    ) -> Job:
        """Add a job and, when it names an environment, its deployment."""
        job = Job(self._next_id("job"), pl, name, stage, "created", env, when, now,
                  allow_failure=allow_failure)
        pl.jobs.append(job)
        if env:
            job.deployment = self._add_deployment(pl.project, job, now)
        return job

    def _add_deployment(self, p: Project, job: Job, now: datetime) -> Deployment:
        """Record a deployment for a deploy job, creating the environment if new."""
        env_name = job.environment or ""
        env = p.environments.get(env_name)
        if env is None:
            env = Environment(self._next_id("environment"), env_name, now, now)
            p.environments[env_name] = env
        status = DEPLOYMENT_FOR_JOB.get(job.status, "created")
        deployment = Deployment(self._next_id("deployment"), p.next_deployment_iid, env, job,
                                status, now, now)
        p.next_deployment_iid += 1
        p.deployments.append(deployment)
        return deployment

    def record_deployment(self, project: Project | int | str, environment: str, ref: str,
                          status: str = "success") -> Deployment:
        """A deployment made outside CI and recorded, as POST /projects/:id/deployments does.

        It has no deployable job; GitLab shows it in the environment's history all the same.
        """
        p = self.project(project)
        commit_sha = p.branches[ref] if ref in p.branches else p.tags[ref].sha
        now = self.now()
        env = p.environments.get(environment)
        if env is None:
            env = Environment(self._next_id("environment"), environment, now, now)
            p.environments[environment] = env
        deployment = Deployment(self._next_id("deployment"), p.next_deployment_iid, env, None,
                                status, now, now, now if status == "success" else None,
                                api_ref=ref, api_sha=commit_sha, api_user=self.current_user)
        p.next_deployment_iid += 1
        p.deployments.append(deployment)
        return deployment

    # ------------------------------------------------------------ moving

    def set_status(
        self, pipeline_id: int, status: str, *, failed_job: str | Sequence[str] | None = None,
    ) -> None:
        """Move a pipeline to status by moving its jobs as GitLab would, stage by stage.

        running and the waiting statuses act on the current stage (earlier stages pass,
        later ones wait); failed fails failed_job (job or stage names; default: the last
        stage's first job), passes the stages before it and skips the ones after; manual
        stops at the first blocking manual job. A status GitLab could not show from here
        is a ValueError.
        """
        if status not in PIPELINE_STATUSES:
            raise ValueError(f"status must be one of {PIPELINE_STATUSES}")
        pl = self.pipeline(pipeline_id)
        culprits = self._culprits(pl, failed_job) if status == "failed" else []
        self._apply(pl, ci.layout(pl, status, culprits))
        if pl.status != status:
            raise ValueError(f"pipeline {pl.id} shows {pl.status}, not {status}, with jobs "
                             f"{[(j.name, j.status) for j in pl.latest_jobs()]}")

    def set_job_status(self, pipeline_id: int, job_name: str, status: str) -> Job:
        """Move one job; the pipeline then shows whatever GitLab derives from all its jobs."""
        if status not in PIPELINE_STATUSES:
            raise ValueError(f"status must be one of {PIPELINE_STATUSES}")
        pl = self.pipeline(pipeline_id)
        job = self._culprits(pl, job_name)[0]
        self._apply(pl, {job: status})
        return job

    def pipeline(self, pipeline_id: int) -> Pipeline:
        """A pipeline by id; a GitLab 404 if unknown."""
        if pipeline_id not in self.pipelines:
            raise not_found()
        return self.pipelines[pipeline_id]

    def _culprits(self, pl: Pipeline, names: str | Sequence[str] | None) -> list[Job]:
        """The named jobs (by name or stage), or the last stage's first job."""
        jobs = pl.latest_jobs()
        if names is None:
            return [next(job for job in jobs if job.stage == pl.stages[-1])]
        wanted = [names] if isinstance(names, str) else list(names)
        found = [job for job in jobs if job.name in wanted or job.stage in wanted]
        missing = [n for n in wanted if not any(n in (job.name, job.stage) for job in jobs)]
        if missing:
            raise ValueError(f"pipeline {pl.id} has no job {missing[0]!r}: "
                             f"{[job.name for job in jobs]}")
        return found

    def _apply(self, pl: Pipeline, targets: dict[Job, str]) -> None:
        """Move jobs, then the pipeline to the status its jobs add up to (hooks on a change)."""
        now = self.now()
        for job, status in targets.items():
            if job.status != status:
                self._move_job(job, status, now)
        status = ci.composite(pl.latest_jobs())
        if status != pl.status:
            _move_pipeline(pl, status, now)
            self._changed(pl)

    def _move_job(self, job: Job, status: str, now: datetime) -> None:
        """Set a job's status and the times that go with it."""
        job.status = status
        if status in ("running", "canceling", "success", "failed"):
            job.started_at = job.started_at or now
        elif status not in FINISHED:
            job.started_at = None
        job.finished_at = now if status in FINISHED else None
        job.failure_reason = "script_failure" if status == "failed" else None
        if job.deployment is not None:
            _move_deployment(job.deployment, status, now)

    # ------------------------------------------------------------ cancel, retry, play

    def cancel_pipeline(self, pipeline_id: int) -> Pipeline:
        """Cancel the pipeline's cancelable jobs; with none (finished, only manual) nothing moves.

        A running job passes through canceling while its after_script runs; jobs that have
        not started go straight to canceled; a manual job is not cancelable and stays.
        """
        pl = self.pipeline(pipeline_id)
        pl.auto_generation += 1  # auto-advance lets go of a pipeline someone cancels
        jobs = [job for job in pl.latest_jobs() if job.status in CANCELABLE]
        self._apply(pl, {job: "canceling" if job.status == "running" else "canceled"
                         for job in jobs})
        if pl.status == "canceling" and self.canceling_seconds is not None:
            self._spawn(self._finish_later(pl, pl.auto_generation, self.canceling_seconds))
        return pl

    def finish_canceling(self, pipeline_id: int) -> Pipeline:
        """Let every canceling job of the pipeline reach canceled (its runner reported back)."""
        pl = self.pipeline(pipeline_id)
        self._apply(pl, {job: "canceled" for job in pl.latest_jobs() if job.status == "canceling"})
        return pl

    async def _finish_later(self, pl: Pipeline, generation: int, delay: float) -> None:
        """finish_canceling after delay, unless someone else moved the pipeline meanwhile."""
        await asyncio.sleep(delay)
        if pl.auto_generation == generation:
            self.finish_canceling(pl.id)

    def retry_pipeline(self, pipeline_id: int) -> Pipeline:
        """Replace failed and canceled jobs with new ones; skipped later jobs wait again."""
        pl = self.pipeline(pipeline_id)
        stale = [job for job in pl.latest_jobs() if job.status in RETRYABLE]
        if not stale:
            return pl
        now = self.now()
        first = min(pl.stages.index(job.stage) for job in stale)
        for job in stale:
            job.retried = True
            fresh = self._add_job(pl, job.name, job.stage, job.environment, job.when,
                                  job.allow_failure, now)
            start = pl.stages.index(job.stage) == first
            self._move_job(fresh, (fresh.waiting_status if fresh.manual else "pending")
                           if start else "created", now)
        self._apply(pl, {job: "created" for job in pl.latest_jobs()
                         if job.status == "skipped" and pl.stages.index(job.stage) > first})
        self._maybe_auto(pl)
        return pl

    def job(self, project: Project, job_id: int) -> Job:
        """A job of the project by id; a GitLab 404 if unknown."""
        for pl in self.pipelines.values():
            if pl.project is project:
                for job in pl.jobs:
                    if job.id == job_id:
                        return job
        raise not_found()

    def play_job(self, project: Project | int | str, job_id: int) -> Job:
        """Start a manual job; others answer GitLab's 'Unplayable Job'."""
        job = self.job(self.project(project), job_id)
        if job.status not in ("manual", "scheduled"):
            raise GitLabError(400, "400 Bad request - Unplayable Job")
        self._apply(job.pipeline, {job: "pending"})
        self._maybe_auto(job.pipeline)
        return job

    # ------------------------------------------------------------ auto-advance

    def auto_advance(
        self, *, steps: Sequence[str] = ("running", "success"), every: float = 0.5,
        fail_refs: Iterable[str] = (), fail_envs: Iterable[str] = (), enabled: bool = True,
    ) -> None:
        """Make new pipelines take one of steps every `every` seconds (fail for listed refs/envs).

        A pipeline fails when its ref is listed, or its commit is one a listed ref names now
        (so a tag made at a failing branch's commit fails too), or its environment is listed.

        A pipeline someone else moves (set_status, cancel) drops out of auto-advance; one
        that reaches a blocking manual job stops there until the job is played.
        """
        bad = [s for s in steps if s not in PIPELINE_STATUSES]
        if bad:
            raise ValueError(f"unknown statuses {bad}")
        self.auto = AutoAdvance(tuple(steps), every, frozenset(fail_refs),
                                frozenset(fail_envs)) if enabled else None

    def _maybe_auto(self, pl: Pipeline) -> None:
        """Hand a new, retried or played pipeline to auto-advance when it is on."""
        if self.auto is None or pl.status == "manual":
            return
        pl.auto_generation += 1
        failing = (pl.ref in self.auto.fail_refs or self._names_commit(pl)
                   or (pl.deploy_env or "") in self.auto.fail_envs)
        plan = [("failed" if failing and s == "success" else s) for s in self.auto.steps]
        self._spawn(self._advance(pl, pl.auto_generation, plan, self.auto.every))

    def _names_commit(self, pl: Pipeline) -> bool:
        """Whether a failing ref names the pipeline's commit."""
        assert self.auto is not None
        return any((c := self.resolve(pl.project, ref)) is not None and c.sha == pl.sha
                   for ref in self.auto.fail_refs)

    async def _advance(self, pl: Pipeline, generation: int, plan: list[str], every: float) -> None:
        """Walk a pipeline through plan, stopping if anyone else touched it or it blocks."""
        expected = pl.status
        for step in plan:
            await asyncio.sleep(every)
            if pl.auto_generation != generation or pl.status != expected:
                return
            if step in ("success", "failed") and _blocked_ahead(pl):
                self.set_status(pl.id, "manual")
                return
            self.set_status(pl.id, step)
            expected = step


# ---------------------------------------------------------------- rules


def may_create_tag(p: Project, name: str, user: User) -> bool:
    """Gitlab::UserAccess#can_create_tag?: a developer, unless a protected pattern says more.

    Any one matching rule that lets the user in is enough (protected_ref_accessible_to?).
    """
    level = p.access_level(user)
    rules = [rule for rule in p.protected_tags.values() if ref_matches(rule.name, name)]
    if not rules:
        return level >= DEVELOPER
    return any(rule.allows(user, level) for rule in rules)


def _may_set_variables(p: Project, level: int) -> bool:
    """ProjectCiCdSetting#override_pipeline_variables_allowed? for the caller's level."""
    if not p.restrict_user_defined_variables:
        return True
    needed = VARIABLE_ROLES[p.variables_role]
    return needed is not None and level >= needed


def _blocked_ahead(pl: Pipeline) -> bool:
    """Whether a blocking manual job has still to be played before the pipeline can end."""
    return any(job.when == "manual" and not job.allow_failure and job.status in
               ("created", "manual") for job in pl.latest_jobs())


def _chain_error(message: str) -> GitLabError:
    """A pipeline-creation refusal in GitLab's validation shape: {"message": {"base": [...]}}."""
    return GitLabError(400, {"base": [message]})


def _clean_variables(variables: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Validate pipeline variables and fill in variable_type."""
    if not isinstance(variables, list | tuple):
        raise GitLabError(400, error="variables is invalid")
    cleaned = []
    for item in variables:
        if not isinstance(item, dict) or not item.get("key"):
            raise GitLabError(400, error="variables is invalid")
        cleaned.append({"key": str(item["key"]), "value": str(item.get("value", "")),
                        "variable_type": item.get("variable_type") or "env_var"})
    return cleaned


def _move_deployment(d: Deployment, job_status: str, now: datetime) -> None:
    """Mirror a job status on its deployment."""
    d.status = DEPLOYMENT_FOR_JOB.get(job_status, "created")
    d.updated_at = d.environment.updated_at = now
    d.finished_at = now if d.status in ("success", "failed", "canceled") else None


def _move_pipeline(pl: Pipeline, status: str, now: datetime) -> None:
    """Set a pipeline's status and the times GitLab's state machine sets with it."""
    pl.status = status
    pl.updated_at = now
    if status in ("running", "success", "failed"):
        pl.started_at = pl.started_at or now
    pl.finished_at = now if status in ("success", "failed", "canceled") else None
