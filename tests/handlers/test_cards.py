"""The release card, status texts and App Home, built from a ReleaseView without a database."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.plan import PlanField
from bot.readmodel import ReleaseView
from bot.workflow import Actor, State
from emulators.sample import sample_policy
from handlers.blocks import (
    MAX_BLOCKS,
    MAX_HEADER,
    MAX_TEXT,
    MAX_VALUE,
    ActionId,
    button_value,
    clip,
    escape,
    link,
    mention,
    parse_value,
    value_environment,
)
from handlers.cards import build_release_card, card_buttons, checklist_block
from handlers.home import awaited, awaiting, build_home
from handlers.status import close_summary, deploys_text, details_text, timeline_text
from storage.models import (
    Acceptance,
    Approval,
    AuditEntry,
    ChecklistTick,
    Deployment,
    Release,
    TestReport,
    TrackerCount,
    WorkItem,
)

TZ = sample_policy().tz
ROLES = ("tech_director", "test_lead")
HOSTILE = "<!channel> <@U123> <https://evil.example|x> & <!here> <!everyone>"
RAW_MARKUP = ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def make_release(state: State = State.READY_FOR_SIGNOFF, **fields: Any) -> Release:
    """A release of payments as the database would hold it."""
    values: dict[str, Any] = dict(
        id=42, project="payments", ref="v1.1.0", title="Faster checkout", type="standard",
        requester="U0DEV", state=state.value, revision=1,
        checklist=["Database backup taken", "Rollback plan reviewed"])
    return Release(**(values | fields))


def deployment(env: str, status: str = "success", *, rollback: bool = False, revision: int = 1,
               ref: str = "v1.1.0", **fields: Any) -> Deployment:
    """One deploy (or rollback) pipeline of release 42, over release 41's known version."""
    before = {"previous_ref": "release/REL-41", "previous_sha": "9e1d2b4" * 5} | fields
    return Deployment(release_id=42, revision=revision, project="payments", environment=env,
                      ref=ref, rollback=rollback, status=status, started_by="U0OPS",
                      started_at=T0, **before)


def approval(role: str, user: str, revision: int = 1) -> Approval:
    """A sign-off for one role."""
    return Approval(release_id=42, revision=revision, role=role, approver=user)


def report(a: int = 0, b: int = 0, c: int = 0, *, passes: bool = True,
           url: str = "https://ci.example/report/1") -> TestReport:
    """A test report with open-bug counts."""
    return TestReport(release_id=42, revision=1, url=url, bugs_a=a, bugs_b=b, bugs_c=c,
                      passes=passes, reporter="U0TESTER")


def make_view(state: State = State.READY_FOR_SIGNOFF, *, release: Release | None = None,
              approvals: Sequence[Approval] = (), test_report: TestReport | None = None,
              ticks: Sequence[int] = (), deployments: Sequence[Deployment] = (),
              environments: tuple[str, ...] = ("staging", "production"),
              required_roles: tuple[str, ...] = ROLES, work_items: Sequence[WorkItem] = (),
              audit: Sequence[AuditEntry] = (), acceptances: Sequence[Acceptance] = (),
              **fields: Any) -> ReleaseView:
    """A ReleaseView put together by hand."""
    rel = release or make_release(state, **fields)
    return ReleaseView(
        release=rel, required_roles=required_roles, approvals=list(approvals),
        report=test_report,
        ticks=[ChecklistTick(release_id=42, item=i, ticked_by="U0OPS") for i in ticks],
        deployments=list(deployments), environments=environments,
        work_items=list(work_items), audit=list(audit), acceptances=list(acceptances))


def verdict(env: str = "staging", passed: bool = True, note: str = "") -> Acceptance:
    """A tester's verdict on an environment before production."""
    return Acceptance(release_id=42, revision=1, environment=env, passed=passed,
                      tester="U0TESTER", note=note)


def walk(node: Any) -> Iterator[dict[str, Any]]:
    """Every dict inside a block structure."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def mrkdwn_texts(blocks: Any) -> list[str]:
    """Every mrkdwn text: the ones Slack parses for mentions and links."""
    return [d["text"] for d in walk(blocks) if d.get("type") == "mrkdwn"]


def all_texts(blocks: Any) -> list[str]:
    """Every text object's text, plain or mrkdwn."""
    return [d["text"] for d in walk(blocks) if d.get("type") in ("mrkdwn", "plain_text")]


def assert_no_raw_markup(texts: Sequence[str]) -> None:
    """No mention, broadcast or link from user text survives in Slack-parsed text."""
    for text in texts:
        for markup in RAW_MARKUP:
            assert markup not in text, (markup, text[:200])


