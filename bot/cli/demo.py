"""`releasebot demo` and `releasebot say`: four releases end to end against built-in emulators.

Nothing here needs settings, a policy file or the network: Slack and GitLab are the project's own
emulators on loopback, the database is SQLite in a temporary folder, and scripted people send
signed requests exactly as Slack would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TextIO

import aiohttp
from aiohttp import web
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from bot.app import DEPS, POLICY, RUNTIME, create_app
from bot.cli import CommandError
from bot.policy import Policy, parse_policy
from bot.settings import Settings
from bot.transition import ShiftClock
from bot.workflow import EVENTS, Event
from emulators.gitlab import GitLabEmulator
from emulators.sample import (
    CHANNEL,
    CTO,
    DBA,
    DEV,
    DIRECTOR,
    LEAD,
    OPS,
    PEOPLE,
    TESTER,
    sample_policy_yaml,
)
from emulators.slack import Message, SlackEmulator, render_message
from emulators.slack_driver import SlackDriver
from handlers.blocks import ActionId
from handlers.http import quiet_token_warning
from storage import queries as q
from storage.models import AuditEntry, Release

CHANNEL_NAME = "#releases"
HOTFIX_REF = "hotfix/payout-timeout"
PIPELINE_STEP = 0.25  # seconds between GitLab pipeline states: quick, yet visibly asynchronous
SLOW_PAUSE = 1.5
WAIT = 30.0

BOT_NAME = "ReleaseBot"
# The sample policy, with standard releases needing a go-live plan the tech director reviews,
# and web's open bugs counted in its GitLab issues (by severity label, per milestone).
DEMO_POLICY_YAML = sample_policy_yaml(
    policies={"standard": {"plan": {"required": ["impact", "rollback", "db_scripts"],
                                    "reviewer": "tech_director"}}},
    projects={"web": {"bug_tracker": {"kind": "gitlab"}}})


class DemoStop(Exception):
    """The scripted flow cannot go on; the message says what did not happen."""


# --- making Slack text readable in a terminal -----------------------------------------------------

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)>")
_CHANNEL_REF = re.compile(r"<#([CG][A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]+)>")
_BARE_LINK = re.compile(r"<(https?://[^>]+)>")
_BOLD = re.compile(r"\*([^*\n]+)\*")
_ITALIC = re.compile(r"(?<!\w)_([^_\n]+)_(?!\w)")


def name_of(user: str) -> str:
    """The demo name of a Slack user ID (or the bot), else the ID itself."""
    if user in PEOPLE:
        return PEOPLE[user][1]
    return BOT_NAME if user in ("releasebot", "UBOT") else user


def plain(text: str, names: Callable[[str], str] = name_of) -> str:
    """Slack mrkdwn as a reader sees it: names for mentions, link labels, no markup."""
    text = _MENTION.sub(lambda m: names(m.group(1)), text)
    text = _CHANNEL_REF.sub(lambda m: CHANNEL_NAME if m.group(1) == CHANNEL else "#" + m.group(1),
                            text)
    text = _LINK.sub(lambda m: m.group(2), text)
    text = _BARE_LINK.sub(lambda m: m.group(1), text)
    text = _ITALIC.sub(lambda m: m.group(1), _BOLD.sub(lambda m: m.group(1), text))
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def raw_lines(text: str, blocks: list[dict[str, Any]] | None) -> list[str]:
    """A message's lines as Slack would lay them out, mrkdwn untouched."""
    return render_message(Message(channel="", ts="", text=text, blocks=blocks or []))


def message_lines(text: str, blocks: list[dict[str, Any]] | None,
                  names: Callable[[str], str] = name_of) -> list[str]:
    """A message (text and blocks) as the lines a reader sees."""
    return [plain(line, names) for line in raw_lines(text, blocks)]


# --- the running demo ---------------------------------------------------------------------------

