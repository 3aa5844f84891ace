"""The release card: one message per release, redrawn in place as it changes."""

from __future__ import annotations

from collections.abc import Callable
from zoneinfo import ZoneInfo

from bot.mergeback import missing_labels
from bot.plan import listed
from bot.policy import ChecklistItem
from bot.readmodel import ReleaseView
from bot.workflow import (
    BEFORE_DEPLOY,
    LIVE,
    UNTESTED,
    Event,
    State,
    allowed_events,
    merge_back_sentence,
)
from handlers.blocks import (
    STATE_ICON,
    ActionId,
    Block,
    an,
    button,
    button_value,
    clip,
    component_text,
    confirm,
    context,
    escape,
    link,
    local_time,
    mention,
    ref_text,
    section,
    title_line,
)
from handlers.render import ground_text, sole_signer_sentence
from storage.models import Acceptance


def build_release_card(view: ReleaseView, tz: ZoneInfo, *,
                       matrix: bool = True) -> tuple[str, list[Block]]:
    """The card's fallback text and blocks, with only the buttons the state allows.

    A train's card shows its matrix (components × environments) unless `matrix` is False.
    """
    rel = view.release
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": title_line(view)}},
        section(summary_text(view, tz)),
        section(progress_text(view, tz)),
    ]
    if view.is_train and matrix:
        blocks.append(section(matrix_text(view)))
    if notes := notes_text(view):
        blocks.append(context(notes))
    if actions := card_buttons(view):
        blocks.append({"type": "actions", "block_id": f"card:{rel.id}", "elements": actions})
    if view.release.checklist and Event.TICK in allowed_events(view.state):
        blocks.append(checklist_block(view))
    text = f"{rel.rel_id} {escape(clip(rel.title, 200))}: {view.state.label}"
    return text, blocks


def summary_text(view: ReleaseView, tz: ZoneInfo) -> str:
    """State, people, type, ref and timing."""
    rel = view.release
    lines = [
        f"{STATE_ICON[view.state]} *{view.state.label.capitalize()}*"
        f"   ·   {type_text(view)}   ·   requested by {mention(rel.requester)}",
        (f"*Train* {len(view.components)} projects, deployed in this order: "
         f"{escape(' → '.join(c.project for c in view.components))}" if view.is_train else
         f"*Project* {escape(rel.project)}   *Ref* {ref_text(view)}"),
    ]
    if rel.scheduled_at:
        lines.append(f"*Deploys at* {local_time(rel.scheduled_at, tz)}{arming_text(view, tz)}")
        if view.planned_hold:
            lines.append(f"⚠️ The planned time {escape(view.planned_hold)}.")
    elif rel.planned_window:
        lines.append(f"*Planned* {escape(rel.planned_window)}")
    if dep := view.active_deployment:
        pipeline = link(dep.pipeline_url, "pipeline", "pipeline starting")
        ref = dep.ref if dep.rollback else _ref_of(view, dep.project)
        what = f" {escape(dep.project)}" if view.is_train else ""
        kind = f"Rolling back{what} to" if dep.rollback else f"Deploying{what}"
        at = f" @ `{escape(dep.sha[:7])}`" if dep.sha else ""
        lines.append(f"{kind} `{escape(ref)}`{at} to {escape(dep.environment)}: {pipeline}")
    return "\n".join(lines)


def type_text(view: ReleaseView) -> str:
    """'emergency release — confirmed by @dir at review', or that it waits for that review."""
    rel = view.release
    kind = f"{escape(rel.type)} release"
    if view.type_confirmed and rel.type_confirmed_by:
        return f"{kind} — confirmed by {mention(rel.type_confirmed_by)} at review"
    if view.plan_reviewer:
        return f"{kind} — type not confirmed yet ({escape(view.plan_reviewer)} at plan review)"
    return kind


def decision_line(view: ReleaseView) -> str | None:
    """After a failed online verification: the executive's decision, or that it is awaited."""
    rel = view.release
    if rel.decision and rel.decided_revision == rel.revision and rel.decided_by:
        what = ("the problems get fixed" if rel.decision == "fix"
                else "it stays live with them as known issues")
        why = escape(clip(rel.decision_reason or "", 300))
        return f"*Executive's decision* {mention(rel.decided_by)}: {what} — {why}"
    if view.decision_due:
        return "*Executive's decision* ⏳ fix the problems found online, or accept them"
    return None


