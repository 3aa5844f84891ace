"""Shared fixtures: a migrated database on SQLite and PostgreSQL, the policy, a clock."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from bot.policy import Policy, parse_policy
from bot.transition import Deps
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"

POLICY_YAML = """
release_channel: C0RELEASES
timezone: Asia/Shanghai
roles:
  tech_director: [U0DIRECTOR]
  test_lead: [U0TESTLEAD]
  tester: [U0TESTLEAD, U0TESTER]
  executive: [U0CTO]
  release_manager: [U0OPS]
projects:
  payments:
    gitlab: acme/payments
    environments: [staging, production]
    deploy_variables: {DEPLOY: "true"}
    checklist: ["Database backup taken", "Rollback plan reviewed"]
  web:
    gitlab: acme/web
    environments: [production]
policies:
  standard:  {approvers: [tech_director, test_lead], max_open_bugs: {A: 0, B: 0, C: 5}}
  emergency: {approvers: [executive, tech_director], allow_known_issues: true, bypass_freeze: true}
  hotfix:    {approvers: [test_lead]}
  campaign:  {approvers: [tech_director, test_lead]}
observation_hours: 24
windows: []
freezes: []
"""


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 12:00 Shanghai

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, **kw: float) -> None:
        """Move time forward."""
        self.now += timedelta(**kw)


class ShiftClock:
    """Real time moved by an offset: for scenarios where leases and waits must still pass."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        """Now, shifted."""
        return datetime.now(UTC) + self.offset

    def jump_to(self, when: datetime) -> None:
        """From now on, time continues from `when`."""
        self.offset = when - datetime.now(UTC)


def postgres_required() -> bool:
    """PostgreSQL tests fail rather than skip unless a person opts out explicitly."""
    return os.environ.get("RELEASEBOT_SKIP_POSTGRES") != "1"


async def _pg_admin(sql: str) -> None:
    """Run one administrative statement on the server's `test` database."""
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_admin_sync(sql: str) -> None:
    """The same from sync code, even while a loop runs in this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _pg_admin(sql)).result()


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated PostgreSQL database that each test copies."""
    name = f"rb_tmpl_{os.getpid()}"
    try:
        pg_admin_sync(f"DROP DATABASE IF EXISTS {name}")
        pg_admin_sync(f"CREATE DATABASE {name}")
    except (OSError, asyncpg.PostgresError) as exc:
        if postgres_required():
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is needed and not reachable: {exc}")
        pytest.skip("RELEASEBOT_SKIP_POSTGRES=1")
    upgrade(PG_URL.format(db=name))
    yield name
    pg_admin_sync(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies."""
    path = tmp_path_factory.mktemp("tmpl") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "releasebot.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("pg_template")
    name = f"rb_{uuid.uuid4().hex[:12]}"
    await _pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield PG_URL.format(db=name)
    await _pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def policy() -> Policy:
    """The policy of INTERFACE.md with two projects."""
    return parse_policy(POLICY_YAML)


@pytest.fixture
def clock() -> FakeClock:
    """Time under the test's control."""
    return FakeClock()


@pytest.fixture
async def deps(db_url: str, policy: Policy, clock: FakeClock) -> AsyncIterator[Deps]:
    """The service's dependencies over a fresh database."""
    engine = make_engine(db_url)
    yield Deps(sessions=make_sessionmaker(engine), policy=policy, clock=clock)
    await engine.dispose()
