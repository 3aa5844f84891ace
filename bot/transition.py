"""The transaction machinery: load a release's facts, decide by the table, record audit + outbox."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm.exc import StaleDataError
from sqlmodel.ext.asyncio.session import AsyncSession

from bot import calendar, mergeback
from bot.gitlab import GitLabClient, GitLabError
from bot.plan import PlanField
from bot.plan import missing as plan_missing
from bot.policy import Notice, PlanPolicy, Policy, ReleaseType, checklist_of
from bot.trains import Train, previous_version, rollback_targets, train_of, unpinned
from bot.workflow import (
    EVENTS,
    EVERYTHING,
    ON_ENTER,
    SYSTEM,
    Actor,
    Ctx,
    Effect,
    Event,
    Facts,
    Pin,
    Refused,
    Report,
    State,
    Stored,
    TransitionError,
    decide,
    reads_for,
)
from storage import queries as q
from storage.db import SessionMaker, transaction
from storage.models import Deployment, Release, TestReport

if TYPE_CHECKING:
    from bot.trackers.registry import Trackers

Clock = Callable[[], datetime]
_RETRIES = 8
_FULL_SHA = re.compile(r"[0-9a-f]{40}")
log = logging.getLogger(__name__)


def system_clock() -> datetime:
    """Aware UTC now."""
    return datetime.now(UTC)


class ShiftClock:
    """Real time moved by an offset: the demo's planned times, and scenarios whose leases and
    waits must still pass in real time."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        """Now, shifted."""
        return datetime.now(UTC) + self.offset

    def jump_to(self, when: datetime) -> None:
        """From now on, time continues from `when`."""
        self.offset = when - datetime.now(UTC)


@dataclass
class Deps:
    """What the services need: the database, the policy and a clock (injected in tests)."""

    sessions: SessionMaker
    policy: Policy
    clock: Clock = system_clock
    on_transition: Callable[[str, str], None] | None = None  # metrics: (event, new state)
    gitlab: GitLabClient | None = None  # resolves refs to the commits a release pins
    on_refused: Callable[[str], None] | None = None  # metrics: an event refused for lack of role
    trackers: Trackers | None = None  # count each tracked project's open bugs


@dataclass(frozen=True)
class Outcome:
    """What a service call did, for the caller to render."""

    release: Release
    event: Event
    from_state: State | None
    to_state: State
    detail: dict[str, Any] = field(default_factory=dict)
    changed: bool = True
    # A train's next deploy or rollback, committed with this outcome: its pipeline starts next.
    follow_up: Deployment | None = None


class PinNeeded(Exception):
    """A release is entering sign-off: each component's ref must be resolved to a commit first."""

    def __init__(self, parts: list[tuple[str, str]], merge_back_of: str | None = None) -> None:
        super().__init__(", ".join(f"{project} {ref}" for project, ref in parts))
        self.parts = parts  # (project, ref) of each component
        self.merge_back_of = merge_back_of  # the release (REL-n) whose merge-back is enforced


class MergeBackNeeded(Exception):
    """A sign-off needs to know which shipped hotfixes the pinned commit lacks: ask GitLab."""

    def __init__(self, release_id: int) -> None:
        super().__init__(f"REL-{release_id}")
        self.release_id = release_id


# The commits resolved for the transaction being retried, by (project, ref), and the hotfixes
# they lack. The first attempt decides without GitLab (so refused events never call it); only
# one entering sign-off resolves and retries.
_PINS: ContextVar[dict[tuple[str, str], Pin] | None] = ContextVar("pins", default=None)
_PIN_MERGE_BACK: ContextVar[dict[str, Any] | None] = ContextVar("pin_merge_back", default=None)
_AGAIN = "The release changed while its commit was being looked up; please try again."


