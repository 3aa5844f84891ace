"""`releasebot check` against the emulators, good and broken; `releasebot export` round trips."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot import deploys, releases
from bot.cli.check import run_check
from bot.cli.export import export_audit, parse_since, utc_iso
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.settings import Settings, load_settings
from bot.transition import Deps
from emulators.gitlab import GitLabEmulator
from emulators.sample import (
    DEV,
    DIRECTOR,
    LEAD,
    OPS,
    SAMPLE_POLICY_YAML,
    TESTER,
    sample_policy_yaml,
)
from emulators.slack import SlackEmulator
from storage.models import AuditEntry
from tests.fixtures import FakeClock

# --- check ----------------------------------------------------------------------------------------

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
                "GitLab token", "project payments", "project web"]
    assert [line_for(lines, what).startswith("ok  ") for what in expected] == [True] * 11
    assert "U0TESTLEAD (User U0TESTLEAD), U0TESTER" in line_for(lines, "role tester")
    assert "acme/payments (default branch main)" in line_for(lines, "project payments")
    assert lines[-1] == "all 11 checks passed"


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


# --- export ---------------------------------------------------------------------------------------

def who(deps: Deps, user: str) -> Any:
    """The actor for a user of the test policy."""
    return actor_for(deps.policy, user)


async def deployed_release(deps: Deps, clock: FakeClock, title: str) -> int:
    """A release taken through report, sign-off, checklist and a production deploy."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="v1.1.0", title=title))
    rid = out.release.id
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/1", {"C": 1}))
    for user in (DIRECTOR, LEAD):
        await releases.approve(deps, release_id=rid, actor=who(deps, user), comment="ok, ship it")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=rid,
                                  url=f"https://gl/p/{rid}")
    clock.advance(minutes=2)
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    return rid


async def stored_rows(deps: Deps) -> list[dict[str, Any]]:
    """Every audit row, read straight from the table, as the export should show it."""
    async with deps.sessions() as session:
        rows = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    return [{"id": e.id, "release": f"REL-{e.release_id}", "at": utc_iso(e.at),
             "actor": e.actor, "action": e.action, "from": e.from_state, "to": e.to_state,
             "detail": e.detail} for e in rows]


def parsed_csv(text: str) -> list[dict[str, Any]]:
    """CSV back into records: empty `from` is None, ids are ints, detail is JSON."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [{**r, "id": int(r["id"]), "from": r["from"] or None,
             "detail": json.loads(r["detail"])} for r in rows]


async def trail(deps: Deps, clock: FakeClock) -> None:
    """Two releases on one day, a third two days later with awkward text in its reason."""
    await deployed_release(deps, clock, "Checkout")
    await deployed_release(deps, clock, "Footer")
    clock.advance(days=2)
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="payments", ref="main", title="Refunds"))
    await releases.cancel(deps, release_id=out.release.id, actor=who(deps, DEV),
                     reason='not now, "maybe" next week\n急')


async def test_export_round_trips_csv_and_json(deps: Deps, db_url: str,
                                               clock: FakeClock) -> None:
    """Both formats parse back to exactly the stored rows, in id order, across pages."""
    await trail(deps, clock)
    expected = await stored_rows(deps)
    assert len(expected) > 14  # more than two pages of 7
    for fmt in ("csv", "json"):
        out = io.StringIO(newline="")
        count = await export_audit(db_url, out, fmt=fmt, page=7)
        assert count == len(expected)
        got = parsed_csv(out.getvalue()) if fmt == "csv" else json.loads(out.getvalue())
        assert got == expected
    assert expected[-1]["detail"]["reason"] == 'not now, "maybe" next week\n急'
    assert expected[0]["at"].endswith("Z") and expected[0]["release"] == "REL-1"


async def test_export_since_a_day(deps: Deps, db_url: str, clock: FakeClock) -> None:
    """--since keeps the rows from that UTC day on."""
    await trail(deps, clock)
    day = clock.now.date().isoformat()
    out = io.StringIO()
    await export_audit(db_url, out, fmt="json", since=parse_since(day))
    rows = json.loads(out.getvalue())
    assert [(r["release"], r["action"]) for r in rows] == [("REL-3", "request"),
                                                           ("REL-3", "cancel")]
    empty = io.StringIO()
    assert await export_audit(db_url, empty, fmt="json", since=parse_since("2099-01-01")) == 0
    assert json.loads(empty.getvalue()) == []


async def test_export_command_writes_a_file(deps: Deps, db_url: str, clock: FakeClock,
                                            tmp_path: Path) -> None:
    """`releasebot export --format csv --output FILE`: the file, and a count on stderr."""
    await trail(deps, clock)
    target = tmp_path / "audit.csv"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "export", "--format", "csv", "--output", str(target),
        "--since", "2000-01-01", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    rows = parsed_csv(target.read_text(encoding="utf-8"))
    assert rows == await stored_rows(deps)
    assert stderr.decode().strip() == f"exported {len(rows)} audit rows to {target}"


def test_export_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    """A wrong SQLite path is named, and no empty database is left behind."""
    db = tmp_path / "nope.db"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{db}"}
    result = subprocess.run([sys.executable, "-m", "bot", "export", "--format", "json"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"releasebot: no database at {db} (check DATABASE_URL)"
    assert not db.exists()


def test_since_must_be_a_date() -> None:
    """A malformed --since is refused before anything is read."""
    with pytest.raises(ValueError, match="not a date like 2026-01-31"):
        parse_since("last tuesday")
    assert utc_iso(parse_since("2026-11-23")) == "2026-11-23T00:00:00Z"
