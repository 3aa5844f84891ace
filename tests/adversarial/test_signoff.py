"""Four eyes under attack: double clicks, self-approval, one person with two roles, overrides."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from bot.policy import Policy
from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from handlers.blocks import ActionId, FormId
from tests.adversarial.common import (
    approvals,
    audit,
    button_value,
    filed,
    ready,
    release,
    thread_count,
)
from tests.fixtures import EMERGENCY
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_slack_flow import submit_modal, text_values

TRIALS = 50


def answers(h: Harness, user: str, since: int) -> list[str]:
    """The private answers a user got after the first `since`."""
    return [e.text for e in h.slack.ephemerals(user)[since:]]


async def test_double_clicks_make_one_approval_each(db_url: str, policy: Policy) -> None:
    """50 trials of two simultaneous Approve clicks by one person: one row, one thread line."""
    async with running_app(db_url, policy) as h:
        rids = [await ready(h, f"payments v1.{i}.0 Trial {i}") for i in range(TRIALS // 2)]
        seen = {DIRECTOR: 0, LEAD: 0}
        for rid in rids:
            for user in (DIRECTOR, LEAD):  # two trials per release: each approver double-clicks
                value = button_value(h, rid)
                replies = await asyncio.gather(h.driver.click(user, ActionId.APPROVE, value),
                                               h.driver.click(user, ActionId.APPROVE, value))
                assert [r.status for r in replies] == [200, 200]
                await h.settle()
                got = answers(h, user, seen[user])
                seen[user] += len(got)
                assert sum(t.startswith("You approved") for t in got) == 1, got
        for rid in rids:
            rows = await approvals(h, rid)
            assert sorted((a.role, a.approver) for a in rows) == [
                ("tech_director", DIRECTOR), ("test_lead", LEAD)], rid
            assert (await release(h, rid)).state == "approved"
            assert thread_count(h, rid, "approved as tech_director") == 1
            assert thread_count(h, rid, "approved as test_lead") == 1
            assert thread_count(h, rid, "All sign-offs are in") == 1


async def test_requester_cannot_approve_but_can_reject(db_url: str, policy: Policy) -> None:
    """The test lead files a release: their Approve is refused, their Reject (form) counts."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h, "payments v2.0.0 Lead's own", user=LEAD)
        assert "four eyes" in await h.click(LEAD, ActionId.APPROVE)
        assert await approvals(h, rid) == []
        assert (await release(h, rid)).state == "ready_for_signoff"
        await h.click(LEAD, ActionId.REJECT)
        assert h.slack.modals(LEAD)[-1]["callback_id"] == FormId.REJECT
        await submit_modal(h, LEAD, text_values(reason="found a data-loss bug"))
        assert (await release(h, rid)).state == "rejected"
        last = (await audit(h, rid))[-1]
        assert (last.actor, last.action, last.detail["reason"]) == (
            LEAD, "reject", "found a data-loss bug")
        assert thread_count(h, rid, "rejected") == 1


