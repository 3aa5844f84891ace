"""Scenarios through Slack's real wire format: signed commands, clicks and forms."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from bot.app import DEPS
from bot.policy import Policy
from emulators.sample import CHANNEL, CTO, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId, FormId
from storage import queries as q
from tests.scenario.harness import Harness, running_app


def text_values(**fields: str) -> dict[str, Any]:
    """A form's state.values for text fields."""
    return {k: {"value": {"type": "plain_text_input", "value": v}} for k, v in fields.items()}


def select(value: str) -> dict[str, Any]:
    """A static select's state value."""
    return {"value": {"type": "static_select", "selected_option": {"value": value}}}


async def submit_modal(h: Harness, user: str, values: dict[str, Any]) -> Any:
    """Submit the newest modal opened for a user with these values."""
    modal = h.slack.modals(user)[-1]
    reply = await h.driver.submit_view(user, modal["callback_id"], values,
                                       private_metadata=modal.get("private_metadata", ""))
    await h.settle()
    return reply


async def to_signoff(h: Harness, project: str = "payments") -> int:
    """Request by command and attach a passing report through the form."""
    answer = await h.says(DEV, f"request {project} v1.1.0 Faster checkout")
    rid = int(answer.split("REL-")[1].split(".")[0])
    await h.settle()
    await h.click(TESTER, ActionId.REPORT)
    await submit_modal(h, TESTER, text_values(url="https://ci.example/report/7", A="0", B="0",
                                              C="2"))
    return rid


async def release_state(h: Harness, rid: int) -> str:
    """The stored state of a release."""
    async with h.app[DEPS].sessions() as session:
        return (await q.get_release(session, rid)).state


async def test_happy_path_to_ready_to_deploy(db_url: str, policy: Policy) -> None:
    """Request, report form, two approvals by button, checklist ticks: the card offers Deploy."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        assert ActionId.APPROVE in h.buttons(rid) and ActionId.REJECT in h.buttons(rid)
        assert [m.text for m in h.slack.dms(DIRECTOR)][-1].startswith(f"REL-{rid}")
        assert h.slack.dms(LEAD) and not h.slack.dms(DEV)
        assert "approved" in await h.click(DIRECTOR, ActionId.APPROVE)
        assert "approved" in await h.click(LEAD, ActionId.APPROVE)
        assert await release_state(h, rid) == "approved"
        card = h.card(rid)
        checklist = next(b for b in card.blocks if b.get("block_id") == f"checklist:{rid}")
        options = checklist["elements"][0]["options"]
        answer = await h.driver.click(OPS, ActionId.CHECKLIST, "", block_id=f"checklist:{rid}")
        assert answer.status == 200
        await h.command(OPS, f"check REL-{rid} 1 2")
        await h.settle()
        await h.command(DBA, f"check REL-{rid} 3")
        await h.settle()
        assert len(options) == 3
        assert ActionId.DEPLOY in h.buttons(rid)
        thread = "\n".join(h.thread(rid))
        for words in ("requested", "test report", "approved as tech_director",
                      "approved as test_lead", "All sign-offs are in", "ticked checklist"):
            assert words in thread
        assert len(h.slack.messages(CHANNEL)) == 1


async def test_a_click_that_unticks_one_box_and_ticks_another_says_the_untick_was_ignored(
        db_url: str, policy: Policy) -> None:
    """Slack sends the boxes left selected: the new one is ticked, the unticked one stays, and
    the clicker is told so in one sentence."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        for user in (DIRECTOR, LEAD):
            await h.click(user, ActionId.APPROVE)
        block = f"checklist:{rid}"

        async def boxes(*items: int) -> str:
            before = len(h.slack.ephemerals(OPS))
            reply = await h.driver.set_checkboxes(OPS, ActionId.CHECKLIST, block,
                                                  [f"{rid}:{i}" for i in items])
            assert reply.status == 200, reply.body
            await h.settle()
            return h.slack.ephemerals(OPS)[before].text

        assert await boxes(1) == f"Checklist of REL-{rid}: 1/3 ticked."
        assert await boxes(2) == (f"Checklist of REL-{rid}: 2/3 ticked. Unticking item 1 was "
                                  "ignored: ticks are audited and final.")
        card = next(b for b in h.card(rid).blocks if b.get("block_id") == block)
        assert [o["value"] for o in card["elements"][0]["initial_options"]] == [
            f"{rid}:1", f"{rid}:2"]
        async with h.app[DEPS].sessions() as session:
            assert sorted(t.item for t in await q.ticks_of(session, rid)) == [1, 2]


