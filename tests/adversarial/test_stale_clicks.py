"""Buttons drawn before a change: nothing happens, the clicker hears why, the card is redrawn."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bot.app import DEPS, RUNTIME
from bot.policy import Policy
from bot.readmodel import load_view
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from handlers.cards import build_release_card
from tests.adversarial.common import button_value, ready, release, row_counts, signed
from tests.scenario.harness import Harness, emulators, running_app, wait_for


@dataclass(frozen=True)
class Stale:
    """An old button, who clicks it, and what they must be told."""

    rid: int
    user: str
    action_id: str
    value: str
    told: str
    state: str


async def deployed_to(h: Harness, rid: int) -> None:
    """Click Deploy, let GitLab succeed, take the result."""
    await h.click(OPS, ActionId.DEPLOY)
    h.gitlab.set_status(h.pipeline_of(rid).id, "success")
    assert await h.poll() == 1


async def stale_buttons(h: Harness) -> list[Stale]:
    """Releases whose cards were drawn, then changed in each way a card goes out of date."""
    out = []
    rid = await ready(h, "web v1.1.0 Approved since")
    approve, reject = button_value(h, rid), button_value(h, rid, ActionId.REJECT)
    await h.says(DIRECTOR, f"approve REL-{rid}")
    await h.says(LEAD, f"approve REL-{rid}")
    out += [Stale(rid, DIRECTOR, ActionId.APPROVE, approve, "approved now", "approved"),
            Stale(rid, LEAD, ActionId.REJECT, reject, "approved now", "approved")]
    rid = await ready(h, "web v1.1.0 Rejected since")
    approve = button_value(h, rid)
    await h.says(DIRECTOR, f"reject REL-{rid} not this week")
    out.append(Stale(rid, LEAD, ActionId.APPROVE, approve, "rejected", "rejected"))
    rid = await ready(h, "web v1.1.0 Cancelled since")
    approve = button_value(h, rid)
    await h.says(DEV, f"cancel REL-{rid}")
    out.append(Stale(rid, LEAD, ActionId.APPROVE, approve, "cancelled", "cancelled"))
    rid = await ready(h, "web v1.1.0 New ref since")
    approve = button_value(h, rid)
    await h.says(DEV, f"ref REL-{rid} main")
    out.append(Stale(rid, LEAD, ActionId.APPROVE, approve, "testing now", "testing"))
    rid = await ready(h, "web v1.1.0 New report since")
    approve = button_value(h, rid)
    await h.says(TESTER, f"report REL-{rid} https://ci/r/again C=1")
    out.append(Stale(rid, LEAD, ActionId.APPROVE, approve, "changed since", "ready_for_signoff"))
    rid = await signed(h, "payments v1.1.0 Staging done since")
    deploy = button_value(h, rid, ActionId.DEPLOY)  # "Deploy to staging"
    await deployed_to(h, rid)
    out.append(Stale(rid, OPS, ActionId.DEPLOY, deploy, "deployed now", "deployed"))
    rid = await signed(h, "web v1.1.0 Verification failed since")
    await deployed_to(h, rid)
    passed = button_value(h, rid, ActionId.VERIFY_PASS)
    assert "failed verification" in await h.says(TESTER, f"verify REL-{rid} fail 500s on /pay")
    out.append(Stale(rid, TESTER, ActionId.VERIFY_PASS, passed, "verification failed now",
                     "verification_failed"))
    await h.settle()
    return out


async def drawn_now(h: Harness, rid: int) -> list[dict[str, Any]]:
    """The card's blocks as the release would be drawn now."""
    deps = h.app[DEPS]
    async with deps.sessions() as session:
        view = await load_view(session, deps.policy, await release(h, rid))
    return build_release_card(view, deps.policy.tz)[1]


async def click_each(h: Harness, stale: list[Stale]) -> None:
    """Each old button: the reason told, the card redrawn, not one row or pipeline more."""
    for s in stale:
        before, pipelines = await row_counts(h), len(h.gitlab.pipelines)
        card = h.card(s.rid)
        updates = len([c for c in h.slack.calls_to("chat.update") if c.args["ts"] == card.ts])
        reply = await h.driver.click(s.user, s.action_id, s.value, message_ts=card.ts)
        assert reply.status == 200
        await h.settle()
        told = h.slack.ephemerals(s.user)[-1].text
        assert s.told in told, (s, told)
        assert (await release(h, s.rid)).state == s.state, s
        assert await row_counts(h) == before, s
        assert len(h.gitlab.pipelines) == pipelines and h.slack.modals(s.user) == [], s
        after = [c for c in h.slack.calls_to("chat.update") if c.args["ts"] == card.ts]
        assert len(after) == updates, s  # the card already shows what is true: nothing to send
        assert h.card(s.rid).blocks == await drawn_now(h, s.rid), s


async def test_stale_buttons_change_nothing_before_and_after_a_restart(
        db_url: str, policy: Policy) -> None:
    """Approved, rejected, cancelled, new ref, new report, deployed, failed: all refused."""
    async with emulators() as emus:
        async with running_app(db_url, policy, emus=emus) as h:
            stale = await stale_buttons(h)
            await click_each(h, stale)
        async with running_app(db_url, policy, emus=emus) as h2:
            await click_each(h2, stale)


def card_updates(h: Harness, ts: str) -> int:
    """How many chat.update calls went to the card."""
    return len([c for c in h.slack.calls_to("chat.update") if c.args["ts"] == ts])


async def test_a_click_before_the_card_caught_up_redraws_it_at_once(
        db_url: str, policy: Policy) -> None:
    """Cancelled while delivery lags: an old Approve is refused and the card redrawn then."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        approve, card = button_value(h, rid), h.card(rid)
        async with h.app[RUNTIME].deliverer._pass:  # delivery held back: the card lags
            await h.says(DEV, f"cancel REL-{rid}")
            assert button_value(h, rid) == approve  # still drawn for sign-off
            updates = card_updates(h, card.ts)
            before = len(h.slack.ephemerals(LEAD))
            await h.driver.click(LEAD, ActionId.APPROVE, approve, message_ts=card.ts)
            await wait_for(lambda: len(h.slack.ephemerals(LEAD)) > before)
            assert "cancelled" in h.slack.ephemerals(LEAD)[-1].text
            assert card_updates(h, card.ts) == updates + 1
            # The redraw takes the buttons off the sign-off DMs as well.
            assert ActionId.APPROVE not in str(h.slack.dms(LEAD)[-1].blocks)
            assert h.card(rid).blocks == await drawn_now(h, rid)
        assert (await release(h, rid)).state == "cancelled"
