"""Block Kit, built by pure functions; action and callback ids are defined here once."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from bot.readmodel import ReleaseView
from bot.workflow import State
from storage.models import ReleaseComponent

Block = dict[str, Any]

MAX_TEXT = 3000  # Slack's limit for one text object
MAX_BLOCKS = 50
MAX_VALUE = 255  # button values stay short: they carry ids, never user text
MAX_BUTTON = 75
MAX_HEADER = 150


class ActionId:
    """Action ids: used to render the buttons and to register their listeners."""

    APPROVE = "release_approve"
    REJECT = "release_reject"
    REPORT = "release_report"
    START_TESTING = "release_start_testing"
    DEPLOY = "release_deploy"
    VERIFY_PASS = "release_verify_pass"
    VERIFY_FAIL = "release_verify_fail"
    ROLLBACK = "release_rollback"
    CLOSE = "release_close"
    ABANDON = "release_abandon"
    ARM = "release_arm"
    CHECKLIST = "release_checklist"
    EDIT_PLAN = "release_edit_plan"
    PLAN_OK = "release_plan_ok"
    PLAN_CHANGES = "release_plan_changes"
    NOTES = "release_notes"
    DECIDE_FIX = "release_decide_fix"
    DECIDE_ACCEPT = "release_decide_accept"


class FormId:
    """Modal callback ids."""

    REQUEST = "release_request_form"
    REPORT = "release_report_form"
    REJECT = "release_reject_form"
    VERIFY_FAIL = "release_verify_fail_form"
    PLAN = "release_plan_form"
    PLAN_CHANGES = "release_plan_changes_form"
    ABANDON = "release_abandon_form"
    DECIDE_FIX = "release_decide_fix_form"
    DECIDE_ACCEPT = "release_decide_accept_form"


STATE_ICON = {
    State.REQUESTED: "📝", State.TESTING: "🧪", State.READY_FOR_SIGNOFF: "✍️",
    State.APPROVED: "✅", State.SCHEDULED: "🗓️", State.DEPLOYING: "🚀", State.DEPLOYED: "📦",
    State.VERIFICATION_FAILED: "⚠️", State.VERIFIED: "✔️", State.OBSERVING: "👀",
    State.CLOSED: "🏁", State.REJECTED: "⛔", State.CANCELLED: "🚫", State.ACCEPTANCE_FAILED: "🚧",
    State.DEPLOY_FAILED: "❌", State.ROLLING_BACK: "⏪", State.ROLLED_BACK: "↩️",
}


def escape(text: str) -> str:
    """User text as inert mrkdwn: no mentions, links or @channel can come from it."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def an(word: str) -> str:
    """'an emergency', 'a standard': user text with its article, escaped."""
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {escape(word)}"


def safe_url(url: str) -> str:
    """A URL safe inside <url|label>: the delimiters percent-encoded, & escaped."""
    return (url.replace("&", "&amp;").replace("|", "%7C").replace("<", "%3C")
            .replace(">", "%3E").replace(" ", "%20"))


def link(url: object, label: str, fallback: str | None = None) -> str:
    """`<url|label>` for an http(s) URL, its delimiters made inert; else `fallback` or the label.

    Every stored URL reaches mrkdwn through here: a `|` or `>` in it must not set the label or
    end the link. `label` is mrkdwn already (escape user text first).
    """
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        return f"<{safe_url(url)}|{label}>"
    return label if fallback is None else fallback


