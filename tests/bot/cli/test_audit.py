"""`releasebot audit verify`: the hash chain holds, and an edited or removed row is named."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from sqlalchemy import text
from sqlmodel import col, select

from bot.cli.audit import ChainCheck, verify_chain
from bot.transition import Deps
from storage.db import make_engine
from storage.migrate import upgrade
from storage.models import AuditEntry
from tests.bot.cli.test_export import stored_rows, trail
from tests.fixtures import FakeClock


async def tamper(db_url: str, sql: str) -> None:
    """What someone with the owner's rights could do: lift the guard, change the trail."""
    engine = make_engine(db_url)
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ALTER TABLE audit_trail DISABLE TRIGGER USER"))
        else:
            await conn.execute(text("DROP TRIGGER audit_trail_no_update"))
            await conn.execute(text("DROP TRIGGER audit_trail_no_delete"))
        await conn.execute(text(sql))
    await engine.dispose()


async def verify_command(db_url: str, home: Path) -> tuple[int, str, str]:
    """Run `releasebot audit verify`; exit code, stdout, stderr."""
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "DATABASE_URL": db_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "audit", "verify", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_an_untouched_trail_verifies(deps: Deps, db_url: str, clock: FakeClock,
                                           tmp_path: Path) -> None:
    """Every row the services wrote chains from the one before; the command says so."""
    await trail(deps, clock)
    rows = await stored_rows(deps)
    check = await verify_chain(db_url, page=5)
    assert (check.rows, check.broken_id) == (len(rows), None)
    code, out, _ = await verify_command(db_url, tmp_path)
    assert code == 0 and f"{len(rows)} rows chained" in out


async def test_an_edited_row_is_named(deps: Deps, db_url: str, clock: FakeClock,
                                      tmp_path: Path) -> None:
    """Rewriting who approved breaks the chain exactly at that row; exit code 1."""
    await trail(deps, clock)
    target = next(r for r in await stored_rows(deps) if r["action"] == "approve")
    await tamper(db_url, f"UPDATE audit_trail SET actor = 'U0SOMEONE' WHERE id = {target['id']}")
    assert (await verify_chain(db_url)).broken_id == target["id"]
    code, _, err = await verify_command(db_url, tmp_path)
    assert code == 1 and f"broken at row {target['id']} ({target['release']})" in err
    assert err.count("\n") == 1, err  # one line: the break, no traceback after it


async def test_a_removed_row_breaks_the_next(deps: Deps, db_url: str, clock: FakeClock) -> None:
    """Deleting a row from the middle: the row after it no longer follows."""
    await trail(deps, clock)
    rows = await stored_rows(deps)
    await tamper(db_url, f"DELETE FROM audit_trail WHERE id = {rows[3]['id']}")
    assert (await verify_chain(db_url)).broken_id == rows[4]["id"]


async def test_a_rechained_row_still_breaks_its_successor(deps: Deps, db_url: str,
                                                          clock: FakeClock) -> None:
    """Editing a row and recomputing its own chain value is caught by the next row."""
    await trail(deps, clock)
    async with deps.sessions() as session:
        entries = (await session.exec(select(AuditEntry).order_by(col(AuditEntry.id)))).all()
    edited, before = entries[2], entries[1]
    edited.actor = "U0X"
    forged = edited.chain_from(before.chain)
    await tamper(db_url, f"UPDATE audit_trail SET actor = 'U0X', chain = '{forged}' "
                         f"WHERE id = {edited.id}")
    assert (await verify_chain(db_url)).broken_id == entries[3].id


async def test_migration_chains_rows_written_before_it(tmp_path: Path) -> None:
    """Rows from before the chain existed are chained by the migration, oldest first."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await asyncio.to_thread(upgrade, url, "0002")
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text(
            "INSERT INTO releases (id, project, ref, version_label, title, type, requester, "
            "state, revision, planned_window, rollback_plan, db_scripts, impact, deploy_order, "
            "checklist, created_at, updated_at, state_since, version) VALUES (1, 'web', 'v1', "
            "'', 't', 'standard', 'U0DEV', 'requested', 1, '', '', 0, '', '', '[]', "
            "'2026-11-23 04:00:00', '2026-11-23 04:00:00', '2026-11-23 04:00:00', 1)"))
        for n in range(3):
            await conn.execute(text(
                "INSERT INTO audit_trail (release_id, at, actor, action, from_state, to_state, "
                f"detail) VALUES (1, '2026-11-23 04:0{n}:00', 'U0DEV', 'request', NULL, "
                f"'requested', '{{\"n\": {n}}}')"))
    await engine.dispose()
    await asyncio.to_thread(upgrade, url)
    assert await verify_chain(url) == ChainCheck(3)


async def test_one_row_before_the_break_is_one_row(deps: Deps, db_url: str, clock: FakeClock,
                                                   tmp_path: Path) -> None:
    """The count reads as English: `1 row before it holds`."""
    await trail(deps, clock)
    second = (await stored_rows(deps))[1]
    await tamper(db_url, f"UPDATE audit_trail SET actor = 'U0X' WHERE id = {second['id']}")
    code, _, err = await verify_command(db_url, tmp_path)
    assert code == 1 and err.strip().endswith("; 1 row before it holds"), err
