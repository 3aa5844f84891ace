"""Emergency, after online testing: the executive decides whether the problems get fixed."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import CTO, DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId, FormId
from tests.adversarial.common import approvals, audit, release
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, readable, running_app
from tests.scenario.test_duties import live
from tests.scenario.test_gitlab_flow import deploy_and_finish, state
from tests.scenario.test_slack_flow import submit_modal, text_values


async def live_emergency(h: Harness, ref: str = "v1.1.0") -> int:
    """An emergency release signed by the executive, tech director and test lead, in production."""
    answer = await h.says(DEV, f"request payments {ref} Refunds --type emergency {EMERGENCY}")
    rid = int(answer.split("REL-")[1].split(".")[0])
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
    for user in (CTO, DIRECTOR, LEAD):
        await h.says(user, f"approve REL-{rid}")
    await h.says(OPS, f"check REL-{rid} 1 2")
    await h.says(DBA, f"check REL-{rid} 3")
    await h.settle()
    await deploy_and_finish(h, rid)
    await h.says(TESTER, f"verify REL-{rid} pass")  # accepted on staging
    await h.settle()
    await deploy_and_finish(h, rid)
    assert await state(h, rid) == "deployed"
    return rid


def dm_buttons(h: Harness, user: str) -> list[str]:
    """The action ids of the buttons in the newest direct message to `user`."""
    blocks = h.slack.dms(user)[-1].blocks
    return [e["action_id"] for b in blocks if b["type"] == "actions" for e in b["elements"]]


async def test_the_executive_has_the_problems_fixed_and_a_new_revision_is_tested(
        db_url: str, policy: Policy) -> None:
    """Asked by DM and in the thread; only the executive decides; fix reopens the new-ref path."""
    async with running_app(db_url, policy) as h:
        before = await live(h, "payments", "v1.0.0")
        await h.says(TESTER, f"verify REL-{before} pass")  # so there is a version to roll back to
        rid = await live_emergency(h)
        asked = len(h.slack.dms(CTO))
        assert await h.says(TESTER, f"verify REL-{rid} fail Refunds are charged twice") == (
            f"Recorded the failed verification of REL-{rid}: an executive decides whether its "
            "problems get fixed or it stays live with them; the release manager may roll it "
            "back meanwhile.")
        await h.settle()
        ask = h.slack.dms(CTO)[-1].text
        assert len(h.slack.dms(CTO)) == asked + 1
        assert ask == (f"🧭 REL-{rid} failed its online verification: Refunds are charged "
                       "twice. An executive decides: have the problems fixed (`/release decide "
                       f"REL-{rid} fix &lt;reason&gt;`) or keep it live with them as known "
                       f"issues (`/release decide REL-{rid} accept &lt;reason&gt;`); the "
                       "release manager may also roll it back.")
        assert dm_buttons(h, CTO) == [ActionId.DECIDE_FIX, ActionId.DECIDE_ACCEPT]
        thread = h.thread(rid)
        assert ask in thread
        found = next(i for i, line in enumerate(thread) if "found a problem in production" in line)
        assert found < thread.index(ask)  # the failure first, then what it asks
        assert {ActionId.ROLLBACK, ActionId.DECIDE_FIX, ActionId.DECIDE_ACCEPT} <= set(
            h.buttons(rid))
        assert "*Executive's decision* ⏳" in readable(h.card(rid))
        # Not the tester, not the release manager, and the requester's new ref waits for it.
        assert await h.says(TESTER, f"decide REL-{rid} fix it") == (
            "Only an executive can do that.")
        assert await h.click(OPS, ActionId.DECIDE_FIX) == "Only an executive can do that."
        assert "an executive decides first" in await h.says(DEV, f"ref REL-{rid} v1.1.1")
        assert await h.says(CTO, f"decide REL-{rid} maybe") == (
            "'maybe' is not fix or accept. Usage: `/release decide &lt;ID&gt; fix|accept "
            "&lt;reason…&gt;`")
        assert await h.says(CTO, f"decide REL-{rid} fix") == (
            f"Please give a reason: `/release decide REL-{rid} fix &lt;reason…&gt;`")
        told = len(h.slack.dms(DEV))
        assert await h.says(CTO, f"decide REL-{rid} fix Refunds must be exact") == (
            f"Recorded: REL-{rid}'s problems get fixed. The requester is told to set the fixed "
            "ref; it is tested and signed off again.")
        await h.settle()
        assert await h.says(CTO, f"decide REL-{rid} accept fine") == (
            f"The executive already decided for REL-{rid}: the problems get fixed.")
        assert any("decided the problems found in production get fixed: Refunds must be exact"
                   in line for line in h.thread(rid))
        assert any(f"Set the fixed ref with `/release ref REL-{rid} &lt;ref&gt;`" in m.text
                   for m in h.slack.dms(DEV)[told:])
        assert ActionId.DECIDE_FIX not in h.buttons(rid)
        row = next(a for a in await audit(h, rid) if a.action == "decide fix")
        assert (row.actor, row.detail["reason"], row.to_state) == (
            CTO, "Refunds must be exact", "verification_failed")
        assert "now points at `v1.1.1`" in await h.says(DEV, f"ref REL-{rid} v1.1.1")
        assert await state(h, rid) == "testing"
        rel = await release(h, rid)
        assert [a for a in await approvals(h, rid) if a.revision == rel.revision] == []
        assert rel.decision == "fix" and rel.decided_by == CTO


async def test_the_executive_keeps_it_live_and_the_problems_are_known_issues(
        db_url: str, policy: Policy) -> None:
    """Accept from the DM's button, with a reason: observation, then the close summary says so."""
    async with running_app(db_url, policy) as h:
        rid = await live_emergency(h)
        await h.says(TESTER, f"verify REL-{rid} fail Receipt logo is blurry")
        await h.settle()
        dm = h.slack.dms(CTO)[-1]
        assert await h.click(DIRECTOR, ActionId.DECIDE_ACCEPT, channel=dm.channel) == (
            "Only an executive can do that.")
        assert await h.click(CTO, ActionId.DECIDE_ACCEPT, channel=dm.channel) == ""
        assert h.slack.modals(CTO)[-1]["callback_id"] == FormId.DECIDE_ACCEPT
        await submit_modal(h, CTO, text_values(reason="Cosmetic; fixed in the next release"))
        await h.settle()
        assert await state(h, rid) == "observing"
        assert await h.says(CTO, f"decide REL-{rid} fix Second thoughts") == (
            f"The executive already decided for REL-{rid}: it stays live as it is; it is "
            "observing.")
        assert any("accepted the problems found in production (Receipt logo is blurry) as "
                   "known issues: Cosmetic; fixed in the next release" in line
                   for line in h.thread(rid))
        notes = await h.says(DEV, f"notes REL-{rid}")
        assert ("Found in online verification: Receipt logo is blurry; kept live as it is by "
                f"<@{CTO}>: Cosmetic; fixed in the next release") in notes
        await h.says(CTO, f"close REL-{rid} Observed long enough")
        await h.settle()
        summary = next(line for line in h.thread(rid) if "is closed." in line)
        assert ("found in online verification: Receipt logo is blurry — kept live as it is by "
                f"<@{CTO}>: Cosmetic; fixed in the next release") in summary


async def test_a_standard_release_asks_no_executive(db_url: str, policy: Policy) -> None:
    """Its type can't ship with known issues: rollback or a new revision, as before."""
    async with running_app(db_url, policy) as h:
        rid = await live(h)
        asked = len(h.slack.dms(CTO))
        await h.says(TESTER, f"verify REL-{rid} fail checkout returns 500")
        await h.settle()
        assert len(h.slack.dms(CTO)) == asked
        assert ActionId.DECIDE_FIX not in h.buttons(rid)
        assert await h.says(CTO, f"decide REL-{rid} accept ship it") == (
            "A standard release that fails its online verification is rolled back or fixed as "
            "a new revision; no executive decision is taken for it.")
