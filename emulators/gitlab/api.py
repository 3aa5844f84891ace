"""The REST API routes: one handler per endpoint, answering as GitLab's API does."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from emulators.gitlab.http import Ctx, json_answer, order, paginate, within
from emulators.gitlab.issues import h_issue, h_issues, h_labels, h_milestones
from emulators.gitlab.records import (
    API,
    DEPLOYMENT_STATUSES,
    DEVELOPER,
    GITLAB_VERSION,
    MAINTAINER,
    MR_STATES,
    PIPELINE_STATUSES,
    GitLabError,
    MergeRequest,
    Pipeline,
    Project,
    ProtectedRef,
    forbidden,
    not_found,
    record_not_found,
    version_key,
)
from emulators.gitlab.repository import diffs, merge_base, stats, tree

# ---------------------------------------------------------------- API handlers


def h_user(ctx: Ctx) -> web.Response:
    """GET /user: the token's owner."""
    return json_answer(ctx.view.user(ctx.emu.current_user)
                       | {"email": "releasebot@example.com", "bot": True})


def h_version(ctx: Ctx) -> web.Response:
    """GET /version."""
    return json_answer({"version": GITLAB_VERSION, "revision": "0e5b6f7a", "enterprise": True})


def h_project(ctx: Ctx) -> web.Response:
    """GET /projects/:id, by numeric id or URL-encoded path."""
    return json_answer(ctx.view.project(ctx.project(), ctx.emu.current_user))


def h_member(ctx: Ctx) -> web.Response:
    """GET /projects/:id/members/all/:user_id: a member and their access level."""
    p = ctx.project()
    user_id = int(ctx.params["user"])
    user = next((u for u in ctx.emu.users() if u.id == user_id), None)
    if user is None or user_id not in p.members:
        raise record_not_found()
    return json_answer(ctx.view.member(user, p.members[user_id]))


