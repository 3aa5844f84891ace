"""The few functions that change a release; handlers, webhooks and jobs all go through them."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import calendar
from bot.policy import Policy, PolicyError, ReleaseType
from bot.workflow import (
    SYSTEM,
    Actor,
    Ctx,
    Event,
    Facts,
    Refused,
    Report,
    State,
    decide,
    needs_reason,
    role_to_sign,
)
from storage import queries as q
from storage.db import SessionMaker, transaction
from storage.models import Approval, ChecklistTick, Release, TestReport, WorkItem

Clock = Callable[[], datetime]
BROADCAST = frozenset({"pipeline started", Event.DEPLOY_SUCCEEDED, Event.DEPLOY_FAILED,
                       Event.VERIFY_PASS, Event.VERIFY_FAIL, Event.ROLLBACK_SUCCEEDED,
                       Event.ROLLBACK_FAILED})  # deploys and their results reach the channel
_RETRIES = 8
_ID = re.compile(r"^(?:rel-?)?(\d{1,9})$", re.IGNORECASE)
MAX_TITLE = 4000
MAX_REF = 255


def system_clock() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


@dataclass
class Deps:
    """What the service needs: the database, the policy and a clock (injected in tests)."""

    sessions: SessionMaker
    policy: Policy
    clock: Clock = system_clock
    on_transition: Callable[[str, str], None] | None = None  # metrics: (event, new state)


@dataclass(frozen=True)
class Outcome:
    """What a service call did, for the caller to render."""

    release: Release
    event: str
    from_state: State | None
    to_state: State
    detail: dict[str, Any] = field(default_factory=dict)
    changed: bool = True


def parse_release_id(text: str) -> int:
    """`REL-42`, `rel42` or `42` → 42."""
    match = _ID.match(text.strip())
    if not match:
        raise Refused(f"{text.strip()[:40]!r} is not a release ID; they look like REL-42.")
    return int(match.group(1))


# --- the transaction machinery --------------------------------------------------------------------

async def run_in_transaction(deps: Deps, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run `work` in one transaction, retrying when a concurrent change won the race."""
    for attempt in range(_RETRIES):
        try:
            async with transaction(deps.sessions) as session:
                return await work(session)
        except (StaleDataError, IntegrityError, DBAPIError) as exc:
            if attempt == _RETRIES - 1 or not _is_race(exc):
                raise
            await asyncio.sleep(random.uniform(0.005, 0.05) * (attempt + 1))
    raise AssertionError("unreachable")


def _is_race(exc: Exception) -> bool:
    """Lost races: version check, unique key, serialization failure or deadlock."""
    if isinstance(exc, StaleDataError | IntegrityError):
        return True
    text = str(exc).lower()
    return any(s in text for s in ("deadlock", "could not serialize", "database is locked"))


# The facts kept beyond the release row (and the deploy gate), each computed only for the
# events whose guards, selectors or effects read it (the others keep Facts' empty defaults,
# which tests/bot/test_fact_reads.py checks never change a decision); unlisted: read all.
Stored = Literal["report", "approvals", "ticks", "deployments", "gate"]
EVERYTHING: frozenset[Stored] = frozenset(("report", "approvals", "ticks", "deployments", "gate"))
_NOTHING: frozenset[Stored] = frozenset()
READS: dict[Event, frozenset[Stored]] = {
    Event.START_TESTING: _NOTHING,
    Event.REPORT: frozenset(("approvals",)),  # how many approvals the new report voids
    Event.ACCEPT_RISK: frozenset(("report",)),
    Event.APPROVE: frozenset(("approvals",)),
    Event.REJECT: _NOTHING,
    Event.CHANGE_REF: frozenset(("approvals",)),  # how many approvals the new ref voids
    Event.TICK: frozenset(("ticks",)),  # ticking an item twice adds no second row
    Event.OVERRIDE_GATE: frozenset(("gate",)),  # the closed gate it lifts, for the audit
    Event.HOLD: _NOTHING,
    Event.DEPLOY: frozenset(("approvals", "ticks", "deployments", "gate")),
    Event.DEPLOY_SUCCEEDED: _NOTHING,
    Event.DEPLOY_FAILED: _NOTHING,
    Event.VERIFY_PASS: frozenset(("deployments",)),
    Event.VERIFY_FAIL: frozenset(("deployments",)),
    Event.OBSERVE: _NOTHING,
    Event.CLOSE: _NOTHING,
    Event.ROLLBACK: frozenset(("deployments",)),
    Event.ROLLBACK_SUCCEEDED: _NOTHING,
    Event.ROLLBACK_FAILED: _NOTHING,
    Event.CANCEL: _NOTHING,
}