@dataclass(frozen=True)
class Say:
    """One subcommand, who says it and a piece of the private answer."""

    user: str
    text: str
    answer: str
    moves: bool = False  # it changes the release, so the steps after it start from there
    absent: bool = False  # the answer must not contain `answer`


# The subcommands in the order one release meets them, from filing to cancelling.
SUBCOMMANDS = [
    Say(DEV, "help", "/release request"),
    Say(DEV, "", "/release request"),
    Say(DEV, "frobnicate", "Unknown subcommand 'frobnicate'"),
    Say(TESTER, "report REL-1", "Give the test report link: `/release report REL-1"),
    Say(DEV, "request web v1.1.0 Outage --type emergency", "An emergency release needs its "
        "ground: --ground live_bug (a serious bug is live), urgent_revision"),
    Say(DEV, "request web v1.1.0 Copy fix --type hotfix", "Filed REL-1", moves=True),
    Say(DEV, "list", "REL-1"),
    Say(DEV, "list mine", "REL-1"),
    Say(DEV, "list all", "No releases in flight", absent=True),
    Say(DEV, "list soon", "not active, mine or all"),
    Say(TESTER, "test 1", "You're testing REL-1", moves=True),
    Say(TESTER, "report REL-1 https://r/1 A=1", "does not meet", moves=True),
    Say(CTO, "accept REL-1 outage", "can't ship with open bugs"),
    Say(TESTER, "report REL-1 https://r/2 A=0 C=1", "meets the go-live", moves=True),
    Say(LEAD, "approve REL-1 lgtm", "approved REL-1 as test_lead", moves=True),
    Say(DIRECTOR, "approve REL-1", "approved REL-1 as tech_director", moves=True),
    Say(DEV, "status REL-1", "*Approved*"),
    Say(DEV, "ref REL-1 v1.1.1", "now points at `v1.1.1`", moves=True),
    Say(OPS, "check REL-1 9", "No checklist item 9"),
    Say(CTO, "override REL-1 please", "can't bypass"),
    Say(OPS, "deploy REL-1", "REL-1 is in testing: no test report yet. A tester attaches one"),
    Say(TESTER, "verify REL-1 pass", "REL-1 is in testing: no test report yet."),
    Say(TESTER, "verify REL-1 maybe", "Say pass or fail"),
    Say(OPS, "rollback REL-1", "REL-1 is in testing: no test report yet."),
    Say(OPS, "close REL-1", "REL-1 is in testing: no test report yet."),
    Say(DEV, "cancel REL-1 not needed", "REL-1 is cancelled", moves=True),
    Say(LEAD, "reject REL-1 nope", "is cancelled; nothing more"),
    Say(DEV, "notes REL-1", "Release notes of REL-1"),
    Say(DEV, "status REL-99", "There is no release REL-99"),
]


@pytest.fixture
async def harness(db_url: str, policy: Policy) -> AsyncIterator[Harness]:
    """The running app for one case."""
    async with running_app(db_url, policy) as h:
        yield h


async def says(h: Harness, say: Say) -> None:
    """Say it and check the answer."""
    answer = await h.says(say.user, say.text)
    assert (say.answer in answer) != say.absent, (say.text, answer)


@pytest.mark.parametrize("step", range(len(SUBCOMMANDS)),
                         ids=[say.text or "(empty)" for say in SUBCOMMANDS])
async def test_every_subcommand_answers(harness: Harness, step: int) -> None:
    """Each subcommand answers the person privately; bad input gets its usage line."""
    for before in SUBCOMMANDS[:step]:
        if before.moves:
            await says(harness, before)
    await says(harness, SUBCOMMANDS[step])


