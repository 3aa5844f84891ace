"""Three real `releasebot serve` replicas on PostgreSQL, one SIGKILLed midway.

A script runs many releases through random replicas for a few minutes of 1 s polls and
scheduler ticks; the Slack and GitLab emulators count what the bot did. Every release ends
where it should, and every card, announcement, pipeline and reminder happened exactly once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import text

from emulators.gitlab import GitLabEmulator, variable
from emulators.sample import CHANNEL, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy_yaml
from emulators.slack import SlackEmulator
from emulators.slack_driver import SlackDriver
from storage.db import make_engine
from tests.bot.cli.test_cli import free_port
from tests.fixtures import PG_URL, pg_admin

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(900)]
RELEASES = int(os.environ.get("RELEASEBOT_REPLICA_RELEASES", "200"))
RUN_SECONDS = float(os.environ.get("RELEASEBOT_REPLICA_SECONDS", "300"))
PROJECTS = 10
SECRET, HOOK = "replica-secret", "replica-hook"
TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class Fleet:
    """The replicas, the emulators and a driver per replica."""

    procs: list[asyncio.subprocess.Process]
    drivers: list[SlackDriver]
    slack: SlackEmulator
    gitlab: GitLabEmulator
    db_url: str
    logs: list[Path]
    live: set[int] = field(default_factory=lambda: {0, 1, 2})

    async def say(self, user: str, command: str) -> None:
        """A signed /release command to a random live replica."""
        for _ in range(5):
            i = random.choice(sorted(self.live))
            try:
                reply = await self.drivers[i].command(user, command)
            except OSError:
                continue
            assert reply.status == 200, reply.body
            return
        raise AssertionError(f"no replica took {command!r}")


def replica_policy() -> str:
    """The sample policy with ten single-environment projects (p0…p9), two types, short timers."""
    return sample_policy_yaml(
        roles={"tester": [TESTER]},
        projects={"payments": None, "web": None} | {
            f"p{i}": {"gitlab": f"acme/p{i}", "environments": ["production"]}
            for i in range(PROJECTS)},
        policies={"standard": {"max_open_bugs": None}, "emergency": None, "hotfix": None},
        observation_hours=0.0005,
        reminders={"approval_hours": 0.002, "escalation_hours": 1000, "report_hours": 1000,
                   "verify_minutes": 1000, "verify_deadline_minutes": 2000,
                   "interval_hours": 1000})


def seed_gitlab(gitlab: GitLabEmulator) -> None:
    """Each project has main (deploys fine) and bad (its deploys fail)."""
    for i in range(PROJECTS):
        gitlab.add_project(f"acme/p{i}")
        gitlab.add_commit(f"acme/p{i}", title="Initial", branches=["main"])
        gitlab.add_commit(f"acme/p{i}", title="Broken", branches=["bad"], parent="main")
        # Production ran main before the bot came: GitLab's record is each deploy's way back.
        gitlab.record_deployment(f"acme/p{i}", "production", "main")
    # Pipelines take a few seconds, so several poll ticks fall inside each.
    gitlab.auto_advance(steps=("pending", "running", "success"), every=1.5, fail_refs={"bad"})


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    """Three replicas on a fresh PostgreSQL database they migrate themselves, at once."""
    name = f"rb_replicas_{uuid.uuid4().hex[:8]}"
    await pg_admin(f"CREATE DATABASE {name}")
    policy = tmp_path / "releasebot.yml"
    policy.write_text(replica_policy())
    async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
        seed_gitlab(gitlab)
        ports = [free_port() for _ in range(3)]
        procs = [await start_replica(i, ports[i], slack, gitlab, PG_URL.format(db=name), policy,
                                     tmp_path) for i in range(3)]
        gitlab.register_hook(f"http://127.0.0.1:{ports[0]}/gitlab/webhook", HOOK)
        drivers = [SlackDriver(f"http://127.0.0.1:{p}", SECRET, slack) for p in ports]
        try:
            for d in drivers:
                await d.__aenter__()
            await asyncio.gather(*(healthy(p) for p in ports))
            logs = [tmp_path / f"replica{i}.log" for i in range(3)]
            yield Fleet(procs, drivers, slack, gitlab, PG_URL.format(db=name), logs)
        finally:
            for d in drivers:
                await d.__aexit__(None, None, None)
            for proc in procs:
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                await asyncio.wait_for(proc.wait(), 30)
    await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def start_replica(i: int, port: int, slack: SlackEmulator, gitlab: GitLabEmulator,
                        db_url: str, policy: Path, tmp: Path) -> asyncio.subprocess.Process:
    """One `releasebot serve` process with 1 s polls and scheduler ticks."""
    env = {"PATH": os.environ["PATH"], "SLACK_BOT_TOKEN": "xoxb-test",
           "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.base_url,
           "GITLAB_URL": gitlab.url, "GITLAB_TOKEN": "glpat-test",
           "GITLAB_WEBHOOK_SECRET": HOOK, "GITLAB_POLL_SECONDS": "1", "SCHEDULER_SECONDS": "1",
           "DATABASE_URL": db_url, "RELEASEBOT_CONFIG": str(policy)}
    log = (tmp / f"replica{i}.log").open("w")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "serve", "--workers", "1", "--host", "127.0.0.1",
        "--port", str(port),
        env=env, cwd=tmp, stdout=log, stderr=log)


async def healthy(port: int, within: float = 60.0) -> None:
    """Wait for one replica's /healthz."""
    from tests.bot.cli.test_cli import _healthy

    await _healthy(f"http://127.0.0.1:{port}", within)


