"""The go-live plan through the running app: the card, the form, the review, the voided sign-off."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId, FormId
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import state
from tests.scenario.test_slack_flow import submit_modal, text_values

REVIEWED = sample_policy(policies={"standard": {"plan": {
    "required": ["impact", "rollback", "db_scripts"], "reviewer": "tech_director"}}})


async def filed_and_tested(h: Harness) -> int:
    """A one-line request (an empty plan) with a passing report."""
    answer = await h.says(DEV, "request web v1.1.0 Checkout redesign")
    rid = int(answer.split("REL-")[1].split(".")[0])
    await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid} A=0 B=0 C=0")
    await h.settle()
    return rid


async def test_the_plan_holds_sign_off_until_written_and_reviewed(db_url: str,
                                                                  policy: Policy) -> None:
    """Card lists the gaps; the form fills them; the reviewer's OK lets the approvers sign."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await filed_and_tested(h)
        card = str(h.card(rid).blocks)
        assert "Go-live plan* ⚠️ missing impact scope, rollback steps and database scripts" in card
        assert ActionId.EDIT_PLAN in h.buttons(rid) and ActionId.PLAN_OK not in h.buttons(rid)
        refused = await h.click(LEAD, ActionId.APPROVE)
        assert refused == ("The go-live plan is missing impact scope, rollback steps and "
                           "database scripts: the requester adds it with Edit plan on the card "
                           "or `/release plan`.")
        assert await h.click(TESTER, ActionId.EDIT_PLAN) == (
            "Only the requester or the release manager can do that.")
        await h.click(DEV, ActionId.EDIT_PLAN)
        form = h.slack.modals(DEV)[-1]
        assert form["callback_id"] == FormId.PLAN and form["private_metadata"].startswith(
            f"{rid}:")
        before = len(h.slack.dms(DIRECTOR))
        await submit_modal(h, DEV, text_values(
            plan_impact="Checkout page only", plan_rollback="Redeploy the previous tag",
            plan_db_scripts="none", plan_on_duty="Dana, Olga"))
        assert "waiting for review by tech_director" in str(h.card(rid).blocks)
        assert any("waits for your review" in m.text for m in h.slack.dms(DIRECTOR)[before:])
        assert "asked for changes" in await h.says(
            DIRECTOR, f"review REL-{rid} changes Name who restores the CDN cache")
        await h.settle()
        dana = " ".join(m.text for m in h.slack.dms(DEV))
        assert "needs changes: Name who restores the CDN cache" in dana
        await h.says(DEV, f"plan REL-{rid} rollback Redeploy the previous tag; Olga purges "
                          "the CDN cache")
        assert "approved" in await h.click(DIRECTOR, ActionId.PLAN_OK)
        status = await h.says(DEV, f"status REL-{rid}")
        assert status.count("Go-live plan* ✅ approved by") == 1  # the card's line, once
        await h.click(LEAD, ActionId.APPROVE)
        await h.click(DIRECTOR, ActionId.APPROVE)
        assert await state(h, rid) == "approved"
        thread = "\n".join(h.thread(rid))
        assert "changed the go-live plan: impact scope, rollback steps, database scripts" in thread
        assert "approved the go-live plan as tech_director" in thread


async def test_editing_a_signed_off_plan_asks_for_sign_off_again(db_url: str,
                                                                 policy: Policy) -> None:
    """The release goes back to sign-off on the same commit; the approvers are asked again."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await filed_and_tested(h)
        for part, text in (("impact", "Checkout only"), ("rollback", "Redeploy previous tag"),
                           ("db_scripts", "none")):
            await h.says(DEV, f"plan REL-{rid} {part} {text}")
        await h.says(DIRECTOR, f"review REL-{rid} ok")
        await h.click(LEAD, ActionId.APPROVE)
        await h.click(DIRECTOR, ActionId.APPROVE)
        pinned = str(h.card(rid).blocks).split("@ `")[1][:7]
        answer = await h.says(OPS, f"plan REL-{rid} planned_time Thursday 20:00, agreed with "
                                   "support")
        assert answer == f"Saved REL-{rid}'s go-live plan; the approvers must sign it off again."
        await h.settle()
        assert await state(h, rid) == "ready_for_signoff"
        card = str(h.card(rid).blocks)
        assert f"@ `{pinned}`" in card and "meets the go-live standard" in card
        assert "waiting for review by tech_director" in card
        assert "Its review and earlier approvals no longer count." in "\n".join(h.thread(rid))
        refused = await h.says(OPS, f"plan REL-{rid} bogus text")
        assert refused.startswith("'bogus' is not a part of the go-live plan")


async def test_asking_for_changes_needs_the_note_the_requester_reads(db_url: str,
                                                                     policy: Policy) -> None:
    """`changes` without a note, or a word that is neither, answers with the command to type;
    nothing is recorded and the requester is told nothing."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await filed_and_tested(h)
        await h.says(DEV, f"plan REL-{rid} impact Checkout page only")
        await h.says(DEV, f"plan REL-{rid} rollback Redeploy the previous tag")
        await h.says(DEV, f"plan REL-{rid} db_scripts none")
        await h.settle()
        before = len(h.slack.dms(DEV))
        assert await h.says(DIRECTOR, f"review REL-{rid} changes") == (
            f"Say what needs changing: `/release review REL-{rid} changes &lt;note…&gt;`")
        assert await h.says(DIRECTOR, f"review REL-{rid} maybe") == (
            f"Say ok or changes: `/release review REL-{rid} ok|changes [note…] "
            "[--type T [--ground G]]`")
        await h.settle()
        assert len(h.slack.dms(DEV)) == before
        assert "waiting for review by tech_director" in str(h.card(rid).blocks)


async def test_saving_part_of_the_plan_says_what_it_still_lacks(db_url: str,
                                                                policy: Policy) -> None:
    """Each save names the required parts still empty, by command and by form, until none."""
    async with running_app(db_url, REVIEWED) as h:
        rid = await filed_and_tested(h)
        assert await h.says(DEV, f"plan REL-{rid} impact Checkout page only") == (
            f"Saved REL-{rid}'s go-live plan. It still lacks rollback steps and database "
            "scripts.")
        await h.click(DEV, ActionId.EDIT_PLAN)
        before = len(h.slack.dms(DEV))
        await submit_modal(h, DEV, text_values(plan_impact="Checkout page only",
                                               plan_db_scripts="none"))
        await h.settle()
        assert [m.text for m in h.slack.dms(DEV)[before:]] == [
            f"Saved REL-{rid}'s go-live plan. It still lacks rollback steps."]
        assert await h.says(DEV, f"plan REL-{rid} rollback Redeploy the previous tag") == (
            f"Saved REL-{rid}'s go-live plan.")
