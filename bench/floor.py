"""The framework's floor: a bare Bolt AsyncApp on aiohttp whose listeners only ack.

`python -m bench.floor PORT` serves `POST /slack/events` and `GET /healthz` on 127.0.0.1.
It verifies signatures with the same secret as the bot and never calls Slack.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult

from bench.common import SECRET


async def _authorize(enterprise_id: str | None, team_id: str | None,
                     **_: Any) -> AuthorizeResult:
    """A fixed bot token, so Bolt never calls auth.test."""
    return AuthorizeResult(enterprise_id=enterprise_id, team_id=team_id, bot_token="xoxb-floor")


def build() -> web.Application:
    """The bare app: every /release command and every button is acked and nothing else."""
    bolt = AsyncApp(signing_secret=SECRET, authorize=_authorize)

    @bolt.command(re.compile(r"^/release"))
    async def command(ack: Any) -> None:
        """Ack only."""
        await ack()

    @bolt.action(re.compile(".*"))
    async def action(ack: Any) -> None:
        """Ack only."""
        await ack()

    app = bolt.web_app(path="/slack/events")

    async def healthz(_request: web.Request) -> web.Response:
        """Always healthy."""
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    web.run_app(build(), host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
