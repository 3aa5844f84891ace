"""The emulator's records and vocabulary: users, commits, tags, pipelines, jobs, projects."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

GITLAB_VERSION = "17.5.0-ee"
API = "/api/v4"

# Every pipeline and job status GitLab has (Ci::HasStatus::AVAILABLE_STATUSES).
PIPELINE_STATUSES = (
    "created", "waiting_for_resource", "preparing", "waiting_for_callback", "pending",
    "running", "success", "failed", "canceling", "canceled", "skipped", "manual", "scheduled",
)
# Ci::HasStatus::COMPLETED_STATUSES: a pipeline or job in one of these has stopped for good.
FINISHED = frozenset({"success", "failed", "canceled", "skipped"})
# Jobs a cancel touches (Ci::HasStatus::CANCELABLE_STATUSES); a manual job is not one of them.
CANCELABLE = frozenset({"created", "waiting_for_resource", "preparing", "waiting_for_callback",
                        "pending", "running", "scheduled"})
# Jobs a retry replaces (the failed_or_canceled scope).
RETRYABLE = frozenset({"failed", "canceled", "canceling"})
DEPLOYMENT_STATUSES = ("created", "running", "success", "failed", "canceled", "skipped", "blocked")
MR_STATES = ("opened", "closed", "locked", "merged", "all")
ISSUE_STATES = ("opened", "closed", "all")
ISSUE_TYPES = ("issue", "incident", "test_case", "task")

# Gitlab::Access levels.
NO_ACCESS, GUEST, REPORTER, DEVELOPER, MAINTAINER, OWNER = 0, 10, 20, 30, 40, 50
# ci_pipeline_variables_minimum_override_role values and the level each one needs.
VARIABLE_ROLES: dict[str, int | None] = {
    "no_one_allowed": None, "developer": DEVELOPER, "maintainer": MAINTAINER, "owner": OWNER,
}
# What GitLab's CI/CD variables docs give as the default when not specified on Self-Managed
# and Dedicated; new projects in new namespaces on GitLab.com get no_one_allowed instead
# (GitLab 17.7), and projects migrated from the older setting may show developer.
DEFAULT_VARIABLES_ROLE = "maintainer"
# How protected refs describe an access level (ProtectedRefAccess::HUMAN_ACCESS_LEVELS).
ACCESS_DESCRIPTIONS = {NO_ACCESS: "No one", DEVELOPER: "Developers + Maintainers",
                       MAINTAINER: "Maintainers", 60: "Administrators"}

# (icon, text, label, group) exactly as GitLab's detailed_status presenter words them.
DETAILED = {
    "created": ("status_created", "Created", "created", "created"),
    "waiting_for_resource": ("status_pending", "Waiting", "waiting for resource",
                             "waiting-for-resource"),
    "preparing": ("status_preparing", "Preparing", "preparing", "preparing"),
    "waiting_for_callback": ("status_pending", "Waiting", "waiting for callback",
                             "waiting-for-callback"),
    "pending": ("status_pending", "Pending", "pending", "pending"),
    "running": ("status_running", "Running", "running", "running"),
    "success": ("status_success", "Passed", "passed", "success"),
    "failed": ("status_failed", "Failed", "failed", "failed"),
    "canceling": ("status_canceled", "Canceling", "canceling", "canceling"),
    "canceled": ("status_canceled", "Canceled", "canceled", "canceled"),
    "skipped": ("status_skipped", "Skipped", "skipped", "skipped"),
    "manual": ("status_manual", "Blocked", "manual action", "manual"),
    "scheduled": ("status_scheduled", "Scheduled", "scheduled", "scheduled"),
}

# A deployment mirrors its job's status, in GitLab's deployment vocabulary.
DEPLOYMENT_FOR_JOB = {
    "running": "running", "canceling": "running", "success": "success", "failed": "failed",
    "canceled": "canceled", "skipped": "skipped", "manual": "blocked",
}

_TIERS = (
    ("production", ("prod", "live")),
    ("staging", ("stag", "model", "pre")),
    ("testing", ("test", "qa")),
    ("development", ("dev", "review", "trunk")),
)


# ---------------------------------------------------------------- time helpers


def utc(dt: datetime) -> datetime:
    """Return dt as an aware UTC datetime truncated to milliseconds (GitLab's precision)."""
    dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def iso(dt: datetime | None) -> str | None:
    """Format a time the way the REST API does: 2024-05-01T12:00:00.000Z."""
    if dt is None:
        return None
    dt = utc(dt)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def hook_time(dt: datetime | None) -> str | None:
    """Format a time the way webhook payloads do: 2024-05-01 12:00:00 UTC."""
    return None if dt is None else utc(dt).strftime("%Y-%m-%d %H:%M:%S UTC")


def parse_time(value: str, name: str) -> datetime:
    """Parse an ISO 8601 query value; a bad one is a 400 like GitLab's."""
    try:
        return utc(datetime.fromisoformat(value.strip()))
    except ValueError:
        raise GitLabError(400, error=f"{name} is invalid") from None


def seconds_between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds between two times, or None when either is missing."""
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)


# ---------------------------------------------------------------- errors


class GitLabError(Exception):
    """An API error answered as GitLab would: {"message": ...} or {"error": ...}."""

    def __init__(self, status: int, message: Any = None, *, error: str | None = None) -> None:
        """Keep the HTTP status and the body's message or error."""
        super().__init__(f"{status} {message if error is None else error}")
        self.status = status
        self.body: dict[str, Any] = {"error": error} if error is not None else {"message": message}


class Moved(Exception):
    """A GET that named a renamed project by its old path: Grape's permanent redirect."""

    def __init__(self, location: str) -> None:
        """Keep where the project lives now (the same URL with its numeric id)."""
        super().__init__(f"301 {location}")
        self.location = location


def not_found(what: str = "") -> GitLabError:
    """GitLab's 404 wording: '404 Project Not Found', or '404 Not Found'."""
    return GitLabError(404, f"404 {what} Not Found" if what else "404 Not Found")


def record_not_found() -> GitLabError:
    """The 404 the API answers when a database lookup by id or name finds nothing."""
    return GitLabError(404, "404 Not found")


def forbidden() -> GitLabError:
    """The 403 of a failed authorize! check."""
    return GitLabError(403, "403 Forbidden")


# ---------------------------------------------------------------- records


@dataclass(eq=False)
class User:
    """A GitLab user."""

    id: int
    username: str
    name: str
    created_at: datetime = field(default_factory=lambda: datetime(2024, 1, 1, tzinfo=UTC))


@dataclass(eq=False)
class Commit:
    """One commit; parents always exist before their children; changes map path to content."""

    sha: str
    title: str
    message: str
    parent_ids: list[str]
    author: User
    at: datetime
    # path -> new content, or None when the commit deletes the file.
    changes: dict[str, str | None] = field(default_factory=dict)


@dataclass(eq=False)
class Tag:
    """A lightweight or annotated tag."""

    name: str
    sha: str
    message: str
    created_at: datetime


@dataclass(eq=False)
class ProtectedRef:
    """A protected tag or environment: a name (tags: a wildcard pattern) and who may act.

    Roles go in access_levels; single users (a Premium feature) in users.
    """

    name: str
    access_levels: list[tuple[int, int]]  # (access level record id, access level)
    users: list[tuple[int, User]] = field(default_factory=list)  # (record id, user)

    def allows(self, user: User, level: int) -> bool:
        """ProtectedRefAccess#check_access: a role at or below level, or this very user.

        Access level 0 is "No one"; a user entry still needs a member who may push.
        """
        return (any(allowed and level >= allowed for _, allowed in self.access_levels)
                or any(u.id == user.id and level >= DEVELOPER for _, u in self.users))


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
class Label:
    """A project label issues and merge requests carry."""

    id: int
    name: str
    color: str = "#6699cc"
    description: str | None = None


@dataclass(eq=False)
class Milestone:
    """A project milestone, found by its title."""

    id: int
    iid: int
    title: str
    created_at: datetime
    state: str = "active"  # or closed


@dataclass(eq=False)
class Issue:
    """A project issue: opened or closed, with labels and perhaps a milestone."""

    id: int
    iid: int
    title: str
    author: User
    created_at: datetime
    updated_at: datetime
    labels: list[str]
    milestone: Milestone | None = None
    state: str = "opened"  # or closed
    closed_at: datetime | None = None
    issue_type: str = "issue"  # issue, incident, test_case or task


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
    job: Job | None = field(repr=False)  # None: recorded through the API, not by a deploy job
    status: str
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    api_ref: str = ""  # what an API-recorded deployment names (a job's come from its pipeline)
    api_sha: str = ""
    api_user: User | None = None

    @property
    def ref(self) -> str:
        """The branch or tag deployed."""
        return self.job.pipeline.ref if self.job else self.api_ref

    @property
    def sha(self) -> str:
        """The commit deployed."""
        return self.job.pipeline.sha if self.job else self.api_sha


@dataclass(frozen=True)
class JobSpec:
    """One job of a project's CI configuration; jobs run stage by stage, in spec order.

    A deploy job is named `name:<DEPLOY_ENV>` and deploys to DEPLOY_ENV when the pipeline
    has that variable. when="manual" waits for play; GitLab makes a manual job
    allow_failure (non-blocking) unless told otherwise, so a blocking one says False.
    """

    name: str
    stage: str
    deploys: bool = False
    when: str = "on_success"
    allow_failure: bool = False


# The configuration a new project gets unless told otherwise.
DEFAULT_JOBS = (JobSpec("build", "build"), JobSpec("test", "test"),
                JobSpec("deploy", "deploy", deploys=True))


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
    allow_failure: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    failure_reason: str | None = None
    retried: bool = False
    deployment: Deployment | None = field(default=None, repr=False)

    @property
    def duration(self) -> float | None:
        """Run time in seconds, or None before it starts."""
        return seconds_between(self.started_at, self.finished_at)

    @property
    def queued_duration(self) -> float | None:
        """Seconds spent waiting for a runner."""
        return seconds_between(self.created_at, self.started_at)

    @property
    def manual(self) -> bool:
        """Whether the job waits for someone to play it (or, delayed, for its timer)."""
        return self.when in ("manual", "delayed")

    @property
    def waiting_status(self) -> str:
        """What a waiting job shows: scheduled for a delayed one, manual for the others."""
        return "scheduled" if self.when == "delayed" else "manual"


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
    stages: list[str] = field(default_factory=list)
    # Bumped whenever auto-advance takes the pipeline over, so a stale timer task stops.
    auto_generation: int = 0

    @property
    def duration(self) -> int | None:
        """Whole seconds from start to finish, None until finished."""
        seconds = seconds_between(self.started_at, self.finished_at)
        return None if seconds is None else int(seconds)

    @property
    def queued_duration(self) -> int | None:
        """Whole seconds from creation to start."""
        seconds = seconds_between(self.created_at, self.started_at)
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
    """A project with its repository, CI configuration, members and environments."""

    id: int
    path: str
    default_branch: str
    jobs: tuple[JobSpec, ...] = DEFAULT_JOBS
    variables_role: str = DEFAULT_VARIABLES_ROLE
    restrict_user_defined_variables: bool = True
    members: dict[int, int] = field(default_factory=dict)  # user id -> access level
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Tag] = field(default_factory=dict)
    protected_tags: dict[str, ProtectedRef] = field(default_factory=dict)
    protected_environments: dict[str, ProtectedRef] = field(default_factory=dict)
    merge_requests: dict[int, MergeRequest] = field(default_factory=dict)
    releases: dict[str, Release] = field(default_factory=dict)
    environments: dict[str, Environment] = field(default_factory=dict)
    deployments: list[Deployment] = field(default_factory=list)
    labels: dict[str, Label] = field(default_factory=dict)  # by name
    milestones: dict[str, Milestone] = field(default_factory=dict)  # by title
    issues: dict[int, Issue] = field(default_factory=dict)  # by iid
    next_pipeline_iid: int = 1
    next_deployment_iid: int = 1

    @property
    def name(self) -> str:
        """The last path segment, as GitLab names projects by default."""
        return self.path.rsplit("/", 1)[-1]

    @property
    def namespace(self) -> str:
        """Everything before the last path segment."""
        return self.path.rsplit("/", 1)[0] if "/" in self.path else self.path

    def access_level(self, user: User) -> int:
        """The user's access level here (0 for a non-member)."""
        return self.members.get(user.id, NO_ACCESS)


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


