"""A local GitLab REST API v4 emulator for tests and the offline demo."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import math
import re
import signal
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

GITLAB_VERSION = "17.5.0-ee"
API = "/api/v4"

PIPELINE_STATUSES = (
    "created", "waiting_for_resource", "preparing", "pending", "running",
    "success", "failed", "canceled", "skipped", "manual", "scheduled",
)
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
CANCELABLE = frozenset(
    {"created", "waiting_for_resource", "preparing", "pending", "running", "scheduled"}
)
RETRYABLE = frozenset({"failed", "canceled"})
DEPLOYMENT_STATUSES = ("created", "running", "success", "failed", "canceled", "skipped", "blocked")
MR_STATES = ("opened", "closed", "locked", "merged", "all")

# (icon, text, label, group) exactly as GitLab's detailed_status presenter words them.
_DETAILED = {
    "created": ("status_created", "Created", "created", "created"),
    "waiting_for_resource": ("status_pending", "Waiting", "waiting for resource",
                             "waiting-for-resource"),
    "preparing": ("status_preparing", "Preparing", "preparing", "preparing"),
    "pending": ("status_pending", "Pending", "pending", "pending"),
    "running": ("status_running", "Running", "running", "running"),
    "success": ("status_success", "Passed", "passed", "success"),
    "failed": ("status_failed", "Failed", "failed", "failed"),
    "canceled": ("status_canceled", "Canceled", "canceled", "canceled"),
    "skipped": ("status_skipped", "Skipped", "skipped", "skipped"),
    "manual": ("status_manual", "Blocked", "manual action", "manual"),
    "scheduled": ("status_scheduled", "Scheduled", "scheduled", "scheduled"),
}

# A deployment mirrors its job's status, in GitLab's deployment vocabulary.
_DEPLOYMENT_FOR_JOB = {
    "running": "running", "success": "success", "failed": "failed",
    "canceled": "canceled", "skipped": "skipped", "manual": "blocked",
}

_TIERS = (
    ("production", ("prod", "live")),
    ("staging", ("stag", "model", "pre")),
    ("testing", ("test", "qa")),
    ("development", ("dev", "review", "trunk")),
)


# ---------------------------------------------------------------- time helpers


def _utc(dt: datetime) -> datetime:
    """Return dt as an aware UTC datetime truncated to milliseconds (GitLab's precision)."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def iso(dt: datetime | None) -> str | None:
    """Format a time the way the REST API does: 2024-05-01T12:00:00.000Z."""
    if dt is None:
        return None
    dt = _utc(dt)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def hook_time(dt: datetime | None) -> str | None:
    """Format a time the way webhook payloads do: 2024-05-01 12:00:00 UTC."""
    return None if dt is None else _utc(dt).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(value: str, name: str) -> datetime:
    """Parse an ISO 8601 query value; a bad one is a 400 like GitLab's."""
    try:
        return _utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise GitLabError(400, error=f"{name} is invalid") from None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds between two times, or None when either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


# ---------------------------------------------------------------- records


class GitLabError(Exception):
    """An API error answered as GitLab would: {"message": ...} or {"error": ...}."""

    def __init__(self, status: int, message: Any = None, *, error: str | None = None) -> None:
        """Keep the HTTP status and the body's message or error."""
        super().__init__(f"{status} {message if error is None else error}")
        self.status = status
        self.body: dict[str, Any] = {"error": error} if error is not None else {"message": message}


def not_found(what: str = "") -> GitLabError:
    """GitLab's 404 wording: '404 Project Not Found', or '404 Not Found'."""
    return GitLabError(404, f"404 {what} Not Found" if what else "404 Not Found")


@dataclass(eq=False)
class User:
    """A GitLab user."""

    id: int
    username: str
    name: str


@dataclass(eq=False)
class Commit:
    """One commit; parents always exist before their children."""

    sha: str
    title: str
    message: str
    parent_ids: list[str]
    author: User
    at: datetime


@dataclass(eq=False)
class Tag:
    """A lightweight or annotated tag."""

    name: str
    sha: str
    message: str
    created_at: datetime


@dataclass(eq=False)
class MergeRequest:
    """A merge request (usually merged) and the commits it brought."""

    id: int
    iid: int
    title: str
    author: User
    source_branch: str
    target_branch: str
    state: str
    created_at: datetime
    updated_at: datetime
    merged_at: datetime | None
    merge_commit_sha: str | None
    squash_commit_sha: str | None
    commits: list[str]
    labels: list[str]
    description: str = ""


@dataclass(eq=False)
class Release:
    """A release attached to a tag."""

    tag_name: str
    name: str
    description: str
    author: User
    created_at: datetime
    released_at: datetime


@dataclass(eq=False)
class Environment:
    """A deploy environment, created by the first job that names it."""

    id: int
    name: str
    created_at: datetime
    updated_at: datetime


@dataclass(eq=False)
class Deployment:
    """One run of a deploy job into an environment."""

    id: int
    iid: int
    environment: Environment
    job: Job = field(repr=False)
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None


@dataclass(eq=False)
class Job:
    """A CI job; a retry replaces it with a new job and marks this one retried."""

    id: int
    pipeline: Pipeline = field(repr=False)
    name: str
    stage: str
    status: str
    environment: str | None
    when: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: str | None = None
    retried: bool = False
    deployment: Deployment | None = field(default=None, repr=False)

    @property
    def duration(self) -> float | None:
        """Run time in seconds, or None before it starts."""
        return _seconds(self.started_at, self.finished_at)

    @property
    def queued_duration(self) -> float | None:
        """Seconds spent waiting for a runner."""
        return _seconds(self.created_at, self.started_at)


@dataclass(eq=False)
class Pipeline:
    """A pipeline record; emu.pipelines maps id to these."""

    id: int
    iid: int
    project: Project = field(repr=False)
    ref: str
    sha: str
    before_sha: str
    tag: bool
    source: str
    status: str
    variables: list[dict[str, str]]
    user: User
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    jobs: list[Job] = field(default_factory=list)
    # Bumped whenever auto-advance takes the pipeline over, so a stale timer task stops.
    auto_generation: int = 0

    @property
    def duration(self) -> int | None:
        """Whole seconds from start to finish, None until finished."""
        seconds = _seconds(self.started_at, self.finished_at)
        return None if seconds is None else int(seconds)

    @property
    def queued_duration(self) -> int | None:
        """Whole seconds from creation to start."""
        seconds = _seconds(self.created_at, self.started_at)
        return None if seconds is None else int(seconds)

    @property
    def deploy_env(self) -> str | None:
        """The DEPLOY_ENV variable, if the pipeline was given one."""
        return variable(self.variables, "DEPLOY_ENV")

    def latest_jobs(self) -> list[Job]:
        """Jobs not superseded by a retry."""
        return [job for job in self.jobs if not job.retried]


@dataclass(eq=False)
class Project:
    """A project with its repository, merge requests, releases and environments."""

    id: int
    path: str
    default_branch: str
    manual_deploy: bool = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    next_pipeline_iid: int = 1
    next_deployment_iid: int = 1

    @property
    def name(self) -> str:
        """The last path segment, as GitLab names projects by default."""
        return self.path.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Call:
    """One API request the emulator answered."""

    method: str
    path: str
    query: dict[str, Any]
    at: datetime
    status: int
    # Same path with the project written as its numeric id, so counts ignore the spelling.
    canonical_path: str = ""


@dataclass
class Fault:
    """A scripted failure for the next `remaining` matching requests (-1: forever)."""

    status: int
    remaining: int
    retry_after: int | None
    path_prefix: str
    delay: float


@dataclass(frozen=True)
class AutoAdvance:
    """How new pipelines move by themselves."""

    steps: tuple[str, ...]
    every: float
    fail_refs: frozenset[str]
    fail_envs: frozenset[str]


@dataclass(frozen=True)
class HookDelivery:
    """One webhook POST the emulator made."""

    url: str
    pipeline_id: int
    pipeline_status: str
    http_status: int
    event_uuid: str
    idempotency_key: str
    at: datetime


def variable(variables: Iterable[dict[str, str]], key: str) -> str | None:
    """The value of one pipeline variable, or None."""
    return next((v["value"] for v in variables if v.get("key") == key), None)


def _slug(name: str) -> str:
    """GitLab's environment slug: lower case, dashes, at most 24 characters."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "env"


def _tier(name: str) -> str:
    """Guess the deployment tier from the environment name, as GitLab does."""
    lowered = name.lower()
    for tier, hints in _TIERS:
        if any(hint in lowered for hint in hints):
            return tier
    return "other"


def _version_key(name: str) -> tuple[int, ...]:
    """Sort key for tags like v1.10.2."""
    return tuple(int(part) for part in re.findall(r"\d+", name))


# ---------------------------------------------------------------- JSON views


class View:
    """Renders records as GitLab's API entities for one base URL."""

    def __init__(self, base: str) -> None:
        """Remember the base URL used for every web_url."""
        self.base = base

    def project_url(self, project: Project) -> str:
        """The project's web URL."""
        return f"{self.base}/{project.path}"

    def user(self, user: User) -> dict[str, Any]:
        """UserBasic entity."""
        return {
            "id": user.id, "username": user.username, "name": user.name, "state": "active",
            "locked": False, "avatar_url": None, "web_url": f"{self.base}/{user.username}",
        }

    def project(self, p: Project) -> dict[str, Any]:
        """Project entity (the fields a bot reads)."""
        namespace = p.path.rsplit("/", 1)[0] if "/" in p.path else p.path
        return {
            "id": p.id, "name": p.name, "path": p.name, "path_with_namespace": p.path,
            "name_with_namespace": p.path.replace("/", " / "), "description": "",
            "default_branch": p.default_branch, "visibility": "private",
            "web_url": self.project_url(p),
            "http_url_to_repo": f"{self.project_url(p)}.git",
            "namespace": {"id": 100 + p.id, "name": namespace, "path": namespace,
                          "full_path": namespace, "kind": "group"},
            "archived": False, "created_at": iso(datetime(2024, 1, 1, tzinfo=UTC)),
        }

    def commit(self, p: Project, c: Commit) -> dict[str, Any]:
        """Commit entity."""
        email = f"{c.author.username}@example.com"
        return {
            "id": c.sha, "short_id": c.sha[:8], "created_at": iso(c.at),
            "parent_ids": list(c.parent_ids), "title": c.title, "message": c.message,
            "author_name": c.author.name, "author_email": email, "authored_date": iso(c.at),
            "committer_name": c.author.name, "committer_email": email,
            "committed_date": iso(c.at), "trailers": {}, "extended_trailers": {},
            "web_url": f"{self.project_url(p)}/-/commit/{c.sha}",
        }

    def detailed_status(self, pipeline: Pipeline) -> dict[str, Any]:
        """DetailedStatus entity."""
        icon, text, label, group = _DETAILED[pipeline.status]
        path = f"/{pipeline.project.path}/-/pipelines/{pipeline.id}"
        return {
            "icon": icon, "text": text, "label": label, "group": group, "tooltip": label,
            "has_details": True, "details_path": path, "illustration": None,
            "favicon": f"/assets/ci_favicons/favicon_{icon}.png",
        }

    def pipeline_basic(self, pl: Pipeline) -> dict[str, Any]:
        """PipelineBasic entity, what the list endpoint returns."""
        return {
            "id": pl.id, "iid": pl.iid, "project_id": pl.project.id, "sha": pl.sha,
            "ref": pl.ref, "status": pl.status, "source": pl.source,
            "created_at": iso(pl.created_at), "updated_at": iso(pl.updated_at),
            "web_url": f"{self.project_url(pl.project)}/-/pipelines/{pl.id}", "name": None,
        }

    def pipeline(self, pl: Pipeline) -> dict[str, Any]:
        """Pipeline entity, what single-pipeline endpoints return."""
        return self.pipeline_basic(pl) | {
            "before_sha": pl.before_sha, "tag": pl.tag, "yaml_errors": None,
            "user": self.user(pl.user), "started_at": iso(pl.started_at),
            "finished_at": iso(pl.finished_at), "committed_at": None,
            "duration": pl.duration, "queued_duration": pl.queued_duration,
            "coverage": None, "detailed_status": self.detailed_status(pl), "archived": False,
        }

    def job(self, job: Job) -> dict[str, Any]:
        """Job entity."""
        pl = job.pipeline
        commit = pl.project.commits[pl.sha]
        data: dict[str, Any] = {
            "id": job.id, "name": job.name, "stage": job.stage, "status": job.status,
            "ref": pl.ref, "tag": pl.tag, "coverage": None, "allow_failure": False,
            "created_at": iso(job.created_at), "started_at": iso(job.started_at),
            "finished_at": iso(job.finished_at), "erased_at": None,
            "duration": job.duration, "queued_duration": job.queued_duration,
            "user": self.user(pl.user), "commit": self.commit(pl.project, commit),
            "pipeline": self.pipeline_basic(pl),
            "web_url": f"{self.project_url(pl.project)}/-/jobs/{job.id}",
            "artifacts": [], "runner": None, "archived": False, "tag_list": [],
        }
        if job.failure_reason:
            data["failure_reason"] = job.failure_reason
        return data

    def environment(self, env: Environment, p: Project, *, last: bool = False) -> dict[str, Any]:
        """Environment entity; the single GET adds last_deployment."""
        data: dict[str, Any] = {
            "id": env.id, "name": env.name, "slug": _slug(env.name), "external_url": None,
            "state": "available", "tier": _tier(env.name),
            "created_at": iso(env.created_at), "updated_at": iso(env.updated_at),
        }
        if last:
            done = [d for d in p.deployments if d.environment is env and d.status == "success"]
            data["last_deployment"] = self.deployment(done[-1], p) if done else None
        return data

    def deployment(self, d: Deployment, p: Project) -> dict[str, Any]:
        """Deployment entity with its environment and deployable job."""
        pl = d.job.pipeline
        return {
            "id": d.id, "iid": d.iid, "ref": pl.ref, "sha": pl.sha, "status": d.status,
            "created_at": iso(d.created_at), "updated_at": iso(d.updated_at),
            "finished_at": iso(d.finished_at), "user": self.user(pl.user),
            "environment": self.environment(d.environment, p),
            "deployable": self.job(d.job),
        }

    def merge_request(self, mr: MergeRequest, p: Project) -> dict[str, Any]:
        """MergeRequestBasic entity."""
        head = mr.commits[-1] if mr.commits else mr.merge_commit_sha
        return {
            "id": mr.id, "iid": mr.iid, "project_id": p.id, "title": mr.title,
            "description": mr.description, "state": mr.state,
            "created_at": iso(mr.created_at), "updated_at": iso(mr.updated_at),
            "merged_at": iso(mr.merged_at), "closed_at": None,
            "merged_by": self.user(mr.author) if mr.merged_at else None,
            "merge_user": self.user(mr.author) if mr.merged_at else None,
            "target_branch": mr.target_branch, "source_branch": mr.source_branch,
            "author": self.user(mr.author), "assignees": [], "reviewers": [],
            "labels": list(mr.labels), "draft": False, "sha": head,
            "merge_commit_sha": mr.merge_commit_sha, "squash_commit_sha": mr.squash_commit_sha,
            "squash": mr.squash_commit_sha is not None,
            "references": {"short": f"!{mr.iid}", "full": f"{p.path}!{mr.iid}"},
            "web_url": f"{self.project_url(p)}/-/merge_requests/{mr.iid}",
        }

    def tag(self, t: Tag, p: Project) -> dict[str, Any]:
        """Tag entity."""
        release = p.releases.get(t.name)
        return {
            "name": t.name, "message": t.message or None, "target": t.sha,
            "commit": self.commit(p, p.commits[t.sha]), "protected": False,
            "created_at": iso(t.created_at) if t.message else None,
            "release": {"tag_name": t.name, "description": release.description}
            if release else None,
        }

    def branch(self, name: str, p: Project, merged: bool) -> dict[str, Any]:
        """Branch entity."""
        return {
            "name": name, "commit": self.commit(p, p.commits[p.branches[name]]),
            "merged": merged, "protected": name == p.default_branch,
            "default": name == p.default_branch, "developers_can_push": False,
            "developers_can_merge": False, "can_push": True,
            "web_url": f"{self.project_url(p)}/-/tree/{name}",
        }

    def release(self, r: Release, p: Project) -> dict[str, Any]:
        """Release entity."""
        url = f"{self.project_url(p)}/-/releases/{r.tag_name}"
        archive = f"{self.project_url(p)}/-/archive/{r.tag_name}/{p.name}-{r.tag_name}"
        sources = [{"format": fmt, "url": f"{archive}.{fmt}"} for fmt in ("zip", "tar.gz")]
        return {
            "tag_name": r.tag_name, "name": r.name, "description": r.description,
            "created_at": iso(r.created_at), "released_at": iso(r.released_at),
            "upcoming_release": r.released_at > r.created_at, "author": self.user(r.author),
            "commit": self.commit(p, p.commits[p.tags[r.tag_name].sha]),
            "commit_path": f"/{p.path}/-/commit/{p.tags[r.tag_name].sha}",
            "tag_path": f"/{p.path}/-/tags/{r.tag_name}", "milestones": [], "evidences": [],
            "assets": {"count": len(sources), "sources": sources, "links": []},
            "_links": {"self": url, "edit_url": f"{url}/edit"},
        }

    def hook_build(self, job: Job) -> dict[str, Any]:
        """One entry of a Pipeline Hook's builds[]."""
        return {
            "id": job.id, "stage": job.stage, "name": job.name, "status": job.status,
            "created_at": hook_time(job.created_at), "started_at": hook_time(job.started_at),
            "finished_at": hook_time(job.finished_at), "duration": job.duration,
            "queued_duration": job.queued_duration, "failure_reason": job.failure_reason,
            "when": job.when, "manual": job.when == "manual", "allow_failure": False,
            "user": self.hook_user(job.pipeline.user), "runner": None,
            "artifacts_file": {"filename": None, "size": None},
            "environment": {"name": job.environment, "action": "start",
                            "deployment_tier": _tier(job.environment)}
            if job.environment else None,
        }

    def hook_user(self, user: User) -> dict[str, Any]:
        """The user object of webhook payloads."""
        return {"id": user.id, "name": user.name, "username": user.username,
                "avatar_url": None, "email": "[REDACTED]"}

    def pipeline_hook(self, pl: Pipeline) -> dict[str, Any]:
        """GitLab's Pipeline Hook body for the pipeline's current state."""
        p, commit = pl.project, pl.project.commits[pl.sha]
        jobs = pl.latest_jobs()
        return {
            "object_kind": "pipeline",
            "object_attributes": {
                "id": pl.id, "iid": pl.iid, "name": None, "ref": pl.ref, "tag": pl.tag,
                "sha": pl.sha, "before_sha": pl.before_sha, "source": pl.source,
                "status": pl.status, "detailed_status": _DETAILED[pl.status][2],
                "stages": list(dict.fromkeys(job.stage for job in jobs)),
                "created_at": hook_time(pl.created_at), "finished_at": hook_time(pl.finished_at),
                "duration": pl.duration, "queued_duration": pl.queued_duration,
                "variables": [{"key": v["key"], "value": v["value"]} for v in pl.variables],
                "url": f"{self.project_url(p)}/-/pipelines/{pl.id}",
            },
            "merge_request": None,
            "user": self.hook_user(pl.user),
            "project": {
                "id": p.id, "name": p.name, "description": "", "web_url": self.project_url(p),
                "avatar_url": None, "git_http_url": f"{self.project_url(p)}.git",
                "namespace": p.path.rsplit("/", 1)[0], "visibility_level": 0,
                "path_with_namespace": p.path, "default_branch": p.default_branch,
                "ci_config_path": "",
            },
            "commit": {
                "id": commit.sha, "message": commit.message, "title": commit.title,
                "timestamp": _utc(commit.at).isoformat(),
                "url": f"{self.project_url(p)}/-/commit/{commit.sha}",
                "author": {"name": commit.author.name,
                           "email": f"{commit.author.username}@example.com"},
            },
            "builds": [self.hook_build(job) for job in jobs],
        }


# ---------------------------------------------------------------- the emulator


class GitLabEmulator:
    """An in-memory GitLab served over HTTP, scripted by the test that owns it."""

    def __init__(
        self,
        token: str = "glpat-test",
        clock: Callable[[], datetime] | None = None,
        *,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        """Create an empty GitLab; call start() to serve it."""
        self.token = token
        self.clock = clock or (lambda: datetime.now(UTC))
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.latency = 0.0
        self.projects: dict[int, Project] = {}
        self.pipelines: dict[int, Pipeline] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.hook_deliveries: list[HookDelivery] = []
        self.auto: AutoAdvance | None = None
        self.current_user = User(1, "releasebot", "ReleaseBot")
        self._users: dict[str, User] = {self.current_user.username: self.current_user}
        self._ids: dict[str, int] = {"pipeline": 1000, "job": 5000, "deployment": 300,
                                     "environment": 10, "merge_request": 7000, "commit": 0}
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._hook_queue: asyncio.Queue[tuple[str, str | None, int, dict[str, Any]]] = (
            asyncio.Queue()
        )
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        """Base URL to give python-gitlab (GITLAB_URL), e.g. http://127.0.0.1:PORT."""
        if self._url is None:
            raise RuntimeError("GitLabEmulator is not started")
        return self._url

    @property
    def base_url(self) -> str:
        """The URL used in web_url fields; a placeholder until started."""
        return self._url or "http://gitlab.emulator"

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 picks a free port) and return the URL."""
        app = web.Application()
        for method, path, handler in CONTROL_ROUTES:
            app.router.add_route(method, path, self._bind(handler))
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self._url = f"http://{host}:{bound}"
        self._spawn(self._hook_worker())
        return self._url

    async def stop(self) -> None:
        """Stop timers, hook deliveries and the server."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> GitLabEmulator:
        """Start on a free local port."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the server."""
        await self.stop()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a background task owned by the emulator (cancelled by stop())."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _bind(self, handler: ControlHandler) -> Callable[[web.Request], Awaitable[web.Response]]:
        """Adapt a control handler to an aiohttp handler."""

        async def run(request: web.Request) -> web.Response:
            """Call the handler; a bad request is a 400 (404 for unknown pipelines)."""
            try:
                return await handler(self, request)
            except (GitLabError, KeyError, ValueError) as exc:
                status = exc.status if isinstance(exc, GitLabError) else 400
                return web.json_response({"error": str(exc)}, status=status)

        return run

    # ------------------------------------------------------------ small helpers

    def now(self) -> datetime:
        """The emulator's clock, in UTC to the millisecond."""
        return _utc(self.clock())

    def _next_id(self, kind: str) -> int:
        """Next global id for a kind of record."""
        self._ids[kind] += 1
        return self._ids[kind]

    def user(self, username: str) -> User:
        """The user with this username, created on first use."""
        if username not in self._users:
            name = " ".join(part.capitalize() for part in re.split(r"[._-]", username))
            self._users[username] = User(len(self._users) + 1, username, name)
        return self._users[username]

    def project(self, ref: Project | int | str) -> Project:
        """A project by record, numeric id (or its string) or path; KeyError if unknown."""
        if isinstance(ref, Project):
            return ref
        if isinstance(ref, int) or ref.isdigit():
            return self.projects[int(ref)]
        for p in self.projects.values():
            if p.path == ref:
                return p
        raise KeyError(f"no project {ref!r}")

    def pipeline(self, pipeline_id: int) -> Pipeline:
        """A pipeline by id; a GitLab 404 if unknown."""
        if pipeline_id not in self.pipelines:
            raise not_found()
        return self.pipelines[pipeline_id]

    def pipelines_for(self, project: Project | int | str) -> list[Pipeline]:
        """The project's pipelines, oldest first."""
        p = self.project(project)
        return [pl for pl in self.pipelines.values() if pl.project is p]

    def resolve(self, project: Project, ref: str) -> Commit | None:
        """The commit a sha, short sha, branch or tag names (branches win, as in git)."""
        if ref in project.commits:
            return project.commits[ref]
        if ref in project.branches:
            return project.commits[project.branches[ref]]
        if ref in project.tags:
            return project.commits[project.tags[ref].sha]
        if len(ref) >= 7 and re.fullmatch(r"[0-9a-f]+", ref):
            found = [c for sha, c in project.commits.items() if sha.startswith(ref)]
            return found[0] if len(found) == 1 else None
        return None

    def _commit(self, project: Project, ref: str) -> Commit:
        """Like resolve() but a ValueError for the test author when unknown."""
        commit = self.resolve(project, ref)
        if commit is None:
            raise ValueError(f"{project.path}: unknown ref or sha {ref!r}")
        return commit

    def ancestors(self, project: Project, sha: str) -> set[str]:
        """Every commit reachable from sha, sha included."""
        seen: set[str] = set()
        stack = [sha]
        while stack:
            current = stack.pop()
            if current not in seen:
                seen.add(current)
                stack.extend(project.commits[current].parent_ids)
        return seen

    # ------------------------------------------------------------ data set-up

    def add_project(
        self, path: str, *, id: int | None = None, default_branch: str = "main",
        manual_deploy: bool = False,
    ) -> Project:
        """Add a project; manual_deploy makes its deploy jobs wait for play."""
        project_id = id if id is not None else max(self.projects, default=0) + 1
        if project_id in self.projects:
            raise ValueError(f"project id {project_id} already exists")
        project = Project(project_id, path, default_branch, manual_deploy)
        self.projects[project_id] = project
        return project

    def add_commit(
        self, project: Project | int | str, sha: str | None = None, *, title: str,
        message: str = "", branches: Sequence[str] | None = None, parent: str | None = None,
        author: str = "dev", at: datetime | None = None,
    ) -> Commit:
        """Add a commit on top of parent (default: the first branch's head) and move branches.

        branches defaults to [default_branch]; [] adds a commit no branch points at.
        """
        p = self.project(project)
        branches = [p.default_branch] if branches is None else list(branches)
        parent_sha = self._parent_for(p, parent, branches)
        sha = sha or self._make_sha(p, title)
        if sha in p.commits:
            raise ValueError(f"{p.path}: commit {sha} already exists")
        if not message:
            message = title
        elif not message.startswith(title):
            message = f"{title}\n\n{message}"
        commit = Commit(sha, title, message, [parent_sha] if parent_sha else [],
                        self.user(author), _utc(at) if at else self.now())
        p.commits[sha] = commit
        for branch in branches:
            p.branches[branch] = sha
        return commit

    def _parent_for(self, p: Project, parent: str | None, branches: list[str]) -> str | None:
        """The explicit parent, else the head of the first existing branch, else none."""
        if parent is not None:
            return self._commit(p, parent).sha
        for branch in [*branches, p.default_branch]:
            if branch in p.branches:
                return p.branches[branch]
        return None

    def _make_sha(self, p: Project, title: str) -> str:
        """A deterministic 40-hex sha, so seeded data is the same on every run."""
        seed = f"{p.path}:{self._next_id('commit')}:{title}"
        return hashlib.sha1(seed.encode()).hexdigest()

    def add_tag(
        self, project: Project | int | str, name: str, sha: str, *, message: str = "",
    ) -> Tag:
        """Tag a commit (sha or ref name); a message makes it annotated."""
        p = self.project(project)
        if name in p.tags:
            raise ValueError(f"{p.path}: tag {name} already exists")
        tag = Tag(name, self._commit(p, sha).sha, message, self.now())
        p.tags[name] = tag
        return tag

    def add_branch(self, project: Project | int | str, name: str, sha: str) -> None:
        """Point a branch at a commit (sha or ref name), creating or moving it."""
        p = self.project(project)
        p.branches[name] = self._commit(p, sha).sha

    def add_merge_request(
        self, project: Project | int | str, iid: int, title: str, *,
        merge_commit_sha: str | None, source_branch: str, author: str = "dev",
        merged_at: datetime | None = None, target_branch: str | None = None,
        commits: Sequence[str] = (), squash_commit_sha: str | None = None,
        labels: Sequence[str] = (), state: str = "merged", description: str = "",
    ) -> MergeRequest:
        """Add a merge request; commits are the source-branch commits it brought."""
        p = self.project(project)
        if state not in MR_STATES[:-1]:
            raise ValueError(f"state must be one of {MR_STATES[:-1]}")
        merged = (_utc(merged_at) if merged_at else self.now()) if state == "merged" else None
        updated = merged or self.now()
        mr = MergeRequest(
            self._next_id("merge_request"), iid, title, self.user(author), source_branch,
            target_branch or p.default_branch, state, updated - timedelta(days=1), updated,
            merged, merge_commit_sha, squash_commit_sha,
            [self._commit(p, sha).sha for sha in commits], list(labels), description,
        )
        p.merge_requests[iid] = mr
        return mr

    def add_release(
        self, project: Project | int | str, tag_name: str, *, name: str | None = None,
        description: str = "", ref: str | None = None,
    ) -> Release:
        """Create a release as the API would (tagging ref when the tag is new)."""
        return self.create_release(self.project(project), tag_name, name, description, ref)

    def seed_demo(self) -> None:
        """Create acme/payments (id 1) and acme/web (id 2) with tags v1.0.0, v1.1.0 and MRs."""
        start = self.now() - timedelta(days=10)
        self._seed_payments(self.add_project("acme/payments", id=1), start)
        self._seed_web(self.add_project("acme/web", id=2), start)

    def _seed_payments(self, p: Project, start: datetime) -> None:
        """Payments history: two merged MRs between v1.0.0 and v1.1.0, one after."""
        at = iter(start + timedelta(hours=6 * i) for i in range(100))
        self.add_commit(p, title="Initial commit", author="alice", at=next(at))
        base = self.add_commit(p, title="Add payment gateway client", author="alice", at=next(at))
        self.add_tag(p, "v1.0.0", base.sha, message="Release v1.0.0")
        self._seed_mr(p, 1, "Add refunds API", "feature/refunds", "bob", next(at), ["api"])
        self._seed_mr(p, 2, "Fix rounding in currency conversion", "fix/rounding", "carol",
                      next(at), ["bug"])
        self.add_tag(p, "v1.1.0", "main", message="Release v1.1.0")
        self.add_branch(p, "release", "main")
        self._seed_mr(p, 3, "Add payout webhooks", "feature/payout-hooks", "bob", next(at),
                      ["api"])
        self.add_commit(p, title="Bump version to 1.2.0-dev", author="alice", at=next(at))
        self.add_merge_request(p, 4, "WIP: Multi-currency wallets", merge_commit_sha=None,
                               source_branch="feature/wallets", author="dave", state="opened")

    def _seed_web(self, p: Project, start: datetime) -> None:
        """Web history: one merged MR between v1.0.0 and v1.1.0."""
        at = iter(start + timedelta(hours=7 * i) for i in range(100))
        self.add_commit(p, title="Initial commit", author="erin", at=next(at))
        self.add_tag(p, "v1.0.0", "main")
        self._seed_mr(p, 1, "Redesign checkout page", "feature/checkout", "erin", next(at),
                      ["ui"])
        self.add_tag(p, "v1.1.0", "main")
        self.add_branch(p, "release", "main")
        self.add_commit(p, title="Update footer links", author="frank", at=next(at))

    def _seed_mr(
        self, p: Project, iid: int, title: str, branch: str, author: str, at: datetime,
        labels: list[str],
    ) -> MergeRequest:
        """A feature commit plus its merge commit on main, and the merged MR."""
        # A commit no branch points at: the feature branch is gone once merged.
        feature = self.add_commit(p, title=title, author=author, at=at, branches=[])
        merge = self.add_commit(
            p, title=f"Merge branch '{branch}' into '{p.default_branch}'",
            message=f"{title}\n\nSee merge request {p.path}!{iid}", parent=feature.sha,
            author=author, at=at + timedelta(hours=1),
        )
        return self.add_merge_request(
            p, iid, title, merge_commit_sha=merge.sha, source_branch=branch, author=author,
            merged_at=merge.at, commits=[feature.sha], labels=labels,
        )

    # ------------------------------------------------------------ pipelines

    def create_pipeline(
        self, project: Project | int | str, ref: str,
        variables: Sequence[dict[str, str]] = (), *, source: str = "api",
    ) -> Pipeline:
        """Create a pipeline on a branch or tag, as POST /projects/:id/pipeline does."""
        p = self.project(project)
        commit = self.resolve(p, ref) if ref in p.branches or ref in p.tags else None
        if commit is None:
            raise GitLabError(400, {"base": ["Reference not found"]})
        now = self.now()
        pl = Pipeline(
            self._next_id("pipeline"), p.next_pipeline_iid, p, ref, commit.sha,
            commit.parent_ids[0] if commit.parent_ids else "0" * 40,
            ref in p.tags and ref not in p.branches, source, "created",
            _clean_variables(variables), self.current_user, now, now,
        )
        p.next_pipeline_iid += 1
        self.pipelines[pl.id] = pl
        self._add_job(pl, self._job_name(pl), now)
        if p.manual_deploy:
            pl.status = "manual"
        self._changed(pl)
        self._maybe_auto(pl)
        return pl

    @staticmethod
    def _job_name(pl: Pipeline) -> str:
        """deploy:<DEPLOY_ENV>, or plain deploy without one."""
        env = pl.deploy_env
        return f"deploy:{env}" if env else "deploy"

    def _add_job(self, pl: Pipeline, name: str, now: datetime) -> Job:
        """Add the deploy job and, when it names an environment, its deployment."""
        manual = pl.project.manual_deploy
        job = Job(self._next_id("job"), pl, name, "deploy", "manual" if manual else "created",
                  pl.deploy_env or None, "manual" if manual else "on_success", now)
        pl.jobs.append(job)
        if job.environment:
            job.deployment = self._add_deployment(pl.project, job, now)
        return job

    def _add_deployment(self, p: Project, job: Job, now: datetime) -> Deployment:
        """Record a deployment for a deploy job, creating the environment if new."""
        env_name = job.environment or ""
        env = p.environments.get(env_name)
        if env is None:
            env = Environment(self._next_id("environment"), env_name, now, now)
            p.environments[env_name] = env
        status = _DEPLOYMENT_FOR_JOB.get(job.status, "created")
        deployment = Deployment(self._next_id("deployment"), p.next_deployment_iid, env, job,
                                status, now, now)
        p.next_deployment_iid += 1
        p.deployments.append(deployment)
        return deployment

    def set_status(self, pipeline_id: int, status: str, *, failed_job: str | None = None) -> None:
        """Move a pipeline and its jobs to status, updating times, deployments and hooks."""
        if status not in PIPELINE_STATUSES:
            raise ValueError(f"status must be one of {PIPELINE_STATUSES}")
        pl = self.pipeline(pipeline_id)
        now = self.now()
        culprit = self._culprit(pl, failed_job) if status == "failed" else None
        for job in pl.latest_jobs():
            if job is culprit or culprit is None:
                self._move_job(job, status, now)
            elif job.status not in FINISHED:
                self._move_job(job, "canceled" if job.started_at else "skipped", now)
        self._move_pipeline(pl, status, now)
        self._changed(pl)

    def _culprit(self, pl: Pipeline, failed_job: str | None) -> Job:
        """The job to fail: the named one (by name or stage), else the last job."""
        jobs = pl.latest_jobs()
        if failed_job is None:
            return jobs[-1]
        for job in jobs:
            if failed_job in (job.name, job.stage):
                return job
        raise ValueError(f"pipeline {pl.id} has no job {failed_job!r}: {[j.name for j in jobs]}")

    def _move_job(self, job: Job, status: str, now: datetime) -> None:
        """Set a job's status and the times that go with it."""
        job.status = status
        if status == "running" or status in ("success", "failed"):
            job.started_at = job.started_at or now
        elif status not in FINISHED:
            job.started_at = None
        job.finished_at = now if status in FINISHED else None
        job.failure_reason = "script_failure" if status == "failed" else None
        if job.deployment is not None:
            self._move_deployment(job.deployment, status, now)

    @staticmethod
    def _move_deployment(d: Deployment, job_status: str, now: datetime) -> None:
        """Mirror a job status on its deployment."""
        d.status = _DEPLOYMENT_FOR_JOB.get(job_status, "created")
        d.updated_at = d.environment.updated_at = now
        d.finished_at = now if d.status in ("success", "failed", "canceled") else None

    @staticmethod
    def _move_pipeline(pl: Pipeline, status: str, now: datetime) -> None:
        """Set a pipeline's status and the times that go with it."""
        pl.status = status
        pl.updated_at = now
        if status == "running" or status in ("success", "failed"):
            pl.started_at = pl.started_at or now
        elif status not in FINISHED:
            pl.started_at = None
        pl.finished_at = now if status in FINISHED else None

    def cancel_pipeline(self, pipeline_id: int) -> Pipeline:
        """Cancel a pipeline that has not finished; a finished one is left alone."""
        pl = self.pipeline(pipeline_id)
        if pl.status in CANCELABLE:
            self.set_status(pl.id, "canceled")
        return pl

    def retry_pipeline(self, pipeline_id: int) -> Pipeline:
        """Replace failed and canceled jobs with new pending ones, as GitLab's retry does."""
        pl = self.pipeline(pipeline_id)
        stale = [job for job in pl.latest_jobs() if job.status in RETRYABLE]
        if not stale:
            return pl
        now = self.now()
        for job in stale:
            job.retried = True
            fresh = self._add_job(pl, job.name, now)
            fresh.when = job.when
            self._move_job(fresh, "pending", now)
        self._move_pipeline(pl, "pending", now)
        self._changed(pl)
        self._maybe_auto(pl)
        return pl

    def job(self, project: Project, job_id: int) -> Job:
        """A job of the project by id; a GitLab 404 if unknown."""
        for pl in self.pipelines_for(project):
            for job in pl.jobs:
                if job.id == job_id:
                    return job
        raise not_found()

    def play_job(self, project: Project | int | str, job_id: int) -> Job:
        """Start a manual job; others answer GitLab's 'Unplayable Job'."""
        job = self.job(self.project(project), job_id)
        if job.status not in ("manual", "scheduled"):
            raise GitLabError(400, "400 Bad request - Unplayable Job")
        now = self.now()
        self._move_job(job, "pending", now)
        self._move_pipeline(job.pipeline, "pending", now)
        self._changed(job.pipeline)
        self._maybe_auto(job.pipeline)
        return job

    # ------------------------------------------------------------ releases

    def create_release(
        self, p: Project, tag_name: str, name: str | None, description: str, ref: str | None,
        released_at: datetime | None = None,
    ) -> Release:
        """Create a release, tagging ref first when the tag does not exist yet."""
        if tag_name in p.releases:
            raise GitLabError(409, "Release already exists")
        if tag_name not in p.tags:
            if not ref:
                raise GitLabError(422, "Ref is not specified")
            commit = self.resolve(p, ref)
            if commit is None:
                raise GitLabError(422, f"Target {ref} is invalid")
            p.tags[tag_name] = Tag(tag_name, commit.sha, "", self.now())
        now = self.now()
        release = Release(tag_name, name or tag_name, description, self.current_user, now,
                          released_at or now)
        p.releases[tag_name] = release
        return release

    # ------------------------------------------------------------ auto-advance

    def auto_advance(
        self, *, steps: Sequence[str] = ("running", "success"), every: float = 0.5,
        fail_refs: Iterable[str] = (), fail_envs: Iterable[str] = (), enabled: bool = True,
    ) -> None:
        """Make new pipelines take one of steps every `every` seconds (fail for listed refs/envs).

        A pipeline someone else moves (set_status, cancel) drops out of auto-advance.
        """
        bad = [s for s in steps if s not in PIPELINE_STATUSES]
        if bad:
            raise ValueError(f"unknown statuses {bad}")
        self.auto = AutoAdvance(tuple(steps), every, frozenset(fail_refs),
                                frozenset(fail_envs)) if enabled else None

    def _maybe_auto(self, pl: Pipeline) -> None:
        """Hand a new or retried pipeline to auto-advance when it is on."""
        if self.auto is None or pl.status == "manual":
            return
        pl.auto_generation += 1
        failing = pl.ref in self.auto.fail_refs or (pl.deploy_env or "") in self.auto.fail_envs
        plan = [("failed" if failing and s == "success" else s) for s in self.auto.steps]
        self._spawn(self._advance(pl, pl.auto_generation, plan, self.auto.every))

    async def _advance(self, pl: Pipeline, generation: int, plan: list[str], every: float) -> None:
        """Walk a pipeline through plan, stopping if anyone else touched it."""
        expected = pl.status
        for step in plan:
            await asyncio.sleep(every)
            if pl.auto_generation != generation or pl.status != expected:
                return
            self.set_status(pl.id, step)
            expected = step

    # ------------------------------------------------------------ webhooks

    def register_hook(self, url: str | None, secret: str | None = None) -> None:
        """Push a Pipeline Hook to url on every pipeline status change (None turns it off)."""
        self.webhook_url = url
        self.webhook_secret = secret

    def _changed(self, pl: Pipeline) -> None:
        """Queue an automatic hook for a status change, with the body as of now.

        Call from the event loop's thread: the queue is not thread-safe.
        """
        if self.webhook_url:
            body = View(self.base_url).pipeline_hook(pl)
            self._hook_queue.put_nowait((self.webhook_url, self.webhook_secret, pl.id, body))

    async def drain_hooks(self) -> None:
        """Wait until every queued automatic hook has been delivered."""
        await self._hook_queue.join()

    async def _hook_worker(self) -> None:
        """Deliver automatic hooks one at a time, in the order the changes happened."""
        while True:
            url, secret, pipeline_id, body = await self._hook_queue.get()
            try:
                key = str(uuid.uuid4())
                await self._deliver(url, secret, pipeline_id, body, key, key)
            finally:
                self._hook_queue.task_done()

    async def send_pipeline_hook(
        self, target_url: str, secret: str | None, pipeline_id: int, *,
        idempotency_key: str | None = None, event_uuid: str | None = None,
    ) -> int:
        """POST the pipeline's current Pipeline Hook to target_url; the HTTP status (0: no answer).

        Pass the same idempotency_key to imitate GitLab re-sending one delivery.
        """
        body = View(self.base_url).pipeline_hook(self.pipeline(pipeline_id))
        key = idempotency_key or str(uuid.uuid4())
        return await self._deliver(target_url, secret, pipeline_id, body, key,
                                   event_uuid or str(uuid.uuid4()))

    async def _deliver(
        self, url: str, secret: str | None, pipeline_id: int, body: dict[str, Any],
        idempotency_key: str, event_uuid: str,
    ) -> int:
        """One webhook POST with GitLab's headers, recorded in hook_deliveries."""
        headers = {
            "Content-Type": "application/json", "User-Agent": f"GitLab/{GITLAB_VERSION}",
            "X-Gitlab-Event": "Pipeline Hook", "X-Gitlab-Event-UUID": event_uuid,
            "X-Gitlab-Webhook-UUID": str(uuid.uuid5(uuid.NAMESPACE_URL, url)),
            "X-Gitlab-Instance": self.base_url, "Idempotency-Key": idempotency_key,
        }
        if secret is not None:
            headers["X-Gitlab-Token"] = secret
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            # GitLab gives receivers 10 s before counting a delivery as failed.
            async with self._session.post(url, data=json.dumps(body), headers=headers,
                                          timeout=aiohttp.ClientTimeout(total=10)) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError):
            status = 0
        self.hook_deliveries.append(HookDelivery(
            url, pipeline_id, body["object_attributes"]["status"], status, event_uuid,
            idempotency_key, self.now()))
        return status

    # ------------------------------------------------------------ calls and faults

    def count(self, path_prefix: str = "", method: str | None = None) -> int:
        """How many API calls matched; prefixes may omit /api/v4 and use the numeric id."""
        return sum(
            1 for call in self.calls
            if (method is None or call.method == method.upper())
            and _matches(path_prefix, call.path, call.canonical_path)
        )

    def reset_calls(self) -> None:
        """Forget recorded calls."""
        self.calls.clear()

    def fail(
        self, *, times: int = 1, status: int = 500, retry_after: int | None = None,
        path_prefix: str = "", delay: float = 0.0,
    ) -> None:
        """Answer the next `times` matching requests (-1: all) with status after delay seconds."""
        if status not in (429, 500, 502, 503, 504):
            raise ValueError("status must be 429, 500, 502, 503 or 504")
        self.faults.append(Fault(status, times, retry_after, path_prefix, delay))

    def reset(self) -> None:
        """Clear calls, faults, latency and auto-advance; the data stays."""
        self.calls.clear()
        self.faults.clear()
        self.latency = 0.0
        self.auto = None

    def _take_fault(self, path: str, canonical: str) -> Fault | None:
        """Use up one matching fault, if any."""
        for fault in self.faults:
            if fault.remaining != 0 and _matches(fault.path_prefix, path, canonical):
                if fault.remaining > 0:
                    fault.remaining -= 1
                return fault
        return None

    # ------------------------------------------------------------ HTTP plumbing

    async def _dispatch(self, request: web.Request) -> web.Response:
        """Answer one API request and record it."""
        if self.latency:
            await asyncio.sleep(self.latency)
        path = request.rel_url.raw_path
        route, params = _match(request.method, path)
        canonical = self._canonical(path, params)
        try:
            response = await self._answer(request, route, params, path, canonical)
        except GitLabError as exc:
            response = web.json_response(exc.body, status=exc.status)
        self.calls.append(Call(request.method, path, _query_dict(request), self.now(),
                               response.status, canonical))
        return response

    async def _answer(
        self, request: web.Request, route: Route | None, params: dict[str, str], path: str,
        canonical: str,
    ) -> web.Response:
        """Faults, then auth, then the route's handler."""
        fault = self._take_fault(path, canonical)
        if fault is not None:
            return await _fault_response(fault)
        if not self._authorized(request):
            raise GitLabError(401, "401 Unauthorized")
        if route is None:
            raise not_found()
        ctx = Ctx(self, request, params, await _read_body(request), View(_base_of(request)))
        return route.handler(ctx)

    def _authorized(self, request: web.Request) -> bool:
        """PRIVATE-TOKEN or Authorization: Bearer must carry the token."""
        bearer = request.headers.get("Authorization", "")
        given = request.headers.get("PRIVATE-TOKEN") or bearer.removeprefix("Bearer ").strip()
        return given == self.token

    def _canonical(self, path: str, params: dict[str, str]) -> str:
        """The path with a project spelled by its numeric id."""
        ref = params.get("project")
        if ref is None:
            return path
        try:
            project = self.project(ref)
        except KeyError:
            return path
        raw = path.split("/")[4]
        return path.replace(f"/projects/{raw}", f"/projects/{project.id}", 1)


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


