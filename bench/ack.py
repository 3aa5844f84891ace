"""Figures 1, 2 and 7: ack latency against the floor, click → channel, start-up and RSS.

Four kinds of process, so nothing measured shares an event loop with what measures it:
the emulators (`bench.emulators`), the server under test (`python -m bot serve`, exactly as
deployed, or the bare Bolt floor `bench.floor`), the load generator (`bench.load`), and this
orchestrator, which only waits, seeds the database before the load and reads /proc.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import text

from bench.common import (
    HOOK_SECRET,
    PYTHON,
    ROOT,
    SECRET,
    bench_env,
    cpu_seconds,
    database,
    free_port,
    log,
    log_summary,
    machine_busy,
    percentiles,
    process_tree,
    rss_mb,
    stop_process,
    tree_cpu_seconds,
    tree_rss_mb,
    wait_healthy,
    write_policy,
)
from bench.seed import sample_blocks, seed_signoff
from emulators.sample import CHANNEL
from storage.db import make_engine

Json = dict[str, Any]
MIX = {"status": 0.4, "list": 0.3, "approve": 0.3}
Proc = asyncio.subprocess.Process


async def start_emulators(wd: Path) -> tuple[Proc, Json]:
    """The emulator process and its URLs."""
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.emulators", cwd=ROOT, env=bench_env(),
        stdout=asyncio.subprocess.PIPE, stderr=(wd / "emulators.log").open("ab"))
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    return proc, json.loads(line)


async def start_server(wd: Path, kind: str, db_url: str, emus: Json, port: int,
                       workers: int = 1) -> tuple[Proc, float]:
    """The bot (`python -m bot serve [--workers N]`) or the floor; the process and seconds
    until it is healthy (with workers: every one of them started)."""
    log_file = (wd / f"{kind}.log").open("ab")
    started = time.perf_counter()
    if kind == "floor":
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bench.floor", str(port), cwd=ROOT, env=bench_env(),
            stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    else:
        env = bench_env(
            SLACK_BOT_TOKEN="xoxb-bench", SLACK_SIGNING_SECRET=SECRET,
            SLACK_API_URL=emus["slack_api"], DATABASE_URL=db_url, GITLAB_URL=emus["gitlab"],
            GITLAB_TOKEN="glpat-bench", GITLAB_WEBHOOK_SECRET=HOOK_SECRET,
            RELEASEBOT_CONFIG=str(write_policy(wd)), HOST="127.0.0.1", PORT=str(port))
        proc = await asyncio.create_subprocess_exec(
            PYTHON, "-m", "bot", "serve", "--workers", str(workers), cwd=wd, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=log_file)
    await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
    if workers > 1:  # the first answer came from one worker: give the others their start-up
        for _ in range(200):
            if len(process_tree(proc.pid)) > workers:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(1.0)
    return proc, time.perf_counter() - started


async def run_load(wd: Path, cfg: Json) -> Json:
    """Run the load generator process on a job; its results."""
    job = wd / f"job-{uuid.uuid4().hex[:8]}.json"
    cfg = {**cfg, "out": str(job.with_suffix(".out.json"))}
    _write(job, json.dumps(cfg))
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bench.load", str(job), cwd=ROOT, env=bench_env(),
        stderr=(wd / "load.log").open("ab"))
    if await asyncio.wait_for(proc.wait(), cfg.get("duration", 60) + 120) != 0:
        raise RuntimeError(f"load generator failed; see {wd / 'load.log'}")
    return dict(json.loads(_read(Path(cfg["out"]))))


def _write(path: Path, text: str) -> None:
    """Write a small file."""
    path.write_text(text)


def _read(path: Path) -> str:
    """Read a small file."""
    return path.read_text()


def summarize(result: Json) -> Json:
    """Percentiles overall and per kind, throughput, status codes, client CPU."""
    everything = [x for samples in result["latency"].values() for x in samples]
    return {"all": percentiles(everything),
            "by_kind": {k: percentiles(v) for k, v in result["latency"].items()},
            "throughput": len(everything) / result["wall"], "statuses": result["statuses"],
            "errors": result["errors"], "client_cpu_pct": 100 * result["client_cpu"] /
            result["wall"]}


async def backlog(db_url: str) -> int:
    """Undelivered outbox rows."""
    engine = make_engine(db_url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT count(*) FROM outbox WHERE sent_at IS NULL"))).scalar_one())
    finally:
        await engine.dispose()


async def drain(db_url: str, within: float) -> tuple[float, int]:
    """Wait for the outbox to empty; (seconds waited, rows left)."""
    started = time.perf_counter()
    left = await backlog(db_url)
    while left and time.perf_counter() - started < within:
        await asyncio.sleep(0.5)
        left = await backlog(db_url)
    return time.perf_counter() - started, left


async def emulator_json(emus: Json, path: str) -> Json:
    """GET one of the bench emulator's routes."""
    async with aiohttp.ClientSession() as http, http.get(emus["slack_root"] + path) as resp:
        return dict(await resp.json())


