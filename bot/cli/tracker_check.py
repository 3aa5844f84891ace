"""`releasebot check`, the bug trackers' part: can the bot read each one, and does its mapping
of labels or severities to A, B and C fit what the tracker has? The password is never shown."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.cli.check import CheckLine
from bot.gitlab import GitLabClient
from bot.policy import BugTracker, Policy, TrackerScope
from bot.settings import Settings
from bot.trackers import TrackerError
from bot.trackers.gitlab import GitLabTracker
from bot.trackers.registry import build_trackers
from bot.trackers.zentao import ZenTaoTracker

_LABELS = "Manage > Labels"


async def check_trackers(settings: Settings, policy: Policy | None) -> list[CheckLine]:
    """One line per project with a bug tracker."""
    if policy is None or not any(p.bug_tracker for p in policy.projects.values()):
        return []
    token = settings.gitlab_token.get_secret_value() if settings.gitlab_token else None
    gitlab = GitLabClient(settings.gitlab_url, token) if token else None
    trackers = build_trackers(policy, gitlab, zentao_account=settings.zentao_account,
                              zentao_password=settings.zentao_password,
                              clock=lambda: datetime.now(UTC))
    lines = []
    for key, tracker in trackers.items():
        config = policy.projects[key].bug_tracker
        assert config is not None  # only tracked projects have a tracker
        if isinstance(tracker, GitLabTracker):
            lines.append(await gitlab_line(key, tracker, config))
        elif isinstance(tracker, ZenTaoTracker):
            lines += await zentao_lines(key, tracker, config, settings)
        else:
            lines.append(CheckLine(False, f"{key} bug tracker",
                                   "GITLAB_TOKEN is not set, so GitLab issues can't be read"))
    return lines


async def gitlab_line(key: str, tracker: GitLabTracker, config: BugTracker) -> CheckLine:
    """The token reads the project's labels, and every severity label exists there."""
    what = f"{key} bug tracker"
    try:
        missing = await tracker.missing_labels()
    except TrackerError as exc:
        return CheckLine(False, what, f"GitLab issues of {tracker.project}: {exc}")
    if missing:
        return CheckLine(False, what, (
            f"{tracker.project} has no label {', '.join(missing)}: issues can't carry that "
            f"severity, so none would be counted; create it in {_LABELS} or change "
            "bug_tracker.labels"))
    mapping = ", ".join(f"{label} = {sev}" for label, sev in tracker.labels.items())
    scope = ("issues labelled with the release ID" if config.issue_scope is TrackerScope.LABEL
             else "open issues of the milestone named as the release's version")
    return CheckLine(True, what, f"GitLab issues of {tracker.project}: {scope}; {mapping}")


async def zentao_lines(key: str, tracker: ZenTaoTracker, config: BugTracker,
                       settings: Settings) -> list[CheckLine]:
    """The account logs in, the product exists, and every active bug's severity is mapped."""
    what, where = f"{key} bug tracker", f"ZenTao at {tracker.client.url}"
    try:
        await tracker.client.login()
        product = await tracker.client.product(tracker.product)
        unmapped = await tracker.unmapped()
    except TrackerError as exc:
        return [CheckLine(False, what, f"{where}: {exc}")]
    name = str(product.get("name") or "?")
    mapping = ", ".join(f"{level} = {sev}" for level, sev in sorted(config.severities.items()))
    lines = [CheckLine(True, what, (
        f"{where} as {settings.zentao_account}: product {tracker.product} ({name}); "
        f"severity {mapping}"))]
    if unmapped:
        levels = ", ".join(f"{count} of severity {level}" for level, count in
                           sorted(unmapped.items()))
        lines.append(CheckLine(True, f"{key} severities", (
            f"ZenTao has active bugs no go-live severity counts ({levels}); add their "
            "severity to bug_tracker.severity_map"), warn=True))
    return lines
