"""Refusals that explain, separated duties, verdicts that stand and a real observation period,
through the running app."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.app import DEPS
from bot.policy import Policy
from bot.transition import ShiftClock
from emulators.sample import CTO, DBA, DEV, DIRECTOR, LEAD, OPS, SUPPORT, TESTER, sample_policy
from handlers.blocks import ActionId
from storage import queries as q
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_gitlab_flow import approved, deploy_and_finish, state


def unescaped(text: str) -> str:
    """An answer as the person reads it (Slack shows &lt; as <)."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


async def filed(h: Harness, text: str, user: str = DEV) -> int:
    """File a release by command; its number."""
    answer = await h.says(user, f"request {text}")
    assert "Filed REL-" in answer, answer
    await h.settle()  # the card, with its buttons, is posted
    return int(answer.split("REL-")[1].split(".")[0])


async def live(h: Harness, project: str = "payments", ref: str = "v1.1.0") -> int:
    """A release deployed everywhere, waiting for its online verification."""
    rid = await approved(h, project, ref)
    await deploy_and_finish(h, rid)
    if project == "payments":  # staging first, accepted there by a tester
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.settle()
        await deploy_and_finish(h, rid)
    assert await state(h, rid) == "deployed"
    return rid


# --- 1. refusals explain --------------------------------------------------------------------------

async def test_refusals_name_what_holds_the_release(db_url: str, policy: Policy) -> None:
    """No report, a failing report, missing sign-offs, an open checklist: each said plainly."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Checkout")
        assert unescaped(await h.says(OPS, f"deploy REL-{rid}")) == (
            f"REL-{rid} is requested: no test report yet. A tester attaches one with "
            f"`/release report REL-{rid} <url> A=n B=n C=n`.")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1 B=1")
        assert await h.says(LEAD, f"approve REL-{rid}") == (
            f"REL-{rid} is in testing: its report shows 1 open B bug (limit 0). It needs a "
            "passing report, or an executive's acceptance on an emergency release.")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/2 C=1")
        assert await h.says(OPS, f"deploy REL-{rid}") == (
            f"REL-{rid} is ready for sign-off: waiting for tech_director and test_lead. It is "
            f"approved once they approve (`/release approve REL-{rid}`).")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.says(OPS, f"check REL-{rid} 1")
        assert unescaped(await h.says(TESTER, f"verify REL-{rid} pass")) == (
            f"REL-{rid} is approved and not deployed yet. Checklist items 2, 3 are still open: "
            f"the release manager ticks 2 and a dba 3, with `/release check REL-{rid} <n…>` or "
            "on the card. It can deploy once that is cleared.")
        assert await state(h, rid) == "approved"


# --- 2. separated duties --------------------------------------------------------------------------

async def test_a_developer_who_tests_still_hands_their_release_over(db_url: str) -> None:
    """Holding the tester role, the requester can't pick up, report or verify their own."""
    policy = sample_policy(roles={"tester": ["U0TESTLEAD", TESTER, DEV]})
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "web v1.1.0 Footer")
        own = "You requested this release, so another tester must"
        assert await h.click(DEV, ActionId.START_TESTING) == f"{own} test it (separated duties)."
        assert await h.says(DEV, f"report REL-{rid} https://ci/r/1") == (
            f"{own} attach its test report (separated duties).")
        assert await state(h, rid) == "requested"
        async with h.app[DEPS].sessions() as session:
            assert await q.latest_report(session, await q.get_release(session, rid)) is None
        await h.says(TESTER, f"report REL-{rid} https://ci/r/2")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.settle()
        await deploy_and_finish(h, rid)
        assert await h.says(DEV, f"verify REL-{rid} pass") == f"{own} verify it (separated duties)."
        assert await h.click(DEV, ActionId.VERIFY_FAIL) == f"{own} verify it (separated duties)."
        assert h.slack.modals(DEV) == [] and await state(h, rid) == "deployed"
        assert "Verified" in await h.says(TESTER, f"verify REL-{rid} pass")


