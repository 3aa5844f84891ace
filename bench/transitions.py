"""Figure 3: transitions per second committed, with their audit and outbox rows.

Concurrent workers in one process walk fresh releases through the service functions every
entry point uses: request → attach_report → approve (director) → approve (test lead) →
tick. Each call is one transaction that moves the state and writes one audit row and at
least one outbox row; the counts are checked against the tables afterwards.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import event, text

from bench.common import percentiles, policy
from bot import releases, transition
from bot.people import actor_for
from emulators.sample import DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from storage.db import make_engine, make_sessionmaker

Json = dict[str, Any]
PINNED = "3f2a9c1" + "0" * 33


async def _count(deps: transition.Deps, table: str) -> int:
    """Rows in a table."""
    async with deps.sessions() as session:
        return int((await session.exec(text(f"SELECT count(*) FROM {table}"))).one()[0])  # type: ignore[call-overload]


async def measure(db_url: str, *, seconds: float, workers: int) -> Json:
    """Run `workers` concurrent release walkers for `seconds`; the committed rate."""
    pol = policy()
    engine = make_engine(db_url)
    deps = transition.Deps(sessions=make_sessionmaker(engine), policy=pol)
    who = {u: actor_for(pol, u) for u in (DEV, TESTER, DIRECTOR, LEAD, OPS, DBA)}
    done: Counter[str] = Counter()
    failed: Counter[str] = Counter()
    latency: list[float] = []
    before = {t: await _count(deps, t) for t in ("audit_trail", "outbox")}
    statements = Counter[str]()

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count_sql(_conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
        statements[sql.split(None, 1)[0].upper()] += 1

    def steps(rid: int) -> list[tuple[str, Callable[[], Awaitable[Any]]]]:
        """The transitions after the request, for one release."""
        report = releases.ReportInput(url=f"https://ci.example/r/{rid}", bugs={"A": 0, "C": 1})
        return [
            ("attach_report", lambda: releases.attach_report(
                deps, release_id=rid, actor=who[TESTER], report=report)),
            ("approve", lambda: releases.approve(deps, release_id=rid, actor=who[DIRECTOR])),
            ("approve", lambda: releases.approve(deps, release_id=rid, actor=who[LEAD])),
            ("tick", lambda: releases.tick(deps, release_id=rid, actor=who[OPS], items=(1, 2))),
            ("tick", lambda: releases.tick(deps, release_id=rid, actor=who[DBA], items=(3,))),
        ]

    async def timed(name: str, call: Callable[[], Awaitable[Any]]) -> Any:
        """One transition, counted and timed."""
        started = time.perf_counter()
        try:
            out = await call()
        except Exception as exc:  # counted, reported, never fatal to the run
            failed[f"{name}: {type(exc).__name__}"] += 1
            return None
        latency.append(time.perf_counter() - started)
        done[name] += 1
        return out

    async def walker(end: float) -> None:
        """Walk one release after another until time is up."""
        # A full SHA is pinned as it is at sign-off: the walk needs no GitLab.
        new = releases.NewRelease(project="payments", ref=PINNED, title="Transition bench")
        while time.perf_counter() < end:
            out = await timed("request", lambda: releases.request_release(deps, actor=who[DEV],
                                                                       new=new))
            if out is None:
                continue
            for name, call in steps(out.release.id):
                if time.perf_counter() >= end or await timed(name, call) is None:
                    break

    cpu0, started = time.process_time(), time.perf_counter()
    end = started + seconds
    await asyncio.gather(*(walker(end) for _ in range(workers)))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    event.remove(engine.sync_engine, "before_cursor_execute", _count_sql)
    after = {t: await _count(deps, t) for t in ("audit_trail", "outbox")}
    await engine.dispose()
    total = sum(done.values())
    return {"workers": workers, "seconds": wall, "transitions": total,
            "per_second": total / wall, "by_kind": dict(done), "failed": dict(failed),
            "audit_rows": after["audit_trail"] - before["audit_trail"],
            "outbox_rows": after["outbox"] - before["outbox"],
            "latency": percentiles(latency), "client_cpu_pct": 100 * cpu / wall,
            "cpu_ms_per_transition": 1000 * cpu / max(total, 1),
            "statements_per_transition": {k: round(v / max(total, 1), 2)
                                          for k, v in statements.most_common()}}


async def measure_processes(db_url: str, *, seconds: float, workers: int, processes: int
                            ) -> Json:
    """The same walk from several processes at once (replicas sharing one PostgreSQL)."""
    from bench.common import PYTHON, ROOT, bench_env

    procs = [await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.transitions", db_url, str(seconds), str(workers), cwd=ROOT,
        env=bench_env(), stdout=asyncio.subprocess.PIPE) for _ in range(processes)]
    outs = [json.loads((await p.communicate())[0]) for p in procs]
    total = sum(o["transitions"] for o in outs)
    wall = max(o["seconds"] for o in outs)
    return {"processes": processes, "workers": workers * processes, "seconds": wall,
            "transitions": total, "per_second": sum(o["per_second"] for o in outs),
            "by_kind": dict(sum((Counter(o["by_kind"]) for o in outs), Counter())),
            "failed": dict(sum((Counter(o["failed"]) for o in outs), Counter())),
            "audit_rows": sum(o["audit_rows"] for o in outs),
            "outbox_rows": sum(o["outbox_rows"] for o in outs),
            "latency": max((o["latency"] for o in outs), key=lambda p: p.get("p99", 0)),
            "client_cpu_pct": sum(o["client_cpu_pct"] for o in outs),
            "cpu_ms_per_transition": sum(o["cpu_ms_per_transition"] * o["transitions"]
                                         for o in outs) / max(total, 1),
            "statements_per_transition": outs[0]["statements_per_transition"]}


if __name__ == "__main__":
    url, secs, n = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    print(json.dumps(asyncio.run(measure(url, seconds=secs, workers=n))))
