"""Merge-back: a later release of a project must contain every hotfix shipped to its production.

GitLab is asked outside any transaction; the answer is stored on the release with the commit
and the hotfixes it was checked against, so the workflow's facts (and the card) read it there
and know when it no longer covers what shipped since.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.gitlab import GitLabClient, GitLabError
from bot.policy import MergeBack, Policy, ReleaseType
from bot.workflow import LIVE, Refused, State
from storage import queries as q
from storage.models import Release, ReleaseComponent

SHIPPED = (*LIVE, State.CLOSED)  # a hotfix in production now, or closed after it went live


@dataclass(frozen=True)
class Hotfix:
    """A hotfix release that reached a project's production, and the commit it shipped there."""

    release_id: int
    ref: str
    sha: str
    project: str = ""  # the project it shipped to (a hotfix train may ship to several)

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
                           projects: Sequence[str]) -> list[Hotfix]:
    """The projects' hotfixes whose current revision deployed to production and still counts."""
    found: list[Hotfix] = []
    for project in projects:
        if project not in policy.projects:
            continue
        production = policy.project(project).production
        shipped = await q.deployed_releases(session, project, production, states=SHIPPED)
        for r in sorted(shipped, key=_id):
            if r.type == ReleaseType.HOTFIX.value:
                found.append(await _shipped_to(session, r, project))
    return found


async def _shipped_to(session: AsyncSession, release: Release, project: str) -> Hotfix:
    """A hotfix release as shipped to one project: that component's ref and commit."""
    comp = next(c for c in await q.components_of(session, release) if c.project == project)
    return Hotfix(release.id or 0, comp.ref, comp.pinned_sha or comp.ref, project)


def _id(release: Release) -> int:
    """Sort key: the release number."""
    return release.id or 0


def current_pins(release: Release, components: Sequence[ReleaseComponent]) -> dict[str, str]:
    """Project → the commit this revision was pinned to; empty before its pin (no components
    given: the release row's own)."""
    if not (release.pinned_sha and release.pinned_revision == release.revision):
        return {}
    if not components:
        return {release.project: release.pinned_sha}
    return {c.project: c.pinned_sha for c in components if c.pinned_sha}


def pin_key(pins: dict[str, str]) -> str | None:
    """What a stored check is of: the one commit, or each project's (None: nothing pinned)."""
    if len(pins) <= 1:
        return next(iter(pins.values()), None)
    return ",".join(f"{project}:{sha}" for project, sha in pins.items())


def stored_missing(release: Release, pins: dict[str, str],
                   hotfixes: list[Hotfix]) -> tuple[bool, tuple[str, ...]]:
    """(checked, labels of hotfixes lacking) from the stored check of the pinned commits.

    Not checked when the check was of other commits or some shipped hotfix is not in it.
    """
    stored = release.merge_back or {}
    if stored.get("sha") != pin_key(pins):
        return False, ()
    checked = set(stored.get("checked") or [])
    if any(h.release_id not in checked for h in hotfixes):
        return False, ()
    live = {h.release_id for h in hotfixes}
    return True, tuple(_label(m) for m in stored.get("missing") or [] if m.get("id") in live)


def missing_labels(release: Release, components: Sequence[ReleaseComponent]) -> list[str]:
    """The hotfixes the pinned commits lacked when last checked (for the card)."""
    stored = release.merge_back or {}
    key = pin_key(current_pins(release, components))
    if key is None or stored.get("sha") != key:
        return []
    return [_label(m) for m in stored.get("missing") or []]


def _label(stored: dict[str, Any]) -> str:
    """A stored hotfix as refusals name it."""
    return Hotfix(int(stored["id"]), str(stored["ref"]), str(stored["sha"])).label


async def check(gitlab: GitLabClient, policy: Policy, pins: dict[str, str], rel_id: str,
                hotfixes: list[Hotfix]) -> dict[str, Any]:
    """Ask GitLab which hotfixes release `rel_id`'s pinned commits lack; the value to store.

    Each hotfix is looked for in the commit pinned for the project it shipped to. Never inside
    a transaction.
    """

    async def lacks(fix: Hotfix) -> bool:
        sha = pins[fix.project]
        if fix.sha == sha:
            return False
        try:
            return not await gitlab.is_ancestor(policy.project(fix.project).gitlab, fix.sha, sha)
        except GitLabError as exc:
            if exc.status == 404:  # no merge base: unrelated histories, so certainly lacking
                return True
            raise Refused(f"GitLab can't tell whether {rel_id} contains hotfix "
                          f"REL-{fix.release_id}: {exc}") from None

    mine = [h for h in hotfixes if h.project in pins]
    answers = await asyncio.gather(*(lacks(fix) for fix in mine))
    return {"sha": pin_key(pins), "checked": sorted({h.release_id for h in mine}),
            "missing": [h.stored() for h, lack in zip(mine, answers, strict=True) if lack]}
