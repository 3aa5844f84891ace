"""The request, report and reason modals: what they ask, and what a submission turns into."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from bot.policy import Policy
from bot.releases import NewRelease
from emulators.sample import sample_policy
from handlers.blocks import MAX_TEXT, FormId
from handlers.modals import (
    build_reason_modal,
    build_report_modal,
    build_request_modal,
    parse_metadata,
    parse_report_view,
    parse_request_view,
    work_items,
)

POLICY: Policy = sample_policy()
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai

PLAN_FIELDS = ["plan_impact", "plan_rollback", "plan_db_scripts", "plan_deploy_order"]
REQUEST_FIELDS = ["project", "ref", "more", "order", "version", "title", "type", "ground",
                  "reason", "at", "window", "items", *PLAN_FIELDS]
OPTIONAL_FIELDS = {"more", "order", "version", "ground", "reason", "at", "window", "items",
                   *PLAN_FIELDS}


def submitted(**fields: str) -> dict[str, Any]:
    """`view.state.values` as Slack sends it: selects carry selected_option, inputs a value."""
    selects = {"project", "type"}
    values: dict[str, Any] = {}
    for block_id, text in fields.items():
        if block_id in selects:
            values[block_id] = {"value": {"type": "static_select",
                                          "selected_option": {"value": text}}}
        else:
            values[block_id] = {"value": {"type": "plain_text_input", "value": text}}
    return values


GOOD = dict(project="payments", ref="v1.1.0", title="Faster checkout", type="standard",
            plan_rollback="Redeploy v1.0.9", plan_db_scripts="none")


def blocks_by_id(modal: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A modal's input blocks by block id."""
    return {b["block_id"]: b for b in modal["blocks"]}


def options(block: dict[str, Any]) -> list[str]:
    """The values a select offers."""
    return [o["value"] for o in block["element"]["options"]]


# --- the request modal ----------------------------------------------------------------------------

def test_request_modal_asks_for_every_field() -> None:
    """Every field of a request, in order, with the optional ones marked optional."""
    modal = build_request_modal(POLICY, channel="C0HERE")
    assert modal["type"] == "modal" and modal["callback_id"] == FormId.REQUEST
    assert modal["private_metadata"] == "C0HERE"
    assert [b["block_id"] for b in modal["blocks"]] == REQUEST_FIELDS
    for block in modal["blocks"]:
        assert block["type"] == "input"
        assert block.get("optional", False) is (block["block_id"] in OPTIONAL_FIELDS)
        assert 0 < len(block["label"]["text"]) <= 2000
    assert len(modal["title"]["text"]) <= 24 and len(modal["submit"]["text"]) <= 24


def test_request_modal_selects_come_from_the_policy() -> None:
    """Projects and release types are the policy's; standard is preselected."""
    blocks = blocks_by_id(build_request_modal(POLICY))
    assert options(blocks["project"]) == ["payments", "web"]
    assert "initial_option" not in blocks["project"]["element"]  # two projects: a real choice
    assert options(blocks["type"]) == ["standard", "emergency", "hotfix", "campaign"]
    assert blocks["type"]["element"]["initial_option"]["value"] == "standard"


def test_request_modal_preselects_the_only_project() -> None:
    """With one project there is nothing to choose."""
    one = sample_policy(projects={"web": None})
    blocks = blocks_by_id(build_request_modal(one))
    assert blocks["project"]["element"]["initial_option"]["value"] == "payments"


def test_request_modal_names_the_timezone_and_multiline_fields() -> None:
    """Times are typed on the policy's clock; long answers get a multi-line box."""
    blocks = blocks_by_id(build_request_modal(POLICY))
    assert "Asia/Shanghai" in blocks["at"]["label"]["text"]
    assert blocks["at"]["element"]["max_length"] == 16
    multiline = {b for b, block in blocks.items() if block["element"].get("multiline")}
    assert multiline == {"more", "reason", "items", *PLAN_FIELDS}


# --- parsing a submitted request ------------------------------------------------------------------

def test_a_good_request_becomes_a_new_release() -> None:
    """Every field is carried over, and the time goes from Shanghai to UTC."""
    new, errors = parse_request_view(submitted(**(GOOD | dict(
        version="1.1.0", at="2026-12-24 20:00", window="Thursday evening",
        items="!12\n#34\n\nINC-5\nhttps://jira.example/X-1", plan_impact="checkout",
        plan_deploy_order="after web", plan_db_scripts="migrate.sql, run by the DBA"))),
        POLICY, NOW)
    assert errors == {}
    assert new == NewRelease(
        project="payments", ref="v1.1.0", title="Faster checkout", type="standard",
        version_label="1.1.0", scheduled_at=datetime(2026, 12, 24, 12, 0, tzinfo=UTC),
        planned_window="Thursday evening",
        work_items=(("mr", "!12"), ("issue", "#34"), ("incident", "INC-5"),
                    ("link", "https://jira.example/X-1")),
        plan={"impact": "checkout", "rollback": "Redeploy v1.0.9",
              "db_scripts": "migrate.sql, run by the DBA", "deploy_order": "after web"})