def _matches(prefix: str, path: str, canonical: str) -> bool:
    """Whether a call path starts with prefix; prefixes without /api/ are relative to /api/v4."""
    if not prefix.startswith("/api/"):
        prefix = API + (prefix if prefix.startswith("/") or not prefix else f"/{prefix}")
    return path.startswith(prefix) or canonical.startswith(prefix)


async def _fault_response(fault: Fault) -> web.Response:
    """The scripted error, shaped as GitLab (or the proxy in front of it) sends it."""
    if fault.delay:
        await asyncio.sleep(fault.delay)
    if fault.status == 429:
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return web.json_response({"message": "429 Too Many Requests"}, status=429,
                                 headers=headers)
    if fault.status == 500:
        return web.json_response({"message": "500 Internal Server Error"}, status=500)
    # 502/503/504 come from the load balancer as HTML, not from the Rails app as JSON.
    reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
    text = f"<html><body><h1>{fault.status} {reason[fault.status]}</h1></body></html>"
    return web.Response(status=fault.status, text=text, content_type="text/html")


def _base_of(request: web.Request) -> str:
    """The scheme and host the client used, for web_url and Link headers."""
    return f"{request.url.scheme}://{request.url.raw_authority}"


def _query_dict(request: web.Request) -> dict[str, Any]:
    """The query string as a dict; repeated keys (refs[]) become lists."""
    result: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        result[key] = values if len(values) > 1 else values[0]
    return result


