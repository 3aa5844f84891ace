"""`/release` text → subcommand, release ID, words and options; mistakes → a usage sentence."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.workflow import Refused
from handlers.blocks import escape
from handlers.commands import SUBCOMMANDS
from handlers.parse import (
    Parsed,
    UsageError,
    help_text,
    parse_bug_counts,
    parse_command,
    parse_items,
    parse_verdict,
    reason_command,
    split_words,
)

# (typed text, subcommand, release number, words after the ID)
EVERY_SUBCOMMAND = [
    ("request", "request", None, ()),
    ("request payments v1.1.0 Faster checkout", "request", None,
     ("payments", "v1.1.0", "Faster", "checkout")),
    ("list", "list", None, ()),
    ("list mine", "list", None, ("mine",)),
    ("status REL-42", "status", 42, ()),
    ("test rel42", "test", 42, ()),
    ("report 42 https://ci.example/r/1 A=0 B=1 C=3", "report", 42,
     ("https://ci.example/r/1", "A=0", "B=1", "C=3")),
    ("accept REL-42 the C bugs are cosmetic", "accept", 42,
     ("the", "C", "bugs", "are", "cosmetic")),
    ("approve REL-42", "approve", 42, ()),
    ("approve rel-42 looks good", "approve", 42, ("looks", "good")),
    ("reject REL-42 build is red", "reject", 42, ("build", "is", "red")),
    ("ref REL-42 v1.1.1", "ref", 42, ("v1.1.1",)),
    ("check REL-42 1 2", "check", 42, ("1", "2")),
    ("override REL-42 the CEO signed off", "override", 42, ("the", "CEO", "signed", "off")),
    ("deploy REL-42", "deploy", 42, ()),
    ("deploy REL-42 staging", "deploy", 42, ("staging",)),
    ("verify REL-42 pass", "verify", 42, ("pass",)),
    ("verify 42 fail checkout returns 500", "verify", 42, ("fail", "checkout", "returns", "500")),
    ("arm REL-42", "arm", 42, ()),
    ("rollback REL-42", "rollback", 42, ()),
    ("rollback REL-42 error rate doubled", "rollback", 42, ("error", "rate", "doubled")),
    ("abandon REL-42 stuck on a manual job", "abandon", 42, ("stuck", "on", "a", "manual", "job")),
    ("cancel REL-42", "cancel", 42, ()),
    ("close REL-42", "close", 42, ()),
    ("notes REL-42", "notes", 42, ()),
    ("plan REL-42", "plan", 42, ()),
    ("plan REL-42 rollback redeploy v1.0.0", "plan", 42, ("rollback", "redeploy", "v1.0.0")),
    ("review REL-42 ok", "review", 42, ("ok",)),
    ("review REL-42 changes add the DB rollback", "review", 42,
     ("changes", "add", "the", "DB", "rollback")),
    ("review REL-42 changes --type standard not urgent", "review", 42,
     ("changes", "not", "urgent")),
    ("decide REL-42 fix payouts must work", "decide", 42, ("fix", "payouts", "must", "work")),
    ("help", "help", None, ()),
    ("calendar", "calendar", None, ()),
    ("STATUS Rel-7", "status", 7, ()),
]


def parse(text: str) -> Parsed:
    """`/release` text parsed against the bot's one subcommand table."""
    return parse_command(text, SUBCOMMANDS)


def usage_of(name: str) -> str:
    """The usage line a refusal of this subcommand ends with."""
    return f"Usage: `{SUBCOMMANDS[name].usage}`"


def refusal(text: str) -> str:
    """The sentence a person is told for this typed text."""
    with pytest.raises(UsageError) as caught:
        parse(text)
    assert isinstance(caught.value, Refused)
    return caught.value.sentence


@pytest.mark.parametrize(("text", "name", "release_id", "words"), EVERY_SUBCOMMAND)
def test_every_subcommand_parses(text: str, name: str, release_id: int | None,
                                 words: tuple[str, ...]) -> None:
    """Each documented subcommand gives its Sub, its release number and the words after it."""
    parsed = parse(text)
    assert (parsed.sub.name, parsed.release_id, parsed.words) == (name, release_id, words)


def test_the_table_covers_every_subcommand() -> None:
    """No subcommand is left out of the table above."""
    assert {name for _, name, _, _ in EVERY_SUBCOMMAND} == set(SUBCOMMANDS)


@pytest.mark.parametrize("typed", ["REL-42", "rel-42", "rel42", "REL42", "42", " 42 "])
def test_release_ids_in_every_spelling(typed: str) -> None:
    """`REL-42`, `rel42` and the bare number all mean release 42."""
    assert parse(f'status "{typed}"').release_id == 42


def test_nothing_typed_is_help() -> None:
    """A bare `/release` shows the help."""
    assert parse("").sub.name == "help"
    assert parse("   ").sub.name == "help"


def test_rest_joins_the_words_after_the_id() -> None:
    """Reasons and comments come back as one string."""
    assert parse("reject REL-42 build   is red").rest == "build is red"


