"""The policy file: what loads, and the exact line an operator sees when it does not."""

from __future__ import annotations

import re
from datetime import date, time
from pathlib import Path
from typing import Any

import pydantic
import pytest

from bot.people import user_groups
from bot.policy import (
    BugLimits,
    BugTracker,
    Freeze,
    MergeBack,
    Notice,
    Policy,
    PolicyError,
    Project,
    ReleaseType,
    Reminders,
    Severity,
    TrackerScope,
    TypePolicy,
    Weekday,
    Window,
    load_policy,
    parse_policy,
)
from emulators.sample import sample_policy

EXAMPLE = Path(__file__).resolve().parents[2] / "releasebot.example.yml"

# A full policy with a comment on most keys: line numbers below refer to it.
SAMPLE = """\
release_channel: C0RELEASES          # channel ID for announcements
timezone: Asia/Shanghai              # for windows, freezes and dates shown to people
roles:                               # role -> Slack user IDs (U…/W…) and/or user group IDs (S…)
  tech_director: [U0DIRECTOR]
  test_lead: [U0TESTLEAD]
  tester: [U0TESTLEAD, U0TESTER]
  executive: [U0CTO]
  release_manager: [U0OPS]
projects:                            # the key is what people type
  payments:
    gitlab: acme/payments            # project path or numeric ID
    environments: [staging, production]
    deploy_variables: {DEPLOY: "true"}   # passed to the deploy pipeline (plus RELEASE_ID, DEPLOY_ENV, ROLLBACK)
    checklist: ["Database backup taken", "Rollback plan reviewed"]
policies:                            # per release type
  standard:  {approvers: [tech_director, test_lead], max_open_bugs: {A: 0, B: 0, C: 5}}
  emergency: {approvers: [executive, tech_director], allow_known_issues: true, bypass_freeze: true}
  hotfix:    {approvers: [test_lead]}
  campaign:  {approvers: [tech_director, test_lead]}
observation_hours: 24
windows: []                          # e.g. {days: [tue, thu], start: "20:00", end: "23:00"}
freezes: []                          # e.g. {from: 2026-12-24, to: 2027-01-02, reason: "Year-end freeze"}
"""  # noqa: E501


def edited(old: str, new: str) -> str:
    """SAMPLE with one exact piece replaced."""
    assert SAMPLE.count(old) == 1, old
    return SAMPLE.replace(old, new)


def with_line(prefix: str, line: str) -> str:
    """SAMPLE with the line starting with `prefix` replaced by `line`."""
    lines = SAMPLE.splitlines()
    index = next(i for i, text in enumerate(lines) if text.startswith(prefix))
    lines[index] = line
    return "\n".join(lines) + "\n"


