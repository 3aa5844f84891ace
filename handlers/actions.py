"""Buttons on cards, DMs and App Home: ack, check the card isn't stale, act, answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError

from bot import bugs, deploys, golive, releases, transition
from bot.workflow import Event, Refused, verdict_event
from handlers import answer
from handlers.answer import STALE_BUTTON, Asker, Reply, answer_after, open_form, tell
from handlers.blocks import ActionId, FormId, parse_value, section, value_environment
from handlers.commands import close_release, release_notes
from handlers.modals import build_reason_modal, build_report_modal
from handlers.plan_form import open_plan_form
from handlers.runtime import Runtime
from storage import queries as q
from storage.db import transaction

log = logging.getLogger(__name__)
Body = dict[str, Any]
Click = Callable[[Runtime, str, int, int | None, Body], Awaitable[str]]


async def on_button(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """Every button: one shape, one error policy."""
    action = (body.get("actions") or [{}])[0]
    asker = click_asker(body)

    async def work() -> Reply:
        release_id = None
        try:
            release_id, revision, drawn = _target(action)
            with transition.drawn_for(release_id, drawn):
                if action["action_id"] not in CHECKED_INSIDE:
                    await _still_as_drawn(runtime, release_id, drawn)
                return await BUTTONS[action["action_id"]](runtime, asker.user, release_id,
                                                          revision, body)
        except Refused:
            if release_id is not None:  # the clicker saw something old: show what is true now
                await _redraw(runtime, release_id)
            raise
        except (ValueError, KeyError):
            return STALE_BUTTON

    drawn_on = str(action.get("value") or action.get("block_id") or "")[:40]
    await answer_after(ack, runtime, work, asker=asker,
                       doing=f"{action.get('action_id')} on {drawn_on!r}")


def click_asker(body: Body) -> Asker:
    """The clicker, answered in the channel or DM the click came from."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")
    return Asker((body.get("user") or {}).get("id", ""), channel, body.get("response_url"))


async def answer_click(rt: Runtime, body: Body, text: str) -> None:
    """Privately, in the channel or DM the click came from."""
    asker = click_asker(body)
    await tell(rt.client, user=asker.user, text=text, channel=asker.channel,
               response_url=asker.response_url)


def _target(action: dict[str, Any]) -> tuple[int, int | None, str | None]:
    """(release id, revision, state drawn) from a button's value, or a checklist's block id."""
    if "value" in action:
        return parse_value(str(action["value"]))
    return parse_value(str(action.get("block_id", "")).partition(":")[2])[0], None, None


async def _still_as_drawn(rt: Runtime, release_id: int, drawn: str | None) -> None:
    """Refuse a button drawn in another state: the same Deploy means another environment now.

    The service re-checks the revision, and the transition table the state, in one transaction;
    this catches what the table would allow but the clicker never saw: Deploy to staging
    becoming production, Verification passed over a recorded failure, Reject after approval.
    """
    if drawn is None:
        return
    async with rt.deps.sessions() as session:
        release = await q.get_release(session, release_id)
    if release is not None:
        transition.check_drawn(release, (release_id, drawn))


async def _redraw(rt: Runtime, release_id: int, force: bool = False) -> None:
    """Bring the card up to date after a refused click (a no-op when it already is).

    `force` resends it even so: Slack keeps a person's own unsaved checkbox ticks until the
    message is replaced.
    """
    try:
        await rt.deliverer.refresh_card(release_id, force=force)
    except Exception:  # a failed redraw must not hide the explanation from the clicker
        log.exception("REL-%s: redraw failed", release_id)


