"""`/release status` and `/release list`: what a person reads about releases."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot import calendar
from bot.deploys import Shipped, running
from bot.plan import PlanField
from bot.policy import Policy
from bot.readmodel import ReleaseView, read_view
from bot.transition import Deps, is_armed
from bot.workflow import ACTIVE, BEFORE_DEPLOY, SYSTEM, Refused, State
from handlers.blocks import (
    STATE_ICON,
    clip,
    components_line,
    context,
    escape,
    link,
    local_time,
    member,
    mention,
    section,
    subject_text,
)
from handlers.cards import build_release_card, item_text
from handlers.render import remaining_text
from storage import queries as q
from storage.db import one_read
from storage.models import Release, ReleaseComponent


async def status_blocks(deps: Deps, release_id: int) -> tuple[str, list[dict[str, Any]]]:
    """The card plus checklist, deploys and timeline (no buttons: it is private)."""
    async with one_read(deps.sessions) as session:  # one statement: the release and all it shows
        view = await read_view(session, deps.policy, release_id, full=True, live=True)
    if view is None:
        raise Refused(f"There is no release REL-{release_id}.")
    live = await _live(deps, view)
    tz = deps.policy.tz
    text, card = build_release_card(view, tz)
    blocks = [b for b in card if b["type"] != "actions"]
    blocks += [section(details_text(view)), section(live_text(view, live)),
               section(deploys_text(view, tz)), section(timeline_text(view, tz))]
    return text, blocks[:50]


async def _live(deps: Deps, view: ReleaseView) -> dict[tuple[str, str], Shipped | None]:
    """What runs in each environment of each component; a train's other projects read more."""
    lead, train = view.release.project, view.train
    others: dict[tuple[str, str], Shipped | None] = {}
    if view.is_train:
        async with deps.sessions() as session:
            others = {(p, env): running(await q.live_deployment(session, p, env))
                      for p in train.projects if p != lead for env in train.envs[p]}
    return {(p, env): running(view.live.get(env)) if p == lead else others[(p, env)]
            for p in train.projects for env in train.envs[p]}


def live_text(view: ReleaseView, live: dict[tuple[str, str], Shipped | None]) -> str:
    """What runs in each environment of each component now, as far as the bot knows."""
    if not view.is_train:
        return "*Live now* " + "   ·   ".join(
            f"{escape(env)}: {_running(view, shipped)}" for (_, env), shipped in live.items())
    lines = ["*Live now*"]
    for project in view.train.projects:
        parts = [f"{escape(env)}: {_running(view, shipped)}"
                 for (p, env), shipped in live.items() if p == project]
        lines.append(clip(f"• {escape(project)}: " + "   ·   ".join(parts), 280))
    return clip("\n".join(lines))


def _running(view: ReleaseView, shipped: Shipped | None) -> str:
    """One environment's version: which release put it there, its ref and commit."""
    if shipped is None:
        return "nothing deployed by ReleaseBot"
    who = "this release" if shipped.release_id == view.release.id else (
        f"REL-{shipped.release_id}" if shipped.release_id else "a version from before")
    at = f" @ `{escape(shipped.sha[:7])}`" if shipped.sha else ""
    return f"{who} (`{escape(shipped.ref or '?')}`{at})"


def details_text(view: ReleaseView) -> str:
    """Request fields and the checklist item by item."""
    rel = view.release
    lines = []  # the go-live plan's line is on the card above
    for f in PlanField:
        text = escape(clip(rel.plan.get(f.value, ""), 400))
        if not text:
            text = "⚠️ missing" if f.value in view.plan_required else "—"
        lines.append(f"• _{f.label.capitalize()}_ {text}")
    if view.work_items:
        items = ", ".join(escape(w.reference) for w in view.work_items[:20])
        lines.append(f"*Work items* {clip(items, 800)}")
    for i, step in enumerate(view.checklist, start=1):
        mark = "☑️" if i in view.ticked else "⬜"
        lines.append(f"{mark} {i}. {item_text(step, 150)}")
    return clip("\n".join(lines))


def deploys_text(view: ReleaseView, tz: Any) -> str:
    """Each deploy and rollback with its pipeline."""
    if not view.deployments:
        return "*Deploys* none yet"
    lines = ["*Deploys*"]
    for d in view.deployments[-10:]:
        kind = "rollback" if d.rollback else "deploy"
        pipeline = f" {link(d.pipeline_url, f'#{d.pipeline_id}')}" if d.pipeline_url else ""
        of = f" of {escape(d.project)}" if view.is_train else ""
        lines.append(f"• {local_time(d.started_at, tz)} {kind}{of} `{escape(d.ref)}` to "
                     f"{escape(d.environment)}: {d.status}{pipeline}")
    return clip("\n".join(lines))


def timeline_text(view: ReleaseView, tz: Any) -> str:
    """The audit trail, newest last."""
    lines = ["*Timeline*"]
    for a in view.audit:  # the newest rows only: load_view reads TIMELINE_ROWS of them
        who = mention(a.actor) if a.actor != SYSTEM.user else "ReleaseBot"
        to = State(a.to_state).label
        change = f"{State(a.from_state).label} → {to}" if a.from_state not in (None,
                                                                               a.to_state) else to
        lines.append(f"• {local_time(a.at, tz)} {who} {escape(a.action)} ({change})")
    return clip("\n".join(lines))


