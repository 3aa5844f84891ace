"""The audit chain's cost, on SQLite and PostgreSQL.

- Transitions per second with and without the chain: figure 3's walk
  (`bench.transitions.measure`) on fresh databases, once as the bot runs and once with each
  audit row appended without its chain (no lock, no read of the newest row, no hash), with 1
  and 16 workers. The time spent inside `queries.append_audit` (the rows a transaction queued,
  written just before its commit) is recorded per transaction in both, so the chain's own cost
  (and on PostgreSQL the wait for its lock) shows apart from the rest.
- `releasebot audit verify` over 100,000 rows: `bench.history`'s bulk load (10,000 releases, ten
  chained audit rows each), then `verify_chain`, what the command runs, timed in process and
  as the command itself (process start included). The chain must hold.
- Seeded databases verify: `bench.seed` writes 2,000 releases in two runs, the second
  continuing the first's chain; `verify_chain` must find it intact.

`python -m bench.audit_chain [--seconds 10] [--quick]` prints the results as JSON; `bench/run
--only audit` runs it as a section of the report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert

import storage.db
from bench import transitions
from bench.common import PYTHON, ROOT, bench_env, database, log, percentiles, workdir
from bench.emulators import BenchSlackEmulator
from bench.history import History, load_postgres, load_sqlite
from bench.seed import seed_signoff
from bot.cli.audit import verify_chain
from storage import queries as q
from storage.models import AuditEntry

Json = dict[str, Any]
KINDS = ("sqlite", "postgres")


async def _unchained(session: Any) -> None:
    """`queries.append_audit` without the chain: the same rows, written the same way."""
    rows = session.info.pop(q._QUEUED_AUDIT, None)
    if rows:
        await session.flush()
        conn = await session.connection()
        await conn.execute(insert(AuditEntry.__table__),  # type: ignore[attr-defined]
                           [{**row, "chain": ""} for row in rows])


@contextmanager
def audit_appends(chained: bool) -> Iterator[list[float]]:
    """Route every transaction's audit append through the chained or the plain version,
    timing each."""
    original = storage.db.append_audit
    append = original if chained else _unchained
    samples: list[float] = []

    async def timed(session: Any) -> None:
        started = time.perf_counter()
        try:
            await append(session)
        finally:
            samples.append(time.perf_counter() - started)

    storage.db.append_audit = timed  # type: ignore[assignment]
    try:
        yield samples
    finally:
        storage.db.append_audit = original  # type: ignore[assignment]


async def with_and_without(wd: Path, kind: str, workers: int, seconds: float) -> Json:
    """The walk with the chain and without it, each on a fresh database."""
    out: Json = {}
    for label, chained in (("chained", True), ("plain", False)):
        async with database(kind, wd) as url:
            log(f"audit chain: {kind}, {workers} workers, {label}, {seconds} s")
            with audit_appends(chained) as samples:
                run = await transitions.measure(url, seconds=seconds, workers=workers)
            if chained:
                check = await verify_chain(url)
                assert check.broken_id is None and check.rows == run["audit_rows"], check
        out[label] = {"per_second": run["per_second"], "transitions": run["transitions"],
                      "failed": run["failed"], "latency": run["latency"],
                      "cpu_ms_per_transition": run["cpu_ms_per_transition"],
                      "append_audit": percentiles(samples)}
    out["cost_pct"] = 100 * (1 - out["chained"]["per_second"] / out["plain"]["per_second"])
    return out


async def verify_time(wd: Path, kind: str, releases: int, per_release: int) -> Json:
    """Load a chained history, then time `audit verify` over it."""
    history = History(releases, per_release)
    started = time.perf_counter()
    chains = sum(1 for _ in history.audit_rows(lambda v: v, [timedelta(minutes=k)
                                                         for k in range(max(per_release, 10))],
                                           ["{}"] * per_release))
    hashing = time.perf_counter() - started
    async with database(kind, wd) as url:
        log(f"audit verify: {kind}, {chains:,} rows")
        if kind == "sqlite":
            await asyncio.to_thread(load_sqlite, url, history)
        else:
            await load_postgres(url, history)
        started = time.perf_counter()
        check = await verify_chain(url)
        in_process = time.perf_counter() - started
        assert check.broken_id is None and check.rows == chains, check
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bot", "audit", "verify", cwd=ROOT,
            env=bench_env(DATABASE_URL=url), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        stdout, stderr = await proc.communicate()
        command = time.perf_counter() - started
        assert proc.returncode == 0, stderr.decode()
    return {"rows": chains, "hash_only_s": hashing, "verify_s": in_process,
            "rows_per_s": chains / in_process, "command_s": command,
            "command_output": stdout.decode().strip()}


async def seeded_verifies(wd: Path, kind: str, count: int) -> Json:
    """`bench.seed` in two runs: the trail it leaves passes `audit verify`."""
    async with database(kind, wd) as url, BenchSlackEmulator() as slack:
        half = count // 2
        await seed_signoff(url, slack.url, half)
        await seed_signoff(url, slack.url, count - half, first_id=half + 1)
        check = await verify_chain(url)
    assert check.broken_id is None and check.rows == 2 * count, check
    return {"releases": count, "audit_rows": check.rows, "intact": True}


async def measure(wd: Path, *, seconds: float = 10.0, releases: int = 10_000,
                  per_release: int = 10) -> Json:
    """Every part on both databases."""
    out: Json = {"seconds": seconds}
    for kind in KINDS:
        out[f"{kind}_seeded"] = await seeded_verifies(wd, kind, 2000)
        for workers in (1, 16):
            out[f"{kind}_{workers}"] = await with_and_without(wd, kind, workers, seconds)
        out[f"{kind}_verify"] = await verify_time(wd, kind, releases, per_release)
    return out


async def main() -> None:
    """Run and print JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true", help="3 s walks, 10,000 verify rows")
    args = parser.parse_args()
    async with workdir() as wd:
        result = await measure(wd, seconds=3 if args.quick else args.seconds,
                               releases=1000 if args.quick else 10_000)
    result["_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["_loadavg"] = os.getloadavg()
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    asyncio.run(main())
