"""Acceptance before promotion, through the running app: staging is passed before production."""

from __future__ import annotations

from sqlmodel import select

from bot.app import DEPS
from bot.policy import Policy
from emulators.gitlab import variable
from emulators.sample import DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from storage.models import Acceptance, AuditEntry
from tests.scenario.harness import Harness, readable, running_app
from tests.scenario.test_gitlab_flow import approved, deploy_and_finish, state
from tests.scenario.test_slack_flow import submit_modal, text_values

HELD = ("REL-1 is on staging and not yet accepted there: a tester passes it with "
        "`/release verify REL-1 pass`.")


def card_text(h: Harness, rid: int) -> str:
    """The card as a reader sees it."""
    return readable(h.card(rid))


def labels(h: Harness, rid: int) -> list[str]:
    """The labels of the card's buttons."""
    card = h.card(rid)
    return [e["text"]["text"] for b in card.blocks if b["type"] == "actions"
            for e in b["elements"] if e.get("type") == "button"]


async def acceptances(h: Harness, rid: int) -> list[Acceptance]:
    """The stored verdicts of a release."""
    async with h.app[DEPS].sessions() as session:
        rows = await session.exec(select(Acceptance).where(Acceptance.release_id == rid))
        return list(rows.all())


async def actions(h: Harness, rid: int) -> list[str]:
    """The audit trail's actions, in order."""
    async with h.app[DEPS].sessions() as session:
        rows = await session.exec(select(AuditEntry).where(AuditEntry.release_id == rid)
                                  .order_by(AuditEntry.id))
        return [a.action for a in rows.all()]


async def test_production_waits_for_a_testers_pass_on_staging(db_url: str,
                                                              policy: Policy) -> None:
    """Staging deployed: testers are asked at once, production is refused with the sentence;
    a pass, recorded and announced, lets production be deployed and then verified."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid)
        assert await state(h, rid) == "deployed"
        asked = h.slack.dms(TESTER)[-1]
        assert asked.text.startswith("🧪 REL-1 is deployed to staging: please run the "
                                     "acceptance cases there")
        assert [e["text"]["text"] for e in asked.blocks[1]["elements"]] == [
            "Staging OK", "Staging failed"]
        assert h.slack.dms(LEAD)[-1].text == asked.text
        # Nothing known ran on staging before: no Roll back button, which could only refuse.
        assert labels(h, rid) == ["Staging OK", "Staging failed"]
        assert "📦 staging (awaiting acceptance)  →  ▫️ production" in card_text(h, rid)

        assert await h.says(OPS, "deploy REL-1 production") == HELD
        assert await h.says(OPS, "deploy REL-1") == HELD
        assert "Only a tester can do that." in await h.says(DEV, "verify REL-1 pass")
        assert len([p for p in h.gitlab.pipelines.values()]) == 1

        answer = await h.says(TESTER, "verify REL-1 pass cases re-run on staging")
        assert answer == ("Recorded: REL-1 passed acceptance on staging; it may now be "
                          "deployed to production.")
        await h.settle()
        assert await state(h, rid) == "deployed"
        assert any("accepted the release on staging: cases re-run on staging. It may now be "
                   "deployed to production." in t for t in h.thread(rid))
        assert f"✅ staging (accepted by <@{TESTER}>)" in card_text(h, rid)
        assert labels(h, rid) == ["Deploy to production"]
        [verdict] = await acceptances(h, rid)
        assert (verdict.environment, verdict.passed, verdict.tester, verdict.note) == (
            "staging", True, TESTER, "cases re-run on staging")
        assert "already accepted on staging; production is next." in await h.says(
            LEAD, "verify REL-1 pass")

        pipeline = await deploy_and_finish(h, rid)
        assert variable(h.gitlab.pipelines[pipeline].variables, "DEPLOY_ENV") == "production"
        assert labels(h, rid) == ["Verification passed", "Verification failed", "Roll back"]
        assert "Verified REL-1" in await h.says(TESTER, "verify REL-1 pass")
        assert await state(h, rid) == "observing"
        assert (await actions(h, rid)).count("acceptance pass") == 1


async def test_a_staging_failure_holds_the_release_until_a_new_ref(db_url: str,
                                                                   policy: Policy) -> None:
    """"Staging failed" asks for a note and holds the release: no deploy, no later pass;
    a new ref restarts testing and sign-off, and the new revision is accepted afresh."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid)
        assert await h.click(TESTER, ActionId.VERIFY_FAIL) == ""
        modal = h.slack.modals(TESTER)[-1]
        assert modal["title"]["text"] == "Staging failed"
        await submit_modal(h, TESTER, text_values(reason="refund totals are off by a cent"))
        assert await state(h, rid) == "acceptance_failed"
        assert any("failed the release on staging: refund totals are off by a cent. It is "
                   "held: a new ref restarts testing, or it is cancelled." in t
                   for t in h.thread(rid))
        text = card_text(h, rid)
        assert "Acceptance failed" in text and "🚧 staging (failed acceptance by" in text
        assert "Failed acceptance on staging: refund totals are off by a cent." in text
        assert labels(h, rid) == []  # held; nothing known on staging to roll back to
        assert "REL-1 already failed acceptance: give it a new ref" in await h.says(
            OPS, "deploy REL-1 production")
        assert "already failed acceptance" in await h.says(TESTER, "verify REL-1 pass")

        assert "needs testing and sign-off again" in await h.says(DEV, "ref REL-1 v1.2.0")
        assert await state(h, rid) == "testing"
        await h.says(TESTER, "report REL-1 https://ci/r/2")
        await h.says(DIRECTOR, "approve REL-1")
        await h.says(LEAD, "approve REL-1")
        await h.settle()
        await deploy_and_finish(h, rid)  # staging again, for the new revision
        # Its own tag: release/REL-1 keeps naming the commit the first revision shipped.
        assert h.pipeline_of(rid).ref == "release/REL-1-r4"
        assert labels(h, rid)[:2] == ["Staging OK", "Staging failed"]
        assert await h.says(OPS, "deploy REL-1 production") == HELD
        await h.click(TESTER, ActionId.VERIFY_PASS)
        await deploy_and_finish(h, rid)
        assert await state(h, rid) == "deployed"
        verdicts = await acceptances(h, rid)
        assert [(a.revision, a.passed) for a in verdicts] == [(2, False), (4, True)]


