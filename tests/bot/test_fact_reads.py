"""Each event reads only the stored facts it declares, and its decision never needs the rest."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import event as sa_event

from bot import releases
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from bot.workflow import (
    EVENTS,
    EVERYTHING,
    TABLE,
    Actor,
    Ctx,
    Event,
    Facts,
    Report,
    State,
    Stored,
    TransitionError,
    decide,
)
from emulators.sample import sample_policy
from storage.db import make_engine, make_sessionmaker
from tests.fixtures import SALES_WEEK

# The Facts fields each kind of stored fact fills in.
FIELDS: dict[Stored, tuple[str, ...]] = {
    "report": ("report",), "approvals": ("approvals",), "ticks": ("checklist_done",),
    "deployments": ("deployed_envs", "started_envs", "rollback_ref", "rollback_unpinned"),
    "acceptances": ("accepted_envs",),
    "gate": ("gate_open", "gate_reason", "gate_next"),
    "merge_back": ("merge_back_missing", "merge_back_checked"),
}
DEFAULTS = vars(Facts(state=State.REQUESTED, requester=""))  # what nothing read leaves
ROLES = ("tech_director", "test_lead", "tester", "executive", "release_manager")
USERS = ("U0DEV", "U0A", "U0B", "U0C", "releasebot")
ENVS = ("staging", "production")

reports = st.builds(Report, bugs=st.fixed_dictionaries({s: st.integers(0, 3) for s in "ABC"}),
                    limits=st.just({"A": 0, "B": 0, "C": 1}), accepted=st.booleans())


def facts_in(states: list[State]) -> st.SearchStrategy[Facts]:
    """Facts of a release in one of `states`, everything else drawn freely."""
    return st.builds(
        Facts, state=st.sampled_from(states), requester=st.sampled_from(USERS),
        required_roles=st.lists(st.sampled_from(ROLES[:3]), unique=True, max_size=2).map(tuple),
        approvals=st.dictionaries(st.sampled_from(ROLES[:3]), st.sampled_from(USERS), max_size=2),
        report=st.none() | reports, report_required=st.booleans(),
        allow_known_issues=st.booleans(), bypass_allowed=st.booleans(), gate_open=st.booleans(),
        gate_reason=st.none() | st.just("freeze"), gate_next=st.none() | st.just("tomorrow"),
        gate_overridden=st.booleans(), checklist_total=st.integers(0, 3),
        checklist_done=st.frozensets(st.integers(1, 3)), environments=st.just(ENVS),
        deployed_envs=st.frozensets(st.sampled_from(ENVS)),
        started_envs=st.frozensets(st.sampled_from(ENVS)), has_schedule=st.booleans(),
        rollback_ref=st.none() | st.just("v1"), requester_can_deploy=st.booleans(),
        one_person_many_roles=st.booleans(),
        merge_back_missing=st.sampled_from(((), ("REL-5 (`hotfix/1` @ abc1234)",))),
        merge_back_checked=st.booleans(),
        accepted_envs=st.frozensets(st.sampled_from(ENVS)), armed=st.booleans(),
        rel_id=st.sampled_from(("", "REL-7")))


ctxs = st.builds(
    Ctx, actor=st.builds(Actor, st.sampled_from(USERS), st.frozensets(st.sampled_from(ROLES))),
    reason=st.sampled_from(("", "why")), environment=st.none() | st.sampled_from(ENVS),
    items=st.lists(st.integers(0, 4), max_size=3).map(tuple), report=st.none() | reports)


def unread(full: Facts, reads: frozenset[Stored]) -> Facts:
    """The facts as load_facts leaves them when only `reads` are read."""
    return replace(full, **{name: DEFAULTS[name] for kind in EVERYTHING - reads
                            for name in FIELDS[kind]})


def outcome(facts: Facts, event: Event, ctx: Ctx) -> str:
    """The destination, or the sentence of the refusal."""
    try:
        return decide(facts, event, ctx).value
    except TransitionError as exc:
        return exc.sentence


def test_every_event_declares_its_reads() -> None:
    """A new event must say what it reads rather than silently read everything."""
    assert set(EVENTS) == set(Event)


@pytest.mark.parametrize("event", sorted({t.event for t in TABLE}))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_unread_facts_never_change_a_decision(event: Event, data: st.DataObject) -> None:
    """Guards, selectors and who-checks only look at the facts their event declares."""
    full = data.draw(facts_in([s for t in TABLE if t.event is event for s in t.sources]))
    ctx = data.draw(ctxs)
    assert outcome(unread(full, EVENTS[event].reads), event, ctx) == outcome(full, event, ctx)


async def test_a_sign_off_walk_reads_only_what_it_needs(db_url: str, deps: Deps) -> None:
    """Report, approvals and tick: the row lock and one query each; a request reads its load.

    Besides, each audit row reads the chain's last value (after the chain lock on PostgreSQL).
    """
    engine = make_engine(db_url)
    deps = replace(deps, sessions=make_sessionmaker(engine))
    selects: Counter[str] = Counter()
    kind = [""]

    @sa_event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _count(_conn: Any, _cur: Any, sql: str, *_args: Any) -> None:
        # The audit chain's lock and last-row read are counted apart from the release's facts.
        chain = "audit_trail" in sql or "pg_advisory_xact_lock" in sql
        selects[kind[0] + (" chain" if chain else "")] += sql.lstrip().upper().startswith("SELECT")

    def who(user: str) -> Actor:
        """The actor for a user of the test policy."""
        return actor_for(deps.policy, user)

    kind[0] = "request"
    out = await releases.request_release(deps, actor=who("U0DEV"), new=NewRelease(
        project="payments", ref="v1.1.0", title="Faster checkout"))
    rid = out.release.id
    kind[0] = "report"
    await releases.attach_report(deps, release_id=rid, actor=who("U0TESTER"),
                            report=ReportInput("https://ci/r/1", {"C": 1}))
    for user in ("U0DIRECTOR", "U0TESTLEAD"):
        kind[0] = "approve"
        await releases.approve(deps, release_id=rid, actor=who(user))
    kind[0] = "tick"
    await releases.tick(deps, release_id=rid, actor=who("U0OPS"), items=(1, 2))
    again = await releases.tick(deps, release_id=rid, actor=who("U0OPS"), items=(2,))
    await engine.dispose()
    assert again.to_state is State.APPROVED and again.detail == {"items": [], "done": 2, "total": 3}
    # The passing report runs twice: its first attempt finds the release entering sign-off,
    # reads its components, GitLab resolves their refs outside the transaction, and the second
    # attempt pins each one's commit; in between, the projects' shipped hotfixes are read for
    # the merge-back check. Each approval reads the components and those hotfixes too, to know
    # the stored check still covers every one. Audit rows are chained at commit, so the first
    # attempt, rolled back, never read the chain. A request checks the person's limits before
    # GitLab looks its ref up; a tick that adds nothing writes no audit row.
    per_row = 2 if db_url.startswith("postgresql") else 1
    assert selects == Counter({"request": 2, "report": 7, "approve": 8, "tick": 4,
                               "request chain": per_row, "report chain": per_row,
                               "approve chain": 2 * per_row, "tick chain": per_row})


async def test_an_override_names_the_gate_it_lifts(deps: Deps) -> None:
    """The override reads the gate (its effect does, not its guards): the freeze is recorded."""
    deps.policy = sample_policy(freezes=[SALES_WEEK])
    out = await releases.request_release(
        deps, actor=actor_for(deps.policy, "U0DEV"),
        new=NewRelease(project="web", ref="v1.1.0", title="Hotfix", type="emergency",
                       ground="live_bug", reason="Payouts are down"))
    lifted = await releases.override_gate(deps, release_id=out.release.id, reason="outage",
                                     actor=actor_for(deps.policy, "U0CTO"))
    assert "Sales week" in lifted.detail["gate"]
