"""Release notes: the merge requests and commits a release brings; GitLab markdown; publishing."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from bot.deploys import Deployer
from bot.gitlab import Commit, GitLabClient, GitLabError, MergeRequest
from bot.transition import Deps, check_event, detail_of, transition
from bot.workflow import Actor, Ctx, Event, Refused
from storage import queries as q

# A first release has no previous tag to compare with; this many recent commits stand in.
FIRST_RELEASE_COMMITS = 20

# (heading, label kinds) in the order the sections are shown; unmatched MRs go to "Other".
_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Features", frozenset({"feature", "enhancement"})),
    ("Fixes", frozenset({"bug", "fix"})),
)
_OTHER_CHANGES = "Other changes"
OTHER_COMMITS = "Other commits"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~])")


@dataclass(frozen=True)
class ReleaseNotes:
    """What a release brings: from_ref is None for a project's first release."""

    project: str
    from_ref: str | None
    to_ref: str
    merge_requests: list[MergeRequest]
    commits: list[Commit]

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
        span = f"Changes since {self.from_ref}." if self.from_ref else (
            "First release: the most recent changes.")
        lines = [f"## {_md(self.project)} {_md(self.to_ref)}", "", _md(span)]
        for heading, mrs in self.sections():
            lines += ["", f"### {heading}"]
            lines += [f"- {_md(mr.title)} ([!{mr.iid}]({mr.web_url}))" for mr in mrs]
        if others := self.other_commits():
            lines += ["", f"### {OTHER_COMMITS}"]
            lines += [f"- {_md(c.title)} ([{c.short_id}]({c.web_url}))" for c in others]
        if not self.merge_requests and not others:
            lines += ["", "No changes."]
        return "\n".join(lines) + "\n"


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
    """A release's notes since the project's previous release that reached production."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        previous = await q.previous_release_ref(session, release)
    project = deps.policy.project(release.project).gitlab
    return await build_notes(deployer.gitlab, project, previous, release.ref)


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
