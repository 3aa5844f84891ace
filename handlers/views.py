"""Modal submissions: validate (errors shown in the form), ack, act, answer."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot import deploys, golive, releases
from bot.workflow import Refused, reason_sentence
from handlers import answer
from handlers.answer import STALE_FORM, Asker, Reply, Work, answer_after
from handlers.blocks import FormId, clip, value_environment
from handlers.modals import (
    field_value,
    parse_metadata,
    parse_report_view,
    parse_request_view,
    plan_values,
)
from handlers.runtime import Runtime

Body = dict[str, Any]


def _values(body: Body) -> dict[str, Any]:
    """The submitted view's state values."""
    return ((body.get("view") or {}).get("state") or {}).get("values") or {}


def _user(body: Body) -> str:
    """Who submitted the form."""
    return (body.get("user") or {}).get("id", "")


def _target(body: Body) -> tuple[int, int | None]:
    """The release and revision a form was opened for."""
    try:
        return parse_metadata((body.get("view") or {}).get("private_metadata") or "")
    except ValueError:
        raise Refused(STALE_FORM) from None


async def _finish(ack: AsyncAck, rt: Runtime, body: Body, act: Work, channel: str | None) -> None:
    """Close the modal, do the work, and tell the person how it went."""
    callback = (body.get("view") or {}).get("callback_id")
    await answer_after(ack, rt, act, asker=Asker(_user(body), channel), doing=f"form {callback}")


async def _note_refused(ack: AsyncAck, note: str) -> bool:
    """Keep a reason form open with the table's sentence when its note is empty."""
    if sentence := reason_sentence(note):
        await ack(response_action="errors", errors={"reason": clip(sentence, 150)})
        return True
    return False


async def on_request_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The request form: field errors stay in the form; a good request is filed."""
    policy = runtime.deps.policy
    new, errors = parse_request_view(_values(body), policy, runtime.deps.clock())
    if errors or new is None:
        await ack(response_action="errors", errors=errors)
        return

    async def act() -> Reply:
        out = await releases.request_release(runtime.deps, new=new,
                                        actor=await runtime.directory.actor(_user(body)))
        return answer.filed(out, policy.release_channel, runtime.deliverer.channel_problem,
                            answer.planned_hold(out.release, policy))

    await _finish(ack, runtime, body, act, (body.get("view") or {}).get("private_metadata"))


async def on_report_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The test report form."""
    parsed, errors = parse_report_view(_values(body))
    if parsed is None:
        await ack(response_action="errors", errors=errors)
        return

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await releases.attach_report(
            runtime.deps, release_id=release_id, actor=await runtime.directory.actor(_user(body)),
            report=releases.ReportInput(url=parsed[0], bugs=parsed[1]), revision=revision)
        return answer.report_attached(out)

    await _finish(ack, runtime, body, act, None)


async def on_reject_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The rejection reason."""
    reason = field_value(_values(body), "reason")
    if await _note_refused(ack, reason):
        return

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await releases.reject(runtime.deps, release_id=release_id, reason=reason,
                               actor=await runtime.directory.actor(_user(body)),
                               revision=revision)
        return answer.rejected(out)

    await _finish(ack, runtime, body, act, None)


async def on_abandon_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The reason a release manager abandons a stuck deploy."""
    reason = field_value(_values(body), "reason")
    if await _note_refused(ack, reason):
        return

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await runtime.deployer.abandon(release_id=release_id, reason=reason,
                                             actor=await runtime.directory.actor(_user(body)),
                                             revision=revision)
        return answer.abandoned(out)

    await _finish(ack, runtime, body, act, None)


async def on_verify_fail_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The note of a failed verification."""
    note = field_value(_values(body), "reason")
    if await _note_refused(ack, note):
        return

    async def act() -> Reply:
        release_id, revision = _target(body)
        env = value_environment((body.get("view") or {}).get("private_metadata") or "")
        out = await deploys.verify(runtime.deps, release_id=release_id, passed=False, note=note,
                                   actor=await runtime.directory.actor(_user(body)),
                                   revision=revision, environment=env)
        return answer.verified(out, False)

    await _finish(ack, runtime, body, act, None)


async def on_plan_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The whole go-live plan, as edited in its form."""
    plan = plan_values(_values(body))

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await golive.edit_plan(runtime.deps, release_id=release_id, changes=plan,
                                     replace_all=True, revision=revision,
                                     actor=await runtime.directory.actor(_user(body)))
        return answer.plan_edited(out)

    await _finish(ack, runtime, body, act, None)


async def on_decide_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The executive's reason to have the problems fixed, or to keep them."""
    reason = field_value(_values(body), "reason")
    if await _note_refused(ack, reason):
        return
    fix = (body.get("view") or {}).get("callback_id") == FormId.DECIDE_FIX

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await deploys.decide(runtime.deps, release_id=release_id, fix=fix, reason=reason,
                                   actor=await runtime.directory.actor(_user(body)),
                                   revision=revision)
        return answer.decided(out)

    await _finish(ack, runtime, body, act, None)


async def on_plan_changes_submit(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """The changes a plan's reviewer asks for."""
    note = field_value(_values(body), "reason")
    if await _note_refused(ack, note):
        return

    async def act() -> Reply:
        release_id, revision = _target(body)
        out = await golive.review_plan(runtime.deps, release_id=release_id, ok=False,
                                       note=note, revision=revision,
                                       actor=await runtime.directory.actor(_user(body)))
        return answer.plan_reviewed(out)

    await _finish(ack, runtime, body, act, None)
