"""The app's own PostgreSQL role cannot erase or edit the audit trail; nobody can TRUNCATE it."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot import releases
from bot.cli.audit import ChainCheck, verify_chain
from bot.policy import Policy
from bot.releases import NewRelease
from bot.transition import Deps
from emulators.sample import DEV, OPS, TESTER
from handlers.blocks import ActionId
from storage.db import make_engine, make_sessionmaker
from storage.migrate import grant_app_role
from tests.fixtures import FakeClock, who
from tests.scenario.harness import running_app
from tests.scenario.test_gitlab_flow import approved, deploy_and_finish, through_production

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


async def file_as(url: str, policy: Policy, clock: FakeClock) -> None:
    """File one release through `url`'s role, as `serve` running as that role would."""
    engine = make_engine(url)
    deps = Deps(sessions=make_sessionmaker(engine), policy=policy, clock=clock)
    try:
        await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
            project="payments", ref="v1.1.0", title="Faster checkout"))
    finally:
        await engine.dispose()


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
    await file_as(app_url, policy, clock)
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


async def test_an_update_through_a_disabled_trigger_is_still_refused(
        app_role: tuple[str, str], policy: Policy, clock: FakeClock) -> None:
    """With the owner's row trigger switched off, the app role still may not edit or delete
    audit rows: its grants refuse, and the chain still holds."""
    owner_url, app_url = app_role
    await file_as(app_url, policy, clock)
    owner = await asyncpg.connect(dsn(owner_url))
    app = await asyncpg.connect(dsn(owner_url, make_url(app_url).username or ""))
    try:
        await owner.execute("ALTER TABLE audit_trail DISABLE TRIGGER USER")
        for sql in ("UPDATE audit_trail SET actor = 'U0NOBODY'", "DELETE FROM audit_trail"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(sql)
    finally:
        await owner.execute("ALTER TABLE audit_trail ENABLE TRIGGER USER")
        await app.close()
        await owner.close()
    assert await verify_chain(app_url) == ChainCheck(1)


async def test_serve_runs_as_the_app_role(app_role: tuple[str, str], policy: Policy,
                                          caplog: pytest.LogCaptureFixture) -> None:
    """The running app, as the app role alone: a release through production, verified, its
    notes published, another cancelled, a third failed (its hook a duplicate) and rolled back;
    the trail reads intact, and nothing was logged as an error (a missing grant would be)."""
    _, app_url = app_role
    async with running_app(app_url, policy) as h:
        rid = await approved(h)
        await through_production(h, rid)
        await h.click(TESTER, ActionId.VERIFY_PASS)
        assert "Published" in await h.says(OPS, f"notes REL-{rid} publish")
        other = await approved(h, "web", "v1.2")
        assert "cancelled" in await h.says(DEV, f"cancel REL-{other} not now")
        failing = await approved(h, "web", "v1.1.1")
        assert await h.hook(await deploy_and_finish(h, failing, "failed")) == 200  # a duplicate
        assert "Rolling" in await h.says(OPS, f"rollback REL-{failing} broken")
        await h.settle()
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    check = await verify_chain(app_url)
    assert check.broken_id is None and check.rows > 20, check
