"""Release notes: the merge requests and commits a release brings; GitLab markdown; publishing."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.deploys import Deployer, Shipped, running
from bot.gitlab import Commit, GitLabClient, GitLabError, MergeRequest
from bot.plan import PlanField
from bot.transition import Deps, check_event, detail_of, transition, type_limits
from bot.workflow import Actor, Ctx, Event, Refused, Report
from storage import queries as q
from storage.models import Release, TestReport

# A first release has no previous tag to compare with; this many recent commits stand in.
FIRST_RELEASE_COMMITS = 20

# (heading, label kinds) in the order the sections are shown; unmatched MRs go to "Other".
_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Features", frozenset({"feature", "enhancement"})),
    ("Fixes", frozenset({"bug", "fix"})),
)
_OTHER_CHANGES = "Other changes"
OTHER_COMMITS = "Other commits"
KNOWN_ISSUES = "Known issues"
IMPACT = "Impact"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~])")


@dataclass(frozen=True)
class KnownIssues:
    """The bugs a release ships with, by its test report, and who accepted those over the limit."""

    bugs: Mapping[str, int]  # open bugs by severity
    failures: tuple[str, ...] = ()  # beyond the go-live standard, e.g. '1 open B bugs (limit 0)'
    accepted_by: str | None = None  # the executive who accepted them (a Slack user ID)
    reason: str | None = None

    @property
    def open_bugs(self) -> str | None:
        """`A 0 · B 1 · C 2`, or None when the report lists no open bugs."""
        if not any(self.bugs.values()):
            return None
        return " · ".join(f"{sev} {self.bugs.get(sev, 0)}" for sev in "ABC")


@dataclass(frozen=True)
class ReleaseNotes:
    """What a release brings: from_ref is None for a project's first release.

    The refs are what GitLab compares (commits once known); the labels are what people read.
    """

    project: str
    from_ref: str | None
    to_ref: str
    merge_requests: list[MergeRequest]
    commits: list[Commit]
    from_label: str | None = None  # e.g. `REL-3 release/REL-3 @ 3f2a9c1`, what was live
    to_label: str | None = None  # e.g. `v1.1.0 @ 9e1d2b4`, the pinned commit
    known_issues: KnownIssues | None = None  # None: no test report to tell
    impact: str | None = None  # the go-live plan's impact scope

    @property
    def shown_from(self) -> str | None:
        """Where the notes start, as people read it."""
        return self.from_label or self.from_ref

    @property
    def shown_to(self) -> str:
        """Where they end."""
        return self.to_label or self.to_ref

    def sections(self) -> list[tuple[str, list[MergeRequest]]]:
        """Non-empty MR sections: features, fixes, then other changes."""
        groups: dict[str, list[MergeRequest]] = {}
        for mr in self.merge_requests:
            groups.setdefault(_kind(mr), []).append(mr)
        order = [heading for heading, _ in _KINDS] + [_OTHER_CHANGES]
        return [(heading, groups[heading]) for heading in order if heading in groups]

    def other_commits(self) -> list[Commit]:
        """Mainline commits that no merge request accounts for (direct pushes)."""
        covered = {sha for mr in self.merge_requests for sha in mr.commit_shas}
        return [c for c in _mainline(self.commits) if c.sha not in covered]

    def render_markdown(self) -> str:
        """GitLab markdown for a Release description."""
        span = f"Changes since {self.shown_from}." if self.from_ref else (
            "First release: the most recent changes.")
        lines = [f"## {_md(self.project)} {_md(self.shown_to)}", "", _md(span)]
        for heading, mrs in self.sections():
            lines += ["", f"### {heading}"]
            lines += [f"- {_md(mr.title)} ([!{mr.iid}]({mr.web_url}))" for mr in mrs]
        if others := self.other_commits():
            lines += ["", f"### {OTHER_COMMITS}"]
            lines += [f"- {_md(c.title)} ([{c.short_id}]({c.web_url}))" for c in others]
        if not self.merge_requests and not others:
            lines += ["", "No changes."]
        if self.known_issues is not None:
            lines += ["", f"### {KNOWN_ISSUES}", *(f"- {_md(t)}" for t in self.issue_lines())]
        if self.impact:
            lines += ["", f"### {IMPACT}", _md(self.impact)]
        return "\n".join(lines) + "\n"

    def issue_lines(self) -> list[str]:
        """The known issues in words (the executive by Slack user ID)."""
        issues = self.known_issues
        if issues is None:
            return []
        lines = [f"Open bugs: {issues.open_bugs}"] if issues.open_bugs else ["None known."]
        if issues.accepted_by:
            over = f" ({'; '.join(issues.failures)})" if issues.failures else ""
            lines.append(f"Shipped with known issues{over}, accepted by "
                         f"{issues.accepted_by}: {issues.reason or 'no reason given'}")
        return lines


async def build_notes(
    client: GitLabClient, project: str | int, from_ref: str | None, to_ref: str,
) -> ReleaseNotes:
    """Notes for from_ref..to_ref: one compare, then the matching merged MRs.

    With no from_ref (a first release) the notes cover the newest FIRST_RELEASE_COMMITS
    commits reachable from to_ref: a single commits-list request, where the whole history
    would cost a request per page and tell a first release's readers little.
    """
    if from_ref is None:
        commits = await client.recent_commits(project, to_ref, limit=FIRST_RELEASE_COMMITS)
    else:
        commits = await client.compare(project, from_ref, to_ref)
    merge_requests = await client.merge_requests_for(project, commits)
    return ReleaseNotes(str(project), from_ref, to_ref, merge_requests, commits)


def _kind(mr: MergeRequest) -> str:
    """The section an MR belongs in; scoped labels (type::bug) count by their last part."""
    kinds = {label.lower().rsplit("::", 1)[-1].strip() for label in mr.labels}
    for heading, labels in _KINDS:
        if kinds & labels:
            return heading
    return _OTHER_CHANGES


def _mainline(commits: list[Commit]) -> list[Commit]:
    """The first-parent chain from the newest commit, so MR branch commits drop out.

    Without parent information, or with no single head, every commit counts.
    """
    in_range = {c.sha: c for c in commits}
    if not any(c.parent_ids for c in commits):
        return commits
    parents = {sha for c in commits for sha in c.parent_ids}
    heads = [c for c in commits if c.sha not in parents]
    if len(heads) != 1:
        return commits
    chain: set[str] = set()
    commit: Commit | None = heads[0]
    while commit is not None and commit.sha not in chain:
        chain.add(commit.sha)
        commit = in_range.get(commit.parent_ids[0]) if commit.parent_ids else None
    return [c for c in commits if c.sha in chain]


def _md(text: str) -> str:
    """Backslash-escape markdown so a title cannot restyle or link the notes."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