def error_of(text: str) -> str:
    """The PolicyError message for a policy text."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(text)
    return str(caught.value)


# --- files that load ----------------------------------------------------------------------------

def test_interface_sample_loads() -> None:
    policy = parse_policy(SAMPLE)
    assert policy.release_channel == "C0RELEASES"
    assert policy.tz.key == "Asia/Shanghai"
    assert policy.users_in_role("tester") == ["U0TESTLEAD", "U0TESTER"]
    payments = policy.project("payments")
    assert payments.gitlab == "acme/payments"
    assert payments.environments == ["staging", "production"]
    assert payments.production == "production"
    assert payments.deploy_variables == {"DEPLOY": "true"}
    assert [(c.item, c.owner) for c in payments.checklist] == [
        ("Database backup taken", "release_manager"), ("Rollback plan reviewed", "release_manager")]
    assert set(policy.policies) == set(ReleaseType)
    standard = policy.type_policy(ReleaseType.STANDARD)
    assert standard.approvers == ["tech_director", "test_lead"]
    assert standard.max_open_bugs == BugLimits(A=0, B=0, C=5)
    emergency = policy.type_policy("emergency")
    assert emergency.allow_known_issues and emergency.bypass_freeze
    assert policy.observation_hours == 24
    assert policy.windows == [] and policy.freezes == []


def test_defaults() -> None:
    policy = parse_policy(SAMPLE)
    hotfix = policy.type_policy(ReleaseType.HOTFIX)
    assert hotfix.max_open_bugs == BugLimits(A=0, B=0, C=5)
    assert not hotfix.allow_known_issues and not hotfix.bypass_freeze
    assert not hotfix.requester_can_deploy and hotfix.require_test_report
    assert policy.one_person_many_roles is False
    assert policy.reminders == Reminders(
        approval_hours=4, escalation_hours=24, report_hours=24, verify_minutes=60,
        verify_deadline_minutes=240, merge_back_hours=24, interval_hours=4,
    )
    assert policy.project("payments").default_branch is None


def test_example_file_loads() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.project("payments").gitlab == "acme/payments"
    assert policy.merge_back_days(ReleaseType.HOTFIX) == 7


def test_example_file_shows_every_key() -> None:
    text = EXAMPLE.read_text()
    for model in (Policy, Project, TypePolicy, BugLimits, Window, Freeze, Reminders, BugTracker):
        for name, info in model.model_fields.items():
            key = info.alias or name
            assert re.search(rf"(?<![\w.]){key}:", text), f"{model.__name__}.{key} is not shown"


def test_example_files_commented_entries_load() -> None:
    text = EXAMPLE.read_text()
    window = re.search(r"^#\s+- (\{days:.*\})$", text, re.M)
    freeze = re.search(r"^#\s+- (\{from:.*\})$", text, re.M)
    assert window and freeze
    text = text.replace("windows: []", f"windows:\n  - {window.group(1)}")
    text = text.replace("freezes: []", f"freezes:\n  - {freeze.group(1)}")
    policy = parse_policy(text)
    assert policy.windows[0].days == [Weekday.TUE, Weekday.THU]
    assert policy.freezes[0].reason == "Year-end freeze"


def test_windows_and_freezes() -> None:
    policy = parse_policy(edited(
        'windows: []                          # e.g. {days: [tue, thu], start: "20:00", '
        'end: "23:00"}',
        'windows: [{days: [Tuesday, THU], start: 20:00, end: "02:00"}]',
    ).replace("freezes: []", "freezes: [{from: 2026-12-24, to: '2027-01-02', reason: Year end}]"))
    window = policy.windows[0]
    assert window.days == [Weekday.TUE, Weekday.THU]
    assert (window.start, window.end) == (time(20, 0), time(2, 0))
    assert window.crosses_midnight
    freeze = policy.freezes[0]
    assert (freeze.start, freeze.to, freeze.reason) == (date(2026, 12, 24), date(2027, 1, 2),
                                                        "Year end")


def test_yaml_11_words_stay_words() -> None:
    policy = parse_policy(
        edited("  executive: [U0CTO]", "  executive: [U0CTO]\n  no: [U0NOBODY]")
        .replace('{DEPLOY: "true"}', "{DEPLOY: yes, VERSION: 1.10, CODE: 010, FLAG: on}")
        .replace("  payments:", "  on:")
    )
    assert policy.users_in_role("no") == ["U0NOBODY"]
    assert policy.project("on").deploy_variables == {
        "DEPLOY": "yes", "VERSION": "1.10", "CODE": "010", "FLAG": "on",
    }


def test_yes_still_means_true_for_flags() -> None:
    policy = parse_policy(edited("bypass_freeze: true", "bypass_freeze: yes"))
    assert policy.type_policy("emergency").bypass_freeze is True


def test_deploy_variables_given_as_python_values_become_strings() -> None:
    data = parse_policy(SAMPLE).model_dump()
    data["projects"]["payments"]["deploy_variables"] = {"ON": True, "N": 3, "F": 1.5}
    policy = Policy.model_validate(data)
    assert policy.project("payments").deploy_variables == {"ON": "true", "N": "3", "F": "1.5"}


def test_empty_lists_may_be_left_blank() -> None:
    policy = parse_policy(edited("freezes: []", "freezes:"))
    assert policy.freezes == []


def test_numeric_gitlab_project() -> None:
    policy = parse_policy(edited("gitlab: acme/payments", "gitlab: 1234"))
    assert policy.project("payments").gitlab == 1234


def test_merge_keys_work() -> None:
    text = edited(
        "  hotfix:    {approvers: [test_lead]}",
        "  hotfix: &fix {approvers: [test_lead], merge_back_days: 3}",
    ).replace("  campaign:  {approvers: [tech_director, test_lead]}",
              "  campaign: {<<: *fix, merge_back_days: 5}")
    policy = parse_policy(text)
    assert policy.type_policy("campaign").approvers == ["test_lead"]
    assert policy.merge_back_days("campaign") == 5


def test_models_are_frozen() -> None:
    policy = parse_policy(SAMPLE)
    with pytest.raises(pydantic.ValidationError):
        policy.observation_hours = 1  # type: ignore[misc]


# --- helpers ------------------------------------------------------------------------------------

def test_type_policy_without_rules() -> None:
    policy = parse_policy(edited("  campaign:  {approvers: [tech_director, test_lead]}\n", ""))
    with pytest.raises(PolicyError) as caught:
        policy.type_policy(ReleaseType.CAMPAIGN)
    assert str(caught.value) == (
        "campaign releases are not enabled: the policy file has no policies.campaign."
    )


def test_type_policy_of_unknown_type() -> None:
    with pytest.raises(PolicyError, match="'urgent' is not a release type; use one of standard"):
        parse_policy(SAMPLE).type_policy("urgent")


def test_unknown_project_names_known_ones() -> None:
    policy = parse_policy(edited("projects:", "projects:\n  web: {gitlab: acme/web}"))
    with pytest.raises(PolicyError) as caught:
        policy.project("pay")
    assert str(caught.value) == "There is no project 'pay'; known projects: payments, web."


def test_roles_helpers() -> None:
    policy = parse_policy(edited("  tester: [U0TESTLEAD, U0TESTER]",
                                 "  tester: [U0TESTLEAD, S0TESTERS]"))
    assert policy.users_in_role("tester") == ["U0TESTLEAD", "S0TESTERS"]
    assert policy.users_in_role("nobody") == []
    assert policy.roles_of("U0TESTLEAD") == ["test_lead", "tester"]


def test_merge_back_days() -> None:
    policy = parse_policy(SAMPLE)
    assert policy.merge_back_days(ReleaseType.HOTFIX) == 7
    assert policy.merge_back_days(ReleaseType.STANDARD) is None
    custom = parse_policy(edited("{approvers: [test_lead]}",
                                 "{approvers: [test_lead], merge_back_days: 2}"))
    assert custom.merge_back_days("hotfix") == 2


def test_merge_back_and_notify() -> None:
    """Merge-back is enforced unless the policy says remind; notify names who hears what."""
    assert parse_policy(SAMPLE).merge_back is MergeBack.ENFORCE
    assert parse_policy(SAMPLE + "merge_back: remind\n").merge_back is MergeBack.REMIND
    policy = parse_policy(SAMPLE + "notify: {deploy: [C0NEWS, S0ONCALL], close: [U0CTO, G0OPS]}\n")
    assert policy.notify_targets(Notice.DEPLOY) == ["C0NEWS", "S0ONCALL"]
    assert policy.notify_targets(Notice.REQUEST) == []
    assert user_groups(policy) == {"S0ONCALL"}


@pytest.mark.parametrize(("notify", "problem"), [
    ("{deploys: [C0NEWS]}", "notify.deploys: unknown notify moment 'deploys'; moments: request, "
                            "signoff, deploy, verification, rollback, close"),
    ("{deploy: ['#news']}", "notify.deploy.0: '#news' is not a Slack channel ID (C…, G…), user "
                            "ID (U…, W…) or user group ID (S…)"),
])
def test_notify_ids_are_checked(notify: str, problem: str) -> None:
    """A moment or an ID that isn't one is refused with the line and the reason."""
    with pytest.raises(PolicyError) as err:
        parse_policy(SAMPLE + f"notify: {notify}\n")
    assert str(err.value).endswith(problem)