def decide_buttons(view: ReleaseView) -> list[Block]:
    """The executive's Fix / Accept as is, while that decision is awaited (each asks why)."""
    if not view.decision_due:
        return []
    value = button_value(view)
    return [button("Fix the problems", ActionId.DECIDE_FIX, value, "primary"),
            button("Accept as is", ActionId.DECIDE_ACCEPT, value)]


def _ref_of(view: ReleaseView, project: str) -> str:
    """The ref a component ships (the release's own for a one-project release)."""
    return next((c.ref for c in view.components if c.project == project), view.release.ref)


CELL_ICON = {"waiting": "▫️", "deploying": "⏳", "deployed": "✅", "failed": "❌",
             "rolling back": "⏪", "rolled back": "↩️", "rollback failed": "🔥"}
MATRIX_LINE = 280  # ten components' lines stay within one section's 3000 characters


def matrix_text(view: ReleaseView) -> str:
    """Components as rows, environments as columns: each cell's state, each pinned commit."""
    lines = [f"*Components* (in deploy order) × {escape(' → '.join(view.environments))}"]
    for comp in view.components:
        cells = []
        for env in view.environments:
            state = view.cell(comp.project, env)
            mark = "—" if state is None else CELL_ICON[state]
            cells.append(f"{mark} {escape(clip(env, 30))}")
        row = f"{component_text(comp, view.pin is not None)}   {'  '.join(cells)}"
        lines.append(clip(row, MATRIX_LINE))
    lines.append("▫️ waiting · ⏳ deploying · ✅ deployed · ❌ failed · ⏪ rolling back · "
                 "↩️ rolled back · — not deployed there")
    return clip("\n".join(lines))


def arming_text(view: ReleaseView, tz: ZoneInfo) -> str:
    """Whether the planned deploy may go on its own: armed by whom and when, or not yet."""
    rel = view.release
    if view.armed and rel.armed_by:
        return f"   ·   armed by {mention(rel.armed_by)} at {local_time(rel.armed_at, tz)}"
    if view.next_env is not None and view.state in (*BEFORE_DEPLOY, State.DEPLOYED):
        return "   ·   not armed: deploys only after the release manager arms it"
    return ""


def progress_text(view: ReleaseView, tz: ZoneInfo) -> str:
    """Test report (and the tracker's count), sign-offs, checklist and deploys, a line each."""
    bugs = [line] if (line := tracker_line(view, tz)) else []
    decision = [line] if (line := decision_line(view)) else []
    return "\n".join([report_line(view), *bugs, signoff_line(view), checklist_line(view),
                      deploys_line(view), plan_line(view), *decision])


def plan_line(view: ReleaseView) -> str:
    """The go-live plan: what it lacks, or where its review stands."""
    rel = view.release
    if missing := view.plan_missing:
        return f"*Go-live plan* ⚠️ missing {escape(listed(missing))}"
    if rel.plan_review == "ok":
        return f"*Go-live plan* ✅ approved by {mention(rel.plan_reviewed_by or '')}"
    if rel.plan_review == "changes":
        note = escape(clip(rel.plan_review_note or "", 300))
        return f"*Go-live plan* ✏️ changes asked by {mention(rel.plan_reviewed_by or '')}: {note}"
    if view.plan_reviewer:
        return f"*Go-live plan* ⏳ waiting for review by {escape(view.plan_reviewer)}"
    return "*Go-live plan* " + ("complete" if rel.plan else "none written")


def report_line(view: ReleaseView) -> str:
    """The current test report with its open bugs."""
    rep = view.report
    if rep is None:
        return "*Test report* — none yet"
    verdict = "meets the go-live standard" if rep.passes else "does not meet the standard"
    if not rep.passes and view.release.risk_accepted_by:
        verdict += f"; risk accepted by {mention(view.release.risk_accepted_by)}"
    shown = link(rep.url, "link", f"`{escape(clip(rep.url, 200))}`")
    return (f"*Test report* {shown} by {mention(rep.reporter)}: "
            f"A {rep.bugs_a} · B {rep.bugs_b} · C {rep.bugs_c} — {verdict}")


def tracker_line(view: ReleaseView, tz: ZoneInfo) -> str:
    """The open bugs the tracker counted last, linked to its list, and when they were read."""
    row = view.bug_count
    if row is None:
        return ""
    source = link(row.url, escape(row.source))
    return (f"*Open bugs* A {row.bugs_a} · B {row.bugs_b} · C {row.bugs_c} in {source} "
            f"({escape(clip(row.scope, 200))}), read {local_time(row.read_at, tz)}")


