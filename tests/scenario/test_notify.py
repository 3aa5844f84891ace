"""The right people at the right time: `notify` targets, and testers asked at the deploy."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import CTO, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId
from tests.scenario.harness import Harness, readable, running_app
from tests.scenario.test_gitlab_flow import approved, state
from tests.scenario.test_release_notes import live, ship

NEWS = "C0NEWS"
ON_CALL = "S0ONCALL"


def dms_saying(h: Harness, user: str, words: str) -> list[str]:
    """The direct messages a user got that contain `words`."""
    return [text for m in h.slack.dms(user) if words in (text := readable(m))]


async def test_notify_a_channel_and_a_user_group(db_url: str) -> None:
    """Each moment reaches its channel once, with a link to the card; a group's members by DM."""
    policy = sample_policy(notify={"request": [NEWS], "signoff": [NEWS],
                                   "deploy": [NEWS, ON_CALL], "verification": [CTO]})
    async with running_app(db_url, policy) as h:
        h.slack.usergroups[ON_CALL] = [OPS, CTO]
        rid = await approved(h, "web", "v1.1.0")
        await live(h, rid)
        await h.settle()
        lines = [m.text for m in h.slack.messages(NEWS)]
        assert len(lines) == 4, lines  # requested, signed off, deploy started, deployed
        assert all(line.startswith(f"*REL-{rid}* web — Checkout: ") for line in lines)
        assert "requested a standard release" in lines[0]
        assert "All sign-offs are in" in lines[1]  # the last sign-off only, not each one
        assert "started the deploy" in lines[2] and "📦 Deployed" in lines[3]
        card = h.card(rid)
        link = h.slack.calls_to("chat.getPermalink")[-1]
        assert link and all("|Open the card>" in line for line in lines)
        assert card.ts.replace(".", "") in lines[0]
        for member in (OPS, CTO):
            assert len(dms_saying(h, member, f"*REL-{rid}* web")) == 2 + (member == CTO)
        assert dms_saying(h, CTO, "verified the release in production")
        assert dms_saying(h, DIRECTOR, f"*REL-{rid}* web") == []


async def test_testers_are_asked_the_moment_production_is_deployed(db_url: str,
                                                                   policy: Policy) -> None:
    """Not after staging, not an hour later: at production's success, with verify buttons."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        asked = "is live in production. Please verify it online now"
        await ship(h, rid)  # staging
        assert dms_saying(h, TESTER, asked) == []
        await h.says(TESTER, f"verify REL-{rid} pass")  # accepted on staging
        await ship(h, rid)  # production
        await h.settle()
        for tester in (TESTER, LEAD):
            assert len(dms_saying(h, tester, f"REL-{rid} {asked}")) == 1
        assert dms_saying(h, OPS, asked) == []
        answer = await h.click(TESTER, ActionId.VERIFY_PASS, channel=h.slack.dm_channel(TESTER))
        assert f"Verified REL-{rid}" in answer
        assert await state(h, rid) == "observing"