def h_create_pipeline(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipeline."""
    (ref,) = ctx.required("ref")
    pl = ctx.emu.create_pipeline(ctx.project(), ref, ctx.body.get("variables") or [])
    return json_answer(ctx.view.pipeline(pl), status=201)


def h_pipelines(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines with GitLab's filters."""
    wanted = _pipeline_filter(ctx)
    items = [pl for pl in ctx.emu.pipelines_for(ctx.project()) if wanted(pl)]
    keys = {"id": lambda pl: pl.id, "updated_at": lambda pl: (pl.updated_at, pl.id),
            "status": lambda pl: (pl.status, pl.id), "ref": lambda pl: (pl.ref, pl.id)}
    return paginate(ctx, order(items, ctx, keys, "id"), ctx.view.pipeline_basic)


def _pipeline_filter(ctx: Ctx) -> Callable[[Pipeline], bool]:
    """A predicate for the pipeline list filters (validated once, up front)."""
    status = ctx.choice("status", PIPELINE_STATUSES)
    scope = ctx.choice("scope", ("running", "pending", "finished", "branches", "tags"))
    ref, sha, source, username = (ctx.arg(n) for n in ("ref", "sha", "source", "username"))
    after, before = ctx.time("updated_after"), ctx.time("updated_before")

    def wanted(pl: Pipeline) -> bool:
        """Whether the pipeline passes every filter."""
        scopes = {"running": pl.status == "running", "pending": pl.status == "pending",
                  "finished": pl.status in ("success", "failed", "canceled"),
                  "branches": not pl.tag, "tags": pl.tag}
        return all((
            status is None or pl.status == status,
            scope is None or scopes[scope],
            ref is None or pl.ref == ref,
            sha is None or pl.sha == sha,
            source is None or pl.source == source,
            username is None or pl.user.username == username,
            within(pl.updated_at, after, before),
        ))

    return wanted


def h_pipeline(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid."""
    return json_answer(ctx.view.pipeline(ctx.pipeline()))


def h_pipeline_jobs(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid/jobs (retried jobs only with include_retried)."""
    pl = ctx.pipeline()
    jobs = pl.jobs if ctx.arg("include_retried") == "true" else pl.latest_jobs()
    scope = ctx.request.query.getall("scope[]", []) + ctx.request.query.getall("scope", [])
    jobs = [job for job in jobs if not scope or job.status in scope]
    return paginate(ctx, jobs, ctx.view.job)


def h_pipeline_variables(ctx: Ctx) -> web.Response:
    """GET /projects/:id/pipelines/:pid/variables."""
    return json_answer([dict(v) for v in ctx.pipeline().variables])


def h_cancel(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipelines/:pid/cancel: 200 whatever the pipeline's state.

    A pipeline with nothing cancelable (finished, or blocked on a manual job) is as it was.
    """
    if ctx.level(ctx.project()) < DEVELOPER:
        raise forbidden()
    return json_answer(ctx.view.pipeline(ctx.emu.cancel_pipeline(ctx.pipeline().id)))


def h_retry(ctx: Ctx) -> web.Response:
    """POST /projects/:id/pipelines/:pid/retry."""
    if ctx.level(ctx.project()) < DEVELOPER:
        raise forbidden()
    return json_answer(ctx.view.pipeline(ctx.emu.retry_pipeline(ctx.pipeline().id)), status=201)


def h_job(ctx: Ctx) -> web.Response:
    """GET /projects/:id/jobs/:job_id."""
    return json_answer(ctx.view.job(ctx.emu.job(ctx.project(), int(ctx.params["job"]))))


def h_play(ctx: Ctx) -> web.Response:
    """POST /projects/:id/jobs/:job_id/play."""
    return json_answer(ctx.view.job(ctx.emu.play_job(ctx.project(), int(ctx.params["job"]))),
                 status=201)


def h_deployments(ctx: Ctx) -> web.Response:
    """GET /projects/:id/deployments (GitLab sorts these ascending by default)."""
    p = ctx.project()
    env, status = ctx.arg("environment"), ctx.choice("status", DEPLOYMENT_STATUSES)
    updated = (ctx.time("updated_after"), ctx.time("updated_before"))
    finished = (ctx.time("finished_after"), ctx.time("finished_before"))
    _inefficient_deployments_query(ctx, any(updated), any(finished), status)
    items = [d for d in p.deployments
             if (env is None or d.environment.name == env)
             and (status is None or d.status == status)
             and within(d.updated_at, *updated) and within(d.finished_at, *finished)]
    late = datetime.max.replace(tzinfo=UTC)
    keys = {"id": lambda d: d.id, "iid": lambda d: d.iid,
            "created_at": lambda d: (d.created_at, d.id),
            "updated_at": lambda d: (d.updated_at, d.id),
            "finished_at": lambda d: (d.finished_at or late, d.id),
            "ref": lambda d: (d.ref, d.id)}
    items = order(items, ctx, keys, "id", default_sort="asc")
    return paginate(ctx, items, lambda d: ctx.view.deployment(d, p))


def _inefficient_deployments_query(ctx: Ctx, by_updated: bool, by_finished: bool,
                                   status: str | None) -> None:
    """DeploymentsFinder's refusals, which the API answers as 400 Bad request.

    (An `updated_at` filter without `updated_at` sorting is only logged by GitLab.)
    """
    sorted_by_finished = ctx.arg("order_by") == "finished_at"
    if by_updated and by_finished:
        problem = "Both `updated_at` filter and `finished_at` filter can not be specified"
    elif by_finished != sorted_by_finished:
        problem = "`finished_at` filter and `finished_at` sorting must be paired"
    elif by_finished and status != "success":
        problem = "`finished_at` filter must be combined with `success` status filter."
    else:
        return
    raise GitLabError(400, f"400 Bad request - {problem}")


def h_deployment(ctx: Ctx) -> web.Response:
    """GET /projects/:id/deployments/:deployment_id."""
    p = ctx.project()
    for d in p.deployments:
        if d.id == int(ctx.params["dep"]):
            return json_answer(ctx.view.deployment(d, p))
    raise not_found()


def h_environments(ctx: Ctx) -> web.Response:
    """GET /projects/:id/environments (name and search filters)."""
    p = ctx.project()
    name, search = ctx.arg("name"), ctx.arg("search")
    items = [e for e in p.environments.values()
             if (name is None or e.name == name) and (search is None or search in e.name)]
    return paginate(ctx, items, lambda e: ctx.view.environment(e, p))


def h_environment(ctx: Ctx) -> web.Response:
    """GET /projects/:id/environments/:environment_id, with last_deployment."""
    p = ctx.project()
    for env in p.environments.values():
        if env.id == int(ctx.params["env"]):
            return json_answer(ctx.view.environment(env, p, last=True))
    raise not_found("Environment")


def h_tags(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/tags (newest commit first by default)."""
    p = ctx.project()
    search = ctx.arg("search")
    items = [t for t in p.tags.values() if search is None or search in t.name]
    keys = {"updated": lambda t: (p.commits[t.sha].at, t.created_at),
            "name": lambda t: t.name, "version": lambda t: version_key(t.name)}
    return paginate(ctx, order(items, ctx, keys, "updated"), lambda t: ctx.view.tag(t, p))


def h_create_tag(ctx: Ctx) -> web.Response:
    """POST /projects/:id/repository/tags {tag_name, ref, message?}: 201 with the tag."""
    p = ctx.project()
    tag_name, ref = ctx.required("tag_name", "ref")
    tag = ctx.emu.create_tag(p, tag_name, ref, ctx.arg("message") or "")
    return json_answer(ctx.view.tag(tag, p), status=201)


def h_protected_tags(ctx: Ctx) -> web.Response:
    """GET /projects/:id/protected_tags (read_protected_tags: maintainers only)."""
    p = _admin_project(ctx)
    return paginate(ctx, list(p.protected_tags.values()),
                    lambda rule: ctx.view.protected_ref(rule, "create_access_levels"))


def h_protected_tag(ctx: Ctx) -> web.Response:
    """GET /projects/:id/protected_tags/:name (the name or wildcard exactly as protected)."""
    rule = _admin_project(ctx).protected_tags.get(ctx.params["name"])
    if rule is None:
        raise record_not_found()
    return json_answer(ctx.view.protected_ref(rule, "create_access_levels"))


def h_protect_tag(ctx: Ctx) -> web.Response:
    """POST /projects/:id/protected_tags {name, create_access_level?}: maintainers only."""
    p = ctx.project()
    if ctx.level(p) < MAINTAINER:
        raise forbidden()
    (name,) = ctx.required("name")
    level = ctx.choice("create_access_level", ("0", "30", "40", "60"), str(MAINTAINER))
    rule = ctx.emu.protect_tag(p, name, int(level or MAINTAINER))
    return json_answer(ctx.view.protected_ref(rule, "create_access_levels"), status=201)


def h_protected_environments(ctx: Ctx) -> web.Response:
    """GET /projects/:id/protected_environments, by name (maintainers only)."""
    p = _admin_project(ctx)
    rules = sorted(p.protected_environments.values(), key=lambda rule: rule.name)
    return paginate(ctx, rules,
                    lambda rule: ctx.view.protected_ref(rule, "deploy_access_levels"))


def h_protected_environment(ctx: Ctx) -> web.Response:
    """GET /projects/:id/protected_environments/:name (maintainers only)."""
    rule: ProtectedRef | None = _admin_project(ctx).protected_environments.get(
        ctx.params["name"])
    if rule is None:
        raise record_not_found()
    return json_answer(ctx.view.protected_ref(rule, "deploy_access_levels"))


def _admin_project(ctx: Ctx) -> Project:
    """The :id project, for an endpoint behind authorize_admin_project."""
    p = ctx.project()
    if ctx.level(p) < MAINTAINER:
        raise forbidden()
    return p


def h_tag(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/tags/:name."""
    p = ctx.project()
    tag = p.tags.get(ctx.params["name"])
    if tag is None:
        raise not_found("Tag")
    return json_answer(ctx.view.tag(tag, p))


def h_branches(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/branches (by name)."""
    p = ctx.project()
    search = ctx.arg("search")
    names = sorted(name for name in p.branches if search is None or search in name)
    return paginate(ctx, names, lambda name: _branch_json(ctx, p, name))


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
    return json_answer(_branch_json(ctx, p, ctx.params["name"]))


def h_commits(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/commits (ref_name, since, until), newest first."""
    p = ctx.project()
    head = ctx.emu.resolve(p, ctx.arg("ref_name") or p.default_branch)
    if head is None:
        raise not_found("Commit")
    reachable = ctx.emu.ancestors(p, head.sha)
    since, until = ctx.time("since"), ctx.time("until")
    items = [c for sha, c in reversed(p.commits.items())
             if sha in reachable and within(c.at, since, until)]
    return paginate(ctx, items, lambda c: ctx.view.commit(p, c))


def h_commit(ctx: Ctx) -> web.Response:
    """GET /projects/:id/repository/commits/:sha, with its last pipeline."""
    p, commit = ctx.project(), ctx.commit()
    runs = [pl for pl in ctx.emu.pipelines_for(p) if pl.sha == commit.sha]
    last = ctx.view.pipeline(runs[-1]) if runs else None
    return json_answer(ctx.view.commit(p, commit) | {
        "project_id": p.id, "stats": stats(p, commit),
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
    return paginate(ctx, refs, dict)


def h_commit_mrs(ctx: Ctx) -> web.Response:
    """GET .../repository/commits/:sha/merge_requests: MRs that brought or merged it."""
    p, commit = ctx.project(), ctx.commit()
    items = [mr for mr in p.merge_requests.values()
             if commit.sha in (mr.merge_commit_sha, mr.squash_commit_sha, *mr.commits)]
    return paginate(ctx, items, lambda mr: ctx.view.merge_request(mr, p))


def h_compare(ctx: Ctx) -> web.Response:
    """GET .../repository/compare?from=&to=: commits in `to` but not `from`, oldest first.

    diffs run from the merge base to `to` (from `from` itself with straight=true).
    """
    p = ctx.project()
    ref_from, ref_to = ctx.required("from", "to")
    base, head = ctx.emu.resolve(p, ref_from), ctx.emu.resolve(p, ref_to)
    if base is None or head is None:
        raise not_found("Ref")
    excluded = ctx.emu.ancestors(p, base.sha)
    wanted = ctx.emu.ancestors(p, head.sha) - excluded
    commits = [ctx.view.commit(p, c) for sha, c in p.commits.items() if sha in wanted]
    start = base if ctx.arg("straight") == "true" else merge_base(p, base.sha, head.sha)
    old = tree(p, start.sha) if start else {}
    return json_answer({
        "commit": commits[-1] if commits else None, "commits": commits,
        "diffs": diffs(old, tree(p, head.sha)),
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
    return json_answer(ctx.view.commit(p, newest[-1]))


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
    items = order(items, ctx, keys, "created_at")
    return paginate(ctx, items, lambda mr: ctx.view.merge_request(mr, p))


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
            within(mr.updated_at, *updated),
            within(mr.created_at, *created),
        ))

    return wanted


def h_merge_request(ctx: Ctx) -> web.Response:
    """GET /projects/:id/merge_requests/:iid."""
    p = ctx.project()
    mr = p.merge_requests.get(int(ctx.params["iid"]))
    if mr is None:
        raise not_found()
    return json_answer(ctx.view.merge_request(mr, p))


def h_create_release(ctx: Ctx) -> web.Response:
    """POST /projects/:id/releases."""
    p = ctx.project()
    (tag_name,) = ctx.required("tag_name")
    released_at = ctx.time("released_at")
    release = ctx.emu.create_release(p, tag_name, ctx.arg("name"), ctx.arg("description") or "",
                                     ctx.arg("ref"), released_at)
    return json_answer(ctx.view.release(release, p), status=201)


def h_releases(ctx: Ctx) -> web.Response:
    """GET /projects/:id/releases, newest released first."""
    p = ctx.project()
    keys = {"released_at": lambda r: r.released_at, "created_at": lambda r: r.created_at}
    items = order(list(p.releases.values()), ctx, keys, "released_at")
    return paginate(ctx, items, lambda r: ctx.view.release(r, p))


def h_release(ctx: Ctx) -> web.Response:
    """GET /projects/:id/releases/:tag_name."""
    p = ctx.project()
    release = p.releases.get(ctx.params["tag"])
    if release is None:
        raise not_found()
    return json_answer(ctx.view.release(release, p))


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
    _route("GET", _P + r"/members/all/(?P<user>\d+)", h_member),
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
    _route("GET", _P + "/protected_environments", h_protected_environments),
    _route("GET", _P + "/protected_environments/(?P<name>[^/]+)", h_protected_environment),
    _route("GET", _P + "/protected_tags", h_protected_tags),
    _route("POST", _P + "/protected_tags", h_protect_tag),
    _route("GET", _P + "/protected_tags/(?P<name>[^/]+)", h_protected_tag),
    _route("GET", _R + "/tags", h_tags),
    _route("POST", _R + "/tags", h_create_tag),
    _route("GET", _R + "/tags/(?P<name>[^/]+)", h_tag),
    _route("GET", _R + "/branches", h_branches),
    _route("GET", _R + "/branches/(?P<name>[^/]+)", h_branch),
    _route("GET", _R + "/commits", h_commits),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)", h_commit),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)/refs", h_commit_refs),
    _route("GET", _R + "/commits/(?P<sha>[^/]+)/merge_requests", h_commit_mrs),
    _route("GET", _R + "/compare", h_compare),
    _route("GET", _R + "/merge_base", h_merge_base),
    _route("GET", _P + "/issues", h_issues),
    _route("GET", _P + r"/issues/(?P<iid>\d+)", h_issue),
    _route("GET", _P + "/labels", h_labels),
    _route("GET", _P + "/milestones", h_milestones),
    _route("GET", _P + "/merge_requests", h_merge_requests),
    _route("GET", _P + r"/merge_requests/(?P<iid>\d+)", h_merge_request),
    _route("POST", _P + "/releases", h_create_release),
    _route("GET", _P + "/releases", h_releases),
    _route("GET", _P + "/releases/(?P<tag>[^/]+)", h_release),
)


def match_route(method: str, raw_path: str) -> tuple[Route | None, dict[str, str]]:
    """The route for a request and its decoded path parameters."""
    for route in ROUTES:
        found = route.pattern.fullmatch(raw_path)
        if found and route.method == method:
            return route, {key: unquote(value) for key, value in found.groupdict().items()}
    return None, {}


