"""GitLab's CI status rules: a pipeline's status follows from its jobs, stage by stage."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from emulators.gitlab.records import FINISHED, Job, Pipeline


def composite(jobs: Iterable[Job]) -> str:
    """The status of a group of jobs, by Gitlab::Ci::Status::Composite's order-dependent rules."""
    found: set[str] = set()
    for job in jobs:
        if job.allow_failure and job.status in ("failed", "canceled"):
            found.add("success_with_warnings")
        elif job.allow_failure and job.status == "manual":
            found.add("ignored")  # an optional manual job never holds a pipeline up
        else:
            found.add(job.status)
    for status, allowed in _ONLY_OF:
        if found and found <= allowed:
            return status
    return next((status for seen, status in _ANY_OF if seen in found), "failed")


_PASSING = {"success_with_warnings", "ignored"}
# (status, the set every job status must fall in), checked in this order.
_ONLY_OF = (
    ("skipped", {"skipped", "ignored"}),
    ("success", {"success", "skipped", *_PASSING}),
    ("created", {"created", *_PASSING}),
    ("preparing", {"preparing", *_PASSING}),
    ("canceled", {"canceled", "success", "skipped", *_PASSING}),
    ("pending", {"pending", "created", "skipped", *_PASSING}),
)
# (a status any job has, the resulting status), checked in this order after _ONLY_OF.
_ANY_OF = (
    ("running", "running"), ("pending", "running"),
    ("waiting_for_resource", "waiting_for_resource"),
    ("waiting_for_callback", "waiting_for_callback"), ("manual", "manual"),
    ("scheduled", "scheduled"), ("preparing", "preparing"),
    ("created", "running"),  # between stages: the next one has not been picked up yet
    ("canceling", "canceling"),
)


def stage_index(pl: Pipeline, job: Job) -> int:
    """The position of the job's stage in the pipeline."""
    return pl.stages.index(job.stage)


def current_stage(pl: Pipeline) -> int:
    """The first stage with a job that has not passed yet (the last stage when all have)."""
    for index, stage in enumerate(pl.stages):
        jobs = [job for job in pl.latest_jobs() if job.stage == stage]
        if any(job.status not in ("success", "skipped") and not _passed(job) for job in jobs):
            return index
    return len(pl.stages) - 1


def _passed(job: Job) -> bool:
    """A job that no longer holds its stage: failed but allowed to, or optional and unplayed."""
    return job.allow_failure and job.status in ("failed", "canceled", "manual")


def layout(pl: Pipeline, status: str, culprits: Sequence[Job]) -> dict[Job, str]:
    """Job statuses that put the pipeline in status, moving through stages as GitLab would."""
    jobs = pl.latest_jobs()
    if status in ("success", "skipped", "created"):
        return {job: status for job in jobs}
    if status == "failed":
        return _failed(pl, culprits)
    if status in ("manual", "scheduled"):
        return _blocked(pl, delayed=status == "scheduled")
    stage = current_stage(pl)
    later = "canceled" if status in ("canceled", "canceling") else "created"
    result = {}
    for job in jobs:
        index = stage_index(pl, job)
        target = "success" if index < stage else status if index == stage else later
        result[job] = _keep_or(job, target)
    return result


def _keep_or(job: Job, status: str) -> str:
    """Leave a job that already finished or was passed over alone; else move it to status."""
    return job.status if job.status in FINISHED or _passed(job) else status


def _failed(pl: Pipeline, culprits: Sequence[Job]) -> dict[Job, str]:
    """Culprits fail; their stage's other jobs pass, earlier stages pass, later ones skip."""
    last = max(stage_index(pl, job) for job in culprits)
    early = [job for job in culprits if stage_index(pl, job) < last and not job.allow_failure]
    if early:
        raise ValueError(f"{early[0].name} fails in an earlier stage without allow_failure: "
                         "GitLab would have skipped every later stage")
    result = {}
    for job in pl.latest_jobs():
        index = stage_index(pl, job)
        result[job] = ("failed" if job in culprits else "skipped" if index > last
                       else _keep_or(job, "success"))
    return result


def _blocked(pl: Pipeline, *, delayed: bool = False) -> dict[Job, str]:
    """Run up to the first blocking manual (or delayed) job and wait there, later stages created.

    A pipeline shows manual while a when: manual job without allow_failure waits, and
    scheduled while a when: delayed job waits for its timer.
    """
    when = "delayed" if delayed else "manual"
    blocking = [job for job in pl.latest_jobs() if job.when == when and job.status not in FINISHED
                and (delayed or not job.allow_failure)]
    if not blocking and delayed:
        raise ValueError(f"pipeline {pl.id} has no delayed job: a GitLab pipeline reports "
                         "scheduled only while a when: delayed job waits for its time")
    if not blocking:
        raise ValueError(f"pipeline {pl.id} has no blocking manual job: a GitLab pipeline "
                         "reports manual only while a when: manual job without "
                         "allow_failure waits")
    stage = stage_index(pl, blocking[0])
    result = {}
    for job in pl.latest_jobs():
        index = stage_index(pl, job)
        if index < stage:
            result[job] = _keep_or(job, "success")
        elif index == stage:
            result[job] = job.waiting_status if job.manual else _keep_or(job, "success")
        else:
            result[job] = "created"
    return result