async def test_a_stale_staging_button_never_verifies_production(db_url: str,
                                                                policy: Policy) -> None:
    """A "Staging OK" drawn before production was deployed can't pass production."""
    async with running_app(db_url, policy) as h:
        rid = await approved(h)
        await deploy_and_finish(h, rid)
        old = next(e["value"] for b in h.card(rid).blocks if b["type"] == "actions"
                   for e in b["elements"] if e.get("action_id") == ActionId.VERIFY_PASS)
        assert old.endswith(":deployed:staging")
        await h.says(TESTER, "verify REL-1 pass")
        await h.settle()
        await deploy_and_finish(h, rid)
        answer = await h.click(TESTER, ActionId.VERIFY_PASS, old)
        assert answer == "REL-1 is on production now, not staging; look at the updated card."
        assert await state(h, rid) == "deployed"


async def test_cancel_after_a_failed_acceptance_frees_staging(db_url: str,
                                                              policy: Policy) -> None:
    """A release held by a failed acceptance is cancelled; another may then use staging."""
    async with running_app(db_url, policy) as h:
        first = await approved(h)
        await deploy_and_finish(h, first)
        assert "Recorded: REL-1 failed acceptance on staging" in await h.says(
            TESTER, "verify REL-1 fail checkout 500s")
        second = await approved(h, ref="v1.2.0")
        assert "reserved for REL-1" in await h.says(OPS, f"deploy REL-{second}")
        assert "is cancelled" in await h.says(DEV, "cancel REL-1 broken build")
        await h.settle()
        await deploy_and_finish(h, second)
        assert await state(h, second) == "deployed"
