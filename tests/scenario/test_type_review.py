"""Urgency is decided at review: the plan's reviewer confirms the release type, or corrects it."""

from __future__ import annotations

from emulators.sample import CTO, DEV, DIRECTOR, LEAD, TESTER, sample_policy
from tests.adversarial.common import approvals, audit, release
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, readable, running_app
from tests.scenario.test_gitlab_flow import state

_PLAN = {"required": ["impact", "rollback", "db_scripts"], "reviewer": "tech_director"}
REVIEWED = sample_policy(policies={"standard": {"plan": _PLAN}, "emergency": {"plan": _PLAN}})


async def planned(h: Harness, request: str) -> int:
    """Filed by the developer with a complete plan and a passing test report."""
    answer = await h.says(DEV, f"request {request}")
    rid = int(answer.split("REL-")[1].split(".")[0])
    for part, text in (("impact", "Payouts only"), ("rollback", "Redeploy the previous tag"),
                       ("db_scripts", "none")):
        await h.says(DEV, f"plan REL-{rid} {part} {text}")
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid} A=0 B=0 C=0")
    await h.settle()
    return rid


async def test_a_self_declared_emergency_is_corrected_at_review(db_url: str) -> None:
    """The reviewer makes it standard: no executive needed; it is confirmed when the plan is OK."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await planned(h, f"web v1.1.0 Payout fix --type emergency {EMERGENCY}")
        card = readable(h.card(rid))
        assert "emergency release — type not confirmed yet (tech_director at plan review)" in card
        assert "waits for review by the tech_director" in await h.says(CTO, f"approve REL-{rid}")
        assert await h.says(TESTER, f"review REL-{rid} changes --type standard no") == (
            "Only the go-live plan's reviewer can do that.")
        assert await h.says(DIRECTOR, f"review REL-{rid} changes --type standard") == (
            f"Please give a reason: `/release review REL-{rid} changes --type standard "
            "&lt;reason…&gt;`")
        told = len(h.slack.dms(DEV))
        answer = await h.says(DIRECTOR, f"review REL-{rid} changes --type standard Not urgent: "
                                        "the workaround holds; ship in Thursday's window")
        assert answer == (f"You changed REL-{rid} from emergency to standard and asked for "
                          "changes to its go-live plan; the requester is told.")
        await h.settle()
        assert any("changed the release type from emergency to standard at review: Not "
                   "urgent: the workaround holds" in line for line in h.thread(rid))
        assert any(f"REL-{rid} is now a standard release, not emergency" in m.text
                   for m in h.slack.dms(DEV)[told:])
        rel = await release(h, rid)
        assert (rel.type, rel.ground, rel.type_confirmed_by) == ("standard", None, None)
        card = readable(h.card(rid))
        assert "standard release — type not confirmed yet" in card and "🚨" not in card
        row = next(a for a in await audit(h, rid) if a.action == "retype")
        assert (row.actor, row.detail["old_type"], row.detail["type"]) == (
            DIRECTOR, "emergency", "standard")
        assert await h.says(DIRECTOR, f"review REL-{rid} ok") == (
            f"You approved REL-{rid}'s go-live plan and confirmed it as a standard release.")
        await h.settle()
        assert f"standard release — confirmed by <@{DIRECTOR}> at review" in readable(h.card(rid))
        assert f"🗒 <@{DIRECTOR}> approved the go-live plan as tech_director and confirmed it " \
            "as a standard release." in h.thread(rid)
        assert "You approved" in await h.says(LEAD, f"approve REL-{rid}")
        assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")
        assert await state(h, rid) == "approved"  # two signatures: the executive's is not needed


async def test_a_signed_off_release_made_an_emergency_is_signed_again(db_url: str) -> None:
    """Correcting the type after sign-off voids it and asks the new type's approvers."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await planned(h, "web v1.1.0 Payout fix")
        await h.says(DIRECTOR, f"review REL-{rid} ok")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        assert await state(h, rid) == "approved"
        assert await h.says(DIRECTOR, f"review REL-{rid} ok --ground live_bug Payouts hang") == (
            "A ground goes with a corrected type: `--type emergency --ground …`.")
        assert "needs its ground: --ground live_bug" in await h.says(
            DIRECTOR, f"review REL-{rid} ok --type emergency Payouts hang")
        assert await h.says(DIRECTOR, f"review REL-{rid} ok --type campaign Launch") == (
            f"A campaign release needs its launch time, and REL-{rid} has none.")
        assert "Unknown release type 'urgent'" in await h.says(
            DIRECTOR, f"review REL-{rid} ok --type urgent Payouts hang")
        assert await state(h, rid) == "approved"  # each refusal changed nothing
        asked = len(h.slack.dms(CTO))
        answer = await h.says(DIRECTOR, f"review REL-{rid} ok --type emergency --ground "
                                        "live_bug Payouts hang for every merchant")
        assert answer == (f"You changed REL-{rid} from standard to emergency, approved its "
                          "go-live plan and confirmed it as an emergency release; its approvers "
                          "sign again.")
        await h.settle()
        assert await state(h, rid) == "ready_for_signoff"
        rel = await release(h, rid)
        assert [a for a in await approvals(h, rid) if a.revision == rel.revision] == []
        assert (rel.ground, rel.ground_reason) == ("live_bug", "Payouts hang for every merchant")
        assert any("needs your sign-off" in m.text for m in h.slack.dms(CTO)[asked:])
        card = readable(h.card(rid))
        assert f"emergency release — confirmed by <@{DIRECTOR}> at review" in card
        assert "🚨 Emergency: a serious bug is live: Payouts hang for every merchant" in card
        assert [a.action for a in await audit(h, rid)][-2:] == ["retype", "approve plan"]
        for user in (CTO, LEAD, DIRECTOR):
            assert "You approved" in await h.says(user, f"approve REL-{rid}")
        assert await state(h, rid) == "approved"


async def test_a_correction_to_a_type_whose_plan_nobody_reviews_is_the_whole_verdict(
        db_url: str) -> None:
    """Emergency → hotfix (no plan review for hotfixes): the correction stands on its own,
    announced once, and the hotfix's approvers are asked; `changes` says the same."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await planned(h, f"web v1.1.0 Payout fix --type emergency {EMERGENCY}")
        answer = await h.says(DIRECTOR, f"review REL-{rid} ok --type hotfix A plain hotfix")
        assert answer == (f"You changed REL-{rid} from emergency to hotfix; as a hotfix release "
                          "its go-live plan needs no review, and its approvers sign again. The "
                          "requester is told.")
        await h.settle()
        card = readable(h.card(rid))
        assert "hotfix release" in card and "not confirmed" not in card
        assert len([t for t in h.thread(rid) if "changed the release type" in t]) == 1
        assert h.slack.dms(CTO)[-1].text.endswith(  # the executive's ask, settled
            "no longer needs your sign-off: it is now a hotfix release, which you don't sign.")
        assert await h.says(LEAD, f"approve REL-{rid}") == f"You approved REL-{rid} as test_lead."
        other = await planned(h, f"web v1.2.0 Payout fix --type emergency {EMERGENCY}")
        assert "as a hotfix release its go-live plan needs no review" in await h.says(
            DIRECTOR, f"review REL-{other} changes --type hotfix Not an emergency")