def assert_within_limits(text: str, blocks: list[dict[str, Any]]) -> None:
    """Slack's limits: blocks per message, text per object, header, button label and value."""
    assert 0 < len(blocks) <= MAX_BLOCKS
    assert len(text) <= 40_000
    for t in all_texts(blocks):
        assert 0 < len(t) <= MAX_TEXT
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= MAX_HEADER
        if block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
    for d in walk(blocks):
        if d.get("type") == "button":
            assert len(d["text"]["text"]) <= 75 and len(d["value"]) <= MAX_VALUE
        if d.get("type") == "checkboxes":
            assert len(d["options"]) <= 10
            for option in d["options"]:
                assert len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150


def labels(view: ReleaseView) -> list[str]:
    """The button labels a card offers."""
    return [b["text"]["text"] for b in card_buttons(view)]


def card(view: ReleaseView) -> tuple[str, list[dict[str, Any]]]:
    """The card in the policy's timezone."""
    return build_release_card(view, TZ)


def block_text(blocks: list[dict[str, Any]], index: int) -> str:
    """The text of one section block."""
    return blocks[index]["text"]["text"]


# --- buttons, state by state ----------------------------------------------------------------------

REPORT = "Attach test report"
DEPLOY_STAGING, DEPLOY_PROD = "Deploy to staging", "Deploy to production"
BUTTONS: list[tuple[State, tuple[str, ...], list[str]]] = [
    # (state, environments done this revision, the buttons in order)
    (State.REQUESTED, (), [REPORT, "Start testing"]),
    (State.TESTING, (), [REPORT]),
    (State.READY_FOR_SIGNOFF, (), [REPORT, "Approve", "Reject"]),
    (State.APPROVED, (), [REPORT, DEPLOY_STAGING]),
    (State.SCHEDULED, (), [REPORT, DEPLOY_STAGING]),
    (State.DEPLOYING, (), ["Abandon"]),
    (State.DEPLOYED, ("staging",), ["Staging OK", "Staging failed", "Roll back"]),
    (State.ACCEPTANCE_FAILED, ("staging",), ["Roll back"]),
    (State.DEPLOYED, ("staging", "production"),
     ["Verification passed", "Verification failed", "Roll back"]),
    (State.VERIFICATION_FAILED, ("staging", "production"), ["Roll back"]),
    (State.VERIFIED, ("staging", "production"), ["Roll back", "Close"]),
    (State.OBSERVING, ("staging", "production"), ["Roll back", "Close"]),
    (State.CLOSED, ("staging", "production"), []),
    (State.REJECTED, (), ["Attach test report"]),  # back for rework
    (State.CANCELLED, (), []),
    (State.DEPLOY_FAILED, (), [DEPLOY_STAGING]),  # nothing on record to roll back to
    (State.DEPLOY_FAILED, ("staging",), [DEPLOY_PROD, "Roll back"]),
    (State.ROLLING_BACK, ("staging", "production"), ["Abandon"]),
    (State.ROLLED_BACK, ("staging", "production"), []),
]


def test_the_button_table_covers_every_state() -> None:
    """A new state must be added to the table below."""
    assert {state for state, _, _ in BUTTONS} == set(State)


@pytest.mark.parametrize(("state", "done", "expected"), BUTTONS,
                         ids=[f"{s.value}-{'+'.join(d) or 'none'}" for s, d, _ in BUTTONS])
def test_each_state_offers_exactly_its_buttons(state: State, done: tuple[str, ...],
                                               expected: list[str]) -> None:
    """The card carries the buttons the state allows, in a stable order."""
    view = make_view(state, deployments=[deployment(env) for env in done])
    assert labels(view) == expected
    _, blocks = card(view)
    actions = [b for b in blocks if b.get("block_id") == "card:42"]
    assert len(actions) == (1 if expected else 0)


def test_production_is_offered_once_staging_is_accepted() -> None:
    """A tester's pass on staging turns "Staging OK" into "Deploy to production"."""
    view = make_view(State.DEPLOYED, deployments=[deployment("staging")],
                     acceptances=[verdict()])
    assert labels(view) == [DEPLOY_PROD, "Roll back"]
    ok = by_label(make_view(State.DEPLOYED, deployments=[deployment("staging")]))["Staging OK"]
    assert ok["confirm"]["text"]["text"] == (
        "Pass REL-42 on staging, so that production may be deployed?")
    assert value_environment(ok["value"]) == "staging"


def test_a_scheduled_release_offers_arm_until_armed() -> None:
    """Arm is offered on a signed-off planned deploy, and gone once armed for this revision."""
    at = datetime(2026, 12, 24, 12, 0, tzinfo=UTC)
    assert labels(make_view(State.SCHEDULED, scheduled_at=at)) == [REPORT, "Arm", DEPLOY_STAGING]
    armed = make_view(State.SCHEDULED, scheduled_at=at, armed_by="U0OPS", armed_at=at,
                      armed_revision=1)
    assert labels(armed) == [REPORT, DEPLOY_STAGING]
    stale = make_view(State.SCHEDULED, scheduled_at=at, armed_by="U0OPS", armed_at=at,
                      armed_revision=1, revision=2)
    assert "Arm" in labels(stale)
    assert labels(make_view(State.READY_FOR_SIGNOFF, scheduled_at=at)) == [
        REPORT, "Approve", "Reject"]


