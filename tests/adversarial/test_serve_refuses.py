"""`serve` never runs Slack over HTTP unverified: no secret, no start; no switch to turn it off."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from bot.app import create_app
from bot.cli import parser
from bot.policy import Policy
from bot.settings import Settings, SettingsError, load_settings
from emulators.sample import DEV
from emulators.slack_driver import SlackDriver
from tests.adversarial.common import row_counts
from tests.bot.cli.test_cli import releasebot
from tests.scenario.harness import Harness, emulators

SECRETLESS = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_API_URL": "http://127.0.0.1:9/api/"}


@pytest.mark.parametrize("secret", [None, "", "   "])
def test_http_serve_refuses_to_start_without_a_secret(tmp_path: Path, secret: str | None) -> None:
    """Unset, empty or blank SLACK_SIGNING_SECRET: exit 2 with one line naming it."""
    env = dict(SECRETLESS)
    if secret is not None:
        env["SLACK_SIGNING_SECRET"] = secret
    result = releasebot("serve", "--port", "9", env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLACK_SIGNING_SECRET" in lines[0], result.stderr


def test_no_switch_disables_verification() -> None:
    """Neither the command line nor the settings offer a way to skip signature checks."""
    serve = next(a for a in parser()._subparsers._group_actions  # type: ignore[union-attr]
                 if a.dest == "command").choices["serve"]
    options = {opt for action in serve._actions for opt in action.option_strings}
    assert options == {"-h", "--help", "--host", "--port", "--socket-mode", "--workers"}
    assert not [f for f in Settings.model_fields if "verif" in f or "insecure" in f]
    with pytest.raises(SettingsError, match="SLACK_SIGNING_SECRET: must not be blank"):
        load_settings(slack_signing_secret=" ")


@asynccontextmanager
async def secretless_app(db_url: str, policy: Policy) -> AsyncIterator[Harness]:
    """The app as Socket Mode builds it (no signing secret), serving HTTP on loopback."""
    async with emulators() as (slack, gitlab):
        cfg = load_settings(slack_bot_token="xoxb-test", slack_api_url=slack.base_url,
                            database_url=db_url, gitlab_url=gitlab.url,
                            gitlab_token="glpat-test", gitlab_poll_seconds=3600)
        runner = web.AppRunner(create_app(cfg, policy))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}"
        try:
            async with SlackDriver(url, "", slack) as driver:
                yield Harness(runner.app, url, slack, driver, gitlab)
        finally:
            await runner.cleanup()


async def test_without_a_secret_http_requests_are_refused(db_url: str, policy: Policy) -> None:
    """With no secret, Slack's HTTP endpoint verifies nothing, so it takes nothing at all."""
    async with secretless_app(db_url, policy) as h:
        before = await row_counts(h)
        for opts in ({}, {"sign": False}, {"timestamp": int(time.time())}):
            reply = await h.driver.command(DEV, "request web v1.1.0 Sneaky", **opts)  # type: ignore[arg-type]
            assert reply.status == 401, (opts, reply.body)
        assert await row_counts(h) == before
        assert [c.method for c in h.slack.calls] == []
