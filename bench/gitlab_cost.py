"""Figure 4: GitLab API calls per poll cycle, by active deploys and the projects they are in.

The bot's own poller (`bot.jobs.Poller`) runs against the GitLab emulator; active deploys
with real (running) pipelines are written straight to the database. Cycles run every 30 s of
(fake) time, as `GITLAB_POLL_SECONDS` defaults to:
- cold: the first cycle (no cursor yet);
- warm: 30 s later (the cursor's one-minute overlap still re-reads every pipeline);
- steady: 2.5 minutes in, nothing changed since the overlap (the normal case while deploys
  run);
- finish: every pipeline has succeeded (results are taken and the releases move);
- after: the cycle after that (nothing active: must be 0).
"""

from __future__ import annotations

import time
from typing import Any

from bench.common import FakeClock, database, policy
from bot.deploys import Deployer
from bot.gitlab import GitLabClient
from bot.jobs import Poller
from bot.transition import Deps
from emulators.gitlab import GitLabEmulator
from emulators.sample import DEV, OPS
from storage.db import make_engine, make_sessionmaker, transaction
from storage.models import Deployment, Release

Json = dict[str, Any]
DEPLOYS = (0, 1, 20, 200)
PROJECTS = (1, 2, 10)


async def _seed(deps: Deps, gitlab: GitLabEmulator, deploys: int, projects: int) -> list[int]:
    """`deploys` running deploys spread round-robin over projects p0..p{projects-1}."""
    pipelines = []
    async with transaction(deps.sessions) as session:
        for i in range(deploys):
            key = f"p{i % projects}"
            rel = Release(project=key, ref="main", title=f"load {i}", type="standard",
                          requester=DEV, state="deploying", checklist=[])
            session.add(rel)
            await session.flush()
            pipeline = gitlab.create_pipeline(f"acme/{key}", "main")
            gitlab.set_status(pipeline.id, "running")
            pipelines.append(pipeline.id)
            session.add(Deployment(release_id=rel.id or 0, revision=1, project=key,
                                   environment=f"env{i}", ref="main", status="running",
                                   pipeline_id=pipeline.id, pipeline_url="http://gl/p",
                                   started_by=OPS, started_at=deps.clock()))
    return pipelines


async def _cycle(poller: Poller, gitlab: GitLabEmulator) -> Json:
    """One poll cycle: GitLab calls made, results taken, milliseconds."""
    gitlab.reset_calls()
    started = time.perf_counter()
    taken = await poller.poll_once()
    return {"calls": len(gitlab.calls), "taken": taken,
            "ms": 1000 * (time.perf_counter() - started)}


async def cell(workdir: Any, deploys: int, projects: int) -> Json:
    """Every cycle kind for one (deploys, projects) cell, on a fresh SQLite database."""
    clock = FakeClock()
    async with GitLabEmulator(token="glpat-bench", clock=clock) as gitlab, \
            database("sqlite", workdir) as url:
        for i in range(projects):
            gitlab.add_project(f"acme/p{i}", id=100 + i)
            gitlab.add_commit(f"acme/p{i}", title="Initial commit")
        engine = make_engine(url)
        deps = Deps(sessions=make_sessionmaker(engine), policy=policy(), clock=clock)
        poller = Poller(deps, Deployer(deps, GitLabClient(gitlab.url, "glpat-bench")))
        try:
            pipelines = await _seed(deps, gitlab, deploys, projects)
            out: Json = {"deploys": deploys, "projects": projects,
                         "active_projects": min(deploys, projects)}
            out["cold"] = await _cycle(poller, gitlab)
            clock.advance(seconds=30)
            out["warm"] = await _cycle(poller, gitlab)
            for _ in range(4):
                clock.advance(seconds=30)
                out["steady"] = await _cycle(poller, gitlab)
            clock.advance(seconds=30)
            for pid in pipelines:
                gitlab.set_status(pid, "success")
            out["finish"] = await _cycle(poller, gitlab)
            clock.advance(seconds=30)
            out["after"] = await _cycle(poller, gitlab)
        finally:
            await engine.dispose()
    return out


async def measure(workdir: Any) -> list[Json]:
    """The whole matrix (a single deploy is in one project however many exist)."""
    return [await cell(workdir, deploys, projects) for deploys in DEPLOYS
            for projects in PROJECTS]