async def load_facts(session: AsyncSession, deps: Deps, release: Release,
                     reads: frozenset[Stored] = EVERYTHING) -> Facts:
    """What the workflow's guards look at, read inside the transaction (`reads` of the rest)."""
    policy = deps.policy
    type_policy = policy.type_policy(ReleaseType(release.type))
    stored = await _stored_facts(session, release, type_policy.max_open_bugs, reads)
    gate = _gate_facts(deps) if "gate" in reads else {}
    return Facts(
        state=State(release.state), requester=release.requester,
        required_roles=tuple(type_policy.approvers),
        report_required=type_policy.require_test_report,
        allow_known_issues=type_policy.allow_known_issues,
        bypass_allowed=type_policy.bypass_freeze,
        gate_overridden=release.gate_override_by is not None,
        checklist_total=len(release.checklist),
        environments=tuple(policy.project(release.project).environments),
        has_schedule=release.scheduled_at is not None,
        requester_can_deploy=type_policy.requester_can_deploy,
        one_person_many_roles=policy.one_person_many_roles,
        observation=policy.observation_hours > 0,
        **stored, **gate,
    )


async def _stored_facts(session: AsyncSession, release: Release, limits: Any,
                        reads: frozenset[Stored]) -> dict[str, Any]:
    """The facts kept in other tables: one query for each kind the event reads."""
    facts: dict[str, Any] = {}
    if "report" in reads:
        report = await q.latest_report(session, release)
        facts["report"] = _report_facts(report, limits, release)
    if "approvals" in reads:
        approvals = await q.approvals_of(session, release)
        facts["approvals"] = {a.role: a.approver for a in approvals}
    if "ticks" in reads:
        ticks = await q.ticks_of(session, release.id)
        facts["checklist_done"] = frozenset(t.item for t in ticks)
    if "deployments" in reads:
        deployments = await q.deployments_of(session, release.id)
        facts["deployed_envs"] = frozenset(
            d.environment for d in deployments
            if d.status == "success" and not d.rollback and d.revision == release.revision)
        facts["rollback_ref"] = rollback_target(deployments)[1]
    return facts


def _gate_facts(deps: Deps) -> dict[str, Any]:
    """Whether windows and freezes let a deploy start now, as the workflow's facts."""
    gate = calendar.deploy_gate(deps.clock(), deps.policy)
    when = gate.next_allowed
    return {"gate_open": gate.open, "gate_reason": gate.reason,
            "gate_next": calendar.format_local(when, deps.policy) if when else None}


