"""The database engine, sessions, and the one way to run a transaction."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.queries import append_audit

SessionMaker = async_sessionmaker[AsyncSession]
WRITE_OPTION = "releasebot_write"
ONE_READ_OPTION = "releasebot_one_read"


def make_engine(url: str, **kw: Any) -> AsyncEngine:
    """An async engine; on SQLite every transaction takes the write lock up front."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        kw.setdefault("pool_size", 10)
        kw.setdefault("max_overflow", 20)
        kw.setdefault("pool_recycle", 1800)  # instead of a pre-ping round trip per checkout
        # A generic plan for `state IN (…)` can scan every release; plan each query for its values.
        kw.setdefault("connect_args", {"server_settings": {"plan_cache_mode": "force_custom_plan"}})
        return create_async_engine(url, **kw)
    engine = create_async_engine(url, connect_args={"timeout": 30}, **kw)
    _serialize_sqlite_writers(engine)
    return engine


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    """BEGIN IMMEDIATE for writers: they queue instead of deadlocking on a lock upgrade."""

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let the "begin" hook below issue BEGIN itself
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        # Writers take the lock up front so they queue; readers stay deferred and never block;
        # a single read statement is consistent by itself and needs no BEGIN (a round trip).
        options = conn.get_execution_options()
        if options.get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif not options.get(ONE_READ_OPTION):
            conn.exec_driver_sql("BEGIN")


async def unreachable(url: str, within: float = 10.0, *, existing: bool = False) -> str | None:
    """Why the database can't be used right now, in a few words; None when it answers.

    `existing`: the command only reads, so a SQLite file not made yet is missing, not new.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":  # the stdlib: aiosqlite's thread outlives a failure
        return _sqlite_unopenable(parsed.database or ":memory:", existing)
    engine = make_engine(url)  # its pool opens one connection, on first use
    try:
        async with asyncio.timeout(within), engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return f"no answer within {within:g} s"
    except OSError as exc:  # refused, unknown host, no route: the socket's own words
        return os.strerror(exc.errno) if exc.errno and exc.errno > 0 else str(exc.strerror or exc)
    except SQLAlchemyError as exc:  # the server answered: no such database, a wrong password
        return str(getattr(exc, "orig", None) or exc).splitlines()[0]
    finally:
        await engine.dispose()
    return None


def _sqlite_unopenable(path: str, existing: bool) -> str | None:
    """Why SQLite can't use the file, or None; nothing is created (migrate does that)."""
    if path in ("", ":memory:"):
        return None
    file = Path(path)
    if not file.exists():
        if not file.parent.is_dir():
            return f"there is no folder {file.parent}"
        return f"there is no file {file}" if existing else None
    try:
        with closing(sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master")
    except sqlite3.Error as exc:
        return str(exc)
    return None


def make_sessionmaker(engine: AsyncEngine) -> SessionMaker:
    """Sessions whose objects stay readable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: SessionMaker) -> AsyncIterator[AsyncSession]:
    """One unit of work that writes: commits on success, rolls back on any error."""
    async with sessions() as session:
        await session.connection(execution_options={WRITE_OPTION: True})
        try:
            yield session
            await append_audit(session)  # last: the chain's lock is held only to the commit
        except BaseException:
            await session.rollback()
            raise
        await session.commit()


@asynccontextmanager
async def one_read(sessions: SessionMaker) -> AsyncIterator[AsyncSession]:
    """A session for a single read statement: on SQLite it runs without BEGIN."""
    async with sessions() as session:
        await session.connection(execution_options={ONE_READ_OPTION: True})
        yield session