def test_a_project_with_one_environment_deploys_to_production() -> None:
    """`web` has only production: Deploy goes there, then verification follows."""
    one = ("production",)
    assert labels(make_view(State.APPROVED, environments=one)) == [REPORT, DEPLOY_PROD]
    done = make_view(State.DEPLOYED, environments=one, deployments=[deployment("production")])
    assert labels(done) == ["Verification passed", "Verification failed", "Roll back"]


def test_deploys_of_an_older_revision_do_not_count() -> None:
    """A new ref starts the environments over."""
    view = make_view(State.DEPLOYED, revision=2, deployments=[deployment("staging", revision=1)])
    assert labels(view)[0] == DEPLOY_STAGING


def test_failed_and_rollback_pipelines_do_not_count_as_deployed() -> None:
    """Only a successful forward deploy moves the Deploy button on."""
    view = make_view(State.DEPLOY_FAILED, deployments=[
        deployment("staging", "failed"), deployment("staging", rollback=True)])
    assert labels(view) == [DEPLOY_STAGING, "Roll back"]


def test_buttons_carry_their_action_ids() -> None:
    """Each button is wired to the listener of its action."""
    view = make_view(State.READY_FOR_SIGNOFF)
    assert [b["action_id"] for b in card_buttons(view)] == [
        ActionId.REPORT, ActionId.APPROVE, ActionId.REJECT]
    live = make_view(State.DEPLOYED, deployments=[deployment("staging"), deployment("production")])
    assert [b["action_id"] for b in card_buttons(live)] == [
        ActionId.VERIFY_PASS, ActionId.VERIFY_FAIL, ActionId.ROLLBACK]


def by_label(view: ReleaseView) -> dict[str, dict[str, Any]]:
    """The card's buttons by label."""
    return {b["text"]["text"]: b for b in card_buttons(view)}


def test_approve_asks_for_confirmation() -> None:
    """Approve opens a native confirmation naming the release; Reject asks in a modal instead."""
    buttons = by_label(make_view(State.READY_FOR_SIGNOFF))
    dialog = buttons["Approve"]["confirm"]
    assert "REL-42" in dialog["text"]["text"]
    assert dialog["confirm"]["text"] == "Approve"
    assert "confirm" not in buttons["Reject"]
    assert buttons["Reject"]["style"] == "danger"


def test_roll_back_asks_for_confirmation_in_red() -> None:
    """Rolling back is dangerous: its dialog says so."""
    view = make_view(State.VERIFIED, deployments=[deployment("staging"), deployment("production")])
    button = by_label(view)["Roll back"]
    assert button["style"] == "danger"
    assert button["confirm"]["style"] == "danger"
    assert "REL-42" in button["confirm"]["text"]["text"]


def test_no_roll_back_button_when_the_newest_environment_ran_nothing_known() -> None:
    """Production replaced no known version: rollback is by hand, so no button offers it, even
    though staging could be redeployed."""
    deployments = [deployment("staging"),
                   deployment("production", previous_ref=None, previous_sha=None)]
    view = make_view(State.VERIFICATION_FAILED, deployments=deployments)
    assert "Roll back" not in labels(view)


def test_deploy_confirms_the_environment() -> None:
    """The Deploy dialog names the environment it starts."""
    button = by_label(make_view(State.APPROVED))[DEPLOY_STAGING]
    assert "staging" in button["confirm"]["text"]["text"]


@pytest.mark.parametrize(("rid", "revision"), [(42, 1), (999_999_999, 123_456)])
@pytest.mark.parametrize("state", list(State))
def test_button_values_are_short_ids_that_round_trip(rid: int, revision: int,
                                                     state: State) -> None:
    """Every value is `id:revision:state` (a verdict adds its environment), at most 255
    characters, and parses back."""
    view = make_view(state, id=rid, revision=revision, title=HOSTILE * 100,
                     deployments=[deployment("staging", revision=revision)])
    for b in card_buttons(view):
        env = value_environment(b["value"])
        assert b["value"] == button_value(view, env)
        assert b["value"] == f"{rid}:{revision}:{state.value}" + (f":{env}" if env else "")
        assert env is None or b["action_id"] in (ActionId.VERIFY_PASS, ActionId.VERIFY_FAIL)
        assert len(b["value"]) <= MAX_VALUE
        assert parse_value(b["value"]) == (rid, revision, state.value)


@pytest.mark.parametrize(("value", "parsed"), [
    ("42", (42, None, None)),
    ("42:3", (42, 3, None)),
    ("42:x:approved", (42, None, "approved")),
])
def test_parse_value_tolerates_short_values(value: str, parsed: tuple[Any, ...]) -> None:
    """Older cards carried less; a value still yields its release id."""
    assert parse_value(value) == parsed