async def test_request_form_shows_errors_in_the_form(db_url: str, policy: Policy) -> None:
    """A form with a bad time and no title stays open with the errors; a good one files."""
    async with running_app(db_url, policy) as h:
        await h.command(DEV, "request")
        await h.settle()
        assert h.slack.modals(DEV)[-1]["callback_id"] == FormId.REQUEST
        values = {"project": select("payments"), "type": select("standard"),
                  **text_values(ref="v1.1.0", title="", at="tomorrow",
                                plan_rollback="redeploy v1.0.0", plan_db_scripts="none")}
        reply = await submit_modal(h, DEV, values)
        assert reply.json["response_action"] == "errors"
        assert set(reply.json["errors"]) == {"title", "at"}
        values.update(text_values(title="Checkout", at="2027-01-05 20:00",
                                  items="!12\n#34\nINC-5"))
        reply = await submit_modal(h, DEV, values)
        assert reply.status == 200 and not reply.body
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, 1)
            items = await q.work_items_of(session, 1)
        assert release.scheduled_at is not None
        assert release.plan == {"rollback": "redeploy v1.0.0", "db_scripts": "none"}
        assert [(w.kind, w.reference) for w in items] == [
            ("mr", "!12"), ("issue", "#34"), ("incident", "INC-5")]


async def test_four_eyes_and_unauthorised_clicks(db_url: str, policy: Policy) -> None:
    """The requester can't approve; a tester isn't an approver; nothing changes."""
    async with running_app(db_url, policy) as h:
        answer = await h.says(LEAD, "request payments v1.1.0 Lead's own release")
        assert "Filed" in answer, answer
        rid = int(answer.split("REL-")[1].split(".")[0])
        await h.says(TESTER, f"report REL-{rid} https://r/1")
        await h.settle()
        assert "four eyes" in await h.click(LEAD, ActionId.APPROVE)
        assert "Only an approver" in await h.click(TESTER, ActionId.APPROVE)
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, rid)
            assert await q.approvals_of(session, release) == []


async def test_stale_button_changes_nothing(db_url: str, policy: Policy) -> None:
    """A button drawn before a new report can't approve what replaced it."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        old_value = next(e["value"] for b in h.card(rid).blocks if b["type"] == "actions"
                         for e in b["elements"] if e.get("action_id") == ActionId.APPROVE)
        await h.says(TESTER, f"report REL-{rid} https://r/new C=1")
        await h.settle()
        updates = len(h.slack.calls_to("chat.update"))
        answer = await h.click(DIRECTOR, ActionId.APPROVE, old_value)
        assert "changed since that button was drawn" in answer
        assert len(h.slack.calls_to("chat.update")) == updates  # the card is already current
        async with h.app[DEPS].sessions() as session:
            assert await q.approvals_of(session, await q.get_release(session, rid)) == []
        await h.says(DEV, f"cancel REL-{rid}")
        await h.settle()
        assert "cancelled" in await h.click(LEAD, ActionId.APPROVE, old_value.replace(":2:", ":3:"))


async def test_double_click_is_one_approval(db_url: str, policy: Policy) -> None:
    """Two clicks at once by one approver: one row, one thread line."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        value = next(e["value"] for b in h.card(rid).blocks if b["type"] == "actions"
                     for e in b["elements"] if e.get("action_id") == ActionId.APPROVE)
        replies = await asyncio.gather(h.driver.click(LEAD, ActionId.APPROVE, value),
                                       h.driver.click(LEAD, ActionId.APPROVE, value))
        assert all(r.status == 200 for r in replies)
        await h.settle()
        assert sum("approved as test_lead" in t for t in h.thread(rid)) == 1
        async with h.app[DEPS].sessions() as session:
            assert len(await q.approvals_of(session, await q.get_release(session, rid))) == 1


