"""Sign-off DMs lose their buttons once their ask is over, each saying why in one line."""

from __future__ import annotations

from typing import Any

from bot.policy import Policy
from emulators.sample import CHANNEL, DEV, DIRECTOR, LEAD, SUPPORT, TESTER, sample_policy
from emulators.slack import TEAM_DOMAIN
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_slack_flow import (
    release_state,
    submit_modal,
    text_values,
    to_signoff,
)


def two_leads() -> Policy:
    """The sample, with a second test lead: either one signs test_lead."""
    return sample_policy(roles={"test_lead": [LEAD, SUPPORT]})


def ask(h: Harness, user: str) -> Any:
    """The person's newest DM (their sign-off ask, as it shows now)."""
    return h.slack.dms(user)[-1]


def live(message: Any) -> bool:
    """Whether the DM still offers Approve."""
    return ActionId.APPROVE in str(message.blocks)


def card_link(h: Harness, rid: int) -> str:
    """The card's permalink, as the emulator gives it."""
    return f"https://{TEAM_DOMAIN}.slack.com/archives/{CHANNEL}/p{h.card(rid).ts.replace('.', '')}"


def updates_of(h: Harness, message: Any) -> int:
    """How many chat.update calls reached this message."""
    return len([c for c in h.slack.calls_to("chat.update") if c.args["ts"] == message.ts])


async def approve_from_dm(h: Harness, user: str) -> str:
    """Click Approve in the person's newest DM; their private answer."""
    return await h.click(user, ActionId.APPROVE, channel=ask(h, user).channel)


async def test_each_dm_keeps_its_buttons_only_while_its_person_may_sign(db_url: str) -> None:
    """Lena signs from her DM: Sofia's (the same role) settles, Diego's stays; Diego signs:
    none is left with buttons, and each clicker keeps their own answer."""
    async with running_app(db_url, two_leads()) as h:
        rid = await to_signoff(h)
        assert all(live(ask(h, u)) for u in (DIRECTOR, LEAD, SUPPORT))

        assert "approved" in await approve_from_dm(h, LEAD)
        assert ask(h, LEAD).text.startswith("✅") and not live(ask(h, LEAD))
        assert ask(h, SUPPORT).text == (
            f"<{card_link(h, rid)}|REL-{rid}> no longer needs your sign-off: "
            f"<@{LEAD}> signed as test_lead.")
        assert not live(ask(h, SUPPORT)) and live(ask(h, DIRECTOR))

        assert "approved" in await approve_from_dm(h, DIRECTOR)
        assert await release_state(h, rid) == "approved"
        assert ask(h, DIRECTOR).text.startswith("✅")
        assert not any(live(ask(h, u)) for u in (DIRECTOR, LEAD, SUPPORT))
        # The clickers' answers stand: the redraws after each approval left their DMs alone.
        assert updates_of(h, ask(h, LEAD)) == updates_of(h, ask(h, DIRECTOR)) == 1
        assert updates_of(h, ask(h, SUPPORT)) == 1
        assert [m.channel for m in h.slack.dms(LEAD)] == [f"D{LEAD}"]


async def test_signed_on_the_card_the_dms_say_who_approved(db_url: str, policy: Policy) -> None:
    """Both approve on the card: each DM ends as one line naming the two approvers."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        await h.click(LEAD, ActionId.APPROVE)
        assert "you signed as test_lead" in ask(h, LEAD).text and live(ask(h, DIRECTOR))
        await h.click(DIRECTOR, ActionId.APPROVE)
        assert await release_state(h, rid) == "approved"
        assert ask(h, DIRECTOR).text.endswith(
            f"no longer needs your sign-off: approved by <@{LEAD}> and you.")
        assert "you signed as test_lead" in ask(h, LEAD).text  # settled once, not again
        assert not live(ask(h, DIRECTOR)) and not live(ask(h, LEAD))


async def test_a_new_ref_settles_the_asks_of_the_old_revision(db_url: str,
                                                              policy: Policy) -> None:
    """A new ref sends it back to testing: the old asks go; the next report asks afresh."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        old = {u: ask(h, u) for u in (DIRECTOR, LEAD)}
        assert "now points at `v1.1.1`" in await h.says(DEV, f"ref REL-{rid} v1.1.1")
        await h.settle()
        for user, message in old.items():
            now = h.slack.message(message.channel, message.ts)
            assert now.text.endswith("it went back to testing for a new revision."), user
            assert not live(now) and now.blocks[0]["type"] == "section"

        await h.says(TESTER, f"report REL-{rid} https://ci.example/report/8 A=0 C=0")
        await h.settle()
        assert all(live(ask(h, u)) and ask(h, u).ts != old[u].ts for u in old)
        assert not live(h.slack.message(old[LEAD].channel, old[LEAD].ts))


async def test_a_rejection_from_a_dm_settles_every_ask(db_url: str, policy: Policy) -> None:
    """Diego rejects from his DM (a form): his DM says he did, Lena's who rejected it."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        asks = {u: ask(h, u) for u in (DIRECTOR, LEAD)}
        await h.click(DIRECTOR, ActionId.REJECT, channel=asks[DIRECTOR].channel)
        await submit_modal(h, DIRECTOR, text_values(reason="the refund path is untested"))
        assert await release_state(h, rid) == "rejected"
        for user, message in asks.items():
            now = h.slack.message(message.channel, message.ts)
            said = "you rejected it." if user == DIRECTOR else f"it was rejected by <@{DIRECTOR}>."
            assert now.text.endswith(f": {said}"), user
            assert not live(now)


async def test_a_dm_slack_failed_to_update_is_settled_by_the_next_redraw(
        db_url: str, policy: Policy) -> None:
    """Cancelled while Slack was failing: the DMs keep Approve; a click there is refused, and
    the redraw that follows settles them."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        h.slack.fail("chat.update", times=3, error="service_unavailable")  # card and both DMs
        await h.says(DEV, f"cancel REL-{rid}")
        await h.settle()
        assert live(ask(h, LEAD)) and live(ask(h, DIRECTOR))
        answer = await h.click(LEAD, ActionId.APPROVE, channel=ask(h, LEAD).channel)
        assert "cancelled" in answer
        for user in (DIRECTOR, LEAD):
            assert ask(h, user).text.endswith("no longer needs your sign-off: it was cancelled.")
            assert not live(ask(h, user))
