"""Shared pieces of the benchmarks: policy, databases, percentiles, processes."""

from __future__ import annotations

import asyncio
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from emulators.sample import sample_policy_yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SECRET = "bench-signing-secret"
HOOK_SECRET = "bench-hook-secret"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/{db}"
EXTRA_PROJECTS = 10  # p0..p9, for the GitLab cost matrix

# The sample policy plus ten single-environment projects, for the GitLab cost matrix.
POLICY_YAML = sample_policy_yaml(projects={
    f"p{i}": {"gitlab": f"acme/p{i}", "environments": ["production"]}
    for i in range(EXTRA_PROJECTS)})


class FakeClock:
    """A clock the benchmark moves by hand (shared by the app and the GitLab emulator)."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        """The current fake time."""
        return self.now

    def advance(self, **kw: float) -> None:
        """Move time forward."""
        self.now += timedelta(**kw)


def policy() -> Any:
    """The benchmark policy (the tests' policy plus ten single-environment projects)."""
    from bot.policy import parse_policy

    return parse_policy(POLICY_YAML)


def write_policy(directory: Path) -> Path:
    """The policy as a file, for a server process."""
    path = directory / "releasebot.yml"
    path.write_text(POLICY_YAML)
    return path


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """n, p50, p95, p99, max and mean of samples in milliseconds (input in seconds)."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)

    def pct(p: float) -> float:
        """Nearest-rank percentile."""
        k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[k] * 1000

    return {"n": len(ordered), "p50": pct(50), "p95": pct(95), "p99": pct(99),
            "max": ordered[-1] * 1000, "mean": statistics.fmean(ordered) * 1000}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """The process and every process below it (`serve --workers`: the parent and its workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, todo = [pid], [pid]
    while todo:
        above = todo.pop()
        below = [child for child, parent in parents.items() if parent == above]
        tree += below
        todo += below
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of the process and all processes below it so far (gone ones not counted)."""
    total = 0.0
    for each in process_tree(pid):
        try:
            total += cpu_seconds(each)
        except OSError:
            continue
    return total


def tree_rss_mb(pid: int) -> dict[str, float]:
    """The largest VmRSS and VmHWM of any process in the tree: the per-process figure."""
    found = [rss_mb(each) for each in process_tree(pid) if Path(f"/proc/{each}").exists()]
    return {key: max((r.get(key, 0.0) for r in found), default=0.0)
            for key in ("VmRSS", "VmHWM")}


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, all cores."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (total - idle) / tick, total / tick


async def wait_quiet(within: float, busy_pct: float = 25.0) -> float:
    """Wait (at most `within` s) until the machine is nearly idle; its busy % when we go."""
    started = time.perf_counter()
    while True:
        b0 = machine_busy()[0]
        await asyncio.sleep(1.0)
        busy = 100 * (machine_busy()[0] - b0)
        if busy < busy_pct or time.perf_counter() - started > within:
            return busy


def machine() -> dict[str, str]:
    """What this ran on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version(),
            "kernel": platform.release(), "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "postgres": _pg_version(), "revision": _revision()}


def _revision() -> str:
    """The commit measured, and whether the work tree had uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (f" + uncommitted changes in {len(dirty.splitlines())} files" if dirty else "")


def _pg_version() -> str:
    """The PostgreSQL server's version, if it answers."""
    try:
        return asyncio.run(_pg_fetch("SHOW server_version"))
    except Exception:  # only informative
        return "unreachable"


async def _pg_fetch(sql: str) -> str:
    """One value from the admin database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        return str(await conn.fetchval(sql))
    finally:
        await conn.close()


async def pg_admin(sql: str) -> None:
    """One administrative statement on the server's `test` database."""
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _remove_sqlite(path: Path) -> None:
    """A SQLite file with its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


@asynccontextmanager
async def database(kind: str, workdir: Path, *, migrate: bool = True) -> AsyncIterator[str]:
    """A fresh (migrated) database URL of `kind` (sqlite or postgres), dropped afterwards."""
    from storage.migrate import upgrade_async

    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        if migrate:
            await upgrade_async(url)
        try:
            yield url
        finally:
            _remove_sqlite(path)
        return
    name = f"rb_bench_{uuid.uuid4().hex[:10]}"
    await pg_admin(f"CREATE DATABASE {name}")
    url = PG_URL.format(db=name)
    try:
        if migrate:
            await upgrade_async(url)
        yield url
    finally:
        await pg_admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def workdir() -> AsyncIterator[Path]:
    """A scratch directory, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="rb-bench-"))
    try:
        yield path
    finally:
        if os.environ.get("BENCH_KEEP") != "1":
            shutil.rmtree(path, ignore_errors=True)


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for a child process: this repo importable, no stray .env surprises."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "GITLAB_"))}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if "PYTHONPATH" in env
                                     else "")
    env.update(extra)
    return env


async def wait_healthy(url: str, proc: subprocess.Popen[bytes] | asyncio.subprocess.Process,
                       within: float = 60.0) -> float:
    """Poll `url` until it answers 200; seconds waited (raises if the process dies)."""
    import aiohttp

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < within:
            if proc.returncode is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before healthy")
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except (aiohttp.ClientError, TimeoutError, OSError):
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError(f"{url} not healthy within {within} s")


async def stop_process(proc: asyncio.subprocess.Process, within: float = 10.0) -> None:
    """SIGTERM the process we started, then SIGKILL it if it lingers."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), within)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def log_summary(path: Path, top: int = 5) -> dict[str, Any]:
    """Lines of a JSON-lines server log by level, and the commonest warnings and errors."""
    import json
    from collections import Counter

    levels: Counter[str] = Counter()
    problems: Counter[str] = Counter()
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
            level, message = record.get("level", "?"), str(record.get("message", ""))
            if record.get("error"):  # the exception says more than the varying message
                message = str(record["error"]).strip().splitlines()[-1]
        except ValueError:
            level, message = "raw", line
        levels[level] += 1
        if level in ("warning", "error", "critical", "raw"):
            problems[message[:160]] += 1
    return {"levels": dict(levels), "top": problems.most_common(top)}


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)
