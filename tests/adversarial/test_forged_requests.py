"""Forged, replayed and altered Slack requests: 401, nothing written, nothing sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR
from emulators.slack_driver import Reply
from handlers.blocks import ActionId
from tests.adversarial.common import approvals, ready, row_counts
from tests.scenario.harness import Harness, running_app

Attack = Callable[[Harness, str], Awaitable[Reply]]
HOME = {"type": "app_home_opened", "user": DIRECTOR, "channel": "D0DIR", "tab": "home"}


def _attacks() -> dict[str, Attack]:
    """Each way a request can fail verification, against a command, a click and an event."""
    # The future ones are far enough ahead that a loaded machine's delay before the check
    # cannot bring them back inside Slack's five minutes.
    now = int(time.time())
    ahead = now + 360
    wrong = {"X-Slack-Signature": "v0=" + "0" * 64}
    return {
        "command replayed 301 s later": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Replayed", timestamp=now - 301),
        "command from 6 min in the future": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Future", timestamp=ahead),
        "command with one byte changed": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Tampered", tamper=True),
        "command without a signature": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Unsigned", sign=False),
        "command signed with another secret": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Wrong key", headers=wrong),
        "command with a timestamp that is not a number": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Garbage", headers={"X-Slack-Request-Timestamp": "soon"}),
        "command with a 5000-digit timestamp": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Huge", headers={"X-Slack-Request-Timestamp": "9" * 5000}),
        "command with a non-ASCII digit timestamp": lambda h, v: h.driver.command(
            DEV, "request web v1.1.0 Digits", headers={"X-Slack-Request-Timestamp": "١٧٠٠"}),
        "click replayed 301 s later": lambda h, v: h.driver.click(
            DIRECTOR, ActionId.APPROVE, v, timestamp=now - 301),
        "click from 6 min in the future": lambda h, v: h.driver.click(
            DIRECTOR, ActionId.APPROVE, v, timestamp=ahead),
        "click with one byte changed": lambda h, v: h.driver.click(
            DIRECTOR, ActionId.APPROVE, v, tamper=True),
        "click without a signature": lambda h, v: h.driver.click(
            DIRECTOR, ActionId.APPROVE, v, sign=False),
        "event replayed 301 s later": lambda h, v: h.driver.event(
            HOME, event_id="EvOld", timestamp=now - 301),
        "event with one byte changed": lambda h, v: h.driver.event(
            HOME, event_id="EvTampered", tamper=True),
        "event without a signature": lambda h, v: h.driver.event(
            HOME, event_id="EvUnsigned", sign=False),
    }


async def test_forged_requests_are_refused_without_effect(db_url: str, policy: Policy) -> None:
    """401 for every forgery; the same row counts and no Slack or GitLab call afterwards."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        value = next(e["value"] for b in h.card(rid).blocks if b["type"] == "actions"
                     for e in b["elements"] if e.get("action_id") == ActionId.APPROVE)
        before = await row_counts(h)
        slack_calls, gitlab_calls = len(h.slack.calls), len(h.gitlab.calls)
        for name, attack in _attacks().items():
            reply = await attack(h, value)
            assert reply.status == 401, f"{name}: {reply.status} {reply.body}"
            assert reply.json == {"error": "invalid request"}, name
        await asyncio.sleep(0.3)
        await h.settle()
        assert await row_counts(h) == before
        assert h.slack.calls[slack_calls:] == [] and h.gitlab.calls[gitlab_calls:] == []


async def test_a_genuine_request_still_works_after_forgeries(db_url: str,
                                                             policy: Policy) -> None:
    """The refusals are about the request, not the sender: the same click, signed, counts."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        assert (await h.driver.click(DIRECTOR, ActionId.APPROVE, "", sign=False)).status == 401
        assert "You approved" in await h.click(DIRECTOR, ActionId.APPROVE)
        assert [a.approver for a in await approvals(h, rid)] == [DIRECTOR]


async def test_ssl_check_is_answered_without_side_effects(db_url: str, policy: Policy) -> None:
    """Slack's ssl_check probe: 200, signed or not, and nothing written or sent."""
    async with running_app(db_url, policy) as h:
        await ready(h)
        before = await row_counts(h)
        slack_calls, gitlab_calls = len(h.slack.calls), len(h.gitlab.calls)
        for opts in ({}, {"sign": False}, {"timestamp": int(time.time()) - 3600}):
            reply = await h.driver.ssl_check(**opts)  # type: ignore[arg-type]
            assert reply.status == 200 and reply.body == "", opts
        await asyncio.sleep(0.3)
        await h.settle()
        assert await row_counts(h) == before
        assert h.slack.calls[slack_calls:] == [] and h.gitlab.calls[gitlab_calls:] == []
