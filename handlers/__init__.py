"""Slack listeners: one place wires every command, action, view and event to a function."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from slack_bolt.async_app import AsyncApp

from handlers.actions import BUTTONS, on_button
from handlers.blocks import V
from handlers.commands import on_release_command
from handlers.home import on_home_opened
from handlers.runtime import Runtime
from handlers.views import (
    on_reject_submit,
    on_report_submit,
    on_request_submit,
    on_verify_fail_submit,
)

Listener = Callable[..., Awaitable[None]]


def _bind(fn: Listener, runtime: Runtime) -> Listener:
    """A listener that asks Bolt only for ack and body, with our runtime bound in."""

    async def listener(ack: Any, body: dict[str, Any]) -> None:
        runtime.inflight += 1
        runtime.idle.clear()
        try:
            await fn(ack, body, runtime)
        finally:
            runtime.inflight -= 1
            if not runtime.inflight:
                runtime.idle.set()

    listener.__name__ = fn.__name__
    return listener


def register_listeners(app: AsyncApp, runtime: Runtime) -> None:
    """The route table: every Slack entry point of the bot."""
    bind = partial(_bind, runtime=runtime)
    app.command(re.compile(r"^/release"))(bind(on_release_command))
    app.action(re.compile("^(" + "|".join(map(re.escape, BUTTONS)) + ")$"))(bind(on_button))
    app.view(V.REQUEST)(bind(on_request_submit))
    app.view(V.REPORT)(bind(on_report_submit))
    app.view(V.REJECT)(bind(on_reject_submit))
    app.view(V.VERIFY_FAIL)(bind(on_verify_fail_submit))
    app.event("app_home_opened")(bind(on_home_opened))
