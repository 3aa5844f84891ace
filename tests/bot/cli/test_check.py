"""`releasebot check` against the emulators: a good set-up and each way one can be broken."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.cli.check import run_check
from bot.cli.gitlab_check import variables_line
from bot.gitlab import ProjectSettings, User
from bot.settings import Settings, load_settings
from emulators.gitlab import DEVELOPER, MAINTAINER, REPORTER, GitLabEmulator
from emulators.sample import (
    OPS,
    SAMPLE_POLICY_YAML,
    sample_policy_yaml,
)
from emulators.slack import SlackEmulator
from emulators.zentao import ZenTaoEmulator


@pytest.fixture
async def emus() -> AsyncIterator[tuple[SlackEmulator, GitLabEmulator]]:
    """Slack and GitLab on loopback, GitLab with the demo projects."""
    async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
        gitlab.seed_demo()
        yield slack, gitlab


def check_env(tmp_path: Path, slack: SlackEmulator, gitlab: GitLabEmulator,
              policy: str = SAMPLE_POLICY_YAML, **override: str) -> dict[str, str]:
    """The settings `check` reads, pointing at the emulators."""
    path = tmp_path / "releasebot.yml"
    path.write_text(policy)
    return {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.base_url,
            "SLACK_SIGNING_SECRET": "signing", "GITLAB_URL": gitlab.url,
            "GITLAB_TOKEN": "glpat-test", "GITLAB_WEBHOOK_SECRET": "hook",
            "RELEASEBOT_CONFIG": str(path), **override}


def settings_from(env: dict[str, str]) -> Settings:
    """Settings as the command would load them from this environment."""
    return load_settings(**{k.lower(): v for k, v in env.items()})


async def checked(env: dict[str, str]) -> tuple[int, list[str]]:
    """Run the checks in-process: the exit code and the printed lines."""
    out = io.StringIO()
    code = await run_check(settings_from(env), out)
    return code, out.getvalue().splitlines()


def line_for(lines: list[str], what: str) -> str:
    """The one line about `what`."""
    found = [line for line in lines if line.split(":")[0].split("  ", 1)[-1].strip() == what]
    assert len(found) == 1, lines
    return found[0]


async def test_good_config_passes_every_check(tmp_path: Path, emus: Any) -> None:
    """The real command: exit 0 and an ok line for each thing checked."""
    env = check_env(tmp_path, *emus)
    proc = await asyncio.create_subprocess_exec(  # async: the emulators answer from this loop
        sys.executable, "-m", "bot", "check", cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **env})
    stdout, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (stdout + stderr).decode()
    lines = stdout.decode().splitlines()
    expected = ["policy file", "Slack token", "release channel", "role tech_director",
                "role test_lead", "role tester", "role executive", "role release_manager",
                "role dba", "role operations", "Slack signing secret", "GitLab token",
                *project_lines("payments"), *project_lines("web"), "GitLab webhook secret"]
    assert [line_for(lines, what).startswith("ok  ") for what in expected] == [True] * 23
    assert "U0TESTLEAD (User U0TESTLEAD), U0TESTER" in line_for(lines, "role tester")
    assert "acme/payments (id 1, default branch main)" in line_for(lines, "project payments")
    assert lines[-1] == "all 23 checks passed"


def project_lines(key: str) -> list[str]:
    """What `check` says about each project."""
    return [f"project {key}", f"{key} role", f"{key} release tags", f"{key} pipeline variables",
            f"{key} production"]


async def test_wrong_slack_token(tmp_path: Path, emus: Any) -> None:
    """invalid_auth fails the token; the channel and roles say they were not checked."""
    code, lines = await checked(check_env(tmp_path, *emus, SLACK_BOT_TOKEN="xoxb-invalid"))
    assert code == 1
    assert line_for(lines, "Slack token") == "FAIL  Slack token: auth.test failed: invalid_auth"
    assert line_for(lines, "release channel").startswith("FAIL  release channel: not checked")
    assert line_for(lines, "GitLab token").startswith("ok  ")


async def test_wrong_gitlab_token(tmp_path: Path, emus: Any) -> None:
    """GitLab's 401 fails the token line; Slack is still fine."""
    slack, gitlab = emus
    code, lines = await checked(check_env(tmp_path, slack, gitlab, GITLAB_TOKEN="glpat-wrong"))
    assert code == 1
    assert line_for(lines, "GitLab token") == (
        f"FAIL  GitLab token: {gitlab.url}: GitLab refused the token (401)")
    assert line_for(lines, "project web").startswith("FAIL  project web: not checked")
    assert line_for(lines, "Slack token").startswith("ok  ")


