"""A release and everything shown about it, read in one statement.

A card shows a release with its approvals, test report, ticks, deploys and acceptances; `status`
adds its work items, its recent trail and what runs in each environment. One statement that
returns it all as one JSON value replaces a round trip per table (on SQLite each is a hop to
the driver's thread and back, on PostgreSQL one over the network). The statement is built and
compiled once per shape and run as plain text, so no per-call statement building or cache-key
walk either, and the rows come back as model instances built without the ORM's per-row
bookkeeping. They are for reading only: they belong to no session.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    Table,
    TextClause,
    bindparam,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import psycopg2
from sqlalchemy.orm import class_mapper
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import (
    Acceptance,
    Approval,
    AuditEntry,
    ChecklistTick,
    Deployment,
    Release,
    ReleaseComponent,
    TestReport,
    TrackerCount,
    UTCDateTime,
    WorkItem,
)

M = TypeVar("M", bound=SQLModel)
_R: Table = Release.__table__  # type: ignore[attr-defined]
# What the timeline shows of an audit row: not its detail, nor its chain value.
_AUDIT_SHOWN = ("id", "release_id", "at", "actor", "action", "from_state", "to_state")


@dataclass(frozen=True)
class ViewRows:
    """A release's rows that people see, each list in id order (ticks by item)."""

    release: Release
    approvals: list[Approval]  # of the current revision
    report: TestReport | None  # the newest of the current revision
    ticks: list[ChecklistTick]
    deployments: list[Deployment]
    acceptances: list[Acceptance]  # of the current revision
    components: list[ReleaseComponent] = field(default_factory=list)  # stored ones, in order
    bug_count: TrackerCount | None = None  # the bug tracker's newest count
    work_items: list[WorkItem] = field(default_factory=list)
    audit: list[AuditEntry] = field(default_factory=list)  # the newest `trail` rows
    live: dict[str, Deployment | None] = field(default_factory=dict)  # environment → last success


async def release_view_rows(session: AsyncSession, release_id: int, *, full: bool = False,
                            trail: int = 25, live_in: Sequence[str] = ()) -> ViewRows | None:
    """The release and its rows (`full`: work items and trail too; `live_in`: what runs there).

    The release comes back detached like its rows: read it, don't change it through this.
    """
    parts = await _read(session, release_id, True, full, trail, live_in)
    if parts is None:
        return None
    return _rows(_detached(Release, parts[0]), parts[1:], full, live_in)


async def view_rows_of(session: AsyncSession, release: Release, *, full: bool = False,
                       trail: int = 25) -> ViewRows:
    """The rows of a release already read (which stays as it is)."""
    parts = await _read(session, int(release.id or 0), False, full, trail, ())
    return _rows(release, parts or [None] * 7, full, ())


async def _read(session: AsyncSession, release_id: int, with_release: bool, full: bool,
                trail: int, live_in: Sequence[str]) -> list[Any] | None:
    """The JSON array the statement returns, parsed; None when there is no such release."""
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    stmt, defaults = _statement(dialect, with_release, full, trail, len(live_in))
    params = {**defaults, "release_id": release_id,
              **{f"env_{i}": env for i, env in enumerate(live_in)}}
    if session.new or session.dirty:  # Core skips the ORM's autoflush: do it for it
        await session.flush()
    conn = await session.connection()  # Core on the session's connection: no ORM step
    value = (await conn.execute(stmt, params)).scalar()
    return json.loads(value) if isinstance(value, str) else value


def _rows(release: Release, parts: Sequence[Any], full: bool,
          live_in: Sequence[str]) -> ViewRows:
    """Model instances from the parsed parts, in the order `_parts` selected them."""
    approvals, report, ticks, deployments, acceptances, components, count, *rest = parts
    work_items, audit = (rest[0], rest[1]) if full else ([], [])
    live = rest[2:] if full else rest
    return ViewRows(
        release=release,
        approvals=_many(Approval, approvals),
        report=_detached(TestReport, report) if report else None,
        ticks=sorted(_many(ChecklistTick, ticks), key=lambda t: t.item),
        deployments=_many(Deployment, deployments),
        acceptances=_many(Acceptance, acceptances),
        components=sorted(_many(ReleaseComponent, components), key=lambda c: c.position),
        bug_count=_detached(TrackerCount, count) if count else None,
        work_items=_many(WorkItem, work_items),
        audit=_many(AuditEntry, audit),
        live={env: _detached(Deployment, d) if d else None
              for env, d in zip(live_in, live, strict=True)})


