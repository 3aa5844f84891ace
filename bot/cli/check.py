"""`releasebot check`: does the policy load, and does every connection work? One line each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

from bot.gitlab import GitLabClient, GitLabError
from bot.policy import Policy, PolicyError, load_policy
from bot.settings import UNSET_EFFECTS, Settings


@dataclass(frozen=True)
class CheckLine:
    """One thing checked: what, whether it passed, and why.

    warn: it passed, but something is worth changing (people could deploy around the bot).
    """

    ok: bool
    what: str
    detail: str
    warn: bool = False

    def __str__(self) -> str:
        """`ok    what: detail`, `WARN  what: detail` or `FAIL  what: detail`."""
        mark = "FAIL" if not self.ok else "WARN" if self.warn else "ok  "
        return f"{mark}  {self.what}: {self.detail}"


async def check_all(settings: Settings) -> list[CheckLine]:
    """Every check, in the order an operator fixes things: policy, Slack, GitLab, trackers."""
    from bot.cli.tracker_check import check_trackers  # these build on CheckLine above
    from handlers.slack_check import check_slack

    lines: list[CheckLine] = []
    policy = _check_policy(settings, lines)
    lines += await check_slack(settings, policy)
    lines.append(signing_secret_line(settings))
    lines += await check_gitlab(settings, policy)
    lines.append(webhook_secret_line(settings))
    lines += await check_trackers(settings, policy)
    return lines


def signing_secret_line(settings: Settings) -> CheckLine:
    """HTTP mode refuses to start without the signing secret; Socket Mode needs none."""
    what = "Slack signing secret"
    if settings.slack_signing_secret is not None:
        return CheckLine(True, what, "SLACK_SIGNING_SECRET is set")
    if settings.slack_app_token is not None:
        return CheckLine(True, what, "SLACK_SIGNING_SECRET is not set: only `serve --socket-mode` "
                                     "can start", warn=True)
    return CheckLine(False, what, "SLACK_SIGNING_SECRET is not set: `serve` will not start "
                                  "(it verifies every request from Slack)")


def webhook_secret_line(settings: Settings) -> CheckLine:
    """`serve` starts without the webhook secret, but refuses every webhook."""
    what = "GitLab webhook secret"
    if settings.gitlab_webhook_secret is not None:
        return CheckLine(True, what, "GITLAB_WEBHOOK_SECRET is set")
    return CheckLine(True, what, "GITLAB_WEBHOOK_SECRET is not set: "
                                 + UNSET_EFFECTS["gitlab_webhook_secret"], warn=True)


def _check_policy(settings: Settings, lines: list[CheckLine]) -> Policy | None:
    """Load the policy file, adding its line; None when it is unusable."""
    where = str(settings.releasebot_config)
    try:
        policy = load_policy(settings.releasebot_config)
    except PolicyError as exc:
        lines.append(CheckLine(False, "policy file", str(exc)))
        return None
    lines.append(CheckLine(True, "policy file", f"{where} ({policy_size(policy)})"))
    lines += environment_order_lines(policy)
    return policy


def environment_order_lines(policy: Policy) -> list[CheckLine]:
    """A warning where `production` is listed before the last environment, which is production
    to the bot: a reversed list would ship to production first and call staging production."""
    lines = []
    for key, project in policy.projects.items():
        envs = project.environments
        if "production" in envs[:-1]:
            lines.append(CheckLine(
                True, f"project {key} environments", f"{', '.join(envs)}: the last one, "
                f"{envs[-1]}, is what the bot treats as production; list production last",
                warn=True))
    return lines


def policy_size(policy: Policy) -> str:
    """`2 projects, 5 roles`, or `1 project, 1 role`."""
    projects, roles = len(policy.projects), len(policy.roles)
    return (f"{projects} project{'s' if projects != 1 else ''}, "
            f"{roles} role{'s' if roles != 1 else ''}")


async def check_gitlab(settings: Settings, policy: Policy | None) -> list[CheckLine]:
    """The GitLab token, then every project the policy names and its settings."""
    from bot.cli.gitlab_check import check_project  # builds on CheckLine above

    if settings.gitlab_token is None:
        token = CheckLine(False, "GitLab token",
                          "GITLAB_TOKEN is not set: " + UNSET_EFFECTS["gitlab_token"])
        return [token, *_projects_not_checked(policy, "the GitLab token is not set")]
    gitlab = GitLabClient(settings.gitlab_url, settings.gitlab_token.get_secret_value())
    try:
        user = await gitlab.whoami()
    except GitLabError as exc:
        detail, why = _unusable(settings.gitlab_url, exc)
        return [CheckLine(False, "GitLab token", detail), *_projects_not_checked(policy, why)]
    lines = [CheckLine(True, "GitLab token", f"{settings.gitlab_url} as @{user.username}")]
    for key in policy.projects if policy is not None else ():
        lines += await check_project(gitlab, policy, key, user)
    return lines


def _unusable(url: str, exc: GitLabError) -> tuple[str, str]:
    """Why GitLab did not name the token's user, and why the projects are therefore unchecked:
    a refused token, or an address that is not GitLab's, are told apart."""
    if exc.status == 404:
        return (f"{url} answered 404 for /api/v4/user, so it is not GitLab's address: set "
                f"GITLAB_URL to the address you open GitLab at, like https://gitlab.example.com",
                "GITLAB_URL is not GitLab's address")
    if exc.status is None:
        return (f"{url}: {exc}; check GITLAB_URL and that GitLab is up",
                "GitLab can't be reached at GITLAB_URL")
    return f"{url}: {exc}", "the GitLab token does not work"


def _projects_not_checked(policy: Policy | None, why: str) -> list[CheckLine]:
    """Lines for the GitLab projects that could not be checked."""
    projects = policy.projects if policy else {}
    return [CheckLine(False, f"project {key}", f"not checked: {why}") for key in projects]


async def run_check(settings: Settings, out: TextIO) -> int:
    """Print one line per check and a summary; 0 only when everything passed."""
    lines = await check_all(settings)
    for line in lines:
        print(line, file=out, flush=True)
    failed = sum(not line.ok for line in lines)
    warned = sum(line.ok and line.warn for line in lines)
    also = f", {warned} warning{'s' if warned != 1 else ''}" if warned else ""
    if failed:
        print(f"{failed} of {len(lines)} checks failed{also}", file=out)
        return 1
    print(f"all {len(lines)} checks passed{also}", file=out)
    return 0