async def run_in_transaction(deps: Deps, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
    """Run `work` in one transaction; GitLab is asked between attempts, never inside one.

    A release entering sign-off has its commit pinned (and checked for merge-back); a sign-off
    whose stored merge-back check no longer covers what shipped has it checked again.
    """
    try:
        return await _attempts(deps, work)
    except PinNeeded as need:
        pins = {part: await resolve_pin(deps, *part) for part in need.parts}
        token = _PINS.set(pins)
        checked = _PIN_MERGE_BACK.set(await _pin_merge_back(deps, need, pins))
        try:
            return await _attempts(deps, work)
        except (PinNeeded, MergeBackNeeded):  # the ref changed again between the two attempts
            raise Refused(_AGAIN) from None
        finally:
            _PIN_MERGE_BACK.reset(checked)
            _PINS.reset(token)
    except MergeBackNeeded as need:
        await check_merge_back(deps, need.release_id)
        try:
            return await _attempts(deps, work)
        except (PinNeeded, MergeBackNeeded):  # a hotfix shipped or a new pin meanwhile
            raise Refused(_AGAIN) from None


async def _pin_merge_back(deps: Deps, need: PinNeeded,
                          pins: dict[tuple[str, str], Pin]) -> dict[str, Any] | None:
    """The merge-back check of commits about to be pinned (None: not needed, or GitLab failed).

    A failure here does not stop the pin: the sign-off asks GitLab again and refuses then.
    """
    if need.merge_back_of is None or deps.gitlab is None:
        return None
    shas = {project: pin.sha for (project, _), pin in pins.items()}
    async with deps.sessions() as session:
        hotfixes = await mergeback.shipped_hotfixes(session, deps.policy, list(shas))
    try:
        return await mergeback.check(deps.gitlab, deps.policy, shas, need.merge_back_of,
                                     hotfixes)
    except Refused as exc:
        log.info("%s: merge-back not checked at pin: %s", need.merge_back_of, exc.sentence)
        return None


async def check_merge_back(deps: Deps, release_id: int) -> None:
    """Check the release's pinned commits against every shipped hotfix and store the answer."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            return
        pins = mergeback.current_pins(release, await q.components_of(session, release))
        if not pins or not release.pinned_sha:
            return
        hotfixes = await mergeback.shipped_hotfixes(session, deps.policy, list(pins))
    if deps.gitlab is None:
        raise Refused("GitLab is not connected, so the hotfixes merged back can't be checked.")
    answer = await mergeback.check(deps.gitlab, deps.policy, pins, release.rel_id, hotfixes)
    async with transaction(deps.sessions) as session:
        await q.save_merge_back(session, release_id, sha=release.pinned_sha, value=answer)


async def resolve_pin(deps: Deps, project: str, ref: str) -> Pin:
    """The commit `ref` names now; a full SHA typed as the ref is pinned as it is, once GitLab
    has shown the project has it (sign-off of a commit that can't ship would be void)."""
    if deps.gitlab is None:
        if _FULL_SHA.fullmatch(ref):
            return Pin(ref, ref)
        raise Refused("GitLab is not connected, so the release's commit can't be pinned.")
    try:
        found = await deps.gitlab.resolve(deps.policy.project(project).gitlab, ref)
    except GitLabError as exc:
        raise Refused(f"GitLab can't resolve `{ref}` in {project} to a commit: {exc}") from None
    return Pin(ref, ref if _FULL_SHA.fullmatch(ref) else found)


async def _attempts(deps: Deps, work: Callable[[AsyncSession], Awaitable[Any]]) -> Any:
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


# --- facts ------------------------------------------------------------------------------------

async def load_facts(session: AsyncSession, deps: Deps, release: Release,
                     reads: frozenset[Stored] = EVERYTHING) -> Facts:
    """What the workflow's guards look at, read inside the transaction (`reads` of the rest)."""
    policy = deps.policy
    type_policy = policy.type_policy(ReleaseType(release.type))
    # The train's environments matter only beside its deploys: the components are read then.
    train = (train_of([c.project for c in await q.components_of(session, release)], policy)
             if "deployments" in reads else train_of([release.project], policy))
    stored = await _stored_facts(session, release, train, type_limits(deps, release), reads)
    gate = _gate_facts(deps) if "gate" in reads else {}
    return Facts(
        state=State(release.state), requester=release.requester,
        required_roles=tuple(type_policy.approvers),
        report_required=type_policy.require_test_report,
        allow_known_issues=type_policy.allow_known_issues,
        bypass_allowed=type_policy.bypass_freeze,
        gate_overridden=release.gate_override_by is not None,
        checklist_total=len(release.checklist),
        environments=train.environments,
        has_schedule=release.scheduled_at is not None,
        requester_can_deploy=type_policy.requester_can_deploy,
        one_person_many_roles=policy.one_person_many_roles,
        pinned=bool(release.pinned_sha) and release.pinned_revision == release.revision,
        armed=is_armed(release), rel_id=release.rel_id,
        known_issue_types=tuple(t.value for t, rules in policy.policies.items()
                                if rules.allow_known_issues),
        checklist_roles=tuple(step.owner for step in checklist_of(release.checklist)),
        observing_until=_observing_until(deps, release),
        release_type=release.type, type_confirmed=release.type_confirmed_as == release.type,
        decided=release.decision if release.decided_revision == release.revision else None,
        **_plan_facts(release, type_policy.plan),
        **stored, **gate, **(await _merge_back_facts(session, deps, release, reads)),
    )


def _plan_facts(release: Release, rules: PlanPolicy) -> dict[str, Any]:
    """What the go-live plan lacks, and its review, as the workflow's facts."""
    return {"plan_missing": plan_missing(release.plan, rules.required),
            "plan_reviewer": rules.reviewer, "plan_review": release.plan_review,
            "plan_review_note": release.plan_review_note or "",
            "rollback_steps": bool(release.plan.get(PlanField.ROLLBACK))}


async def _merge_back_facts(session: AsyncSession, deps: Deps, release: Release,
                            reads: frozenset[Stored]) -> dict[str, Any]:
    """Which shipped hotfixes the pinned commit lacks, as far as the stored check knows."""
    if ("merge_back" not in reads or not mergeback.enforced(deps.policy, release)
            or release.pinned_revision != release.revision or not release.pinned_sha):
        return {}
    pins = mergeback.current_pins(release, await q.components_of(session, release))
    hotfixes = await mergeback.shipped_hotfixes(session, deps.policy, list(pins))
    if not hotfixes:
        return {}
    checked, missing = mergeback.stored_missing(release, pins, hotfixes)
    return {"merge_back_checked": checked, "merge_back_missing": missing}


def _observing_until(deps: Deps, release: Release) -> str | None:
    """When observation ends, as people read it, while it still runs."""
    until = release.observe_until
    if until is None or until <= deps.clock():
        return None
    return calendar.format_local(until, deps.policy)


async def _stored_facts(session: AsyncSession, release: Release, train: Train,
                        limits: dict[str, int], reads: frozenset[Stored]) -> dict[str, Any]:
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
        facts["deployed_envs"] = train.reached(deployments, release.revision)
        facts["started_envs"] = frozenset(d.environment for d in deployments
                                          if not d.rollback and d.revision == release.revision)
        undo = rollback_targets(deployments, train.projects)
        facts["rollback_ref"] = previous_version(undo)
        facts["rollback_unpinned"] = unpinned(undo)
    if "acceptances" in reads:
        verdicts = await q.acceptances_of(session, release)
        facts["accepted_envs"] = frozenset(a.environment for a in verdicts if a.passed)
    return facts


def is_armed(release: Release) -> bool:
    """The release manager armed this revision's scheduled deploy (a new revision voids it)."""
    return release.armed_by is not None and release.armed_revision == release.revision


def _gate_facts(deps: Deps) -> dict[str, Any]:
    """Whether windows and freezes let a deploy start now, as the workflow's facts."""
    gate = calendar.deploy_gate(deps.clock(), deps.policy)
    when = gate.next_allowed
    return {"gate_open": gate.open, "gate_reason": gate.reason,
            "gate_next": calendar.format_local(when, deps.policy) if when else None}


def _report_facts(report: TestReport | None, limits: dict[str, int],
                  release: Release) -> Report | None:
    """The stored report as the workflow's value."""
    if report is None:
        return None
    bugs = {"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c}
    return Report(bugs=bugs, limits=limits, accepted=release.risk_accepted_by is not None)


def void_approvals(release: Release, facts: Facts) -> int:
    """Start a new revision: approvals, reports, risk acceptance and override stop counting."""
    release.revision += 1
    release.risk_accepted_by = release.risk_reason = None
    # An override was given for what was then to ship; a new ref or report must earn its own.
    release.gate_override_by = release.gate_override_reason = None
    return len(facts.approvals)


def type_limits(deps: Deps, release: Release) -> dict[str, int]:
    """The go-live standard of the release's type, as a plain mapping."""
    limits = deps.policy.type_policy(ReleaseType(release.type)).max_open_bugs
    return {"A": limits.A, "B": limits.B, "C": limits.C}


# --- one event ----------------------------------------------------------------------------------

Apply = Callable[[AsyncSession, Release, Facts], Awaitable[dict[str, Any]]]
# Given the facts, the detail of an allowed event that would change nothing; else None.
Unchanged = Callable[[Facts], dict[str, Any] | None]


async def _no_effect(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
    """Events that only move the state."""
    return {}


def detail_of(detail: dict[str, Any]) -> Apply:
    """An Apply that changes nothing and records `detail`."""

    async def apply(_s: AsyncSession, _r: Release, _f: Facts) -> dict[str, Any]:
        return detail

    return apply


async def transition(deps: Deps, release_id: int, event: Event, ctx: Ctx,
                     apply: Apply = _no_effect, *, unchanged: Unchanged | None = None) -> Outcome:
    """Decide, apply, audit and announce one event, all in one transaction."""

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_drawn(release, _DRAWN.get())
        return await step(session, deps, release, event, ctx, apply, unchanged=unchanged)

    return await run_in_transaction(deps, work)


async def step(session: AsyncSession, deps: Deps, release: Release, event: Event, ctx: Ctx,
               apply: Apply = _no_effect, *, unchanged: Unchanged | None = None) -> Outcome:
    """Inside a transaction: check the event against the table, apply it and record it.

    `unchanged`, given the facts, may answer that an allowed event would change nothing: then
    its detail is the outcome, with no audit row and no announcement.
    """
    check_revision(release, ctx.revision)
    state = State(release.state)
    facts = await load_facts(session, deps, release, reads_for(event, state))
    dest = traced_decide(deps, release, facts, event, ctx)
    if unchanged is not None and (same := unchanged(facts)) is not None:
        return Outcome(release, event, state, state, same, changed=False)
    if not facts.merge_back_checked:  # allowed but for merge-back: ask GitLab, then decide again
        raise MergeBackNeeded(release.id)
    revision = release.revision
    detail = await apply(session, release, facts)
    if release.revision != revision:
        detail = {**detail, **await void_arming(session, deps, release, revision)}
    return await record(session, deps, release, event, ctx.actor, dest, detail)


async def void_arming(session: AsyncSession, deps: Deps, release: Release,
                      revision: int) -> dict[str, Any]:
    """A new revision voids the arming of `revision`, and the planned time only it chose.

    Arming a release the gate held planned it for the next allowed time; left behind, that
    time would show on the card and calendar and fall due though nobody chose it. A time the
    requester gave stays. Returns the time taken back, for the thread line.
    """
    if release.armed_revision != revision or release.scheduled_at is None:
        return {}
    arming = await q.last_audit(session, release.id, Event.ARM.value)
    if (arming is None or not arming.detail.get("planned")
            or arming.detail.get("scheduled_at") != release.scheduled_at.isoformat()):
        return {}
    when = calendar.format_local(release.scheduled_at, deps.policy)
    release.scheduled_at = None
    return {"unplanned": when}


async def check_event(deps: Deps, *, release_id: int, event: Event | Callable[[Facts], Event],
                      actor: Actor, revision: int | None = None,
                      environment: str | None = None, reason: str | None = None) -> Event:
    """Refuse now, changing nothing, what `event` would be refused for apart from its reason.

    A button that opens a form for the reason asks first, so nobody writes a note that the
    table would refuse for another cause; the note itself is checked when the event happens.
    `event` may be chosen from the facts (a verdict is acceptance or verification); the event
    checked is returned. With `reason` the reason is checked too (before a GitLab call that
    can't be undone).
    """
    async with deps.sessions() as session:
        return (await checked_release(session, deps, release_id=release_id, event=event,
                                      actor=actor, revision=revision, environment=environment,
                                      reason=reason))[1]


async def checked_release(session: AsyncSession, deps: Deps, *, release_id: int,
                          event: Event | Callable[[Facts], Event], actor: Actor,
                          revision: int | None = None, environment: str | None = None,
                          reason: str | None = None) -> tuple[Release, Event]:
    """`check_event` in the caller's session: the release read for it, and the event checked,
    so a caller that needs more of the release before asking GitLab reads it only once."""
    release = await q.get_release(session, release_id)
    if release is None:
        raise Refused(f"There is no release REL-{release_id}.")
    check_revision(release, revision)
    check_drawn(release, _DRAWN.get())
    reads = (reads_for(event, State(release.state)) if isinstance(event, Event)
             else EVERYTHING)
    facts = await load_facts(session, deps, release, reads)
    chosen = event if isinstance(event, Event) else event(facts)
    ctx = Ctx(actor, reason=reason or "", revision=revision, environment=environment)
    traced_decide(deps, release, facts, chosen, ctx, reason_follows=reason is None)
    return release, chosen


def traced_decide(deps: Deps, release: Release, facts: Facts, event: Event, ctx: Ctx, *,
                  reason_follows: bool = False) -> State:
    """`decide`, leaving a trace of every attempt refused because the person lacks the role."""
    try:
        return decide(facts, event, ctx, reason_follows=reason_follows)
    except TransitionError as exc:
        if exc.forbidden:
            log.warning("refused %r on %s to %s: lacks the role (has %s)", event.value,
                        release.rel_id, ctx.actor.user, ", ".join(sorted(ctx.actor.roles)) or
                        "none")
            if deps.on_refused is not None:
                deps.on_refused(event.value)
        raise


# The release and state a clicked button was drawn for, while its click is handled: the change
# it asks for is refused, in the change's own transaction, once the release has moved on.
_DRAWN: ContextVar[tuple[int, str] | None] = ContextVar("drawn", default=None)


@contextmanager
def drawn_for(release_id: int, state: str | None) -> Iterator[None]:
    """Within the block, a change to the release refuses unless it is still in `state`."""
    token = _DRAWN.set((release_id, state) if state is not None else None)
    try:
        yield
    finally:
        _DRAWN.reset(token)


def drawn_state() -> tuple[int, str] | None:
    """The release and state the button being handled was drawn for, if any."""
    return _DRAWN.get()


def check_drawn(release: Release, drawn: tuple[int, str] | None) -> None:
    """A button drawn in another state: the same Deploy means another environment now."""
    if drawn is not None and drawn[0] == release.id and release.state != drawn[1]:
        raise Refused(f"{release.rel_id} is {State(release.state).label} now; that button was "
                      "drawn before it changed. Look at the updated card.")


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


async def record(session: AsyncSession, deps: Deps, release: Release, event: Event,
                 actor: Actor, dest: State, detail: dict[str, Any], *, created: bool = False
                 ) -> Outcome:
    """Move the state, append the audit row, queue the announcement, run entry effects."""
    before = None if created else State(release.state)
    # A new release's row went in a moment ago with this state and time: no second write.
    now = release.state_since if created else _move(deps, release, dest)
    await q.add_audit(session, release_id=release.id, actor=actor.user, action=event.value,
                      from_state=before and before.value, to_state=dest.value, detail=detail,
                      at=now)
    payload = {"event": event.value, "actor": actor.user, "from": before and before.value,
               "to": dest.value, "detail": detail, "broadcast": EVENTS[event].broadcast}
    q.add_outbox(session, release_id=release.id, kind="event", at=now, payload=payload)
    _tell_notify_targets(session, deps, release, event, before is not dest, payload, now)
    if deps.on_transition is not None:
        deps.on_transition(event.value, dest.value)
    if before is not dest or "voided_approvals" in detail:  # entered, or a new revision
        for effect in ON_ENTER.get(dest, ()):
            await _ENTER[effect](session, deps, release, now)
    return Outcome(release, event, before, dest, detail)


def _tell_notify_targets(session: AsyncSession, deps: Deps, release: Release, event: Event,
                         moved: bool, payload: dict[str, Any], now: datetime) -> None:
    """Queue the policy's `notify` line for an event that moved the release, if anyone wants it."""
    notice = EVENTS[event].notice
    targets = deps.policy.notify_targets(Notice(notice)) if notice and moved else []
    if targets:
        q.add_outbox(session, release_id=release.id, kind="tell", at=now,
                     payload={**payload, "notice": notice, "targets": targets})


def _move(deps: Deps, release: Release, dest: State) -> datetime:
    """Set the release's new state; the time it happened."""
    now = deps.clock()
    if dest.value != release.state:
        release.state_since = now
    release.state = dest.value
    release.updated_at = now  # always written, so the version check sees every change
    return now


async def _pin_commit(session: AsyncSession, deps: Deps, release: Release,
                      now: datetime) -> None:
    """Pin the revision's commit (approvals sign it); first ask GitLab, outside the transaction."""
    if release.pinned_sha and release.pinned_revision == release.revision:
        return  # a new revision of the same commits (the plan changed): approvers sign again
    comps = await q.components_of(session, release)
    pins = _PINS.get() or {}
    wanted = [(c.project, c.ref) for c in comps]
    if any(part not in pins for part in wanted):
        enforced = mergeback.enforced(deps.policy, release)
        raise PinNeeded(wanted, release.rel_id if enforced else None)
    for comp in comps:
        comp.pinned_sha = pins[(comp.project, comp.ref)].sha
    release.pinned_sha, release.pinned_revision = comps[0].pinned_sha, release.revision
    checked = _PIN_MERGE_BACK.get()
    key = mergeback.pin_key({c.project: c.pinned_sha for c in comps if c.pinned_sha})
    release.merge_back = checked if checked and checked.get("sha") == key else None


async def _ask(session: AsyncSession, deps: Deps, release: Release, now: datetime) -> None:
    """Ask the approvers of roles still missing, on entering sign-off."""
    await ask_approvers(session, deps, release, now)


async def ask_approvers(session: AsyncSession, deps: Deps, release: Release, now: datetime,
                        *, users: Sequence[str] | None = None) -> None:
    """Queue direct asks to the approvers of roles still missing (only `users`, when given)."""
    roles = deps.policy.type_policy(ReleaseType(release.type)).approvers
    payload: dict[str, Any] = {"roles": list(roles), "revision": release.revision}
    if users is not None:
        payload["users"] = list(users)
    q.add_outbox(session, release_id=release.id, kind="ask", at=now, payload=payload)


async def _start_observation(session: AsyncSession, deps: Deps, release: Release,
                             now: datetime) -> None:
    """Observation begins, or the release closes at once when the policy has none."""
    hours = deps.policy.observation_hours
    if hours <= 0:
        await close_step(session, deps, release, SYSTEM)
        return
    release.observe_until = now + timedelta(hours=hours)
    until = {"until": release.observe_until.isoformat()}
    await step(session, deps, release, Event.OBSERVE, Ctx(SYSTEM), detail_of(until))


_ENTER: dict[Effect, Callable[[AsyncSession, Deps, Release, datetime], Awaitable[None]]] = {
    Effect.PIN_COMMIT: _pin_commit,
    Effect.ASK_APPROVERS: _ask,
    Effect.START_OBSERVATION: _start_observation,
}


async def close_step(session: AsyncSession, deps: Deps, release: Release,
                     actor: Actor, notes: str = "", reason: str = "") -> Outcome:
    """Close inside a transaction and hand the release over to operations.

    The announcement carries the release notes, the issues it ships with and its impact; an
    early close (an executive's, before observation ends) carries the reason.
    """

    async def apply(_s: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
        rel.closed_at = deps.clock()
        detail = await close_detail(session, deps, rel)
        if facts.observing_until and reason.strip():
            detail["early"] = {"until": facts.observing_until, "reason": reason.strip(),
                               "by": actor.user}
        return {"notes": notes, **detail} if notes else detail

    out = await step(session, deps, release, Event.CLOSE, Ctx(actor, reason=reason), apply)
    handover = {k: v for k, v in out.detail.items() if k != "notes"}
    notify(session, deps, release, "handover", roles=["operations"], **handover)
    return out


async def close_detail(session: AsyncSession, deps: Deps, release: Release) -> dict[str, Any]:
    """What the handover says: the release, its remaining issues and its impact."""
    detail: dict[str, Any] = {"project": release.project, "ref": release.ref,
                              "title": release.title,
                              "remaining": await remaining_issues(session, deps, release)}
    if len(comps := await q.components_of(session, release)) > 1:
        detail["components"] = [{"project": c.project, "ref": c.ref} for c in comps]
    if impact := release.plan.get(PlanField.IMPACT):  # the go-live plan's impact scope
        detail["impact"] = impact
    return detail


async def remaining_issues(session: AsyncSession, deps: Deps,
                           release: Release) -> dict[str, Any] | None:
    """The open bugs the release ships with and, where they broke the standard, who accepted."""
    report = await q.latest_report(session, release)
    problems = accepted_problems(release)
    bugs = ({"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c} if report else {})
    if not any(bugs.values()):
        return {"problems": problems} if problems else None
    failures = Report(bugs=bugs, limits=type_limits(deps, release)).failures
    found = {"bugs": bugs, "failures": failures, "accepted_by": release.risk_accepted_by,
             "reason": release.risk_reason}
    return {**found, "problems": problems} if problems else found


def accepted_problems(release: Release) -> dict[str, Any] | None:
    """What online verification found that an executive let the release keep, and why."""
    if release.decision != "accept" or release.decided_revision != release.revision:
        return None
    return {"found": release.verification_note or "", "accepted_by": release.decided_by,
            "reason": release.decision_reason or ""}


def notify(session: AsyncSession, deps: Deps, release: Release, notice: str, *,
           users: Sequence[str] = (), roles: Sequence[str] = (), thread: bool = False,
           not_requester: bool = False, **detail: Any) -> None:
    """Queue a direct message about a release to people and roles (`thread`: and the card's).

    `not_requester`: it asks for what the requester may not do on their own release (review
    its plan, accept or verify it), so a requester holding the role is not asked.
    """
    payload = {"notice": notice, "users": list(users), "roles": list(roles), "detail": detail}
    if thread:
        payload["thread"] = True
    if not_requester:
        payload["skip"] = [release.requester]
    q.add_outbox(session, release_id=release.id, kind="notify", at=deps.clock(), payload=payload)
