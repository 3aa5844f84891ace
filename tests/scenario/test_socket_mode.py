"""Socket Mode: Slack traffic over a WebSocket, the same answers and the same card."""

from __future__ import annotations

from aiohttp import web

from bot.app import create_app, socket_mode
from bot.policy import Policy
from bot.settings import load_settings
from tests.scenario.harness import emulators, wait_for


async def test_a_command_over_socket_mode(db_url: str, policy: Policy) -> None:
    """The app connects with its xapp token, acks the envelope, answers and posts the card."""
    async with emulators() as (slack, gitlab):
        settings = load_settings(slack_bot_token="xoxb-test", slack_app_token="xapp-test",
                                 slack_api_url=slack.base_url, database_url=db_url,
                                 gitlab_url=gitlab.url, gitlab_token="glpat-test",
                                 gitlab_poll_seconds=3600)
        app = create_app(settings, policy)
        app.cleanup_ctx.append(socket_mode)
        runner = web.AppRunner(app)
        await runner.setup()
        try:
            await wait_for(lambda: bool(slack.sockets), 10)
            payload = {"token": "x", "team_id": "T0TEAM", "channel_id": "C0RELEASES",
                       "user_id": "U0DEV", "command": "/release",
                       "text": "request web v1.1.0 Over the socket", "api_app_id": "A0RELEASEBOT",
                       "response_url": slack.new_response_url(user="U0DEV"),
                       "trigger_id": slack.new_trigger_id("U0DEV")}
            ack = await slack.send_envelope("slash_commands", payload)
            assert ack["envelope_id"]
            await wait_for(lambda: bool(slack.ephemerals("U0DEV")), 10)
            assert slack.ephemerals("U0DEV")[0].text.startswith("Filed REL-1")
            await wait_for(lambda: len(slack.messages("C0RELEASES")) == 1, 10)
            assert "Over the socket" in slack.messages("C0RELEASES")[0].text
        finally:
            await runner.cleanup()
