"""`releasebot serve --workers 2` on PostgreSQL: both workers serve, everything happens once.

One command starts a parent and two workers on one port. Connections reach both workers (each
one's sockets, read from /proc, carry requests it answered); a release goes from request to
closed with a reminder, a deploy and the poll and close jobs on 1 s ticks raced by two
schedulers; then every card, thread line, reminder and pipeline happened exactly once, each
scheduler slot was claimed once, and SIGTERM to the parent stops all three processes cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text

from emulators.gitlab import GitLabEmulator, variable
from emulators.sample import CHANNEL, DEV, DIRECTOR, LEAD, OPS, TESTER
from emulators.slack import SlackEmulator
from emulators.slack_driver import SlackDriver
from storage.db import make_engine
from tests.bot.cli.test_cli import free_port
from tests.fixtures import PG_URL, pg_admin
from tests.replicas.test_replicas import (
    HOOK,
    SECRET,
    created,
    healthy,
    replica_policy,
    seed_gitlab,
    state_of,
    until,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(240)]
CONNECTIONS = 16


@dataclass
class Pair:
    """The parent process, its workers, the emulators and a driver."""

    parent: asyncio.subprocess.Process
    workers: list[int]
    port: int
    slack: SlackEmulator
    gitlab: GitLabEmulator
    driver: SlackDriver
    db_url: str
    commands: int = 0  # signed commands answered so far

    async def say(self, user: str, command: str) -> None:
        """A signed /release command."""
        reply = await self.driver.command(user, command)
        assert reply.status == 200, reply.body
        self.commands += 1


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[Pair]:
    """`serve --workers 2` on a fresh PostgreSQL database, polling and ticking every second."""
    name = f"rb_workers_{uuid.uuid4().hex[:8]}"
    await pg_admin(f"CREATE DATABASE {name}")
    db_url = PG_URL.format(db=name)
    policy = tmp_path / "releasebot.yml"
    policy.write_text(replica_policy())
    port = free_port()
    async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
        seed_gitlab(gitlab)
        env = {"PATH": os.environ["PATH"], "SLACK_BOT_TOKEN": "xoxb-test",
               "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.base_url,
               "GITLAB_URL": gitlab.url, "GITLAB_TOKEN": "glpat-test",
               "GITLAB_WEBHOOK_SECRET": HOOK, "GITLAB_POLL_SECONDS": "1",
               "SCHEDULER_SECONDS": "1", "DATABASE_URL": db_url,
               "RELEASEBOT_CONFIG": str(policy)}
        log = (tmp_path / "serve.log").open("w")
        parent = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "--workers", "2", "--host", "127.0.0.1",
            "--port", str(port), env=env, cwd=tmp_path, stdout=log, stderr=log)
        try:
            await healthy(port)
            workers = children(parent.pid)
            async with SlackDriver(f"http://127.0.0.1:{port}", SECRET, slack) as driver:
                yield Pair(parent, workers, port, slack, gitlab, driver, db_url)
        finally:
            if parent.returncode is None:
                parent.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(parent.wait(), 60)
            log.close()
    await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    stopped_cleanly(code, workers, tmp_path / "serve.log")


def stopped_cleanly(code: int, workers: list[int], log: Path) -> None:
    """Exit 0 on SIGTERM, no worker left behind, no traceback logged."""
    assert code == 0, log.read_text()[-3000:]
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert "Traceback" not in log.read_text()


def children(parent: int) -> list[int]:
    """The processes whose parent is `parent`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return sorted(found)


