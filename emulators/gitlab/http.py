"""HTTP plumbing shared by the API routes: requests in, GitLab-shaped answers out."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from emulators.gitlab.records import (
    API,
    GUEST,
    Commit,
    Fault,
    GitLabError,
    Moved,
    Pipeline,
    Project,
    not_found,
    parse_time,
)
from emulators.gitlab.views import View

if TYPE_CHECKING:
    from emulators.gitlab.emulator import GitLabEmulator


def matches(prefix: str, path: str, canonical: str) -> bool:
    """Whether a call path starts with prefix; prefixes without /api/ are relative to /api/v4."""
    if not prefix.startswith("/api/"):
        prefix = API + (prefix if prefix.startswith("/") or not prefix else f"/{prefix}")
    return path.startswith(prefix) or canonical.startswith(prefix)


async def fault_response(fault: Fault) -> web.Response:
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


def base_of(request: web.Request) -> str:
    """The scheme and host the client used, for web_url and Link headers."""
    return f"{request.url.scheme}://{request.url.raw_authority}"


def query_dict(request: web.Request) -> dict[str, Any]:
    """The query string as a dict; repeated keys (refs[]) become lists."""
    result: dict[str, Any] = {}
    for key in request.query:
        values = request.query.getall(key)
        result[key] = values if len(values) > 1 else values[0]
    return result


async def read_body(request: web.Request) -> dict[str, Any]:
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
        """The :id project (numeric id, or a path with its namespace), or GitLab's 404.

        The projects are private: one the token's user is not a member of is not found.
        """
        ref = self.params["project"]
        try:
            if not ref.isdigit() and "/" not in ref:
                raise KeyError(ref)
            project = self.emu.project(ref)
        except KeyError:
            raise not_found("Project") from None
        if self.level(project) < GUEST:
            raise not_found("Project")
        if not ref.isdigit() and project.path.lower() != ref.lower():
            self._moved(project)
        return project

    def _moved(self, project: Project) -> None:
        """find_project! on an old path: a GET is redirected to the id, anything else refused."""
        if not self.emu.redirect_moved_projects:
            raise not_found("Project")
        if self.request.method != "GET":
            raise GitLabError(405, "Non GET methods are not allowed for moved projects")
        raw = self.request.rel_url.raw_path
        spelled = raw.split("/")[4]
        path = raw.replace(f"/projects/{spelled}", f"/projects/{project.id}", 1)
        query = self.request.rel_url.raw_query_string
        raise Moved(f"{base_of(self.request)}{path}{'?' + query if query else ''}")

    def level(self, project: Project) -> int:
        """The access level of the token's user in project."""
        return project.access_level(self.emu.current_user)

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


def json_answer(
    data: Any, status: int = 200, headers: dict[str, str] | None = None,
) -> web.Response:
    """A JSON answer."""
    return web.json_response(data, status=status, headers=headers)


def paginate(
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
    return json_answer([render(item) for item in chunk], headers=headers)


def order(items: list[Any], ctx: Ctx, keys: dict[str, Callable[[Any], Any]], default: str,
           default_sort: str = "desc") -> list[Any]:
    """Sort by the order_by/sort parameters, validated against keys."""
    order_by = ctx.choice("order_by", list(keys), default) or default
    sort = ctx.choice("sort", ("asc", "desc"), default_sort)
    return sorted(items, key=keys[order_by], reverse=sort == "desc")


def within(value: datetime | None, after: datetime | None, before: datetime | None) -> bool:
    """GitLab's inclusive *_after / *_before time filters."""
    if after is None and before is None:
        return True
    if value is None:
        return False
    return (after is None or value >= after) and (before is None or value <= before)