# ---------------------------------------------------------------- small helpers


def variable(variables: Iterable[dict[str, str]], key: str) -> str | None:
    """The value of one pipeline variable, or None."""
    return next((v["value"] for v in variables if v.get("key") == key), None)


def slug(name: str) -> str:
    """GitLab's environment slug: lower case, dashes, at most 24 characters."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:24] or "env"


def tier(name: str) -> str:
    """Guess the deployment tier from the environment name, as GitLab does."""
    lowered = name.lower()
    for tier_name, hints in _TIERS:
        if any(hint in lowered for hint in hints):
            return tier_name
    return "other"


def version_key(name: str) -> tuple[int, ...]:
    """Sort key for tags like v1.10.2."""
    return tuple(int(part) for part in re.findall(r"\d+", name))


def ref_matches(pattern: str, name: str) -> bool:
    """Whether a protected-ref name or wildcard pattern covers name (`*` spans `/` too)."""
    if "*" not in pattern:
        return pattern == name
    regex = ".*?".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, name) is not None


def valid_ref_name(name: str) -> bool:
    """git check-ref-format's rules, which GitLab applies to new tag names."""
    forbidden_bits = ("..", "@{", "//", "\\")
    return bool(name) and not (
        any(bit in name for bit in forbidden_bits)
        or re.search(r"[\x00-\x20\x7f~^:?*\[]", name)
        or name.startswith(("-", "/", ".")) or name.endswith(("/", ".", ".lock"))
        or "/." in name or name == "@" or name == "HEAD"
    )
