"""Random input against the parsers and builders: they answer or refuse, and never break Slack."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.releases import NewRelease
from bot.workflow import State
from emulators.sample import sample_policy
from handlers.blocks import escape
from handlers.cards import build_release_card
from handlers.commands import SUBCOMMANDS
from handlers.modals import parse_report_view, parse_request_view
from handlers.parse import (
    Parsed,
    UsageError,
    parse_bug_counts,
    parse_command,
    parse_items,
    parse_verdict,
)
from handlers.render import RENDERERS, event_text
from handlers.status import deploys_text, details_text, timeline_text
from storage.models import AuditEntry, WorkItem
from tests.handlers.test_cards import (
    approval,
    assert_no_raw_markup,
    assert_within_limits,
    deployment,
    make_view,
    mrkdwn_texts,
    report,
)

POLICY = sample_policy()
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)
FUZZ = settings(max_examples=300, deadline=None)

# Pieces people (and attackers) type, mixed into otherwise random text.
PIECES = ["<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil|x>", "&", "<", ">",
          '"', "“", "”", "'", "\\", "--type", "--at", "--version", "=", "REL-", "42", " ", "\n",
          "\t", "\x00", "\u00a0", "\u200b", "²", "①", "٣", "A=", "c:", ",", "#", "!", "INC-"]
pieces = st.sampled_from(PIECES)
any_text = st.text(st.characters(codec=None), max_size=40)
mixed_text = st.lists(st.one_of(pieces, any_text), max_size=8).map("".join)
words = st.one_of(st.sampled_from(sorted(SUBCOMMANDS)), pieces, any_text)
command_text = st.lists(words, max_size=12).map(" ".join)


def parse_or_refuse(text: str) -> Parsed | None:
    """parse_command's only outcomes: a Parsed, or a UsageError with a usage sentence."""
    try:
        parsed = parse_command(text, SUBCOMMANDS)
    except UsageError as exc:
        assert exc.sentence.strip()
        if exc.sub is None:  # unknown words show every usage line
            assert exc.sentence.endswith("`/release help`.")
        else:  # the usage line, or it with the release's ID when words are missing
            assert exc.sentence.endswith(f"Usage: `{exc.sub.usage}`") or re.search(
                "`" + re.escape(exc.sub.usage).replace("<ID>", "REL-\\d+") + "`$",
                exc.sentence)
        return None
    assert parsed.sub in SUBCOMMANDS.values()
    assert (parsed.release_id is None) is (not parsed.sub.takes_id)
    return parsed


@FUZZ
@given(st.one_of(command_text, mixed_text, any_text))
def test_parse_command_answers_or_refuses(text: str) -> None:
    """Any text: a Parsed or a UsageError (a Refused), never another exception."""
    parse_or_refuse(text)
    parse_or_refuse("request " + text)
    parse_or_refuse("reject 42 " + text)


@FUZZ
@given(st.sampled_from(sorted(SUBCOMMANDS)), st.lists(st.one_of(pieces, any_text), max_size=8))
def test_arguments_are_parsed_or_refused(name: str, args: list[str]) -> None:
    """Bug counts, item numbers and verdicts on any words are values or UsageErrors."""
    parsed = parse_or_refuse(" ".join([name, "REL-42", *args]))
    if parsed is None:
        return
    for parse in (parse_bug_counts, parse_items, parse_verdict):
        if parsed.words:
            try:
                parse(parsed.sub, parsed.words)
            except UsageError:
                pass


# The lexer walks 100 kB in ~0.1 s: ten random examples keep this test to a couple of seconds.
@settings(max_examples=10, deadline=None)
@given(st.sampled_from(sorted(SUBCOMMANDS)), st.tuples(pieces, mixed_text).map("".join),
       st.integers(min_value=100_000, max_value=120_000))
