"""Merge-back: a later release of a project must contain every hotfix shipped to its production.

GitLab is asked outside any transaction; the answer is stored on the release with the commit
and the hotfixes it was checked against, so the workflow's facts (and the card) read it there
and know when it no longer covers what shipped since.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.gitlab import GitLabClient, GitLabError
from bot.policy import MergeBack, Policy, ReleaseType
from bot.workflow import LIVE, Refused, State
from storage import queries as q
from storage.models import Release

SHIPPED = (*LIVE, State.CLOSED)  # a hotfix in production now, or closed after it went live


@dataclass(frozen=True)
class Hotfix:
    """A hotfix release that reached production, and the commit it shipped."""

    release_id: int
    ref: str
    sha: str

    @property
    def label(self) -> str:
        """`REL-5 (`hotfix/1.2.1` @ abc1234)`."""
        return f"REL-{self.release_id} (`{self.ref}` @ {self.sha[:7]})"

    def stored(self) -> dict[str, Any]:
        """As kept in the release's merge_back column."""
        return {"id": self.release_id, "ref": self.ref, "sha": self.sha}


def enforced(policy: Policy, release: Release) -> bool:
    """Whether this release's sign-off waits for merged hotfixes (hotfixes themselves don't)."""
    return (policy.merge_back is MergeBack.ENFORCE
            and release.type != ReleaseType.HOTFIX.value and release.project in policy.projects)


async def shipped_hotfixes(session: AsyncSession, policy: Policy,
                           project: str) -> list[Hotfix]:
    """The project's hotfixes whose current revision deployed to production and still counts."""
    production = policy.project(project).production
    found = await q.deployed_releases(session, project, production, states=SHIPPED)
    return [Hotfix(r.id, r.ref, r.pinned_sha or r.ref) for r in sorted(found, key=_id)
            if r.type == ReleaseType.HOTFIX.value]


def _id(release: Release) -> int:
    """Sort key: the release number."""
    return release.id or 0


def current_pin(release: Release) -> str | None:
    """The commit this revision was pinned to, if it has one."""
    if release.pinned_sha and release.pinned_revision == release.revision:
        return release.pinned_sha
    return None


def stored_missing(release: Release, hotfixes: list[Hotfix]) -> tuple[bool, tuple[str, ...]]:
    """(checked, labels of hotfixes lacking) from the stored check of the pinned commit.

    Not checked when the check was of another commit or some shipped hotfix is not in it.
    """
    stored = release.merge_back or {}
    if stored.get("sha") != current_pin(release):
        return False, ()
    checked = set(stored.get("checked") or [])
    if any(h.release_id not in checked for h in hotfixes):
        return False, ()
    live = {h.release_id for h in hotfixes}
    return True, tuple(_label(m) for m in stored.get("missing") or [] if m.get("id") in live)


def missing_labels(release: Release) -> list[str]:
    """The hotfixes the pinned commit lacked when last checked (for the card)."""
    stored = release.merge_back or {}
    if not current_pin(release) or stored.get("sha") != current_pin(release):
        return []
    return [_label(m) for m in stored.get("missing") or []]


def _label(stored: dict[str, Any]) -> str:
    """A stored hotfix as refusals name it."""
    return Hotfix(int(stored["id"]), str(stored["ref"]), str(stored["sha"])).label


async def check(gitlab: GitLabClient, policy: Policy, project_key: str, rel_id: str, sha: str,
                hotfixes: list[Hotfix]) -> dict[str, Any]:
    """Ask GitLab which hotfixes `sha` of release `rel_id` lacks; the value to store.

    Never inside a transaction.
    """
    project = policy.project(project_key).gitlab

    async def lacks(fix: Hotfix) -> bool:
        if fix.sha == sha:
            return False
        try:
            return not await gitlab.is_ancestor(project, fix.sha, sha)
        except GitLabError as exc:
            if exc.status == 404:  # no merge base: unrelated histories, so certainly lacking
                return True
            raise Refused(f"GitLab can't tell whether {rel_id} contains hotfix "
                          f"REL-{fix.release_id}: {exc}") from None

    answers = await asyncio.gather(*(lacks(fix) for fix in hotfixes))
    return {"sha": sha, "checked": [h.release_id for h in hotfixes],
            "missing": [h.stored() for h, lack in zip(hotfixes, answers, strict=True) if lack]}