# --- files that do not load ---------------------------------------------------------------------

BROKEN = [
    pytest.param(
        SAMPLE + "colour: blue\n",
        "releasebot.yml:23: colour: unknown key 'colour'; allowed keys: deploy_timeout_minutes, "
        "freezes, limits, merge_back, notify, observation_hours, one_person_many_roles, "
        "policies, projects, release_channel, reminders, roles, slack, tag_prefix, timezone, "
        "windows",
        id="unknown top-level key",
    ),
    pytest.param(
        edited("    checklist:", "    check_list: []\n    checklist:"),
        "releasebot.yml:14: projects.payments.check_list: unknown key 'check_list'; "
        "allowed keys: bug_tracker, checklist, default_branch, depends_on, deploy_variables, "
        "environments, gitlab",
        id="unknown project key",
    ),
    pytest.param(
        edited("  hotfix:    {approvers: [test_lead]}",
               "  hotfix:    {approvers: [test_lead], approver: [x]}"),
        "releasebot.yml:18: policies.hotfix.approver: unknown key 'approver'; allowed keys: "
        "allow_known_issues, approvers, bypass_freeze, grounds, max_open_bugs, merge_back_days, "
        "plan, requester_can_deploy, require_test_report",
        id="unknown type policy key",
    ),
    pytest.param(
        edited('"Rollback plan reviewed"]', '"Rollback plan reviewed",\n'
               '                {item: "DB scripts run in advance", role: dba}]'),
        "releasebot.yml:15: projects.payments.checklist.2.role: unknown role 'dba'; roles "
        "defined: executive, release_manager, tech_director, test_lead, tester",
        id="unknown role of a checklist item",
    ),
    pytest.param(
        edited('"Rollback plan reviewed"]', '"Rollback plan reviewed", {item: "  "}]'),
        "releasebot.yml:14: projects.payments.checklist.2.item: is an empty checklist item",
        id="empty checklist item",
    ),
    pytest.param(
        edited("hotfix:    {approvers: [test_lead]}", "hotfix:    {approvers: [qa_lead]}"),
        "releasebot.yml:18: policies.hotfix.approvers.0: unknown role 'qa_lead'; roles defined: "
        "executive, release_manager, tech_director, test_lead, tester",
        id="unknown role in approvers",
    ),
    pytest.param(
        edited("release_channel: C0RELEASES", "release_channel: '#releases'"),
        "releasebot.yml:1: release_channel: must be a Slack channel ID like C0123ABCD, "
        "not a name (got '#releases')",
        id="bad channel id",
    ),
    pytest.param(
        edited("[U0TESTLEAD, U0TESTER]", "[U0TESTLEAD, alice]"),
        "releasebot.yml:6: roles.tester.1: 'alice' is not a Slack user ID (U…, W…) "
        "or user group ID (S…)",
        id="bad user id",
    ),
    pytest.param(
        edited("timezone: Asia/Shanghai", "timezone: Asia/Shangai"),
        "releasebot.yml:2: timezone: unknown time zone 'Asia/Shangai'; use an IANA name like "
        "Asia/Shanghai or Europe/Berlin",
        id="bad timezone",
    ),
    pytest.param(
        edited("observation_hours: 24", "observation_hours: 24\nmerge_back: always"),
        "releasebot.yml:21: merge_back: must be 'enforce' or 'remind' (got 'always')",
        id="a word that is not one of the choices is shown",
    ),
    pytest.param(
        with_line("freezes:", "freezes:\n  - {from: 2026-12-24, to: 2027-01-02}"),
        "releasebot.yml:23: freezes.0.reason: is required",
        id="freeze without reason",
    ),
    pytest.param(
        with_line("freezes:",
                  "freezes:\n  - from: 2026-12-24\n    to: 2027-01-02\n    reason: ' '"),
        "releasebot.yml:25: freezes.0.reason: must say why deploys are frozen "
        "(it is shown when a deploy is refused)",
        id="freeze with blank reason",
    ),
    pytest.param(
        with_line("freezes:", "freezes:\n  - from: 2026-12-24\n    to: 2026-12-01\n    reason: x"),
        "releasebot.yml:24: freezes.0.to: 2026-12-01 is before from (2026-12-24)",
        id="freeze to before from",
    ),
    pytest.param(
        with_line("freezes:", "freezes:\n  - {from: 2026-02-30, to: 2026-03-01, reason: x}"),
        "releasebot.yml:23: freezes.0.from: 2026-02-30 is not a real date",
        id="freeze impossible date",
    ),
    pytest.param(
        with_line("windows:", "windows:\n  - days: [tue]\n    start: 20:00\n    end: '20:00'"),
        "releasebot.yml:24: windows.0.end: must differ from start (20:00); a window needs a length",
        id="window start equals end",
    ),
    pytest.param(
        with_line("windows:", 'windows:\n  - {days: [tue, thur], start: "20:00", end: "23:00"}'),
        "releasebot.yml:22: windows.0.days.1: 'thur' is not a weekday; "
        "use mon, tue, wed, thu, fri, sat, sun",
        id="bad weekday",
    ),
    pytest.param(
        with_line("windows:", "windows:\n  - {days: [tue], start: 8pm, end: 23:00}"),
        'releasebot.yml:22: windows.0.start: must be a time like "20:00" (24-hour HH:MM) '
        "(got '8pm')",
        id="bad time",
    ),
    pytest.param(
        edited("  test_lead: [U0TESTLEAD]", "  test_lead: [U0TESTLEAD"),
        "releasebot.yml:6: invalid YAML: expected ',' or ']', but got ':'",
        id="yaml syntax error",
    ),
    pytest.param(
        edited("  tester:", "  test_lead: [U0OTHER]\n  tester:"),
        "releasebot.yml:6: roles.test_lead: duplicate key (first at line 5)",
        id="duplicate key",
    ),
    pytest.param(
        edited("  campaign:  {", "  urgent:  {"),
        "releasebot.yml:19: policies.urgent: unknown release type 'urgent'; release types: "
        "standard, emergency, hotfix, campaign",
        id="unknown release type",
    ),
    pytest.param(
        edited('{DEPLOY: "true"}', '{DEPLOY: "true", RELEASE_ID: "x"}'),
        "releasebot.yml:13: projects.payments.deploy_variables.RELEASE_ID: RELEASE_ID is set "
        "by the bot on every deploy; choose another name",
        id="reserved deploy variable",
    ),
    pytest.param(
        edited("  standard:  {approvers: [tech_director, test_lead], max_open_bugs: "
               "{A: 0, B: 0, C: 5}}\n", ""),
        "releasebot.yml:15: policies: must include standard (the rules for a planned release)",
        id="no standard policy",
    ),
    pytest.param(
        edited("  release_manager: [U0OPS]\n", ""),
        "releasebot.yml:3: roles: must define release_manager (who deploys, rolls back "
        "and closes)",
        id="no release manager",
    ),
    pytest.param(
        edited("  executive: [U0CTO]\n", "").replace("[executive, tech_director]",
                                                    "[tech_director]"),
        "releasebot.yml:16: policies.emergency.allow_known_issues: needs an executive role to "
        "decide, but roles defines no executive",
        id="known issues without executive",
    ),
    pytest.param(
        edited("    gitlab: acme/payments            # project path or numeric ID\n", ""),
        "releasebot.yml:10: projects.payments.gitlab: is required",
        id="missing key points at its parent",
    ),
    pytest.param(
        edited("C: 5}", "C: -1}"),
        "releasebot.yml:16: policies.standard.max_open_bugs.C: must be at least 0 (got -1)",
        id="negative bug limit",
    ),
    pytest.param(
        edited("bypass_freeze: true", "bypass_freeze: maybe"),
        "releasebot.yml:17: policies.emergency.bypass_freeze: must be true or false "
        "(got 'maybe')",
        id="not a boolean",
    ),
    pytest.param(
        edited("[staging, production]", "[production, production]"),
        "releasebot.yml:12: projects.payments.environments.1: lists 'production' twice",
        id="duplicate environment",
    ),
    pytest.param(
        edited("  payments:", "  Payments:"),
        "releasebot.yml:10: projects.Payments: project key 'Payments' must be lower-case "
        "letters and digits, optionally with '.', '_' or '-'",
        id="bad project key",
    ),
    pytest.param(
        edited("observation_hours: 24", "observation_hours: soon"),
        "releasebot.yml:20: observation_hours: must be a number (got 'soon')",
        id="not a number",
    ),
    pytest.param(
        "",
        "releasebot.yml:1: the file is empty; start from releasebot.example.yml",
        id="empty file",
    ),
    pytest.param(
        "- release_channel: C0RELEASES\n",
        "releasebot.yml:1: must be a mapping of keys to values (got a list)",
        id="not a mapping",
    ),
]