@dataclass
class Demo:
    """The bot on loopback with both emulators, the signed driver, and the step log."""

    app: web.Application
    url: str
    secret: str
    slack: SlackEmulator
    gitlab: GitLabEmulator
    driver: SlackDriver
    folder: Path
    out: TextIO
    pause: float = 0.0
    clock: ShiftClock = field(default_factory=ShiftClock)

    # -- what the reader of the step log sees --------------------------------------------------

    def log(self, line: str = "") -> None:
        """One line of the live step log."""
        print(line, file=self.out, flush=True)

    async def beat(self) -> None:
        """A pause between steps when a person is watching (--slow)."""
        if self.pause:
            await asyncio.sleep(self.pause)

    # -- people acting -----------------------------------------------------------------------------

    async def say(self, user: str, text: str) -> str:
        """`user` types `/release text`; their private answer."""
        await self.beat()
        self.log(f"  {name_of(user)}: /release {text}")
        before = len(self.slack.ephemerals(user))
        reply = await self.driver.command(user, text)
        if reply.status != 200:
            raise DemoStop(f"the bot answered HTTP {reply.status} to /release {text}")
        await self.wait(lambda: len(self.slack.ephemerals(user)) > before,
                        f"no answer to {name_of(user)}'s /release {text}")
        await self.settle()
        answer = self.slack.ephemerals(user)[before]
        return self._show_answer(user, answer.text, answer.blocks)

    async def click(self, user: str, action_id: str, rid: int) -> str:
        """`user` clicks a button on REL-rid's card; their private answer, if any."""
        await self.beat()
        card = await self.card(rid)
        label = _button_label(card, action_id)
        if label is None:
            what = action_id.removeprefix("release_").replace("_", " ")
            raise DemoStop(f"REL-{rid}'s card shows no {what} button "
                           f"(it is {_label(await self.state(rid))})")
        self.log(f"  {name_of(user)} clicks [{label}] on REL-{rid}")
        before = len(self.slack.ephemerals(user))
        reply = await self.driver.click(user, action_id, "", message_ts=card.ts)
        if reply.status != 200:
            raise DemoStop(f"the bot answered HTTP {reply.status} to the {label} click")
        await self.settle()
        answers = self.slack.ephemerals(user)[before:]
        return self._show_answer(user, answers[0].text, answers[0].blocks) if answers else ""

    def _show_answer(self, user: str, text: str, blocks: list[dict[str, Any]]) -> str:
        """Log a private answer under the step; return it as plain text."""
        lines = message_lines(text, blocks)
        self.log(f"      ↳ only {name_of(user).split(' ')[0]} sees: {lines[0]}")
        for line in lines[1:]:
            self.log(f"        {line}")
        return "\n".join(lines)

    async def pipeline(self, rid: int, action: str = ActionId.DEPLOY) -> str:
        """The release manager clicks Deploy (or Roll back); the state after GitLab's verdict."""
        during = "rolling_back" if action == ActionId.ROLLBACK else "deploying"
        await self.click(OPS, action, rid)
        self.log("      ⋯ GitLab runs the pipeline and reports back through the webhook")
        await self.wait_db(lambda rel: rel.state != during,
                           rid, f"REL-{rid}'s pipeline never finished")
        await self.settle()
        return await self.state(rid)

    # -- waiting ----------------------------------------------------------------------------------

    async def wait(self, cond: Callable[[], bool], what: str, within: float = WAIT) -> None:
        """Poll until cond() holds, else stop the flow saying `what` did not happen."""
        deadline = time.monotonic() + within
        while not cond():
            if time.monotonic() > deadline:
                raise DemoStop(what)
            await asyncio.sleep(0.02)

    async def wait_db(self, cond: Callable[[Release], bool], rid: int, what: str) -> None:
        """Poll the stored release until cond(release) holds."""
        deadline = time.monotonic() + WAIT
        while not cond(await self.release(rid)):
            if time.monotonic() > deadline:
                raise DemoStop(what)
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        """Wait until the bot's listeners are done and every announcement is posted."""
        if not await self.app[RUNTIME].settle(WAIT):
            raise DemoStop("the bot did not finish posting its announcements")

    # -- reading the outcome ----------------------------------------------------------------------

    async def release(self, rid: int) -> Release:
        """The stored release."""
        async with self.app[DEPS].sessions() as session:
            release = await q.get_release(session, rid)
        if release is None:
            raise DemoStop(f"there is no REL-{rid}")
        return release

    async def state(self, rid: int) -> str:
        """The stored state of a release."""
        return (await self.release(rid)).state

    async def card(self, rid: int) -> Message:
        """The release's card in the channel."""
        release = await self.release(rid)
        card = self.slack.message(CHANNEL, release.card_ts or "")
        if card is None:
            raise DemoStop(f"REL-{rid} has no card in {CHANNEL_NAME}")
        return card

    async def audit(self, rid: int) -> list[AuditEntry]:
        """A release's audit trail."""
        async with self.app[DEPS].sessions() as session:
            return list(await q.audit_of(session, rid))


def _button_label(card: Message, action_id: str) -> str | None:
    """The label of the card's button with this action id, if it shows one."""
    for block in card.blocks:
        for element in block.get("elements") or []:
            if element.get("action_id") == action_id and element.get("type") == "button":
                return str(element["text"]["text"])
    return None


def _filed(answer: str) -> int:
    """The number in `Filed REL-n.`."""
    match = re.search(r"Filed REL-(\d+)", answer)
    if match is None:
        raise DemoStop(f"the release was not filed: {answer}")
    return int(match.group(1))


# --- the script -----------------------------------------------------------------------------------