@pytest.mark.parametrize("value", ["", "REL-42:1:approved", "x", ":1:approved"])
def test_parse_value_refuses_values_without_an_id(value: str) -> None:
    """A value that doesn't start with a release id is a ValueError."""
    with pytest.raises(ValueError, match="bad button value"):
        parse_value(value)


# --- size limits ----------------------------------------------------------------------------------

def long_view(state: State) -> ReleaseView:
    """Every free-text field at 4,000 characters, the longest the database stores."""
    long = ("word & <b> " * 400)[:4000]
    return make_view(
        state, title=long, ref="r" * 255, version_label="v" * 100, planned_window="w" * 200,
        plan={f.value: long for f in PlanField}, hold_reason=long,
        gate_override_by="U0CTO", gate_override_reason=long, verification_note=long,
        risk_accepted_by="U0CTO", risk_reason=long, type="t" * 20,
        checklist=[long[:500]] * 30, ticks=range(1, 31),
        approvals=[approval(r, "U" + "9" * 31) for r in ROLES],
        required_roles=tuple(f"role_{i}_" + "x" * 50 for i in range(60)) + ROLES,
        test_report=report(99999, 99999, 99999, passes=False, url="https://x/" + "y" * 1990),
        deployments=[deployment("staging"), deployment("production", "running", ref="r" * 255,
                                                         pipeline_url="https://ci/" + "p" * 1900)],
        environments=tuple(f"env{i}-" + "e" * 57 for i in range(40)),
    )


@pytest.mark.parametrize("state", list(State))
def test_long_text_stays_within_slack_limits(state: State) -> None:
    """4,000-character titles, plans and reasons still make a card Slack accepts."""
    text, blocks = card(long_view(state))
    assert_within_limits(text, blocks)


def test_a_long_title_is_clipped_in_the_header_with_an_ellipsis() -> None:
    """The header shows as much of the title as fits, and says it was cut."""
    _, blocks = card(make_view(title="T" * 4000))
    header = blocks[0]["text"]["text"]
    assert len(header) == MAX_HEADER
    assert header.startswith("REL-42 · payments — TTT") and header.endswith("…")


# --- escaping -------------------------------------------------------------------------------------

def hostile_view(state: State) -> ReleaseView:
    """Every field a person can type holds mentions, broadcasts, links and ampersands."""
    return make_view(
        state, title=HOSTILE, ref=HOSTILE, project=HOSTILE, version_label=HOSTILE,
        planned_window=HOSTILE, plan={f.value: HOSTILE for f in PlanField},
        hold_reason=HOSTILE, gate_override_by="U0CTO", gate_override_reason=HOSTILE,
        verification_note=HOSTILE, risk_accepted_by=HOSTILE, risk_reason=HOSTILE, type=HOSTILE,
        requester=HOSTILE, checklist=[HOSTILE, HOSTILE],
        approvals=[approval("tech_director", HOSTILE)], required_roles=(*ROLES, HOSTILE),
        test_report=report(1, passes=False, url=HOSTILE),
        deployments=[deployment(HOSTILE, ref=HOSTILE), deployment(HOSTILE, "running", ref=HOSTILE)],
        environments=(HOSTILE, "production"),
        work_items=[WorkItem(release_id=42, kind="link", reference=HOSTILE)],
        audit=[AuditEntry(release_id=42, actor=HOSTILE, action=HOSTILE, from_state="testing",
                          to_state="ready_for_signoff", at=T0)],
    )


@pytest.mark.parametrize("state", list(State))
def test_user_text_cannot_mention_or_link_from_the_card(state: State) -> None:
    """Titles, refs, reasons and names reach Slack escaped, in every state."""
    text, blocks = card(hostile_view(state))
    assert_no_raw_markup([text, *mrkdwn_texts(blocks)])


def test_escaped_user_text_is_still_shown() -> None:
    """Escaping keeps the words visible: `<`, `>` and `&` become entities, nothing is dropped."""
    view = hostile_view(State.SCHEDULED)
    text, blocks = card(view)
    shown = escape(HOSTILE)
    assert shown in text
    assert f"`{shown}`" in block_text(blocks, 1)
    assert f"Held: {shown}" in blocks[3]["elements"][0]["text"]


def test_the_header_is_plain_text_shown_as_typed() -> None:
    """The header is plain_text, which Slack never parses: the title appears literally."""
    _, blocks = card(make_view(title=HOSTILE))
    assert blocks[0]["text"] == {"type": "plain_text", "text": f"REL-42 · payments — {HOSTILE}"}


def test_status_texts_escape_user_text() -> None:
    """`/release status` details, deploys and timeline escape what people typed."""
    view = hostile_view(State.DEPLOYED)
    texts = [details_text(view), deploys_text(view, TZ), timeline_text(view, TZ)]
    assert_no_raw_markup(texts)
    assert all(escape(HOSTILE) in t for t in texts)