def signoff_line(view: ReleaseView) -> str:
    """Each required role's approval status."""
    by = view.approved_by
    parts = [f"✅ {escape(role)} {mention(by[role])}" if role in by else f"⏳ {escape(role)}"
             for role in view.required_roles]
    return "*Sign-off* " + ("   ".join(parts) if parts else "none required")


def checklist_line(view: ReleaseView) -> str:
    """Checklist progress."""
    total = len(view.release.checklist)
    if not total:
        return "*Checklist* none for this project"
    return f"*Checklist* {len(view.ticked & set(range(1, total + 1)))}/{total} ticked"


def deploys_line(view: ReleaseView) -> str:
    """Where this release has been deployed, in order, with testers' acceptance."""
    marks = [env_mark(view, env) for env in view.environments]
    return "*Deploys* " + "  →  ".join(marks)


def env_mark(view: ReleaseView, env: str) -> str:
    """One environment: not reached, reached, or reached and passed or failed by a tester."""
    name = escape(env)
    if trouble := _env_trouble(view, env):
        return f"{CELL_ICON[trouble]} {name} ({trouble})"
    if env not in view.done_envs:
        return f"▫️ {name}"
    verdict = view.accepted.get(env)
    if verdict is not None:
        said = "accepted" if verdict.passed else "failed acceptance"
        return f"{'✅' if verdict.passed else '🚧'} {name} ({said} by {mention(verdict.tester)})"
    if env == view.awaiting_acceptance:
        return f"📦 {name} (awaiting acceptance)"
    return f"✅ {name}"


# What overrides "reached" for one environment, the worst first: the matrix's cell states.
_TROUBLE = ("rollback failed", "failed", "rolling back", "deploying", "rolled back")


def _env_trouble(view: ReleaseView, env: str) -> str | None:
    """The worst pipeline state of any component in `env` this revision, if not plain done."""
    cells = {view.cell(p, env) for p in view.train.projects_in(env)}
    return next((state for state in _TROUBLE if state in cells), None)


def notes_text(view: ReleaseView) -> str:
    """Holds, overrides and verification notes worth a grey line."""
    rel = view.release
    notes = []
    if rel.ground:
        notes.append(f"🚨 {escape(ground_text(rel.ground))}: {escape(rel.ground_reason or '')}")
    if view.state is State.REJECTED and rel.rejection_reason:
        notes.append(f"⛔ Rejected by {mention(rel.rejected_by or '')}: "
                     f"{escape(rel.rejection_reason)}. Back for rework: a new ref or test report "
                     "restarts testing; or cancel it.")
    if view.sole_signers and view.state in (*UNTESTED, State.READY_FOR_SIGNOFF, State.REJECTED):
        notes.append(escape(sole_signer_sentence(list(view.sole_signers))))
    if rel.hold_reason and view.state is State.SCHEDULED:
        notes.append(f"⏸ Held: {escape(rel.hold_reason)}")
    if rel.gate_override_by:
        notes.append(f"🔓 Freeze/window override by {mention(rel.gate_override_by)}: "
                     f"{escape(rel.gate_override_reason or '')}")
    if view.state is State.ACCEPTANCE_FAILED and (failed := _failed_acceptance(view)):
        notes.append(f"🚧 Failed acceptance on {escape(failed.environment)}: "
                     f"{escape(failed.note)}. A new ref (`/release ref {rel.rel_id} &lt;ref&gt;`) "
                     "restarts testing; or cancel it.")
    if rel.verification_note and view.state is State.VERIFICATION_FAILED:
        notes.append(f"⚠️ Verification failed: {escape(rel.verification_note)}")
    if _first_in_production(view):
        notes.append(f"↩️ Nothing ran in {escape(view.environments[-1])} before this release as "
                     "far as ReleaseBot and GitLab know: a rollback is by hand, following the "
                     "go-live plan's rollback steps")
    elif (ref := view.rollback_unpinned) and view.state in _ROLLBACK_FROM:
        notes.append(f"↩️ What ran before this release is recorded only as `{escape(ref)}`, "
                     "with no commit: a rollback is by hand, following the go-live plan's "
                     "rollback steps")
    if view.state is State.READY_FOR_SIGNOFF and (missing := missing_labels(rel, view.components)):
        notes.append(f"🔀 {escape(merge_back_sentence(rel.rel_id, missing))}")
    for comp in view.components if view.is_train else ():
        if comp.newer_commits and view.pin and comp.pinned_sha:
            notes.append(_newer_note(comp.ref, comp.newer_commits, comp.pinned_sha[:7],
                                     f"{escape(comp.project)} "))
    if not view.is_train and rel.newer_commits and view.pin:
        notes.append(_newer_note(rel.ref, rel.newer_commits, view.pin.short))
    return clip("\n".join(notes))


