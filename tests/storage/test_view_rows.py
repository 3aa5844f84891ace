"""The one-statement read of a release and what it shows, against the per-table queries."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event
from sqlmodel import SQLModel

from bot.readmodel import TIMELINE_ROWS, read_view
from bot.transition import Deps
from emulators.sample import DEV
from handlers.status import list_text, status_blocks
from storage import queries as q
from storage.db import transaction
from storage.models import (
    Acceptance,
    Approval,
    ChecklistTick,
    Deployment,
    Release,
    TestReport,
)
from storage.view_rows import release_view_rows, view_rows_of

NOW = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)


async def _history(deps: Deps) -> tuple[int, int]:
    """A payments release in its second revision with a row of every kind, and a neighbour."""
    async with transaction(deps.sessions) as s:
        rel = Release(project="payments", ref="v2", title="Checkout", type="standard",
                      requester=DEV, state="deploying", revision=2, checklist=["a", "b", "c"],
                      plan={"rollback": "redeploy"}, created_at=NOW, updated_at=NOW,
                      state_since=NOW)
        other = Release(project="payments", ref="v1", title="Older", type="standard",
                        requester=DEV, state="closed", created_at=NOW, updated_at=NOW,
                        state_since=NOW)
        await q.create_release(s, release=rel, work_items=[("mr", "!1"), ("issue", "#2")])
        await q.create_release(s, release=other)
        rid, oid = int(rel.id or 0), int(other.id or 0)
        s.add_all([
            Approval(release_id=rid, revision=1, role="tech_director", approver="U1"),
            Approval(release_id=rid, revision=2, role="test_lead", approver="U2", created_at=NOW),
            Approval(release_id=rid, revision=2, role="tech_director", approver="U1"),
            TestReport(release_id=rid, revision=2, url="a", bugs_c=1, passes=True, reporter="T"),
            TestReport(release_id=rid, revision=2, url="b", bugs_a=1, passes=False, reporter="T"),
            TestReport(release_id=rid, revision=1, url="c", passes=True, reporter="T"),
            ChecklistTick(release_id=rid, item=3, ticked_by="O"),
            ChecklistTick(release_id=rid, item=1, ticked_by="O"),
            Deployment(release_id=oid, revision=1, project="payments", environment="production",
                       ref="release/REL-1", sha="a" * 40, status="success", started_by="O",
                       finished_at=NOW - timedelta(days=1)),
            Deployment(release_id=rid, revision=2, project="payments", environment="staging",
                       ref="release/REL-2", status="success", started_by="O", finished_at=NOW),
            Deployment(release_id=rid, revision=2, project="payments", environment="production",
                       ref="release/REL-2", status="running", started_by="O", rollback=False),
            Acceptance(release_id=rid, revision=2, environment="staging", passed=True,
                       tester="T"),
            Acceptance(release_id=rid, revision=1, environment="staging", passed=False,
                       tester="T"),
        ])
        for i in range(TIMELINE_ROWS + 5):
            for release_id in (rid, oid):
                await q.add_audit(s, release_id=release_id, actor=DEV, action=f"step {i}",
                                  from_state=None, to_state="testing", detail={"i": i},
                                  at=NOW + timedelta(seconds=i))
    return rid, oid


def _fields(rows: Any, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows as comparable dicts."""
    many = rows if isinstance(rows, list | tuple) else [rows]
    return [{k: getattr(r, k) for k in type(r).model_fields if k not in skip}
            for r in many if isinstance(r, SQLModel)]


async def test_one_statement_reads_what_each_table_query_reads(deps: Deps) -> None:
    """Approvals, report, ticks, deploys, acceptances, work items, trail and what runs where."""
    rid, _ = await _history(deps)
    async with deps.sessions() as s:
        rows = await release_view_rows(s, rid, full=True, trail=TIMELINE_ROWS,
                                       live_in=("staging", "production", "qa"))
        assert rows is not None
        rel = await q.get_release(s, rid)
        assert _fields(rows.release) == _fields(rel)
        assert _fields(rows.approvals) == _fields(list(await q.approvals_of(s, rel)))
        assert _fields(rows.report) == _fields(await q.latest_report(s, rel))
        assert _fields(rows.ticks) == _fields(list(await q.ticks_of(s, rid)))
        assert _fields(rows.deployments) == _fields(list(await q.deployments_of(s, rid)))
        assert _fields(rows.acceptances) == _fields(list(await q.acceptances_of(s, rel)))
        assert _fields(rows.work_items) == _fields(list(await q.work_items_of(s, rid)))
        trail = list(await q.audit_of(s, rid, last=TIMELINE_ROWS))
        assert _fields(rows.audit, ("detail", "chain")) == _fields(trail, ("detail", "chain"))
        for env in ("staging", "production", "qa"):
            assert _fields(rows.live[env]) == _fields(
                await q.live_deployment(s, "payments", env))
        assert rows.live["production"] is not None and rows.live["qa"] is None
        again = await view_rows_of(s, rel)
        assert again.release is rel and again.audit == [] and again.work_items == []
        assert _fields(again.deployments) == _fields(rows.deployments)
        assert await release_view_rows(s, 10_000) is None


@contextmanager
def statements(deps: Deps) -> Iterator[list[str]]:
    """The SQL statements run inside the block (SQLite's BEGIN and ROLLBACK not counted)."""
    seen: list[str] = []
    engine = deps.sessions.kw["bind"].sync_engine

    def on_sql(_conn: Any, _cur: Any, sql: str, *_: Any) -> None:
        if not sql.startswith(("BEGIN", "ROLLBACK")):
            seen.append(sql)

    event.listen(engine, "before_cursor_execute", on_sql)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", on_sql)


async def test_status_and_list_are_one_statement_each(deps: Deps) -> None:
    """`/release status` and `/release list` each make one round trip for their data."""
    rid, _ = await _history(deps)
    with statements(deps) as seen:
        await status_blocks(deps, rid)
    assert len(seen) == 1, seen
    with statements(deps) as seen:
        title, _ = await list_text(deps, "mine", DEV)
    assert len(seen) == 1 and title == "Your releases", seen
    async with deps.sessions() as s:
        assert await read_view(s, deps.policy, 10_000) is None