async def notes_for(deps: Deps, deployer: Deployer, *, release_id: int) -> ReleaseNotes:
    """A release's notes: from what was live in production before it to its pinned commit."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        before = await live_before(session, deps, release)
        issues = known_issues(await q.latest_report(session, release), release,
                              type_limits(deps, release))
    project = deps.policy.project(release.project)
    if before is _UNASKED:  # the bot has no record: GitLab may know what it last deployed
        before = await _gitlab_live(deployer.gitlab, project.gitlab, project.production)
    to = release.pinned_sha or release.ref
    if before is not None and (before.sha or before.ref) == to:
        before = None  # GitLab's newest deployment is this release's own
    start = before and (before.sha or before.ref)
    notes = await build_notes(deployer.gitlab, project.gitlab, start, to)
    pin = f" @ {release.pinned_sha[:7]}" if release.pinned_sha else ""
    return replace(notes, to_ref=release.ref, from_label=before and shipped_label(before),
                   to_label=f"{release.ref}{pin}", known_issues=issues,
                   impact=plan_impact(release))


_UNASKED = Shipped(None)  # the bot's records don't say; ask GitLab


async def live_before(session: AsyncSession, deps: Deps, release: Release) -> Shipped | None:
    """What ran in production before this release: its own deploy's record, else what runs now.

    None: nothing ran there (a first release); _UNASKED: the bot has no record of it.
    """
    production = deps.policy.project(release.project).production
    ours = [d for d in await q.deployments_of(session, release.id)
            if d.environment == production and not d.rollback]
    if ours:
        known = [d for d in ours if d.previous_sha or d.previous_ref]
        if not known:
            return None
        dep = known[-1]
        return Shipped(dep.previous_ref, dep.previous_sha, dep.previous_release_id)
    live = running(await q.live_deployment(session, release.project, production))
    return live if live is not None and live.release_id != release.id else _UNASKED


async def _gitlab_live(gitlab: GitLabClient, project: str | int,
                       production: str) -> Shipped | None:
    """GitLab's newest successful production deployment, or None when it has none."""
    found = await gitlab.last_deployment(project, production)
    return Shipped(found[1], found[0]) if found else None


