"""`releasebot export`: the audit trail as CSV or JSON, whole or since a day."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from bot import deploys, releases
from bot.cli.export import DEPLOY_ACTIONS, export_audit, parse_since, utc_iso
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from emulators.sample import (
    DEV,
    DIRECTOR,
    LEAD,
    OPS,
    TESTER,
)
from storage.models import AuditEntry
from tests.fixtures import ROLLBACK_STEPS, FakeClock


def who(deps: Deps, user: str) -> Any:
    """The actor for a user of the test policy."""
    return actor_for(deps.policy, user)


async def deployed_release(deps: Deps, clock: FakeClock, title: str) -> int:
    """A release taken through report, sign-off, a production deploy and verification."""
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="web", ref="v1.1.0", title=title, plan=ROLLBACK_STEPS))
    rid = out.release.id
    await releases.attach_report(deps, release_id=rid, actor=who(deps, TESTER),
                            report=ReportInput("https://ci/r/1", {"C": 1}))
    for user in (DIRECTOR, LEAD):
        await releases.approve(deps, release_id=rid, actor=who(deps, user), comment="ok, ship it")
    start = await deploys.start_deploy(deps, release_id=rid, actor=who(deps, OPS))
    await deploys.record_pipeline(deps, deployment_id=start.deployment.id, pipeline_id=rid,
                                  url=f"https://gl/p/{rid}")
    clock.advance(minutes=2)
    await deploys.finish_deploy(deps, deployment_id=start.deployment.id, status="success")
    # Verified, so the next release may go to production (one unverified change at a time).
    await deploys.verify(deps, release_id=rid, actor=who(deps, TESTER), passed=True)
    return rid


async def stored_rows(deps: Deps) -> list[dict[str, Any]]:
    """Every audit row, read straight from the table, as the export should show it."""
    async with deps.sessions() as session:
        rows = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    return [{"id": e.id, "release": f"REL-{e.release_id}", "at": utc_iso(e.at),
             "actor": e.actor, "action": e.action, "from": e.from_state, "to": e.to_state,
             "component": e.detail["component"] if e.action in DEPLOY_ACTIONS else None,
             "detail": e.detail} for e in rows]


def parsed_csv(text: str) -> list[dict[str, Any]]:
    """CSV back into records: empty `from` is None, ids are ints, detail is JSON."""
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    return [{**r, "id": int(r["id"]), "from": r["from"] or None,
             "component": r["component"] or None, "detail": json.loads(r["detail"])}
            for r in rows]


async def trail(deps: Deps, clock: FakeClock) -> None:
    """Two releases on one day, a third two days later with awkward text in its reason."""
    await deployed_release(deps, clock, "Checkout")
    await deployed_release(deps, clock, "Footer")
    clock.advance(days=2)
    out = await releases.request_release(deps, actor=who(deps, DEV), new=NewRelease(
        project="payments", ref="main", title="Refunds"))
    await releases.cancel(deps, release_id=out.release.id, actor=who(deps, DEV),
                     reason='not now, "maybe" next week\n急')


async def test_export_round_trips_csv_and_json(deps: Deps, db_url: str,
                                               clock: FakeClock) -> None:
    """Both formats parse back to exactly the stored rows, in id order, across pages."""
    await trail(deps, clock)
    expected = await stored_rows(deps)
    assert len(expected) > 14  # more than two pages of 7
    for fmt in ("csv", "json"):
        out = io.StringIO(newline="")
        count = await export_audit(db_url, out, fmt=fmt, page=7)
        assert count == len(expected)
        got = parsed_csv(out.getvalue()) if fmt == "csv" else json.loads(out.getvalue())
        assert got == expected
    assert expected[-1]["detail"]["reason"] == 'not now, "maybe" next week\n急'
    assert expected[0]["at"].endswith("Z") and expected[0]["release"] == "REL-1"


async def test_export_since_a_day(deps: Deps, db_url: str, clock: FakeClock) -> None:
    """--since keeps the rows from that UTC day on."""
    await trail(deps, clock)
    day = clock.now.date().isoformat()
    out = io.StringIO()
    await export_audit(db_url, out, fmt="json", since=parse_since(day))
    rows = json.loads(out.getvalue())
    assert [(r["release"], r["action"]) for r in rows] == [("REL-3", "request"),
                                                           ("REL-3", "cancel")]
    empty = io.StringIO()
    assert await export_audit(db_url, empty, fmt="json", since=parse_since("2099-01-01")) == 0
    assert json.loads(empty.getvalue()) == []


async def test_export_command_writes_a_file(deps: Deps, db_url: str, clock: FakeClock,
                                            tmp_path: Path) -> None:
    """`releasebot export --format csv --output FILE`: the file, and a count on stderr."""
    await trail(deps, clock)
    target = tmp_path / "audit.csv"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "export", "--format", "csv", "--output", str(target),
        "--since", "2000-01-01", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, stderr.decode()
    rows = parsed_csv(target.read_text(encoding="utf-8"))
    assert rows == await stored_rows(deps)
    assert stderr.decode().strip() == f"exported {len(rows)} audit rows to {target}"


def test_export_of_a_missing_database_is_one_line(tmp_path: Path) -> None:
    """A wrong SQLite path is named, and no empty database is left behind."""
    db = tmp_path / "nope.db"
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "DATABASE_URL": f"sqlite:///{db}"}
    result = subprocess.run([sys.executable, "-m", "bot", "export", "--format", "json"],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"releasebot: cannot use the database sqlite+aiosqlite:///{db}: there is no file {db} "
        "(check DATABASE_URL)")
    assert not db.exists()


def test_since_must_be_a_date() -> None:
    """A malformed --since is refused before anything is read."""
    with pytest.raises(ValueError, match="not a date like 2026-01-31"):
        parse_since("last tuesday")
    assert utc_iso(parse_since("2026-11-23")) == "2026-11-23T00:00:00Z"


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_export_of_an_unmigrated_database_writes_nothing_to_stdout(tmp_path: Path,
                                                                  fmt: str) -> None:
    """The error is one line on stderr; stdout stays empty (no stray `[` or header row)."""
    db = tmp_path / "empty.db"
    db.touch()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": f"sqlite:///{db}"}
    result = subprocess.run([sys.executable, "-m", "bot", "export", "--format", fmt],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("releasebot: cannot read the audit trail from ")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_failed_export_to_a_file_leaves_no_file_and_keeps_the_old_one(tmp_path: Path) -> None:
    """An unreadable trail: no new file, no part file, and an earlier export stays whole."""
    db = tmp_path / "empty.db"
    db.touch()
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "DATABASE_URL": f"sqlite:///{db}"}
    fresh, kept = tmp_path / "new.csv", tmp_path / "kept.json"
    kept.write_text("[]\n", encoding="utf-8")
    for target in (fresh, kept):
        result = subprocess.run(
            [sys.executable, "-m", "bot", "export", "--format", "json", "--output", str(target)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert result.returncode == 1 and "cannot read the audit trail" in result.stderr
    assert not fresh.exists() and kept.read_text(encoding="utf-8") == "[]\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db", "kept.json"]


async def test_an_empty_trail_is_still_a_whole_document(db_url: str) -> None:
    """No rows: `[]` for JSON, the header alone for CSV."""
    out = io.StringIO()
    assert await export_audit(db_url, out, fmt="json") == 0
    assert json.loads(out.getvalue()) == []
    out = io.StringIO()
    await export_audit(db_url, out, fmt="csv")
    assert out.getvalue().splitlines()[0].startswith("id,release,at")
