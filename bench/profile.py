"""Where a request's server time goes: cProfile and SQL statements per request kind.

`python -m bench.profile [--db sqlite|postgres] [--kinds status,list,approve] [--seconds 8]`
starts the emulators and `releasebot serve` under `bench.profiled`, seeds releases waiting
for sign-off, then sends each kind alone (paced, every answer and card update awaited) and
prints, per kind: server CPU per request, SQL statements per request (commonest first) and
the functions with the most time. Profiles are kept in the scratch directory with
`BENCH_KEEP=1` (`python -m pstats`). The figures of record come from `bench/run`; this is the
magnifying glass.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import pstats
import re
import signal
from pathlib import Path
from typing import Any

from bench.ack import base_cfg, run_load, settle, start_emulators
from bench.common import (
    HOOK_SECRET,
    PYTHON,
    ROOT,
    SECRET,
    bench_env,
    database,
    free_port,
    log,
    stop_process,
    wait_healthy,
    workdir,
    write_policy,
)
from bench.seed import seed_signoff

Json = dict[str, Any]


async def start_profiled(wd: Path, db_url: str, emus: Json, port: int,
                         workers: int) -> asyncio.subprocess.Process:
    """`releasebot serve` under the profiler, healthy."""
    env = bench_env(
        SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=emus["slack_api"], DATABASE_URL=db_url, GITLAB_URL=emus["gitlab"],
        GITLAB_TOKEN="glpat-bench", GITLAB_WEBHOOK_SECRET=HOOK_SECRET,
        RELEASEBOT_CONFIG=str(write_policy(wd)), HOST="127.0.0.1", PORT=str(port))
    flags = ["--no-cprofile"] if SPY.exists() else []
    flags += ["--workers", str(workers)]
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.profiled", str(wd), *flags, cwd=wd, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=(wd / "server.log").open("ab"))
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
    return proc


async def dump(proc: asyncio.subprocess.Process, wd: Path, n: int) -> tuple[Path, Json]:
    """Ask the server for what it saw since the last dump."""
    proc.send_signal(signal.SIGUSR1)
    for _ in range(100):
        if (wd / f"{n}.json").exists():
            await asyncio.sleep(0.2)  # the profile is written before the JSON
            return wd / f"{n}.prof", json.loads((wd / f"{n}.json").read_text())
        await asyncio.sleep(0.1)
    raise RuntimeError("the profiled server wrote nothing")


def report(kind: str, requests: int, prof: Path, seen: Json, top: int) -> str:
    """One kind's figures as text."""
    lines = [f"== {kind}: {requests} requests, server CPU {1000 * seen['cpu_s'] / requests:.2f}"
             f" ms each"]
    statements = seen["statements"]
    if not prof.exists():
        lines[0] += " (py-spy below, cProfile off)"
    total = sum(statements.values())
    lines.append(f"SQL statements per request: {total / requests:.2f}")
    for sql, count in list(statements.items())[:25]:
        lines.append(f"  {count / requests:6.2f}  {sql}")
    for order in ("tottime", "cumulative") if prof.exists() else ():
        out = io.StringIO()
        stats = pstats.Stats(str(prof), stream=out)
        stats.sort_stats(order).print_stats(top)
        body = out.getvalue().split("\n")
        start = next((i for i, line in enumerate(body) if "ncalls" in line), 0)
        lines.append(f"-- by {order}")
        lines += [line for line in body[start:] if line.strip()]
    return "\n".join(lines)


async def profile(args: argparse.Namespace) -> None:
    """Seed, then each kind alone, dumped and reported in turn."""
    async with workdir() as wd:
        emu_proc, emus = await start_emulators(wd)
        try:
            async with database(args.db, wd) as db_url:
                port = free_port()
                proc = await start_profiled(wd, db_url, emus, port, args.workers)
                try:
                    seeded, blocks = await seed_signoff(db_url, emus["slack_root"], 3000)
                    url = f"http://127.0.0.1:{port}/slack/events"
                    job = base_cfg(emus, url, seeded, [r for r, _ in seeded], blocks, 20)
                    await dump(proc, wd, 1)  # start and seeding are not what we measure
                    for n, kind in enumerate(args.kinds.split(","), start=2):
                        answers = (await _json(emus, "/_bench/responses"))["next"]
                        spy = (await start_spy(proc.pid, wd / f"{kind}.spy", args.seconds)
                               if args.spy else None)
                        res = await run_load(wd, {**job, "mix": {kind: 1.0}, "think": 1.0,
                                                  "duration": args.seconds, "dup_ratio": 0.0})
                        job["approve_pool"] = job["approve_pool"][len(res["approvals"]):]
                        await settle(db_url, emus, answers, len(res["sent"]), 30)
                        await asyncio.sleep(0.5)
                        prof, seen = await dump(proc, wd, n)
                        print(report(kind, len(res["sent"]), prof, seen, args.top), flush=True)
                        if spy is not None:
                            await spy.wait()
                            print(spy_report(wd / f"{kind}.spy", args.top), flush=True)
                finally:
                    await stop_process(proc)
        finally:
            await stop_process(emu_proc)


SPY = Path(PYTHON).parent / "py-spy"


async def start_spy(pid: int, out: Path, seconds: float) -> asyncio.subprocess.Process | None:
    """py-spy sampling the server (GIL holders only) while the load runs, if installed."""
    if not SPY.exists():
        return None
    return await asyncio.create_subprocess_exec(
        str(SPY), "record", "--gil", "-r", "250", "-f", "raw", "-d", str(int(seconds)),
        "-p", str(pid), "-o", str(out), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)


def _function(frame: str) -> str:
    """`name (file:line)` without the line, our own files relative to the repository."""
    return re.sub(r":\d+\)$", ")", frame.replace(str(ROOT) + "/", ""))


def spy_report(path: Path, top: int) -> str:
    """Functions by share of samples: inclusive (on the stack) and self (at its top)."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines() if path.exists() else []:
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [_function(f) for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + n
        own[frames[-1]] = own.get(frames[-1], 0) + n
    lines = [f"-- py-spy: {total} samples with the GIL"]
    for title, table in (("inclusive", inclusive), ("self", own)):
        lines.append(f"   {title}:")
        for frame, n in sorted(table.items(), key=lambda x: -x[1])[:top]:
            lines.append(f"  {100 * n / max(total, 1):5.1f}%  {frame[:150]}")
    return "\n".join(lines)


async def _json(emus: Json, path: str) -> Json:
    """GET one of the bench emulator's routes."""
    from bench.ack import emulator_json

    return await emulator_json(emus, path)


def cli() -> None:
    """Parse arguments and profile."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--kinds", default="status,list,approve")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-spy", dest="spy", action="store_false",
                        help="CPU and statements only: no py-spy sampling")
    args = parser.parse_args()
    log(f"profiling on {args.db} (load average {os.getloadavg()[0]:.2f})")
    asyncio.run(profile(args))


if __name__ == "__main__":
    cli()