def test_home_escapes_user_text() -> None:
    """App Home reuses the card, escaped the same way."""
    views = [hostile_view(state) for state in State]
    home = build_home(views[:3], views[3:6], views, TZ)
    assert_no_raw_markup(mrkdwn_texts(home["blocks"]))


@pytest.mark.parametrize(("user", "shown"), [
    ("U0DEV", "<@U0DEV>"),
    ("W0ENTERPRISE", "<@W0ENTERPRISE>"),
    ("releasebot", "ReleaseBot"),
    ("S0GROUP", "S0GROUP"),
    ("C0CHANNEL", "C0CHANNEL"),
    ("", ""),
    ("<!channel>", "&lt;!channel&gt;"),
    ("U123>", "U123&gt;"),
    ("U123|boss", "U123|boss"),
    ("U1 <!here>", "U1 &lt;!here&gt;"),
    ("!channel", "!channel"),
])
def test_mention_only_mentions_user_ids(user: str, shown: str) -> None:
    """Only `U…`/`W…` ids become mentions; anything else is escaped text."""
    assert mention(user) == shown


def test_escape_and_clip() -> None:
    """`&`, `<` and `>` become entities; clip cuts with an ellipsis only when needed."""
    assert escape("a & <b> c") == "a &amp; &lt;b&gt; c"
    assert clip("abc", 3) == "abc"
    assert clip("abcd", 3) == "ab…"


# --- what the card shows --------------------------------------------------------------------------

def progress(view: ReleaseView) -> list[str]:
    """The card's progress lines: report, sign-off, checklist, deploys."""
    return block_text(card(view)[1], 2).split("\n")


def test_signoff_shows_each_required_role() -> None:
    """Approved roles show who signed; the others wait."""
    view = make_view(approvals=[approval("tech_director", "U0DIRECTOR")])
    assert progress(view)[1] == "*Sign-off* ✅ tech_director <@U0DIRECTOR>   ⏳ test_lead"
    assert progress(make_view(required_roles=()))[1] == "*Sign-off* none required"


def test_report_shows_counts_and_the_standard() -> None:
    """The report line links it, names the tester, counts bugs and says if it meets the bar."""
    assert progress(make_view())[0] == "*Test report* — none yet"
    good = progress(make_view(test_report=report(0, 0, 3)))[0]
    assert good == ("*Test report* <https://ci.example/report/1|link> by <@U0TESTER>: "
                    "A 0 · B 0 · C 3 — meets the go-live standard")
    bad = progress(make_view(test_report=report(0, 1, 3, passes=False)))[0]
    assert bad.endswith("A 0 · B 1 · C 3 — does not meet the standard")
    accepted = progress(make_view(test_report=report(2, passes=False), risk_accepted_by="U0CTO"))
    assert accepted[0].endswith("does not meet the standard; risk accepted by <@U0CTO>")


def test_checklist_progress() -> None:
    """How many items are ticked, ignoring numbers past the end of the list."""
    assert progress(make_view(ticks=[1]))[2] == "*Checklist* 1/2 ticked"
    assert progress(make_view(ticks=[1, 2, 9]))[2] == "*Checklist* 2/2 ticked"
    assert progress(make_view(checklist=[]))[2] == "*Checklist* none for this project"


def test_deploy_progress_per_environment() -> None:
    """Each environment in order, ticked when this revision reached it."""
    assert progress(make_view(State.APPROVED))[3] == "*Deploys* ▫️ staging  →  ▫️ production"
    view = make_view(State.DEPLOYED, deployments=[deployment("staging")])
    assert progress(view)[3] == "*Deploys* 📦 staging (awaiting acceptance)  →  ▫️ production"
    accepted = make_view(State.DEPLOYED, deployments=[deployment("staging")],
                         acceptances=[verdict()])
    assert progress(accepted)[3] == (
        "*Deploys* ✅ staging (accepted by <@U0TESTER>)  →  ▫️ production")
    failed = make_view(State.ACCEPTANCE_FAILED, deployments=[deployment("staging")],
                       acceptances=[verdict(passed=False, note="totals off <!here>")])
    assert progress(failed)[3] == (
        "*Deploys* 🚧 staging (failed acceptance by <@U0TESTER>)  →  ▫️ production")
    _, blocks = card(failed)
    assert blocks[3]["elements"][0]["text"] == (
        "🚧 Failed acceptance on staging: totals off &lt;!here&gt;. A new ref "
        "(`/release ref REL-42 &lt;ref&gt;`) restarts testing; or cancel it.")