def test_optional_fields_may_be_left_out() -> None:
    """Slack omits untouched optional inputs or sends them as None."""
    values = submitted(**GOOD)
    values["plan_impact"] = {"value": {"type": "plain_text_input", "value": None}}
    new, errors = parse_request_view(values, POLICY, NOW)
    assert errors == {}
    assert new is not None
    assert (new.scheduled_at, new.work_items, new.version_label) == (None, (), "")
    assert "impact" not in new.plan


def test_answers_are_trimmed() -> None:
    """Stray spaces around answers are not kept."""
    new, _ = parse_request_view(submitted(**(GOOD | {"title": "  Faster checkout \n"})),
                                POLICY, NOW)
    assert new is not None and new.title == "Faster checkout"


NO_REF = "Please name the ref to release: a branch, tag or commit."
ASCII_ONLY = ("The ref may hold only printable ASCII letters, digits and punctuation, without "
              "spaces; it has {}.")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("title", "", "Please give the release a title."),
    ("title", "   ", "Please give the release a title."),
    ("ref", "", NO_REF),
    ("ref", "release 1.1", ASCII_ONLY.format("U+0020 SPACE")),
    ("ref", "v1\tx", ASCII_ONLY.format("U+0009 control character")),
    ("ref", "v1.1.0\u200b", ASCII_ONLY.format("U+200B ZERO WIDTH SPACE")),
    ("ref", "v1\x00", ASCII_ONLY.format("U+0000 control character")),
    ("ref", "x" * 256, "The ref is too long (256 characters; at most 255)."),
    ("ref", "--upload-pack=x", "'--upload-pack=x' is not a valid git ref name: it can't start "
                               "with '-'."),
    ("ref", "v1..2", "'v1..2' is not a valid git ref name: it can't hold '..' or '@{'."),
    ("ref", "a/.hidden", "'a/.hidden' is not a valid git ref name: no part of it may start "
                         "with '.' or end with '.lock'."),
    ("version", "1" * 150, "The version is too long (150 characters; at most 100)."),
    ("window", "w" * 201, "The planned window is too long (201 characters; at most 200)."),
    ("plan_rollback", "r" * 4001,
     "Too long: the plan's rollback steps (4001 characters; at most 4000)."),
    ("project", "billing", "There is no project 'billing'; known projects: payments, web."),
    ("at", "2026-11-23 11:59", "The planned time is in the past."),
    ("at", "2026-11-23 12:00", "The planned time is in the past."),
])
def test_bad_answers_are_errors_by_block_id(field: str, value: str, message: str) -> None:
    """Each problem is shown under its own field and nothing is filed."""
    new, errors = parse_request_view(submitted(**(GOOD | {field: value})), POLICY, NOW)
    assert new is None
    assert errors == {field: message}


@pytest.mark.parametrize("typed", ["tomorrow", "2026-12-24", "24/12/2026 20:00", "2026-13-01 20:00",
                                   "2026-02-30 10:00", "2026-12-24 25:00"])
def test_a_time_that_is_not_one_is_an_error_on_the_time_field(typed: str) -> None:
    """The time field explains the format, within Slack's 150-character error limit."""
    _, errors = parse_request_view(submitted(**(GOOD | {"at": typed})), POLICY, NOW)
    assert set(errors) == {"at"}
    assert 0 < len(errors["at"]) <= 150


def test_a_time_too_early_for_utc_is_an_error_not_a_crash() -> None:
    """`0001-01-01 00:00` in Shanghai is before year 1 in UTC; it is refused on the field."""
    _, errors = parse_request_view(submitted(**(GOOD | {"at": "0001-01-01 00:00"})), POLICY, NOW)
    assert set(errors) == {"at"}


def test_several_problems_are_reported_together() -> None:
    """Empty form: every required field says what is missing."""
    new, errors = parse_request_view({}, POLICY, NOW)
    assert new is None
    assert set(errors) == {"ref", "title", "project"}  # an empty plan waits on the card


def test_a_missing_type_means_standard() -> None:
    """Without a type the request is a standard release."""
    values = submitted(**GOOD)
    del values["type"]
    new, _ = parse_request_view(values, POLICY, NOW)
    assert new is not None and new.type == "standard"


@pytest.mark.parametrize(("text", "items"), [
    ("!12", (("mr", "!12"),)),
    ("#34", (("issue", "#34"),)),
    ("INC-5", (("incident", "INC-5"),)),
    ("inc-5", (("incident", "inc-5"),)),
    ("https://gitlab.example/acme/payments/-/merge_requests/12",
     (("link", "https://gitlab.example/acme/payments/-/merge_requests/12"),)),
    ("  !1  \n\n\t\n#2\r\nINC-3", (("mr", "!1"), ("issue", "#2"), ("incident", "INC-3"))),
    ("", ()),
])
def test_work_item_kinds(text: str, items: tuple[tuple[str, str], ...]) -> None:
    """One item per line; its kind follows from how it is written."""
    assert work_items(text) == items


