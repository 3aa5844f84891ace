"""The reminder digest: one direct message naming every release that waits on one person."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.readmodel import ReleaseView
from bot.workflow import State
from handlers.blocks import (
    MAX_BLOCKS,
    Block,
    clip,
    context,
    escape,
    link,
    section,
    subject_text,
)
from handlers.cards import approval_buttons, rollback_button

Detail = dict[str, Any]
LISTED = MAX_BLOCKS - 2  # one block per release, between the heading and the "more" line


def _escalation(view: ReleaseView, detail: Detail) -> str:
    roles = detail.get("waiting_on") or view.missing_roles
    return (f"⏰ still waits for sign-off by {escape(', '.join(roles))}: "
            "please chase it or decide")


# What each kind of wait says, after the release's line (the kinds bot.jobs.URGENCY names).
WAITS: dict[str, Callable[[ReleaseView, Detail], str]] = {
    "escalation": _escalation,
    "verify_deadline": lambda view, d: (
        "⚠️ live in production and still not verified: if in doubt, roll it back"),
    "approval": lambda view, d: "✍️ waits for your sign-off",
    "decide": lambda view, d: (
        "🧭 failed its online verification, waits for an executive's decision: "
        f"`/release decide {view.release.rel_id} fix|accept &lt;reason&gt;`"),
    "verify": lambda view, d: (
        "✔️ live in production, waits for verification: "
        f"`/release verify {view.release.rel_id} pass|fail`"),
    "report": lambda view, d: (
        "🧪 in test, waits for a test report: "
        f"`/release report {view.release.rel_id} &lt;url&gt; A=0 B=0 C=0`"),
}


@dataclass(frozen=True)
class DigestLine:
    """One release in a digest: what it waits for and where its card is."""

    view: ReleaseView
    waits: str
    link: str | None = None
    detail: Detail = field(default_factory=dict)


def build_digest(lines: Sequence[DigestLine], more: int, now: datetime
                 ) -> tuple[str, list[Block]]:
    """The digest's text and blocks: one section per release, its button beside it.

    At most LISTED releases are drawn (Slack shows 50 blocks); the others, and `more` that
    were never listed, are counted in a last line.
    """
    shown = list(lines[:LISTED])
    hidden = more + len(lines) - len(shown)
    total = len(shown) + hidden
    ids = [line.view.release.rel_id for line in shown]
    if total == 1:
        heading = f"{ids[0]} is waiting on you"
    else:
        heading = f"{total} releases are waiting on you"
    blocks: list[Block] = [section(f"⏰ *{heading}*")]
    blocks += [section(line_text(line, now), line_button(line)) for line in shown]
    if hidden:
        blocks.append(context(f"…and {hidden} more: `/release list` shows every release in "
                              "flight."))
    text = clip(f"Reminder: {heading}: {', '.join(ids)}" + ("…" if hidden else ""), 1000)
    return text, blocks


def line_text(line: DigestLine, now: datetime) -> str:
    """`REL-5 · payments v1.1.0 — Title`, linked to its card, then what it waits for."""
    view = line.view
    rel = view.release
    name = link(line.link, rel.rel_id)
    waits = WAITS[line.waits](view, line.detail) if line.waits in WAITS else escape(line.waits)
    return (f"*{name}* · {subject_text(view)} — {escape(clip(rel.title, 200))}"
            f"\n{waits} · {view.state.label} for {waited(now - rel.state_since)}")


def line_button(line: DigestLine) -> Block | None:
    """Approve for a sign-off, Roll back past the verification deadline; else the card's link."""
    view = line.view
    if line.waits == "approval" and view.state is State.READY_FOR_SIGNOFF:
        return approval_buttons(view)[0]
    if line.waits == "verify_deadline" and view.state is State.DEPLOYED:
        return rollback_button(view)
    return None


def waited(span: timedelta) -> str:
    """A wait as people say it: 45 min, 5 h, 3 d."""
    minutes = int(span.total_seconds() // 60)
    if minutes < 60:
        return f"{max(minutes, 0)} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h"
    return f"{minutes // (24 * 60)} d"