def test_summary_shows_state_people_and_timing() -> None:
    """State label, type, requester, project, ref and the scheduled time in the policy's zone."""
    view = make_view(State.SCHEDULED, scheduled_at=datetime(2026, 12, 24, 12, 0, tzinfo=UTC))
    lines = block_text(card(view)[1], 1).split("\n")
    assert lines[0] == ("🗓️ *Scheduled*   ·   standard release   ·   requested by <@U0DEV>")
    assert lines[1] == "*Project* payments   *Ref* `v1.1.0`"
    assert lines[2] == ("*Deploys at* 2026-12-24 20:00 CST   ·   not armed: deploys only after "
                        "the release manager arms it")
    armed = make_view(State.SCHEDULED, scheduled_at=datetime(2026, 12, 24, 12, 0, tzinfo=UTC),
                      armed_by="U0OPS", armed_at=datetime(2026, 12, 23, 2, 5, tzinfo=UTC),
                      armed_revision=1)
    assert block_text(card(armed)[1], 1).split("\n")[2] == (
        "*Deploys at* 2026-12-24 20:00 CST   ·   armed by <@U0OPS> at 2026-12-23 10:05 CST")


def test_summary_shows_a_running_pipeline() -> None:
    """While a deploy runs, the card links its pipeline."""
    view = make_view(State.DEPLOYING, deployments=[
        deployment("staging", "running", pipeline_url="https://ci.example/p/7")])
    assert block_text(card(view)[1], 1).endswith(
        "Deploying `v1.1.0` to staging: <https://ci.example/p/7|pipeline>")


def test_fallback_text_names_the_release_and_state() -> None:
    """Notifications read `REL-42 title: state`."""
    text, _ = card(make_view(State.READY_FOR_SIGNOFF))
    assert text == "REL-42 Faster checkout: ready for sign-off"


# --- the checklist --------------------------------------------------------------------------------

CHECKLIST_STATES = {State.REQUESTED, State.TESTING, State.READY_FOR_SIGNOFF, State.APPROVED,
                    State.SCHEDULED, State.DEPLOY_FAILED}


@pytest.mark.parametrize("state", list(State))
def test_the_checklist_appears_only_before_deploy(state: State) -> None:
    """Checkboxes are offered until the release goes out (and again after a failed deploy)."""
    _, blocks = card(make_view(state))
    shown = [b for b in blocks if b.get("block_id") == "checklist:42"]
    assert len(shown) == (1 if state in CHECKLIST_STATES else 0)


def test_no_checklist_block_without_a_checklist() -> None:
    """A project without a checklist shows no checkboxes."""
    _, blocks = card(make_view(State.APPROVED, checklist=[]))
    assert all(b.get("block_id") != "checklist:42" for b in blocks)


def test_the_checklist_pre_selects_ticked_items() -> None:
    """Ticked items are checked; the values say which release and item."""
    element = checklist_block(make_view(ticks=[2]))["elements"][0]
    assert element["action_id"] == ActionId.CHECKLIST
    assert [o["text"]["text"] for o in element["options"]] == [
        "1. Database backup taken", "2. Rollback plan reviewed"]
    assert [o["value"] for o in element["options"]] == ["42:1", "42:2"]
    assert element["initial_options"] == [element["options"][1]]
    assert "initial_options" not in checklist_block(make_view())["elements"][0]


def test_long_checklist_items_fit_slack_option_limits() -> None:
    """Slack refuses a checkbox option longer than 75 characters or more than 10 options."""
    element = checklist_block(make_view(checklist=["x" * 500] * 12))["elements"][0]
    assert len(element["options"]) == 10
    assert all(len(o["text"]["text"]) <= 75 for o in element["options"])


# --- App Home -------------------------------------------------------------------------------------

def test_home_shows_three_sections_and_empty_states() -> None:
    """Nothing pending, nothing mine, nothing in flight: each section says so."""
    home = build_home([], [], [], TZ)
    texts = all_texts(home["blocks"])
    assert home["type"] == "home"
    for line in ("*Waiting for you*", "*Your releases*", "*Releases in flight*",
                 "Nothing waits for you.", "You have no releases in flight.",
                 "No releases in flight."):
        assert line in texts


def test_home_stays_under_slack_limits_with_many_releases() -> None:
    """Many long releases still make a Home view of at most 100 blocks."""
    views = [long_view(State.SCHEDULED) for _ in range(30)]
    home = build_home(views, views, views, TZ)
    assert len(home["blocks"]) <= 100
    assert all(0 < len(t) <= MAX_TEXT for t in all_texts(home["blocks"]))
    assert all(b["type"] != "header" for b in home["blocks"][1:])


@pytest.mark.parametrize(("actor", "view", "expected"), [
    (Actor("U0TESTLEAD", frozenset({"test_lead"})), make_view(), True),
    (Actor("U0TESTLEAD", frozenset({"test_lead"})), make_view(State.TESTING), False),
    (Actor("U0TESTLEAD", frozenset({"test_lead"})),
     make_view(approvals=[approval("test_lead", "U0OTHER")]), False),
    (Actor("U0DEV", frozenset({"test_lead"})), make_view(), False),
    (Actor("U0DIRECTOR", frozenset({"tech_director", "test_lead"})),
     make_view(approvals=[approval("tech_director", "U0DIRECTOR")]), False),
    (Actor("U0TESTER", frozenset({"tester"})), make_view(), False),
])
def test_awaiting_is_only_for_a_missing_approver(actor: Actor, view: ReleaseView,
                                                 expected: bool) -> None:
    """Home lists a release as pending only for someone whose sign-off it still needs."""
    assert awaiting(view, actor) is expected