def _newer_note(ref: str, count: int, short: str, whose: str = "") -> str:
    """A ref moved on beyond the pin: what ships is still the pinned commit."""
    many = "commit that is" if count == 1 else "commits that are"
    return (f"📌 {whose}`{escape(ref)}` has {count} newer {many} not in this release (it "
            f"ships `{escape(short)}`)")


# Where the table offers a rollback (bot.workflow: Event.ROLLBACK).
_ROLLBACK_FROM = frozenset({*LIVE, State.DEPLOY_FAILED, State.ACCEPTANCE_FAILED})


def _first_in_production(view: ReleaseView) -> bool:
    """While it may still need undoing: its production deploy replaced no known version."""
    if view.state not in (State.DEPLOYING, *LIVE, State.DEPLOY_FAILED):
        return False
    prod = view.environments[-1]
    return any(d.environment == prod and not d.rollback and d.previous_sha is None
               and d.previous_ref is None for d in view.deployments)


def _failed_acceptance(view: ReleaseView) -> Acceptance | None:
    """The tester's failing verdict of this revision, if there is one."""
    return next((a for a in view.acceptances if not a.passed), None)


def item_text(step: ChecklistItem, limit: int = 75) -> str:
    """A checklist item, with the role that ticks it when that is not the release manager."""
    role = f" _({escape(step.role)})_" if step.role else ""
    return escape(clip(step.item, max(limit - len(role), 20))) + role


def checklist_block(view: ReleaseView) -> Block:
    """The pre-release checklist as checkboxes the release manager ticks."""
    options = [{"text": {"type": "mrkdwn", "text": clip(f"{i}. {item_text(step)}", 75)},
                "value": f"{view.release.id}:{i}"}
               for i, step in enumerate(view.checklist[:10], start=1)]
    element: Block = {"type": "checkboxes", "action_id": ActionId.CHECKLIST, "options": options}
    initial = [o for i, o in enumerate(options, start=1) if i in view.ticked]
    if initial:
        element["initial_options"] = initial
    return {"type": "actions", "block_id": f"checklist:{view.release.id}",
            "elements": [element]}


def card_buttons(view: ReleaseView) -> list[Block]:
    """The buttons for the events the table allows now, as the facts on the card permit."""
    allowed = allowed_events(view.state)
    out = [b for event, build in _BUTTONS.items() if event in allowed for b in build(view)]
    return out[:25]


def _button(label: str, action: str) -> Callable[[ReleaseView], list[Block]]:
    """A plain button for one event."""
    return lambda view: [button(label, action, button_value(view))]


def deploy_button(view: ReleaseView) -> list[Block]:
    """Deploy to the next environment; none before acceptance nor once production is done."""
    if view.state is State.DEPLOYED and (view.next_env is None or view.awaiting_acceptance):
        return []
    env = view.next_env or view.environments[-1]
    rid = view.release.rel_id
    question = f"Start the {escape(env)} deploy pipeline for {rid}?"
    if view.is_train:
        order = ", then ".join(escape(p) for p in view.train.projects_in(env))
        question = f"Deploy {rid} to {escape(env)}, one pipeline at a time: {order}?"
    return [button(f"Deploy to {env}", ActionId.DEPLOY, button_value(view), "primary", confirm(
        "Deploy?", question, "Deploy"))]


def verify_buttons(view: ReleaseView) -> list[Block]:
    """Passed or failed, once production is deployed."""
    if view.next_env:
        return []
    value = button_value(view, view.environments[-1])
    return [button("Verification passed", ActionId.VERIFY_PASS, value, "primary"),
            button("Verification failed", ActionId.VERIFY_FAIL, value, "danger")]