async def standard_release(d: Demo) -> int:
    """Request → report → two sign-offs → checklist → staging → production → verify → close."""
    d.log("\n1. A standard release: payments v1.1.0, from request to close\n")
    rid = _filed(await d.say(DEV, "request payments v1.1.0 Refunds API and currency rounding fix"))
    await write_plan(d, rid)
    await d.click(TESTER, ActionId.START_TESTING, rid)
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/payments-1.1.0 "
                        "A=0 B=0 C=2")
    await d.say(LEAD, f"reject REL-{rid} Refunds in JPY were never tested; back to testing")
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/payments-1.1.0-jpy "
                        "A=0 B=0 C=2")
    await d.click(DIRECTOR, ActionId.APPROVE, rid)
    await d.click(LEAD, ActionId.APPROVE, rid)
    await d.say(OPS, f"check REL-{rid} 1 2")
    await d.say(DBA, f"check REL-{rid} 3")
    if await d.pipeline(rid) != "deployed":
        raise DemoStop(f"REL-{rid}'s staging deploy did not succeed")
    d.log("      (Tariq and Lena are asked to run their acceptance cases on staging)")
    await d.say(OPS, f"deploy REL-{rid} production")  # refused: staging is not accepted yet
    await d.click(TESTER, ActionId.VERIFY_PASS, rid)  # "Staging OK"
    if await d.pipeline(rid) != "deployed":
        raise DemoStop(f"REL-{rid}'s production deploy did not succeed")
    await d.click(TESTER, ActionId.VERIFY_PASS, rid)
    await d.click(OPS, ActionId.CLOSE, rid)  # refused: observation runs its course
    await d.say(CTO, f"close REL-{rid} Quiet night, all payment metrics normal; ending "
                     "observation early")
    return rid


async def write_plan(d: Demo, rid: int) -> None:
    """The go-live plan, part by part, and the tech director's review: first changes, then OK."""
    await d.say(DEV, f"plan REL-{rid} impact Refund requests are new; checkout and payouts are "
                     "unchanged")
    await d.say(DEV, f"plan REL-{rid} db_scripts none")
    await d.say(DIRECTOR, f"review REL-{rid} changes Say how we get back if refunds misbehave")
    await d.say(DEV, f"plan REL-{rid} rollback Redeploy the previous tag; refunds stay off "
                     "behind the REFUNDS flag")
    await d.click(DIRECTOR, ActionId.PLAN_OK, rid)


async def emergency_release(d: Demo) -> int:
    """An emergency fix that passes staging, fails in production and is rolled back."""
    d.log("\n2. An emergency release whose production deploy fails and is rolled back\n")
    d.gitlab.add_commit("acme/payments", title="Time out payout webhooks after 5 s",
                        branches=[HOTFIX_REF], parent="v1.1.0", author="dana")
    rid = _filed(await d.say(DEV, f"request payments {HOTFIX_REF} Payout webhooks hang "
                                  '--type emergency --ground live_bug --reason "Merchant '
                                  'payouts have hung since 09:40"'))
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/payout-hotfix "
                        "A=0 B=1 C=0")
    await d.say(CTO, f"accept REL-{rid} Merchants are not being paid; the open B bug is a "
                     "misleading log line")
    await d.click(CTO, ActionId.APPROVE, rid)
    await d.click(DIRECTOR, ActionId.APPROVE, rid)
    await d.click(LEAD, ActionId.APPROVE, rid)
    await d.say(OPS, f"check REL-{rid} 1 2")
    await d.say(DBA, f"check REL-{rid} 3")
    if await d.pipeline(rid) != "deployed":
        raise DemoStop(f"REL-{rid}'s staging deploy did not succeed")
    await d.say(TESTER, f"verify REL-{rid} pass payouts time out after 5 s on staging")
    d.log("      (scripted: GitLab's production job for this hotfix is going to fail)")
    d.gitlab.auto_advance(every=PIPELINE_STEP, fail_refs=[f"release/REL-{rid}"])  # its tag
    outcome = await d.pipeline(rid)
    d.gitlab.auto_advance(every=PIPELINE_STEP)  # later pipelines, a rollback too, succeed
    if outcome != "deploy_failed":
        raise DemoStop(f"REL-{rid}'s production deploy should have failed; it is {outcome}")
    await d.pipeline(rid, ActionId.ROLLBACK)
    return rid


