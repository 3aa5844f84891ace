"""App Home names what waits for its reader beyond sign-off: a plan review, a decision."""

from __future__ import annotations

from typing import Any

from bot.policy import Policy
from emulators.sample import CTO, DEV, DIRECTOR, LEAD
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_executive_decides import live_emergency
from tests.scenario.test_many_roles import pending_section
from tests.scenario.test_type_review import REVIEWED, planned


async def home_of(h: Harness, user: str, event_id: str) -> dict[str, Any]:
    """The person opens App Home: what it shows them."""
    await h.driver.event({"type": "app_home_opened", "user": user, "tab": "home"},
                         event_id=event_id)
    await h.settle()
    home = h.slack.home(user)
    assert home is not None
    return home


async def test_the_plan_reviewer_sees_the_plans_waiting_for_their_review(db_url: str) -> None:
    """A complete plan waits on the tech director: their Home lists it with Plan OK and says
    so, before her own sign-off; the requester's lists nothing; once reviewed, her sign-off is
    what it waits for."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await planned(h, "web v1.1.0 Payout fix")
        waiting = pending_section(await home_of(h, DIRECTOR, "EvPlan1"))
        assert f"REL-{rid}" in waiting and ActionId.PLAN_OK in waiting
        assert (f"🗒 Waits for your review of its go-live plan: Plan OK or Plan changes, or "
                f"`/release review REL-{rid} ok|changes &lt;note&gt;`.") in waiting
        assert "Waits for your sign-off" not in waiting
        assert "Nothing waits for you." in pending_section(await home_of(h, DEV, "EvPlan3"))

        await h.says(DIRECTOR, f"review REL-{rid} ok")
        await h.settle()
        waiting = pending_section(await home_of(h, DIRECTOR, "EvPlan4"))
        assert "go-live plan" not in waiting  # now it waits for her sign-off instead
        assert "✍️ Waits for your sign-off as tech_director." in waiting


async def test_the_executive_sees_the_decision_a_failed_verification_waits_for(
        db_url: str, policy: Policy) -> None:
    """An emergency fails online: the executive's Home lists it with Fix / Accept and says
    what is awaited; decided, it is gone from the section."""
    async with running_app(db_url, policy) as h:
        rid = await live_emergency(h)
        assert "Nothing waits for you." in pending_section(await home_of(h, CTO, "EvDecide1"))
        await h.says(LEAD, f"verify REL-{rid} fail Refunds are charged twice")
        await h.settle()
        waiting = pending_section(await home_of(h, CTO, "EvDecide2"))
        assert f"REL-{rid}" in waiting and ActionId.DECIDE_FIX in waiting
        assert ("🧭 Failed its online verification: waits for your decision, fix the problems "
                f"or accept them as known issues (`/release decide REL-{rid} fix|accept "
                "&lt;reason&gt;`).") in waiting
        assert "Nothing waits for you." in pending_section(await home_of(h, DIRECTOR, "EvD3"))

        await h.says(CTO, f"decide REL-{rid} fix Refunds must be exact")
        await h.settle()
        assert "Nothing waits for you." in pending_section(await home_of(h, CTO, "EvDecide4"))
