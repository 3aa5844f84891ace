"""`releasebot serve --workers N`: N processes on one port, each a full replica.

The parent migrates the database, checks the port is free and forks the workers; each listens
on the port with SO_REUSEPORT, and the kernel spreads new connections evenly over them (one
shared listening socket would let whichever worker woke first take a whole burst). Each is a whole
replica: its own engine, Bolt app, outbox deliverer and scheduler, kept to exactly once by the
same slot claims and outbox leases as replicas on several machines. The parent serves nothing:
it forwards SIGTERM (and Ctrl-C) to the workers and exits when they have all exited. A worker
that dies on its own stops the others, and the parent exits non-zero, so the service manager
restarts the set; a worker whose parent is gone stops too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy.engine import make_url

from bot.policy import Policy
from bot.settings import Settings

log = logging.getLogger(__name__)
ORPHAN_CHECK_SECONDS = 1.0  # how often a worker looks whether its parent is still there
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>", or "max <period>"


def default_workers(database_url: str) -> int:
    """One per core on PostgreSQL; one on SQLite, whose writers queue on one file lock."""
    if make_url(database_url).get_backend_name() != "postgresql":
        return 1
    return cores()


def cores(cpu_max: Path = CPU_MAX) -> int:
    """The CPUs this process may use: its affinity, capped by a container's CPU quota."""
    count = max(len(os.sched_getaffinity(0)), 1)
    try:
        quota, period = cpu_max.read_text().split()
        return min(count, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no quota
        return count


def serve_workers(settings: Settings, policy: Policy, workers: int, *,
                  socket_mode: bool = False) -> int:
    """Migrate, check the port, fork `workers` replicas of the app; their exit code."""
    port = free_port(settings.host, settings.port)
    shared = _shared_metrics()
    try:
        from bot.app import create_app  # before forking: shared pages
        from bot.app import socket_mode as socket_ctx
        from bot.metrics import Metrics
        from storage.migrate import upgrade

        upgrade(settings.database_url)  # once here, so the workers don't queue on the migration

        def build() -> web.Application:
            app = create_app(settings, policy, migrate=False,
                             measured=Metrics(shared=shared))
            if socket_mode:
                app.cleanup_ctx.append(socket_ctx)
            return app

        return _supervise(_fork(workers, settings.host, port, build))
    finally:
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _fork(workers: int, host: str, port: int,
          build: Callable[[], web.Application]) -> set[int]:
    """Start the workers; their pids."""
    children: set[int] = set()
    for index in range(workers):
        pid = os.fork()
        if pid == 0:  # the worker: serve until told to stop, never return into the parent's code
            code = 1
            try:
                code = _worker(index, host, port, build())
            except Exception:  # the parent sees only the exit code: say why here
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        children.add(pid)
    log.info("listening on %s:%s with %d workers", host, port, workers)
    return children


def _shared_metrics() -> Path | None:
    """A fresh folder where every worker keeps its metrics, for /metrics to sum them.

    prometheus_client reads PROMETHEUS_MULTIPROC_DIR once, when it is first imported, so it is
    set here before anything imports it; if something already has, each worker reports its own.
    """
    if "prometheus_client" in sys.modules:
        log.warning("metrics are per worker: prometheus_client was loaded before the workers")
        return None
    shared = Path(tempfile.mkdtemp(prefix="releasebot-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(shared)
    return shared


def free_port(host: str, port: int) -> int:
    """The port, once it is known nobody else holds it (port 0: a free one, chosen now)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:  # taken, not this machine's address, or no such host
            raise WorkersError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        return int(probe.getsockname()[1])


class WorkersError(Exception):
    """The workers could not start; one line for the operator."""


def _worker(index: int, host: str, port: int, app: web.Application) -> int:
    """One replica on the port; Ctrl-C reaches it as the parent's SIGTERM only."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    loop = asyncio.new_event_loop()
    loop.add_signal_handler(signal.SIGTERM, _stop_once, loop)
    app.cleanup_ctx.append(_orphan_watch(os.getppid()))
    log.info("worker %d started (pid %d)", index, os.getpid())
    web.run_app(app, host=host, port=port, reuse_port=True, print=None, handle_signals=False,
                loop=loop)
    return 0


def _stop_once(loop: asyncio.AbstractEventLoop) -> None:
    """Begin a graceful stop; a second SIGTERM must not cut the stopping short."""
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise web.GracefulExit()


def _orphan_watch(parent: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that stops the worker when its parent is gone (killed, say)."""

    async def watch(_app: web.Application) -> AsyncIterator[None]:
        async def look() -> None:
            while True:
                await asyncio.sleep(ORPHAN_CHECK_SECONDS)
                if os.getppid() != parent:
                    break
            log.warning("the parent process is gone; stopping")
            os.kill(os.getpid(), signal.SIGTERM)

        task = asyncio.create_task(look())
        yield
        task.cancel()

    return watch


def _supervise(children: set[int]) -> int:
    """Forward SIGTERM and SIGINT to the workers; wait for them all; 0 unless one failed."""
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            for pid in children:
                _signal(pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        children.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        if not stopping:
            log.error("worker pid %d exited (%d); stopping the others", pid, exit_code)
            code = exit_code or 1
            stop()
        elif exit_code not in (0, -signal.SIGTERM) and not code:
            code = exit_code if exit_code > 0 else 1
    return code


def _signal(pid: int, signum: int) -> None:
    """Signal a worker that may have exited already."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