def acceptance_buttons(view: ReleaseView) -> list[Block]:
    """"Staging OK" / "Staging failed", while a tester's verdict there is due."""
    env = view.awaiting_acceptance
    if env is None:
        return []
    value, name = button_value(view, env), env.capitalize()
    return [button(f"{name} OK", ActionId.VERIFY_PASS, value, "primary", confirm(
                f"{name} OK?", f"Pass {view.release.rel_id} on {escape(env)}, so that "
                f"{escape(_after(view, env))} may be deployed?", "Pass")),
            button(f"{name} failed", ActionId.VERIFY_FAIL, value, "danger")]


def _after(view: ReleaseView, env: str) -> str:
    """The environment that follows `env`."""
    return view.environments[view.environments.index(env) + 1]


def arm_button(view: ReleaseView) -> list[Block]:
    """Arm a planned deploy so that it goes on its own at its time."""
    if not view.unarmed:
        return []
    return [button("Arm", ActionId.ARM, button_value(view), "primary", confirm(
        "Arm the scheduled deploy?", f"{view.release.rel_id} will deploy on its own at its "
        "planned time, or as soon as a freeze or window allows after it.", "Arm"))]


def rollback_button(view: ReleaseView) -> Block:
    """Roll back, behind a confirmation (a train's names what it undoes, in its order)."""
    question = f"Redeploy the version that was live before {view.release.rel_id}?"
    if view.is_train and (order := view.rollback_order):
        question = (f"Redeploy what ran before {view.release.rel_id}, one pipeline at a time: "
                    f"{', then '.join(escape(p) for p in order)}?")
    return button("Roll back", ActionId.ROLLBACK, button_value(view), "danger", confirm(
        "Roll back?", question, "Roll back", danger=True))


def abandon_button(view: ReleaseView) -> Block:
    """Give up on a stuck deploy or rollback (asks for a reason, then cancels the pipeline)."""
    return button("Abandon", ActionId.ABANDON, button_value(view), "danger")


def approval_buttons(view: ReleaseView) -> list[Block]:
    """Approve (with a confirmation) and Reject (asks for a reason)."""
    value = button_value(view)
    rid = view.release.rel_id
    return [
        button("Approve", ActionId.APPROVE, value, "primary", confirm(
            "Approve?", f"Sign off {rid} for your role?", "Approve")),
        button("Reject", ActionId.REJECT, value, "danger"),
    ]


def plan_buttons(view: ReleaseView) -> list[Block]:
    """While the plan holds sign-off up: Edit plan, and its reviewer's Plan OK and Plan changes.

    A plan nothing waits on is still edited with `/release plan`; the card stays uncluttered.
    """
    if not (view.plan_missing or view.plan_waits_for_review):
        return []
    value = button_value(view)
    out = [button("Edit plan", ActionId.EDIT_PLAN, value)]
    if view.plan_waits_for_review and not view.plan_missing:
        rel = view.release
        kind = an(rel.type)
        out += [button("Plan OK", ActionId.PLAN_OK, value, confirm=confirm(
                    "Approve the plan?", f"Approve {rel.rel_id}'s go-live plan and confirm it as "
                    f"{kind} release? To change its type, use `/release review {rel.rel_id} "
                    "ok --type &lt;type&gt; &lt;why…&gt;`.", "Approve")),
                button("Plan changes", ActionId.PLAN_CHANGES, value)]
    return out


# Card buttons by event, in the order they are drawn. Reject is drawn beside Approve, and the
# verify pair only where a failure can still be recorded: a recorded failure is not flipped
# from the card.
_BUTTONS: dict[Event, Callable[[ReleaseView], list[Block]]] = {
    Event.REPORT: _button("Attach test report", ActionId.REPORT),
    Event.START_TESTING: _button("Start testing", ActionId.START_TESTING),
    Event.APPROVE: approval_buttons,
    Event.EDIT_PLAN: plan_buttons,
    Event.ARM: arm_button,
    Event.DEPLOY: deploy_button,
    Event.ACCEPTANCE_FAIL: acceptance_buttons,
    Event.VERIFY_FAIL: verify_buttons,
    Event.ROLLBACK: lambda view: ([rollback_button(view)]
                                  if view.rollback_order and not view.rollback_unpinned else []),
    Event.CLOSE: _button("Close", ActionId.CLOSE),
    Event.ABANDON: lambda view: [abandon_button(view)],
    Event.DECIDE_FIX: decide_buttons,
}
