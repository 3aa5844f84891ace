"""The tracker of each project the policy gives one, built once from the policy and settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from pydantic import SecretStr

from bot.gitlab import GitLabClient
from bot.policy import Policy, TrackerKind
from bot.trackers import BugCount, Scope, Tracker, TrackerError
from bot.trackers.gitlab import GitLabTracker
from bot.trackers.zentao import ZenTaoClient, ZenTaoTracker


class Trackers:
    """Project key → its tracker; projects without one are not tracked."""

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self._trackers = trackers

    def for_project(self, key: str) -> Tracker | None:
        """The project's tracker, if the policy gives it one."""
        return self._trackers.get(key)

    def items(self) -> list[tuple[str, Tracker]]:
        """Every tracked project with its tracker."""
        return list(self._trackers.items())


def build_trackers(policy: Policy, gitlab: GitLabClient | None, *,
                   zentao_account: str | None, zentao_password: SecretStr | None,
                   clock: Callable[[], datetime]) -> Trackers:
    """A tracker per project that has one; one ZenTao client (and token) per ZenTao address."""
    zentao: dict[str, ZenTaoClient] = {}
    trackers: dict[str, Tracker] = {}
    for key, project in policy.projects.items():
        config = project.bug_tracker
        if config is None:
            continue
        if config.kind is TrackerKind.ZENTAO:
            url = str(config.url)
            client = zentao.setdefault(url, ZenTaoClient(url, zentao_account, zentao_password))
            trackers[key] = ZenTaoTracker(client, config, clock)
        elif gitlab is not None:
            trackers[key] = GitLabTracker(gitlab, project.gitlab, config, clock)
        else:  # tracked, but unreadable: the gate stays closed rather than open uncounted
            trackers[key] = Unconnected()
    return Trackers(trackers)


class Unconnected:
    """A GitLab tracker without GitLab: every count fails."""

    source = "GitLab issues"

    async def count(self, scope: Scope) -> BugCount:
        """Never a count."""
        raise TrackerError("GitLab is not connected, so its issues can't be counted")


def uses_zentao(policy: Policy) -> bool:
    """Whether some project's bugs are counted in ZenTao (which needs its settings)."""
    return any(p.bug_tracker is not None and p.bug_tracker.kind is TrackerKind.ZENTAO
               for p in policy.projects.values())