async def test_an_address_that_is_not_gitlab_is_told_from_a_bad_token(tmp_path: Path,
                                                                      emus: Any) -> None:
    """A GITLAB_URL that answers 404, or nothing, names the address, not the token."""
    slack, gitlab = emus
    code, lines = await checked(check_env(tmp_path, slack, gitlab,
                                          GITLAB_URL=slack.base_url.rstrip("/")))
    assert code == 1
    assert line_for(lines, "GitLab token") == (
        f"FAIL  GitLab token: {slack.base_url.rstrip('/')} answered 404 for /api/v4/user, so it "
        "is not GitLab's address: set GITLAB_URL to the address you open GitLab at, like "
        "https://gitlab.example.com")
    assert line_for(lines, "project web") == (
        "FAIL  project web: not checked: GITLAB_URL is not GitLab's address")
    code, lines = await checked(check_env(tmp_path, slack, gitlab,
                                          GITLAB_URL="http://127.0.0.1:1"))
    assert code == 1
    assert line_for(lines, "GitLab token").endswith(
        "; check GITLAB_URL and that GitLab is up")
    assert line_for(lines, "project web") == (
        "FAIL  project web: not checked: GitLab can't be reached at GITLAB_URL")


async def test_missing_channel(tmp_path: Path, emus: Any) -> None:
    """A channel Slack doesn't know (or the bot can't see) fails with Slack's reason."""
    emus[0].missing_channels.add("C0RELEASES")
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 1
    assert line_for(lines, "release channel") == (
        "FAIL  release channel: C0RELEASES: channel_not_found")


async def test_channel_without_the_bot(tmp_path: Path, emus: Any) -> None:
    """The bot must be in the channel to post its cards."""
    emus[0].channels["C0RELEASES"] = {"name": "releases", "is_member": False}
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 1
    assert "the bot is not a member" in line_for(lines, "release channel")


async def test_notify_channel_without_the_bot(tmp_path: Path, emus: Any) -> None:
    """Each channel `notify` posts to is checked like the release channel, once."""
    emus[0].outside_channels.add("C0NEWS")
    policy = sample_policy_yaml(notify={"request": ["C0NEWS", "U0CTO"], "close": ["C0NEWS"]})
    code, lines = await checked(check_env(tmp_path, *emus, policy=policy))
    assert code == 1
    assert line_for(lines, "notify channel") == (
        "FAIL  notify channel: #c0news (C0NEWS): the bot is not a member; "
        "/invite @ReleaseBot there")


async def test_role_naming_an_unknown_user(tmp_path: Path, emus: Any) -> None:
    """Slack answers user_not_found: every role with such a user fails, naming the ID."""
    slack = emus[0]
    slack.fail("users.info", error="user_not_found", times=100)
    policy = sample_policy_yaml(roles={"tech_director": ["U0GHOST"]})
    code, lines = await checked(check_env(tmp_path, *emus, policy=policy))
    assert code == 1
    assert line_for(lines, "role tech_director") == (
        "FAIL  role tech_director: U0GHOST: no such user in this workspace (user_not_found)")


async def test_deactivated_user_and_unknown_group(tmp_path: Path, emus: Any) -> None:
    """A deactivated account and a user group Slack doesn't know both fail their role."""
    emus[0].users["U0CTO"] = {"deleted": True}
    policy = sample_policy_yaml(roles={"release_manager": [OPS, "S0NOPE"]})
    code, lines = await checked(check_env(tmp_path, *emus, policy=policy))
    assert code == 1
    assert line_for(lines, "role executive") == (
        "FAIL  role executive: U0CTO: the account is deactivated")
    assert line_for(lines, "role release_manager") == (
        "FAIL  role release_manager: S0NOPE: no such user group in this workspace "
        "(no_such_subteam)")