async def test_nobody_is_asked_to_do_what_their_own_release_forbids(db_url: str) -> None:
    """The requester holds the tester and reviewer roles: the plan review, the acceptance on
    staging and the online verification are asked of the others only."""
    policy = sample_policy(
        roles={"tester": ["U0TESTLEAD", TESTER, DEV], "tech_director": [DIRECTOR, DEV]},
        policies={"standard": {"plan": {"required": ["rollback"], "reviewer": "tech_director"}}})
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Checkout")
        await h.says(DEV, f"plan REL-{rid} rollback Redeploy the previous tag")
        await h.settle()
        assert any("waits for your review" in m.text for m in h.slack.dms(DIRECTOR))
        await h.says(DIRECTOR, f"review REL-{rid} ok")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.says(OPS, f"check REL-{rid} 1 2")
        await h.says(DBA, f"check REL-{rid} 3")
        await h.settle()
        await deploy_and_finish(h, rid)
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.settle()
        await deploy_and_finish(h, rid)
        said = [m.text for m in h.slack.dms(TESTER)]  # the acceptance ask, settled once done
        assert any("no longer needs your acceptance on staging: you accepted it" in t
                   for t in said), said
        assert any("Please verify it online now" in t for t in said), said
        asked = [m.text for m in h.slack.dms(DEV) if "needs your sign-off" not in m.text]
        assert asked == [], asked


