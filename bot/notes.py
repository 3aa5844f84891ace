"""Release notes: the merge requests and commits a release brings; GitLab markdown; publishing."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.deploys import Deployer, Shipped, running
from bot.gitlab import Commit, GitLabClient, GitLabError, MergeRequest
from bot.plan import PlanField
from bot.transition import Deps, check_event, detail_of, transition, type_limits
from bot.workflow import Actor, Ctx, Event, Refused, Report
from storage import queries as q
from storage.models import Release, ReleaseComponent, TestReport

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
    # What online verification found that an executive let the release keep: found, by, why.
    online: tuple[str, str, str] | None = None

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
        if issues.online:
            found, by, why = issues.online
            lines.append(f"Found in online verification: {found or 'no note'}; kept live as it "
                         f"is by {by}: {why}")
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


async def notes_for(deps: Deps, deployer: Deployer, *,
                    release_id: int) -> list[ReleaseNotes | NotesUnavailable]:
    """A release's notes, one per component in deploy order: from what was live in that
    project's production before the release to its pinned commit. The known issues and the
    impact, the release's own, go with the first."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        comps = await q.components_of(session, release)
        befores = [await live_before(session, deps, release, c.project) for c in comps]
        issues = known_issues(await q.latest_report(session, release), release,
                              type_limits(deps, release))
    found: list[ReleaseNotes | NotesUnavailable] = []
    for i, (comp, before) in enumerate(zip(comps, befores, strict=True)):
        try:
            notes = await _component_notes(deployer, deps, comp, before)
        except GitLabError as exc:
            found.append(NotesUnavailable(f"{comp.project}: {exc}" if len(comps) > 1
                                          else str(exc)))
            continue
        found.append(notes if i else replace(notes, known_issues=issues,
                                             impact=plan_impact(release)))
    return found


async def _component_notes(deployer: Deployer, deps: Deps, comp: ReleaseComponent,
                           before: Shipped | None) -> ReleaseNotes:
    """One component's changes since what ran in its production before."""
    project = deps.policy.project(comp.project)
    if before is _UNASKED:  # the bot has no record: GitLab may know what it last deployed
        before = await _gitlab_live(deployer.gitlab, project.gitlab, project.production)
    to = comp.pinned_sha or comp.ref
    if before is not None and (before.sha or before.ref) == to:
        before = None  # GitLab's newest deployment is this release's own
    start = before and (before.sha or before.ref)
    notes = await build_notes(deployer.gitlab, project.gitlab, start, to)
    pin = f" @ {comp.pinned_sha[:7]}" if comp.pinned_sha else ""
    return replace(notes, to_ref=comp.ref, from_label=before and shipped_label(before),
                   to_label=f"{comp.ref}{pin}")


_UNASKED = Shipped(None)  # the bot's records don't say; ask GitLab


async def live_before(session: AsyncSession, deps: Deps, release: Release,
                      project: str) -> Shipped | None:
    """What ran in a project's production before this release: its own deploy's record, else
    what runs now. None: nothing ran there (a first release); _UNASKED: the bot has no record.
    """
    production = deps.policy.project(project).production
    ours = [d for d in await q.deployments_of(session, release.id)
            if d.environment == production and not d.rollback and d.project == project]
    if ours:
        known = [d for d in ours if d.previous_sha or d.previous_ref]
        if not known:
            return None
        dep = known[-1]
        return Shipped(dep.previous_ref, dep.previous_sha, dep.previous_release_id)
    live = running(await q.live_deployment(session, project, production))
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
    online = None
    if release.decision == "accept" and release.decided_revision == release.revision:
        online = (release.verification_note or "", release.decided_by or "",
                  release.decision_reason or "")
    if report is None:
        return KnownIssues({}, online=online) if online else None
    bugs = {"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c}
    failures = tuple(Report(bugs=bugs, limits=limits).failures)
    return KnownIssues(bugs, failures, release.risk_accepted_by, release.risk_reason, online)


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


class NotesRenderer(Protocol):
    """Notes (or why there are none) as text of at most `limit` characters."""

    def __call__(self, notes: ReleaseNotes | NotesUnavailable, limit: int = ...) -> str:
        """The text."""
        ...


NOTES_LIMIT = 2900  # one message's worth, shared by a train's components


async def notes_text(deps: Deps, deployer: Deployer, *, release_id: int,
                     render: NotesRenderer) -> str:
    """The notes, or why there are none, as `render` writes them: a train's, one component
    after the other in one text, each within its share of one message."""
    found = await notes_for(deps, deployer, release_id=release_id)
    if len(found) == 1:
        return render(found[0])
    share = NOTES_LIMIT // len(found) - 2
    return "\n\n".join(render(notes, limit=share) for notes in found)


@dataclass(frozen=True)
class Published:
    """A tag whose notes are now a GitLab Release, and where to read it."""

    ref: str
    url: str
    project: str = ""  # the component's project (a train publishes one release per tag)


async def publish_notes(deps: Deps, deployer: Deployer, *, release_id: int,
                        actor: Actor) -> list[Published]:
    """Publish a deployed release's notes as GitLab Releases (tags only; release manager):
    each component whose ref is a tag gets one in its project.

    The role and the state are checked before GitLab is asked; what was published is audited,
    also when GitLab refuses a later component.
    """
    await check_event(deps, release_id=release_id, event=Event.PUBLISH_NOTES, actor=actor)
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        comps = await q.components_of(session, release)
    done: list[Published] = []
    failure: Refused | None = None
    try:
        notes = await notes_for(deps, deployer, release_id=release_id)
        for comp, note in zip(comps, notes, strict=True):
            if found := await _publish_one(deps, deployer, release, comp, note, len(comps) > 1):
                done.append(found)
    except Refused as exc:
        failure = exc
    if done:
        detail: dict[str, Any] = {"tag": done[0].ref, "url": done[0].url}
        if len(comps) > 1:
            detail["published"] = [{"project": p.project, "tag": p.ref, "url": p.url}
                                   for p in done]
        await transition(deps, release_id, Event.PUBLISH_NOTES, Ctx(actor), detail_of(detail))
    if failure is not None:
        raise failure
    if not done:
        raise Refused(f"None of {release.rel_id}'s refs is a tag; only tags can be published "
                      "as releases.")
    return done


async def _publish_one(deps: Deps, deployer: Deployer, release: Release,
                       comp: ReleaseComponent, notes: ReleaseNotes | NotesUnavailable,
                       train: bool) -> Published | None:
    """One component's notes as a GitLab Release of its tag (a train skips refs not tags)."""
    project = deps.policy.project(comp.project).gitlab
    try:
        if not await deployer.gitlab.tag_exists(project, comp.ref):
            if train:
                return None
            raise Refused(f"`{comp.ref}` is not a tag; only tags can be published as releases.")
        if isinstance(notes, NotesUnavailable):
            raise Refused(notes.sentence)
        url = await deployer.gitlab.create_release(
            project, comp.ref, f"{release.rel_id} {release.title[:200]}",
            notes.render_markdown())
    except GitLabError as exc:
        raise Refused(f"{comp.project}: {exc}" if train else str(exc)) from None
    return Published(comp.ref, url, comp.project)