@pytest.mark.parametrize(("text", "message"), BROKEN)
def test_broken_file(text: str, message: str) -> None:
    assert error_of(text) == message


def test_every_problem_is_kept_first_one_shown() -> None:
    text = edited("timezone: Asia/Shanghai", "timezone: Nowhere/Land").replace(
        "release_channel: C0RELEASES", "release_channel: releases"
    )
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "policy.yml")
    assert str(caught.value).startswith("policy.yml:1: release_channel:")
    assert len(caught.value.problems) == 2
    assert caught.value.problems[1].startswith("policy.yml:2: timezone:")


def test_load_policy_uses_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yml"
    path.write_text(edited("timezone: Asia/Shanghai", "timezone: Mars/Olympus"))
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"{path}:2: timezone: unknown time zone 'Mars/Olympus'; use an IANA name like "
        "Asia/Shanghai or Europe/Berlin"
    )


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yml"
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    assert str(caught.value) == (
        f"{path}: no such file (set RELEASEBOT_CONFIG or create it from releasebot.example.yml)"
    )


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yml"
    path.write_bytes(b"timezone: \xff\xfe\n")
    with pytest.raises(PolicyError) as caught:
        load_policy(str(path))
    assert str(caught.value) == f"{path}: not UTF-8 text"


def test_byte_order_mark_is_fine(tmp_path: Path) -> None:
    path = tmp_path / "releasebot.yml"
    path.write_bytes(b"\xef\xbb\xbf" + SAMPLE.encode())
    assert load_policy(path).release_channel == "C0RELEASES"