async def test_the_dba_ticks_the_database_item_and_only_the_dba(db_url: str,
                                                                policy: Policy) -> None:
    """The card names the item's role; the release manager can't tick it, the DBA can."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v1.1.0 Checkout")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.settle()
        box = next(b for b in h.card(rid).blocks if b.get("block_id") == f"checklist:{rid}")
        labels = [o["text"]["text"] for o in box["elements"][0]["options"]]
        assert labels == ["1. Database backup taken", "2. Rollback plan reviewed",
                          "3. DB scripts run in advance _(dba)_"]
        assert await h.says(OPS, f"check REL-{rid} 1 2 3") == (
            "Only a dba can tick checklist item 3.")
        assert await h.says(DBA, f"check REL-{rid} 1") == (
            "Only the release manager can tick checklist item 1.")
        assert await h.says(TESTER, f"check REL-{rid} 3") == (
            "Only the release manager or a dba can do that.")
        assert "3/3 ticked" not in await h.says(OPS, f"check REL-{rid} 1 2")
        assert "3/3 ticked" in await h.says(DBA, f"check REL-{rid} 3")
        status = await h.says(DEV, f"status REL-{rid}")
        assert "☑️ 3. DB scripts run in advance _(dba)_" in status
        async with h.app[DEPS].sessions() as session:
            ticks = await q.ticks_of(session, rid)
        assert [(t.item, t.ticked_by) for t in ticks] == [(1, OPS), (2, OPS), (3, DBA)]
        assert "staging pipeline is running" in await h.click(OPS, ActionId.DEPLOY)


# --- 3. a verdict stays a verdict -----------------------------------------------------------------

async def test_a_failed_verification_is_rolled_back_not_passed(db_url: str,
                                                               policy: Policy) -> None:
    """After a failure, pass and a new ref are refused with the way on; rollback works."""
    async with running_app(db_url, policy) as h:
        first = await live(h, "payments", "v1.0.0")
        await h.says(TESTER, f"verify REL-{first} pass")
        rid = await live(h)
        assert await h.says(TESTER, f"verify REL-{rid} fail checkout returns 500") == (
            f"Recorded the failed verification of REL-{rid}: the release manager rolls it back.")
        await h.settle()
        assert await state(h, rid) == "verification_failed"
        assert ActionId.VERIFY_PASS not in h.buttons(rid) and ActionId.ROLLBACK in h.buttons(rid)
        assert await h.says(TESTER, f"verify REL-{rid} pass") == (
            f"REL-{rid} failed its online verification, and that verdict stands. Roll it back "
            f"with `/release rollback REL-{rid}`, then ship the fix as a new release.")
        assert await h.says(DEV, f"ref REL-{rid} v1.1.1") == (
            f"REL-{rid} failed its online verification and still runs in production: roll it "
            f"back first (`/release rollback REL-{rid}`), then ship the fix as a new release.")
        other = await approved(h, "payments", "v1.1.1")
        await deploy_and_finish(h, other)
        await h.says(TESTER, f"verify REL-{other} pass")  # accepted on staging
        await h.settle()
        assert await h.click(OPS, ActionId.DEPLOY) == (
            f"payments production runs REL-{rid}, which failed its verification: roll it back "
            "first.")
        assert await state(h, rid) == "verification_failed"
        await h.says(OPS, f"rollback REL-{rid} checkout broken")
        h.gitlab.set_status(h.pipeline_of(rid).id, "success")
        assert await h.poll() == 1
        assert await state(h, rid) == "rolled_back"


async def test_with_nothing_to_roll_back_a_new_ref_is_the_way_on(db_url: str,
                                                                 policy: Policy) -> None:
    """A first release that fails verification is fixed by a new ref, tested and signed again."""
    async with running_app(db_url, policy) as h:
        h.gitlab.project("acme/web").deployments.clear()  # GitLab never deployed web before
        answer = await h.says(DEV, "request web v1.1.0 Footer")
        rid = int(answer.split("REL-")[1].split(".")[0])
        await h.says(DEV, f"plan REL-{rid} rollback Restore the old footer by hand")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/{rid}")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.settle()
        await deploy_and_finish(h, rid)
        assert await h.says(TESTER, f"verify REL-{rid} fail footer missing") == (
            f"Recorded the failed verification of REL-{rid}: with no earlier version to roll "
            f"back to, the requester sets the fixed ref (`/release ref REL-{rid} &lt;ref&gt;`).")
        assert "There is no recorded previous version" in await h.says(OPS, f"rollback REL-{rid}")
        assert "set the fixed ref with `/release ref" in await h.says(
            TESTER, f"verify REL-{rid} pass")
        assert "now points at `v1.1.1`" in await h.says(DEV, f"ref REL-{rid} v1.1.1")
        assert await state(h, rid) == "testing"
        await h.says(TESTER, f"report REL-{rid} https://ci/r/9")
        await h.says(DIRECTOR, f"approve REL-{rid}")
        await h.says(LEAD, f"approve REL-{rid}")
        await h.settle()
        await deploy_and_finish(h, rid)
        fixed = h.pipeline_of(rid)  # the fix ships on a tag of its own; the first one stays
        async with h.app[DEPS].sessions() as session:
            revision = (await q.get_release(session, rid)).revision
        assert fixed.ref == f"release/REL-{rid}-r{revision}"
        assert "Verified" in await h.says(TESTER, f"verify REL-{rid} pass")


# --- 4. observation means observation -------------------------------------------------------------

async def test_observation_runs_its_course_then_operations_take_over(db_url: str,
                                                                     policy: Policy) -> None:
    """The release manager can't close early; the scheduler closes it and operations are told."""
    clock = ShiftClock()
    clock.jump_to(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))  # 12:00 in Shanghai
    async with running_app(db_url, policy, clock=clock, scheduler_seconds=1) as h:
        rid = await live(h, "web", "v1.1.0")
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.settle()
        assert await state(h, rid) == "observing"
        until = "2026-11-24 12:00 CST"
        expected = (f"REL-{rid} is under observation until {until}; it closes on its own then. "
                    "Only an executive may end observation early, with a reason.")
        assert await h.says(OPS, f"close REL-{rid}") == expected
        assert await h.click(OPS, ActionId.CLOSE) == expected
        assert await h.says(DEV, f"deploy REL-{rid}") == (
            f"REL-{rid} is verified and under observation until {until}; then it closes and "
            "is handed over to operations.")
        assert await state(h, rid) == "observing" and not h.slack.dms(SUPPORT)
        clock.jump_to(datetime(2026, 11, 24, 4, 0, 30, tzinfo=UTC))
        await wait_closed(h, rid)
        dm = h.slack.dms(SUPPORT)[-1].text
        assert dm.startswith(f"🤝 REL-{rid} is handed over to operations: web `v1.1.0` — ")
        closing = h.thread(rid)[-1]
        assert f"*Handed over to operations* <@{SUPPORT}>" in closing
        assert "*Remaining issues* none known" in closing
        assert "Observation ended early" not in closing


