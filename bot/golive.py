"""Editing and reviewing a release's go-live plan, each one transaction."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.plan import PlanField, clean_plan, too_long
from bot.plan import missing as plan_missing
from bot.policy import ReleaseType
from bot.releases import clean_text
from bot.transition import Deps, Outcome, notify, transition
from bot.workflow import SIGNED_OFF, Actor, Ctx, Event, Facts, Refused
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
        if facts.plan_reviewer and not plan_missing(plan, required):
            notify(session, deps, release, "plan_review", roles=[facts.plan_reviewer])
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
                      revision: int | None = None) -> Outcome:
    """The plan's reviewer approves it, or asks for changes with a note."""
    note = clean_text(note).strip()
    event = Event.PLAN_OK if ok else Event.PLAN_CHANGES

    async def apply(session: AsyncSession, release: Release, facts: Facts) -> dict[str, Any]:
        release.plan_review = "ok" if ok else "changes"
        release.plan_reviewed_by, release.plan_review_note = actor.user, note or None
        if not ok:
            notify(session, deps, release, "plan_changes", users=[release.requester], note=note)
        return {"note": note, "role": facts.plan_reviewer}

    ctx = Ctx(actor, reason=note, revision=revision)
    return await transition(deps, release_id, event, ctx, apply)