async def test_user_group_members_resolve(tmp_path: Path, emus: Any) -> None:
    """A user group with members passes; an empty one fails."""
    slack = emus[0]
    slack.usergroups.update({"S0OPS": ["U0OPS", "U0OPS2"], "S0EMPTY": []})
    policy = sample_policy_yaml(roles={"release_manager": ["S0OPS"], "executive": ["S0EMPTY"]})
    code, lines = await checked(check_env(tmp_path, *emus, policy=policy))
    assert code == 1
    assert line_for(lines, "role release_manager") == (
        "ok    role release_manager: S0OPS (2 members)")
    assert "S0EMPTY: the user group has no members" in line_for(lines, "role executive")


async def test_bad_policy_and_no_tokens(tmp_path: Path, emus: Any) -> None:
    """An invalid policy names file and line; unset tokens are named; nothing goes unsaid."""
    env = check_env(tmp_path, *emus, policy=sample_policy_yaml(roles={"test_lead": ["banana"]}))
    del env["SLACK_BOT_TOKEN"], env["GITLAB_TOKEN"]
    code, lines = await checked(env)
    assert code == 1
    assert line_for(lines, "policy file").startswith(f"FAIL  policy file: {tmp_path}")
    assert line_for(lines, "Slack token") == "FAIL  Slack token: SLACK_BOT_TOKEN is not set"
    assert line_for(lines, "GitLab token").startswith(
        "FAIL  GitLab token: GITLAB_TOKEN is not set: GitLab is called without a token")


@pytest.mark.parametrize(("unset", "app_token", "line"), [
    ("SLACK_SIGNING_SECRET", None, "FAIL  Slack signing secret: SLACK_SIGNING_SECRET is not set: "
                                   "`serve` will not start (it verifies every request from Slack)"),
    ("SLACK_SIGNING_SECRET", "xapp-1", "WARN  Slack signing secret: SLACK_SIGNING_SECRET is not "
                                       "set: only `serve --socket-mode` can start"),
    ("GITLAB_WEBHOOK_SECRET", None, "WARN  GitLab webhook secret: GITLAB_WEBHOOK_SECRET is not "
                                    "set: every GitLab webhook is refused with 401, so pipeline "
                                    "results arrive only by polling (every GITLAB_POLL_SECONDS)"),
])
async def test_unset_secrets_are_lines(tmp_path: Path, emus: Any, unset: str,
                                       app_token: str | None, line: str) -> None:
    """Each secret `serve` needs (or works badly without) has its line."""
    env = check_env(tmp_path, *emus, **({"SLACK_APP_TOKEN": app_token} if app_token else {}))
    del env[unset]
    code, lines = await checked(env)
    assert line in lines
    assert code == (1 if line.startswith("FAIL") else 0)


# ---------------------------------------------------------------- GitLab settings per project


async def test_a_protected_tag_that_keeps_the_bot_out_fails(tmp_path: Path, emus: Any) -> None:
    """release/* for no one: every deploy would stop at its tag; the line names the setting."""
    gitlab = emus[1]
    gitlab.projects[1].protected_tags.clear()
    gitlab.protect_tag(1, "release/*", 0)
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 1
    assert line_for(lines, "payments release tags") == (
        'FAIL  payments release tags: protected tag release/* does not let @releasebot '
        '(Maintainer) create release/* tags, so every deploy stops at its tag; in Settings > '
        'Repository > Protected tags add Maintainers or @releasebot to "Allowed to create" for '
        'release/*')
    with pytest.raises(Exception, match="not allowed to create this tag"):
        gitlab.create_tag(1, "release/REL-1", "main")  # what the bot would meet
    gitlab.projects[1].protected_tags.clear()
    gitlab.protect_tag(1, "release/*", 0, users=["releasebot"])
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 0 and line_for(lines, "payments release tags").startswith("ok  ")


