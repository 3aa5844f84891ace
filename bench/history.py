"""Figure 6: `/release status` and `/release list` with a long history, database part.

History is bulk-loaded (COPY on PostgreSQL, one executemany transaction on SQLite) into a
migrated database: releases over four years in twelve projects by 200 people (one of them
files a tenth of all releases), ten audit rows and ten delivered outbox rows per release,
reports, approvals, deploys, ticks and work items as a real release leaves them; the newest
twenty releases and five forgotten old ones are still in flight. Then the exact database
calls of the two commands are timed, on the big history and on one a tenth of its size:
- status: `read_view(full=True, live=True)`, the one statement `handlers.status.status_blocks`
  reads the release, its rows, its trail and what runs in each environment with;
- list active / mine / all: `queries.release_lines` as `handlers.status.list_text` calls it;
and, for the background jobs that must stay flat too, the outbox and poller queries.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from bench.common import database, percentiles, policy
from bot.readmodel import read_view
from bot.transition import Deps
from emulators.sample import CHANNEL, DIRECTOR, LEAD, OPS
from handlers.status import ACTIVE, list_text, status_blocks
from storage import queries as q
from storage.db import make_engine, make_sessionmaker, one_read
from storage.models import Release, audit_chain

Json = dict[str, Any]
Row = dict[str, Any]
PROJECTS = ["payments", "web", *[f"p{i}" for i in range(10)]]
USERS = [f"U0USER{i:03d}" for i in range(200)]
HEAVY = USERS[0]
TERMINAL = ["closed"] * 80 + ["rejected"] * 8 + ["cancelled"] * 8 + ["rolled_back"] * 4
IN_FLIGHT = ["requested", "testing", "ready_for_signoff", "approved", "deploying", "deployed",
             "observing"]
ACTIONS = ["request", "start testing", "report", "approve", "approve", "tick", "deploy",
           "pipeline started", "deploy succeeded", "close"]
SAMPLES = 200


Table = tuple[str, list[str], Iterator[tuple[Any, ...]]]


class History:
    """Deterministic rows for `releases` releases with `per_release` audit rows each.

    `tables(sqlite)` gives each table's columns and value tuples, with times and JSON already
    in the form the database takes (SQLite: text as SQLAlchemy writes it; PostgreSQL: aware
    datetimes, JSON as text for COPY).
    """

    def __init__(self, releases: int, per_release: int = 10, seed: int = 42) -> None:
        self.n, self.per = releases, per_release
        rng = random.Random(seed)
        start = datetime.now(UTC).replace(microsecond=123456) - timedelta(days=4 * 365)
        step = timedelta(days=4 * 365) / max(releases, 1)
        stale = {releases // k for k in (2, 3, 5, 7, 11)} if releases > 100 else set()
        in_flight = set(range(max(1, releases - 19), releases + 1)) | stale
        self.rows: list[Row] = []
        for rid in range(1, releases + 1):
            project = rng.choice(PROJECTS)
            state = rng.choice(IN_FLIGHT) if rid in in_flight else rng.choice(TERMINAL)
            self.rows.append({
                "id": rid, "project": project, "ref": f"v{rid // 1000}.{rid % 1000}.0",
                "requester": HEAVY if rng.random() < 0.1 else rng.choice(USERS),
                "state": state, "at": start + step * rid,
                "checklist": 2 if project == "payments" else 0})

    def tables(self, sqlite: bool) -> Iterator[Table]:
        """(table, columns, value tuples) in foreign-key order."""
        minutes = [timedelta(minutes=k) for k in range(max(self.per, 10))]

        def ts(value: datetime) -> Any:
            """A time as the database takes it (every value has microseconds)."""
            return str(value)[:26] if sqlite else value

        checklist = [json.dumps([]), json.dumps(["Database backup taken",
                                                 "Rollback plan reviewed"])]
        payloads = [json.dumps({"event": a}) for a in ACTIONS]
        plan = json.dumps({"rollback": "redeploy"})
        details = [json.dumps({"k": k}) for k in range(self.per)]
        yield "releases", RELEASE_COLUMNS, (
            (r["id"], r["project"], r["ref"], "", f"Release {r['id']}: routine changes",
             "standard", r["requester"], r["state"], 1, "", plan,
             checklist[r["checklist"] // 2], CHANNEL, f"{1_600_000_000 + r['id']}.000100",
             "0" * 64, ts(r["at"]), ts(r["at"]), ts(r["at"]),
             ts(r["at"] + timedelta(days=2)) if r["state"] == "closed" else None, 10)
            for r in self.rows)
        yield "audit_trail", ["release_id", "at", "actor", "action", "from_state", "to_state",
                              "detail", "chain"], self.audit_rows(ts, minutes, details)
        yield "outbox", ["release_id", "kind", "payload", "created_at", "sent_at", "attempts"], (
            (r["id"], "event", payloads[k % 10], at, at, 1)
            for r in self.rows for k in range(self.per) for at in [ts(r["at"] + minutes[k])])
        yield "test_reports", ["release_id", "revision", "url", "bugs_a", "bugs_b", "bugs_c",
                               "passes", "reporter", "created_at"], (
            (r["id"], 1, f"https://ci.example/r/{r['id']}", 0, 0, 1, True, USERS[7],
             ts(r["at"])) for r in self.rows)
        yield "approvals", ["release_id", "revision", "role", "approver", "comment",
                            "created_at"], (
            (r["id"], 1, role, who, "", ts(r["at"])) for r in self.rows
            if r["state"] != "cancelled"
            for role, who in (("tech_director", DIRECTOR), ("test_lead", LEAD)))
        yield "deployments", ["release_id", "revision", "project", "environment", "ref",
                              "rollback", "status", "pipeline_id", "pipeline_url",
                              "started_by", "started_at", "finished_at"], (
            (r["id"], 1, r["project"], env, r["ref"], False, "success",
             10_000_000 + r["id"] * 2 + i, "https://gitlab.example/p", OPS, ts(r["at"]),
             ts(r["at"] + minutes[9])) for r in self.rows if r["state"] in DEPLOYED
            for i, env in enumerate(["staging", "production"] if r["project"] == "payments"
                                    else ["production"]))
        yield "checklist_ticks", ["release_id", "item", "ticked_by", "created_at"], (
            (r["id"], i, OPS, ts(r["at"])) for r in self.rows
            for i in range(1, r["checklist"] + 1))
        yield "work_items", ["release_id", "kind", "reference", "title"], (
            (r["id"], "mr", f"!{r['id']}", "") for r in self.rows)

    def audit_rows(self, ts: Callable[[datetime], Any], minutes: list[timedelta],
               details: list[str]) -> Iterator[tuple[Any, ...]]:
        """Audit rows in id order, each chained to the one before as the bot chains them."""
        previous = ""
        for r in self.rows:
            for k in range(self.per):
                at = r["at"] + minutes[k]
                previous = audit_chain(previous, release_id=r["id"], at=at,
                                       actor=r["requester"], action=ACTIONS[k % 10],
                                       from_state="testing", to_state="ready_for_signoff",
                                       detail={"k": k})
                yield (r["id"], ts(at), r["requester"], ACTIONS[k % 10], "testing",
                       "ready_for_signoff", details[k], previous)


RELEASE_COLUMNS = ["id", "project", "ref", "version_label", "title", "type", "requester",
                   "state", "revision", "planned_window", "plan", "checklist",
                   "card_channel", "card_ts",
                   "card_hash", "created_at", "updated_at", "state_since", "closed_at",
                   "version"]
DEPLOYED = {"closed", "rolled_back", "deployed", "observing"}


def load_sqlite(url: str, history: History) -> dict[str, int]:
    """executemany in one transaction per table; rows written per table."""
    conn = sqlite3.connect(make_url(url).database or "")
    counts = {}
    try:
        conn.execute("PRAGMA synchronous=OFF")
        for table, cols, rows in history.tables(sqlite=True):
            sql = (f"INSERT INTO {table} ({', '.join(cols)}) "
                   f"VALUES ({', '.join('?' * len(cols))})")
            with conn:
                counts[table] = conn.executemany(sql, rows).rowcount
    finally:
        conn.close()
    return counts


async def load_postgres(url: str, history: History) -> dict[str, int]:
    """COPY per table (foreign-key triggers off for the load), then ANALYZE; rows per table."""
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    counts = {}
    try:
        await conn.execute("SET session_replication_role = replica")
        for table, cols, rows in history.tables(sqlite=False):
            n = 0
            while batch := list(itertools.islice(rows, 100_000)):
                await conn.copy_records_to_table(table, records=batch, columns=cols)
                n += len(batch)
            counts[table] = n
        await conn.execute("SET session_replication_role = DEFAULT")
        await conn.execute("SELECT setval('releases_id_seq', (SELECT max(id) FROM releases))")
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
    return counts


async def _timed(fn: Callable[[int], Awaitable[Any]], n: int = SAMPLES) -> Json:
    """Percentiles of n calls after a short warm-up."""
    for i in range(20):
        await fn(i)
    samples = []
    for i in range(n):
        started = time.perf_counter()
        await fn(i)
        samples.append(time.perf_counter() - started)
    return percentiles(samples)


async def _plan(engine: Any, url: str, states: list[str]) -> str:
    """The plans for `list_releases(states=…, limit=30)`, on one line each.

    On PostgreSQL both the custom plan (states known) and the generic plan a prepared
    statement switches to after five runs (states as parameters), each with its real timing.
    """
    if engine.dialect.name == "sqlite":
        stmt = (select(Release).where(col(Release.state).in_(states))
                .order_by(col(Release.id).desc()).limit(30))
        sql = str(stmt.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))
        async with engine.connect() as conn:
            rows = (await conn.execute(text("EXPLAIN QUERY PLAN " + sql))).all()
        return " | ".join(str(r[-1]).strip() for r in rows)
    import asyncpg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    params = ", ".join(f"${i + 1}" for i in range(len(states)))
    literal = ", ".join("'" + s.replace("'", "''") + "'" for s in states)
    out = []
    try:
        await conn.execute(f"PREPARE rb_list({', '.join(['varchar'] * len(states))}) AS "
                           f"SELECT * FROM releases WHERE state IN ({params}) "
                           "ORDER BY id DESC LIMIT 30")
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET plan_cache_mode = {mode}")
            rows = await conn.fetch(f"EXPLAIN ANALYZE EXECUTE rb_list({literal})")
            lines = [r[0].strip() for r in rows]
            scan = next((x for x in lines if "Scan" in x), lines[0])
            took = next((x for x in lines if x.startswith("Execution Time")), "")
            out.append(f"{mode.split('_')[1]}: {scan.lstrip('-> ')}; {took}")
    finally:
        await conn.close()
    return " · ".join(out)


async def queries(url: str, history: History) -> Json:
    """The database part of status and list (and the background queries), timed."""
    pol = policy()
    engine = make_engine(url)
    deps = Deps(sessions=make_sessionmaker(engine), policy=pol)
    rng = random.Random(7)
    ids = [rng.randint(1, history.n) for _ in range(SAMPLES + 20)]
    typical = USERS[1 + rng.randrange(len(USERS) - 1)]

    async def status_db(i: int) -> None:
        async with one_read(deps.sessions) as session:
            await read_view(session, pol, ids[i], full=True, live=True)

    def lister(states: list[str] | None, user: str | None) -> Callable[[int], Awaitable[None]]:
        async def run(_i: int) -> None:
            async with one_read(deps.sessions) as session:
                await q.release_lines(session, states=states, user=user, limit=30)
        return run

    def background(call: Callable[[Any], Awaitable[Any]]) -> Callable[[int], Awaitable[None]]:
        async def run(_i: int) -> None:
            async with deps.sessions() as session:
                await call(session)
        return run

    now = datetime.now(UTC)
    try:
        return {"plans": {"list_active": await _plan(engine, url, ACTIVE)},
            "status": await _timed(status_db),
            "list_active": await _timed(lister(ACTIVE, None)),
            "list_mine_heavy_user": await _timed(lister(None, HEAVY)),
            "list_mine_typical_user": await _timed(lister(None, typical)),
            "list_all": await _timed(lister(None, None)),
            "status_with_rendering": await _timed(lambda i: status_blocks(deps, ids[i])),
            "list_with_rendering": await _timed(lambda i: list_text(deps, "active", HEAVY)),
            "outbox_pass": await _timed(background(
                lambda s: q.releases_with_outbox(s, now=now))),
            "outbox_backlog": await _timed(background(q.outbox_backlog)),
            "active_deployments": await _timed(background(q.active_deployments)),
        }
    finally:
        await engine.dispose()


async def measure(workdir: Any, *, kinds: list[str], releases: int = 100_000,
                  per_release: int = 10, small: int = 10_000) -> Json:
    """Load and time on each database, the big history and one a tenth of its size."""
    out: Json = {"releases": releases, "small": small, "audit_rows": releases * per_release}
    for kind in kinds:
        for label, n in (("small", small), ("big", releases)):
            history = History(n, per_release)
            async with database(kind, workdir) as url:
                started = time.perf_counter()
                if kind == "sqlite":
                    counts = await asyncio.to_thread(load_sqlite, url, history)
                else:
                    counts = await load_postgres(url, history)
                loaded = time.perf_counter() - started
                timings = await queries(url, history)
            out[f"{kind}_{label}"] = {"load_s": loaded, "rows": counts, **timings}
    return out
