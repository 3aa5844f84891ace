"""App Home, opened by different people, offers each only the buttons they may use now."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from bot.app import DEPS
from bot.policy import Policy
from bot.readmodel import read_view
from bot.transition import load_facts
from emulators.sample import DBA, DEV, DIRECTOR, LEAD, OPS
from handlers.blocks import ActionId
from storage import queries as q
from tests.scenario.harness import Harness, running_app
from tests.scenario.test_home_waits import home_of
from tests.scenario.test_slack_flow import release_state, to_signoff


def home_actions(home: dict[str, Any]) -> set[str]:
    """The action ids of every button and checkbox group on a Home tab."""
    return {e["action_id"] for b in home["blocks"] if b["type"] == "actions"
            for e in b["elements"]}


async def test_each_reader_sees_the_buttons_they_may_use(db_url: str, policy: Policy) -> None:
    """A release waits for sign-off: the approver's Home offers Approve and Reject, the release
    manager's and the DBA's the checklist, the requester's nothing; the channel card keeps
    them all. Once the approver signed, Approve is gone from his Home."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        card = set(h.buttons(rid))
        assert {ActionId.APPROVE, ActionId.REJECT, ActionId.REPORT} <= card

        assert home_actions(await home_of(h, DIRECTOR, "EvBtn1")) == {
            ActionId.APPROVE, ActionId.REJECT}
        assert home_actions(await home_of(h, OPS, "EvBtn2")) == {ActionId.CHECKLIST}
        assert home_actions(await home_of(h, DBA, "EvBtn3")) == {ActionId.CHECKLIST}
        dev_home = await home_of(h, DEV, "EvBtn4")
        assert f"REL-{rid}" in str(dev_home["blocks"]) and home_actions(dev_home) == set()

        await h.click(DIRECTOR, ActionId.APPROVE)
        await h.settle()
        assert home_actions(await home_of(h, DIRECTOR, "EvBtn5")) == {ActionId.REJECT}
        assert card == set(h.buttons(rid))  # the channel's card still offers everyone all


# Facts a view does not hold; the guards reading them are in `bot.readmodel.UNKNOWN`.
NOT_IN_VIEW = {"report", "report_required", "bypass_allowed", "gate_open", "gate_reason",
               "gate_next", "previous_known", "merge_back_missing", "merge_back_checked",
               "known_issue_types", "observing_until"}


async def assert_view_facts_agree(h: Harness, rid: int) -> None:
    """The facts a view builds are the ones the transition reads, where the view has them."""
    deps = h.app[DEPS]
    async with deps.sessions() as session:
        stored = await load_facts(session, deps, await q.get_release(session, rid))
        view = await read_view(session, deps.policy, rid)
    assert view is not None and view.state.value == stored.state.value
    for f in fields(stored):
        if f.name not in NOT_IN_VIEW:
            assert getattr(view.facts, f.name) == getattr(stored, f.name), f.name


async def test_a_views_facts_are_the_transitions(db_url: str, policy: Policy) -> None:
    """Before and after sign-off, with the checklist partly ticked: the same facts."""
    async with running_app(db_url, policy) as h:
        rid = await to_signoff(h)
        await assert_view_facts_agree(h, rid)
        await h.says(OPS, f"check REL-{rid} 1")
        for approver in (DIRECTOR, LEAD):
            await h.click(approver, ActionId.APPROVE)
        await h.settle()
        assert await release_state(h, rid) == "approved"
        await assert_view_facts_agree(h, rid)
