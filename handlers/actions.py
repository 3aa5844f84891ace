"""Buttons on cards, DMs and App Home: ack, check the card isn't stale, act, answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError

from bot import deploys
from bot import service as svc
from bot.workflow import Refused, State
from handlers.answer import tell
from handlers.blocks import ActionId, FormId, escape, parse_value
from handlers.commands import SORRY, close_release, deploy_answer, verify_answer
from handlers.modals import build_reason_modal, build_report_modal
from handlers.runtime import Runtime
from storage import queries as q

log = logging.getLogger(__name__)
Body = dict[str, Any]
Click = Callable[[Runtime, str, int, int | None, Body], Awaitable[str]]


async def on_button(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """Every button: one shape, one error policy."""
    await ack()
    action = (body.get("actions") or [{}])[0]
    user = (body.get("user") or {}).get("id", "")
    release_id = None
    try:
        release_id, revision, drawn = _target(action)
        await _still_as_drawn(runtime, release_id, drawn)
        reply = await BUTTONS[action["action_id"]](runtime, user, release_id, revision, body)
    except Refused as exc:
        reply = escape(exc.sentence)  # refusals quote what people typed
        if release_id is not None:  # the clicker saw something old: show them what is true now
            await _redraw(runtime, release_id)
    except (ValueError, KeyError):
        reply = "That button isn't one of mine any more."
    except Exception:
        log.exception("REL-%s: %s by %s failed", release_id, action.get("action_id"), user)
        reply = SORRY
    runtime.deliverer.kick()
    if reply:
        await answer_click(runtime, body, user, reply)


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
    async with rt.deps.sessions() as session:
        release = await q.get_release(session, release_id)
    if release is not None and drawn is not None and release.state != drawn:
        raise Refused(f"{release.rel_id} is {State(release.state).label} now; that button was "
                      "drawn before it changed. Look at the updated card.")


async def answer_click(rt: Runtime, body: Body, user: str, text: str) -> None:
    """Privately, in the channel or DM the click came from."""
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id")
    await tell(rt.client, user=user, text=text, channel=channel,
               response_url=body.get("response_url"))


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
    out = await svc.approve(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                            revision=rev)
    return f"You approved {out.release.rel_id} as {out.detail['role']}."


async def _start_testing(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await svc.start_testing(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                                  revision=rev)
    return f"You're testing {out.release.rel_id}."


async def _open(rt: Runtime, body: Body, view: dict[str, Any], fallback: str) -> str:
    """Open a modal now (trigger ids live 3 s); if Slack refuses, say how to do it by command."""
    try:
        await rt.client.views_open(trigger_id=body.get("trigger_id", ""), view=view)
        return ""
    except SlackApiError as exc:
        log.info("modal not opened: %s", exc.response.get("error"))
        return f"I couldn't open the form in time. Use `{fallback}` instead."


async def _reject(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    view = build_reason_modal(FormId.REJECT, "Reject release", "Why?", rid, rev)
    return await _open(rt, body, view, f"/release reject REL-{rid} <reason>")


async def _report(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    return await _open(rt, body, build_report_modal(rid, rev),
                       f"/release report REL-{rid} <url> A=0 B=0 C=0")


async def _checklist(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    """Ticks whatever boxes are now selected; unticking isn't possible, the redraw restores it."""
    action = body["actions"][0]
    items = tuple(parse_value(o["value"])[1] or 0 for o in action.get("selected_options") or [])
    if not items:
        await _redraw(rt, rid, force=True)
        return "Checklist ticks can't be undone."
    out = await svc.tick(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                         items=items)
    await _redraw(rt, rid, force=True)
    return f"Checklist of {out.release.rel_id}: {out.detail['done']}/{out.detail['total']} ticked."


async def _deploy(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await rt.deployer.deploy(release_id=rid, actor=await rt.directory.actor(user),
                                   revision=rev)
    return deploy_answer(out)


async def _verify_pass(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await deploys.verify(rt.deps, release_id=rid, actor=await rt.directory.actor(user),
                               passed=True, revision=rev)
    return verify_answer(out, True)


async def _verify_fail(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    actor = await rt.directory.actor(user)
    if "tester" not in actor.roles:  # say so before asking for a note nobody can submit
        raise Refused("Only a tester can do that.")
    view = build_reason_modal(FormId.VERIFY_FAIL, "Verification failed", "What is wrong?", rid, rev)
    return await _open(rt, body, view, f"/release verify REL-{rid} fail <note>")


async def _rollback(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await rt.deployer.rollback(release_id=rid, actor=await rt.directory.actor(user),
                                     revision=rev)
    if out.event == "rollback failed":
        return f"The rollback pipeline did not start: {out.detail.get('error')}"
    return f"Rolling {out.release.rel_id} back to `{out.detail.get('ref')}`."


async def _close(rt: Runtime, user: str, rid: int, rev: int | None, body: Body) -> str:
    out = await close_release(rt, rid, await rt.directory.actor(user), rev)
    return f"{out.release.rel_id} is closed."


BUTTONS: dict[str, Click] = {
    ActionId.APPROVE: _approve, ActionId.REJECT: _reject, ActionId.REPORT: _report,
    ActionId.START_TESTING: _start_testing, ActionId.CHECKLIST: _checklist,
    ActionId.DEPLOY: _deploy, ActionId.VERIFY_PASS: _verify_pass,
    ActionId.VERIFY_FAIL: _verify_fail, ActionId.ROLLBACK: _rollback, ActionId.CLOSE: _close,
}
