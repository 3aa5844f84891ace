"""The emulator: an in-memory GitLab with its data set-up helpers, served over HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from emulators.gitlab.api import Route, match_route
from emulators.gitlab.http import Ctx, base_of, fault_response, matches, query_dict, read_body
from emulators.gitlab.issues import IssueBook
from emulators.gitlab.pipelines import PipelineEngine, may_create_tag
from emulators.gitlab.records import (
    DEVELOPER,
    GITLAB_VERSION,
    MAINTAINER,
    MR_STATES,
    NO_ACCESS,
    VARIABLE_ROLES,
    AutoAdvance,
    Call,
    Commit,
    Fault,
    GitLabError,
    HookDelivery,
    JobSpec,
    MergeRequest,
    Moved,
    Pipeline,
    Project,
    ProtectedRef,
    Release,
    Tag,
    User,
    forbidden,
    not_found,
    utc,
    valid_ref_name,
)
from emulators.gitlab.repository import ancestors
from emulators.gitlab.views import View

if TYPE_CHECKING:
    from emulators.gitlab.control import ControlHandler


class GitLabEmulator(PipelineEngine, IssueBook):
    """An in-memory GitLab served over HTTP, scripted by the test that owns it.

    The token belongs to current_user, a maintainer of every project it adds unless
    set_access_level says otherwise.
    """

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
        self.canceling_seconds = 0.1
        # GitLab 16.x and later redirect API calls that name a moved project by its old path.
        self.redirect_moved_projects = True
        self.projects: dict[int, Project] = {}
        self.pipelines: dict[int, Pipeline] = {}
        self.calls: list[Call] = []
        self.faults: list[Fault] = []
        self.hook_deliveries: list[HookDelivery] = []
        self.auto: AutoAdvance | None = None
        self.current_user = User(1, "releasebot", "ReleaseBot")
        self._users: dict[str, User] = {self.current_user.username: self.current_user}
        # Old paths of renamed projects (lower case), which GitLab keeps redirecting.
        self._redirects: dict[str, int] = {}
        self._ids: dict[str, int] = {"pipeline": 1000, "job": 5000, "deployment": 300,
                                     "environment": 10, "merge_request": 7000, "commit": 0,
                                     "access_level": 0, "issue": 9000, "label": 60,
                                     "milestone": 40}
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
        from emulators.gitlab.control import CONTROL_ROUTES  # control builds on this class

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
        return utc(self.clock())

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

    def users(self) -> list[User]:
        """Every user the emulator knows, current_user included."""
        return list({u.id: u for u in (*self._users.values(), self.current_user)}.values())

    def project(self, ref: Project | int | str) -> Project:
        """A project by record, numeric id (or its string) or path; KeyError if unknown.

        Paths match case-insensitively, and a renamed project's old path still leads to it,
        as GitLab's find_by_full_path(follow_redirects: true) does.
        """
        if isinstance(ref, Project):
            return ref
        if isinstance(ref, int) or ref.isdigit():
            return self.projects[int(ref)]
        wanted = ref.lower()
        for p in self.projects.values():
            if p.path.lower() == wanted:
                return p
        if wanted in self._redirects:
            return self.projects[self._redirects[wanted]]
        raise KeyError(f"no project {ref!r}")

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
        return ancestors(project, sha)

    # ------------------------------------------------------------ projects and people

    def add_project(
        self, path: str, *, id: int | None = None, default_branch: str = "main",
        manual_deploy: bool = False, jobs: Sequence[JobSpec] | None = None,
        variables_role: str | None = None, access_level: int = MAINTAINER,
    ) -> Project:
        """Add a project; current_user joins it at access_level.

        jobs is its CI configuration (default build, test, deploy); manual_deploy makes
        the deploy jobs wait for play, holding the pipeline up. variables_role is
        ci_pipeline_variables_minimum_override_role (default: self-managed GitLab's).
        """
        project_id = id if id is not None else max(self.projects, default=0) + 1
        if project_id in self.projects:
            raise ValueError(f"project id {project_id} already exists")
        self._claim_path(path)
        project = Project(project_id, path, default_branch,
                          _ci_config(Project.jobs if jobs is None else jobs, manual_deploy))
        if variables_role is not None:
            self.set_variables_role(project, variables_role)
        self.projects[project_id] = project
        self.set_access_level(project, self.current_user.username, access_level)
        return project

    def set_jobs(self, project: Project | int | str, jobs: Sequence[JobSpec] | None = None, *,
                 manual_deploy: bool = False) -> Project:
        """Change a project's CI configuration (as a pushed .gitlab-ci.yml would) for new pipelines.

        manual_deploy makes the deploy jobs wait for play, as in add_project.
        """
        p = self.project(project)
        p.jobs = _ci_config(p.jobs if jobs is None else jobs, manual_deploy)
        return p

    def _claim_path(self, path: str, owner: Project | None = None) -> None:
        """Refuse a path another project has; a new project's path ends any redirect from it."""
        for p in self.projects.values():
            if p is not owner and p.path.lower() == path.lower():
                raise ValueError(f"path {path} is taken by project {p.id}")
        self._redirects.pop(path.lower(), None)

    def rename_project(self, project: Project | int | str, new_path: str) -> Project:
        """Move a project to a new path (a rename or a transfer); its id stays.

        The old path becomes a redirect route: the API answers a GET through it with 301 to
        the same URL by numeric id and any other method with 405 (404 instead when
        redirect_moved_projects is off, as GitLab did before it redirected API calls).
        """
        p = self.project(project)
        self._claim_path(new_path, owner=p)
        self._redirects[p.path.lower()] = p.id
        p.path = new_path
        return p

    def set_access_level(
        self, project: Project | int | str, username: str, level: int | None,
    ) -> None:
        """Make a user a member at level (30 developer, 40 maintainer, 50 owner; None: remove)."""
        p = self.project(project)
        user = self.user(username)
        if level is None or level == NO_ACCESS:
            p.members.pop(user.id, None)
        else:
            p.members[user.id] = level

    def set_variables_role(self, project: Project | int | str, role: str) -> None:
        """Set ci_pipeline_variables_minimum_override_role (no_one_allowed ... owner)."""
        if role not in VARIABLE_ROLES:
            raise ValueError(f"role must be one of {list(VARIABLE_ROLES)}")
        self.project(project).variables_role = role

    def protect_tag(
        self, project: Project | int | str, pattern: str, create_access_level: int = MAINTAINER,
        *, users: Sequence[str] = (),
    ) -> ProtectedRef:
        """Protect tags matching pattern (wildcards allowed); 0 lets no one create them.

        users are usernames allowed to create them whatever their role (Premium).
        """
        p = self.project(project)
        if pattern in p.protected_tags:
            raise GitLabError(422, ["Name has already been taken"])
        rule = self._protected_ref(pattern, create_access_level, users)
        p.protected_tags[pattern] = rule
        return rule

    def protect_environment(
        self, project: Project | int | str, name: str, deploy_access_level: int = MAINTAINER,
        *, users: Sequence[str] = (),
    ) -> ProtectedRef:
        """Protect an environment: only deploy_access_level and up (and users) may deploy."""
        p = self.project(project)
        rule = self._protected_ref(name, deploy_access_level, users)
        p.protected_environments[name] = rule
        return rule

    def _protected_ref(self, name: str, level: int | None, users: Sequence[str]) -> ProtectedRef:
        """A rule with one role entry (None: users only) and one entry per user."""
        roles = [] if level is None else [(self._next_id("access_level"), level)]
        return ProtectedRef(name, roles, [(self._next_id("access_level"), self.user(u))
                                          for u in users])

    # ------------------------------------------------------------ repository

    def add_commit(
        self, project: Project | int | str, sha: str | None = None, *, title: str,
        message: str = "", branches: Sequence[str] | None = None, parent: str | None = None,
        author: str = "dev", at: datetime | None = None,
        files: Mapping[str, str | None] | None = None,
    ) -> Commit:
        """Add a commit on top of parent (default: the first branch's head) and move branches.

        branches defaults to [default_branch]; [] adds a commit no branch points at.
        files maps paths to their new content (None deletes the file).
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
                        self.user(author), utc(at) if at else self.now(), dict(files or {}))
        p.commits[sha] = commit
        for branch in branches:
            p.branches[branch] = sha
        return commit

    def push(
        self, project: Project | int | str, branch: str, *, title: str, message: str = "",
        author: str = "dev", files: Mapping[str, str | None] | None = None,
        pipeline: bool = False,
    ) -> Commit:
        """A push of one new commit on top of an existing branch, moving it.

        pipeline=True also starts the push pipeline GitLab would run for it (source push).
        """
        p = self.project(project)
        if branch not in p.branches:
            raise ValueError(f"{p.path}: no branch {branch!r}")
        commit = self.add_commit(p, title=title, message=message, branches=[branch],
                                 author=author, files=files)
        if pipeline:
            self._new_pipeline(p, branch, [], "push")
        return commit

    def merge(
        self, project: Project | int | str, source: str, into: str, *, title: str | None = None,
        author: str = "dev",
    ) -> Commit:
        """A merge commit of source (a ref or sha) into the branch `into`, as git merge --no-ff.

        Its parents are into's head, then source's commit; into moves to it.
        """
        p = self.project(project)
        if into not in p.branches:
            raise ValueError(f"{p.path}: no branch {into!r}")
        head, other = p.commits[p.branches[into]], self._commit(p, source)
        title = title or f"Merge branch '{source}' into '{into}'"
        commit = Commit(self._make_sha(p, title), title, title, [head.sha, other.sha],
                        self.user(author), self.now(), {})
        p.commits[commit.sha] = commit
        p.branches[into] = commit.sha
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
        """Tag a commit (sha or ref name) as set-up data; a message makes it annotated."""
        p = self.project(project)
        if name in p.tags:
            raise ValueError(f"{p.path}: tag {name} already exists")
        tag = Tag(name, self._commit(p, sha).sha, message, self.now())
        p.tags[name] = tag
        return tag

    def create_tag(self, project: Project | int | str, name: str, ref: str,
                   message: str = "") -> Tag:
        """Create a tag as current_user through POST .../repository/tags, with its refusals."""
        p = self.project(project)
        level = p.access_level(self.current_user)
        if level < DEVELOPER:
            raise forbidden()
        if not valid_ref_name(name):
            raise GitLabError(400, "Tag name invalid")
        commit = self.resolve(p, ref)
        if commit is None:
            raise GitLabError(400, f"Target {ref} is invalid")
        if name in p.tags:
            raise GitLabError(400, f"Tag {name} already exists")
        if not may_create_tag(p, name, self.current_user):
            # Tags::CreateService's refusal, which the API always answers with 400.
            raise GitLabError(400, "You are not allowed to create this tag as it is protected.")
        tag = Tag(name, commit.sha, message.strip(), self.now())
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
        merged = (utc(merged_at) if merged_at else self.now()) if state == "merged" else None
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
        """Create acme/payments (id 1) and acme/web (id 2) with tags v1.0.0, v1.1.0 and MRs.

        Both are set up as docs/operations.md asks: production and release/* tags protected
        for maintainers, pipeline variables for maintainers, and the bot a maintainer.
        """
        start = self.now() - timedelta(days=10)
        self._seed_payments(self.add_project("acme/payments", id=1), start)
        self._seed_web(self.add_project("acme/web", id=2), start)
        for p in (self.projects[1], self.projects[2]):
            self.set_variables_role(p, "maintainer")
            self.protect_tag(p, "release/*", MAINTAINER)
            self.protect_environment(p, "production", MAINTAINER)

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

    # ------------------------------------------------------------ releases

    def create_release(
        self, p: Project, tag_name: str, name: str | None, description: str, ref: str | None,
        released_at: datetime | None = None,
    ) -> Release:
        """Create a release, tagging ref first when the tag does not exist yet."""
        if tag_name not in p.tags and not may_create_tag(p, tag_name, self.current_user):
            raise GitLabError(403, "You are not allowed to create this tag as it is protected.")
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
            and matches(path_prefix, call.path, call.canonical_path)
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
            if fault.remaining != 0 and matches(fault.path_prefix, path, canonical):
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
        route, params = match_route(request.method, path)
        canonical = self._canonical(path, params)
        try:
            response = await self._answer(request, route, params, path, canonical)
        except GitLabError as exc:
            response = web.json_response(exc.body, status=exc.status)
        except Moved as exc:  # Grape's redirect: a text body and the new Location
            response = web.Response(
                status=301, text=f"This resource has been moved permanently to {exc.location}.",
                headers={"Location": exc.location})
        self.calls.append(Call(request.method, path, query_dict(request), self.now(),
                               response.status, canonical))
        return response

    async def _answer(
        self, request: web.Request, route: Route | None, params: dict[str, str], path: str,
        canonical: str,
    ) -> web.Response:
        """Faults, then auth, then the route's handler."""
        fault = self._take_fault(path, canonical)
        if fault is not None:
            return await fault_response(fault)
        if not self._authorized(request):
            raise GitLabError(401, "401 Unauthorized")
        if route is None:
            raise not_found()
        ctx = Ctx(self, request, params, await read_body(request), View(base_of(request)))
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


def _ci_config(jobs: Sequence[JobSpec], manual_deploy: bool) -> tuple[JobSpec, ...]:
    """A project's jobs; manual_deploy turns its deploy jobs into blocking manual ones."""
    specs = tuple(jobs)
    if not specs:
        raise ValueError("a project needs at least one job")
    if manual_deploy:
        specs = tuple(JobSpec(s.name, s.stage, s.deploys, "manual", False) if s.deploys
                      else s for s in specs)
    return specs