async def scheduled_release(d: Demo) -> int:
    """A campaign planned two hours ahead, its bugs counted in GitLab issues: a B bug holds it
    in testing until fixed; unarmed at its time it waits; armed, it deploys."""
    d.log("\n3. A campaign launch planned for later, its bugs counted in GitLab issues, armed "
          "by the release manager\n")
    tz = d.app[POLICY].tz
    launch = (d.clock().astimezone(tz) + timedelta(hours=2)).replace(minute=0, second=0,
                                                                      microsecond=0)
    at = f"{launch:%Y-%m-%d %H:%M}"
    rid = _filed(await d.say(DEV, f'request web v1.1.0 Winter sale landing page --type campaign '
                                  f'--at "{at}"'))
    # web's first release through the bot: GitLab knows no earlier production deployment here,
    # so production waits for written rollback steps.
    await d.say(DEV, f"plan REL-{rid} rollback Switch the landing page flag off; the old page "
                     "stays deployed beside it")
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/web-sale")
    d.log(f"      (scripted: the fix for {SALE_BUG} is merged; GitLab closes the issue)")
    d.gitlab.close_issue("acme/web", int(SALE_BUG[1:]))
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/web-sale-2")
    await d.click(DIRECTOR, ActionId.APPROVE, rid)
    await d.click(LEAD, ActionId.APPROVE, rid)
    d.log(f"      (scripted: the clock jumps to {at}, the planned time)")
    d.clock.jump_to(launch)
    await d.wait(lambda: bool(d.slack.dms(OPS)) and "not armed" in d.slack.dms(OPS)[-1].text,
                 f"nobody asked Olga to arm REL-{rid}")
    await d.settle()
    d.log(f"      ⋯ REL-{rid} does not deploy on its own; Olga is asked to arm it")
    await d.say(OPS, f"arm REL-{rid}")
    d.log("      ⋯ the scheduler deploys it; GitLab reports back through the webhook")
    await d.wait_db(lambda rel: rel.state == "deployed", rid,
                    f"REL-{rid} was not deployed after it was armed")
    await d.settle()
    await d.click(TESTER, ActionId.VERIFY_PASS, rid)
    return rid


async def release_train(d: Demo) -> int:
    """web and payments in one release: payments first (web depends on it), staging accepted,
    then production one pipeline at a time."""
    d.log("\n4. A release train: web and payments together, deployed in dependency order\n")
    rid = _filed(await d.say(DEV, "request web@main payments@main Loyalty points at checkout"))
    await d.say(DEV, f"plan REL-{rid} impact Checkout shows loyalty points; payments stores "
                     "them")
    await d.say(DEV, f"plan REL-{rid} rollback Redeploy the previous tags, payments last")
    await d.say(DEV, f"plan REL-{rid} db_scripts none")
    await d.click(DIRECTOR, ActionId.PLAN_OK, rid)
    await d.say(TESTER, f"report REL-{rid} https://qa.example.com/reports/loyalty A=0 B=0 C=1")
    await d.click(DIRECTOR, ActionId.APPROVE, rid)
    await d.click(LEAD, ActionId.APPROVE, rid)
    await d.say(OPS, f"check REL-{rid} 1 2")
    await d.say(DBA, f"check REL-{rid} 3")
    if await d.pipeline(rid) != "deployed":  # only payments has a staging environment
        raise DemoStop(f"REL-{rid}'s staging deploy did not succeed")
    await d.click(TESTER, ActionId.VERIFY_PASS, rid)  # "Staging OK"
    d.log("      ⋯ production: payments first, then web, one pipeline after the other")
    if await d.pipeline(rid) != "deployed":
        raise DemoStop(f"REL-{rid}'s production deploys did not succeed")
    await d.click(TESTER, ActionId.VERIFY_PASS, rid)
    return rid


# The releases the demo plays, in order; `releasebot --help` and the docs give their number.
SCRIPT: tuple[Callable[[Demo], Awaitable[int]], ...] = (
    standard_release, emergency_release, scheduled_release, release_train)


# --- did it really happen? ------------------------------------------------------------------------

async def verify(d: Demo, first: int, second: int, third: int | None = None,
                 fourth: int | None = None) -> list[str]:
    """What is missing from a complete run (empty when everything happened)."""
    problems = []
    wanted = [(first, "closed"), (second, "rolled_back")]
    wanted += [(third, "observing")] if third is not None else []
    wanted += [(fourth, "observing")] if fourth is not None else []
    for rid, want in wanted:
        got = await d.state(rid)
        if got != want:
            problems.append(f"REL-{rid} is {got.replace('_', ' ')}, not {want.replace('_', ' ')}")
    cards = d.slack.messages(CHANNEL)
    if len(cards) != len(wanted):
        problems.append(f"{CHANNEL_NAME} has {len(cards)} top-level messages, not one per release")
    for rid, _ in wanted:
        problems += await announced_once(d, rid)
    if third is not None and (await d.release(third)).armed_by != OPS:
        problems.append(f"REL-{third} deployed without Olga arming it")
    if third is not None:
        problems += await _counted_in_gitlab(d, third)
    live = (await d.release(first)).pinned_sha or "?"
    async with d.app[DEPS].sessions() as session:
        back = [dep for dep in await q.deployments_of(session, second) if dep.rollback]
    if not back or back[-1].sha != live or back[-1].status != "success":
        problems.append(f"REL-{second} was not rolled back to `{live[:7]}`, the commit "
                        f"REL-{first} put live")
    if fourth is not None:
        problems += await _train_in_order(d, fourth)
    return problems


