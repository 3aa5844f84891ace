"""No self-service: an executive can't wave their own release through; a new ref earns anew."""

from __future__ import annotations

from emulators.sample import CTO, DEV, DIRECTOR, LEAD, OPS, TESTER, sample_policy
from tests.adversarial.common import audit, filed, ready, release, row_counts
from tests.adversarial.test_signoff import FOREVER_FROZEN
from tests.fixtures import EMERGENCY
from tests.scenario.harness import running_app


async def test_an_executive_cannot_accept_their_own_releases_bugs(db_url: str) -> None:
    """The executive files an emergency with an A bug; their own acceptance is refused."""
    async with running_app(db_url, sample_policy()) as h:
        rid = await filed(h, "payments v3.0.0 My outage fix --type emergency " + EMERGENCY,
                          user=CTO)
        assert "does not meet" in await h.says(TESTER, f"report REL-{rid} https://ci/r/1 A=1")
        before = await row_counts(h)
        answer = await h.says(CTO, f"accept REL-{rid} I say it is fine")
        assert "You requested this release, so someone else must decide that" in answer
        rel = await release(h, rid)
        assert (rel.state, rel.risk_accepted_by) == ("testing", None)
        assert await row_counts(h) == before


async def test_an_executive_cannot_override_the_freeze_for_their_own_release(
        db_url: str) -> None:
    """In a freeze, the executive's override of their own emergency is refused."""
    async with running_app(db_url, sample_policy(freezes=[FOREVER_FROZEN])) as h:
        rid = await ready(h, "web v1.1.0 Mine --type emergency " + EMERGENCY, user=CTO)
        await h.says(DIRECTOR, f"approve REL-{rid}")
        before = await row_counts(h)
        answer = await h.says(CTO, f"override REL-{rid} it is urgent")
        assert "someone else must decide that" in answer
        assert (await release(h, rid)).gate_override_by is None
        assert await row_counts(h) == before
        assert "override gate" not in [e.action for e in await audit(h, rid)]


async def test_a_new_ref_voids_the_override(db_url: str) -> None:
    """An override was for what was then to ship: after a new ref the freeze holds again."""
    async with running_app(db_url, sample_policy(freezes=[FOREVER_FROZEN])) as h:
        rid = await ready(h, "web v1.1.0 Urgent --type emergency " + EMERGENCY)
        for user in (DIRECTOR, CTO, LEAD):
            await h.says(user, f"approve REL-{rid}")
        assert "may deploy outside" in await h.says(CTO, f"override REL-{rid} card outage")
        await h.says(DEV, f"ref REL-{rid} v1.1.1")
        rel = await release(h, rid)
        assert (rel.gate_override_by, rel.gate_override_reason) == (None, None)
        await h.says(TESTER, f"report REL-{rid} https://ci/r/2 A=0 B=0 C=0")
        for user in (DIRECTOR, CTO, LEAD):
            await h.says(user, f"approve REL-{rid}")
        assert (await release(h, rid)).state == "approved"
        assert "Change freeze" in await h.says(OPS, f"deploy REL-{rid}")
        assert h.gitlab.pipelines == {}
        assert [e.action for e in await audit(h, rid)].count("override gate") == 1