def _report_facts(report: TestReport | None, limits: Any, release: Release) -> Report | None:
    """The stored report as the workflow's value."""
    if report is None:
        return None
    bugs = {"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c}
    return Report(bugs=bugs, limits=_limits(limits), accepted=release.risk_accepted_by is not None)


def _limits(limits: Any) -> dict[str, int]:
    """The go-live standard as a plain mapping."""
    return {"A": limits.A, "B": limits.B, "C": limits.C}


def rollback_target(deployments: Any) -> tuple[str | None, str | None]:
    """(environment, ref) a rollback goes to: what the newest deploy of this release replaced."""
    for dep in reversed(list(deployments)):
        if not dep.rollback and dep.previous_ref:
            return dep.environment, dep.previous_ref
    return None, None


Apply = Callable[[AsyncSession, Release, Facts], Awaitable[dict[str, Any]]]


async def _no_effect(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
    """Events that only move the state."""
    return {}


async def transition(deps: Deps, release_id: int, event: Event, ctx: Ctx,
                     apply: Apply = _no_effect) -> Outcome:
    """Decide, apply, audit and announce one event, all in one transaction."""

    async def work(session: AsyncSession) -> Outcome:
        return await step(session, deps, await locked(session, release_id), event, ctx, apply)

    return await run_in_transaction(deps, work)


async def step(session: AsyncSession, deps: Deps, release: Release, event: Event, ctx: Ctx,
               apply: Apply = _no_effect) -> Outcome:
    """Inside a transaction: check the event against the table, apply it and record it."""
    check_revision(release, ctx.revision)
    facts = await load_facts(session, deps, release, READS.get(event, EVERYTHING))
    dest = decide(facts, event, ctx)
    detail = await apply(session, release, facts)
    return record(session, deps, release, event, ctx.actor, dest, detail)


async def check_event(deps: Deps, *, release_id: int, event: Event, actor: Actor,
                      revision: int | None = None) -> None:
    """Refuse now, changing nothing, what `event` would be refused for apart from its reason.

    A button that opens a form for the reason asks first, so nobody writes a note that the
    table would refuse for another cause; the note itself is checked when the event happens.
    """
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        check_revision(release, revision)
        facts = await load_facts(session, deps, release)
    decide(facts, event, Ctx(actor, reason=_ASKED_NEXT, revision=revision))


_ASKED_NEXT = "(the form asks for it next)"  # a reason, so only the other rules are checked


def check_revision(release: Release, revision: int | None) -> None:
    """A button drawn before a new ref or report must not act on what replaced them."""
    if revision is not None and revision != release.revision:
        raise Refused(f"{release.rel_id} changed since that button was drawn (new ref or test "
                      "report); look at the updated card.")


async def locked(session: AsyncSession, release_id: int) -> Release:
    """The release, row-locked, or a plain refusal."""
    release = await q.lock_release(session, release_id)
    if release is None:
        raise Refused(f"There is no release REL-{release_id}.")
    return release


def record(session: AsyncSession, deps: Deps, release: Release, event: Event | str,
           actor: Actor, dest: State, detail: dict[str, Any], *, created: bool = False
           ) -> Outcome:
    """Move the state, append the audit row and queue the announcement."""
    before = None if created else State(release.state)
    if created:  # its row went in a moment ago with this state and time: no second write
        now = release.state_since
    else:
        now = _move(session, deps, release, dest)
    action = event.value if isinstance(event, Event) else event
    q.add_audit(session, release_id=release.id, actor=actor.user, action=action,
                from_state=before and before.value, to_state=dest.value, detail=detail, at=now)
    q.add_outbox(session, release_id=release.id, kind="event", at=now, payload={
        "event": action, "actor": actor.user, "from": before and before.value, "to": dest.value,
        "detail": detail, "broadcast": event in BROADCAST})
    if dest is State.READY_FOR_SIGNOFF and (before is not dest or detail.get("voided_approvals")):
        _ask_approvers(session, deps, release, now)  # entering sign-off, or signing anew
    if deps.on_transition is not None:
        deps.on_transition(action, dest.value)
    return Outcome(release, action, before, dest, detail)


def _move(session: AsyncSession, deps: Deps, release: Release, dest: State) -> datetime:
    """Set the release's new state; the time it happened."""
    now = deps.clock()
    if dest.value != release.state:
        release.state_since = now
    release.state = dest.value
    release.updated_at = now  # always written, so the version check sees every change
    session.add(release)
    return now


def _ask_approvers(session: AsyncSession, deps: Deps, release: Release, now: datetime) -> None:
    """Queue direct asks to the approvers of roles still missing."""
    roles = deps.policy.type_policy(ReleaseType(release.type)).approvers
    q.add_outbox(session, release_id=release.id, kind="ask", at=now,
                 payload={"roles": list(roles), "revision": release.revision})


# --- request, test, sign-off ----------------------------------------------------------------------

@dataclass(frozen=True)
class NewRelease:
    """Everything a request carries (PROCESS.md step 1)."""

    project: str
    ref: str
    title: str
    type: str = ReleaseType.STANDARD.value
    version_label: str = ""
    scheduled_at: datetime | None = None
    planned_window: str = ""
    work_items: tuple[tuple[str, str], ...] = ()  # (kind, reference)
    rollback_plan: str = ""
    db_scripts: bool = False
    impact: str = ""
    deploy_order: str = ""


def request_problems(new: NewRelease, *, policy: Policy, now: datetime,
                     rollback_plan_required: bool = False) -> dict[str, str]:
    """Every problem with a request, as sentences keyed by the NewRelease field they are about.

    The one-line command can't carry a rollback plan; the form asks for one, so it requires it.
    """
    problems: dict[str, str] = {}
    try:
        policy.project(new.project)
    except PolicyError as exc:
        problems["project"] = str(exc)
    try:
        policy.type_policy(ReleaseType(new.type))
    except (ValueError, PolicyError):
        allowed = ", ".join(t.value for t in ReleaseType if t in policy.policies)
        problems["type"] = f"Unknown release type {new.type[:30]!r}; use one of {allowed}."
    if sentence := ref_problem(new.ref):
        problems["ref"] = sentence
    if not new.title.strip():
        problems["title"] = "Please give the release a title."
    elif len(new.title) > MAX_TITLE:
        problems["title"] = (f"The title is too long ({len(new.title)} characters; "
                             f"at most {MAX_TITLE}).")
    if new.scheduled_at is not None and new.scheduled_at <= now:
        problems["scheduled_at"] = "The planned time is in the past."
    if new.type == ReleaseType.CAMPAIGN and new.scheduled_at is None:
        problems["scheduled_at"] = (
            'A campaign release needs its launch time: --at "YYYY-MM-DD HH:MM".')
    if rollback_plan_required and not new.rollback_plan.strip():
        problems["rollback_plan"] = "How would you roll this back?"
    return problems


def ref_problem(ref: str) -> str | None:
    """Why `ref` can't name one branch, tag or commit, or None when it can."""
    if not ref or len(ref) > MAX_REF or any(c.isspace() for c in ref):
        return f"The ref must be one branch, tag or commit (no spaces, at most {MAX_REF})."
    return None


def reason_problem(reason: str) -> str | None:
    """The table's sentence for a rejection or failed verification without words, or None.

    Their forms ask before they close, so the sentence can stay in the form under the field.
    """
    return needs_reason(_ANY_FACTS, Ctx(SYSTEM, reason=reason))


_ANY_FACTS = Facts(State.REQUESTED, requester="")  # needs_reason reads only the reason


async def request_release(deps: Deps, *, actor: Actor, new: NewRelease) -> Outcome:
    """File a new release (`REL-n`), announce it, and ask testers or approvers."""
    if problems := request_problems(new, policy=deps.policy, now=deps.clock()):
        raise Refused(" ".join(problems.values()))
    type_policy = deps.policy.type_policy(ReleaseType(new.type))
    first = State.REQUESTED if type_policy.require_test_report else State.READY_FOR_SIGNOFF

    async def work(session: AsyncSession) -> Outcome:
        now = deps.clock()
        release = Release(
            project=new.project, ref=new.ref.strip(), version_label=new.version_label,
            title=new.title.strip(), type=new.type, requester=actor.user, state=first.value,
            scheduled_at=new.scheduled_at, planned_window=new.planned_window,
            rollback_plan=new.rollback_plan, db_scripts=new.db_scripts, impact=new.impact,
            deploy_order=new.deploy_order, created_at=now, updated_at=now, state_since=now,
            checklist=list(deps.policy.project(new.project).checklist))
        session.add(release)
        await session.flush()
        for kind, ref in new.work_items:
            session.add(WorkItem(release_id=release.id, kind=kind, reference=ref))
        return record(session, deps, release, "request", actor, first, created=True, detail={
            "project": new.project, "ref": release.ref, "type": new.type})

    return await run_in_transaction(deps, work)


async def start_testing(deps: Deps, *, release_id: int, actor: Actor,
                        revision: int | None = None) -> Outcome:
    """A tester picks the release up."""
    return await transition(deps, release_id, Event.START_TESTING, Ctx(actor, revision=revision))


@dataclass(frozen=True)
class ReportInput:
    """A test report as typed: its link and open bugs by severity."""

    url: str
    bugs: dict[str, int]


def _check_report(report: ReportInput) -> None:
    """A report needs a web link and sane counts."""
    if not re.match(r"^https?://\S+$", report.url) or len(report.url) > 2000:
        raise Refused("The test report must be an http(s) link.")
    if any(k not in "ABC" or not 0 <= v < 100_000 for k, v in report.bugs.items()):
        raise Refused("Bug counts look like A=0 B=1 C=3.")


async def attach_report(deps: Deps, *, release_id: int, actor: Actor, report: ReportInput,
                        revision: int | None = None) -> Outcome:
    """File a test report; a new report voids earlier approvals."""
    _check_report(report)
    bugs = {k: report.bugs.get(k, 0) for k in "ABC"}

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        voided = _void_approvals(release, facts)
        rep = Report(bugs=bugs, limits=_type_limits(deps, release))
        session.add(TestReport(release_id=release.id, revision=release.revision, url=report.url,
                               bugs_a=bugs["A"], bugs_b=bugs["B"], bugs_c=bugs["C"],
                               passes=rep.passes, reporter=actor.user, created_at=deps.clock()))
        return {"url": report.url, "bugs": bugs, "passes": rep.passes,
                "failures": rep.failures, "voided_approvals": voided}

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        ctx = Ctx(actor, report=Report(bugs=bugs, limits=_type_limits(deps, release)),
                  revision=revision)
        return await step(session, deps, release, Event.REPORT, ctx, apply)

    return await run_in_transaction(deps, work)


def _type_limits(deps: Deps, release: Release) -> dict[str, int]:
    """The go-live standard for the release's type."""
    return _limits(deps.policy.type_policy(ReleaseType(release.type)).max_open_bugs)


def _void_approvals(release: Release, facts: Facts) -> int:
    """Start a new revision: earlier approvals and reports stop counting."""
    release.revision += 1
    release.risk_accepted_by = release.risk_reason = None
    return len(facts.approvals)


async def accept_risk(deps: Deps, *, release_id: int, actor: Actor, reason: str) -> Outcome:
    """An executive ships with known issues; the reason is recorded."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.risk_accepted_by, release.risk_reason = actor.user, reason.strip()
        return {"reason": reason.strip(), "failures": facts.report.failures if facts.report else []}

    return await transition(deps, release_id, Event.ACCEPT_RISK, Ctx(actor, reason=reason), apply)


async def approve(deps: Deps, *, release_id: int, actor: Actor, comment: str = "",
                  revision: int | None = None) -> Outcome:
    """Sign off for one role; the last needed approval moves the release on."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        role = role_to_sign(facts, actor)
        seat = (role or "") if facts.one_person_many_roles else ""  # else one row per person
        # The unique keys refuse a concurrent duplicate at commit; the retry then decides anew.
        session.add(Approval(release_id=release.id, revision=release.revision, role=role,
                             approver=actor.user, seat=seat, comment=comment[:3000],
                             created_at=deps.clock()))
        missing = [r for r in facts.missing_roles if r != role]
        return {"role": role, "comment": comment[:3000], "missing": missing}

    ctx = Ctx(actor, reason=comment, revision=revision)
    return await transition(deps, release_id, Event.APPROVE, ctx, apply)


async def reject(deps: Deps, *, release_id: int, actor: Actor, reason: str,
                 revision: int | None = None) -> Outcome:
    """Stop the release; a reason is required."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        return {"reason": reason.strip()}

    ctx = Ctx(actor, reason=reason, revision=revision)
    return await transition(deps, release_id, Event.REJECT, ctx, apply)


async def change_ref(deps: Deps, *, release_id: int, actor: Actor, ref: str) -> Outcome:
    """Point the release at another ref; approvals and the report of the old one stop counting."""
    ref = ref.strip()
    if sentence := ref_problem(ref):
        raise Refused(sentence)

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        old = release.ref
        voided = _void_approvals(release, facts)
        release.ref = ref
        return {"old_ref": old, "ref": ref, "voided_approvals": voided}

    return await transition(deps, release_id, Event.CHANGE_REF, Ctx(actor), apply)


async def tick(deps: Deps, *, release_id: int, actor: Actor, items: tuple[int, ...]) -> Outcome:
    """Tick pre-release checklist items (ticking one twice changes nothing)."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        new = sorted(set(items) - facts.checklist_done)
        for item in new:
            session.add(ChecklistTick(release_id=release.id, item=item, ticked_by=actor.user,
                                      created_at=deps.clock()))
        done = len(facts.checklist_done) + len(new)
        return {"items": new, "done": done, "total": facts.checklist_total}

    return await transition(deps, release_id, Event.TICK, Ctx(actor, items=tuple(items)), apply)


async def override_gate(deps: Deps, *, release_id: int, actor: Actor, reason: str) -> Outcome:
    """An executive lets an emergency release deploy in a freeze or outside windows."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.gate_override_by, release.gate_override_reason = actor.user, reason.strip()
        return {"reason": reason.strip(), "gate": facts.gate_reason}

    ctx = Ctx(actor, reason=reason)
    return await transition(deps, release_id, Event.OVERRIDE_GATE, ctx, apply)


async def hold(deps: Deps, *, release_id: int, reason: str) -> Outcome | None:
    """A due scheduled deploy can't go: say why once, and tell the requester and ops."""

    async def work(session: AsyncSession) -> Outcome | None:
        release = await locked(session, release_id)
        if release.hold_reason == reason:
            return None  # already said; the next tick tries again quietly

        async def apply(_s: AsyncSession, rel: Release, _f: Facts) -> dict[str, Any]:
            rel.hold_reason = reason
            return {"reason": reason}

        out = await step(session, deps, release, Event.HOLD, Ctx(SYSTEM, reason=reason), apply)
        notify(session, deps, release, "held", users=[release.requester],
               roles=["release_manager"], reason=reason)
        return out

    return await run_in_transaction(deps, work)


def notify(session: AsyncSession, deps: Deps, release: Release, notice: str, *,
           users: Sequence[str] = (), roles: Sequence[str] = (), **detail: Any) -> None:
    """Queue a direct message about a release to people and roles."""
    q.add_outbox(session, release_id=release.id, kind="notify", at=deps.clock(), payload={
        "notice": notice, "users": list(users), "roles": list(roles), "detail": detail})


async def cancel(deps: Deps, *, release_id: int, actor: Actor, reason: str = "") -> Outcome:
    """Withdraw a release before it is deployed."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        return {"reason": reason.strip()}

    return await transition(deps, release_id, Event.CANCEL, Ctx(actor, reason=reason), apply)
