"""Modals: the request form, the test report form, and reason prompts (pure builders)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot import calendar
from bot.plan import PLAN_LIMIT, PlanField, clean_plan
from bot.policy import Ground, Policy, ReleaseType
from bot.releases import MAX_REF, NewRelease, request_problems
from bot.trains import is_component, parse_order, split_component
from handlers.blocks import Block, FormId, clip, is_id

WORK_ITEM_KINDS = (("!", "mr"), ("#", "issue"), ("INC", "incident"))


def _text_input(block_id: str, label: str, *, multiline: bool = False, optional: bool = False,
                placeholder: str = "", max_length: int = 3000, initial: str = "") -> Block:
    """One text field."""
    element: Block = {"type": "plain_text_input", "action_id": "value", "multiline": multiline,
                      "max_length": max_length}
    if placeholder:
        element["placeholder"] = {"type": "plain_text", "text": clip(placeholder, 150)}
    if initial:
        element["initial_value"] = clip(initial, max_length)
    return {"type": "input", "block_id": block_id, "optional": optional, "element": element,
            "label": {"type": "plain_text", "text": label}}


def _select(block_id: str, label: str, options: list[tuple[str, str]], initial: str | None = None,
            *, optional: bool = False) -> Block:
    """A static select of (value, label) pairs."""
    opts = [{"text": {"type": "plain_text", "text": clip(text, 75)}, "value": value}
            for value, text in options[:100]]
    element: Block = {"type": "static_select", "action_id": "value", "options": opts}
    chosen = next((o for o in opts if o["value"] == initial), None)
    if chosen:
        element["initial_option"] = chosen
    return {"type": "input", "block_id": block_id, "optional": optional, "element": element,
            "label": {"type": "plain_text", "text": label}}


def _modal(callback_id: str, title: str, submit: str, blocks: list[Block],
           metadata: str = "") -> Block:
    """A modal view."""
    return {"type": "modal", "callback_id": callback_id, "private_metadata": metadata,
            "title": {"type": "plain_text", "text": clip(title, 24)},
            "submit": {"type": "plain_text", "text": clip(submit, 24)},
            "close": {"type": "plain_text", "text": "Cancel"}, "blocks": blocks}


def build_request_modal(policy: Policy, channel: str = "") -> Block:
    """Every field of a release request: the first step of the release process."""
    projects = [(key, key) for key in policy.projects]
    types = [(t.value, t.value) for t in ReleaseType if t in policy.policies]
    return _modal(FormId.REQUEST, "Request a release", "Request", [
        _select("project", "Project", projects, projects[0][0] if len(projects) == 1 else None),
        _text_input("ref", "Ref (branch, tag or commit)", placeholder="v1.4.0",
                    max_length=MAX_REF),
        _text_input("more", "More projects, for a release train (one per line: project@ref)",
                    multiline=True, optional=True, placeholder="web@v2.0.0",
                    max_length=3000),
        _text_input("order", "Deploy order (optional; it may only add to depends_on)",
                    optional=True, placeholder="payments, web", max_length=1000),
        _text_input("version", "Version", optional=True, placeholder="1.4.0", max_length=100),
        _text_input("title", "Title", placeholder="Faster checkout", max_length=3000),
        _select("type", "Release type", types, ReleaseType.STANDARD.value),
        _select("ground", "Emergency ground (emergency only)",
                [(g.value, g.label.capitalize()) for g in Ground], optional=True),
        _text_input("reason", "Why it is urgent (emergency only)", multiline=True, optional=True,
                    placeholder="Payouts time out for every merchant since 09:40",
                    max_length=3000),
        _text_input("at", f"Deploy at ({policy.timezone}, YYYY-MM-DD HH:MM)", optional=True,
                    placeholder="2026-12-24 20:00", max_length=16),
        _text_input("window", "Planned window", optional=True, max_length=200,
                    placeholder="Thursday evening window"),
        _text_input("items", "Work items (one per line: !12, #34, INC-5 or a link)",
                    multiline=True, optional=True),
        *_plan_inputs(REQUEST_PLAN_FIELDS, {}),
    ], metadata=channel)


# The parts of the go-live plan the request form asks for; the plan form has them all.
REQUEST_PLAN_FIELDS = (PlanField.IMPACT, PlanField.ROLLBACK, PlanField.DB_SCRIPTS,
                       PlanField.DEPLOY_ORDER)


def _plan_inputs(fields: tuple[PlanField, ...], plan: dict[str, str],
                 required: tuple[str, ...] = ()) -> list[Block]:
    """One optional text field per plan field; required ones say so in their label."""
    return [_text_input(f"plan_{f.value}", _plan_label(f, f.value in required), multiline=True,
                        optional=True, placeholder=f.hint, max_length=min(PLAN_LIMIT, 3000),
                        initial=plan.get(f.value, "")) for f in fields]


def _plan_label(f: PlanField, required: bool) -> str:
    """'Rollback steps (required)'."""
    return f.label.capitalize() + (" (required)" if required else "")


def build_plan_modal(release_id: int, revision: int | None, plan: dict[str, str],
                     required: tuple[str, ...]) -> Block:
    """The whole go-live plan, as it is now, for the requester or release manager to edit."""
    meta = f"{release_id}:{revision if revision is not None else ''}"
    return _modal(FormId.PLAN, f"Go-live plan REL-{release_id}", "Save",
                  _plan_inputs(tuple(PlanField), plan, required), meta)


def plan_values(values: dict[str, Any], fields: tuple[PlanField, ...] = tuple(PlanField)
                ) -> dict[str, str]:
    """The plan fields of a submitted form, field → text, empty ones left out."""
    return clean_plan({f.value: field_value(values, f"plan_{f.value}") for f in fields})


def build_reason_modal(callback_id: str, title: str, label: str, release_id: int,
                       revision: int | None, optional: bool = False,
                       environment: str | None = None) -> Block:
    """Asks for a reason (reject, failed verification or acceptance on `environment`)."""
    meta = f"{release_id}:{revision if revision is not None else ''}"
    if environment:  # the same layout as a button value: `value_environment` reads it
        meta += f"::{environment}"
    return _modal(callback_id, title, "Submit",
                  [_text_input("reason", label, multiline=True, optional=optional)], meta)


def build_report_modal(release_id: int, revision: int | None, tracker: str | None = None
                       ) -> Block:
    """The test report link and open-bug counts; with a `tracker` the counts are its own."""
    meta = f"{release_id}:{revision if revision is not None else ''}"
    if tracker:  # left empty, each count is the tracker's; typed, it may only be higher
        counts = [_text_input(sev, f"Open {sev} bugs (empty: the count in {tracker})",
                              optional=True, max_length=5) for sev in ("A", "B", "C")]
    else:
        counts = [_text_input(sev, f"Open {sev} bugs", initial="0", max_length=5)
                  for sev in ("A", "B", "C")]
    return _modal(FormId.REPORT, "Test report", "Attach",
                  [_text_input("url", "Report link", placeholder="https://…", max_length=2000),
                   *counts], meta)


def field_value(values: dict[str, Any], block_id: str) -> str:
    """The text or selected option of one field of a submitted view."""
    # As typed, not &amp;-escaped: api.slack.com/reference/interaction-payloads/views names none
    state = (values.get(block_id) or {}).get("value") or {}
    if state.get("selected_option"):
        return str(state["selected_option"].get("value") or "")
    return str(state.get("value") or "").strip()


def work_items(text: str) -> tuple[tuple[str, str], ...]:
    """One item per line, its kind guessed from how it is written."""
    items = []
    for line in text.splitlines():
        ref = line.strip()[:500]
        if not ref:
            continue
        kind = next((k for prefix, k in WORK_ITEM_KINDS if ref.upper().startswith(prefix)), "link")
        items.append((kind, ref))
    return tuple(items[:100])


# Where each of the service's request problems is shown in the form.
_REQUEST_FIELDS = {"project": "project", "type": "type", "ref": "ref", "title": "title",
                   "scheduled_at": "at", "version_label": "version",
                   "planned_window": "window", "work_items": "items", "components": "more",
                   "order": "order"}


def more_components(text: str) -> tuple[tuple[tuple[str, str], ...], str | None]:
    """The form's extra `project@ref` lines, or a sentence naming the first line that is not."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if bad := next((line for line in lines if not is_component(line)), None):
        return (), f"Write each project as project@ref, e.g. web@v2.0.0 (not {bad[:40]!r})."
    return tuple(split_component(line) for line in lines), None


