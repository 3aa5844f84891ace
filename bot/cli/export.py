"""`releasebot export`: the audit trail as CSV or JSON, streamed a page at a time."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, Literal, TextIO

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.cli import CommandError
from bot.settings import Settings
from bot.workflow import Event
from storage import queries as q
from storage.db import make_engine, make_sessionmaker
from storage.models import AuditEntry

ExportFormat = Literal["csv", "json"]
COLUMNS = ("id", "release", "at", "actor", "action", "from", "to", "component", "detail")
# The rows about one component's pipeline: the export names the component of each.
DEPLOY_ACTIONS = frozenset(e.value for e in (
    Event.DEPLOY, Event.PIPELINE_STARTED, Event.DEPLOY_SUCCEEDED, Event.DEPLOY_FAILED,
    Event.ROLLBACK, Event.ROLLBACK_SUCCEEDED, Event.ROLLBACK_FAILED, Event.ABANDON))
PAGE = 500  # audit rows read per query: memory stays flat however long the trail is


def parse_since(text: str) -> datetime:
    """`YYYY-MM-DD` as the start of that day in UTC (the export's own timezone)."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a date like 2026-01-31") from None
    return datetime.combine(day, time(0), tzinfo=UTC)


def utc_iso(when: datetime) -> str:
    """ISO 8601 in UTC with a Z, e.g. 2026-11-23T04:00:00.123456Z."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def audit_record(entry: AuditEntry, project: str | None = None) -> dict[str, Any]:
    """One audit row as exported; a deploy row names its component (rows written before
    trains by the release's own project, `project`)."""
    component = None
    if entry.action in DEPLOY_ACTIONS:
        component = entry.detail.get("component") or project
    return {"id": entry.id, "release": f"REL-{entry.release_id}", "at": utc_iso(entry.at),
            "actor": entry.actor, "action": entry.action, "from": entry.from_state,
            "to": entry.to_state, "component": component, "detail": entry.detail}


async def audit_pages(database_url: str, since: datetime | None = None, page: int = PAGE,
                      projects: dict[int, str] | None = None
                      ) -> AsyncIterator[list[AuditEntry]]:
    """The audit trail in id order, a page at a time (keyset paging: no OFFSET rescans).

    `projects`, when given, is filled with the project of each release on the page.
    """
    engine = make_engine(database_url)
    sessions = make_sessionmaker(engine)
    after = 0
    try:
        while True:
            async with sessions() as session:
                rows = list(await q.audit_page(session, after_id=after, since=since, limit=page))
                if projects is not None and rows:
                    projects.update(await q.release_projects(
                        session, {r.release_id for r in rows} - set(projects)))
            if not rows:
                return
            yield rows
            after = rows[-1].id or after
    finally:
        await engine.dispose()


def _csv_writer(out: TextIO) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Write one record / finish, for CSV with a header row."""
    writer = csv.writer(out)
    writer.writerow(COLUMNS)

    def write(record: dict[str, Any]) -> None:
        detail = json.dumps(record["detail"], ensure_ascii=False, sort_keys=True)
        writer.writerow([*(record[c] if record[c] is not None else "" for c in COLUMNS[:-1]),
                         detail])

    return write, lambda: None


def _json_writer(out: TextIO) -> tuple[Callable[[dict[str, Any]], None], Callable[[], None]]:
    """Write one record / finish, as one JSON array written element by element."""
    first = [True]
    out.write("[")

    def write(record: dict[str, Any]) -> None:
        out.write("\n" if first[0] else ",\n")
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True))
        first[0] = False

    return write, lambda: out.write("\n]\n" if not first[0] else "]\n")


WRITERS = {"csv": _csv_writer, "json": _json_writer}


async def export_audit(database_url: str, out: TextIO, *, fmt: ExportFormat,
                       since: datetime | None = None, page: int = PAGE) -> int:
    """Stream the audit trail to `out`; how many rows were written."""
    writer = None  # nothing is written before the first read succeeds: no stray `[` or header
    count = 0
    projects: dict[int, str] = {}
    try:
        async for rows in audit_pages(database_url, since, page, projects):
            write, _ = writer = writer or WRITERS[fmt](out)
            for entry in rows:
                write(audit_record(entry, projects.get(entry.release_id)))
            count += len(rows)
    except SQLAlchemyError as exc:
        shown = make_url(database_url).render_as_string(hide_password=True)
        first = str(getattr(exc, "orig", exc)).splitlines()[0]
        raise CommandError(f"cannot read the audit trail from {shown}: {first} "
                           "(has `releasebot migrate` run?)") from None
    _, finish = writer or WRITERS[fmt](out)
    finish()
    return count


async def run_export(settings: Settings, *, fmt: ExportFormat, since: datetime | None,
                     output: Path | None, out: TextIO, err: TextIO) -> int:
    """`releasebot export`: to a file (UTF-8) or to `out`; a count on `err`.

    The command has checked the database is there (bot.cli._reach_database) before this opens
    the output, so a wrong SQLite path leaves no empty file behind.
    """
    if output is None:
        count = await export_audit(settings.database_url, out, fmt=fmt, since=since)
        out.flush()
    else:
        # Written beside the target and renamed at the end: a failed export leaves no file,
        # and an earlier export at that path stays whole until the new one is.
        part = output.with_name(f".{output.name}.part")
        try:
            with part.open("w", encoding="utf-8", newline="") as file:
                count = await export_audit(settings.database_url, file, fmt=fmt, since=since)
            part.replace(output)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror}") from None
        finally:
            part.unlink(missing_ok=True)
    where = f" to {output}" if output else ""
    print(f"exported {count} audit {'row' if count == 1 else 'rows'}{where}", file=err)
    return 0