async def wait_closed(h: Harness, rid: int, within: float = 10.0) -> None:
    """Until the scheduler has closed the release and its announcements are out."""
    deadline = datetime.now(UTC) + timedelta(seconds=within)
    while await state(h, rid) != "closed":
        assert datetime.now(UTC) < deadline, "the release was not closed"
        await h.settle()
    await h.settle()


async def test_an_executive_ends_observation_early_with_a_reason(db_url: str,
                                                                  policy: Policy) -> None:
    """Early close: a reason, the accepted bugs and who accepted them, and the handover."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "web v1.1.0 Payout fix --type emergency " + EMERGENCY)
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1 B=1 C=2")
        await h.says(CTO, f"accept REL-{rid} Merchants are not paid; the B bug is a log line")
        for approver in (CTO, DIRECTOR, LEAD):
            await h.says(approver, f"approve REL-{rid}")
        await h.settle()
        await deploy_and_finish(h, rid)
        await h.says(TESTER, f"verify REL-{rid} pass")
        assert unescaped(await h.says(CTO, f"close REL-{rid}")) == (
            f"Ending observation early needs a reason: `/release close REL-{rid} <reason…>`.")
        assert await state(h, rid) == "observing"
        assert await h.says(CTO, f"close REL-{rid} Payouts flow again, metrics normal") == (
            f"REL-{rid} is closed.")
        await h.settle()
        closing = h.thread(rid)[-1]
        assert (f"*Remaining issues* A 0 · B 1 · C 2 open; 1 open B bug (limit 0), accepted by "
                f"<@{CTO}>: Merchants are not paid; the B bug is a log line") in closing
        assert (f"*Observation ended early* by <@{CTO}> (it was to run until ") in closing
        assert "): Payouts flow again, metrics normal" in closing
        dm = h.slack.dms(SUPPORT)[-1].text
        assert f"Remaining issues: A 0 · B 1 · C 2 open; 1 open B bug (limit 0), accepted by " \
               f"<@{CTO}>" in dm
        async with h.app[DEPS].sessions() as session:
            trail = await q.audit_of(session, rid)
        close = trail[-1]
        assert close.action == "close" and close.actor == CTO
        assert close.detail["early"]["reason"] == "Payouts flow again, metrics normal"


async def test_impact_is_part_of_the_handover(db_url: str, policy: Policy) -> None:
    """A release's impact reaches the closing summary and the operations DM."""
    async with running_app(db_url, policy) as h:
        rid = await live(h, "web", "v1.1.0")
        async with h.app[DEPS].sessions() as session:
            release = await q.get_release(session, rid)
            release.plan = {**release.plan, "impact": "Footer links change for every visitor"}
            session.add(release)
            await session.commit()
        await h.says(TESTER, f"verify REL-{rid} pass")
        await h.says(CTO, f"close REL-{rid} all quiet")
        await h.settle()
        assert "*Impact* Footer links change for every visitor" in h.thread(rid)[-1]
        assert "Impact: Footer links change for every visitor." in h.slack.dms(SUPPORT)[-1].text