async def test_unprotected_release_tags_and_production_warn(tmp_path: Path, emus: Any) -> None:
    """Nothing stops the bot, but people could deploy around it: WARN, exit 0."""
    gitlab = emus[1]
    gitlab.projects[2].protected_tags.clear()
    gitlab.projects[2].protected_environments.clear()
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 0 and lines[-1] == "all 23 checks passed, 2 warnings"
    assert line_for(lines, "web release tags").startswith(
        "WARN  web release tags: no protected tag covers release/*: anyone with the Developer "
        "role can create a release tag; protect release/* in Settings > Repository > "
        "Protected tags")
    assert line_for(lines, "web production") == (
        "WARN  web production: environment production is not protected: anyone who can run a "
        "pipeline can deploy to it without the bot; protect it in Settings > CI/CD > Protected "
        "environments (GitLab Premium) and allow the bot's user only")
    assert line_for(lines, "payments production").startswith("ok  ")


async def test_pipeline_variables_restricted_above_the_bot_fail(tmp_path: Path,
                                                                emus: Any) -> None:
    """Owner only, or no one (GitLab.com's default for new projects): every deploy is a 400."""
    gitlab = emus[1]
    gitlab.set_variables_role(1, "owner")
    gitlab.set_variables_role(2, "no_one_allowed")
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 1
    fix = ("GitLab refuses every deploy with \"Insufficient permissions to set pipeline "
           "variables\"; in Settings > CI/CD > Variables > Minimum role to use pipeline "
           "variables, choose Maintainer")
    assert line_for(lines, "payments pipeline variables") == (
        "FAIL  payments pipeline variables: only Owners and up may set pipeline variables "
        f"(owner) and @releasebot is Maintainer: {fix}")
    assert line_for(lines, "web pipeline variables") == (
        "FAIL  web pipeline variables: no one may set pipeline variables (no_one_allowed) and "
        f"@releasebot is Maintainer: {fix}")
    with pytest.raises(Exception, match="Insufficient permissions to set pipeline variables"):
        gitlab.create_pipeline(2, "main", [{"key": "DEPLOY_ENV", "value": "production"}])


async def test_pipeline_variables_looser_than_the_bot_warn(tmp_path: Path, emus: Any) -> None:
    """Developers may set variables (or nothing is restricted): it works, and it warns."""
    gitlab = emus[1]
    gitlab.set_variables_role(1, "developer")
    gitlab.projects[2].restrict_user_defined_variables = False
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 0
    assert line_for(lines, "payments pipeline variables") == (
        "WARN  payments pipeline variables: Developers may set pipeline variables (developer), "
        "so they can run deploy pipelines with variables of their own; in Settings > CI/CD > "
        "Variables > Minimum role to use pipeline variables, choose Maintainer, the bot's role")
    assert line_for(lines, "web pipeline variables").startswith(
        "WARN  web pipeline variables: not restricted: anyone with the Developer role")


def test_the_older_restriction_means_maintainers() -> None:
    """restrict_user_defined_variables alone (before the minimum role): maintainers only."""
    older = ProjectSettings(id=1, path="acme/payments", default_branch="main",
                            variables_restricted=True, variables_role=None)
    bot = User(1, "releasebot")
    assert variables_line("payments", older, bot, MAINTAINER).ok
    assert not variables_line("payments", older, bot, DEVELOPER).warn
    assert not variables_line("payments", older, bot, DEVELOPER).ok


async def test_a_token_below_developer_or_maintainer(tmp_path: Path, emus: Any) -> None:
    """Reporter: no tags, no pipelines (FAIL); Developer: works, settings unread (WARN)."""
    gitlab = emus[1]
    gitlab.set_access_level(1, "releasebot", REPORTER)
    gitlab.set_access_level(2, "releasebot", DEVELOPER)
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 1
    assert line_for(lines, "payments role") == (
        "FAIL  payments role: @releasebot is Reporter: it cannot create tags or run pipelines; "
        "give it the Maintainer role in Manage > Members")
    assert line_for(lines, "payments release tags").startswith("FAIL  ")
    assert line_for(lines, "web role").startswith("WARN  web role: @releasebot is Developer; ")
    assert line_for(lines, "web production") == (
        "WARN  web production: not checked: needs the Maintainer role")


