"""The app's own PostgreSQL role cannot erase or edit the audit trail; nobody can TRUNCATE it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot import releases
from bot.policy import Policy
from bot.releases import NewRelease
from bot.transition import Deps
from emulators.sample import DEV
from storage.db import make_engine, make_sessionmaker
from storage.migrate import grant_app_role
from tests.fixtures import FakeClock, who

# Roles, grants and the TRUNCATE trigger are PostgreSQL's: these run on it alone.
pytestmark = [pytest.mark.postgres,
              pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]


def dsn(url: str, user: str = "postgres") -> str:
    """The asyncpg DSN of a test database URL, as `user`."""
    parsed = make_url(url)
    return f"postgresql://{user}@{parsed.host}:{parsed.port}/{parsed.database}"


@pytest.fixture
async def app_role(db_url: str) -> AsyncIterator[tuple[str, str]]:
    """A login role granted what `serve` needs; (owner URL, app URL). PostgreSQL only."""
    role = f"rb_app_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn(db_url))
    await admin.execute(f"CREATE ROLE {role} LOGIN")
    try:
        grant_app_role(db_url, role)
        yield db_url, make_url(db_url).set(username=role).render_as_string(hide_password=False)
    finally:
        await admin.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")
        await admin.close()


async def audit_count(url: str) -> int:
    """Rows in the audit trail, read as the owner."""
    conn = await asyncpg.connect(dsn(url))
    try:
        return await conn.fetchval("SELECT count(*) FROM audit_trail")
    finally:
        await conn.close()


@pytest.mark.parametrize("sql", [
    "TRUNCATE audit_trail",
    "TRUNCATE audit_trail CASCADE",
    "UPDATE audit_trail SET actor = 'U0NOBODY'",
    "DELETE FROM audit_trail",
    "ALTER TABLE audit_trail DISABLE TRIGGER USER",
    "ALTER TABLE audit_trail DISABLE TRIGGER audit_trail_no_change",
    "DROP TRIGGER audit_trail_no_change ON audit_trail",
    "SET session_replication_role = replica",
])
async def test_app_role_cannot_erase_the_trail(app_role: tuple[str, str], policy: Policy,
                                              clock: FakeClock, sql: str) -> None:
    """The role `serve` runs as files releases (audit rows written) but is refused each attack."""
    owner_url, app_url = app_role
    engine = make_engine(app_url)
    deps = Deps(sessions=make_sessionmaker(engine), policy=policy, clock=clock)
    try:
        await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
            project="payments", ref="v1.1.0", title="Faster checkout"))
    finally:
        await engine.dispose()
    before = await audit_count(owner_url)
    assert before == 1
    conn = await asyncpg.connect(dsn(owner_url, make_url(app_url).username or ""))
    try:
        with pytest.raises(asyncpg.PostgresError) as refused:
            await conn.execute(sql)
    finally:
        await conn.close()
    assert isinstance(refused.value, asyncpg.InsufficientPrivilegeError)
    assert await audit_count(owner_url) == before


async def test_even_the_owner_cannot_truncate(deps: Deps, db_url: str) -> None:
    """The statement-level trigger refuses TRUNCATE to every role, the owner included."""
    await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="payments", ref="v1.1.0", title="Faster checkout"))
    conn = await asyncpg.connect(dsn(db_url))
    try:
        with pytest.raises(asyncpg.RaiseError, match="cannot be truncated"):
            await conn.execute("TRUNCATE audit_trail CASCADE")
    finally:
        await conn.close()
    assert await audit_count(db_url) == 1
