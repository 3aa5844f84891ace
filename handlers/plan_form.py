"""Opening the go-live plan form, from `/release plan` or the card's Edit plan button."""

from __future__ import annotations

from bot import transition
from bot.policy import ReleaseType
from bot.workflow import Actor, Event, Refused
from handlers.answer import open_form
from handlers.modals import build_plan_modal
from handlers.runtime import Runtime
from storage import queries as q


async def open_plan_form(rt: Runtime, actor: Actor, release_id: int, revision: int | None,
                         trigger_id: str) -> str:
    """The plan as it is now, in a form; refused first if this person may not edit it."""
    await transition.check_event(rt.deps, release_id=release_id, event=Event.EDIT_PLAN,
                                 actor=actor, revision=revision)
    async with rt.deps.sessions() as session:
        release = await q.get_release(session, release_id)
    if release is None:
        raise Refused(f"There is no release REL-{release_id}.")
    required = rt.deps.policy.type_policy(ReleaseType(release.type)).plan.required
    view = build_plan_modal(release_id, release.revision, dict(release.plan),
                            tuple(f.value for f in required))
    return await open_form(rt, trigger_id, view,
                           f"/release plan REL-{release_id} <part> <text…>")