@cache
def _statement(dialect: str, with_release: bool, full: bool, trail: int,
               live: int) -> tuple[TextClause, dict[str, Any]]:
    """The statement of one shape as text, with the values of its fixed parameters."""
    parts = _parts(dialect, with_release, full, trail, live)
    if dialect == "sqlite":  # a subquery's value loses its JSON type there: parse it again
        stmt = select(func.json_array(*(func.json(p) for p in parts)))
    else:
        stmt = select(func.json_build_array(*parts))
    stmt = stmt.select_from(_R).where(_R.c.id == bindparam("release_id"))
    # Compiled for `text()`: named parameters, and no casts after them.
    named = sqlite.dialect(paramstyle="named") if dialect == "sqlite" else (
        psycopg2.dialect(paramstyle="named"))
    compiled = stmt.compile(dialect=named)
    fixed = {k: v for k, v in compiled.params.items()
             if k != "release_id" and not k.startswith("env_")}
    return text(str(compiled)), fixed


def _parts(dialect: str, with_release: bool, full: bool, trail: int, live: int) -> list[Any]:
    """The JSON parts, each a correlated subquery on the release's row."""
    a, rep = Approval.__table__, TestReport.__table__  # type: ignore[attr-defined]
    tick, dep = ChecklistTick.__table__, Deployment.__table__  # type: ignore[attr-defined]
    acc, work = Acceptance.__table__, WorkItem.__table__  # type: ignore[attr-defined]
    audit: Table = AuditEntry.__table__  # type: ignore[attr-defined]
    comp, count = ReleaseComponent.__table__, TrackerCount.__table__  # type: ignore[attr-defined]
    parts = [_object(dialect, _R)] if with_release else []
    parts += [
        _agg(dialect, a, a.c.release_id == _R.c.id, a.c.revision == _R.c.revision),
        select(_object(dialect, rep))
        .where(rep.c.release_id == _R.c.id, rep.c.revision == _R.c.revision)
        .order_by(rep.c.id.desc()).limit(1).scalar_subquery(),
        _agg(dialect, tick, tick.c.release_id == _R.c.id),
        _agg(dialect, dep, dep.c.release_id == _R.c.id),
        _agg(dialect, acc, acc.c.release_id == _R.c.id, acc.c.revision == _R.c.revision),
        _agg(dialect, comp, comp.c.release_id == _R.c.id),
        select(_object(dialect, count)).where(count.c.release_id == _R.c.id)
        .order_by(count.c.id.desc()).limit(1).scalar_subquery(),
    ]
    if full:
        recent = audit.alias("recent")
        newest = (select(recent.c.id).where(recent.c.release_id == _R.c.id).correlate(_R)
                  .order_by(recent.c.id.desc()).limit(trail))
        parts += [_agg(dialect, work, work.c.release_id == _R.c.id),
                  _agg(dialect, audit, audit.c.id.in_(newest), names=_AUDIT_SHOWN)]
    for i in range(live):  # what the bot last shipped there successfully, whichever release
        parts.append(
            select(_object(dialect, dep))
            .where(dep.c.project == _R.c.project, dep.c.environment == bindparam(f"env_{i}"),
                   dep.c.status == "success")
            .order_by(dep.c.finished_at.desc(), dep.c.id.desc()).limit(1).scalar_subquery())
    return parts


def _agg(dialect: str, table: Table, *where: ColumnElement[bool],
         names: Sequence[str] | None = None) -> Any:
    """A JSON array of the table's matching rows (NULL on PostgreSQL when there are none)."""
    agg = func.json_group_array if dialect == "sqlite" else func.json_agg
    return select(agg(_object(dialect, table, names))).where(*where).scalar_subquery()


def _object(dialect: str, table: Table, names: Sequence[str] | None = None) -> Any:
    """A JSON object of one row: every column, or `names`."""
    build = func.json_object if dialect == "sqlite" else func.json_build_object
    args: list[Any] = []
    for name in names or [c.name for c in table.columns]:
        column = table.c[name]
        if dialect == "sqlite" and isinstance(column.type, JSON):  # stored as text there
            column = func.json(column)
        args += [literal_column(f"'{name}'"), column]
    return build(*args)


def _many(model: type[M], rows: list[dict[str, Any]] | None) -> list[M]:
    """Instances of `model`, in id order."""
    found = [_detached(model, r) for r in rows or ()]
    return sorted(found, key=lambda m: m.id or 0)  # type: ignore[attr-defined]


def _detached(model: type[M], values: dict[str, Any]) -> M:
    """An instance holding stored values as the ORM would load them, in no session."""
    times, flags = _kinds(model)
    for name in times:
        if isinstance(value := values.get(name), str):
            at = datetime.fromisoformat(value)
            values[name] = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    for name in flags:  # SQLite's JSON gives booleans as 0 and 1
        if values.get(name) is not None:
            values[name] = bool(values[name])
    obj = class_mapper(model).class_manager.new_instance()
    obj.__dict__.update(values)
    return obj  # type: ignore[no-any-return]


@cache
def _kinds(model: type[SQLModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The model's timestamp columns and its boolean columns."""
    columns = model.__table__.columns  # type: ignore[attr-defined]
    return (tuple(c.name for c in columns if isinstance(c.type, UTCDateTime)),
            tuple(c.name for c in columns if isinstance(c.type, Boolean)))