async def test_a_renamed_project_warns_with_its_new_path(tmp_path: Path, emus: Any) -> None:
    """GitLab's redirect still finds it; the line gives the path to put in the policy."""
    emus[1].rename_project(1, "acme/billing")
    code, lines = await checked(check_env(tmp_path, *emus))
    assert code == 0
    assert line_for(lines, "project payments") == (
        "WARN  project payments: acme/payments is now acme/billing (id 1, default branch main): "
        "renamed or moved in GitLab; the bot follows the project by its id, but set "
        "`gitlab: acme/billing` in the policy")


# --- bug trackers ---------------------------------------------------------------------------------

def tracked_policy(zentao_url: str, **zentao: Any) -> str:
    """The sample policy with payments' bugs in ZenTao and web's in GitLab issues."""
    payments = {"kind": "zentao", "url": zentao_url, "product": 1, **zentao}
    return sample_policy_yaml(projects={"payments": {"bug_tracker": payments},
                                        "web": {"bug_tracker": {"kind": "gitlab"}}})


async def test_trackers_credentials_and_mapping_are_checked(tmp_path: Path, emus: Any) -> None:
    """Each tracker reads; a missing severity label fails; ZenTao's unmapped severities warn;
    the password never shows."""
    async with ZenTaoEmulator() as zentao:
        zentao.add_product("Payments")
        zentao.add_bug(1, "Cosmetic", severity=5)
        env = check_env(tmp_path, *emus, policy=tracked_policy(zentao.url),
                        ZENTAO_ACCOUNT=zentao.account, ZENTAO_PASSWORD=zentao.password)
        code, lines = await checked(env)
        assert code == 1
        web = line_for(lines, "web bug tracker")
        assert web == ("FAIL  web bug tracker: acme/web has no label severity::A, severity::B, "
                       "severity::C: issues can't carry that severity, so none would be counted; "
                       "create it in Manage > Labels or change bug_tracker.labels")
        assert line_for(lines, "payments bug tracker") == (
            f"ok    payments bug tracker: ZenTao at {zentao.url} as releasebot: product 1 "
            "(Payments); severity 1 = A, 2 = B, 3 = C, 4 = C")
        assert line_for(lines, "payments severities") == (
            "WARN  payments severities: ZenTao has active bugs no go-live severity counts (1 of "
            "severity 5); add their severity to bug_tracker.severity_map")
        for sev in "ABC":
            emus[1].add_label("acme/web", f"severity::{sev}")
        code, lines = await checked({**env, "ZENTAO_PASSWORD": "not-the-password"})
        assert line_for(lines, "web bug tracker").startswith(
            "ok    web bug tracker: GitLab issues of acme/web: open issues of the milestone "
            "named as the release's version; severity::A = A")
        assert line_for(lines, "payments bug tracker").startswith(
            f"FAIL  payments bug tracker: ZenTao at {zentao.url}: ZenTao refused the bot's "
            "account (ZENTAO_ACCOUNT, ZENTAO_PASSWORD)")
        assert not any("not-the-password" in line or zentao.password in line for line in lines)
        del env["ZENTAO_PASSWORD"]
        _, lines = await checked(env)
        assert "ZENTAO_ACCOUNT and ZENTAO_PASSWORD are not set" in line_for(
            lines, "payments bug tracker")


async def test_production_listed_before_the_last_environment_warns(tmp_path: Path,
                                                                   emus: Any) -> None:
    """A reversed list makes staging the production of the bot: warned, not failed."""
    policy = sample_policy_yaml(projects={"payments": {"environments": ["production",
                                                                        "staging"]}})
    _, lines = await checked(check_env(tmp_path, *emus, policy=policy))
    assert line_for(lines, "project payments environments") == (
        "WARN  project payments environments: production, staging: the last one, staging, is "
        "what the bot treats as production; list production last")
    assert not [line for line in lines if line.startswith("WARN  project web environments")]
    _, good = await checked(check_env(tmp_path, *emus))
    assert not [line for line in good if " environments:" in line]