def connections_by_worker(workers: list[int], port: int) -> dict[int, int]:
    """Established connections to `port` that each worker holds (its sockets, via /proc)."""
    inodes: dict[str, int] = {}
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    held = dict.fromkeys(workers, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local_port, state, inode = int(cols[1].rsplit(":", 1)[1], 16), cols[3], cols[9]
            if local_port == port and state == "01" and inode in inodes:  # 01: ESTABLISHED
                held[inodes[inode]] += 1
    return held


async def test_two_workers_serve_and_everything_happens_once(pair: Pair) -> None:
    """Both workers answer; a release's announcements, reminder, deploy and jobs happen once."""
    p = pair
    assert len(p.workers) == 2
    await both_workers_answer(p)
    await p.say(DEV, "request p0 main two-workers")
    rid = await created(p, "two-workers")  # type: ignore[arg-type]
    await p.say(TESTER, f"report REL-{rid} https://ci/r/1")
    await until(lambda: _in(p, rid, "ready_for_signoff"), 30)
    await p.say(DIRECTOR, f"approve REL-{rid}")
    await until(lambda: _reminded(p, rid), 60)  # approval_hours 0.002: reminded after ~7 s
    await p.say(LEAD, f"approve REL-{rid}")
    await until(lambda: _in(p, rid, "approved"), 30)
    await p.say(OPS, f"deploy REL-{rid}")
    await until(lambda: _in(p, rid, "deployed"), 60)  # the pipeline is polled every second
    await p.say(TESTER, f"verify REL-{rid} pass")
    await until(lambda: _in(p, rid, "closed"), 60)  # observation ends; a job closes it
    await until(lambda: _delivered(p), 30)
    await asyncio.sleep(3)  # ticks go on: nothing more may happen
    check_once(p, rid)
    await check_slots(p)
    await check_metrics(p)


async def both_workers_answer(p: Pair) -> None:
    """Separate connections, each with a command answered, spread over both workers."""
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
                for _ in range(CONNECTIONS)]
    try:
        drivers = [SlackDriver(f"http://127.0.0.1:{p.port}", SECRET, p.slack, session=s)
                   for s in sessions]
        replies = await asyncio.gather(*(d.command(DEV, "list") for d in drivers))
        assert all(r.status == 200 for r in replies)
        p.commands += len(replies)
        held = connections_by_worker(p.workers, p.port)
        # At least ours: a health probe's or a closed session's socket may linger a moment.
        assert sum(held.values()) >= CONNECTIONS and all(held.values()), held
    finally:
        for s in sessions:
            await s.close()


async def _in(p: Pair, rid: int, wanted: str) -> bool:
    """Whether the release is in that state."""
    return await state_of(p, rid) == wanted  # type: ignore[arg-type]


async def _reminded(p: Pair, rid: int) -> bool:
    """Whether the test lead got a reminder naming the release."""
    return any(m.text.startswith("Reminder:") and f"REL-{rid}" in m.text
               for m in p.slack.dms(LEAD))


async def _delivered(p: Pair) -> bool:
    """No announcement waits."""
    return await _scalar(p, "SELECT count(*) FROM outbox WHERE sent_at IS NULL") == 0


async def _scalar(p: Pair, sql: str) -> int:
    """One number from the database."""
    engine = make_engine(p.db_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


def check_once(p: Pair, rid: int) -> None:
    """One card; each thread line once; one reminder; one deploy pipeline, none other."""
    cards = p.slack.messages(CHANNEL)
    assert len(cards) == 1
    lines = [m.text for m in p.slack.thread(CHANNEL, cards[0].ts)]
    assert not [t for t, n in Counter(lines).items() if n > 1], lines
    for once in ("📝", "🧪", "📦 Deployed", "✔️", "🏁"):
        assert sum(once in t for t in lines) == 1, (once, lines)
    reminders = [m for m in p.slack.dms(LEAD) if m.text.startswith("Reminder:")]
    assert len(reminders) == 1
    pipelines = [(variable(x.variables, "RELEASE_ID"), variable(x.variables, "ROLLBACK"))
                 for x in p.gitlab.pipelines.values()]
    assert pipelines == [(f"REL-{rid}", "false")]


async def check_slots(p: Pair) -> None:
    """Each scheduler slot was claimed by one worker, and the ticks went on throughout."""
    claimed = await _scalar(p, "SELECT count(*) FROM leases WHERE name LIKE 'gitlab-poll@%'")
    distinct = await _scalar(
        p, "SELECT count(DISTINCT name) FROM leases WHERE name LIKE 'gitlab-poll@%'")
    assert claimed == distinct > 10


async def check_metrics(p: Pair) -> None:
    """/metrics, whichever worker answers it, counts the commands both workers took."""
    wanted = f'releasebot_requests_total{{kind="command",status="200"}} {float(p.commands)}'
    for _ in range(4):  # a new connection each time: the kernel picks the worker
        async with aiohttp.ClientSession() as http, http.get(
                f"http://127.0.0.1:{p.port}/metrics") as resp:
            assert wanted in (await resp.text()).splitlines()
