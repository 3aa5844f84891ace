"""What tests share besides pytest fixtures: clocks, a freeze, the PostgreSQL server."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"

# A freeze around the day FakeClock starts on, for `sample_policy(freezes=[SALES_WEEK])`.
SALES_WEEK: dict[str, Any] = {"from": date(2026, 11, 20), "to": date(2026, 11, 30),
                              "reason": "Sales week"}


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # a Monday, 12:00 Shanghai

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, **kw: float) -> None:
        """Move time forward."""
        self.now += timedelta(**kw)


class ShiftClock:
    """Real time moved by an offset: for scenarios where leases and waits must still pass."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        """Now, shifted."""
        return datetime.now(UTC) + self.offset

    def jump_to(self, when: datetime) -> None:
        """From now on, time continues from `when`."""
        self.offset = when - datetime.now(UTC)


def postgres_required() -> bool:
    """PostgreSQL tests fail rather than skip unless a person opts out explicitly."""
    return os.environ.get("RELEASEBOT_SKIP_POSTGRES") != "1"


async def pg_admin(sql: str) -> None:
    """Run one administrative statement on the server's `test` database."""
    conn = await asyncpg.connect(PG_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def pg_admin_sync(sql: str) -> None:
    """The same from sync code, even while a loop runs in this thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, pg_admin(sql)).result()
