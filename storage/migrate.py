"""Bring the schema up to date with Alembic."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import SQLModel

from storage import models  # noqa: F401 - registers the tables on SQLModel.metadata
from storage.db import make_engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """Alembic's config pointing at our scripts; no alembic.ini needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Run every pending migration; blocks, and works with or without a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(alembic_config(url), revision)
        return
    # Our env.py drives the async engine with asyncio.run, which needs a thread without a loop.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(command.upgrade, alembic_config(url), revision).result()


async def upgrade_async(url: str, revision: str = "head") -> None:
    """The same, without blocking the running loop."""
    await asyncio.to_thread(upgrade, url, revision)


AUDIT_TABLE = "audit_trail"
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def app_role_grants(role: str, tables: Iterable[str]) -> list[str]:
    """What `serve` needs on PostgreSQL, and no more: the audit trail only read and appended."""
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"{role!r} is not a plain role name (lower-case letters, digits, _)")
    others = ", ".join(sorted(t for t in tables if t != AUDIT_TABLE))
    return [
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {others} TO {role}",
        f"GRANT SELECT, INSERT ON {AUDIT_TABLE} TO {role}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {AUDIT_TABLE} FROM {role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}",
    ]


def grant_app_role(url: str, role: str) -> None:
    """Run `app_role_grants` as the owner, in one transaction (PostgreSQL only)."""
    if make_url(url).get_backend_name() != "postgresql":
        raise ValueError("database roles exist on PostgreSQL only")
    statements = app_role_grants(role, SQLModel.metadata.tables)

    async def run() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.execute(text(sql))
        finally:
            await engine.dispose()

    # Works with or without a running loop, like `upgrade`.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, run()).result()