async def _counted_in_gitlab(d: Demo, rid: int) -> list[str]:
    """The release's report took GitLab's counts, and production was counted again."""
    async with d.app[DEPS].sessions() as session:
        last = await q.latest_bug_count(session, rid)
        report = await q.latest_bug_count(session, rid, "report")
    if report is None or (report.bugs_b, report.bugs_c) != (0, 1):
        return [f"REL-{rid}'s test report did not take GitLab's count of open bugs"]
    if last is None or last.moment != "deploy":
        return [f"REL-{rid}'s bugs were not counted again before production"]
    return []


async def _train_in_order(d: Demo, rid: int) -> list[str]:
    """The train's pipelines went one at a time: payments to staging, then payments and web
    to production, each on its pinned commit."""
    async with d.app[DEPS].sessions() as session:
        release = await q.get_release(session, rid)
        pins = {c.project: c.pinned_sha for c in await q.components_of(session, release)}
        ran = [(dep.project, dep.environment, dep.sha)
               for dep in await q.deployments_of(session, rid)]
    wanted = [("payments", "staging", pins.get("payments")),
              ("payments", "production", pins.get("payments")),
              ("web", "production", pins.get("web"))]
    if list(pins) != ["payments", "web"] or ran != wanted:
        return [f"REL-{rid}'s train did not deploy payments, then web, on their pinned commits"]
    return []


async def announced_once(d: Demo, rid: int) -> list[str]:
    """One thread reply per audited event, none repeated, broadcast exactly when it should be."""
    card = await d.card(rid)
    replies = d.slack.thread(CHANNEL, card.ts)
    entries = await d.audit(rid)
    problems = []
    if len(replies) != len(entries):
        problems.append(f"REL-{rid}'s thread has {len(replies)} replies for {len(entries)} "
                        "recorded events")
    texts = [r.text for r in replies]
    for text in dict.fromkeys(t for t in texts if texts.count(t) > 1):
        problems.append(f"REL-{rid}: “{plain(text)}” appears {texts.count(text)} times")
    for reply, entry in zip(replies, entries, strict=False):  # delivery keeps the audit's order
        if reply.reply_broadcast != EVENTS[Event(entry.action)].broadcast:
            should = "should" if EVENTS[Event(entry.action)].broadcast else "should not"
            problems.append(f"REL-{rid}: “{entry.action}” {should} reach the channel")
    return problems


# --- the transcript -------------------------------------------------------------------------------

def channel_transcript(slack: SlackEmulator) -> list[str]:
    """Each card as it ended, then its thread in order, as people read them."""
    lines = ["", f"═══ {CHANNEL_NAME}, as people read it ═══"]
    for card in slack.messages(CHANNEL):
        body = message_lines(card.text, card.blocks)
        lines += ["", f"┌ {body[0]}", *(f"│ {line}" for line in body[1:])]
        replies = slack.thread(CHANNEL, card.ts)
        lines.append(f"└ thread: {len(replies)} replies")
        for n, reply in enumerate(replies, start=1):
            text = message_lines(reply.text, reply.blocks)
            also = f"   [also sent to {CHANNEL_NAME}]" if reply.reply_broadcast else ""
            lines.append(f"  {n:>3}. {text[0]}{also}")
            lines += [f"       {line}" for line in text[1:]]
    return lines


def direct_asks(slack: SlackEmulator) -> list[str]:
    """The sign-off requests the bot sent people directly."""
    lines = ["", "═══ Direct messages from ReleaseBot ═══"]
    sent = sorted((m.ts, user, m.text) for user in PEOPLE for m in slack.dms(user))
    lines += [f"  to {name_of(user)}: {plain(text)}" for _, user, text in sent]
    return lines


def who_did_what(entries: list[AuditEntry], policy: Policy) -> list[str]:
    """The audit trail: who did what, when, and the state before and after."""
    tz = policy.tz
    lines = ["", f"═══ Who did what (the audit trail; times in {policy.timezone}) ═══"]
    for e in sorted(entries, key=lambda entry: entry.id or 0):
        moved = f"{_label(e.from_state)} → {_label(e.to_state)}"
        lines.append(f"  REL-{e.release_id}  {e.at.astimezone(tz):%H:%M:%S}  "
                     f"{name_of(e.actor):<24} {e.action:<19} {moved}")
    return lines


def _label(state: str | None) -> str:
    """A stored state in the words people see."""
    if state is None:
        return "(new)"
    return "ready for sign-off" if state == "ready_for_signoff" else state.replace("_", " ")