async def states(db_url: str) -> dict[int, str]:
    """Every release's state, straight from the database."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, state FROM releases"))).all()
    finally:
        await engine.dispose()
    return {r[0]: r[1] for r in rows}


async def until(check: object, within: float, step: float = 0.5) -> None:
    """Poll an async predicate."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(step)
    raise AssertionError("timed out waiting")


async def state_of(f: Fleet, rid: int) -> str | None:
    """One release's state."""
    return (await states(f.db_url)).get(rid)


async def life(f: Fleet, n: int, failing: bool) -> int:
    """One release from request to closed (or rolled back), driven like people would."""
    project = f"p{n % PROJECTS}"
    marker = f"life-{n}"
    await f.say(DEV, f"request {project} {'bad' if failing else 'main'} {marker}")
    rid = await created(f, marker)
    await step(f, rid, TESTER, f"report REL-{rid} https://ci/r/{n}", {"ready_for_signoff"})
    await f.say(DIRECTOR, f"approve REL-{rid}")
    await step(f, rid, LEAD, f"approve REL-{rid}", {"approved"}, again=(DIRECTOR, "approve"))
    await deploy_when_free(f, rid)
    if failing:
        await until(lambda: _in(f, rid, {"deploy_failed"}), 60)
        await f.say(OPS, f"rollback REL-{rid} bad build")
        await until(lambda: _in(f, rid, {"rolled_back"}), 60)
        return rid
    await until(lambda: _in(f, rid, {"deployed"}), 60)
    await f.say(TESTER, f"verify REL-{rid} pass")
    await until(lambda: _in(f, rid, {"closed"}), 60)
    return rid


async def step(f: Fleet, rid: int, user: str, command: str, wanted: set[str],
               again: tuple[str, str] | None = None) -> None:
    """Send a command and wait for its effect, resending (as a person would) if it was early."""
    for _ in range(30):
        await f.say(user, command)
        if again:
            await f.say(again[0], f"{again[1]} REL-{rid}")
        try:
            await until(lambda: _in(f, rid, wanted), 4)
            return
        except AssertionError:
            continue
    raise AssertionError(f"REL-{rid} never reached {wanted}")


async def _in(f: Fleet, rid: int, wanted: set[str]) -> bool:
    """Whether the release reached one of the states."""
    return await state_of(f, rid) in wanted


async def created(f: Fleet, marker: str) -> int:
    """The id of the release whose title is `marker`."""
    engine = make_engine(f.db_url)
    try:
        for _ in range(120):
            async with engine.connect() as conn:
                row = (await conn.execute(text("SELECT id FROM releases WHERE title = :t"),
                                          {"t": marker})).first()
            if row:
                return int(row[0])
            await asyncio.sleep(0.25)
    finally:
        await engine.dispose()
    raise AssertionError(f"{marker} was never filed")