def test_unsafe_tags_are_refused() -> None:
    message = error_of(SAMPLE + "x: !!python/object/apply:os.system [echo hi]\n")
    assert message.startswith("releasebot.yml:23: invalid YAML: could not determine a constructor")


# --- bug trackers ---------------------------------------------------------------------------------

def test_a_bug_tracker_per_project_with_its_defaults() -> None:
    """GitLab issues by severity label per milestone; ZenTao by severity 1-4, product needed."""
    policy = sample_policy(projects={
        "web": {"bug_tracker": {"kind": "gitlab"}},
        "payments": {"bug_tracker": {"kind": "zentao", "url": "https://z.example/api.php/v1/",
                                     "product": 3, "build": 12}}})
    gitlab, zentao = (policy.project(k).bug_tracker for k in ("web", "payments"))
    assert gitlab is not None and zentao is not None
    assert gitlab.issue_scope is TrackerScope.MILESTONE
    assert gitlab.severity_labels == {Severity.A: "severity::A", Severity.B: "severity::B",
                                      Severity.C: "severity::C"}
    assert (zentao.url, zentao.product, zentao.build) == ("https://z.example", 3, "12")
    assert zentao.severities == {1: Severity.A, 2: Severity.B, 3: Severity.C, 4: Severity.C}