def duration(seconds: float) -> str:
    """How long something took, as people say it: under a second, 12 s, 3 min 5 s, 2 h 10 min."""
    secs = int(seconds)
    if secs < 1:
        return "under a second"
    if secs < 60:
        return f"{secs} s"
    if secs < 3600:
        minutes, rest = divmod(secs, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, minutes = divmod(secs // 60, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """At most `limit` characters, with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def mention(user: str) -> str:
    """A Slack mention of a user id that came from Slack itself; the bot names itself."""
    if user == "releasebot":
        return "ReleaseBot"
    return f"<@{user}>" if user and user[0] in "UW" and user.isalnum() else escape(user)


def member(member_id: str) -> str:
    """A policy role member: a user's mention, or a user group's."""
    if member_id[:1] == "S" and member_id.isalnum():
        return f"<!subteam^{member_id}>"
    return mention(member_id)


def section(text: str, accessory: Block | None = None) -> Block:
    """A mrkdwn section, clipped to Slack's limit."""
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}
    if accessory:
        block["accessory"] = accessory
    return block


def context(*texts: str) -> Block:
    """A small grey line."""
    return {"type": "context",
            "elements": [{"type": "mrkdwn", "text": clip(t)} for t in texts[:10]]}


def button(label: str, action_id: str, value: str, style: str | None = None,
           confirm: Block | None = None) -> Block:
    """A button whose value is an id, never user text."""
    btn: Block = {"type": "button", "action_id": action_id, "value": value[:MAX_VALUE],
                  "text": {"type": "plain_text", "text": clip(label, MAX_BUTTON), "emoji": True}}
    if style:
        btn["style"] = style
    if confirm:
        btn["confirm"] = confirm
    return btn


def confirm(title: str, text: str, yes: str, danger: bool = False) -> Block:
    """A native confirmation dialog."""
    dialog: Block = {"title": {"type": "plain_text", "text": clip(title, 100)},
                     "text": {"type": "mrkdwn", "text": clip(text, 300)},
                     "confirm": {"type": "plain_text", "text": clip(yes, 30)},
                     "deny": {"type": "plain_text", "text": "Cancel"}}
    if danger:
        dialog["style"] = "danger"
    return dialog


def button_value(view: ReleaseView, environment: str | None = None) -> str:
    """`id:revision:state[:environment]`: lets a click tell whether its card is stale.

    A verdict button names its environment: "Staging OK" must never pass production.
    """
    rel = view.release
    value = f"{rel.id}:{rel.revision}:{rel.state}"
    return f"{value}:{environment}" if environment else value


def value_environment(value: str) -> str | None:
    """The environment a button value or form's metadata names, if any (see `button_value`)."""
    parts = value.split(":", 3)
    return (parts[3] or None) if len(parts) > 3 else None


def parse_value(value: str) -> tuple[int, int | None, str | None]:
    """A button value back into (release id, revision, state)."""
    parts = value.split(":")
    if not is_id(parts[0]):
        raise ValueError(f"bad button value {value[:40]!r}")
    revision = int(parts[1]) if len(parts) > 1 and is_id(parts[1]) else None
    return int(parts[0]), revision, parts[2] if len(parts) > 2 else None


def is_id(text: str) -> bool:
    """ASCII digits that fit an id (int() would take "²" apart or refuse 5000 digits)."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def local_time(dt: datetime | None, tz: ZoneInfo) -> str:
    """A stored UTC time as people in the policy's timezone read it."""
    return dt.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if dt else "—"


def title_line(view: ReleaseView) -> str:
    """`REL-42 · payments v1.1.0 — Faster checkout` (plain text for the header); a train names
    its projects, or the first and how many more."""
    rel = view.release
    label = f" {rel.version_label}" if rel.version_label else ""
    names = [c.project for c in view.components] if view.is_train else [rel.project]
    projects = " + ".join(names)
    if len(projects) > 60:
        projects = f"{names[0]} + {len(names) - 1} more"
    return clip(f"{rel.rel_id} · {projects}{label} — {rel.title}", MAX_HEADER)


def ref_text(view: ReleaseView) -> str:
    """`v1.2.0` @ `3f2a9c1` once pinned, else just the ref."""
    ref = f"`{escape(view.release.ref)}`"
    return f"{ref} @ `{view.pin.short}`" if view.pin else ref


SHOWN_COMPONENTS = 3  # a one-line summary names this many of a train's projects


def component_text(comp: ReleaseComponent, pinned: bool = False) -> str:
    """`payments` `v1.2.0` @ `3f2a9c1`: one component, its ref and (once pinned) its commit."""
    sha = f" @ `{escape(comp.pinned_sha[:7])}`" if pinned and comp.pinned_sha else ""
    return f"{escape(clip(comp.project, 40))} `{escape(clip(comp.ref, 60))}`{sha}"


def components_line(components: Sequence[ReleaseComponent], pinned: bool = False) -> str:
    """A train in one line, in deploy order: a few components, then how many more."""
    shown = " → ".join(component_text(c, pinned) for c in components[:SHOWN_COMPONENTS])
    more = len(components) - SHOWN_COMPONENTS
    return shown + (f" → +{more} more" if more > 0 else "")


def subject_text(view: ReleaseView) -> str:
    """What a release ships, in one line: `payments `v1.1.0` @ `3f2a9c1``, or its train."""
    if view.is_train:
        return components_line(view.components, view.pin is not None)
    return f"{escape(view.release.project)} {ref_text(view)}"
