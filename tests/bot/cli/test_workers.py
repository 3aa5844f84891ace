"""`serve --workers`: how many by default, what it refuses (the running pair: tests/replicas)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from bot.cli.workers import cores, default_workers
from emulators.sample import SAMPLE_POLICY_YAML
from tests.bot.cli.test_cli import releasebot


def test_one_worker_per_core_on_postgresql_and_one_on_sqlite() -> None:
    """SQLite's writers share one file lock; PostgreSQL takes every core it may use."""
    assert default_workers("sqlite+aiosqlite:///releasebot.db") == 1
    assert default_workers("postgresql+asyncpg://u@db/releasebot") == cores()


@pytest.mark.parametrize(("cpu_max", "expected"), [
    ("150000 100000", 2), ("50000 100000", 1), ("max 100000", None), (None, None)])
def test_a_container_quota_caps_the_cores(tmp_path: Path, cpu_max: str | None,
                                          expected: int | None) -> None:
    """A cgroup quota of 1.5 CPUs gives 2 workers at most; no quota, the CPUs it may run on."""
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max + "\n")
    mine = len(os.sched_getaffinity(0))
    assert cores(path) == (min(mine, expected) if expected else mine)


@pytest.mark.parametrize("given", ["0", "-1", "two"])
def test_a_count_below_one_is_refused(tmp_path: Path, given: str) -> None:
    """Exit 2 and a line naming the option."""
    result = releasebot("serve", "--workers", given, cwd=tmp_path)
    assert result.returncode == 2 and "--workers" in result.stderr


def test_a_port_someone_holds_is_one_line(tmp_path: Path) -> None:
    """The parent checks the port before forking anything: exit 1, one line, no traceback."""
    policy = tmp_path / "releasebot.yml"
    policy.write_text(SAMPLE_POLICY_YAML)
    env = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s",
           "RELEASEBOT_CONFIG": str(policy), "DATABASE_URL": f"sqlite:///{tmp_path}/rb.db"}
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        result = releasebot("serve", "--workers", "2", "--host", "127.0.0.1", "--port",
                            str(port), env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr.strip() == (
        f"releasebot: cannot listen on 127.0.0.1:{port}: Address already in use")
    assert not (tmp_path / "rb.db").exists()  # nothing touched