async def _read_body(request: web.Request) -> dict[str, Any]:
    """JSON or form body merged over the query string, as Grape does."""
    merged: dict[str, Any] = {key: request.query[key] for key in request.query}
    if not request.can_read_body:
        return merged
    if request.content_type == "application/json":
        text = await request.text()
        try:
            body = json.loads(text) if text.strip() else {}
        except json.JSONDecodeError:
            raise GitLabError(400, error="The provided content-type 'application/json' "
                                         "is not supported.") from None
    else:
        body = dict(await request.post())
    if isinstance(body, dict):
        merged.update(body)
    return merged


# ---------------------------------------------------------------- request context


@dataclass
class Ctx:
    """What a route handler gets: the emulator, the request and its parsed parts."""

    emu: GitLabEmulator
    request: web.Request
    params: dict[str, str]
    body: dict[str, Any]
    view: View

    def project(self) -> Project:
        """The :id project of the route, or GitLab's 404."""
        try:
            return self.emu.project(self.params["project"])
        except KeyError:
            raise not_found("Project") from None

    def arg(self, name: str) -> str | None:
        """A query (or body) parameter."""
        value = self.body.get(name)
        return None if value is None else str(value)

    def required(self, *names: str) -> list[str]:
        """Several required parameters, or Grape's 'x is missing' 400."""
        missing = [name for name in names if not self.arg(name)]
        if missing:
            raise GitLabError(400, error=", ".join(f"{name} is missing" for name in missing))
        return [self.arg(name) or "" for name in names]

    def choice(self, name: str, allowed: Sequence[str], default: str | None = None) -> str | None:
        """A parameter limited to allowed values, or Grape's 'does not have a valid value'."""
        value = self.arg(name) or default
        if value is not None and value not in allowed:
            raise GitLabError(400, error=f"{name} does not have a valid value")
        return value

    def time(self, name: str) -> datetime | None:
        """An ISO 8601 time parameter."""
        value = self.arg(name)
        return parse_time(value, name) if value else None

    def integer(self, name: str, default: int, low: int, high: int | None) -> int:
        """An integer parameter clamped to [low, high]."""
        value = self.arg(name)
        if not value:
            return default
        try:
            number = int(value)
        except ValueError:
            raise GitLabError(400, error=f"{name} is invalid") from None
        number = max(low, number)
        return number if high is None else min(high, number)

    def pipeline(self) -> Pipeline:
        """The :pid pipeline, which must belong to the :id project."""
        pl = self.emu.pipelines.get(int(self.params["pid"]))
        if pl is None or pl.project is not self.project():
            raise not_found()
        return pl

    def commit(self) -> Commit:
        """The :sha commit (a sha or a ref name)."""
        commit = self.emu.resolve(self.project(), self.params["sha"])
        if commit is None:
            raise not_found("Commit")
        return commit


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer."""
    return web.json_response(data, status=status, headers=headers)


def _paginate(
    ctx: Ctx, items: Sequence[Any], render: Callable[[Any], dict[str, Any]],
) -> web.Response:
    """One page of items with GitLab's offset-pagination headers and Link."""
    per_page = ctx.integer("per_page", 20, 1, 100)
    page = ctx.integer("page", 1, 1, None)
    pages = max(1, math.ceil(len(items) / per_page))
    chunk = items[(page - 1) * per_page: page * per_page]
    url = ctx.request.url

    def link(number: int, rel: str) -> str:
        """One Link header entry."""
        return f'<{url.update_query(page=number, per_page=per_page)}>; rel="{rel}"'

    links = [link(page - 1, "prev")] if page > 1 else []
    links += [link(page + 1, "next")] if page < pages else []
    links += [link(1, "first"), link(pages, "last")]
    headers = {
        "X-Page": str(page), "X-Per-Page": str(per_page), "X-Total": str(len(items)),
        "X-Total-Pages": str(pages), "X-Next-Page": str(page + 1) if page < pages else "",
        "X-Prev-Page": str(page - 1) if page > 1 else "", "Link": ", ".join(links),
    }
    return _json([render(item) for item in chunk], headers=headers)


