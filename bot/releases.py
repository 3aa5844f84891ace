"""Changing a release before deploy: request, test, report, sign-off, ref, checklist, cancel."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy import Policy, PolicyError, ReleaseType
from bot.transition import (
    Deps,
    Outcome,
    ask_approvers,
    locked,
    notify,
    record,
    run_in_transaction,
    step,
    transition,
    type_limits,
)
from bot.workflow import (
    SYSTEM,
    Actor,
    Ctx,
    Event,
    Facts,
    Refused,
    Report,
    State,
    can_sign,
)
from storage import queries as q
from storage.models import Release

_ID = re.compile(r"^(?:rel-?)?(\d{1,9})$", re.IGNORECASE)
MAX_TITLE = 4000
MAX_REF = 255


def parse_release_id(text: str) -> int:
    """`REL-42`, `rel42` or `42` → 42."""
    match = _ID.match(text.strip())
    if not match:
        raise Refused(f"{text.strip()[:40]!r} is not a release ID; they look like REL-42.")
    return int(match.group(1))


@dataclass(frozen=True)
class NewRelease:
    """Everything a request carries: the first step of the release process."""

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
        await q.create_release(session, release=release, work_items=new.work_items)
        detail = {"project": new.project, "ref": release.ref, "type": new.type}
        return await record(session, deps, release, Event.REQUEST, actor, first, detail,
                            created=True)

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
        rep = Report(bugs=bugs, limits=type_limits(deps, release))
        q.add_report(session, release=release, url=report.url, bugs=bugs, passes=rep.passes,
                     reporter=actor.user, at=deps.clock())
        return {"url": report.url, "bugs": bugs, "passes": rep.passes,
                "failures": rep.failures, "voided_approvals": voided}

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        ctx = Ctx(actor, report=Report(bugs=bugs, limits=type_limits(deps, release)),
                  revision=revision)
        return await step(session, deps, release, Event.REPORT, ctx, apply)

    return await run_in_transaction(deps, work)


def _void_approvals(release: Release, facts: Facts) -> int:
    """Start a new revision: approvals, reports, risk acceptance and override stop counting."""
    release.revision += 1
    release.risk_accepted_by = release.risk_reason = None
    # An override was given for what was then to ship; a new ref or report must earn its own.
    release.gate_override_by = release.gate_override_reason = None
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
        role = can_sign(facts, actor)
        seat = (role or "") if facts.one_person_many_roles else ""  # else one row per person
        # The unique keys refuse a concurrent duplicate at commit; the retry then decides anew.
        q.add_approval(session, release=release, role=role, approver=actor.user, seat=seat,
                       comment=comment[:3000], at=deps.clock())
        missing = [r for r in facts.missing_roles if r != role]
        signed = replace(facts, approvals={**facts.approvals, str(role): actor.user})
        if missing and can_sign(signed, actor):  # one person, several roles: ask for the next
            await ask_approvers(session, deps, release, deps.clock(), users=[actor.user])
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
        q.add_ticks(session, release_id=release.id, items=new, by=actor.user, at=deps.clock())
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


async def cancel(deps: Deps, *, release_id: int, actor: Actor, reason: str = "") -> Outcome:
    """Withdraw a release before it is deployed."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        return {"reason": reason.strip()}

    return await transition(deps, release_id, Event.CANCEL, Ctx(actor, reason=reason), apply)