# --- running it -----------------------------------------------------------------------------------

@asynccontextmanager
async def staged(out: TextIO, port: int = 0, pause: float = 0.0) -> AsyncIterator[Demo]:
    """Emulators, the bot on SQLite in a temporary folder, and a driver; all stopped after."""
    with tempfile.TemporaryDirectory(prefix="releasebot-demo-",
                                     ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        (folder / "releasebot.yml").write_text(DEMO_POLICY_YAML, encoding="utf-8")
        policy = parse_policy(DEMO_POLICY_YAML, str(folder / "releasebot.yml"))
        secret, hook_secret = secrets.token_hex(16), secrets.token_hex(16)
        async with SlackEmulator() as slack, GitLabEmulator() as gitlab:
            _cast(slack, gitlab)
            settings = _settings(folder, slack, gitlab, secret, hook_secret, port)
            clock = ShiftClock()
            runner = web.AppRunner(create_app(settings, policy, clock=clock), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port).start()
            url = f"http://127.0.0.1:{runner.addresses[0][1]}"
            gitlab.register_hook(f"{url}/gitlab/webhook", hook_secret)
            try:
                async with SlackDriver(url, secret, slack) as driver:
                    yield Demo(runner.app, url, secret, slack, gitlab, driver, folder, out,
                               pause, clock)
            finally:
                gitlab.register_hook(None)
                await runner.cleanup()


def _cast(slack: SlackEmulator, gitlab: GitLabEmulator) -> None:
    """The demo people in Slack; GitLab's projects with history and self-running pipelines."""
    for user, (handle, name) in PEOPLE.items():
        slack.users[user] = {"name": handle, "real_name": name,
                             "profile": {"display_name": name.split(" ")[0]}}
    slack.channels[CHANNEL] = {"name": CHANNEL_NAME.lstrip("#")}
    gitlab.seed_demo()
    gitlab.auto_advance(every=PIPELINE_STEP)
    _web_issues(gitlab)


SALE_BUG = "#2"  # the B bug the sale's first test report finds in GitLab


def _web_issues(gitlab: GitLabEmulator) -> None:
    """acme/web's issues: the sale's milestone (its ref, v1.1.0) has a B and a C bug open."""
    for sev in "ABC":
        gitlab.add_label("acme/web", f"severity::{sev}")
    gitlab.add_issue("acme/web", "Old footer crash", labels=["severity::A"], milestone="v1.0.0")
    gitlab.close_issue("acme/web", 1)
    gitlab.add_issue("acme/web", "Sale banner hides the checkout button",
                     labels=["severity::B"], milestone="v1.1.0", author="tariq")
    gitlab.add_issue("acme/web", "Countdown font too small", labels=["severity::C"],
                     milestone="v1.1.0", author="tariq")
    gitlab.add_issue("acme/web", "Idea: confetti on purchase", milestone="v1.1.0")


class DemoSettings(Settings):
    """Settings from arguments only: the demo ignores the environment and any .env file."""

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings],
                                   init_settings: PydanticBaseSettingsSource,
                                   **_: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the demo passes in."""
        return (init_settings,)


def _settings(folder: Path, slack: SlackEmulator, gitlab: GitLabEmulator, secret: str,
              hook_secret: str, port: int) -> Settings:
    """The bot wired to the emulators, its database in the demo's folder."""
    return DemoSettings(
        slack_bot_token="xoxb-demo", slack_signing_secret=secret, slack_api_url=slack.base_url,
        database_url=f"sqlite+aiosqlite:///{folder / 'releasebot.db'}", gitlab_url=gitlab.url,
        gitlab_token=gitlab.token, gitlab_webhook_secret=hook_secret, gitlab_poll_seconds=2,
        scheduler_seconds=1,  # the scripted clock jump is noticed at once
        releasebot_config=folder / "releasebot.yml", host="127.0.0.1", port=port or 3000)


def _intro(d: Demo) -> None:
    """Where everything runs and who takes part."""
    d.log("ReleaseBot demo: everything runs on this machine. Slack and GitLab are the built-in")
    d.log(f"emulators; the bot listens on {d.url} with SQLite in {d.folder}.")
    d.log("People: " + ", ".join(name for _, name in PEOPLE.values()) + ".")


async def run_demo(out: TextIO, *, slow: bool = False, keep: bool = False,
                   port: int = 0) -> int:
    """Run every release, print what people saw, verify it; 0 only if it all happened."""
    _safe_output(out)
    quiet_token_warning()  # read by people new to the bot: no harmless warnings in it
    # The demo's scheduler ticks every second; one skipped while the last still runs is harmless.
    logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
    async with staged(out, port, SLOW_PAUSE if slow else 0.0) as d:
        _intro(d)
        problems, rids = await _play(d)
        for line in _report(d, d.app[POLICY], await _all_audit(d, rids)):
            d.log(line)
        if rids and not problems:
            problems = await _verified(d, rids)
        _verdict(d, problems, rids)
        if keep:
            await _serve_until_stopped(d)
    return 1 if problems else 0


