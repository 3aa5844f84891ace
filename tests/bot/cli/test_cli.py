"""The `releasebot` command as operators run it: one-line errors, migrate, serve."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from emulators.gitlab import GitLabEmulator
from emulators.sample import SAMPLE_POLICY_YAML, sample_policy_yaml
from emulators.slack import SlackEmulator
from emulators.slack_driver import SlackDriver
from tests.scenario.harness import wait_for

ROOT = Path(__file__).resolve().parents[3]


def releasebot(*args: str, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command line with only the given settings."""
    base = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([sys.executable, "-m", "bot", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=cwd or ROOT, timeout=120)


def free_port() -> int:
    """A port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("env", "args", "message"), [
    ({}, ["serve"], "SLACK_BOT_TOKEN is not set"),
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, ["serve"], "SLACK_SIGNING_SECRET is not set"),
    ({"SLACK_BOT_TOKEN": "xoxb-1"}, ["serve", "--socket-mode"], "SLACK_APP_TOKEN is not set"),
    ({"PORT": "abc"}, ["migrate"],
     "PORT: must be an integer between 0 and 65535 (0: any free port) (got 'abc')"),
    ({"SLACK_BOT_TOKEN": "xoxp-1"}, ["migrate"], "SLACK_BOT_TOKEN: must start with xoxb-"),
    ({"DATABASE_URL": "mysql://x"}, ["migrate"], "DATABASE_URL"),
])
def test_configuration_errors_are_one_line(tmp_path: Path, env: dict[str, str],
                                           args: list[str], message: str) -> None:
    """A missing or wrong setting: exit 2 and one line naming it, never a traceback."""
    result = releasebot(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [["migrate"], ["audit", "verify"],
                                     ["export", "--format", "csv"], ["serve"]])
@pytest.mark.parametrize(("url", "reason"), [
    ("postgresql+asyncpg://postgres:hunter2@127.0.0.1:{port}/test", "Connection refused"),
    ("postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_database_here",
     'database "no_such_database_here" does not exist'),
    ("sqlite+aiosqlite:////no/such/folder/releasebot.db", "there is no folder /no/such/folder"),
    ("sqlite+aiosqlite:///{here}/garbage.db", "file is not a database"),
])
def test_a_database_out_of_reach_is_one_line(tmp_path: Path, command: list[str], url: str,
                                             reason: str) -> None:
    """A database that is down, missing or unopenable: one line with its reason, no password."""
    policy = tmp_path / "releasebot.yml"
    policy.write_text(SAMPLE_POLICY_YAML)
    (tmp_path / "garbage.db").write_bytes(b"not a database, just sixteen bytes or more" * 40)
    env = {"DATABASE_URL": url.format(port=free_port(), here=tmp_path), "SLACK_BOT_TOKEN": "xoxb-1",
           "SLACK_SIGNING_SECRET": "s", "RELEASEBOT_CONFIG": str(policy)}
    result = releasebot(*command, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert reason in result.stderr and "cannot use the database" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "hunter2" not in result.stderr


@pytest.mark.parametrize("command", [["audit", "verify"], ["export", "--format", "json"]])
def test_a_missing_sqlite_file_is_named_by_the_commands_that_only_read(
        tmp_path: Path, command: list[str]) -> None:
    """`export` and `audit verify` say it as every command does a database out of reach, and
    create nothing (migrate makes the file; these would read an empty one)."""
    db = tmp_path / "nope.db"
    url = f"sqlite+aiosqlite:///{db}"
    result = releasebot(*command, env={"DATABASE_URL": url}, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"releasebot: cannot use the database {url}: there is no file "
                             f"{db} (check DATABASE_URL)\n")
    assert not db.exists() and result.stdout == ""


def test_bad_policy_file_names_file_line_and_reason(tmp_path: Path) -> None:
    """An invalid policy stops start-up with the file, the line and the reason."""
    bad = tmp_path / "policy.yml"
    bad.write_text(SAMPLE_POLICY_YAML.replace("test_lead: [U0TESTLEAD]", "test_lead: [banana]"))
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
           "RELEASEBOT_CONFIG": str(bad)}
    result = releasebot("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"releasebot: {bad}:6: roles.test_lead.0: 'banana'")


def test_serve_needs_zentaos_account_when_the_policy_counts_bugs_there(tmp_path: Path) -> None:
    """A ZenTao bug tracker without ZENTAO_ACCOUNT/ZENTAO_PASSWORD: one line, no start."""
    tracked = tmp_path / "policy.yml"
    tracked.write_text(sample_policy_yaml(projects={"web": {"bug_tracker": {
        "kind": "zentao", "url": "https://zentao.example", "product": 1}}}))
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
           "RELEASEBOT_CONFIG": str(tracked), "ZENTAO_ACCOUNT": "releasebot"}
    result = releasebot("serve", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "releasebot: ZENTAO_PASSWORD is not set: a ZenTao bug tracker in the policy is read "
        "with this password; set it in the environment or in .env")


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    """`releasebot migrate` on an empty SQLite file."""
    db = tmp_path / "rb.db"
    result = releasebot("migrate", env={"DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stdout and db.exists()
    again = releasebot("migrate", env={"DATABASE_URL": f"sqlite:///{db}"}, cwd=tmp_path)
    assert again.returncode == 0


async def test_serve_answers_slack_and_stops_cleanly(tmp_path: Path) -> None:
    """The real process: healthy, takes a signed command, posts the card, exits on SIGTERM."""
    policy = tmp_path / "releasebot.yml"
    policy.write_text(SAMPLE_POLICY_YAML)
    port = free_port()
    async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
        gitlab.seed_demo()  # web's v1.1.0, which the request names
        env = {"PATH": os.environ["PATH"], "SLACK_BOT_TOKEN": "xoxb-test",
               "SLACK_SIGNING_SECRET": "secret", "SLACK_API_URL": slack.base_url,
               "GITLAB_URL": gitlab.url, "GITLAB_TOKEN": "glpat-test",
               "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/rb.db",
               "RELEASEBOT_CONFIG": str(policy)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", str(port),
            env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            await _healthy(url)
            async with SlackDriver(url, "secret", slack) as driver:
                reply = await driver.command("U0DEV", "request web v1.1.0 From a real process")
                assert reply.status == 200
                await wait_for(lambda: len(slack.messages("C0RELEASES")) == 1, 15)
                assert (await driver.command("U0DEV", "help", sign=False)).status == 401
            async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
                assert 'releasebot_requests_total{kind="command",status="200"}' in (
                    await resp.text())
        finally:
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        err = (await proc.stderr.read()).decode() if proc.stderr else ""
        assert "Traceback" not in err


async def _healthy(url: str, within: float = 30.0) -> None:
    """Wait for /healthz to say 200."""
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(f"{url}/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError("the bot never became healthy")


def serve_env(tmp_path: Path) -> dict[str, str]:
    """Enough settings for `serve` to start, with the sample policy; no GitLab settings."""
    policy = tmp_path / "releasebot.yml"
    policy.write_text(SAMPLE_POLICY_YAML)
    return {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
            "RELEASEBOT_CONFIG": str(policy), "DATABASE_URL": f"sqlite:///{tmp_path}/rb.db"}


@pytest.mark.parametrize("workers", [[], ["--workers", "1"]])
def test_one_worker_on_a_port_someone_holds_is_one_line(tmp_path: Path,
                                                         workers: list[str]) -> None:
    """Checked before migrations or the scheduler start: exit 1, one line, no traceback."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = releasebot("serve", *workers, "--host", "127.0.0.1", "--port", str(port),
                            env=serve_env(tmp_path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"releasebot: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert not (tmp_path / "rb.db").exists()


@pytest.mark.parametrize("host", ["999.1.1.1", "no.such.host.invalid", "192.0.2.1"])
def test_a_host_this_machine_cannot_listen_on_is_one_line(tmp_path: Path, host: str) -> None:
    """An unknown name, a malformed address or another machine's address: one line."""
    env = {**serve_env(tmp_path), "HOST": host}
    result = releasebot("serve", "--port", "3000", env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"releasebot: cannot listen on {host}:3000: ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "rb.db").exists()


async def test_serve_on_port_zero_says_where_it_listens_and_what_is_unset(tmp_path: Path) -> None:
    """Port 0 picks a free port and logs it; unset GitLab settings are warned about by name."""
    env = {"PATH": os.environ["PATH"], **serve_env(tmp_path)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--host", "127.0.0.1", "--port", "0",
        env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        while not any("listening on" in line for line in seen):
            line = (await asyncio.wait_for(proc.stderr.readline(), 60)).decode()
            assert line, "".join(seen)
            seen.append(line)
        port = int(seen[-1].split("listening on 127.0.0.1:")[1].split('"')[0])
        await _healthy(f"http://127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    log = "".join(seen)
    assert "GITLAB_TOKEN is not set" in log and "GITLAB_WEBHOOK_SECRET is not set" in log
    assert "token` will be unused" not in log  # Bolt's warning about our client: by design


def test_policy_counts_in_words(tmp_path: Path) -> None:
    """`releasebot policy` says what it read: one project is not `1 projects`."""
    one = sample_policy_yaml(projects={"web": None})
    (tmp_path / "releasebot.yml").write_text(one)
    done = releasebot("policy", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, "releasebot.yml: ok (1 project, 7 roles)\n")
