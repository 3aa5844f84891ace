"""Slack misbehaving: event retries, rate limits, errors after a post landed, spent URLs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp

from bot.app import RUNTIME
from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.gitlab import GitLabEmulator
from emulators.sample import CHANNEL, DEV, DIRECTOR, LEAD, TESTER
from emulators.slack import SlackEmulator, SlackError
from emulators.slack_driver import FORM, Reply
from handlers.blocks import ActionId
from tests.adversarial.common import filed, ready, release, thread_count
from tests.scenario.harness import Harness, running_app, wait_for

HOME = {"type": "app_home_opened", "user": LEAD, "channel": "D0LEAD", "tab": "home"}


async def test_an_event_retried_while_still_handled_has_one_effect(db_url: str,
                                                                   policy: Policy) -> None:
    """Retries 1-3 arrive while the first delivery waits on a slow Slack: Home published once."""
    async with running_app(db_url, policy) as h:
        h.slack.latency = 1.5
        first = asyncio.create_task(h.driver.event(HOME, event_id="EvSlow"))
        await wait_for(lambda: h.app[RUNTIME].inflight > 0)
        retries = await asyncio.gather(*[
            h.driver.event(HOME, event_id="EvSlow", retry_num=n) for n in (1, 2, 3)])
        assert h.app[RUNTIME].inflight > 0  # the first is still at work
        replies = [await first, *retries]
        assert [r.status for r in replies] == [200] * 4
        assert max(r.elapsed for r in replies) < 3.0
        await h.settle()
        assert len(h.slack.calls_to("views.publish")) == 1


async def test_a_delivery_seen_only_as_a_retry_is_handled_once(db_url: str,
                                                              policy: Policy) -> None:
    """The first delivery never reached us: retry #2 is handled, retry #3 is not."""
    async with running_app(db_url, policy) as h:
        assert (await h.driver.event(HOME, event_id="EvLost", retry_num=2)).status == 200
        await h.settle()
        assert (await h.driver.event(HOME, event_id="EvLost", retry_num=3)).status == 200
        await h.settle()
        assert len(h.slack.calls_to("views.publish")) == 1
        assert h.slack.home(LEAD) is not None


async def test_a_429_is_waited_out_and_the_card_posted_once(db_url: str,
                                                           policy: Policy) -> None:
    """chat.postMessage answers 429 with Retry-After: 3; the next call comes 3 s later."""
    async with running_app(db_url, policy) as h:
        h.slack.fail("chat.postMessage", status=429, retry_after=3)
        rid = await filed(h, "web v1.1.0 Rate limited")
        await h.settle(15)
        posts = h.slack.calls_to("chat.postMessage")
        assert posts[0].status == 429 and all(p.status == 200 for p in posts[1:])
        assert posts[1].at - posts[0].at >= 3.0
        assert len(h.slack.messages(CHANNEL)) == 1
        assert thread_count(h, rid, "requested") == 1


def landing_error(slack: SlackEmulator, when: Callable[[dict[str, Any]], bool]) -> list[int]:
    """chat.postMessage posts, then answers internal_error, for the first call `when` picks."""
    real, hits = slack._methods["chat.postMessage"], []

    def post(args: dict[str, Any]) -> dict[str, Any]:
        out = real(args)
        if not hits and when(args):
            hits.append(1)
            raise SlackError("internal_error")
        return out

    slack._methods["chat.postMessage"] = post
    return hits


async def retry_later(h: Harness, clock: ShiftClock) -> None:
    """Move time past the outbox's retry time (again, if a pass was mid-way) until it drains."""
    await wait_for(lambda: h.app[RUNTIME].inflight == 0)
    for _ in range(5):
        clock.offset += timedelta(seconds=10)
        try:
            await h.settle(1.5)
            return
        except AssertionError:  # a failed pass set its retry time after our move
            continue
    raise AssertionError("the outbox never drained")


async def test_a_card_that_landed_despite_an_error_is_not_posted_again(
        db_url: str, policy: Policy) -> None:
    """internal_error after the card landed: the retry finds it by metadata and stores its ts."""
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        h.slack.fail("chat.postMessage", error="internal_error", land=True)
        answer = await h.says(DEV, "request web v1.1.0 Landed anyway")
        assert "Filed REL-1" in answer
        await retry_later(h, clock)
        cards = h.slack.messages(CHANNEL)
        assert len(cards) == 1 and (await release(h, 1)).card_ts == cards[0].ts
        assert thread_count(h, 1, "requested") == 1


async def test_thread_posts_and_direct_asks_that_landed_are_not_repeated(
        db_url: str, policy: Policy) -> None:
    """A thread reply and a direct ask land with internal_error: each still arrives once."""
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        rid = await filed(h, "payments v1.1.0 Two landings")
        thread_hit = landing_error(h.slack, lambda a: "test report" in str(a.get("text")))
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1")
        await retry_later(h, clock)
        dm_hit = landing_error(h.slack, lambda a: a.get("channel") == LEAD)
        await h.says(DIRECTOR, f"approve REL-{rid}")  # no ask; then a new report asks again
        await h.says(TESTER, f"report REL-{rid} https://ci/r/2 C=1")
        await retry_later(h, clock)
        assert thread_hit and dm_hit
        assert thread_count(h, rid, "test report") == 2  # two reports, one line each
        assert len(h.slack.messages(CHANNEL)) == 1
        assert [len(h.slack.dms(u)) for u in (DIRECTOR, LEAD)] == [2, 2]