def shipped_label(shipped: Shipped) -> str:
    """`REL-3 release/REL-3 @ 3f2a9c1`, `v1.0.0 @ 3f2a9c1` or `3f2a9c1`."""
    at = shipped.sha[:7] if shipped.sha else ""
    label = f"{shipped.ref} @ {at}" if shipped.ref and at else shipped.ref or at
    return f"REL-{shipped.release_id} {label}" if shipped.release_id else label


def known_issues(report: TestReport | None, release: Release,
                 limits: dict[str, int]) -> KnownIssues | None:
    """The report's open bugs, and the executive's acceptance of those over the standard."""
    if report is None:
        return None
    bugs = {"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c}
    failures = tuple(Report(bugs=bugs, limits=limits).failures)
    return KnownIssues(bugs, failures, release.risk_accepted_by, release.risk_reason)


def plan_impact(release: Release) -> str | None:
    """The impact scope of the release's go-live plan, if it states one."""
    return (release.plan.get(PlanField.IMPACT) or "").strip() or None


@dataclass(frozen=True)
class NotesUnavailable:
    """GitLab could not be asked; its text is untrusted, so the renderer escapes it."""

    reason: str

    @property
    def sentence(self) -> str:
        """What to tell people."""
        return f"Release notes are not available: {self.reason}"


NotesRenderer = Callable[[ReleaseNotes | NotesUnavailable], str]


async def notes_text(deps: Deps, deployer: Deployer, *, release_id: int,
                     render: NotesRenderer) -> str:
    """The notes, or why there are none, as `render` writes them."""
    try:
        return render(await notes_for(deps, deployer, release_id=release_id))
    except GitLabError as exc:
        return render(NotesUnavailable(str(exc)))


@dataclass(frozen=True)
class Published:
    """A tag whose notes are now a GitLab Release, and where to read it."""

    ref: str
    url: str


async def publish_notes(deps: Deps, deployer: Deployer, *, release_id: int,
                        actor: Actor) -> Published:
    """Publish a deployed release's notes as a GitLab Release (tags only; release manager).

    The role and the state are checked before GitLab is asked; the publication is audited.
    """
    await check_event(deps, release_id=release_id, event=Event.PUBLISH_NOTES, actor=actor)
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
    if release is None:
        raise Refused(f"There is no release REL-{release_id}.")
    project = deps.policy.project(release.project).gitlab
    try:
        if not await deployer.gitlab.tag_exists(project, release.ref):
            raise Refused(f"`{release.ref}` is not a tag; only tags can be published as releases.")
        notes = await notes_for(deps, deployer, release_id=release_id)
        url = await deployer.gitlab.create_release(
            project, release.ref, f"{release.rel_id} {release.title[:200]}",
            notes.render_markdown())
    except GitLabError as exc:
        raise Refused(str(exc)) from None
    await transition(deps, release_id, Event.PUBLISH_NOTES, Ctx(actor),
                     detail_of({"tag": release.ref, "url": url}))
    return Published(release.ref, url)
