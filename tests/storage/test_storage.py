"""Storage on SQLite and PostgreSQL: migrations, round trips, the append-only audit trail."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from bot.project_ids import StoredProjectIds
from storage import queries as q
from storage.db import make_engine, make_sessionmaker, transaction
from storage.migrate import alembic_config
from storage.models import Approval, AuditEntry, Deployment, Release, TestReport, WorkItem

TABLES = {"releases", "work_items", "test_reports", "approvals", "checklist_ticks",
          "deployments", "deploy_locks", "audit_trail", "outbox", "seen_deliveries", "leases",
          "reminders", "reminder_digests", "gitlab_projects", "ask_messages"}


async def test_migrated_from_empty_to_head(db_url: str) -> None:
    """Every table exists and the schema is at Alembic's head."""
    engine = make_engine(db_url)
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
        current = await conn.run_sync(
            lambda c: MigrationContext.configure(c).get_current_revision())
    await engine.dispose()
    assert TABLES <= names
    assert current == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()


def release(**kw: object) -> Release:
    """A release row with defaults."""
    fields = {"project": "payments", "ref": "v1.1.0", "title": "T", "type": "standard",
              "requester": "U0DEV", "state": "requested", "checklist": ["a", "b"]}
    return Release(**{**fields, **kw})  # type: ignore[arg-type]


async def test_round_trip(db_url: str) -> None:
    """Rows come back as written, times as aware UTC."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    when = datetime(2026, 12, 24, 12, 30, tzinfo=UTC)
    async with transaction(sessions) as s:
        rel = release(scheduled_at=when, title="标题 ✓ " + "x" * 3000)
        s.add(rel)
        await s.flush()
        s.add(WorkItem(release_id=rel.id, kind="mr", reference="!12"))
        s.add(TestReport(release_id=rel.id, revision=1, url="https://r", bugs_c=3, passes=True,
                         reporter="U0TESTER"))
        s.add(Deployment(release_id=rel.id, revision=1, project="payments",
                         environment="production", ref="v1.1.0", previous_ref="v1.0.0",
                         started_by="U0OPS"))
    async with sessions() as s:
        got = await q.get_release(s, rel.id)
        assert got.scheduled_at == when and got.scheduled_at.tzinfo is not None
        assert got.title.startswith("标题 ✓") and got.checklist == ["a", "b"]
        assert got.rel_id == f"REL-{rel.id}" and got.version == 1
        assert [w.reference for w in await q.work_items_of(s, rel.id)] == ["!12"]
        assert (await q.latest_report(s, got)).bugs_c == 3
        assert (await q.deployments_of(s, rel.id))[0].previous_ref == "v1.0.0"
    await engine.dispose()


async def test_audit_trail_is_append_only(db_url: str) -> None:
    """The database refuses to edit or delete audit rows."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        rel = release()
        s.add(rel)
        await s.flush()
        s.add(AuditEntry(release_id=rel.id, actor="U0DEV", action="request", to_state="requested"))
    for sql in ("UPDATE audit_trail SET actor = 'U0EVIL'", "DELETE FROM audit_trail"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with transaction(sessions) as s:
                await s.exec(text(sql))  # type: ignore[call-overload]
    async with sessions() as s:
        assert [a.actor for a in await q.audit_of(s, rel.id)] == ["U0DEV"]
    await engine.dispose()


async def test_one_approval_per_person_and_role_per_revision(db_url: str) -> None:
    """The unique keys, not an if, keep approvals single."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        rel = release()
        s.add(rel)
        await s.flush()
        s.add(Approval(release_id=rel.id, revision=1, role="test_lead", approver="U1"))
    for dup in (Approval(release_id=rel.id, revision=1, role="tech_director", approver="U1"),
                Approval(release_id=rel.id, revision=1, role="test_lead", approver="U2")):
        with pytest.raises(IntegrityError):
            async with transaction(sessions) as s:
                s.add(dup)
    async with transaction(sessions) as s:  # a new revision is a new sign-off
        s.add(Approval(release_id=rel.id, revision=2, role="test_lead", approver="U1"))
    await engine.dispose()


async def test_stale_write_is_refused(db_url: str) -> None:
    """The version column stops a write based on an old read."""
    from sqlalchemy.orm.exc import StaleDataError

    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    async with transaction(sessions) as s:
        rel = release()
        s.add(rel)
    async with sessions() as a, sessions() as b:
        ra = await a.get(Release, rel.id)
        await a.commit()  # a's read is over; its copy is now old news
        rb = await b.get(Release, rel.id)
        rb.state = "testing"
        await b.commit()
        ra.state = "cancelled"
        with pytest.raises(StaleDataError):
            await a.commit()
    await engine.dispose()


async def test_seen_delivery_keys(db_url: str) -> None:
    """A delivery key is accepted once."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    now = datetime.now(UTC)
    async with transaction(sessions) as s:
        assert await q.mark_seen(s, "slack:Ev1", now)
    async with transaction(sessions) as s:
        assert not await q.mark_seen(s, "slack:Ev1", now)
    await engine.dispose()


async def test_gitlab_project_ids_first_kept_wins(db_url: str) -> None:
    """Two replicas learning one path at once: both go on with the ID kept first."""
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    ids = StoredProjectIds(sessions, lambda: datetime.now(UTC))
    kept = await asyncio.gather(ids.save("acme/payments", 1), ids.save("acme/payments", 1))
    assert kept == [1, 1]
    assert await ids.save("acme/payments", 7) == 1
    assert await ids.save("acme/web", 2) == 2
    assert await ids.load() == {"acme/payments": 1, "acme/web": 2}
    await engine.dispose()