async def _approve(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    async with _answering_ask(rt, body):
        out = await releases.approve(rt.deps, release_id=rid,
                                     actor=await rt.directory.actor(user), revision=rev)
    said = answer.approved(out)
    await _settle_ask(rt, body, f"✅ {said} It is now {out.to_state.label}.")
    return said


def _ask_dm(body: Body) -> tuple[str, str] | None:
    """The sign-off DM a click came from (its IM channel and ts), if it came from one."""
    action = (body.get("actions") or [{}])[0]
    where = body.get("container") or {}
    if not str(action.get("block_id", "")).startswith("ask:") or not where.get("message_ts"):
        return None
    return str(where.get("channel_id") or ""), str(where["message_ts"])


@asynccontextmanager
async def _answering_ask(rt: Runtime, body: Body) -> AsyncIterator[None]:
    """Mark the clicked ask DM settled while its click is acted on, so the redraw the change
    brings leaves it to `_settle_ask`; given back if the click is refused or fails."""
    dm = _ask_dm(body)
    claimed = None
    if dm is not None:
        async with transaction(rt.deps.sessions) as session:
            claimed = await q.claim_ask_message(session, channel=dm[0], ts=dm[1],
                                                at=rt.deps.clock())
    try:
        yield
    except Exception:
        if claimed is not None:  # a refused click's redraw settles it if it is over
            async with transaction(rt.deps.sessions) as session:
                await q.reopen_ask(session, claimed)
        raise


async def _settle_ask(rt: Runtime, body: Body, text: str) -> None:
    """A click on a sign-off DM's buttons: replace that DM by what was done, without buttons."""
    dm = _ask_dm(body)
    if dm is None:
        return
    try:
        await rt.client.chat_update(channel=dm[0], ts=dm[1], text=text, blocks=[section(text)])
    except SlackApiError as exc:  # the answer below still says what happened
        log.info("ask not updated: %s", exc.response.get("error"))


async def _start_testing(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await releases.start_testing(rt.deps, release_id=rid, revision=rev,
                                       actor=await rt.directory.actor(user))
    return answer.testing(out)


async def _open(rt: Runtime, body: Body, view: dict[str, Any], fallback: str) -> str:
    """Open a modal for this click, or say which command does the same."""
    return await open_form(rt, body.get("trigger_id", ""), view, fallback)


async def _reject(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    view = build_reason_modal(FormId.REJECT, "Reject release", "Why?", rid, rev)
    return await _open(rt, body, view, f"/release reject REL-{rid} <reason>")


async def _report(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    async with rt.deps.sessions() as session:
        release = await q.get_release(session, rid)
    tracker = release and bugs.tracker_of(rt.deps, release)
    source = tracker.source if tracker else None
    counts = "[A=n B=n C=n]" if source else "A=0 B=0 C=0"
    return await _open(rt, body, build_report_modal(rid, rev, source),
                       f"/release report REL-{rid} <url> {counts}")


async def _checklist(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Ticks whatever boxes are now selected; unticking isn't possible, the redraw restores it."""
    action = body["actions"][0]
    items = tuple(_item(o) for o in action.get("selected_options") or [])
    if not items:
        await _redraw(rt, rid, force=True)
        return "Checklist ticks can't be undone."
    out = await releases.tick(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                         items=items)
    await _redraw(rt, rid, force=True)
    return answer.ticked(out, unticked=sorted(_drawn_ticked(body, action) - set(items)))


def _item(option: dict[str, Any]) -> int:
    """The checklist item a checkbox option stands for."""
    return parse_value(str(option.get("value", "")))[1] or 0


def _drawn_ticked(body: Body, action: dict[str, Any]) -> set[int]:
    """The items the clicked message showed as ticked: a box among them not selected now is
    one the clicker unticked."""
    blocks = (body.get("message") or {}).get("blocks") or []
    block = next((b for b in blocks if b.get("block_id") == action.get("block_id")), {})
    return {_item(o) for e in block.get("elements") or []
            if e.get("action_id") == action.get("action_id")
            for o in e.get("initial_options") or []}


async def _deploy(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await rt.deployer.deploy(release_id=rid, actor=await rt.directory.actor(user),
                                   revision=rev)
    return answer.deploy_started(out)


async def _verify_pass(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Acceptance on the environment the button names, or verification in production."""
    out = await deploys.verify(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                               passed=True, revision=rev, environment=_drawn_env(body))
    return answer.verified(out, True)


async def _verify_fail(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Ask the table first, so nobody writes a note it would refuse for another cause."""
    env = _drawn_env(body)
    event = await transition.check_event(
        rt.deps, release_id=rid, event=lambda facts: verdict_event(facts, False, env),
        revision=rev, environment=env, actor=await rt.directory.actor(user))
    title, label = "Verification failed", "What is wrong?"
    if event is Event.ACCEPTANCE_FAIL:
        title, label = f"{str(env).capitalize()} failed", f"What is wrong on {env}?"
    view = build_reason_modal(FormId.VERIFY_FAIL, title, label, rid, rev, environment=env)
    return await _open(rt, body, view, f"/release verify REL-{rid} fail <note>")


def _drawn_env(body: Body) -> str | None:
    """The environment a verdict button was drawn for."""
    return value_environment(str((body.get("actions") or [{}])[0].get("value") or ""))


async def _arm(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await releases.arm(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                             revision=rev)
    return answer.armed(out)


async def _rollback(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await rt.deployer.rollback(release_id=rid, actor=await rt.directory.actor(user),
                                     revision=rev)
    return answer.rolling_back(out)


async def _abandon(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Ask the table first (role, state), then the reason in a form."""
    await transition.check_event(rt.deps, release_id=rid, event=Event.ABANDON, revision=rev,
                                 actor=await rt.directory.actor(user))
    view = build_reason_modal(FormId.ABANDON, "Abandon the deploy",
                              "Why? The pipeline is cancelled in GitLab.", rid, rev)
    return await _open(rt, body, view, f"/release abandon REL-{rid} <reason>")


async def _close(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await close_release(rt, rid, await rt.directory.actor(user), rev)
    return answer.closed(out)


async def _edit_plan(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    return await open_plan_form(rt, await rt.directory.actor(user), rid, rev,
                                body.get("trigger_id", ""))


async def _plan_ok(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await golive.review_plan(rt.deps, release_id=rid, ok=True, revision=rev,
                                   actor=await rt.directory.actor(user))
    return answer.plan_reviewed(out)


async def _plan_changes(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Ask the table first, then for the changes wanted."""
    await transition.check_event(rt.deps, release_id=rid, event=Event.PLAN_CHANGES,
                                 revision=rev, actor=await rt.directory.actor(user))
    view = build_reason_modal(FormId.PLAN_CHANGES, "Plan changes", "What must change?", rid,
                              rev)
    return await _open(rt, body, view, f"/release review REL-{rid} changes <note>")


def _decision(fix: bool) -> Click:
    """Fix the problems / Accept as is: ask the table first (who, state), then why."""
    event, form = ((Event.DECIDE_FIX, FormId.DECIDE_FIX) if fix
                   else (Event.DECIDE_ACCEPT, FormId.DECIDE_ACCEPT))
    title, label = (("Fix the problems", "Why fix them? The requester is told.") if fix else
                    ("Accept as is", "Why may it stay live with these problems?"))

    async def click(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
        await transition.check_event(rt.deps, release_id=rid, event=event, revision=rev,
                                     actor=await rt.directory.actor(user))
        view = build_reason_modal(form, title, label, rid, rev)
        word = "fix" if fix else "accept"
        return await _open(rt, body, view, f"/release decide REL-{rid} {word} <reason>")

    return click


async def _notes(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """The release notes, privately: approvers read them before they sign."""
    return await release_notes(rt, rid)


# Buttons whose first step is the change (or the check before its form) itself: it refuses a
# stale card in its own transaction, so no read goes ahead of it.
CHECKED_INSIDE = frozenset({ActionId.APPROVE, ActionId.START_TESTING, ActionId.ARM,
                            ActionId.PLAN_OK, ActionId.VERIFY_FAIL, ActionId.ABANDON,
                            ActionId.PLAN_CHANGES, ActionId.DECIDE_FIX,
                            ActionId.DECIDE_ACCEPT})

BUTTONS: dict[str, Click] = {
    ActionId.APPROVE: _approve, ActionId.REJECT: _reject, ActionId.REPORT: _report,
    ActionId.START_TESTING: _start_testing, ActionId.CHECKLIST: _checklist,
    ActionId.DEPLOY: _deploy, ActionId.VERIFY_PASS: _verify_pass,
    ActionId.VERIFY_FAIL: _verify_fail, ActionId.ROLLBACK: _rollback, ActionId.CLOSE: _close,
    ActionId.EDIT_PLAN: _edit_plan, ActionId.PLAN_OK: _plan_ok,
    ActionId.PLAN_CHANGES: _plan_changes,
    ActionId.NOTES: _notes,
    ActionId.ABANDON: _abandon,
    ActionId.ARM: _arm,
    ActionId.DECIDE_FIX: _decision(fix=True),
    ActionId.DECIDE_ACCEPT: _decision(fix=False),
}