@pytest.mark.parametrize("name", [s.name for s in SUBCOMMANDS.values() if s.takes_id])
def test_missing_id_names_the_usage(name: str) -> None:
    """A subcommand without its release ID is refused with its usage line."""
    sentence = refusal(name)
    assert sentence.startswith("Which release?")
    assert sentence.endswith(usage_of(name))


@pytest.mark.parametrize("name", [s.name for s in SUBCOMMANDS.values() if s.min_args])
def test_missing_arguments_name_the_usage(name: str) -> None:
    """A subcommand that needs words after the ID is refused naming what is missing."""
    sentence = refusal(f"{name} REL-42")
    sub = SUBCOMMANDS[name]
    assert sub.needs and sentence == (
        f"{sub.needs}: `{sub.usage.replace('<ID>', 'REL-42')}`")


@pytest.mark.parametrize("bad", ["PR-42", "REL-", "REL-x", "4 2", "-1", "1234567890"])
def test_a_bad_release_id_is_refused(bad: str) -> None:
    """Something that isn't a release ID is quoted back with the usage line."""
    sentence = refusal(f'status "{bad}"')
    assert "is not a release ID" in sentence
    assert sentence.endswith(usage_of("status"))


def test_an_unknown_subcommand_shows_the_usage() -> None:
    """A typo names the word and shows every subcommand, as `/release help` does."""
    parsed = parse("deploi REL-42")
    assert (parsed.sub.name, parsed.unknown) == ("help", "deploi")


def test_a_missing_reason_is_named() -> None:
    """`reject 1` asks for the reason, with the command to type."""
    assert refusal("reject 1") == "Please give a reason: `/release reject REL-1 <reason…>`"
    assert refusal("ref 2").startswith("Give the new ref: `/release ref REL-2 <new ref>")


@pytest.mark.parametrize(("text", "command"), [
    ("reject 3 x", "/release reject REL-3 <reason…>"),
    ("decide 3 fix", "/release decide REL-3 fix <reason…>"),
    ("verify 3 fail", "/release verify REL-3 fail <reason…>"),
    ("review 3 changes --type emergency --ground live_bug",
     "/release review REL-3 changes --type emergency --ground live_bug <reason…>"),
])
def test_a_reason_refusal_names_the_command_typed(text: str, command: str) -> None:
    """The verdict and options typed are kept; the placeholder stands where the reason goes."""
    assert reason_command(parse(text)) == command