# --- links from stored URLs ---------------------------------------------------------------------

@pytest.mark.parametrize(("url", "shown"), [
    ("https://qa/r|APPROVED-BY-CTO", "<https://qa/r%7CAPPROVED-BY-CTO|link>"),
    ("https://qa/r>x<y", "<https://qa/r%3Ex%3Cy|link>"),
    ("https://qa/a b", "<https://qa/a%20b|link>"),
    ("https://qa/r?a=1&b=2", "<https://qa/r?a=1&amp;b=2|link>"),
    ("qa/r|<!here>", "`qa/r|&lt;!here&gt;`"),
])
def test_report_link_cannot_set_its_label(url: str, shown: str) -> None:
    """A `|`, `<`, `>` or space in a report URL is encoded: nobody picks the link's label."""
    line = progress(make_view(test_report=report(url=url)))[0]
    assert line.startswith(f"*Test report* {shown} by <@U0TESTER>")


@pytest.mark.parametrize("url", ["https://ci/p|APPROVED", "https://ci/p>x", "https://ci/p q"])
def test_every_stored_url_goes_through_the_link_helper(url: str) -> None:
    """Pipeline, tracker and report links on the card, status and close summary: one helper."""
    expected = link(url, "x").removesuffix("|x>")
    assert "|" not in expected.removeprefix("<") and " " not in expected
    view = make_view(State.DEPLOYING, test_report=report(url=url),
                     deployments=[deployment("staging", "running", pipeline_url=url,
                                             pipeline_id=7)])
    view = replace(view, bug_count=TrackerCount(
        release_id=42, revision=1, moment="report", source="GitLab issues", url=url,
        scope="milestone", read_at=T0))
    texts = [*mrkdwn_texts(card(view)[1]), deploys_text(view, TZ), close_summary(view, TZ, {})]
    joined = "\n".join(texts)
    assert joined.count(expected + "|") >= 4
    assert url not in joined


@pytest.mark.parametrize(("state", "deploys", "line"), [
    (State.DEPLOYING, [deployment("staging"), deployment("production", "running")],
     "*Deploys* ✅ staging  →  ⏳ production (deploying)"),
    (State.DEPLOY_FAILED, [deployment("staging"), deployment("production", "failed")],
     "*Deploys* ✅ staging  →  ❌ production (failed)"),
    (State.ROLLING_BACK, [deployment("staging"), deployment("production"),
                          deployment("production", "running", rollback=True)],
     "*Deploys* ✅ staging  →  ⏪ production (rolling back)"),
    (State.ROLLED_BACK, [deployment("staging"), deployment("production"),
                         deployment("production", rollback=True)],
     "*Deploys* ✅ staging  →  ↩️ production (rolled back)"),
    (State.ROLLED_BACK, [deployment("staging"), deployment("production"),
                         deployment("production", "failed", rollback=True)],
     "*Deploys* ✅ staging  →  🔥 production (rollback failed)"),
])
def test_a_single_release_shows_failures_and_rollbacks_as_a_train_does(
        state: State, deploys: list[Deployment], line: str) -> None:
    """A failed deploy is ❌, not ▫️ waiting; a rolled-back production is ↩️, not ✅."""
    view = make_view(state, deployments=deploys, acceptances=[verdict()])
    assert progress(view)[3] == line.replace("✅ staging", "✅ staging (accepted by <@U0TESTER>)")


def test_every_home_entry_names_its_release() -> None:
    """Each section's entry starts `REL-42 · payments — Title`, the ID linked to its card."""
    url = "https://example.slack.com/archives/C0/p1|x"
    view = make_view()
    home = build_home([view], [view], [view], TZ, {42: url})
    firsts = [t for t in mrkdwn_texts(home["blocks"]) if "REL-42" in t and "?" not in t]
    assert len(firsts) == 3
    assert all(t.startswith(f"*{link(url, 'REL-42')}* · payments — Faster checkout\n✍️ ")
               for t in firsts)
    plain = build_home([view], [], [], TZ)
    assert any(t.startswith("*REL-42* · payments — Faster checkout\n")
               for t in mrkdwn_texts(plain["blocks"]))
    assert_no_raw_markup(mrkdwn_texts(build_home([hostile_view(State.TESTING)], [], [], TZ)))


# --- the type confirmed at review; the executive's decision ------------------------------------