def test_huge_commands_answer_or_refuse(name: str, chunk: str, size: int) -> None:
    """100 kB of pasted text (quotes, control characters and all) is still answered."""
    body = (chunk * (size // len(chunk) + 1))[:size]
    parse_or_refuse(f"{name} 42 {body}")


def slack_values(fields: dict[str, Any]) -> dict[str, Any]:
    """Random field answers in the shapes Slack sends: value, selected_option, None, missing."""
    values: dict[str, Any] = {}
    for block_id, (shape, text) in fields.items():
        if shape == "input":
            values[block_id] = {"value": {"type": "plain_text_input", "value": text}}
        elif shape == "select":
            values[block_id] = {"value": {"type": "static_select",
                                          "selected_option": {"value": text}}}
        elif shape == "none":
            values[block_id] = {"value": {"type": "plain_text_input", "value": None}}
        elif shape == "empty":
            values[block_id] = {}
    return values


BLOCK_IDS = ["project", "ref", "version", "title", "type", "at", "window", "items",
             "plan_rollback", "plan_db_scripts", "plan_impact", "plan_deploy_order",
             "plan_on_duty", "url", "A", "B", "C"]
EDGE_TIMES = ["0001-01-01 00:00", "9999-12-31 23:59", "2026-11-23 12:00", "2026-11-23 12:01"]
TIME_LIKE = st.one_of(st.sampled_from(EDGE_TIMES), st.builds(
    "{:04d}-{:02d}-{:02d} {:02d}:{:02d}".format, st.integers(0, 9999), st.integers(0, 13),
    st.integers(0, 32), st.integers(0, 25), st.integers(0, 60)))
NUMBER_LIKE = st.one_of(st.integers(-5, 10**6).map(str),
                        st.sampled_from(["²", "①", "٣", "1e3", " 4 ", "0x1", "½"]))
field_answers = st.dictionaries(
    st.sampled_from(BLOCK_IDS),
    st.tuples(st.sampled_from(["input", "select", "none", "empty", "missing"]),
              st.one_of(mixed_text, TIME_LIKE, NUMBER_LIKE,
                        st.sampled_from(["payments", "web", "standard", "yes", "no"]))))


@FUZZ
@given(field_answers)
def test_parse_request_view_never_raises(fields: dict[str, Any]) -> None:
    """Any form answers give a NewRelease or errors by block id, never an exception."""
    new, errors = parse_request_view(slack_values(fields), POLICY, NOW)
    assert (new is None) is bool(errors)
    assert set(errors) <= {"project", "ref", "title", "type", "at", "rollback"}
    assert all(0 < len(message) <= 150 for message in errors.values())
    if new is not None:
        assert isinstance(new, NewRelease) and new.project in POLICY.projects
        assert new.ref and not any(c.isspace() for c in new.ref)
        assert new.scheduled_at is None or new.scheduled_at > NOW


@FUZZ
@given(field_answers)
def test_parse_report_view_never_raises(fields: dict[str, Any]) -> None:
    """Any report answers give (url, counts) or errors by block id."""
    result, errors = parse_report_view(slack_values(fields))
    assert (result is None) is bool(errors)
    if result is not None:
        url, counts = result
        assert url.startswith(("http://", "https://"))
        assert set(counts) == {"A", "B", "C"} and all(n >= 0 for n in counts.values())


# Up to the 4,000 characters the database stores, built by repetition (generating is slow).
user_text = st.one_of(mixed_text, st.builds(
    lambda chunk, times: (chunk * times)[:4000], mixed_text, st.integers(1, 400)))


@FUZZ
@given(state=st.sampled_from(list(State)), title=user_text, ref=mixed_text, reason=user_text,
       items=st.lists(mixed_text, max_size=12), ticks=st.sets(st.integers(0, 15), max_size=12))
def test_cards_of_random_text_fit_slack_and_stay_inert(state: State, title: str, ref: str,
                                                       reason: str, items: list[str],
                                                       ticks: set[int]) -> None:
    """Whatever people typed, the card is within Slack's limits and mentions no one."""
    view = make_view(
        state, title=title, ref=ref, version_label=ref[:100], planned_window=reason[:200],
        plan={"rollback": reason, "impact": reason}, hold_reason=reason, gate_override_by="U0CTO",
        gate_override_reason=reason, verification_note=reason, risk_accepted_by="U0CTO",
        checklist=items, ticks=sorted(ticks),
        approvals=[approval("tech_director", "U0DIRECTOR")],
        test_report=report(1, passes=False, url=("https://x/" + reason)[:2000]),
        deployments=[deployment("staging", ref=ref),
                     deployment("production", "running", ref=ref)],
        work_items=[WorkItem(release_id=42, kind="link", reference=reason[:500])],
        audit=[AuditEntry(release_id=42, actor="U0OPS", action=reason[:32], to_state=state.value,
                          from_state="testing", at=NOW)])
    text, blocks = build_release_card(view, POLICY.tz)
    assert_within_limits(text, blocks)
    status = [details_text(view), deploys_text(view, POLICY.tz), timeline_text(view, POLICY.tz)]
    assert all(len(t) <= 3000 for t in status)
    assert_no_raw_markup([text, *mrkdwn_texts(blocks), *status])
    assert "<!" not in "\n".join([text, *mrkdwn_texts(blocks), *status])


# Detail values as the service writes them, with every text field random.
url_text = st.one_of(st.just("https://gitlab.example/p/1"), mixed_text.map("https://x/".__add__),
                     mixed_text, st.none())
detail_fields: dict[str, Any] = {
    "project": mixed_text, "ref": mixed_text, "old_ref": mixed_text, "type": mixed_text,
    "role": mixed_text, "reason": user_text, "comment": user_text, "note": user_text,
    "error": st.one_of(mixed_text, st.none()), "gate": st.one_of(mixed_text, st.none()),
    "environment": mixed_text, "failed_job": st.one_of(mixed_text, st.none()),
    "url": url_text, "failed_job_url": url_text,
    "missing": st.lists(mixed_text, max_size=4),
    "bugs": st.fixed_dictionaries({k: st.integers(0, 99999) for k in "ABC"}),
    "passes": st.booleans(), "voided_approvals": st.booleans(), "rollback": st.booleans(),
    "items": st.lists(st.integers(1, 99), max_size=10),
    "done": st.integers(0, 99), "total": st.integers(0, 99),
    "pipeline": st.one_of(st.integers(0, 10**9), st.none()),
    "seconds": st.one_of(st.integers(0, 10**6), st.none()),
    "deployment": st.integers(1, 10**6), "status": st.sampled_from(["success", "failed"]),
    "until": st.one_of(mixed_text, st.none()),
}
details = st.fixed_dictionaries({}, optional=detail_fields)


@FUZZ
@given(event=st.one_of(st.sampled_from(sorted(RENDERERS)), mixed_text), detail=details,
       actor=st.one_of(st.sampled_from(["U0OPS", "W0X", "releasebot"]), mixed_text),
       to=st.sampled_from([s.value for s in State]), broadcast=st.booleans())
def test_event_text_never_raises_or_pings(event: str, detail: dict[str, Any], actor: str,
                                          to: str, broadcast: bool) -> None:
    """Random details render to a non-empty line with no broadcast or stray mention in it."""
    text = event_text({"event": event, "actor": actor, "from": "testing", "to": to,
                       "detail": detail, "broadcast": broadcast})
    assert 0 < len(text) <= 3000
    for markup in ("<!channel>", "<!here>", "<!everyone>", "<@U123>", "<https://evil"):
        assert markup not in text
    assert "<!" not in text
    assert text.count("<@") <= (1 if actor in ("U0OPS", "W0X") else 0)  # only the actor's
    reason = detail.get("reason", "").strip()
    if event == "reject" and reason:
        assert escape(reason[:100]) in text