async def deploy_when_free(f: Fleet, rid: int) -> None:
    """Ask to deploy until the project's environment is free and the deploy starts."""
    for _ in range(240):
        await f.say(OPS, f"deploy REL-{rid}")
        await asyncio.sleep(0.5)
        if await state_of(f, rid) not in ("approved", None):
            return
        await asyncio.sleep(random.uniform(0.2, 1.0))
    raise AssertionError(f"REL-{rid} never deployed")


async def kill_one(f: Fleet, after: float) -> float:
    """SIGKILL replica 1 once `after` seconds have passed; when it died."""
    await asyncio.sleep(after - 3)
    f.live.discard(1)  # drain: no new requests go to it, in-flight ones finish
    await asyncio.sleep(3)
    f.procs[1].send_signal(signal.SIGKILL)
    return time.monotonic()


async def test_replicas_do_everything_exactly_once(fleet: Fleet) -> None:
    """Many releases over three replicas, one killed: each effect exactly once."""
    f = fleet
    started = time.monotonic()
    waiting = await waiting_for_signoff(f)
    scheduled = await scheduled_release(f)
    gap = RUN_SECONDS * 0.8 / RELEASES
    limiter = asyncio.Semaphore(40)

    async def paced(n: int) -> int:
        await asyncio.sleep(n * gap)
        async with limiter:
            return await life(f, n, failing=n % 10 == 7 and n >= 20)

    killer = asyncio.create_task(kill_one(f, RUN_SECONDS * 0.4))
    # Production takes one unverified release at a time: the campaign is verified once live.
    campaign = asyncio.create_task(verify_when_deployed(f, scheduled))
    rids = await asyncio.gather(*(paced(n) for n in range(RELEASES)))
    killed_at = await killer
    await campaign
    await asyncio.sleep(max(0.0, RUN_SECONDS - (time.monotonic() - started)))
    await until(lambda: quiet(f), 60)
    final = await states(f.db_url)
    assert all(final[r] in ("closed", "rolled_back") for r in rids)
    assert final[waiting] == "ready_for_signoff"
    check_slack(f, final)
    check_pipelines(f, final)
    check_reminder(f, waiting)
    await check_ticks(f, killed_at, started)


async def verify_when_deployed(f: Fleet, rid: int) -> None:
    """Wait until the release deploys itself, then verify it as the tester would."""
    await until(lambda: _in(f, rid, {"deployed"}), 240)
    await step(f, rid, TESTER, f"verify REL-{rid} pass", {"closed", "observing", "verified"})


async def waiting_for_signoff(f: Fleet) -> int:
    """A release the test lead never signs: they are reminded exactly once."""
    await f.say(DEV, "request p0 main never-signed")
    rid = await created(f, "never-signed")
    await step(f, rid, TESTER, f"report REL-{rid} https://ci/r/w", {"ready_for_signoff"})
    await f.say(DIRECTOR, f"approve REL-{rid}")
    return rid


async def scheduled_release(f: Fleet) -> int:
    """A campaign at the next minute (+1), armed, that deploys itself with nobody clicking."""
    at = (datetime.now(UTC) + timedelta(minutes=2)).astimezone(TZ).strftime("%Y-%m-%d %H:%M")
    await f.say(DEV, f'request p9 main sale --type campaign --at "{at}"')
    rid = await created(f, "sale")
    await step(f, rid, TESTER, f"report REL-{rid} https://ci/r/s", {"ready_for_signoff"})
    await f.say(DIRECTOR, f"approve REL-{rid}")
    await step(f, rid, LEAD, f"approve REL-{rid}", {"scheduled"}, again=(DIRECTOR, "approve"))
    for _ in range(30):  # the release manager arms it, again if a replica lost the first try
        await f.say(OPS, f"arm REL-{rid}")
        if await armed(f, rid):
            return rid
        await asyncio.sleep(1)
    raise AssertionError(f"REL-{rid} was never armed")


