"""Modal submissions: validate (errors shown in the form), ack, act, answer."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot import deploys, releases
from bot.workflow import Refused
from handlers.answer import tell
from handlers.blocks import escape
from handlers.commands import SORRY
from handlers.modals import field_value, parse_metadata, parse_report_view, parse_request_view
from handlers.runtime import Runtime

log = logging.getLogger(__name__)
Body = dict[str, Any]
Act = Callable[[], Awaitable[str]]


def _values(body: Body) -> dict[str, Any]:
    """The submitted view's state values."""
    return ((body.get("view") or {}).get("state") or {}).get("values") or {}


def _target(body: Body) -> tuple[int, int | None]:
    """The release and revision a form was opened for."""
    try:
        return parse_metadata((body.get("view") or {}).get("private_metadata") or "")
    except ValueError:
        raise Refused("That form isn't one of mine any more.") from None


async def _finish(ack: AsyncAck, rt: Runtime, body: Body, act: Act, channel: str | None) -> None:
    """Close the modal, do the work, and tell the person how it went."""
    await ack()
    user = (body.get("user") or {}).get("id", "")
    try:
        reply = await act()
    except Refused as exc:
        reply = escape(exc.sentence)  # refusals quote what people typed
    except Exception:
        log.exception("modal %s by %s failed", (body.get("view") or {}).get("callback_id"), user)
        reply = SORRY
    rt.deliverer.kick()
    if reply:
        await tell(rt.client, user=user, text=reply, channel=channel)


async def on_request_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The request form: field errors stay in the form; a good request is filed."""
    policy = runtime.deps.policy
    new, errors = parse_request_view(_values(body), policy, runtime.deps.clock())
    if new is not None and (problems := releases.validate_request(runtime.deps, new)):
        errors = {"title": " ".join(problems)[:150]}
    if errors or new is None:
        await ack(response_action="errors", errors=errors)
        return
    user = (body.get("user") or {}).get("id", "")

    async def act() -> str:
        actor = await runtime.directory.actor(user)
        out = await releases.request_release(runtime.deps, actor=actor, new=new)
        return f"Filed {out.release.rel_id}. Its card is in <#{policy.release_channel}>."

    await _finish(ack, runtime, body, act, (body.get("view") or {}).get("private_metadata"))


async def on_report_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The test report form."""
    parsed, errors = parse_report_view(_values(body))
    if parsed is None:
        await ack(response_action="errors", errors=errors)
        return
    user = (body.get("user") or {}).get("id", "")

    async def act() -> str:
        release_id, revision = _target(body)
        out = await releases.attach_report(
            runtime.deps, release_id=release_id, actor=await runtime.directory.actor(user),
            report=releases.ReportInput(url=parsed[0], bugs=parsed[1]), revision=revision)
        verdict = "meets" if out.detail["passes"] else "does not meet"
        return f"Report attached to {out.release.rel_id}; it {verdict} the go-live standard."

    await _finish(ack, runtime, body, act, None)


async def on_reject_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The rejection reason."""
    reason = field_value(_values(body), "reason")
    if not reason:
        await ack(response_action="errors", errors={"reason": "Please give a reason."})
        return
    user = (body.get("user") or {}).get("id", "")

    async def act() -> str:
        release_id, revision = _target(body)
        out = await releases.reject(runtime.deps, release_id=release_id, reason=reason,
                               actor=await runtime.directory.actor(user), revision=revision)
        return f"You rejected {out.release.rel_id}."

    await _finish(ack, runtime, body, act, None)


async def on_verify_fail_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The note of a failed verification."""
    note = field_value(_values(body), "reason")
    if not note:
        await ack(response_action="errors", errors={"reason": "Say what is wrong."})
        return
    user = (body.get("user") or {}).get("id", "")

    async def act() -> str:
        release_id, revision = _target(body)
        out = await deploys.verify(runtime.deps, release_id=release_id, passed=False, note=note,
                                   actor=await runtime.directory.actor(user), revision=revision)
        return f"Recorded the failed verification of {out.release.rel_id}. Roll back from the card."

    await _finish(ack, runtime, body, act, None)