def _order(items: list[Any], ctx: Ctx, keys: dict[str, Callable[[Any], Any]], default: str,
           default_sort: str = "desc") -> list[Any]:
    """Sort by the order_by/sort parameters, validated against keys."""
    order_by = ctx.choice("order_by", list(keys), default) or default
    sort = ctx.choice("sort", ("asc", "desc"), default_sort)
    return sorted(items, key=keys[order_by], reverse=sort == "desc")


def _within(value: datetime | None, after: datetime | None, before: datetime | None) -> bool:
    """GitLab's inclusive *_after / *_before time filters."""
    if after is None and before is None:
        return True
    if value is None:
        return False
    return (after is None or value >= after) and (before is None or value <= before)


# ---------------------------------------------------------------- API handlers


def h_user(ctx: Ctx) -> web.Response:
    """GET /user: the token's owner."""
    return _json(ctx.view.user(ctx.emu.current_user)
                 | {"email": "releasebot@example.com", "bot": True})


def h_version(ctx: Ctx) -> web.Response:
    """GET /version."""
    return _json({"version": GITLAB_VERSION, "revision": "0e5b6f7a", "enterprise": True})


def h_project(ctx: Ctx) -> web.Response:
    """GET /projects/:id, by numeric id or URL-encoded path."""
    return _json(ctx.view.project(ctx.project()))


