"""The `/release` text, parsed into a subcommand with its arguments (pure).

The subcommands themselves are one table, `handlers.commands.SUBCOMMANDS`, passed in here.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.releases import parse_release_id
from bot.workflow import Refused
from handlers.blocks import escape

Handler = Callable[..., Awaitable[Any]]  # a subcommand's work (handlers/commands.py)


@dataclass(frozen=True)
class Sub:
    """One subcommand: its usage line, what it does, its arity and the function that runs it.

    Arity: whether a release ID comes first, and how many words it needs after that.
    """

    name: str
    usage: str
    about: str
    handler: Handler
    takes_id: bool = True
    min_args: int = 0
    needs: str = ""  # what to ask for when the words after the ID are missing


_QUOTES = str.maketrans({"“": '"', "”": '"', "\u00a0": " "})
MAX_COMMAND = 4000  # Slack's own limit for slash command text is about this
_OPTIONS = {"--type": "type", "--at": "at", "--version": "version", "--ground": "ground",
            "--reason": "reason", "--order": "order"}
# The subcommands that take options, and which: a reviewer corrects the type with its ground.
_TAKES = {"request": frozenset(_OPTIONS.values()), "review": frozenset({"type", "ground"})}


@dataclass(frozen=True)
class Parsed:
    """A subcommand, its release number (if it takes one), its words and its --options."""

    sub: Sub
    release_id: int | None = None
    words: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    unknown: str = ""  # the word typed, when it named no subcommand

    @property
    def rest(self) -> str:
        """The words after the ID as one string (reasons, comments, titles)."""
        return " ".join(self.words)


class UsageError(Refused):
    """Input that doesn't fit the subcommand; the sentence ends with its usage line."""

    def __init__(self, sub: Sub | None, problem: str, *, usage: str | None = None) -> None:
        if usage is None:
            usage = f"Usage: `{sub.usage}`" if sub else "Try `/release help`."
        super().__init__(f"{problem} {usage}".strip())
        self.sub = sub


def reason_command(p: Parsed) -> str:
    """The command that was typed, with a reason placeholder where its reason goes.

    The words the usage line puts between the ID and the free text (a verdict such as `fix`) are
    kept as typed, and so are the options; `/release decide REL-3 fix <reason…>`.
    """
    between = p.sub.usage.split("<ID>", 1)[-1].split()
    kept = next((i for i, word in enumerate(between) if "…" in word or word.startswith("[--")),
                len(between))
    options = [f"--{key} {_quoted(value)}" for key, value in p.options.items()]
    return " ".join([f"/release {p.sub.name} REL-{p.release_id}", *p.words[:kept], *options,
                     "<reason…>"])


def _quoted(value: str) -> str:
    """An option's value as it must be typed again: quoted when it holds a space."""
    return f'"{value}"' if " " in value else value


def unescape(text: str) -> str:
    """Slash-command text as typed: Slack sends `&`, `<` and `>` as `&amp;`, `&lt;`, `&gt;`."""
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def split_words(text: str) -> list[str]:
    """Split on spaces; double quotes (straight or curly) group words, apostrophes are text."""
    lexer = shlex.shlex(text.translate(_QUOTES), posix=True)
    lexer.whitespace_split, lexer.quotes, lexer.escape = True, '"', ""
    lexer.commenters = ""
    try:
        return list(lexer)
    except ValueError:
        raise UsageError(None, "A double quote is not closed.") from None


def parse_command(text: str, subcommands: Mapping[str, Sub]) -> Parsed:
    """`/release` text → Parsed, or UsageError with the subcommand's usage line."""
    if len(text) > MAX_COMMAND:
        raise UsageError(None, f"That is too long ({len(text)} characters; at most {MAX_COMMAND}).")
    words = split_words(text)
    if not words:
        return Parsed(subcommands["help"])
    name = words[0].lower()
    sub = subcommands.get(name)
    if sub is None:
        return Parsed(subcommands["help"], unknown=name[:30])  # anything unknown: the usage
    words, options = _options(sub, words[1:])
    if not sub.takes_id:
        return Parsed(sub, None, tuple(words), options)
    if not words:
        raise UsageError(sub, "Which release?")
    try:
        release_id = parse_release_id(words[0])
    except Refused as exc:
        raise UsageError(sub, exc.sentence) from None
    if len(words) - 1 < sub.min_args:
        usage = sub.usage.replace("<ID>", f"REL-{release_id}")
        raise UsageError(sub, f"{sub.needs or 'Something is missing'}:", usage=f"`{usage}`")
    return Parsed(sub, release_id, tuple(words[1:]), options)


def _options(sub: Sub, words: list[str]) -> tuple[list[str], dict[str, str]]:
    """Take `--name value` pairs out (only `request` and `review` have options)."""
    rest: list[str] = []
    options: dict[str, str] = {}
    it = iter(words)
    for word in it:
        if not word.startswith("--") or sub.name not in _TAKES:
            rest.append(word)
            continue
        key = _OPTIONS.get(word.lower().split("=", 1)[0])
        if key is None or key not in _TAKES[sub.name]:
            raise UsageError(sub, f"Unknown option {word[:30]!r}.")
        value = word.split("=", 1)[1] if "=" in word else next(it, None)
        if value is None:
            raise UsageError(sub, f"{word} needs a value.")
        options[key] = value
    return rest, options


_BUG = re.compile(r"^([ABCabc])\s*[=:]\s*(\d{1,5})$")


def parse_bug_counts(sub: Sub, words: tuple[str, ...]) -> dict[str, int]:
    """`A=0 B=1 C=3` → {'A': 0, 'B': 1, 'C': 3}; missing severities count 0."""
    counts: dict[str, int] = {}
    for word in words:
        match = _BUG.match(word)
        if not match:
            raise UsageError(sub, f"{word[:30]!r} is not a bug count.")
        severity = match.group(1).upper()
        if severity in counts:  # which one was meant is a guess we don't make
            raise UsageError(sub, f"{severity} is given twice.")
        counts[severity] = int(match.group(2))
    return counts


def parse_items(sub: Sub, words: tuple[str, ...]) -> tuple[int, ...]:
    """`1 2 3` or `1,2` → (1, 2, 3)."""
    items = [w for word in words for w in re.split(r"[,\s]+", word) if w]
    if not items or not all(w.isdecimal() and len(w) < 4 for w in items):
        raise UsageError(sub, "Give checklist item numbers.")
    return tuple(int(w) for w in items)


def parse_verdict(sub: Sub, words: tuple[str, ...]) -> tuple[bool, str]:
    """`pass [note…]` / `fail note…` → (passed, note)."""
    verdict = words[0].lower()
    if verdict not in ("pass", "fail"):
        raise UsageError(sub, "Say pass or fail.")
    return verdict == "pass", " ".join(words[1:])


def help_text(subcommands: Mapping[str, Sub]) -> str:
    """Every subcommand with its usage, for `/release help`."""
    lines = [f"• `{escape(s.usage)}` — {escape(s.about)}" for s in subcommands.values()]
    return "*ReleaseBot* — release IDs look like REL-42 (the number alone works too).\n" + (
        "\n".join(lines))
