"""The line that replaces a sign-off DM's buttons once its ask is over: which one, and when."""

from __future__ import annotations

import pytest

from bot.workflow import Actor, State
from emulators.sample import DIRECTOR, LEAD, SUPPORT
from handlers.asks import ask_over, ask_over_line
from tests.handlers.test_cards import approval, make_view

LEAD_ROLE = Actor(LEAD, frozenset({"test_lead", "tester"}))
DIRECTOR_ROLE = Actor(DIRECTOR, frozenset({"tech_director"}))
SECOND_LEAD = Actor(SUPPORT, frozenset({"test_lead"}))
BOTH = [approval("tech_director", DIRECTOR), approval("test_lead", LEAD)]


@pytest.mark.parametrize(("view", "revision", "actor", "said"), [
    (make_view(), 1, LEAD_ROLE, None),
    (make_view(approvals=BOTH[:1]), 1, LEAD_ROLE, None),
    (make_view(approvals=BOTH[1:]), 1, SECOND_LEAD, "<@U0TESTLEAD> signed as test_lead."),
    (make_view(approvals=BOTH[1:]), 1, LEAD_ROLE, "you signed as test_lead."),
    (make_view(), 1, Actor(SUPPORT, frozenset({"operations"})), "it no longer needs you."),
    (make_view(State.APPROVED, approvals=BOTH), 1, LEAD_ROLE,
     "approved by <@U0DIRECTOR> and you."),
    (make_view(State.DEPLOYED, approvals=BOTH), 1, SECOND_LEAD,
     "approved by <@U0DIRECTOR> and <@U0TESTLEAD>."),
    (make_view(State.REJECTED, rejected_by=DIRECTOR), 1, LEAD_ROLE,
     "it was rejected by <@U0DIRECTOR>."),
    (make_view(State.REJECTED, rejected_by=LEAD), 1, LEAD_ROLE, "you rejected it."),
    (make_view(State.REJECTED), 1, LEAD_ROLE, "it was rejected."),
    (make_view(State.CANCELLED, revision=2), 1, LEAD_ROLE, "it was cancelled."),
    (make_view(State.TESTING, revision=2), 1, LEAD_ROLE,
     "it went back to testing for a new revision."),
    (make_view(revision=2), 1, LEAD_ROLE, "a new revision needs signing instead."),
    (make_view(State.APPROVED, revision=2), 1, LEAD_ROLE, "it has a new revision, approved now."),
    (make_view(State.SCHEDULED), 1, LEAD_ROLE, "it is scheduled now."),
])
def test_what_ended_the_ask(view: object, revision: int, actor: Actor, said: str | None) -> None:
    """Cancelled, rejected, a new revision, signed, or nothing yet: each says so in a line."""
    assert ask_over(view, revision, actor) == said  # type: ignore[arg-type]


def test_the_line_links_the_card_and_escapes_role_names() -> None:
    """REL-42 links its card; a role name with mrkdwn in it stays plain text."""
    view = make_view(approvals=[approval("<b>&lead", LEAD)], required_roles=("<b>&lead",))
    reason = ask_over(view, 1, Actor(SUPPORT, frozenset({"<b>&lead"})))
    assert reason == "<@U0TESTLEAD> signed as &lt;b&gt;&amp;lead."
    line = ask_over_line(view, reason, "https://slack.example/archives/C0RELEASES/p1")
    assert line == ("<https://slack.example/archives/C0RELEASES/p1|REL-42> no longer needs your "
                    "sign-off: <@U0TESTLEAD> signed as &lt;b&gt;&amp;lead.")
    assert ask_over_line(view, "it was cancelled.", None).startswith("REL-42 no longer")
