"""`python -m bench.profiled OUTDIR`: `releasebot serve` under cProfile, counting SQL statements.

Run by `bench.profile`. On SIGUSR1 it writes what it saw since the last signal (the profile to
`OUTDIR/N.prof` unless `--no-cprofile`; the statements and server CPU to `OUTDIR/N.json`) and
starts afresh, so one server measures each request kind in turn. cProfile sees the event loop's
thread only; SQLite's driver thread shows up in the CPU figure, not in the profile.
"""

from __future__ import annotations

import cProfile
import itertools
import json
import re
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

import storage.db
from bot.cli import main

_WORDS = re.compile(r"\s+")


class Recorder:
    """The profile and the statements since the last dump."""

    def __init__(self, out: Path, profiling: bool) -> None:
        self.out, self.serial, self.profiling = out, itertools.count(1), profiling
        self.profile = cProfile.Profile()
        self.statements: Counter[str] = Counter()
        self.cpu0 = time.process_time()

    def statement(self, sql: str) -> None:
        """Count one statement by its text (whitespace folded, first 160 characters)."""
        self.statements[_WORDS.sub(" ", sql).strip()[:160]] += 1

    def dump(self, *_: Any) -> None:
        """Write what was seen since the last dump, then start afresh."""
        self.profile.disable()
        n = next(self.serial)
        if self.profiling:
            self.profile.dump_stats(self.out / f"{n}.prof")
        cpu = time.process_time() - self.cpu0
        (self.out / f"{n}.json").write_text(json.dumps(
            {"cpu_s": cpu, "statements": dict(self.statements.most_common())}))
        self.profile, self.statements = cProfile.Profile(), Counter()
        self.cpu0 = time.process_time()
        self.start()

    def start(self) -> None:
        """Profile from now on, if profiling."""
        if self.profiling:
            self.profile.enable()


def _counting(recorder: Recorder) -> Any:
    """storage.db.make_engine, with every statement counted."""
    make = storage.db.make_engine

    def make_engine(url: str, **kw: Any) -> AsyncEngine:
        engine = make(url, **kw)

        @event.listens_for(engine.sync_engine, "before_cursor_execute")
        def _count(_conn: Any, _cur: Any, sql: str, *_: Any) -> None:
            recorder.statement(sql)

        return engine

    return make_engine


def run() -> int:
    """Serve until SIGTERM, dumping on SIGUSR1."""
    args = sys.argv[1:]
    profiling = "--no-cprofile" not in args
    recorder = Recorder(Path(args.pop(0)), profiling)
    import bot.app

    bot.app.make_engine = _counting(recorder)  # type: ignore[attr-defined]
    signal.signal(signal.SIGUSR1, recorder.dump)
    recorder.start()
    try:
        return main(["serve", *(a for a in args if a != "--no-cprofile")])
    finally:
        recorder.profile.disable()


if __name__ == "__main__":
    sys.exit(run())