async def list_text(deps: Deps, which: str, user: str) -> tuple[str, list[dict[str, Any]]]:
    """Releases newest first, one line each."""
    async with one_read(deps.sessions) as session:
        rows = await q.release_lines(
            session, states=ACTIVE if which == "active" else None,
            user=user if which == "mine" else None, limit=30)
        many = [r for r in rows if r.parts > 1]  # trains: their projects, in one more read
        trains = await q.components_for(session, many) if many else {}
    if not rows:
        text = {"active": "No releases in flight.", "mine": "You have no releases yet.",
                "all": "No releases yet."}[which]
        return text, [section(text)]
    lines = [f"{STATE_ICON[State(r.state)]} *REL-{r.id}* {what_text(r, trains.get(r.id or 0))} "
             f"— {escape(clip(r.title, 80))} · _{State(r.state).label}_ · {mention(r.requester)}"
             for r in rows]
    title = {"active": "Releases in flight", "mine": "Your releases", "all": "All releases"}[which]
    return title, [section(f"*{title}*"), section(clip("\n".join(lines))),
                   context("`/release status REL-n` shows one in full.")]


def what_text(release: Release | Any, components: Sequence[ReleaseComponent] | None) -> str:
    """A release's project and ref, or its train in one line."""
    if components and len(components) > 1:
        return "🚆 " + components_line(components)
    return f"{escape(release.project)} `{escape(release.ref)}`"


def close_summary(view: ReleaseView, tz: Any, detail: dict[str, Any],
                  operations: Sequence[str] = ()) -> str:
    """The report posted when a release closes, ending with its handover to operations."""
    rel = view.release
    signoffs = ", ".join(f"{escape(a.role)} {mention(a.approver)}" for a in view.approvals)
    rep = view.report
    report = (f"{link(rep.url, 'test report', escape(clip(rep.url, 200)))} "
              f"(A {rep.bugs_a} · B {rep.bugs_b} · C {rep.bugs_c})" if rep else "no test report")
    parts = [f"🏁 *{rel.rel_id} is closed.* {subject_text(view)} — "
             f"{escape(clip(rel.title, 200))}",
             f"*Signed off by* {signoffs or 'nobody'}   *Report* {report}",
             f"*Remaining issues* {remaining_text(detail.get('remaining'))}"]
    if impact := detail.get("impact"):  # the go-live plan's impact, once plans exist
        parts.append(f"*Impact* {escape(clip(str(impact), 1000))}")
    if early := early_text(detail):
        parts.append(early)
    parts += [handover_text(operations), deploys_text(view, tz), timeline_text(view, tz)]
    if notes := detail.get("notes"):
        parts.append(f"*Release notes*\n{notes}")
    return clip("\n\n".join(parts), 3900)


def early_text(detail: dict[str, Any]) -> str:
    """An executive's early end of observation, with the reason."""
    early = detail.get("early")
    if not isinstance(early, dict):
        return ""
    return (f"*Observation ended early* by {mention(str(early.get('by')))} (it was to run "
            f"until {escape(str(early.get('until')))}): "
            f"{escape(clip(str(early.get('reason') or ''), 500))}")


def handover_text(operations: Sequence[str]) -> str:
    """Who takes the system over now."""
    if not operations:
        return "*Handover* no operations role in the policy, so nobody was told."
    return f"*Handed over to operations* {', '.join(member(m) for m in operations)}"


def held_then(moment: datetime, policy: Policy, release_type: str | None = None) -> str:
    """' · ⚠️ held then: …' for a planned time that a freeze or the windows hold."""
    hold = calendar.planned_hold(moment, policy, release_type)
    return f" · ⚠️ that time {escape(hold)}" if hold else ""


async def calendar_text(deps: Deps) -> tuple[str, list[dict[str, Any]]]:
    """Coming scheduled releases, the windows, the freezes, and whether deploys are open now."""
    policy, now = deps.policy, deps.clock()
    async with deps.sessions() as session:
        coming = [r for r in await q.list_releases(session, states=ACTIVE, limit=200)
                  if r.scheduled_at is not None and r.state in BEFORE_DEPLOY]
        trains = await q.components_for(session, coming)
    coming.sort(key=lambda r: r.scheduled_at or now)
    gate = calendar.deploy_gate(now, policy)
    today = now.astimezone(policy.tz).date()
    freezes = [f for f in policy.freezes if f.to >= today]
    lines = ["*Scheduled releases*"]
    lines += [
        f"• {calendar.format_local(r.scheduled_at, policy)} *{r.rel_id}* "
        f"{what_text(r, trains.get(r.id or 0))} — {escape(clip(r.title, 80))} · "
        f"_{State(r.state).label}_ · "
        f"{'armed' if is_armed(r) else 'not armed'}{held_then(r.scheduled_at, policy, r.type)}"
        for r in coming[:20] if r.scheduled_at] or ["• none"]
    lines += ["", f"*Release windows* {escape(calendar.describe_windows(policy))} "
              f"({escape(policy.timezone)})", "*Freezes*"]
    lines += [f"• {f.start} to {f.to}: {escape(f.reason)}" for f in freezes] or ["• none"]
    if gate.open:
        lines.append("\n🟢 Deploys are open now.")
    else:
        nxt = calendar.format_local(gate.next_allowed, policy) if gate.next_allowed else "—"
        lines.append(f"\n🔴 Deploys are closed now: {escape(gate.reason or '')}. Next: {nxt}.")
    return "Release calendar", [section(clip("\n".join(lines)))]
