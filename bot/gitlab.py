"""The GitLab client: python-gitlab behind asyncio.to_thread, answering plain dataclasses."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import gitlab
import requests
from gitlab.v4.objects import Project

T = TypeVar("T")
ProjectRef = str | int

# One quick retry (python-gitlab sleeps 0.1 s first) absorbs a blip; more would stall a poll cycle.
_RETRIES = 1
# Past this many pages of merged MRs, look the remaining commits up one by one instead.
_MR_PAGES = 3
# At most this many per-commit merge request look-ups per call.
_MR_LOOKUPS = 5
# Open issues read at most per count (50 pages of 100): past this, the count would be a guess.
MAX_ISSUES = 5000
# Commit dates are set by clients; allow for their clocks being a little off.
_CLOCK_SKEW = timedelta(hours=1)
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
# How often at most the kept project IDs are read again for a path not learned yet.
_RELOAD_SECONDS = 60.0
FINAL = frozenset({"success", "failed", "canceled", "skipped"})  # pipeline statuses that stay
# A pipeline in one of these waits on a person (a manual job) or a timer (a delayed job): it
# will not end by itself. Every other status (created, waiting_for_resource, preparing,
# pending, running, waiting_for_callback, canceling) is still on its way to a final one.
WAITING = frozenset({"manual", "scheduled"})


class GitLabError(Exception):
    """A GitLab call failed; the message is one plain sentence fit to show a person."""

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None,
    ) -> None:
        """Keep the HTTP status (None without an answer) and any Retry-After seconds."""
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Pipeline:
    """A CI pipeline; project is the reference it was asked for by."""

    id: int
    project: str
    ref: str
    sha: str
    status: str
    web_url: str
    updated_at: datetime | None
    finished_at: datetime | None
    duration: int | None


@dataclass(frozen=True)
class Job:
    """A CI job of a pipeline."""

    id: int
    name: str
    stage: str
    status: str
    web_url: str
    failure_reason: str | None


@dataclass(frozen=True)
class Commit:
    """A commit; committed_at and parent_ids let notes bound MR look-ups and find the mainline."""

    sha: str
    short_id: str
    title: str
    author_name: str
    web_url: str
    committed_at: datetime | None = None
    parent_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergeRequest:
    """A merged merge request; commit_shas are the given commits it accounts for."""

    iid: int
    title: str
    web_url: str
    author: str
    merged_at: datetime | None
    labels: tuple[str, ...]
    commit_shas: tuple[str, ...] = ()


@dataclass(frozen=True)
class Issue:
    """An issue, as a bug tracker counts it: its number, title, labels and link."""

    iid: int
    title: str
    labels: tuple[str, ...]
    web_url: str


@dataclass(frozen=True)
class User:
    """The user a token belongs to."""

    id: int
    username: str


@dataclass(frozen=True)
class ProjectSettings:
    """A project as GitLab names it now, with the CI/CD settings shown to maintainers.

    variables_restricted and variables_role are None when GitLab did not show them (the
    token's user is below Maintainer, or the instance predates the minimum role).
    """

    id: int
    path: str
    default_branch: str
    variables_restricted: bool | None
    variables_role: str | None


@dataclass(frozen=True)
class AccessRule:
    """One entry of a protected tag or environment: a role, or one user, group or deploy key."""

    level: int | None  # the role's access level; None for a user, group or deploy key entry
    user_id: int | None
    group_id: int | None
    description: str


@dataclass(frozen=True)
class ProtectedTag:
    """A protected tag name or wildcard and who may create tags it covers."""

    name: str
    create: tuple[AccessRule, ...]


class ProjectIds(Protocol):
    """Where learned project IDs are kept, so that every replica calls GitLab by the same ID."""

    async def load(self) -> dict[str, int]:
        """Every path (lower case) with the ID learned for it."""
        ...

    async def save(self, path: str, project_id: int) -> int:
        """Keep path's ID unless one is kept already; the ID kept either way."""
        ...


class _ShortRetryGitlab(gitlab.Gitlab):
    """python-gitlab that never sleeps on 429 and retries 5xx and timeouts only briefly."""

    def http_request(self, verb: str, path: str, *args: Any, **kwargs: Any) -> Any:
        """Force our retry policy on every request, whatever the caller passed."""
        # By default a 429 sleeps for Retry-After up to 10 times: a poller must back off instead.
        kwargs["obey_rate_limit"] = False
        kwargs["max_retries"] = _RETRIES
        return super().http_request(verb, path, *args, **kwargs)


class GitLabClient:
    """Async access to one GitLab instance; the only place that uses python-gitlab."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 10.0,
                 on_call: Callable[[str, int], None] | None = None,
                 ids: ProjectIds | None = None) -> None:
        """Build the python-gitlab client; no request is made yet; on_call sees every answer.

        ids keeps the numeric IDs learned for project paths; without it they live only as
        long as this client.
        """
        self._on_call = on_call
        self._ids = ids
        self._learned: dict[str, int] = {}
        self._loaded_at = -_RELOAD_SECONDS  # never
        self._loading = asyncio.Lock()
        self._learning: dict[str, asyncio.Lock] = {}
        # python-gitlab drops the 429 response before raising, so a hook keeps its Retry-After.
        self._local = threading.local()
        session = requests.Session()
        session.hooks["response"].append(self._remember_retry_after)
        self._gl = _ShortRetryGitlab(url, private_token=token, retry_transient_errors=True,
                                     timeout=timeout, session=session)
        self._projects: dict[int, Project] = {}

    # ------------------------------------------------------------ pipelines

    async def create_pipeline(
        self, project: ProjectRef, ref: str, variables: Mapping[str, str],
    ) -> Pipeline:
        """Start a pipeline on ref with these CI variables."""
        p = await self._project(project)
        data = {"ref": ref, "variables": [{"key": k, "value": v} for k, v in variables.items()]}
        created = await self._run(project, lambda: p.pipelines.create(data), f"ref {ref}")
        return _pipeline(project, created.attributes)

    async def get_pipeline(self, project: ProjectRef, pipeline_id: int) -> Pipeline:
        """One pipeline, with its finish time and duration."""
        p = await self._project(project)
        found = await self._run(project, lambda: p.pipelines.get(pipeline_id),
                                f"pipeline {pipeline_id}")
        return _pipeline(project, found.attributes)

    async def cancel_pipeline(self, project: ProjectRef, pipeline_id: int) -> Pipeline:
        """Cancel the pipeline's cancelable jobs; the pipeline as GitLab shows it afterwards.

        GitLab answers 200 whatever the pipeline's state: a finished one stays as it was, and
        manual jobs are not cancelable, so a pipeline blocked on one may still show manual.
        """
        pipeline = (await self._project(project)).pipelines.get(pipeline_id, lazy=True)
        found = await self._run(project, pipeline.cancel, f"pipeline {pipeline_id}")
        return _pipeline(project, _as_dict(found))

    async def pipelines_updated_since(
        self, project: ProjectRef, since: datetime | None, *, per_page: int = 100,
    ) -> list[Pipeline]:
        """Pipelines updated at or after since, newest first: one request in the normal case.

        Without since only the newest page is read (a first poll wants the present, not
        history); with it, every page GitLab links to is read, so no change since the
        cursor is skipped, and no request is made past the last page.
        """
        p = await self._project(project)
        query: dict[str, Any] = {"order_by": "updated_at", "sort": "desc", "per_page": per_page}
        if since is not None:
            query["updated_after"] = _iso(since)

        def fetch() -> list[dict[str, Any]]:
            """Follow GitLab's next-page links (only the first page without a cursor)."""
            pages = p.pipelines.list(iterator=True, **query)
            wanted = pages if since is not None else itertools.islice(pages, per_page)
            return [item.attributes for item in wanted]

        return [_pipeline(project, row) for row in await self._run(project, fetch)]

    async def failed_job(self, project: ProjectRef, pipeline_id: int) -> Job | None:
        """The failed job that failed the pipeline: of the latest stage, not allowed to fail."""
        pipeline = (await self._project(project)).pipelines.get(pipeline_id, lazy=True)
        jobs = await self._run(
            project, lambda: pipeline.jobs.list(scope="failed", per_page=100, get_all=False),
            f"pipeline {pipeline_id}",
        )
        rows = [job.attributes for job in jobs]
        # Jobs are created stage by stage, so the highest id is the latest stage's; a job
        # allowed to fail did not fail the pipeline.
        blocking = [row for row in rows if not row.get("allow_failure")] or rows
        return _job(max(blocking, key=lambda row: row["id"])) if blocking else None

    async def waiting_job(self, project: ProjectRef, pipeline_id: int,
                          status: str) -> Job | None:
        """The job a pipeline waits on: the earliest `manual` or `scheduled` one that blocks."""
        pipeline = (await self._project(project)).pipelines.get(pipeline_id, lazy=True)
        jobs = await self._run(
            project, lambda: pipeline.jobs.list(scope=status, per_page=100, get_all=False),
            f"pipeline {pipeline_id}",
        )
        rows = [job.attributes for job in jobs]
        # An optional manual job (allow_failure) never holds a pipeline up; the lowest id is
        # the earliest stage's.
        blocking = [row for row in rows if not row.get("allow_failure")] or rows
        return _job(min(blocking, key=lambda row: row["id"])) if blocking else None

    # ------------------------------------------------------------ repository

    async def compare(self, project: ProjectRef, from_ref: str, to_ref: str) -> list[Commit]:
        """Commits in to_ref but not in from_ref, oldest first."""
        p = await self._project(project)
        result = await self._run(project, lambda: p.repository_compare(from_ref, to_ref),
                                 f"ref {from_ref} or {to_ref}")
        return [_commit(row) for row in _as_dict(result).get("commits") or []]

    async def recent_commits(
        self, project: ProjectRef, ref: str, *, limit: int = 20,
    ) -> list[Commit]:
        """The newest `limit` commits reachable from ref, oldest first (one request)."""
        p = await self._project(project)
        rows = await self._run(project, lambda: p.commits.list(
            ref_name=ref, per_page=limit, get_all=False), f"ref {ref}")
        return [_commit(row.attributes) for row in reversed(rows)]

    async def is_ancestor(self, project: ProjectRef, ref: str, branch: str) -> bool:
        """Whether ref's commit is contained in branch (their merge base is ref itself)."""
        p = await self._project(project)

        def check() -> bool:
            """Resolve ref to a sha unless it is one, then ask for the merge base."""
            sha = ref if _FULL_SHA.fullmatch(ref) else str(p.commits.get(ref).id)
            base = _as_dict(p.repository_merge_base([sha, branch]))
            return base.get("id") == sha

        return await self._run(project, check, f"ref {ref} or {branch}")

    async def resolve(self, project: ProjectRef, ref: str) -> str:
        """The full SHA of the commit a branch, tag or SHA names now."""
        p = await self._project(project)
        found = await self._run(project, lambda: p.commits.get(ref), f"ref {ref}")
        return str(found.id)

    async def commits_between(self, project: ProjectRef, base: str, head: str) -> int:
        """How many commits head has that base lacks (0 when head is base or behind it)."""
        return len(await self.compare(project, base, head))

    async def ensure_tag(self, project: ProjectRef, name: str, sha: str) -> str:
        """Tag sha as name unless the tag exists; the SHA the tag points at either way."""
        p = await self._project(project)

        def tag() -> str:
            """Read the tag; create it when GitLab says there is none."""
            try:
                return str(p.tags.get(name).commit["id"])
            except gitlab.GitlabGetError as exc:
                if exc.response_code != 404 or "project" in _text(exc.error_message).lower():
                    raise
            return str(p.tags.create({"tag_name": name, "ref": sha}).commit["id"])

        return await self._run(project, tag, f"tag {name}")

    async def last_deployment(self, project: ProjectRef,
                              environment: str) -> tuple[str, str] | None:
        """(sha, ref) of the environment's `last_deployment` in GitLab, or None."""
        p = await self._project(project)

        def read() -> tuple[str, str] | None:
            """The list finds the environment by name; only its own page has last_deployment."""
            found = p.environments.list(name=environment, per_page=1, get_all=False)
            if not found:
                return None
            last = p.environments.get(found[0].id).attributes.get("last_deployment")
            return (str(last["sha"]), str(last["ref"])) if last else None

        return await self._run(project, read)

    async def default_branch(self, project: ProjectRef) -> str:
        """The project's default branch."""
        return (await self.project_settings(project)).default_branch

    async def tag_exists(self, project: ProjectRef, name: str) -> bool:
        """Whether the tag exists (an unknown project is still an error)."""
        p = await self._project(project)

        def check() -> bool:
            """A 404 for the tag is an answer; one for the project is not."""
            try:
                p.tags.get(name)
            except gitlab.GitlabGetError as exc:
                if exc.response_code == 404 and "project" not in _text(exc.error_message).lower():
                    return False
                raise
            return True

        return await self._run(project, check)

    # ------------------------------------------------------------ merge requests

    async def merge_requests_for(
        self, project: ProjectRef, commits: list[Commit],
    ) -> list[MergeRequest]:
        """Merged MRs that brought these commits, oldest merge first, in few requests.

        One listing of MRs merged-and-updated since the oldest commit (a few pages at most),
        matched on merge, squash and head shas. Only when that listing may be incomplete
        (no commit dates, or too many pages) are unmatched commits looked up one by one,
        up to a small cap.
        """
        if not commits:
            return []
        p = await self._project(project)
        wanted = [c.sha for c in commits]
        since = _window_start(commits)
        return await self._run(project, lambda: _find_merge_requests(p, wanted, since))

    # ------------------------------------------------------------ issues (a bug tracker)

    async def open_issues(self, project: ProjectRef, *, milestone: str | None = None,
                          labels: Iterable[str] = ()) -> list[Issue]:
        """Every open issue of a milestone (by title) and/or carrying all `labels`, oldest first.

        GitLab's next-page links are followed; past MAX_ISSUES the count is refused rather
        than guessed.
        """
        p = await self._project(project)
        query: dict[str, Any] = {"state": "opened", "order_by": "created_at", "sort": "asc",
                                 "per_page": 100}
        if milestone is not None:
            query["milestone"] = milestone
        if wanted := ",".join(labels):
            query["labels"] = wanted

        def fetch() -> list[dict[str, Any]]:
            """Follow the pages, one more row than allowed to notice an overflow."""
            pages = p.issues.list(iterator=True, **query)
            return [item.attributes for item in itertools.islice(pages, MAX_ISSUES + 1)]

        rows = await self._run(project, fetch, "issues")
        if len(rows) > MAX_ISSUES:
            raise GitLabError(f"GitLab lists more than {MAX_ISSUES} open issues in {project}")
        return [Issue(int(row["iid"]), str(row.get("title") or ""),
                      tuple(str(label) for label in row.get("labels") or ()),
                      str(row.get("web_url") or "")) for row in rows]

    async def milestone_exists(self, project: ProjectRef, title: str) -> bool:
        """Whether the project (or a group above it) has a milestone with exactly this title."""
        p = await self._project(project)
        rows = await self._run(project, lambda: [item.attributes for item in p.milestones.list(
            title=title, include_ancestors=True, per_page=20, get_all=False)])
        return any(row.get("title") == title for row in rows)

    async def label_names(self, project: ProjectRef) -> set[str]:
        """The names of every label the project's issues can carry (its own and its groups')."""
        p = await self._project(project)
        rows = await self._run(project, lambda: [
            item.attributes for item in p.labels.list(iterator=True, per_page=100)])
        return {str(row.get("name") or "") for row in rows}

    @property
    def base_url(self) -> str:
        """The GitLab instance's address, for links people follow."""
        return str(self._gl.url).rstrip("/")

    # ------------------------------------------------------------ releases and identity

    async def create_release(
        self, project: ProjectRef, tag: str, name: str, description: str, *,
        ref: str | None = None,
    ) -> str:
        """Create a release on tag (tagging ref first if the tag is new); its web URL."""
        p = await self._project(project)
        data = {"tag_name": tag, "name": name, "description": description}
        if ref is not None:
            data["ref"] = ref
        try:
            release = await self._run(project, lambda: p.releases.create(data))
        except GitLabError as exc:
            if exc.status == 409:
                url = await self._release_url(project, tag)
                raise GitLabError(f"GitLab release {tag} already exists in {project}: {url}",
                                  status=409) from exc
            raise
        return self._link_of(project, tag, release.attributes)

    async def _release_url(self, project: ProjectRef, tag: str) -> str:
        """Where an existing release is read (a guess when GitLab won't say)."""
        p = await self._project(project)
        try:
            found = await self._run(project, lambda: p.releases.get(tag).attributes)
        except GitLabError:
            found = {}
        return self._link_of(project, tag, found)

    def _link_of(self, project: ProjectRef, tag: str, release: Mapping[str, Any]) -> str:
        """A release's web address: GitLab's own link, else the usual path."""
        links = release.get("_links") or {}
        return str(links.get("self") or f"{self._gl.url}/{project}/-/releases/{tag}")

    async def check(self) -> str:
        """The username the token belongs to (GET /user)."""
        return (await self.whoami()).username

    async def whoami(self) -> User:
        """The user the token belongs to (GET /user)."""

        def read() -> User:
            """Authenticate and read the current user."""
            self._gl.auth()
            user = self._gl.user
            return User(int(getattr(user, "id", 0)), str(getattr(user, "username", "")))

        return await self._run(None, read)

    # ------------------------------------------------------------ project IDs
    # A policy names a project by path, which a rename or transfer in GitLab changes; its
    # numeric ID never does. So the first call learns the ID (GET /projects/:path) and every
    # call after goes by ID. The ID is kept in the database (ids), not only here: after a
    # rename the old path no longer leads to the project (older GitLab answers 404, newer
    # refuses writes with 405, and a new project may take the path over), so a replica
    # started after the rename could not learn it again.

    async def project_id(self, project: ProjectRef) -> int:
        """The numeric ID of a project named by ID or path, learned on first use and kept."""
        known = await self.known_id(project)
        if known is not None:
            return known
        key = str(project).lower()
        async with self._learning.setdefault(key, asyncio.Lock()):  # one look-up per path
            if key in self._learned:
                return self._learned[key]
            found = await self._run(project, lambda: self._gl.projects.get(project))
            project_id = int(found.id)
            if self._ids is not None:
                project_id = await self._ids.save(key, project_id)
            self._learned[key] = project_id
        return project_id

    async def known_id(self, project: ProjectRef) -> int | None:
        """The ID a project reference stands for, if known here or kept; no GitLab call."""
        if isinstance(project, int) or project.isdigit():
            return int(project)
        key = project.lower()
        if key in self._learned or self._ids is None:
            return self._learned.get(key)
        async with self._loading:  # callers waiting for the same read share it
            # A path nobody has learned costs one read of the kept IDs a minute, not one a call.
            if key not in self._learned and time.monotonic() - self._loaded_at > _RELOAD_SECONDS:
                self._learned.update(await self._ids.load())
                self._loaded_at = time.monotonic()
        return self._learned.get(key)

    # ------------------------------------------------------------ settings `check` reads

    async def project_settings(self, project: ProjectRef) -> ProjectSettings:
        """The project's current path, default branch and pipeline variable settings."""
        project_id = await self.project_id(project)
        found = await self._run(project, lambda: self._gl.projects.get(project_id))
        attrs = found.attributes
        role = attrs.get("ci_pipeline_variables_minimum_override_role")
        restricted = attrs.get("restrict_user_defined_variables")
        return ProjectSettings(
            id=int(attrs["id"]), path=str(attrs.get("path_with_namespace") or ""),
            default_branch=str(attrs.get("default_branch") or ""),
            variables_restricted=None if restricted is None else bool(restricted),
            variables_role=None if role is None else str(role))

    async def access_level(self, project: ProjectRef, user_id: int) -> int:
        """The user's access level in the project, inherited included (0: not a member)."""
        p = await self._project(project)

        def read() -> int:
            """A 404 for the member means no access; one for the project is an error."""
            try:
                return int(p.members_all.get(user_id).access_level)
            except gitlab.GitlabGetError as exc:
                if exc.response_code == 404 and "project" not in _text(exc.error_message).lower():
                    return 0
                raise

        return await self._run(project, read)

    async def protected_tags(self, project: ProjectRef) -> list[ProtectedTag]:
        """Every protected tag rule (GitLab shows them to maintainers only)."""
        p = await self._project(project)
        rows = await self._run(project, lambda: [
            item.attributes for item in p.protectedtags.list(get_all=True)])
        return [ProtectedTag(str(row["name"]), tuple(
            _access_rule(entry) for entry in row.get("create_access_levels") or ()))
            for row in rows]

    async def environment_protected(self, project: ProjectRef, name: str) -> bool:
        """Whether the environment is protected (GitLab answers maintainers only)."""
        p = await self._project(project)

        def read() -> bool:
            """404 for the name means not protected; one for the project is an error."""
            try:
                p.protected_environments.get(name)
            except gitlab.GitlabGetError as exc:
                if exc.response_code == 404 and "project" not in _text(exc.error_message).lower():
                    return False
                raise
            return True

        return await self._run(project, read)

    # ------------------------------------------------------------ plumbing

    async def _project(self, project: ProjectRef) -> Project:
        """A lazy project object by numeric ID, so a rename in GitLab changes nothing here."""
        project_id = await self.project_id(project)
        if project_id not in self._projects:
            self._projects[project_id] = self._gl.projects.get(project_id, lazy=True)
        return self._projects[project_id]

    async def _run(
        self, project: ProjectRef | None, fn: Callable[[], T], what: str | None = None,
    ) -> T:
        """Run blocking python-gitlab code in a thread, translating its errors."""

        def guarded() -> T:
            """Translate inside the thread: the Retry-After seen is per thread."""
            self._local.retry_after = None
            try:
                return fn()
            except (gitlab.GitlabError, requests.RequestException) as exc:
                raise _translate(exc, project, what, self._local.retry_after) from exc

        return await asyncio.to_thread(guarded)

    def _remember_retry_after(self, response: requests.Response, *_: Any, **__: Any) -> None:
        """requests response hook: count the call; note a 429's Retry-After for its thread."""
        if self._on_call is not None:
            self._on_call(_call_name(response.request), response.status_code)
        if response.status_code == 429:
            self._local.retry_after = _seconds(response.headers.get("Retry-After"))


def _call_name(request: Any) -> str:
    """`GET pipelines`: the method and the last named part of the path, for metrics labels."""
    path = requests.utils.urlparse(request.url or "").path
    named = [part for part in path.split("/") if part and not part.isdigit() and "%" not in part]
    return f"{request.method} {named[-1] if named else '/'}"


# ---------------------------------------------------------------- merge request matching


def _find_merge_requests(
    p: Project, wanted: list[str], since: datetime | None,
) -> list[MergeRequest]:
    """Match merged MRs to the wanted shas (runs in the worker thread)."""
    rows, complete = _merged_since(p, since)
    shas = set(wanted)
    found: dict[int, tuple[dict[str, Any], set[str]]] = {}
    for row in rows:
        hits = shas & {row.get("merge_commit_sha"), row.get("squash_commit_sha"), row.get("sha")}
        if hits:
            found.setdefault(row["iid"], (row, set()))[1].update(hits)
    if not complete:
        covered = set().union(*(hits for _, hits in found.values()))
        for sha in [s for s in wanted if s not in covered][:_MR_LOOKUPS]:
            for row in _as_rows(p.commits.get(sha, lazy=True).merge_requests(get_all=False)):
                if row.get("state") == "merged":
                    found.setdefault(row["iid"], (row, set()))[1].add(sha)
    order = {sha: i for i, sha in enumerate(wanted)}
    mrs = [_merge_request(row, sorted(hits, key=order.__getitem__))
           for row, hits in found.values()]
    never = datetime.min.replace(tzinfo=UTC)
    return sorted(mrs, key=lambda mr: (mr.merged_at or never, mr.iid))


def _merged_since(p: Project, since: datetime | None) -> tuple[list[dict[str, Any]], bool]:
    """Merged MRs updated since, newest first, and whether that is all of them."""
    query: dict[str, Any] = {"state": "merged", "order_by": "updated_at", "sort": "desc",
                             "per_page": 100}
    if since is not None:
        query["updated_after"] = _iso(since)
    rows: list[dict[str, Any]] = []
    for page in range(1, _MR_PAGES + 1):
        chunk = p.mergerequests.list(page=page, get_all=False, **query)
        rows += [item.attributes for item in chunk]
        if len(chunk) < query["per_page"]:
            return rows, since is not None
    return rows, False


def _window_start(commits: Iterable[Commit]) -> datetime | None:
    """When the oldest commit was made, less some skew; None if any date is unknown."""
    dates = [c.committed_at for c in commits]
    if any(d is None for d in dates):
        return None
    return min(d for d in dates if d is not None) - _CLOCK_SKEW


# ---------------------------------------------------------------- conversions


def _pipeline(project: ProjectRef, row: Mapping[str, Any]) -> Pipeline:
    """A Pipeline from the API's pipeline (or basic pipeline) entity."""
    return Pipeline(
        id=int(row["id"]), project=str(project), ref=str(row.get("ref") or ""),
        sha=str(row.get("sha") or ""), status=str(row.get("status") or ""),
        web_url=str(row.get("web_url") or ""), updated_at=_time(row.get("updated_at")),
        finished_at=_time(row.get("finished_at")),
        duration=None if row.get("duration") is None else int(row["duration"]),
    )


def _job(row: Mapping[str, Any]) -> Job:
    """A Job from the API's job entity."""
    return Job(id=int(row["id"]), name=str(row.get("name") or ""),
               stage=str(row.get("stage") or ""), status=str(row.get("status") or ""),
               web_url=str(row.get("web_url") or ""), failure_reason=row.get("failure_reason"))


def _access_rule(row: Mapping[str, Any]) -> AccessRule:
    """An AccessRule from a protected ref's access level entry.

    Entries for a user, group or deploy key keep a level in the API (40), which is not a role.
    """
    user, group, key = row.get("user_id"), row.get("group_id"), row.get("deploy_key_id")
    level = row.get("access_level")
    return AccessRule(
        level=None if user or group or key or level is None else int(level),
        user_id=None if user is None else int(user),
        group_id=None if group is None else int(group),
        description=str(row.get("access_level_description") or ""))


def _commit(row: Mapping[str, Any]) -> Commit:
    """A Commit from the API's commit entity."""
    sha = str(row["id"])
    return Commit(sha=sha, short_id=str(row.get("short_id") or sha[:8]),
                  title=str(row.get("title") or ""), author_name=str(row.get("author_name") or ""),
                  web_url=str(row.get("web_url") or ""),
                  committed_at=_time(row.get("committed_date") or row.get("created_at")),
                  parent_ids=tuple(row.get("parent_ids") or ()))


def _merge_request(row: Mapping[str, Any], shas: Iterable[str]) -> MergeRequest:
    """A MergeRequest from the API's merge request entity."""
    author = row.get("author") or {}
    return MergeRequest(iid=int(row["iid"]), title=str(row.get("title") or ""),
                        web_url=str(row.get("web_url") or ""),
                        author=str(author.get("username") or author.get("name") or ""),
                        merged_at=_time(row.get("merged_at")),
                        labels=tuple(str(label) for label in row.get("labels") or ()),
                        commit_shas=tuple(shas))


def _as_dict(result: Any) -> dict[str, Any]:
    """A JSON object answer (python-gitlab types these as dict or raw response)."""
    return result if isinstance(result, dict) else {}


def _as_rows(result: Any) -> list[dict[str, Any]]:
    """A JSON list answer as plain dicts."""
    return [row for row in result if isinstance(row, dict)]


def _time(value: Any) -> datetime | None:
    """An API timestamp as an aware UTC datetime."""
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _iso(when: datetime) -> str:
    """A query timestamp; a naive datetime is taken as UTC."""
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _seconds(value: str | None) -> float | None:
    """Retry-After as seconds; the rarely used HTTP-date form counts as unknown."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


# ---------------------------------------------------------------- errors


def _translate(
    exc: Exception, project: ProjectRef | None, what: str | None, retry_after: float | None,
) -> GitLabError:
    """One plain sentence for a python-gitlab or requests failure."""
    if not isinstance(exc, gitlab.GitlabError):  # people read this: no exception class names
        return GitLabError(_unreached(exc))
    code, text = exc.response_code, _text(exc.error_message)
    if code == 429:
        wait = f", retry in {retry_after:g} s" if retry_after is not None else ""
        return GitLabError(f"GitLab is rate limiting us (429){wait}", status=429,
                           retry_after=retry_after)
    return GitLabError(_sentence(code, text, project, what), status=code)


def _unreached(exc: Exception) -> str:
    """Why no answer came from GitLab, as a person would say it."""
    if isinstance(exc, requests.Timeout):
        return "GitLab did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "GitLab can't be reached"
    return "GitLab unavailable"


def _sentence(code: int | None, text: str, project: ProjectRef | None, what: str | None) -> str:
    """The message for an error status other than 429."""
    place = f" in {project}" if project is not None else ""
    if code == 401:
        return "GitLab refused the token (401)"
    if code == 403:
        return f"GitLab denied access{place} (403)"
    if code == 404 and project is not None and "project" in text.lower():
        return f"GitLab project {project} not found"
    if code == 404:
        return f"GitLab {what or 'resource'} not found{place}"
    if code is not None and code >= 500:
        return f"GitLab unavailable ({code})"
    if code is None:
        return f"GitLab sent an unexpected answer: {text}"
    return f"GitLab rejected the request{place} ({code}): {text}"


def _text(message: Any) -> str:
    """A GitLab error body ('x', {'base': ['y']}, HTML) as one short line."""
    if isinstance(message, dict):
        message = "; ".join(f"{key}: {_text(value)}" for key, value in message.items())
    elif isinstance(message, list):
        message = ", ".join(_text(item) for item in message)
    line = " ".join(str(message).split())
    return line if len(line) <= 200 else line[:199] + "…"
