"""Run every benchmark and write bench/results.json and docs/benchmarks.md.

`bench/run` (or `python -m bench.run`) runs all sections; `--only ack,history` picks some,
`--quick` shortens every duration for a smoke run (its numbers are not the figures).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

from bench import ack, audit_chain, gitlab_cost, history, slack_cost, transitions
from bench.common import ROOT, database, log, machine, wait_quiet, workdir
from bench.report import write_report

SECTIONS = ("ack", "transitions", "gitlab", "slack", "history", "audit")
Json = dict[str, Any]


async def run_transitions(wd: Path, quick: bool) -> Json:
    """Figure 3 on both databases, with one worker and with sixteen."""
    out: Json = {}
    seconds = 3 if quick else 10
    for kind in ("sqlite", "postgres"):
        for workers in (1, 16):
            async with database(kind, wd) as url:
                log(f"transitions: {kind}, {workers} workers, {seconds} s")
                out[f"{kind}_{workers}"] = await transitions.measure(
                    url, seconds=seconds, workers=workers)
    async with database("postgres", wd) as url:
        log(f"transitions: postgres, 2 processes × 8 workers, {seconds} s")
        out["postgres_2x8"] = await transitions.measure_processes(
            url, seconds=seconds, workers=8, processes=2)
    return out


async def main(args: argparse.Namespace) -> Json:
    """The chosen sections, in order; results as one JSON object."""
    only = args.only.split(",") if args.only else list(SECTIONS)
    results: Json = {"machine": args.machine, "quick": args.quick,
                     "sections": dict(args.earlier)}
    started = time.perf_counter()
    async with workdir() as wd:
        for section in only:
            busy = await wait_quiet(args.quiet_wait)
            load_before = os.getloadavg()
            t0 = time.perf_counter()
            log(f"== {section}")
            if section == "ack":
                data = await ack.run(
                    wd, dbs=args.ack_db.split(","), duration=5 if args.quick else 30,
                    paced=3 if args.quick else 15, seed_count=1000 if args.quick else 5000,
                    c2c_clicks=20 if args.quick else 200, settle=10 if args.quick else 30,
                    workers=tuple(int(n) for n in args.ack_workers.split(",")))
            elif section == "transitions":
                data = await run_transitions(wd, args.quick)
            elif section == "gitlab":
                data = {"cells": await gitlab_cost.measure(wd)}
            elif section == "slack":
                data = await slack_cost.measure(wd)
            elif section == "history":
                data = await history.measure(
                    wd, kinds=["sqlite", "postgres"],
                    releases=10_000 if args.quick else 100_000)
            elif section == "audit":
                data = await audit_chain.measure(
                    wd, seconds=3 if args.quick else 10,
                    releases=1000 if args.quick else 10_000)
            else:
                raise SystemExit(f"unknown section {section!r}; choose from {SECTIONS}")
            data["_seconds"] = time.perf_counter() - t0
            data["_loadavg_before"] = load_before
            data["_machine_busy_pct_before"] = busy
            data["_date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            data["_machine"] = args.machine
            results["sections"][section] = data
    results["total_seconds"] = sum(v.get("_seconds", 0) for v in results["sections"].values())
    results["wall_seconds"] = time.perf_counter() - started
    return results


def cli() -> None:
    """Parse arguments, run, write the results and the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--merge", action="store_true",
                        help="replace only the sections run in an existing --json file")
    parser.add_argument("--ack-db", default="sqlite,postgres",
                        help="databases for the bot in the ack run (default: both)")
    parser.add_argument("--ack-workers", default="1,2",
                        help="`serve --workers` counts for the bot in the ack run (default: 1,2)")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="seconds to wait for other work on the machine to stop before "
                        "each section (default 60)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"),
                        help="where the raw results go")
    parser.add_argument("--report", default=str(ROOT / "docs" / "benchmarks.md"),
                        help="where the report goes ('' for none)")
    args = parser.parse_args()
    args.machine = machine()
    args.earlier, first_machine = {}, None
    if args.merge and Path(args.json).exists():  # keep the other sections of an earlier run
        earlier = json.loads(Path(args.json).read_text())
        args.earlier, first_machine = earlier["sections"], earlier.get("machine")
    results = asyncio.run(main(args))
    if first_machine:  # the report's heading stays that run's; merged sections carry their own
        results["machine"] = first_machine
    Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    log(f"raw results: {args.json}")
    if args.report:
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(write_report(results))
        log(f"report: {args.report}")
    log(f"done in {results['total_seconds']:.0f} s")


if __name__ == "__main__":
    cli()