async def test_an_executive_acceptance_of_open_bugs_is_audited(db_url: str,
                                                               policy: Policy) -> None:
    """An emergency release with an A bug: only the executive, with a reason, lets it on."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v3.0.0 Outage fix --type emergency " + EMERGENCY)
        assert "does not meet" in await h.says(TESTER, f"report REL-{rid} https://ci/r/1 A=1")
        for user, text, refusal in (
                (DIRECTOR, f"accept REL-{rid} ship it", "Only an executive"),
                (OPS, f"accept REL-{rid} ship it", "Only an executive"),
                (DEV, f"accept REL-{rid} ship it", "Only an executive"),
                (CTO, f"accept REL-{rid}", "Please give a reason"),
                (CTO, f'accept REL-{rid} "  "',
                 f"Please give a reason: `/release accept REL-{rid} &lt;reason…&gt;`")):
            assert refusal in await h.says(user, text), (user, text)
        assert (await release(h, rid)).state == "testing"
        assert "may ship with its open bugs" in await h.says(
            CTO, f"accept REL-{rid} payments are down; the A bug is cosmetic")
        rel = await release(h, rid)
        assert (rel.state, rel.risk_accepted_by) == ("ready_for_signoff", CTO)
        entry = next(e for e in await audit(h, rid) if e.action == "accept risk")
        assert entry.actor == CTO and "cosmetic" in entry.detail["reason"]
        assert entry.detail["failures"]


async def test_open_bugs_on_a_standard_release_cannot_be_accepted(db_url: str,
                                                                 policy: Policy) -> None:
    """Even the executive can't wave open bugs through on a type that doesn't allow it."""
    async with running_app(db_url, policy) as h:
        rid = await filed(h, "payments v3.1.0 Feature")
        await h.says(TESTER, f"report REL-{rid} https://ci/r/1 B=2")
        assert "can't ship with open bugs" in await h.says(CTO, f"accept REL-{rid} trust me")
        rel = await release(h, rid)
        assert (rel.state, rel.risk_accepted_by) == ("testing", None)
        assert "accept risk" not in [e.action for e in await audit(h, rid)]


FOREVER_FROZEN = {"from": date(2000, 1, 1), "to": date(2099, 12, 31), "reason": "Change freeze"}


async def test_freeze_bypass_needs_the_executive_and_a_reason(db_url: str) -> None:
    """In a freeze only an emergency deploys, after the executive's audited override."""
    async with running_app(db_url, sample_policy(freezes=[FOREVER_FROZEN])) as h:
        normal = await ready(h, "web v1.0.0 Normal")
        urgent = await ready(h, "web v1.1.0 Urgent --type emergency " + EMERGENCY)
        await h.says(DIRECTOR, f"approve REL-{normal}")
        await h.says(LEAD, f"approve REL-{normal}")
        await h.says(DIRECTOR, f"approve REL-{urgent}")
        await h.says(CTO, f"approve REL-{urgent}")
        await h.says(LEAD, f"approve REL-{urgent}")
        assert (await release(h, urgent)).state == "approved"
        for rid in (normal, urgent):
            assert "Change freeze" in await h.says(OPS, f"deploy REL-{rid}")
        assert "can't bypass" in await h.says(CTO, f"override REL-{normal} it is urgent")
        for user, text, refusal in (
                (DIRECTOR, f"override REL-{urgent} outage", "Only an executive"),
                (OPS, f"override REL-{urgent} outage", "Only an executive"),
                (CTO, f"override REL-{urgent}", "Please give a reason"),
                (CTO, f'override REL-{urgent} " "',
                 f"Please give a reason: `/release override REL-{urgent} &lt;reason…&gt;`")):
            assert refusal in await h.says(user, text), (user, text)
        assert h.gitlab.pipelines == {}
        assert "may deploy outside" in await h.says(CTO, f"override REL-{urgent} card outage")
        assert "pipeline is running" in await h.says(OPS, f"deploy REL-{urgent}")
        assert "Change freeze" in await h.says(OPS, f"deploy REL-{normal}")
        assert [h.pipeline_of(urgent)] == list(h.gitlab.pipelines.values())
        entry = next(e for e in await audit(h, urgent) if e.action == "override gate")
        assert (entry.actor, entry.detail["reason"]) == (CTO, "card outage")
        assert "Change freeze" in str(entry.detail["gate"])
        assert "override gate" not in [e.action for e in await audit(h, normal)]


@pytest.mark.parametrize("many", [False, True])
async def test_one_person_with_two_roles(db_url: str, many: bool) -> None:
    """Two roles, one person: one approval by default; both when the policy says so."""
    policy = sample_policy(roles={"test_lead": [LEAD, DIRECTOR]}, one_person_many_roles=many)
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        assert "as tech_director" in await h.click(DIRECTOR, ActionId.APPROVE)
        second = await h.click(DIRECTOR, ActionId.APPROVE)
        rows = await approvals(h, rid)
        if many:
            assert "as test_lead" in second, second
            assert sorted(a.role for a in rows) == ["tech_director", "test_lead"]
            assert (await release(h, rid)).state == "approved"
        else:
            assert "already approved" in second, second
            assert [a.role for a in rows] == ["tech_director"]
            assert (await release(h, rid)).state == "ready_for_signoff"
            assert "as test_lead" in await h.click(LEAD, ActionId.APPROVE)
            assert (await release(h, rid)).state == "approved"
