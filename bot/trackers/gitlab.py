"""GitLab issues as the bug tracker: open issues of the release's milestone (or labelled with
its ID), counted by their severity label."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from urllib.parse import urlencode

from bot.gitlab import GitLabClient, GitLabError, Issue, ProjectRef
from bot.policy import BugTracker, TrackerScope
from bot.trackers import SEVERITIES, Bug, BugCount, Scope, TrackerError


class GitLabTracker:
    """One project's issues, through the bot's GitLab client."""

    source = "GitLab issues"

    def __init__(self, client: GitLabClient, project: ProjectRef, config: BugTracker,
                 clock: Callable[[], datetime]) -> None:
        self.client, self.project, self.config, self.clock = client, project, config, clock
        self.labels = {label: sev.value for sev, label in config.severity_labels.items()}
        self._path: str | None = None  # the project's path now, for links people follow

    async def count(self, scope: Scope) -> BugCount:
        """The release's open issues that carry a severity label."""
        try:
            issues, where = await self._issues(scope)
            url = await self._list_url(scope)
        except GitLabError as exc:
            raise TrackerError(str(exc), retry_after=exc.retry_after) from None
        bugs = tuple(bug for issue in issues if (bug := self._bug(issue)) is not None)
        return BugCount(self.source, where, url, self.clock(), bugs)

    async def missing_labels(self) -> list[str]:
        """The severity labels the project does not have (issues can't carry them)."""
        try:
            known = await self.client.label_names(self.project)
        except GitLabError as exc:
            raise TrackerError(str(exc)) from None
        return [label for label in self.labels if label not in known]

    async def _issues(self, scope: Scope) -> tuple[list[Issue], str]:
        """The open issues of the milestone (which must exist) or of the release's label."""
        if self.config.issue_scope is TrackerScope.LABEL:
            found = await self.client.open_issues(self.project, labels=[scope.rel_id])
            return found, f"label {scope.rel_id}"
        # GitLab lists no issues for a milestone that doesn't exist: that is no count at all.
        if not await self.client.milestone_exists(self.project, scope.milestone):
            raise TrackerError(f"GitLab has no milestone {scope.milestone!r} in "
                               f"{self.project}, so its issues can't be counted; create it, "
                               "or give the release its milestone's title as its version")
        found = await self.client.open_issues(self.project, milestone=scope.milestone)
        return found, f"milestone {scope.milestone}"

    def _bug(self, issue: Issue) -> Bug | None:
        """The issue as a bug of its gravest severity label; None without one."""
        found = sorted(self.labels[label] for label in issue.labels if label in self.labels)
        if not found:
            return None
        return Bug(f"#{issue.iid}", min(found, key=SEVERITIES.index), issue.title,
                   issue.web_url)

    async def _list_url(self, scope: Scope) -> str:
        """GitLab's page of these open issues."""
        if self._path is None:
            self._path = (await self.client.project_settings(self.project)).path
        query: dict[str, str] = {"state": "opened"}
        if self.config.issue_scope is TrackerScope.LABEL:
            query["label_name[]"] = scope.rel_id
        else:
            query["milestone_title"] = scope.milestone
        return f"{self.client.base_url}/{self._path}/-/issues?{urlencode(query)}"
