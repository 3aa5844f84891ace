"""Pytest fixtures: a migrated database on SQLite and PostgreSQL, the policy, a clock."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from bot.policy import Policy
from bot.transition import Deps
from emulators.gitlab import GitLabEmulator
from emulators.sample import sample_policy
from storage.db import make_engine, make_sessionmaker
from storage.migrate import upgrade
from tests.fixtures import (
    PG_URL,
    FakeClock,
    gitlab_client,
    pg_admin,
    pg_admin_sync,
    postgres_required,
    sample_gitlab,
)


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
    await pg_admin(f"CREATE DATABASE {name} TEMPLATE {template}")
    yield PG_URL.format(db=name)
    await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def policy() -> Policy:
    """The sample policy, with two projects."""
    return sample_policy()


@pytest.fixture
def clock() -> FakeClock:
    """Time under the test's control."""
    return FakeClock()


@pytest.fixture
async def gitlab() -> AsyncIterator[GitLabEmulator]:
    """GitLab with the demo projects and every ref the tests name."""
    async with sample_gitlab() as emulator:
        yield emulator


@pytest.fixture
async def deps(db_url: str, policy: Policy, clock: FakeClock,
               gitlab: GitLabEmulator) -> AsyncIterator[Deps]:
    """The service's dependencies over a fresh database and the test's GitLab."""
    engine = make_engine(db_url)
    yield Deps(sessions=make_sessionmaker(engine), policy=policy, clock=clock,
               gitlab=gitlab_client(gitlab))
    await engine.dispose()