def click_latencies_under_load(approvals: list[list[Any]], pool: dict[int, str],
                               updates: list[list[Any]], gave_up: float) -> Json:
    """For each first-time approval: seconds until the next chat.update of its card.

    A click whose update had not come when we stopped waiting counts as `gave_up`.
    """
    arrivals: dict[str, list[float]] = defaultdict(list)
    for ts, at, _same in updates:
        arrivals[ts].append(at)
    samples, missing = [], 0
    for rid, _user, sent, dup in approvals:
        if dup:
            continue
        times = sorted(arrivals.get(pool[int(rid)], []))
        i = bisect.bisect_left(times, sent)
        if i < len(times):
            samples.append(times[i] - sent)
        else:
            samples.append(gave_up - sent)
            missing += 1
    return {**percentiles(samples), "missing": missing}


def answer_latencies(sent: list[list[Any]], responses: list[list[Any]], end: float,
                     gave_up: float) -> Json:
    """Per kind: seconds from a request to its private answer reaching Slack.

    An answer that had not arrived when we stopped waiting (`gave_up`) counts as arriving
    then, so percentiles are lower bounds when `missing` is not zero.
    """
    arrived = {x[0]: x[1] for x in responses}
    by_kind: dict[str, list[float]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    for rid, kind, sent_at in sent:
        if rid not in arrived:
            missing[kind] += 1
        by_kind[kind].append(arrived.get(rid, gave_up) - sent_at)
    everything = [x for v in by_kind.values() for x in v]
    return {"all": percentiles(everything), "missing": sum(missing.values()),
            "by_kind": {k: {**percentiles(v), "missing": missing[k]}
                        for k, v in by_kind.items()},
            "answered_during_load": sum(1 for x in responses if x[1] <= end),
            "told_busy": sum(1 for x in responses if x[2])}


def base_cfg(emus: Json, url: str, pool: list[tuple[int, str]], status_ids: list[int],
             blocks: list[Json], clients: int) -> Json:
    """The parts of a load job every phase shares."""
    return {"mode": "ack", "url": url, "secret": SECRET, "slack_root": emus["slack_root"],
            "channel": CHANNEL, "card_blocks": blocks, "approve_pool": pool,
            "status_ids": status_ids, "mix": MIX, "clients": clients, "dup_ratio": 0.1}


async def floor_phase(wd: Path, emus: Json, cfg: Json, duration: float, paced: float,
                      think: float) -> Json:
    """The bare Bolt app under the same load."""
    port = free_port()
    proc, startup = await start_server(wd, "floor", "", emus, port)
    try:
        await asyncio.sleep(1)
        idle = rss_mb(proc.pid)
        url = f"http://127.0.0.1:{port}/slack/events"
        out: Json = {"startup_s": startup, "rss_idle": idle}
        if paced:
            log(f"floor: paced ({cfg['clients']} clients, mean think {think} s) for {paced:.0f} s")
            cpu0, busy0 = cpu_seconds(proc.pid), machine_busy()[0]
            res = await run_load(wd, {**cfg, "url": url, "duration": paced, "think": think})
            out["paced"] = {**summarize(res), "server_cpu_pct": 100 * (
                cpu_seconds(proc.pid) - cpu0) / res["wall"],
                "machine_cpu_pct": 100 * (machine_busy()[0] - busy0) / res["wall"]}
        log(f"floor: {cfg['clients']} clients back to back for {duration:.0f} s")
        cpu0, busy0 = cpu_seconds(proc.pid), machine_busy()[0]
        closed = await run_load(wd, {**cfg, "url": url, "duration": duration})
        cpu, busy = cpu_seconds(proc.pid) - cpu0, machine_busy()[0] - busy0
        out["rss_after_load"] = rss_mb(proc.pid)
        out["closed"] = {**summarize(closed), "server_cpu_pct": 100 * cpu / closed["wall"],
                         "machine_cpu_pct": 100 * busy / closed["wall"],
                         "cpu_ms_per_request":
                         1000 * cpu / sum(map(len, closed["latency"].values()))}
        return out
    finally:
        await stop_process(proc)


async def bot_phase(wd: Path, db_kind: str, cfg: Json, duration: float, paced: float,
                    think: float, seed_count: int, c2c_clicks: int, settle: float,
                    workers: int = 1) -> Json:
    """The bot, started as deployed, seeded, clicked one at a time, then loaded."""
    emu_proc, emus = await start_emulators(wd)
    try:
        async with database(db_kind, wd, migrate=False) as db_url:
            return {"workers": workers, **await _bot_run(
                wd, db_kind, db_url, emus, emu_proc, cfg, duration, paced, think, seed_count,
                c2c_clicks, settle, workers)}
    finally:
        await stop_process(emu_proc)


async def settle(db_url: str, emus: Json, answers_from: int, expected: int, within: float
                 ) -> Json:
    """Wait (at most `within` s) for every answer to reach Slack and the outbox to empty."""
    started = time.perf_counter()
    answered_s = delivered_s = None
    while time.perf_counter() - started < within:
        now = time.perf_counter() - started
        if answered_s is None:
            got = (await emulator_json(emus, "/_bench/responses?after=999999999"))["next"]
            if got - answers_from >= expected:
                answered_s = now
        if delivered_s is None and await backlog(db_url) == 0:
            delivered_s = now
        if answered_s is not None and delivered_s is not None:
            break
        await asyncio.sleep(0.5)
    return {"all_answered_after_s": answered_s, "outbox_empty_after_s": delivered_s,
            "waited_s": time.perf_counter() - started,
            "outbox_left": await backlog(db_url)}


async def _measured_load(wd: Path, db_url: str, emus: Json, procs: dict[str, Proc], job: Json,
                         ts_of: dict[int, str], settle_within: float) -> Json:
    """One load run on the bot with CPU, answers, card updates and the settling after it."""
    updates_from = (await emulator_json(emus, "/_bench/updates"))["next"]
    responses_from = (await emulator_json(emus, "/_bench/responses"))["next"]
    cpu0 = {name: tree_cpu_seconds(p.pid) for name, p in procs.items()}
    busy0 = machine_busy()
    started = time.time()
    res = await run_load(wd, job)
    end = started + res["wall"]
    cpu = {name: tree_cpu_seconds(p.pid) - cpu0[name] for name, p in procs.items()}
    busy1 = machine_busy()
    out: Json = {"rss_after_load": tree_rss_mb(procs["server"].pid),
                 "outbox_backlog_at_end": await backlog(db_url)}
    expected = len(res["sent"]) - len(res["inline"])  # the rest were answered in the ack
    out["after_load"] = await settle(db_url, emus, responses_from, expected, settle_within)
    out["rss_after_settle"] = tree_rss_mb(procs["server"].pid)
    gave_up = time.time()
    updates = (await emulator_json(emus, f"/_bench/updates?after={updates_from}"))["updates"]
    responses = (await emulator_json(
        emus, f"/_bench/responses?after={responses_from}"))["responses"] + res["inline"]
    return {**summarize(res), **out, "clicks": len(res["approvals"]),
            **{f"{name}_cpu_pct": 100 * c / res["wall"] for name, c in cpu.items()},
            "machine_cpu_pct": 100 * (busy1[0] - busy0[0]) / res["wall"],
            "answer": answer_latencies(res["sent"], responses, end, gave_up),
            "click_to_channel": click_latencies_under_load(res["approvals"], ts_of, updates,
                                                           gave_up)}


async def cost_per_kind(wd: Path, db_url: str, emus: Json, server: Proc, job: Json,
                        pool: list[tuple[int, str]], seconds: float) -> tuple[Json, int]:
    """Server CPU ms per request of each kind alone (paced, answers awaited); pool used."""
    out: Json = {}
    used = 0
    for kind in ("status", "list", "approve"):
        answers_from = (await emulator_json(emus, "/_bench/responses"))["next"]
        cpu0 = tree_cpu_seconds(server.pid)
        res = await run_load(wd, {**job, "mix": {kind: 1.0}, "approve_pool": pool[used:],
                                  "duration": seconds, "think": 2.5, "dup_ratio": 0.0})
        done = await settle(db_url, emus, answers_from,
                            len(res["sent"]) - len(res["inline"]), 30)
        n = len(res["sent"])
        out[kind] = {"requests": n, "cpu_ms": 1000 * (tree_cpu_seconds(server.pid) - cpu0) / n,
                     "settled": done["all_answered_after_s"] is not None}
        used += len(res["approvals"]) // 2 + 5
    return out, used


async def _bot_run(wd: Path, db_kind: str, db_url: str, emus: Json, emu_proc: Proc, cfg: Json,
                   duration: float, paced: float, think: float, seed_count: int,
                   c2c_clicks: int, settle_s: float, workers: int) -> Json:
    """The body of bot_phase, with the database and emulators up."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/slack/events"
    name = f"{db_kind}, {workers} worker{'s' if workers > 1 else ''}"
    log(f"bot on {name}: starting (fresh database, migrations run at start)")
    proc, startup = await start_server(wd, "bot", db_url, emus, port, workers)
    out: Json = {"startup_fresh_db_s": startup}
    procs = {"server": proc, "emulator": emu_proc}
    try:
        idle0 = tree_cpu_seconds(proc.pid)
        await asyncio.sleep(2)
        out["idle_cpu_pct"] = 100 * (tree_cpu_seconds(proc.pid) - idle0) / 2
        out["rss_idle"] = tree_rss_mb(proc.pid)
        seeded, blocks = await seed_signoff(db_url, emus["slack_root"], seed_count + c2c_clicks)
        c2c_pool, pool = seeded[:c2c_clicks], seeded[c2c_clicks:]
        ts_of = dict(seeded)
        log(f"bot on {name}: click → channel, {c2c_clicks} clicks one at a time")
        c2c = await run_load(wd, {"mode": "click2channel", "url": url, "secret": SECRET,
                                  "slack_root": emus["slack_root"], "channel": CHANNEL,
                                  "card_blocks": blocks, "pool": c2c_pool})
        out["click_to_channel_idle"] = {**percentiles(c2c["samples"]),
                                        "missing": c2c["missing"],
                                        "ack": percentiles(c2c["acks"])}
        await drain(db_url, 30)
        status_ids = [rid for rid, _ts in seeded]
        job = {**cfg, **base_cfg(emus, url, pool, status_ids, blocks, cfg["clients"])}
        if paced:
            log(f"bot on {name}: paced ({cfg['clients']} clients, mean think {think} s) "
                f"for {paced:.0f} s")
            out["paced"] = await _measured_load(
                wd, db_url, emus, procs, {**job, "duration": paced, "think": think}, ts_of, 60)
            pool = pool[out["paced"]["clicks"] // 2 + 10:]
        log(f"bot on {name}: server CPU per request, each kind alone")
        out["cost_per_kind"], used = await cost_per_kind(wd, db_url, emus, proc, job, pool,
                                                         6 if paced else 2)
        pool = pool[used:]
        log(f"bot on {name}: {cfg['clients']} clients back to back for {duration:.0f} s")
        closed = await _measured_load(wd, db_url, emus, procs,
                                      {**job, "approve_pool": pool, "duration": duration},
                                      ts_of, settle_s)
        closed["pool_wrapped"] = closed["clicks"] // 2 > len(pool)
        out["closed"] = closed
        out["slack_stats"] = await emulator_json(emus, "/_bench/stats")
    finally:
        await stop_process(proc)
    log(f"bot on {name}: restart on the migrated database")
    proc, warm = await start_server(wd, "bot", db_url, emus, free_port(), workers)
    out["startup_migrated_db_s"] = warm
    await stop_process(proc)
    out["server_log"] = log_summary(wd / "bot.log")
    (wd / "bot.log").rename(wd / f"bot-{db_kind}-{workers}.log")
    return out


async def run(wd: Path, *, dbs: list[str], duration: float = 30, paced: float = 15,
              think: float = 2.0, clients: int = 50, seed_count: int = 5000,
              c2c_clicks: int = 200, settle: float = 30,
              workers: tuple[int, ...] = (1, 2)) -> Json:
    """Floor, then the bot on each database with each number of workers; everything
    figures 1, 2 and 7 need."""
    results: Json = {"clients": clients, "duration_s": duration, "paced_s": paced,
                     "think_s": think, "mix": MIX, "dup_ratio": 0.1, "settle_s": settle}
    cfg = {"clients": clients}
    emu_proc, emus = await start_emulators(wd)
    try:
        floor_cfg = {**cfg, **base_cfg(emus, "", [(i, "1700000000.000100") for i in range(1, 5001)],
                                         list(range(1, 5001)), sample_blocks(), clients)}
        results["floor"] = await floor_phase(wd, emus, floor_cfg, duration, paced, think)
    finally:
        await stop_process(emu_proc)
    for kind in dbs:
        for n in workers:
            key = f"bot_{kind}" if n == 1 else f"bot_{kind}_w{n}"
            results[key] = await bot_phase(wd, kind, cfg, duration, paced, think, seed_count,
                                           c2c_clicks, settle, n)
    return results
