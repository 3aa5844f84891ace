"""Editing and reviewing a release's go-live plan, each one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.plan import PlanField, clean_plan, too_long
from bot.plan import missing as plan_missing
from bot.policy import PolicyError, ReleaseType
from bot.releases import NewRelease, clean_text, ground_problems
from bot.transition import (
    Apply,
    Deps,
    Outcome,
    check_drawn,
    drawn_state,
    locked,
    notify,
    run_in_transaction,
    step,
    transition,
)
from bot.workflow import SIGNED_OFF, Actor, Ctx, Event, Facts, Refused, Report, Retype
from storage import queries as q
from storage.models import Release


def plan_field(word: str) -> PlanField:
    """A field as typed (`rollback`, `db-scripts`, `on_duty`), or a sentence naming them all."""
    key = word.strip().lower().replace("-", "_")
    try:
        return PlanField(key)
    except ValueError:
        names = ", ".join(f.value for f in PlanField)
        raise Refused(f"{word[:30]!r} is not a part of the go-live plan; use one of {names}."
                      ) from None


async def edit_plan(deps: Deps, *, release_id: int, actor: Actor, changes: Mapping[str, str],
                    replace_all: bool = False, revision: int | None = None) -> Outcome:
    """Change the plan (a form sends every field; a command one); voids its review and sign-off.

    Sign-off voided by a plan change keeps the pinned commit and the test report: the code
    did not change, only what the approvers must read again.
    """
    typed = {k: clean_text(v) for k, v in changes.items()}
    if long := too_long(typed):
        raise Refused(long[1])

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        plan = clean_plan(typed if replace_all else {**release.plan, **typed})
        if plan == release.plan:
            raise Refused(f"{release.rel_id}'s go-live plan is unchanged.")
        changed = [f.label for f in PlanField if plan.get(f) != release.plan.get(f)]
        was_reviewed = release.plan_review is not None
        release.plan = plan
        release.plan_review = release.plan_reviewed_by = release.plan_review_note = None
        detail: dict[str, Any] = {"changed": changed, "review_voided": was_reviewed}
        if facts.approvals or facts.state in SIGNED_OFF:
            detail["voided_approvals"] = await _new_revision(session, release, facts)
        required = deps.policy.type_policy(ReleaseType(release.type)).plan.required
        if lacking := plan_missing(plan, required):
            detail["missing"] = list(lacking)  # the answer says what sign-off still waits for
        elif facts.plan_reviewer:
            notify(session, deps, release, "plan_review", roles=[facts.plan_reviewer],
                   not_requester=True)
        return detail

    ctx = Ctx(actor, revision=revision)
    return await transition(deps, release_id, Event.EDIT_PLAN, ctx, apply)


async def _new_revision(session: AsyncSession, release: Release, facts: Facts) -> int:
    """A revision for the approvers to sign again, with the same commit and test report."""
    report = await q.latest_report(session, release)
    release.revision += 1
    if release.pinned_sha and release.pinned_revision == release.revision - 1:
        release.pinned_revision = release.revision
    if report is not None:
        bugs = {"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c}
        q.add_report(session, release=release, url=report.url, bugs=bugs,
                     passes=report.passes, reporter=report.reporter, at=report.created_at)
    return len(facts.approvals)


async def review_plan(deps: Deps, *, release_id: int, actor: Actor, ok: bool, note: str = "",
                      revision: int | None = None, release_type: str | None = None,
                      ground: str = "") -> Outcome:
    """The plan's reviewer approves it, confirming the release type, or asks for changes.

    With `release_type` the reviewer corrects the type first, in the same transaction: the
    release becomes a new revision of that type (its approvals void, its approvers asked
    again), and an approval then confirms the corrected type.
    """
    note = clean_text(note).strip()
    event = Event.PLAN_OK if ok else Event.PLAN_CHANGES
    corrected: dict[str, str] = {}  # the type before a correction, for the verdict's detail

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.plan_review = "ok" if ok else "changes"
        release.plan_reviewed_by, release.plan_review_note = actor.user, note or None
        if ok:  # the type as the reviewer saw it (S3: 确认上线发布的类型和方式)
            release.type_confirmed_by, release.type_confirmed_as = actor.user, release.type
        else:
            notify(session, deps, release, "plan_changes", users=[release.requester], note=note)
        return {"note": note, "role": facts.plan_reviewer, "type": release.type, **corrected}

    async def work(session: AsyncSession) -> Outcome:
        release = await locked(session, release_id)
        check_drawn(release, drawn_state())
        rev, old = revision, release.type
        corrected.clear()  # a retried attempt starts over
        if release_type is not None and release_type != old:
            retype = await _judge(session, deps, release, release_type, ground, note)
            ctx = Ctx(actor, reason=note, revision=rev, retype=retype)
            out = await step(session, deps, release, Event.RETYPE, ctx,
                             _retyped(deps, actor, retype.to, ground, note))
            if deps.policy.type_policy(retype.to).plan.reviewer is None:
                return out  # the new type's plan has no review: the correction is the verdict
            corrected["old_type"] = old
            rev = None  # the correction made the new revision this verdict is on
        return await step(session, deps, release, event, Ctx(actor, reason=note, revision=rev),
                          apply)

    if ground and release_type is None:
        raise Refused("A ground goes with a corrected type: `--type emergency --ground …`.")
    return await run_in_transaction(deps, work)


async def _judge(session: AsyncSession, deps: Deps, release: Release, to: str, ground: str,
                 note: str) -> Retype:
    """The release as type `to` would have it: what it lacks, and whether it may be signed."""
    try:
        rules = deps.policy.type_policy(ReleaseType(to))
    except (ValueError, PolicyError):
        allowed = ", ".join(t.value for t in ReleaseType if t in deps.policy.policies)
        return Retype(to[:30], f"Unknown release type {to[:30]!r}; use one of {allowed}.")
    grounds = deps.policy.grounds_of(to)
    kept = (release.ground or "") if grounds else ""  # a ground stays only where one is named
    ask = NewRelease(project=release.project, ref=release.ref, title=release.title, type=to,
                     ground=ground or kept, reason=note)
    problems = list(ground_problems(ask, grounds).values())
    if to == ReleaseType.CAMPAIGN and release.scheduled_at is None:
        problems.append(f"A campaign release needs its launch time, and {release.rel_id} has "
                        "none.")
    report = await q.latest_report(session, release)
    bar = rules.max_open_bugs
    limits = {"A": bar.A, "B": bar.B, "C": bar.C}
    passes = report is not None and Report(
        bugs={"A": report.bugs_a, "B": report.bugs_b, "C": report.bugs_c},
        limits=limits).passes
    return Retype(to, " ".join(problems) or None, passes or not rules.require_test_report)


def _retyped(deps: Deps, actor: Actor, to: str, ground: str, note: str) -> Apply:
    """The corrected type, a new revision to sign for it, and the requester told."""

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        old = release.type
        release.type = to
        grounds = deps.policy.grounds_of(to)
        release.ground = (ground or release.ground) if grounds else None
        release.ground_reason = note if grounds else None
        # What was granted for the old type does not carry over: review, risk, override.
        release.plan_review = release.plan_reviewed_by = release.plan_review_note = None
        release.type_confirmed_by = release.type_confirmed_as = None
        release.risk_accepted_by = release.risk_reason = None
        release.gate_override_by = release.gate_override_reason = None
        voided = await _new_revision(session, release, facts)
        notify(session, deps, release, "retyped", users=[release.requester], old_type=old,
               type=to, reason=note)
        detail: dict[str, Any] = {"old_type": old, "type": to, "reason": note,
                                  "voided_approvals": voided}
        return detail | ({"ground": release.ground} if release.ground else {})

    return apply