def test_help_agrees_with_the_readme() -> None:
    """Every subcommand of README's table is in help, with the same arguments and limits."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    rows = [line.split(" | ")[0] for line in readme.splitlines() if line.startswith("| `/release")]
    named = {name for row in rows for name in re.findall(r"`/release (\w+)", row)}
    assert named == set(SUBCOMMANDS)
    text = help_text(SUBCOMMANDS)
    assert "`/release notes &lt;ID&gt; [publish]`" in text
    assert "until its production deploy starts" in SUBCOMMANDS["cancel"].about


def test_request_options() -> None:
    """`--type`, `--at` and `--version` come out as options, the rest is project, ref, title."""
    parsed = parse('request payments v1.1.0 Faster checkout --type hotfix '
                   '--at "2026-12-24 20:00" --version 1.1.0')
    assert parsed.words == ("payments", "v1.1.0", "Faster", "checkout")
    assert parsed.options == {"type": "hotfix", "at": "2026-12-24 20:00", "version": "1.1.0"}


def test_review_takes_the_type_and_ground_only() -> None:
    """A reviewer corrects the type (with a ground for an emergency); other options refuse."""
    parsed = parse("review REL-6 ok --type emergency --ground live_bug Payouts hang")
    assert parsed.words == ("ok", "Payouts", "hang")
    assert parsed.options == {"type": "emergency", "ground": "live_bug"}
    assert refusal("review REL-6 ok --at 20:00") == (
        f"Unknown option '--at'. {usage_of('review')}")
    assert parse("decide REL-6 fix --type wrong").words == ("fix", "--type", "wrong")


def test_request_options_with_equals_and_any_case() -> None:
    """`--TYPE=emergency` works like `--type emergency`."""
    parsed = parse("request payments v2 --TYPE=emergency")
    assert parsed.options == {"type": "emergency"}


def test_curly_quotes_group_like_straight_ones() -> None:
    """Phones type curly quotes; they group words just the same."""
    parsed = parse("request payments v1 “Big launch” --at “2026-12-24 20:00”")
    assert parsed.words == ("payments", "v1", "Big launch")
    assert parsed.options == {"at": "2026-12-24 20:00"}


def test_non_breaking_spaces_separate_words() -> None:
    """A non-breaking space pasted from a document is a plain space."""
    assert parse("status\u00a0REL-42").release_id == 42


def test_apostrophes_are_plain_text() -> None:
    """`Fix user's login` keeps its apostrophe and needs no closing quote."""
    parsed = parse("request payments v1 Fix user's login")
    assert parsed.words == ("payments", "v1", "Fix", "user's", "login")
    assert parse("reject 42 it's broken, don't ship").rest == "it's broken, don't ship"


def test_backslashes_and_hashes_are_plain_text() -> None:
    """No shell escapes or comments: what people type is what they get."""
    assert parse(r"reject 42 C:\temp #3 is wrong").rest == r"C:\temp #3 is wrong"


@pytest.mark.parametrize("text", ['request payments v1 "Big launch', "reject 42 “oops"])
def test_an_unclosed_double_quote_is_a_clear_error(text: str) -> None:
    """An unclosed quote is refused in plain words, not with a parser error."""
    assert refusal(text) == "A double quote is not closed. Try `/release help`."


def test_an_unknown_option_is_refused() -> None:
    """`--force` is not an option of `request`."""
    sentence = refusal("request payments v1 --force")
    assert sentence.startswith("Unknown option '--force'.")
    assert sentence.endswith(usage_of("request"))


def test_an_option_without_value_is_refused() -> None:
    """`--at` at the very end has no value."""
    sentence = refusal("request payments v1 --at")
    assert sentence.startswith("--at needs a value.")
    assert sentence.endswith(usage_of("request"))


def test_dashes_are_text_outside_request() -> None:
    """A reason may contain `--`: only `request` takes options."""
    assert parse("reject 42 --type is wrong").rest == "--type is wrong"


def test_split_words() -> None:
    """Spaces split, double quotes group, and the quotes themselves disappear."""
    assert split_words('a  "b c"\td') == ["a", "b c", "d"]


@pytest.mark.parametrize(("words", "counts"), [
    (("A=0", "B=1", "C=3"), {"A": 0, "B": 1, "C": 3}),
    (("c:2",), {"C": 2}),
    (("a=1", "C=99999"), {"A": 1, "C": 99999}),
    ((), {}),
])
def test_bug_counts(words: tuple[str, ...], counts: dict[str, int]) -> None:
    """`A=0 B=1 C=3` and `c:2` are open-bug counts by severity."""
    assert parse_bug_counts(SUBCOMMANDS["report"], words) == counts


@pytest.mark.parametrize("bad", ["D=1", "A=-1", "A=x", "A=", "A=123456", "A==1", "AB=1", "A 1"])
def test_bad_bug_counts_are_refused(bad: str) -> None:
    """Anything else is quoted back with the `report` usage."""
    with pytest.raises(UsageError) as caught:
        parse_bug_counts(SUBCOMMANDS["report"], ("A=0", bad))
    assert caught.value.sentence.startswith(f"{bad!r} is not a bug count.")
    assert caught.value.sentence.endswith(usage_of("report"))


@pytest.mark.parametrize(("words", "items"), [
    (("1", "2"), (1, 2)),
    (("1,2",), (1, 2)),
    (("1,", "2,3"), (1, 2, 3)),
    (("7",), (7,)),
])
def test_checklist_items(words: tuple[str, ...], items: tuple[int, ...]) -> None:
    """Item numbers separated by spaces or commas."""
    assert parse_items(SUBCOMMANDS["check"], words) == items


@pytest.mark.parametrize("words", [(), ("one",), ("1", "x"), ("1000",), (",",), ("-1",),
                                   ("²",), ("1", "①")])
def test_bad_checklist_items_are_refused(words: tuple[str, ...]) -> None:
    """Anything but item numbers (including digit-like symbols) gets the `check` usage."""
    with pytest.raises(UsageError) as caught:
        parse_items(SUBCOMMANDS["check"], words)
    assert caught.value.sentence.endswith(usage_of("check"))


@pytest.mark.parametrize(("words", "verdict"), [
    (("pass",), (True, "")),
    (("PASS", "all", "good"), (True, "all good")),
    (("fail", "checkout", "500s"), (False, "checkout 500s")),
])
def test_verdicts(words: tuple[str, ...], verdict: tuple[bool, str]) -> None:
    """`pass`/`fail` with an optional note."""
    assert parse_verdict(SUBCOMMANDS["verify"], words) == verdict


def test_a_verdict_other_than_pass_or_fail_is_refused() -> None:
    """`maybe` is not a verdict."""
    with pytest.raises(UsageError) as caught:
        parse_verdict(SUBCOMMANDS["verify"], ("maybe",))
    assert caught.value.sentence == f"Say pass or fail. {usage_of('verify')}"


def test_help_lists_every_subcommand() -> None:
    """`/release help` shows each usage line, its `<placeholders>` escaped (not links)."""
    text = help_text(SUBCOMMANDS)
    assert "REL-42" in text
    assert "<" not in text and "`/release status &lt;ID&gt;`" in text
    for sub in SUBCOMMANDS.values():
        assert f"`{escape(sub.usage)}` — {escape(sub.about)}" in text


def test_a_repeated_severity_is_refused() -> None:
    """`A=0 A=3` is refused rather than one count silently winning."""
    with pytest.raises(UsageError) as caught:
        parse_bug_counts(SUBCOMMANDS["report"], ("A=0", "A=3"))
    assert caught.value.sentence.startswith("A is given twice. Usage: `/release report")