def h_create_pipeline(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipeline."""
    (ref,) = ctx.required("ref")
    pl = ctx.emu.create_pipeline(ctx.project(), ref, ctx.body.get("variables") or [])
    return _json(ctx.view.pipeline(pl), status=201)


def h_pipelines(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines with GitLab's filters."""
    wanted = _pipeline_filter(ctx)
    items = [pl for pl in ctx.emu.pipelines_for(ctx.project()) if wanted(pl)]
    keys = {"id": lambda pl: pl.id, "updated_at": lambda pl: (pl.updated_at, pl.id),
            "status": lambda pl: (pl.status, pl.id), "ref": lambda pl: (pl.ref, pl.id)}
    return _paginate(ctx, _order(items, ctx, keys, "id"), ctx.view.pipeline_basic)


def _pipeline_filter(ctx: Ctx) -> Callable[[Pipeline], bool]:
    """A predicate for the pipeline list filters (validated once, up front)."""
    status = ctx.choice("status", PIPELINE_STATUSES)
    scope = ctx.choice("scope", ("running", "pending", "finished", "branches", "tags"))
    ref, sha, source, username = (ctx.arg(n) for n in ("ref", "sha", "source", "username"))
    after, before = ctx.time("updated_after"), ctx.time("updated_before")

    def wanted(pl: Pipeline) -> bool:
        """Whether the pipeline passes every filter."""
        scopes = {"running": pl.status == "running", "pending": pl.status == "pending",
                  "finished": pl.status in FINISHED, "branches": not pl.tag, "tags": pl.tag}
        return all((
            status is None or pl.status == status,
            scope is None or scopes[scope],
            ref is None or pl.ref == ref,
            sha is None or pl.sha == sha,
            source is None or pl.source == source,
            username is None or pl.user.username == username,
            _within(pl.updated_at, after, before),
        ))

    return wanted


def h_pipeline(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid."""
    return _json(ctx.view.pipeline(ctx.pipeline()))


def h_pipeline_jobs(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid/jobs (retried jobs only with include_retried)."""
    pl = ctx.pipeline()
    jobs = pl.jobs if ctx.arg("include_retried") == "true" else pl.latest_jobs()
    scope = ctx.request.query.getall("scope[]", []) + ctx.request.query.getall("scope", [])
    jobs = [job for job in jobs if not scope or job.status in scope]
    return _paginate(ctx, jobs, ctx.view.job)


def h_pipeline_variables(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid/variables."""
    return _json([dict(v) for v in ctx.pipeline().variables])


def h_cancel(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipelines/:pid/cancel."""
    return _json(ctx.view.pipeline(ctx.emu.cancel_pipeline(ctx.pipeline().id)), status=201)


def h_retry(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipelines/:pid/retry."""
    return _json(ctx.view.pipeline(ctx.emu.retry_pipeline(ctx.pipeline().id)), status=201)


def h_job(ctx: Ctx) -> web.Response:
    """GET /projects/:id/jobs/:job_id."""
    return _json(ctx.view.job(ctx.emu.job(ctx.project(), int(ctx.params["job"]))))


def h_play(ctx: Ctx) -> web.Response:
    """POST /projects/:id/jobs/:job_id/play."""
    return _json(ctx.view.job(ctx.emu.play_job(ctx.project(), int(ctx.params["job"]))),
                 status=201)


def h_deployments(ctx: Ctx) -> web.Response:
    """GET /projects/:id/deployments (GitLab sorts these ascending by default)."""
    p = ctx.project()
    env, status = ctx.arg("environment"), ctx.choice("status", DEPLOYMENT_STATUSES)
    updated = (ctx.time("updated_after"), ctx.time("updated_before"))
    finished = (ctx.time("finished_after"), ctx.time("finished_before"))
    items = [d for d in p.deployments
             if (env is None or d.environment.name == env)
             and (status is None or d.status == status)
             and _within(d.updated_at, *updated) and _within(d.finished_at, *finished)]
    late = datetime.max.replace(tzinfo=UTC)
    keys = {"id": lambda d: d.id, "iid": lambda d: d.iid,
            "created_at": lambda d: (d.created_at, d.id),
            "updated_at": lambda d: (d.updated_at, d.id),
            "finished_at": lambda d: (d.finished_at or late, d.id),
            "ref": lambda d: (d.job.pipeline.ref, d.id)}
    items = _order(items, ctx, keys, "id", default_sort="asc")
    return _paginate(ctx, items, lambda d: ctx.view.deployment(d, p))


def h_deployment(ctx: Ctx) -> web.Response:
    """GET /projects/:id/deployments/:deployment_id."""
    p = ctx.project()
    for d in p.deployments:
        if d.id == int(ctx.params["dep"]):
            return _json(ctx.view.deployment(d, p))
    raise not_found()


def h_environments(ctx: Ctx) -> web.Response:
    """GET /projects/:id/environments (name and search filters)."""
    p = ctx.project()
    name, search = ctx.arg("name"), ctx.arg("search")
    items = [e for e in p.environments.values()
             if (name is None or e.name == name) and (search is None or search in e.name)]
    return _paginate(ctx, items, lambda e: ctx.view.environment(e, p))


def h_environment(ctx: Ctx) -> web.Response:
    """GET /projects/:id/environments/:environment_id, with last_deployment."""
    p = ctx.project()
    for env in p.environments.values():
        if env.id == int(ctx.params["env"]):
            return _json(ctx.view.environment(env, p, last=True))
    raise not_found("Environment")


def h_tags(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/tags (newest commit first by default)."""
    p = ctx.project()
    search = ctx.arg("search")
    items = [t for t in p.tags.values() if search is None or search in t.name]
    keys = {"updated": lambda t: (p.commits[t.sha].at, t.created_at),
            "name": lambda t: t.name, "version": lambda t: _version_key(t.name)}
    return _paginate(ctx, _order(items, ctx, keys, "updated"), lambda t: ctx.view.tag(t, p))


def h_tag(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/tags/:name."""
    p = ctx.project()
    tag = p.tags.get(ctx.params["name"])
    if tag is None:
        raise not_found("Tag")
    return _json(ctx.view.tag(tag, p))


def h_branches(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/branches (by name)."""
    p = ctx.project()
    search = ctx.arg("search")
    names = sorted(name for name in p.branches if search is None or search in name)
    return _paginate(ctx, names, lambda name: _branch_json(ctx, p, name))


def _branch_json(ctx: Ctx, p: Project, name: str) -> dict[str, Any]:
    """A branch, with `merged` meaning its head is in the default branch."""
    default_head = p.branches.get(p.default_branch)
    merged = (name != p.default_branch and default_head is not None
              and p.branches[name] in ctx.emu.ancestors(p, default_head))
    return ctx.view.branch(name, p, merged)


def h_branch(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/branches/:name."""
    p = ctx.project()
    if ctx.params["name"] not in p.branches:
        raise not_found("Branch")
    return _json(_branch_json(ctx, p, ctx.params["name"]))


def h_commits(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/commits (ref_name, since, until), newest first."""
    p = ctx.project()
    head = ctx.emu.resolve(p, ctx.arg("ref_name") or p.default_branch)
    if head is None:
        raise not_found("Commit")
    reachable = ctx.emu.ancestors(p, head.sha)
    since, until = ctx.time("since"), ctx.time("until")
    items = [c for sha, c in reversed(p.commits.items())
             if sha in reachable and _within(c.at, since, until)]
    return _paginate(ctx, items, lambda c: ctx.view.commit(p, c))


def h_commit(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/commits/:sha, with its last pipeline."""
    p, commit = ctx.project(), ctx.commit()
    runs = [pl for pl in ctx.emu.pipelines_for(p) if pl.sha == commit.sha]
    last = ctx.view.pipeline(runs[-1]) if runs else None
    return _json(ctx.view.commit(p, commit) | {
        "project_id": p.id, "stats": {"additions": 1, "deletions": 0, "total": 1},
        "status": last["status"] if last else None, "last_pipeline": last,
    })


def h_commit_refs(ctx: Ctx) -> web.Response:
    """GET .../repository/commits/:sha/refs?type=branch|tag|all: refs that contain it."""
    p, commit = ctx.project(), ctx.commit()
    kind = ctx.choice("type", ("branch", "tag", "all"), "all")
    refs = []
    if kind in ("branch", "all"):
        refs += [{"type": "branch", "name": name} for name, sha in sorted(p.branches.items())
                 if commit.sha in ctx.emu.ancestors(p, sha)]
    if kind in ("tag", "all"):
        refs += [{"type": "tag", "name": name} for name, tag in sorted(p.tags.items())
                 if commit.sha in ctx.emu.ancestors(p, tag.sha)]
    return _paginate(ctx, refs, dict)


def h_commit_mrs(ctx: Ctx) -> web.Response:
    """GET .../repository/commits/:sha/merge_requests: MRs that brought or merged it."""
    p, commit = ctx.project(), ctx.commit()
    items = [mr for mr in p.merge_requests.values()
             if commit.sha in (mr.merge_commit_sha, mr.squash_commit_sha, *mr.commits)]
    return _paginate(ctx, items, lambda mr: ctx.view.merge_request(mr, p))


def h_compare(ctx: Ctx) -> web.Response:
    """GET .../repository/compare?from=&to=: commits in `to` but not `from`, oldest first."""
    p = ctx.project()
    ref_from, ref_to = ctx.required("from", "to")
    base, head = ctx.emu.resolve(p, ref_from), ctx.emu.resolve(p, ref_to)
    if base is None or head is None:
        raise not_found("Ref")
    excluded = ctx.emu.ancestors(p, base.sha)
    wanted = ctx.emu.ancestors(p, head.sha) - excluded
    commits = [ctx.view.commit(p, c) for sha, c in p.commits.items() if sha in wanted]
    return _json({
        "commit": commits[-1] if commits else None, "commits": commits, "diffs": [],
        "compare_timeout": False, "compare_same_ref": base.sha == head.sha,
        "web_url": f"{ctx.view.project_url(p)}/-/compare/{base.sha}...{head.sha}",
    })


def h_merge_base(ctx: Ctx) -> web.Response:
    """GET .../repository/merge_base?refs[]=a&refs[]=b: the newest common ancestor."""
    p = ctx.project()
    refs = ctx.request.query.getall("refs[]", [])
    if len(refs) < 2:
        raise GitLabError(400, "400 Bad request - Provide at least 2 refs")
    heads = [ctx.emu.resolve(p, ref) for ref in refs]
    unknown = [ref for ref, head in zip(refs, heads, strict=True) if head is None]
    if unknown:
        noun = "ref" if len(unknown) == 1 else "refs"
        raise not_found(f"Could not find {noun}: {', '.join(unknown)}")
    common = set.intersection(*(ctx.emu.ancestors(p, head.sha) for head in heads if head))
    newest = [c for sha, c in p.commits.items() if sha in common]
    if not newest:
        raise not_found("Merge Base")
    return _json(ctx.view.commit(p, newest[-1]))


def h_merge_requests(ctx: Ctx) -> web.Response:
    """GET /projects/:id/merge_requests with state, branch, time and label filters."""
    p = ctx.project()
    wanted = _mr_filter(ctx)
    items = [mr for mr in p.merge_requests.values() if wanted(mr)]
    never = datetime.min.replace(tzinfo=UTC)
    keys = {"created_at": lambda mr: (mr.created_at, mr.id),
            "updated_at": lambda mr: (mr.updated_at, mr.id),
            "merged_at": lambda mr: (mr.merged_at or never, mr.id),
            "title": lambda mr: (mr.title, mr.id)}
    items = _order(items, ctx, keys, "created_at")
    return _paginate(ctx, items, lambda mr: ctx.view.merge_request(mr, p))


def _mr_filter(ctx: Ctx) -> Callable[[MergeRequest], bool]:
    """A predicate for the merge request list filters (validated once, up front)."""
    state = ctx.choice("state", MR_STATES, "all")
    labels = [label for label in (ctx.arg("labels") or "").split(",") if label]
    target, source, author = (ctx.arg(n) for n in ("target_branch", "source_branch",
                                                   "author_username"))
    updated = (ctx.time("updated_after"), ctx.time("updated_before"))
    created = (ctx.time("created_after"), ctx.time("created_before"))

    def wanted(mr: MergeRequest) -> bool:
        """Whether the merge request passes every filter."""
        return all((
            state == "all" or mr.state == state,
            target is None or mr.target_branch == target,
            source is None or mr.source_branch == source,
            author is None or mr.author.username == author,
            all(label in mr.labels for label in labels),
            _within(mr.updated_at, *updated),
            _within(mr.created_at, *created),
        ))

    return wanted


def h_merge_request(ctx: Ctx) -> web.Response:
    """GET /projects/:id/merge_requests/:iid."""
    p = ctx.project()
    mr = p.merge_requests.get(int(ctx.params["iid"]))
    if mr is None:
        raise not_found()
    return _json(ctx.view.merge_request(mr, p))


def h_create_release(ctx: Ctx) -> web.Response:
    """POST /projects/:id/releases."""
    p = ctx.project()
    (tag_name,) = ctx.required("tag_name")
    released_at = ctx.time("released_at")
    release = ctx.emu.create_release(p, tag_name, ctx.arg("name"), ctx.arg("description") or "",
                                     ctx.arg("ref"), released_at)
    return _json(ctx.view.release(release, p), status=201)


def h_releases(ctx: Ctx) -> web.Response:
    """GET /projects/:id/releases, newest released first."""
    p = ctx.project()
    keys = {"released_at": lambda r: r.released_at, "created_at": lambda r: r.created_at}
    items = _order(list(p.releases.values()), ctx, keys, "released_at")
    return _paginate(ctx, items, lambda r: ctx.view.release(r, p))


def h_release(ctx: Ctx) -> web.Response:
    """GET /projects/:id/releases/:tag_name."""
    p = ctx.project()
    release = p.releases.get(ctx.params["tag"])
    if release is None:
        raise not_found()
    return _json(ctx.view.release(release, p))


# ---------------------------------------------------------------- routing


@dataclass(frozen=True)
class Route:
    """One API endpoint: method, path regex (on the raw, still-encoded path), handler."""

    method: str
    pattern: re.Pattern[str]
    handler: Callable[[Ctx], web.Response]


def _route(method: str, path: str, handler: Callable[[Ctx], web.Response]) -> Route:
    """Compile a route below /api/v4."""
    return Route(method, re.compile(f"{API}{path}/?"), handler)


_P = r"/projects/(?P<project>[^/]+)"
_R = _P + "/repository"
_PL = _P + r"/pipelines/(?P<pid>\d+)"

ROUTES: tuple[Route, ...] = (
    _route("GET", "/user", h_user),
    _route("GET", "/version", h_version),
    _route("GET", _P, h_project),
    _route("POST", _P + "/pipeline", h_create_pipeline),
    _route("GET", _P + "/pipelines", h_pipelines),
    _route("GET", _PL, h_pipeline),
    _route("GET", _PL + "/jobs", h_pipeline_jobs),
    _route("GET", _PL + "/variables", h_pipeline_variables),
    _route("POST", _PL + "/cancel", h_cancel),
    _route("POST", _PL + "/retry", h_retry),
    _route("GET", _P + r"/jobs/(?P<job>\d+)", h_job),
    _route("POST", _P + r"/jobs/(?P<job>\d+)/play", h_play),
    _route("GET", _P + "/deployments", h_deployments),
    _route("GET", _P + r"/deployments/(?P<dep>\d+)", h_deployment),
    _route("GET", _P + "/environments", h_environments),
    _route("GET", _P + r"/environments/(?P<env>\d+)", h_environment),
    _route("GET", _R + "/tags", h_tags),
    _route("GET", _R + "/tags/(?P<name>[^/]+)", h_tag),
    _route("GET", _R + "/branches", h_branches),
    _route("GET", _R + "/branches/(?P<name>[^/]+)", h_branch),
    _route("GET", _R + "/commits", h_commits),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)", h_commit),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)/refs", h_commit_refs),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)/merge_requests", h_commit_mrs),
    _route("GET", _R + "/compare", h_compare),
    _route("GET", _R + "/merge_base", h_merge_base),
    _route("GET", _P + "/merge_requests", h_merge_requests),
    _route("GET", _P + r"/merge_requests/(?P<iid>\d+)", h_merge_request),
    _route("POST", _P + "/releases", h_create_release),
    _route("GET", _P + "/releases", h_releases),
    _route("GET", _P + "/releases/(?P<tag>[^/]+)", h_release),
)


def _match(method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
    """The route for a request and its decoded path parameters."""
    for route in ROUTES:
        found = route.pattern.fullmatch(raw_path)
        if found and route.method == method:
            return route, {key: unquote(value) for key, value in found.groupdict().items()}
    return None, {}


# ---------------------------------------------------------------- control endpoints

ControlHandler = Callable[[GitLabEmulator, web.Request], Awaitable[web.Response]]


async def _control_body(request: web.Request) -> dict[str, Any]:
    """The JSON body of a control request ({} when empty)."""
    text = await request.text()
    data = json.loads(text) if text.strip() else {}
    if not isinstance(data, dict):
        raise ValueError("body must be a JSON object")
    return data


async def c_calls(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/calls: every recorded API call."""
    return _json([{"method": c.method, "path": c.path, "canonical_path": c.canonical_path,
                   "query": c.query, "at": iso(c.at), "status": c.status} for c in emu.calls])


async def c_pipelines(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/pipelines: every pipeline with its variables and jobs."""
    view = View(emu.base_url)
    return _json([view.pipeline(pl) | {"variables": pl.variables,
                                       "jobs": [view.job(job) for job in pl.jobs]}
                  for pl in emu.pipelines.values()])


async def c_status(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/pipeline/{id}/status {status, failed_job?}."""
    body = await _control_body(request)
    pipeline_id = int(request.match_info["id"])
    emu.set_status(pipeline_id, body["status"], failed_job=body.get("failed_job"))
    return _json(View(emu.base_url).pipeline(emu.pipelines[pipeline_id]))


async def c_fault(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/fault {times, status, retry_after, path_prefix, delay}."""
    body = await _control_body(request)
    emu.fail(times=int(body.get("times", 1)), status=int(body.get("status", 500)),
             retry_after=body.get("retry_after"), path_prefix=body.get("path_prefix", ""),
             delay=float(body.get("delay", 0.0)))
    return _json({"ok": True})


async def c_latency(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/latency {seconds}."""
    emu.latency = float((await _control_body(request)).get("seconds", 0.0))
    return _json({"ok": True})


async def c_reset(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/reset: clear calls, faults, latency and auto-advance."""
    emu.reset()
    return _json({"ok": True})


async def c_auto(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/auto {steps?, every?, fail_refs?, fail_envs?, enabled?}."""
    body = await _control_body(request)
    emu.auto_advance(steps=body.get("steps", ("running", "success")),
                     every=float(body.get("every", 0.5)), fail_refs=body.get("fail_refs", ()),
                     fail_envs=body.get("fail_envs", ()), enabled=body.get("enabled", True))
    return _json({"ok": True})


async def c_hook(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """POST /_emulator/hook {url, secret}: register (url null: remove) the automatic hook."""
    body = await _control_body(request)
    emu.register_hook(body.get("url"), body.get("secret"))
    return _json({"ok": True})


async def c_hooks(emu: GitLabEmulator, request: web.Request) -> web.Response:
    """GET /_emulator/hooks: every webhook delivery made."""
    return _json([{"url": d.url, "pipeline_id": d.pipeline_id, "status": d.pipeline_status,
                   "http_status": d.http_status, "event_uuid": d.event_uuid,
                   "idempotency_key": d.idempotency_key, "at": iso(d.at)}
                  for d in emu.hook_deliveries])


CONTROL_ROUTES: tuple[tuple[str, str, ControlHandler], ...] = (
    ("GET", "/_emulator/calls", c_calls),
    ("GET", "/_emulator/pipelines", c_pipelines),
    ("GET", "/_emulator/hooks", c_hooks),
    ("POST", "/_emulator/pipeline/{id:\\d+}/status", c_status),
    ("POST", "/_emulator/fault", c_fault),
    ("POST", "/_emulator/latency", c_latency),
    ("POST", "/_emulator/reset", c_reset),
    ("POST", "/_emulator/auto", c_auto),
    ("POST", "/_emulator/hook", c_hook),
)


# ---------------------------------------------------------------- standalone


async def serve(host: str, port: int, token: str, seed: bool, auto: bool) -> None:
    """Run an emulator until SIGINT/SIGTERM."""
    emu = GitLabEmulator(token)
    if seed:
        emu.seed_demo()
    if auto:
        emu.auto_advance()
    url = await emu.start(host, port)
    print(url, flush=True)
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stopped.set)
    try:
        await stopped.wait()
    finally:
        await emu.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """python -m emulators.gitlab --port N: serve the seeded demo data until killed."""
    parser = argparse.ArgumentParser(prog="python -m emulators.gitlab", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default="glpat-test")
    parser.add_argument("--no-seed", action="store_true", help="start with no projects")
    parser.add_argument("--auto", action="store_true", help="auto-advance new pipelines")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port, args.token, not args.no_seed, args.auto))


if __name__ == "__main__":
    main()
