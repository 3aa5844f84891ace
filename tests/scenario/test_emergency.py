"""Emergency and hotfix as the seeds say: grounds and reason, and who must sign."""

from __future__ import annotations

from bot.app import DEPS
from bot.policy import Policy
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, sample_policy
from storage import queries as q
from tests.adversarial.common import ready, release
from tests.scenario.harness import readable, running_app
from tests.scenario.test_slack_flow import select, submit_modal, text_values


async def test_an_emergency_shows_its_ground_and_needs_three_signatures(db_url: str,
                                                                        policy: Policy) -> None:
    """The card names the ground and reason; executive, tech director and test lead sign."""
    async with running_app(db_url, policy) as h:
        refusal = await h.says(DEV, "request web v1.1.0 Payouts hang --type emergency")
        assert "needs its ground" in refusal and "needs its reason" in refusal
        rid = await ready(h, 'web v1.1.0 Payouts hang --type emergency --ground live_bug '
                             '--reason "Merchant payouts hang since 09:40"')
        await h.settle()
        card = readable(h.card(rid))
        assert "🚨 Emergency: a serious bug is live: Merchant payouts hang since 09:40" in card
        assert "🚨 Emergency: a serious bug is live: Merchant payouts hang" in h.thread(rid)[0]
        for user in (CTO, DIRECTOR):
            assert "You approved" in await h.says(user, f"approve REL-{rid}")
        assert (await release(h, rid)).state == "ready_for_signoff"  # the tester's sign-off
        assert "You approved" in await h.says(LEAD, f"approve REL-{rid}")
        assert (await release(h, rid)).state == "approved"


async def test_the_form_asks_for_the_ground_of_an_emergency(db_url: str,
                                                           policy: Policy) -> None:
    """An emergency from the form without a ground stays open with the error under it."""
    async with running_app(db_url, policy) as h:
        await h.command(DEV, "request")
        await h.settle()
        values = {"project": select("web"), "type": select("emergency"),
                  **text_values(ref="v1.1.0", title="Payouts hang")}
        reply = await submit_modal(h, DEV, values)
        assert reply.json["response_action"] == "errors"
        assert reply.json["errors"] == {"ground": "Choose the ground of this emergency release.",
                                        "reason": "Say why this release is urgent."}
        values.update(ground=select("strategic"),
                      **text_values(reason="The bank switches APIs on Friday"))
        reply = await submit_modal(h, DEV, values)
        assert reply.status == 200 and not reply.body
        async with h.app[DEPS].sessions() as session:
            rel = await q.get_release(session, 1)
        assert (rel.type, rel.ground, rel.ground_reason) == (
            "emergency", "strategic", "The bank switches APIs on Friday")


async def test_a_sole_tech_director_requester_is_flagged(db_url: str) -> None:
    """The card and the answer say nobody else can sign; with a second holder, it is signed."""
    async with running_app(db_url, sample_policy()) as h:
        answer = await h.says(DIRECTOR, "request web v1.1.0 Director's own")
        assert "Only the requester holds tech_director, so nobody can sign it" in answer
        await h.settle()
        assert "Only the requester holds tech_director" in readable(h.card(1))
    two = sample_policy(roles={"tech_director": [DIRECTOR, CTO]})
    async with running_app(db_url, two) as h:
        rid = await ready(h, "web v1.1.0 Director's own again", user=DIRECTOR)
        assert "Only the requester" not in readable(h.card(rid))
        assert "You approved" in await h.says(CTO, f"approve REL-{rid}")
        assert "You approved" in await h.says(LEAD, f"approve REL-{rid}")
        assert (await release(h, rid)).state == "approved"