async def test_event_retries_have_one_effect(db_url: str, policy: Policy) -> None:
    """app_home_opened delivered four times (retries 0-3) publishes Home once."""
    async with running_app(db_url, policy) as h:
        event = {"type": "app_home_opened", "user": LEAD, "channel": "D0LEAD", "tab": "home"}
        replies = await asyncio.gather(*[
            h.driver.event(event, event_id="Ev0001", retry_num=n or None) for n in range(4)])
        assert all(r.status == 200 for r in replies)
        await h.settle()
        assert len(h.slack.calls_to("views.publish")) == 1
        await h.driver.event(event, event_id="Ev0002", retry_num=2)
        await h.settle()
        assert len(h.slack.calls_to("views.publish")) == 2


async def test_rate_limit_then_success_posts_once(db_url: str, policy: Policy) -> None:
    """A 429 with Retry-After is waited out and the card is posted exactly once."""
    async with running_app(db_url, policy) as h:
        h.slack.fail("chat.postMessage", status=429, retry_after=1)
        await h.says(DEV, "request web v1.1.0 Copy fix")
        await h.settle()
        assert len(h.slack.messages(CHANNEL)) == 1
        assert len(h.thread(1)) == 1


async def test_unsigned_tampered_and_old_requests_are_refused(db_url: str,
                                                              policy: Policy) -> None:
    """401 and nothing written, nothing sent to Slack."""
    async with running_app(db_url, policy) as h:
        import time

        for kw in ({"sign": False}, {"tamper": True}, {"timestamp": int(time.time()) - 360}):
            reply = await h.driver.command(DEV, "request web v1.1.0 Sneaky", **kw)
            assert reply.status == 401
        await asyncio.sleep(0.2)
        await h.settle()
        async with h.app[DEPS].sessions() as session:
            assert await q.list_releases(session) == []
        assert [c.method for c in h.slack.calls if c.method != "auth.test"] == []


async def test_app_home_lists_what_waits_for_me(db_url: str, policy: Policy) -> None:
    """An approver's Home shows the release waiting for them, with its buttons."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        await h.driver.event({"type": "app_home_opened", "user": DIRECTOR, "tab": "home"},
                             event_id="EvHome1")
        await h.settle()
        home = h.slack.home(DIRECTOR)
        texts = str(home["blocks"])
        assert "*Waiting for you*" in texts and f"REL-{rid}" in texts
        assert ActionId.APPROVE in texts
        named = [b["text"]["text"] for b in home["blocks"] if b["type"] == "section"
                 and b["text"]["text"].startswith("*<https://")]
        assert len(named) == 2  # waiting for her sign-off, and in flight: each names REL-n
        assert all(f"|REL-{rid}>* · " in t and "\n✍️ *Ready for sign-off*" in t for t in named)
        asked = len(h.slack.calls_to("chat.getPermalink"))
        await h.driver.event({"type": "app_home_opened", "user": LEAD, "tab": "home"},
                             event_id="EvHomeAgain")
        await h.settle()
        assert len(h.slack.calls_to("chat.getPermalink")) == asked  # a card's link is kept
        await h.driver.event({"type": "app_home_opened", "user": DEV, "tab": "home"},
                             event_id="EvHome2")
        await h.settle()
        dev_home = str(h.slack.home(DEV)["blocks"])
        assert "Nothing waits for you." in dev_home and f"REL-{rid}" in dev_home


async def test_approving_from_the_ask_dm_replaces_its_buttons(db_url: str,
                                                              policy: Policy) -> None:
    """The DM Diego approved from says what he did and the release's state, without buttons."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        ask = h.slack.dms(DIRECTOR)[-1]
        assert ActionId.APPROVE in str(ask.blocks)
        answer = await h.click(DIRECTOR, ActionId.APPROVE, channel=ask.channel,
                               message_ts=ask.ts)
        assert "You approved" in answer
        now = h.slack.message(ask.channel, ask.ts)
        assert now is not None and ActionId.APPROVE not in str(now.blocks)
        assert now.text.startswith(f"✅ You approved REL-{rid} as tech_director. It is now ")
        assert "needs sign-off" not in str(now.blocks)
