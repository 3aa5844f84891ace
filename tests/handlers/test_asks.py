"""The line that replaces a DM's buttons (a sign-off ask, a prompt) once it is over."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.readmodel import ReleaseView
from bot.workflow import Actor, State
from emulators.sample import CTO, DIRECTOR, LEAD, OPS, SUPPORT, TESTER
from handlers.asks import ask_over, ask_over_line, prompt_over, prompt_stands, settled_line
from tests.handlers.test_cards import approval, deployment, make_view, verdict

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
    (make_view(revision=2, required_roles=("tech_director",)), 1, LEAD_ROLE,
     "it is now a standard release, which you don't sign."),
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


# --- prompts: the DMs some notices send with buttons ---------------------------------------

BOTH_ENVS = [deployment("staging"), deployment("production")]
VERIFIED_BY = {"verify pass": TESTER, "verify fail": TESTER}
LATER = datetime(2026, 12, 7, 20, tzinfo=UTC)


def decided(state: State, **fields: object) -> ReleaseView:
    """An emergency-like view whose type has the executive decide after a failed verification."""
    return replace(make_view(state, deployments=BOTH_ENVS, **fields), executive_decides=True)


@pytest.mark.parametrize(("kind", "view", "env", "reader", "said"), [
    ("verify_now", make_view(State.DEPLOYED, deployments=BOTH_ENVS), None, LEAD, None),
    ("verify_now", make_view(State.OBSERVING, deployments=BOTH_ENVS), None, TESTER,
     "you verified it in production."),
    ("verify_now", make_view(State.VERIFIED, deployments=BOTH_ENVS), None, LEAD,
     "<@U0TESTER> verified it in production."),
    ("verify_now", make_view(State.VERIFICATION_FAILED, deployments=BOTH_ENVS), None, LEAD,
     "<@U0TESTER> found it failing in production."),
    ("verify_now", make_view(State.ROLLING_BACK), None, LEAD, "it is being rolled back."),
    ("verify_now", make_view(State.ROLLED_BACK), None, LEAD, "it was rolled back."),
    ("verify_now", make_view(State.TESTING, revision=2), None, LEAD,
     "it went back to testing for a new revision."),
    ("accept", make_view(State.DEPLOYED, deployments=BOTH_ENVS[:1]), "staging", LEAD, None),
    ("accept", make_view(State.DEPLOYED, deployments=BOTH_ENVS[:1], acceptances=[verdict()]),
     "staging", TESTER, "you accepted it on staging."),
    ("accept", make_view(State.ACCEPTANCE_FAILED, deployments=BOTH_ENVS[:1],
                         acceptances=[verdict(passed=False)]), "staging", LEAD,
     "<@U0TESTER> failed it on staging."),
    ("accept", make_view(State.CANCELLED, deployments=BOTH_ENVS[:1]), "staging", LEAD,
     "it was cancelled."),
    ("arm", make_view(State.SCHEDULED, scheduled_at=LATER), None, OPS, None),
    ("arm", make_view(State.SCHEDULED, scheduled_at=LATER, armed_by=OPS, armed_revision=1),
     None, OPS, "you armed it."),
    ("arm", make_view(State.DEPLOYING, scheduled_at=LATER, armed_by=OPS, armed_revision=1),
     None, "U0OPS2", f"<@{OPS}> armed it."),
    ("arm", make_view(State.SCHEDULED, scheduled_at=LATER, revision=2, armed_by=OPS,
                      armed_revision=2), None, OPS, "it has a new revision, scheduled now."),
    ("decide", decided(State.VERIFICATION_FAILED), None, CTO, None),
    ("decide", decided(State.VERIFICATION_FAILED, decision="fix", decided_by=CTO,
                       decided_revision=1), None, CTO, "you decided its problems get fixed."),
    ("decide", decided(State.TESTING, revision=2, decision="fix", decided_by=CTO,
                       decided_revision=1), None, "U0CEO",
     f"<@{CTO}> decided its problems get fixed."),
    ("decide", decided(State.OBSERVING, decision="accept", decided_by=CTO,
                       decided_revision=1), None, CTO,
     "you decided it stays live with its problems as known issues."),
    ("decide", decided(State.ROLLING_BACK), None, CTO, "it is being rolled back."),
    ("stuck", make_view(State.DEPLOYING, deployments=[BOTH_ENVS[0], deployment(
        "production", "running")]), "production", OPS, None),
    ("stuck", make_view(State.DEPLOYING, deployments=[BOTH_ENVS[0], deployment(
        "production", "running")]), "staging", OPS, "it is deploying now."),
    ("stuck", make_view(State.DEPLOY_FAILED), "production", OPS, "you abandoned its pipeline."),
    ("stuck", make_view(State.DEPLOYED, deployments=BOTH_ENVS), "production", OPS,
     "it is deployed now."),
])
def test_what_ended_the_prompt(kind: str, view: ReleaseView, env: str | None, reader: str,
                               said: str | None) -> None:
    """Done by the reader ('you'), by someone else (named), or the release went elsewhere."""
    doers = {**VERIFIED_BY, "abandon": OPS}
    assert prompt_over(view, kind, 1, env, reader, doers) == said
    assert prompt_stands(view, kind, 1, env) is (said is None)


def test_an_abandon_nobody_did_is_not_claimed() -> None:
    """A deploy that failed on its own: the line says where it is, and names nobody."""
    view = make_view(State.DEPLOY_FAILED)
    assert prompt_over(view, "stuck", 1, "production", OPS, {}) == "its deploy failed."


@pytest.mark.parametrize(("kind", "env", "line"), [
    ("verify_now", None, "REL-42 no longer needs your verification: it was rolled back."),
    ("accept", "pre<prod>", "REL-42 no longer needs your acceptance on pre&lt;prod&gt;: "
                            "it was rolled back."),
    ("arm", None, "REL-42 no longer needs arming: it was rolled back."),
    ("decide", None, "REL-42 no longer needs your decision: it was rolled back."),
    ("stuck", "production", "REL-42 is no longer stuck in production: it was rolled back."),
    ("signoff", None, "REL-42 no longer needs your sign-off: it was rolled back."),
])
def test_each_kind_has_its_headline(kind: str, env: str | None, line: str) -> None:
    """One line per kind, the environment escaped; the card linked when its link is known."""
    view = make_view(State.ROLLED_BACK)
    assert settled_line(view, kind, env, "it was rolled back.", None) == line
    linked = settled_line(view, kind, env, "it was rolled back.", "https://s.example/p1")
    assert linked == line.replace("REL-42", "<https://s.example/p1|REL-42>", 1)