async def armed(f: Fleet, rid: int) -> bool:
    """Whether the release manager's arming of the release is stored."""
    engine = make_engine(f.db_url)
    try:
        async with engine.connect() as conn:
            by = (await conn.execute(text("SELECT armed_by FROM releases WHERE id = :rid"),
                                     {"rid": rid})).scalar_one()
    finally:
        await engine.dispose()
    return by is not None


async def quiet(f: Fleet) -> bool:
    """No announcement waits to be posted."""
    engine = make_engine(f.db_url)
    try:
        async with engine.connect() as conn:
            left = (await conn.execute(text("SELECT count(*) FROM outbox WHERE sent_at IS NULL"))
                    ).scalar_one()
    finally:
        await engine.dispose()
    return left == 0


def check_slack(f: Fleet, final: dict[int, str]) -> None:
    """One card per release; no thread line twice; each result announced once."""
    cards = f.slack.messages(CHANNEL)
    assert len(cards) == len(final)
    for card in cards:
        lines = [m.text for m in f.slack.thread(CHANNEL, card.ts)]
        duplicates = [t for t, n in Counter(lines).items() if n > 1]
        assert not duplicates, duplicates
        deployed = sum("📦 Deployed" in t for t in lines)
        assert deployed <= 1 and sum("↩️ Rolled back" in t for t in lines) <= 1
        assert sum("is closed" in t for t in lines) <= 1


def check_pipelines(f: Fleet, final: dict[int, str]) -> None:
    """GitLab saw exactly one deploy pipeline per release deployed, one rollback per rollback."""
    starts = Counter((variable(p.variables, "RELEASE_ID"), variable(p.variables, "ROLLBACK"))
                     for p in f.gitlab.pipelines.values())
    assert all(n == 1 for n in starts.values()), [k for k, n in starts.items() if n > 1]
    for rid, state in final.items():
        deployed = state in ("closed", "rolled_back", "deployed", "observing", "verified")
        assert (starts[(f"REL-{rid}", "false")] == 1) == deployed, (rid, state)
        assert starts[(f"REL-{rid}", "true")] == (state == "rolled_back")


def check_reminder(f: Fleet, rid: int) -> None:
    """The approver who never signed got exactly one reminder (a digest naming it)."""
    reminders = [m for m in f.slack.dms(LEAD)
                 if m.text.startswith("Reminder:") and re.search(rf"\bREL-{rid}\b", m.text)]
    assert len(reminders) == 1


def longest_run(numbers: list[int]) -> int:
    """The most consecutive integers in a sorted list."""
    longest = run = 0
    for i, n in enumerate(numbers):
        run = run + 1 if i and n == numbers[i - 1] + 1 else 1
        longest = max(longest, run)
    return longest


async def check_ticks(f: Fleet, killed_at: float, started: float) -> None:
    """Each 1 s poll tick was claimed by exactly one replica, and none was missed."""
    engine = make_engine(f.db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text(
                "SELECT name, owner, until FROM leases WHERE name LIKE 'gitlab-poll@%'"))).all()
    finally:
        await engine.dispose()
    slots = sorted(int(name.split("@")[1]) for name, _, _ in rows)
    assert len(slots) == len(set(slots))  # the primary key makes doubles impossible; check
    missing = sorted(set(range(slots[0], slots[-1] + 1)) - set(slots))
    # A slot can pass unclaimed around the SIGKILL, or when a loaded machine starves every
    # replica past its one-second misfire grace; never many, and never a run of them.
    assert len(missing) <= max(3, len(slots) // 50), missing
    assert longest_run(missing) <= 3, missing
    assert slots[-1] - slots[0] >= RUN_SECONDS * 0.9
    killed = datetime.now(UTC).timestamp() - (time.monotonic() - killed_at)
    dead = replica_id(f.logs[1])
    assert all(until.timestamp() <= killed + 1 for _, owner, until in rows if owner == dead)
    assert {owner for _, owner, until in rows if until.timestamp() > killed + 2} and (
        started < killed_at)


def replica_id(log: Path) -> str:
    """The scheduler id a replica logged when it started."""
    for line in log.read_text().splitlines():
        if "scheduler started as replica" in line:
            return json.loads(line)["message"].rsplit(" ", 1)[1]
    raise AssertionError(f"{log} has no scheduler id")