_FORM_WORDS = {"ground": "Choose the ground of this emergency release.",
               "reason": "Say why this release is urgent."}


def parse_request_view(values: dict[str, Any], policy: Policy, now: datetime
                       ) -> tuple[NewRelease | None, dict[str, str]]:
    """A submitted request form → a request, or errors by block id to show in the modal.

    The form reads its fields and the time; the service's own rules say what is wrong.
    """
    errors: dict[str, str] = {}
    scheduled = None
    if at_text := field_value(values, "at"):
        try:
            scheduled = calendar.parse_local(at_text, policy)
        except ValueError as exc:  # OverflowError: before year 1 in UTC
            errors["at"] = str(exc)
    more, bad = more_components(field_value(values, "more"))
    if bad:
        errors["more"] = bad
    new = NewRelease(
        project=field_value(values, "project"), ref=field_value(values, "ref"),
        more=more, order=parse_order(field_value(values, "order")),
        title=field_value(values, "title"),
        type=field_value(values, "type") or ReleaseType.STANDARD.value,
        version_label=field_value(values, "version"), scheduled_at=scheduled,
        planned_window=field_value(values, "window"),
        work_items=work_items(field_value(values, "items")),
        plan=plan_values(values, REQUEST_PLAN_FIELDS),
        ground=field_value(values, "ground"), reason=field_value(values, "reason"),
    )
    problems = request_problems(new, policy=policy, now=now)
    for name, sentence in _FORM_WORDS.items():  # the command's sentences name its options
        if name in problems and not getattr(new, name):
            problems[name] = sentence
    for name, sentence in problems.items():
        errors.setdefault(_REQUEST_FIELDS.get(name, name), sentence)  # plan_<field> as is
    if errors:
        return None, {block: clip(sentence, 150) for block, sentence in errors.items()}
    return new, {}


def parse_report_view(values: dict[str, Any]) -> tuple[tuple[str, dict[str, int]] | None,
                                                      dict[str, str]]:
    """A submitted report form → (url, bug counts), or errors by block id."""
    errors: dict[str, str] = {}
    url = field_value(values, "url")
    if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
        errors["url"] = "A link starting with https://"
    counts: dict[str, int] = {}  # a count left empty is not given: 0, or the tracker's
    for sev in ("A", "B", "C"):
        raw = field_value(values, sev)
        if raw and not (raw.isascii() and raw.isdecimal()):
            errors[sev] = "A whole number, 0 or more."
        elif len(raw) > 5:  # as the command takes them; the bot refuses more
            errors[sev] = "At most 99999."
        elif raw:
            counts[sev] = int(raw)
    return (None, errors) if errors else ((url, counts), {})


def parse_metadata(meta: str) -> tuple[int, int | None]:
    """`release_id:revision` from a modal's private_metadata."""
    rid, _, rev = meta.partition(":")
    rev = rev.partition(":")[0]
    if not is_id(rid):
        raise ValueError("bad modal metadata")
    return int(rid), int(rev) if is_id(rev) else None