@pytest.mark.parametrize(("tracker", "message"), [
    ({"kind": "jira"}, "bug_tracker.kind: unknown bug tracker kind 'jira'; kinds: gitlab, "
                       "zentao"),
    ({"kind": "zentao", "product": 1}, "bug_tracker.url: a zentao tracker needs `url`"),
    ({"kind": "zentao", "url": "https://z"}, "bug_tracker.product: a zentao tracker needs "
                                             "`product`"),
    ({"kind": "gitlab", "product": 1}, "bug_tracker.product: is not a key of a gitlab tracker"),
    ({"kind": "zentao", "url": "https://bot:pw@z", "product": 1},
     "bug_tracker.url: must not hold an account or password: set ZENTAO_ACCOUNT and "
     "ZENTAO_PASSWORD instead"),
    ({"kind": "gitlab", "labels": {"A": "P1", "B": "P2"}},
     "bug_tracker.labels: needs a label for C too (every severity counts)"),
    ({"kind": "gitlab", "labels": {"A": "P1", "B": "P1", "C": "P3"}},
     "bug_tracker.labels: gives two severities the same label"),
    ({"kind": "zentao", "url": "https://z", "product": 1, "severity_map": {1: "D"}},
     "bug_tracker.severity_map.1: must be 'A', 'B' or 'C' (got 'D')"),
])
def test_a_bug_tracker_that_cannot_count_is_refused(tracker: dict[str, Any],
                                                    message: str) -> None:
    """Each mistake is named with its key; a password in the URL is never echoed."""
    with pytest.raises(PolicyError) as err:
        sample_policy(projects={"web": {"bug_tracker": tracker}})
    assert str(err.value).endswith(f"projects.web.{message}")
    assert "pw@" not in str(err.value)


def test_a_channel_name_read_as_a_comment_gets_a_hint() -> None:
    """`release_channel: #releases` is a YAML comment: the error says so and what to write."""
    assert error_of(with_line("release_channel:", "release_channel: #releases")) == (
        "releasebot.yml:1: release_channel: must be text (got nothing); a # starts a YAML "
        "comment, so quote a value that begins with one; a channel is given by its ID (like "
        "C0123ABCD), not its #name")


def test_an_empty_value_without_a_comment_gets_no_hint() -> None:
    assert error_of(with_line("release_channel:", "release_channel:")) == (
        "releasebot.yml:1: release_channel: must be text (got nothing)")


def test_validator_errors_read_without_pydantics_prefix() -> None:
    """A validator's reason is shown as written, without "value error, " before it."""
    message = error_of(SAMPLE + "tag_prefix: 'bad prefix '\n")
    assert ": tag_prefix: must be " in message
    assert "value error" not in message.lower()
