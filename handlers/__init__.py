"""Slack listeners: one place wires every command, action, view and event to a function."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from handlers.access import OUTSIDER, request_origin
from handlers.actions import BUTTONS, answer_click, on_button
from handlers.answer import BUSY, tell
from handlers.blocks import FormId
from handlers.commands import on_release_command
from handlers.home import on_home_opened
from handlers.runtime import Runtime
from handlers.views import (
    on_abandon_submit,
    on_decide_submit,
    on_plan_changes_submit,
    on_plan_submit,
    on_reject_submit,
    on_report_submit,
    on_request_submit,
    on_verify_fail_submit,
)

Listener = Callable[..., Awaitable[None]]


def _bind(fn: Listener, runtime: Runtime, queued: bool = True) -> Listener:
    """A listener that asks Bolt only for ack and body, with our runtime bound in.

    `queued` listeners ack first and then wait for a worker slot; forms are not queued,
    since their ack may carry errors and must come after the checks. Nobody outside the
    workspace gets further than one sentence. The work runs as a task of its own and the
    listener returns as soon as it is acknowledged, so Bolt answers Slack at once (Bolt's own
    way, without process_before_response, looks for the ack every 10 ms).
    """

    async def listener(ack: Any, body: dict[str, Any]) -> None:
        user = request_origin(body)[0] or ""
        if not runtime.admit(user, shed=queued):
            await busy(ack, body, runtime)
            return
        acked = asyncio.Event()

        async def ack_noted(*args: Any, **kwargs: Any) -> None:
            await ack(*args, **kwargs)
            acked.set()

        work = runtime.background(_work(fn, ack_noted, body, runtime, user, queued))
        await _until_acked(acked, work)

    listener.__name__ = fn.__name__
    return listener


async def _work(fn: Listener, ack: Any, body: dict[str, Any], runtime: Runtime, user: str,
                queued: bool) -> None:
    """The listener's work, its slot in the runtime held until it ends."""
    try:
        if not queued:
            await _served(fn, ack, body, runtime)
            return
        await ack()
        async with runtime.workers:
            await _served(fn, _acked, body, runtime)
    finally:
        runtime.release(user)


async def _until_acked(acked: asyncio.Event, work: asyncio.Task[None]) -> None:
    """Return once the request is acknowledged; if the work ended first, with its error."""
    noted = asyncio.ensure_future(acked.wait())
    try:
        await asyncio.wait({noted, work}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        noted.cancel()
    if not acked.is_set():
        work.result()  # failed before acknowledging: Bolt answers the error


async def _served(fn: Listener, ack: Any, body: dict[str, Any], runtime: Runtime) -> None:
    """Run the listener for a member of the workspace; tell anyone else no, and do nothing."""
    if await runtime.access.admits(body):
        await fn(ack, body, runtime)
        return
    await ack()
    if body.get("command"):
        await tell(runtime.client, user=body.get("user_id", ""), text=OUTSIDER,
                   response_url=body.get("response_url"))
    elif body.get("type") == "block_actions":
        await answer_click(runtime, body, OUTSIDER)


async def _acked(*_: Any, **__: Any) -> None:
    """The ack a queued listener calls: it was already sent."""


async def busy(ack: Any, body: dict[str, Any], runtime: Runtime) -> None:
    """Too much waiting already: say so at once instead of queueing more."""
    runtime.on_shed()
    if body.get("command"):  # a slash command's ack can carry the answer itself
        await ack(text=BUSY)
        return
    await ack()
    if body.get("type") == "block_actions":
        await answer_click(runtime, body, BUSY)


def register_listeners(app: AsyncApp, runtime: Runtime) -> None:
    """The route table: every Slack entry point of the bot."""
    bind = partial(_bind, runtime=runtime)
    form = partial(_bind, runtime=runtime, queued=False)
    app.command(re.compile(r"^/release"))(bind(on_release_command))
    app.action(re.compile("^(" + "|".join(map(re.escape, BUTTONS)) + ")$"))(bind(on_button))
    app.view(FormId.REQUEST)(form(on_request_submit))
    app.view(FormId.REPORT)(form(on_report_submit))
    app.view(FormId.REJECT)(form(on_reject_submit))
    app.view(FormId.VERIFY_FAIL)(form(on_verify_fail_submit))
    app.view(FormId.PLAN)(form(on_plan_submit))
    app.view(FormId.PLAN_CHANGES)(form(on_plan_changes_submit))
    app.view(FormId.ABANDON)(form(on_abandon_submit))
    app.view(FormId.DECIDE_FIX)(form(on_decide_submit))
    app.view(FormId.DECIDE_ACCEPT)(form(on_decide_submit))
    app.event("app_home_opened")(bind(on_home_opened))