async def test_an_unreachable_approver_holds_nothing_up(db_url: str, policy: Policy) -> None:
    """One approver's DM channel is gone: the others are asked once, the thread goes on."""
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        h.slack.missing_channels.add(h.slack.dm_channel(LEAD))
        rid = await ready(h)
        for _ in range(3):
            await retry_later(h, clock)
        assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")
        await retry_later(h, clock)
        assert len(h.slack.dms(DIRECTOR)) == 1
        assert thread_count(h, rid, "approved as tech_director") == 1


async def command_with(h: Harness, user: str, text: str, *, response_url: str,
                       trigger_id: str = "", channel: str = CHANNEL) -> Reply:
    """A signed /release command carrying the given response_url and trigger_id."""
    form = {"token": "t", "team_id": "T0TEAM", "channel_id": channel, "user_id": user,
            "user_name": user.lower(), "command": "/release", "text": text,
            "api_app_id": "A0RELEASEBOT", "response_url": response_url,
            "trigger_id": trigger_id}
    reply = await h.driver.raw(urlencode(form).encode(), FORM)
    assert reply.status == 200
    await h.settle()
    return reply


async def spend(url: str, uses: int = 5) -> None:
    """Use a response_url up, as five earlier answers would."""
    async with aiohttp.ClientSession() as http:
        for _ in range(uses):
            async with http.post(url, json={"text": "earlier answer"}) as resp:
                assert resp.status == 200


async def test_spent_or_expired_urls_still_get_an_answer(db_url: str, policy: Policy) -> None:
    """A 6th response_url use, one 31 minutes old, an expired trigger: ephemeral or DM instead."""
    offset = [0.0]
    async with SlackEmulator(clock=lambda: time.time() + offset[0]) as slack, \
            GitLabEmulator() as gitlab, running_app(db_url, policy, emus=(slack, gitlab)) as h:
        spent = slack.new_response_url(user=DEV, channel=CHANNEL)
        await spend(spent)
        await command_with(h, DEV, "help", response_url=spent)
        old = slack.new_response_url(user=DEV, channel=CHANNEL)
        trigger = slack.new_trigger_id(DEV)
        offset[0] += 31 * 60
        await command_with(h, DEV, "request", response_url=old, trigger_id=trigger)
        dm_url = slack.new_response_url(user=DEV, channel="DU0DEV")
        await spend(dm_url)
        await command_with(h, DEV, "list", response_url=dm_url, channel="DU0DEV")
        outcomes = {c.args["url"]: c.response["body"] for c in slack.calls_to("response_url")}
        assert outcomes[spent] == "used_url" and outcomes[old] == "expired_url"
        assert outcomes[dm_url] == "used_url"
        assert [c.response["error"] for c in slack.calls_to("views.open")] == [
            "expired_trigger_id"]
        private = [e.text for e in slack.ephemerals(DEV) if e.source == "chat.postEphemeral"]
        assert len(private) == 2 and "/release request" in private[0]
        assert "couldn't open the form in time" in private[1]
        assert [m.text for m in slack.dms(DEV)] == ["No releases in flight."]


async def test_an_expired_trigger_on_a_button_gets_the_command_instead(
        db_url: str, policy: Policy) -> None:
    """Reject clicked with a stale trigger_id: no form, but the one-line command is offered."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        h.slack.fail("views.open", error="expired_trigger_id")
        answer = await h.click(DIRECTOR, ActionId.REJECT)
        assert f"/release reject REL-{rid} &lt;reason&gt;" in answer  # no <…> Slack would parse
        assert (await release(h, rid)).state == "ready_for_signoff"


async def test_a_landed_card_is_found_behind_a_busy_channel(db_url: str,
                                                            policy: Policy) -> None:
    """The card landed with an error, then 150 other messages: the retry still finds it."""
    clock = ShiftClock()
    async with running_app(db_url, policy, clock=clock) as h:
        h.slack.fail("chat.postMessage", error="internal_error", land=True)
        assert "Filed REL-1" in await h.says(DEV, "request web v1.1.0 Busy channel")
        await wait_for(lambda: len(h.slack.messages(CHANNEL)) == 1)
        async with aiohttp.ClientSession() as http:
            for n in range(150):
                async with http.post(f"{h.slack.base_url}chat.postMessage", data={
                        "token": "xoxb-someone", "channel": CHANNEL, "text": f"chatter {n}"}):
                    pass
        await retry_later(h, clock)
        cards = [m for m in h.slack.messages(CHANNEL) if not m.text.startswith("chatter")]
        assert len(cards) == 1 and (await release(h, 1)).card_ts == cards[0].ts