async def _play(d: Demo) -> tuple[list[str], tuple[int, ...]]:
    """The scripted flow; what stopped it, if anything, and the release numbers."""
    rids: list[int] = []
    try:
        for play in SCRIPT:
            rids.append(await play(d))
    except DemoStop as exc:
        return [str(exc)], ()
    return [], tuple(rids)


async def _verified(d: Demo, rids: tuple[int, ...]) -> list[str]:
    """verify(), with anything it could not even find counted as missing."""
    try:
        return await verify(d, *rids)
    except DemoStop as exc:
        return [str(exc)]


async def _all_audit(d: Demo, rids: tuple[int, ...]) -> list[AuditEntry]:
    """The audit rows of every release the demo made."""
    async with d.app[DEPS].sessions() as session:
        releases = await q.list_releases(session, limit=100)
    entries: list[AuditEntry] = []
    for release in releases:
        entries += await d.audit(release.id or 0)
    return entries


def _report(d: Demo, policy: Policy, entries: list[AuditEntry]) -> list[str]:
    """The channel, the direct asks and the audit trail."""
    return [*channel_transcript(d.slack), *direct_asks(d.slack), *who_did_what(entries, policy)]


def _verdict(d: Demo, problems: list[str], rids: tuple[int, ...]) -> None:
    """Say whether the flow really happened, and what is missing if not."""
    d.log("")
    if not problems:
        first, second, third, fourth = rids
        d.log(f"Demo complete: REL-{first} accepted on staging and closed, REL-{second} rolled "
              f"back to the version REL-{first} put live, REL-{third} tested against GitLab's "
              f"open bugs and deployed at its time once armed, the train REL-{fourth} deployed "
              "payments before web; every announcement appeared once.")
        return
    d.log("Demo FAILED; missing:")
    for problem in problems:
        d.log(f"  - {problem}")


def _safe_output(out: TextIO) -> None:
    """Emoji on a terminal that can't show them become ? instead of a crash."""
    encoding = getattr(out, "encoding", None) or "utf-8"
    try:
        "🏁↩️═".encode(encoding)
    except UnicodeEncodeError:
        with contextlib.suppress(AttributeError, ValueError):
            out.reconfigure(errors="replace")  # type: ignore[attr-defined]


# --- --keep and `say` -----------------------------------------------------------------------------

async def _serve_until_stopped(d: Demo) -> None:
    """Leave everything serving, tell the person how to talk to it, stop on Ctrl-C."""
    state = {"app": d.url, "secret": d.secret, "slack": d.slack.url, "gitlab": d.gitlab.url,
             "channel": CHANNEL, "pid": os.getpid(),
             "people": {user: name for user, (_, name) in PEOPLE.items()}}
    saved = _write_state(state)
    d.log("")
    d.log("Still serving (Ctrl-C stops everything):")
    d.log(f"  bot       {d.url}  (POST /slack/events, POST /gitlab/webhook, GET /healthz, "
          "GET /metrics)")
    d.log(f"  Slack     {d.slack.base_url}  (the channel as text: "
          f"{d.slack.url}/_emulator/render?channel={CHANNEL})")
    d.log(f"  GitLab    {d.gitlab.url}  (token {d.gitlab.token})")
    d.log(f"  signing secret {d.secret}")
    d.log(f"  state file {saved or 'not written: ' + str(state_file()) + ' is not writable'}")
    d.log("Send your own commands as any of the people:")
    for user, (_, name) in PEOPLE.items():
        d.log(f"  {user:<11} {name}")
    d.log('  releasebot say "/release list all" --as U0DEV')
    d.log('  releasebot say "/release request web v1.1.0 Footer links" --as U0DEV')
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        _remove_state(saved)
        d.log("stopped")


def state_file() -> Path:
    """Where `demo --keep` tells `say` how to reach it: the home folder, else the temp folder."""
    try:
        return Path.home() / ".releasebot-demo.json"
    except RuntimeError:  # no HOME and no password entry: still somewhere this user can write
        return Path(tempfile.gettempdir()) / "releasebot-demo.json"


def _write_state(state: dict[str, Any]) -> Path | None:
    """Write the state file (only its owner can read the secret); None if it can't be."""
    path = state_file()
    try:
        path.write_text(json.dumps(state, indent=2), encoding="utf-8")
        path.chmod(0o600)
    except OSError:
        return None
    return path