def test_work_items_are_bounded() -> None:
    """At most 100 items of at most 500 characters each, as the table stores them."""
    items = work_items("\n".join(["x" * 900] * 150))
    assert len(items) == 100
    assert all(len(ref) == 500 for _, ref in items)


# --- the report and reason modals -----------------------------------------------------------------

def test_report_modal_asks_for_a_link_and_three_counts() -> None:
    """A link and A/B/C counts defaulting to 0; the release travels in the metadata."""
    modal = build_report_modal(42, 3)
    assert modal["callback_id"] == FormId.REPORT
    assert [b["block_id"] for b in modal["blocks"]] == ["url", "A", "B", "C"]
    assert [b["element"].get("initial_value") for b in modal["blocks"][1:]] == ["0", "0", "0"]
    assert parse_metadata(modal["private_metadata"]) == (42, 3)


def test_reason_modal_carries_the_release() -> None:
    """A reason prompt remembers which release and revision it is about."""
    modal = build_reason_modal(FormId.REJECT, "Reject REL-42", "Why?", 42, None)
    assert modal["callback_id"] == FormId.REJECT
    assert modal["blocks"][0]["block_id"] == "reason"
    assert modal["blocks"][0]["optional"] is False
    assert modal["blocks"][0]["element"]["multiline"] is True
    assert parse_metadata(modal["private_metadata"]) == (42, None)
    assert len(modal["title"]["text"]) <= 24


@pytest.mark.parametrize("meta", ["", "x:1", ":3", "REL-42:1"])
def test_bad_metadata_is_a_value_error(meta: str) -> None:
    """Metadata that doesn't start with a release id is refused."""
    with pytest.raises(ValueError, match="bad modal metadata"):
        parse_metadata(meta)


def test_a_good_report() -> None:
    """A link and counts; an empty count is not given (0, or the tracker's count)."""
    values = submitted(url="https://ci.example/r/1", A="0", B="2", C="")
    assert parse_report_view(values) == (("https://ci.example/r/1", {"A": 0, "B": 2}), {})


def test_with_a_tracker_the_counts_are_optional_and_empty() -> None:
    """Left empty, each count is the tracker's; the label says so."""
    modal = build_report_modal(42, 3, "GitLab issues")
    counts = modal["blocks"][1:]
    assert [b["optional"] for b in counts] == [True, True, True]
    assert [b["element"].get("initial_value") for b in counts] == [None, None, None]
    assert counts[0]["label"]["text"] == "Open A bugs (empty: the count in GitLab issues)"


@pytest.mark.parametrize("url", ["", "ci.example/r/1", "ftp://ci.example", "javascript:alert(1)",
                                 "https://ci.example/a b", "<https://evil|x>"])
def test_a_bad_link_is_an_error(url: str) -> None:
    """Only an http(s) link without spaces is a report link."""
    result, errors = parse_report_view(submitted(url=url, A="0", B="0", C="0"))
    assert result is None
    assert errors == {"url": "A link starting with https://"}


@pytest.mark.parametrize("count", ["-1", "x", "1.5", "1e3", "²", "①"])
def test_a_count_that_is_not_a_whole_number_is_an_error(count: str) -> None:
    """Each count must be a whole number; digit-like symbols are not."""
    result, errors = parse_report_view(submitted(url="https://ci.example/r", A="0", B=count))
    assert result is None
    assert errors == {"B": "A whole number, 0 or more."}


@pytest.mark.parametrize("count", ["100000", "99999999999999999999"])
def test_a_count_past_the_bots_limit_is_an_error_under_its_field(count: str) -> None:
    """A count the bot would refuse is shown in the form, not after it closes."""
    result, errors = parse_report_view(submitted(url="https://ci.example/r", C=count))
    assert result is None
    assert errors == {"C": "At most 99999."}
    assert parse_report_view(submitted(url="https://ci.example/r", C="99999"))[0] == (
        "https://ci.example/r", {"C": 99999})


def test_every_modal_text_fits_slack() -> None:
    """Labels, placeholders and options stay within Slack's limits."""
    for modal in (build_request_modal(POLICY), build_report_modal(1, 1),
                  build_reason_modal(FormId.VERIFY_FAIL, "What went wrong?" * 5, "Note", 1, 1)):
        assert len(modal["title"]["text"]) <= 24
        for block in modal["blocks"]:
            element = block["element"]
            assert len(block["label"]["text"]) <= 2000
            assert len(element.get("placeholder", {}).get("text", "")) <= 150
            assert element.get("max_length", 0) <= MAX_TEXT
            for option in element.get("options", []):
                assert len(option["text"]["text"]) <= 75
