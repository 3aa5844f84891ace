"""Rework, not dead ends: a rejected release comes back with a new ref or report, or ends."""

from __future__ import annotations

from bot.policy import Policy
from emulators.sample import DEV, DIRECTOR, LEAD, TESTER
from tests.adversarial.common import approvals, ready, release, thread_count
from tests.scenario.harness import running_app


async def test_a_rejected_release_is_reworked_with_a_new_report(db_url: str,
                                                                 policy: Policy) -> None:
    """Rejected after one approval: refusals explain, a new report restarts sign-off."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")
        assert "You rejected" in await h.says(LEAD, f"reject REL-{rid} the refund path is untested")
        await h.settle()
        assert (await release(h, rid)).state == "rejected"
        assert thread_count(h, rid, "the refund path is untested") == 1
        assert thread_count(h, rid, f"<@{DEV}>, it is back for rework") == 1
        assert await h.says(LEAD, f"approve REL-{rid}") == (
            f"REL-{rid} was rejected and is back for rework. A new ref (`/release ref REL-{rid} "
            f"&lt;ref&gt;`) or a new test report restarts testing; `/release cancel REL-{rid}` "
            "ends it.")
        assert "meets the go-live" in await h.says(
            TESTER, f"report REL-{rid} https://ci.example/r/refunds A=0 B=0 C=0")
        rel = await release(h, rid)
        assert rel.state == "ready_for_signoff"
        counting = [a for a in await approvals(h, rid) if a.revision == rel.revision]
        assert counting == []  # the approval before the rejection is of the old revision
        assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")
        assert "You approved" in await h.says(LEAD, f"approve REL-{rid}")
        assert (await release(h, rid)).state == "approved"


async def test_a_rejected_release_takes_a_new_ref_or_is_cancelled(db_url: str,
                                                                  policy: Policy) -> None:
    """A new ref sends it back to testing; a second rejection is then cancelled."""
    async with running_app(db_url, policy) as h:
        rid = await ready(h)
        await h.says(DIRECTOR, f"reject REL-{rid} wrong branch")
        assert "now points at `v1.1.1`" in await h.says(DEV, f"ref REL-{rid} v1.1.1")
        assert (await release(h, rid)).state == "testing"
        assert "meets the go-live" in await h.says(
            TESTER, f"report REL-{rid} https://ci.example/r/2 A=0 B=0 C=0")
        await h.says(DIRECTOR, f"reject REL-{rid} still not it")
        assert "is cancelled" in await h.says(DEV, f"cancel REL-{rid} dropped")
        assert (await release(h, rid)).state == "cancelled"
