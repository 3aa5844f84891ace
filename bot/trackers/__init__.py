"""Bug trackers: each project's open bugs by severity, counted by GitLab issues or ZenTao.

The tracker, not a person, says how many A, B and C bugs are open; `bot.bugs` takes these counts
to the test report and recounts them before sign-off completes and before production.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

SEVERITIES = ("A", "B", "C")


class TrackerError(Exception):
    """A tracker could not be read; the message is one sentence fit to show people.

    It never holds a password or token: those stay in the request headers and body.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        """Keep how long the tracker asked us to wait, when it said (a 429's Retry-After)."""
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Bug:
    """One open bug: how the tracker names it, its go-live severity, title and link."""

    id: str  # "#12": an issue's iid, or a ZenTao bug ID
    severity: str  # A, B or C
    title: str
    url: str

    def stored(self) -> dict[str, str]:
        """As the audit trail keeps a bug that mattered."""
        return {"id": self.id, "severity": self.severity, "title": self.title[:200],
                "url": self.url}


@dataclass(frozen=True)
class BugCount:
    """What a tracker said at one moment: the open bugs of a release, by severity."""

    source: str  # "GitLab issues" or "ZenTao"
    where: str  # "milestone v1.2.0", "label REL-4", "product 3"
    url: str  # the tracker's own list of these bugs, for people to follow
    read_at: datetime
    bugs: tuple[Bug, ...]

    @property
    def counts(self) -> dict[str, int]:
        """Open bugs per severity."""
        return {sev: sum(b.severity == sev for b in self.bugs) for sev in SEVERITIES}

    @property
    def ids(self) -> dict[str, list[str]]:
        """The bugs' IDs per severity, as stored."""
        return {sev: [b.id for b in self.bugs if b.severity == sev] for sev in SEVERITIES}

    def new_since(self, known: Collection[str]) -> list[Bug]:
        """The bugs open now that were not among `known`."""
        return [b for b in self.bugs if b.id not in known]

    def summary(self) -> dict[str, Any]:
        """What the audit trail and the thread say of this count."""
        return {"source": self.source, "where": self.where, "url": self.url,
                "read_at": self.read_at.isoformat(), "counts": self.counts}


@dataclass(frozen=True)
class Scope:
    """Which bugs are a release's: its project, its ID and the milestone its version names."""

    project: str  # the policy's project key
    rel_id: str  # REL-42: a GitLab label, with scope: label
    milestone: str  # the release's version, else its ref: a GitLab milestone's title


class Tracker(Protocol):
    """Counts one project's open bugs."""

    source: str

    async def count(self, scope: Scope) -> BugCount:
        """The release's open bugs now; TrackerError when the tracker can't say."""
        ...
