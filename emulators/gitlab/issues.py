"""Issues, labels and milestones: set up by tests, listed as GitLab's issues API lists them.

`GET /projects/:id/issues` filters by state (default all), labels (comma-separated, every one
required; `None` and `Any` as GitLab has them), milestone title (`None`, `Any`), iids[],
issue_type and search, sorts by created_at (default, newest first), updated_at or title, and
pages with GitLab's headers. A milestone title that does not exist matches nothing, as in
GitLab: it is no error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from datetime import datetime

from aiohttp import web

from emulators.gitlab.http import Ctx, json_answer, order, paginate
from emulators.gitlab.records import (
    ISSUE_STATES,
    ISSUE_TYPES,
    Issue,
    Label,
    Milestone,
    Project,
    User,
    not_found,
)


class IssueBook(ABC):
    """The issues half of the emulator's set-up helpers; GitLabEmulator supplies the rest."""

    @abstractmethod
    def now(self) -> datetime:
        """The emulator's clock."""

    @abstractmethod
    def project(self, ref: Project | int | str) -> Project:
        """A project by record, id or path."""

    @abstractmethod
    def user(self, username: str) -> User:
        """A user by username, created on first use."""

    @abstractmethod
    def _next_id(self, kind: str) -> int:
        """Next global id for a kind of record."""

    def add_label(self, project: Project | int | str, name: str) -> Label:
        """A project label (kept if it exists)."""
        p = self.project(project)
        if name not in p.labels:
            p.labels[name] = Label(self._next_id("label"), name)
        return p.labels[name]

    def add_milestone(self, project: Project | int | str, title: str) -> Milestone:
        """A project milestone (kept if it exists)."""
        p = self.project(project)
        if title not in p.milestones:
            p.milestones[title] = Milestone(self._next_id("milestone"), len(p.milestones) + 1,
                                            title, self.now())
        return p.milestones[title]

    def add_issue(self, project: Project | int | str, title: str, *,
                  labels: Sequence[str] = (), milestone: str | None = None,
                  author: str = "tester", issue_type: str = "issue") -> Issue:
        """Open an issue; its labels (and milestone) are created as GitLab does on first use.

        Scoped labels (`severity::B`) are exclusive, as in GitLab: the last of a scope stays.
        """
        p = self.project(project)
        if issue_type not in ISSUE_TYPES:
            raise ValueError(f"issue_type must be one of {ISSUE_TYPES}")
        kept = _exclusive(labels)
        for name in kept:
            self.add_label(p, name)
        now = self.now()
        iid = max(p.issues, default=0) + 1
        issue = Issue(self._next_id("issue"), iid, title, self.user(author), now, now, kept,
                      self.add_milestone(p, milestone) if milestone else None,
                      issue_type=issue_type)
        p.issues[iid] = issue
        return issue

    def close_issue(self, project: Project | int | str, iid: int) -> Issue:
        """Close an issue (as a fix's merge or a person would)."""
        issue = self.project(project).issues[iid]
        issue.state, issue.closed_at = "closed", self.now()
        issue.updated_at = issue.closed_at
        return issue

    def reopen_issue(self, project: Project | int | str, iid: int) -> Issue:
        """Reopen a closed issue."""
        issue = self.project(project).issues[iid]
        issue.state, issue.closed_at, issue.updated_at = "opened", None, self.now()
        return issue


def _exclusive(labels: Sequence[str]) -> list[str]:
    """Labels with one per `scope::` (the last given), others in order."""
    kept: dict[str, str] = {}
    for name in labels:
        scope = name.rsplit("::", 1)[0] if "::" in name else name
        kept.pop(scope, None)
        kept[scope] = name
    return list(kept.values())


# ---------------------------------------------------------------- API handlers


def h_issues(ctx: Ctx) -> web.Response:
    """GET /projects/:id/issues with GitLab's filters, newest first by default."""
    p = ctx.project()
    wanted = _issue_filter(ctx)
    items = [issue for issue in p.issues.values() if wanted(issue)]
    keys = {"created_at": lambda i: (i.created_at, i.id),
            "updated_at": lambda i: (i.updated_at, i.id), "title": lambda i: (i.title, i.id)}
    return paginate(ctx, order(items, ctx, keys, "created_at"), lambda i: ctx.view.issue(i, p))


def _issue_filter(ctx: Ctx) -> Callable[[Issue], bool]:
    """A predicate for the issue list filters (validated once, up front)."""
    state = ctx.choice("state", ISSUE_STATES, "all")
    kind = ctx.choice("issue_type", ISSUE_TYPES)
    labels = [name for name in (ctx.arg("labels") or "").split(",") if name]
    milestone, search = ctx.arg("milestone"), ctx.arg("search")
    iids = {int(i) for i in ctx.request.query.getall("iids[]", []) if i.isdigit()}

    def wanted(issue: Issue) -> bool:
        """Whether the issue passes every filter."""
        return all((
            state == "all" or issue.state == state,
            kind is None or issue.issue_type == kind,
            _labels_match(issue, labels),
            _milestone_matches(issue, milestone),
            not iids or issue.iid in iids,
            search is None or search.lower() in issue.title.lower(),
        ))

    return wanted


def _labels_match(issue: Issue, labels: list[str]) -> bool:
    """Every label named (`None`: no labels at all, `Any`: at least one)."""
    if labels == ["None"]:
        return not issue.labels
    if labels == ["Any"]:
        return bool(issue.labels)
    return all(name in issue.labels for name in labels)


def _milestone_matches(issue: Issue, title: str | None) -> bool:
    """The milestone by title (`None`: without one, `Any`: with one)."""
    if title is None:
        return True
    if title == "None":
        return issue.milestone is None
    if title == "Any":
        return issue.milestone is not None
    return issue.milestone is not None and issue.milestone.title == title


def h_issue(ctx: Ctx) -> web.Response:
    """GET /projects/:id/issues/:iid."""
    p = ctx.project()
    issue = p.issues.get(int(ctx.params["iid"]))
    if issue is None:
        raise not_found()
    return json_answer(ctx.view.issue(issue, p))


def h_labels(ctx: Ctx) -> web.Response:
    """GET /projects/:id/labels (search by part of the name), by name."""
    p = ctx.project()
    search = ctx.arg("search")
    items = sorted((label for label in p.labels.values()
                    if search is None or search.lower() in label.name.lower()),
                   key=lambda label: label.name.lower())
    return paginate(ctx, items, ctx.view.label)


def h_milestones(ctx: Ctx) -> web.Response:
    """GET /projects/:id/milestones (title: exactly; state; search), newest due first."""
    p = ctx.project()
    title, search = ctx.arg("title"), ctx.arg("search")
    state = ctx.choice("state", ("active", "closed"))
    items = [m for m in p.milestones.values()
             if (title is None or m.title == title) and (state is None or m.state == state)
             and (search is None or search.lower() in m.title.lower())]
    return paginate(ctx, sorted(items, key=lambda m: -m.id), lambda m: ctx.view.milestone(m, p))
