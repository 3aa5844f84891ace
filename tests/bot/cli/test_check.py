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
from bot.settings import Settings, load_settings
from emulators.gitlab import GitLabEmulator
from emulators.sample import (
    OPS,
    SAMPLE_POLICY_YAML,
    sample_policy_yaml,
)
from emulators.slack import SlackEmulator


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
            "GITLAB_URL": gitlab.url, "GITLAB_TOKEN": "glpat-test",
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
                "role dba", "role operations", "GitLab token", "project payments", "project web"]
    assert [line_for(lines, what).startswith("ok  ") for what in expected] == [True] * 13
    assert "U0TESTLEAD (User U0TESTLEAD), U0TESTER" in line_for(lines, "role tester")
    assert "acme/payments (default branch main)" in line_for(lines, "project payments")
    assert lines[-1] == "all 13 checks passed"


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
    assert line_for(lines, "GitLab token") == "FAIL  GitLab token: GITLAB_TOKEN is not set"
