"""One person holding two required roles, where the policy lets them sign for both."""

from __future__ import annotations

from typing import Any

from bot.policy import Policy
from emulators.sample import DIRECTOR, LEAD, sample_policy
from handlers.blocks import ActionId
from tests.scenario.harness import running_app
from tests.scenario.test_slack_flow import release_state, to_signoff


def both_roles_policy() -> Policy:
    """The director is also a test lead, and may sign for both roles."""
    return sample_policy(roles={"test_lead": [LEAD, DIRECTOR]}, one_person_many_roles=True)


def pending_section(home: dict[str, Any]) -> str:
    """The text of Home's 'Waiting for you' section, up to the next divider."""
    blocks = home["blocks"]
    start = next(i for i, b in enumerate(blocks) if "*Waiting for you*" in str(b))
    end = next((i for i, b in enumerate(blocks[start:], start) if b["type"] == "divider"),
               len(blocks))
    return str(blocks[start:end])


async def test_second_role_is_asked_for_after_the_first(db_url: str) -> None:
    """After signing one role, the person is asked (DM and Home) for the other they hold."""
    async with running_app(db_url, both_roles_policy()) as h:
        rid = await to_signoff(h)
        asks = len(h.slack.dms(DIRECTOR))
        lead_asks = len(h.slack.dms(LEAD))
        assert asks == 1

        assert "as tech_director" in await h.click(DIRECTOR, ActionId.APPROVE)
        assert await release_state(h, rid) == "ready_for_signoff"
        dms = h.slack.dms(DIRECTOR)
        assert len(dms) == asks + 1
        assert dms[-1].text.startswith(f"REL-{rid}") and "test_lead" in str(dms[-1].blocks)
        assert ActionId.APPROVE in str(dms[-1].blocks)
        assert len(h.slack.dms(LEAD)) == lead_asks  # the others are not asked again

        await h.driver.event({"type": "app_home_opened", "user": DIRECTOR, "tab": "home"},
                             event_id="EvHomeMany")
        await h.settle()
        assert f"REL-{rid}" in pending_section(h.slack.home(DIRECTOR))

        assert "as test_lead" in await h.click(DIRECTOR, ActionId.APPROVE, channel=dms[-1].channel)
        assert await release_state(h, rid) == "approved"
