"""Release notes: the merge requests and commits a release brings, as GitLab and Slack text."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.gitlab import Commit, GitLabClient, GitLabError, MergeRequest
from bot.transition import Deps
from bot.workflow import Refused
from storage import queries as q

# A first release has no previous tag to compare with; this many recent commits stand in.
FIRST_RELEASE_COMMITS = 20

# (heading, label kinds) in the order the sections are shown; unmatched MRs go to "Other".
_KINDS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Features", frozenset({"feature", "enhancement"})),
    ("Fixes", frozenset({"bug", "fix"})),
)
_OTHER_CHANGES = "Other changes"
_OTHER_COMMITS = "Other commits"
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
            lines += ["", f"### {_OTHER_COMMITS}"]
            lines += [f"- {_md(c.title)} ([{c.short_id}]({c.web_url}))" for c in others]
        if not self.merge_requests and not others:
            lines += ["", "No changes."]
        return "\n".join(lines) + "\n"

    def render_slack(self, limit: int = 2900) -> str:
        """Slack mrkdwn, user text escaped, clipped to limit characters with '…and N more'."""
        lines = self._slack_lines()
        return _clip(lines, limit)

    def _slack_lines(self) -> list[tuple[str, bool]]:
        """Each line and whether it is an item (a heading is not)."""
        span = f"{_slack(self.from_ref)} → " if self.from_ref else ""
        first = "" if self.from_ref else " (first release)"
        lines = [(f"*Release notes: {_slack(self.project)} {span}{_slack(self.to_ref)}*{first}",
                  False)]
        for heading, mrs in self.sections():
            lines.append((f"*{heading}*", False))
            lines += [(f"• <{_url(mr.web_url)}|!{mr.iid} {_slack(mr.title)}>", True)
                      for mr in mrs]
        if others := self.other_commits():
            lines.append((f"*{_OTHER_COMMITS}*", False))
            lines += [(f"• <{_url(c.web_url)}|{_slack(c.short_id)}> {_slack(c.title)}", True)
                      for c in others]
        if not self.merge_requests and not others:
            lines.append(("No changes.", False))
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


def _clip(lines: list[tuple[str, bool]], limit: int) -> str:
    """Join lines, or as many as fit with room for '…and N more' about the items left out."""
    text = "\n".join(line for line, _ in lines)
    if len(text) <= limit:
        return text
    total = sum(1 for _, item in lines if item)
    reserve = len(f"\n…and {total} more")
    kept: list[tuple[str, bool]] = []
    length = -1  # no newline before the first line
    for line, item in lines:
        if length + 1 + len(line) + reserve > limit:
            break
        kept.append((line, item))
        length += 1 + len(line)
    while len(kept) > 1 and not kept[-1][1]:
        kept.pop()  # a heading whose items were all cut would mislead
    left = total - sum(1 for _, item in kept if item)
    return "\n".join([*(line for line, _ in kept), f"…and {left} more"])


def _md(text: str) -> str:
    """Backslash-escape markdown so a title cannot restyle or link the notes."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _slack(text: str) -> str:
    """Escape Slack's control characters so user text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _url(url: str) -> str:
    """A URL safe inside <url|label>: the delimiters percent-encoded."""
    return url.replace("|", "%7C").replace("<", "%3C").replace(">", "%3E")


async def notes_for_release(deps: Deps, client: GitLabClient, release_id: int) -> ReleaseNotes:
    """A release's notes since the project's previous release that reached production."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        previous = await q.previous_release_ref(session, release)
    project = deps.policy.project(release.project).gitlab
    return await build_notes(client, project, previous, release.ref)


async def release_notes_text(deps: Deps, client: GitLabClient, release_id: int) -> str:
    """The notes as Slack text; a plain sentence when GitLab can't be asked."""
    try:
        return (await notes_for_release(deps, client, release_id)).render_slack()
    except GitLabError as exc:
        return f"Release notes are not available: {exc}"