def test_the_card_says_who_confirmed_the_type_and_plan_ok_asks_to_confirm_it() -> None:
    """Unconfirmed: whose review it waits for; confirmed: by whom; Plan OK names the type."""
    rel = make_release(State.TESTING, type="emergency", plan={"impact": "payouts"})
    waiting = replace(make_view(release=rel), plan_reviewer="tech_director")
    text = build_release_card(waiting, TZ)[1][1]["text"]["text"]
    assert "emergency release — type not confirmed yet (tech_director at plan review)" in text
    plan_ok = next(b for b in card_buttons(waiting) if b["action_id"] == ActionId.PLAN_OK)
    assert plan_ok["confirm"]["text"]["text"].startswith(
        "Approve REL-42's go-live plan and confirm it as an emergency release?")
    rel.plan_review, rel.type_confirmed_by, rel.type_confirmed_as = "ok", "U0DIRECTOR", "emergency"
    text = build_release_card(waiting, TZ)[1][1]["text"]["text"]
    assert "emergency release — confirmed by <@U0DIRECTOR> at review" in text
    rel.type = "standard"  # a confirmation counts for the type it confirmed only
    assert "standard release — type not confirmed yet" in build_release_card(
        waiting, TZ)[1][1]["text"]["text"]


def test_fix_and_accept_are_drawn_only_while_the_decision_is_awaited() -> None:
    """An emergency that failed verification: the buttons; decided, or another type: none."""
    rel = make_release(State.VERIFICATION_FAILED, type="emergency")
    failed = replace(make_view(release=rel), executive_decides=True)
    ids = [b["action_id"] for b in card_buttons(failed)]
    assert ActionId.DECIDE_FIX in ids and ActionId.DECIDE_ACCEPT in ids
    assert ActionId.DECIDE_FIX not in [b["action_id"] for b in card_buttons(
        replace(failed, executive_decides=False))]
    rel.decision, rel.decided_by, rel.decision_reason, rel.decided_revision = (
        "accept", "U0CTO", "Cosmetic", rel.revision)
    assert ActionId.DECIDE_FIX not in [b["action_id"] for b in card_buttons(failed)]
    text = build_release_card(failed, TZ)[1][2]["text"]["text"]
    assert ("*Executive's decision* <@U0CTO>: it stays live with them as known issues — "
            "Cosmetic") in text


REVIEWER = Actor("U0DIRECTOR", frozenset({"tech_director"}))
EXEC = Actor("U0CTO", frozenset({"executive"}))
PLAN = {"impact": "Payouts", "rollback_steps": "Redeploy"}


def reviewed_by_director(state: State = State.READY_FOR_SIGNOFF, **fields: Any) -> ReleaseView:
    """A view whose plan is complete and reviewed by the tech director."""
    return replace(make_view(state, plan=fields.pop("plan", PLAN), **fields),
                   plan_reviewer="tech_director", plan_required=("impact",))


@pytest.mark.parametrize(("actor", "view", "line"), [
    (REVIEWER, reviewed_by_director(), "🗒 Waits for your review of its go-live plan"),
    (REVIEWER, reviewed_by_director(State.TESTING), "🗒 Waits for your review"),
    (REVIEWER, reviewed_by_director(plan={}), "✍️ Waits for your sign-off as tech_director."),
    (REVIEWER, reviewed_by_director(plan_review="changes"), "✍️ Waits for your sign-off"),
    (REVIEWER, reviewed_by_director(plan_review="ok"), "✍️ Waits for your sign-off"),
    (REVIEWER, reviewed_by_director(State.DEPLOYED), None),
    (Actor("U0DEV", frozenset({"tech_director"})), reviewed_by_director(State.TESTING), None),
    (EXEC, replace(make_view(State.VERIFICATION_FAILED), executive_decides=True),
     "🧭 Failed its online verification: waits for your decision"),
    (EXEC, replace(make_view(State.VERIFICATION_FAILED, decision="fix", decided_revision=1),
                   executive_decides=True), None),
    (EXEC, make_view(State.VERIFICATION_FAILED), None),
    (REVIEWER, replace(make_view(State.VERIFICATION_FAILED), executive_decides=True), None),
    (Actor("U0DEV", frozenset({"executive"})),
     replace(make_view(State.VERIFICATION_FAILED), executive_decides=True), None),
])
def test_home_says_what_waits_for_the_reader(actor: Actor, view: ReleaseView,
                                             line: str | None) -> None:
    """A plan review (before sign-off), an executive's decision, a sign-off; none for the
    requester, a plan still incomplete or in rework, or a decision taken."""
    said = awaited(view, actor)
    assert (said is None) if line is None else (said or "").startswith(line)
    assert awaiting(view, actor) is (line is not None)


def test_home_puts_the_awaited_line_under_the_pending_release_only() -> None:
    """The line shows in 'Waiting for you', not where the same release is listed again."""
    view = make_view()
    home = build_home([view], [view], [view], TZ, waits={42: "✍️ Waits for you."})
    assert all_texts(home["blocks"]).count("✍️ Waits for you.") == 1