def _remove_state(saved: Path | None) -> None:
    """Forget the demo's state file, unless a newer demo has replaced it."""
    if saved is None:
        return
    with contextlib.suppress(OSError, ValueError):
        if json.loads(saved.read_text(encoding="utf-8")).get("pid") == os.getpid():
            saved.unlink()


@dataclass(frozen=True)
class Target:
    """A running bot, the signing secret it checks, and the Slack emulator it answers through."""

    app: str
    secret: str
    slack: str
    people: dict[str, str] = field(default_factory=dict)


def find_target(app: str | None, secret: str | None, slack: str | None) -> Target:
    """The flags, filled in from the `demo --keep` state file."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(state_file().read_text(encoding="utf-8"))
    app, secret, slack = app or state.get("app"), secret or state.get("secret"), (
        slack or state.get("slack"))
    if not (app and secret and slack):
        raise CommandError("no running demo found (start `releasebot demo --keep` in another "
                           "terminal), or give --url, --secret and --slack")
    return Target(app.rstrip("/"), secret, slack.rstrip("/"), dict(state.get("people") or {}))


class _AnswerDriver(SlackDriver):
    """A driver for a standalone emulator that remembers which response_urls it handed out."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.issued: set[str] = set()

    async def _response_url(self, user: str, channel: str, message_ts: str | None) -> str:
        """Remember the URL: the bot's private answer is the next post to it."""
        url = await super()._response_url(user, channel, message_ts)
        self.issued.add(url.rstrip("/").rsplit("/", 1)[-1])
        return url


def command_text(text: str) -> str:
    """`/release list` or `list` → `list`; another slash command is refused."""
    text = text.strip()
    if text.startswith("/"):
        command, _, rest = text.partition(" ")
        if command != "/release":
            raise CommandError(f"ReleaseBot only answers /release, not {command}")
        return rest.strip()
    return text


async def say(text: str, *, user: str, target: Target, out: TextIO,
              within: float = 15.0) -> int:
    """Send one signed `/release …` as `user` and print the private answer they get."""
    words = command_text(text)
    async with aiohttp.ClientSession() as http:
        driver = _AnswerDriver(target.app, target.secret, target.slack, session=http)
        baseline = len(await _calls(http, target.slack))
        try:
            reply = await driver.command(user, words)
        except aiohttp.ClientError as exc:
            raise CommandError(f"cannot reach the bot at {target.app} ({exc}); is "
                               "`releasebot demo --keep` still running?") from None
        if reply.status != 200:
            raise CommandError(f"the bot answered HTTP {reply.status}: {reply.body[:200]}")
        answer = await _await_answer(http, target.slack, driver.issued, user, baseline, within)
    names = _namer(target.people)
    for line in answer or [f"(no private answer within {within:g} s)"]:
        print(plain(line, names), file=out)
    return 0 if answer else 1


def _namer(people: dict[str, str]) -> Callable[[str], str]:
    """Mentions shown with the demo's names when the state file has them."""
    return lambda user: people.get(user, user)


async def _calls(http: aiohttp.ClientSession, slack: str) -> list[dict[str, Any]]:
    """Every call the Slack emulator has recorded."""
    try:
        async with http.get(f"{slack}/_emulator/calls") as resp:
            resp.raise_for_status()
            return list(await resp.json())
    except aiohttp.ClientError as exc:
        raise CommandError(f"cannot reach the Slack emulator at {slack} ({exc}); is "
                           "`releasebot demo --keep` still running?") from None


async def _await_answer(http: aiohttp.ClientSession, slack: str, issued: set[str], user: str,
                        baseline: int, within: float) -> list[str]:
    """The private answer's lines, as soon as the emulator has it ([] if none came)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for call in (await _calls(http, slack))[baseline:]:
            if found := _answer_in(call, issued, user):
                return found
        await asyncio.sleep(0.1)
    return []


def _answer_in(call: dict[str, Any], issued: set[str], user: str) -> list[str]:
    """The lines of an answer to `user` in one recorded call, if it is one."""
    method, args = call.get("method"), call.get("args") or {}
    if method == "response_url" and str(args.get("url", "")).rsplit("/", 1)[-1] in issued:
        return raw_lines(str(args.get("text") or ""), args.get("blocks"))
    if method == "chat.postEphemeral" and args.get("user") == user:
        return raw_lines(str(args.get("text") or ""), args.get("blocks"))
    if method == "views.open":
        title = ((args.get("view") or {}).get("title") or {}).get("text", "a form")
        return [f"(Slack opened the form “{title}”; fill it in with the subcommand's "
                "arguments instead, e.g. /release request <project> <ref> [title…])"]
    return []


def run_say(text: str, *, user: str, url: str | None, secret: str | None,
            slack: str | None) -> int:
    """`releasebot say`: the synchronous entry point."""
    target = find_target(url, secret, slack)
    return asyncio.run(say(text, user=user, target=target, out=sys.stdout))
