"""Random event sequences against the real service and database: the invariants always hold."""

from __future__ import annotations

import asyncio
import itertools
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import deploys, releases
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import Refused, State
from emulators.sample import CTO, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from storage import queries as q
from storage.db import make_engine, make_sessionmaker
from tests.fixtures import ROLLBACK_STEPS, FakeClock, gitlab_client, sample_gitlab

PEOPLE = [DEV, TESTER, LEAD, DIRECTOR, OPS, CTO, DBA]
STEPS = ["test", "report_ok", "report_bad", "accept", "approve", "reject", "ref", "tick", "tick_db",
         "override", "deploy", "deploy_prod", "succeed", "fail", "verify_ok", "verify_bad",
         "rollback", "cancel", "close", "arm"]
step_strategy = st.tuples(st.sampled_from(STEPS), st.sampled_from(PEOPLE))


async def _latest_active(deps: Deps, rid: int) -> int | None:
    """The deployment still running, if any."""
    async with deps.sessions() as session:
        active = [d for d in await q.deployments_of(session, rid) if d.status == "pending"]
    return active[-1].id if active else None


async def apply_step(deps: Deps, rid: int, name: str, user: str) -> None:
    """One random thing a person (or GitLab) does; refusals are fine."""
    who = actor_for(deps.policy, user)
    calls: dict[str, Any] = {
        "test": lambda: releases.start_testing(deps, release_id=rid, actor=who),
        "report_ok": lambda: releases.attach_report(deps, release_id=rid, actor=who,
                                               report=ReportInput("https://r/1", {"C": 1})),
        "report_bad": lambda: releases.attach_report(deps, release_id=rid, actor=who,
                                                report=ReportInput("https://r/2", {"A": 2})),
        "accept": lambda: releases.accept_risk(deps, release_id=rid, actor=who, reason="outage"),
        "approve": lambda: releases.approve(deps, release_id=rid, actor=who),
        "reject": lambda: releases.reject(deps, release_id=rid, actor=who, reason="no"),
        "ref": lambda: releases.change_ref(deps, release_id=rid, actor=who, ref="v9"),
        "tick": lambda: releases.tick(deps, release_id=rid, actor=who, items=(1, 2)),
        "tick_db": lambda: releases.tick(deps, release_id=rid, actor=who, items=(3,)),
        "override": lambda: releases.override_gate(deps, release_id=rid, actor=who, reason="x"),
        "deploy": lambda: deploys.start_deploy(deps, release_id=rid, actor=who),
        "deploy_prod": lambda: deploys.start_deploy(deps, release_id=rid, actor=who,
                                                    environment="production"),
        "verify_ok": lambda: deploys.verify(deps, release_id=rid, actor=who, passed=True),
        "verify_bad": lambda: deploys.verify(deps, release_id=rid, actor=who, passed=False,
                                             note="broken"),
        "rollback": lambda: deploys.start_rollback(deps, release_id=rid, actor=who),
        "cancel": lambda: releases.cancel(deps, release_id=rid, actor=who),
        "close": lambda: deploys.close(deps, release_id=rid, actor=who, reason="all quiet"),
        "arm": lambda: releases.arm(deps, release_id=rid, actor=who),
    }
    try:
        if name in ("succeed", "fail"):
            dep = await _latest_active(deps, rid)
            if dep is not None:
                await deploys.finish_deploy(deps, deployment_id=dep,
                                            status="success" if name == "succeed" else "failed")
            return
        await calls[name]()
    except Refused:
        pass


async def check_invariants(deps: Deps, rid: int) -> None:
    """State known; audit chained one row per transition; no deploy without its gates."""
    async with deps.sessions() as session:
        release = await q.get_release(session, rid)
        audit = await q.audit_of(session, rid)
        deployments = await q.deployments_of(session, rid)
        approvals = await q.approvals_of(session, release, current_only=False)
        ticks = {t.item for t in await q.ticks_of(session, rid)}
        passed = {(a.revision, a.environment) for a in
                  await q.acceptances_of(session, release, current_only=False) if a.passed}
        events = [m for m in await q.pending_outbox(session, now=deps.clock(), limit=10_000)
                  if m.release_id == rid and m.kind == "event"]
    assert State(release.state) in set(State)
    assert audit[0].from_state is None
    for before, after in itertools.pairwise(audit):
        assert after.from_state == before.to_state
    assert audit[-1].to_state == release.state
    assert len(events) == len(audit)
    for dep in (d for d in deployments if not d.rollback):
        signed = {a.role: a.approver for a in approvals if a.revision == dep.revision}
        assert set(signed) == {"tech_director", "test_lead"}
        assert release.requester not in signed.values()
        assert ticks == {1, 2, 3}
        if dep.environment == "production":  # never past an environment not accepted
            assert (dep.revision, "staging") in passed


async def run_sequence(url: str, steps: list[tuple[str, str]]) -> str:
    """File a release, run the steps, check after each; the final state."""
    engine = make_engine(url)
    async with sample_gitlab() as gitlab:
        deps = Deps(make_sessionmaker(engine), sample_policy(), FakeClock(),
                    gitlab=gitlab_client(gitlab))
        try:
            return await _run_steps(deps, steps)
        finally:
            await engine.dispose()


async def _run_steps(deps: Deps, steps: list[tuple[str, str]]) -> str:
    """File a release and run the steps, checking the invariants after each; the final state."""
    out = await releases.request_release(
        deps, actor=actor_for(deps.policy, "U0DEV"),
        new=NewRelease(project="payments", ref="v1", title="Random", plan=ROLLBACK_STEPS))
    for name, user in steps:
        await apply_step(deps, out.release.id, name, user)
        await check_invariants(deps, out.release.id)
    async with deps.sessions() as session:
        return (await q.get_release(session, out.release.id)).state


@pytest.fixture(scope="module")
def sqlite_db(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """One database for all examples (each example files its own release)."""
    path = tmp_path_factory.mktemp("prop") / "prop.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step_strategy, min_size=1, max_size=30))
def test_random_sequences_keep_the_invariants(sqlite_db: str, steps: list[tuple[str, str]]
                                              ) -> None:
    """Whatever people click, in whatever order, the rules hold."""
    assert asyncio.run(run_sequence(sqlite_db, steps)) in {s.value for s in State}


def test_a_known_good_sequence_reaches_closed(sqlite_db: str) -> None:
    """The strategy can reach the end: the property test is not vacuous."""
    steps = [("report_ok", "U0TESTER"), ("approve", "U0DIRECTOR"), ("approve", "U0TESTLEAD"),
             ("tick", "U0OPS"), ("tick_db", "U0DBA"), ("deploy", "U0OPS"), ("succeed", "U0OPS"),
             ("verify_ok", "U0TESTER"), ("deploy", "U0OPS"), ("succeed", "U0OPS"),
             ("verify_ok", "U0TESTER"), ("close", "U0OPS"),
             ("close", "U0CTO")]  # the release manager waits: observation
    assert asyncio.run(run_sequence(sqlite_db, steps)) == "closed"
