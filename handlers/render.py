"""Announcements: an outbox event → the line posted in the card's thread."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.plan import listed
from bot.policy import Ground
from bot.workflow import Event
from handlers.blocks import an, clip, duration, escape, link, mention

Payload = dict[str, Any]


def _link(url: Any, label: str) -> str:
    """A link only to http(s) URLs (see `handlers.blocks.link`)."""
    return link(url, label)


def sole_signer_sentence(roles: list[str]) -> str:
    """Roles only the requester holds: someone else must be given them to sign (plain text)."""
    them = "it" if len(roles) == 1 else "them"
    return (f"⚠️ Only the requester holds {listed(roles)}, so nobody can sign {them} "
            "(four eyes): add another holder to the policy's roles.")


def ground_text(ground: str) -> str:
    """'Emergency: a serious bug is live' (plain text)."""
    try:
        return f"Emergency: {Ground(ground).label}"
    except ValueError:  # a ground no version of the policy knows: show it as stored
        return f"Emergency: {ground}"


def _reason(d: Payload, key: str = "reason") -> str:
    """`: reason` when there is one."""
    text = str(d.get(key) or "").strip()
    return f": {escape(clip(text, 1500))}" if text else ""


def _request(p: Payload, d: Payload) -> str:
    kind = an(str(d.get("type")))
    if isinstance(parts := d.get("components"), list):
        train = " → ".join(f"{escape(str(c.get('project')))} `{escape(str(c.get('ref')))}`"
                           for c in parts if isinstance(c, dict))
        line = (f"📝 {mention(p['actor'])} requested {kind} release train of "
                f"{len(parts)} projects, deployed in this order: {train}.")
    else:
        line = (f"📝 {mention(p['actor'])} requested {kind} release of "
                f"{escape(str(d.get('project')))} at `{escape(str(d.get('ref')))}`.")
    if d.get("ground"):
        line += f"\n🚨 {escape(ground_text(str(d['ground'])))}{_reason(d)}."
    if d.get("sole_signers"):
        line += "\n" + escape(sole_signer_sentence([str(r) for r in d["sole_signers"]]))
    return line


def _report(p: Payload, d: Payload) -> str:
    bugs = d.get("bugs", {})
    counts = f"A {bugs.get('A', 0)} · B {bugs.get('B', 0)} · C {bugs.get('C', 0)}"
    verdict = ("meets the go-live standard" if d.get("passes")
               else "does *not* meet the go-live standard (" +
               "; ".join(d.get("failures", [])) + ")")
    voided = " Earlier approvals no longer count." if d.get("voided_approvals") else ""
    return (f"🧪 {mention(p['actor'])} attached a {_link(d.get('url'), 'test report')}: "
            f"{counts}{_counted_in(d)} — {verdict}.{voided}")


def _counted_in(d: Payload) -> str:
    """`, counted in GitLab issues (milestone v1.2.0)`, linked, when a tracker gave the counts."""
    tracker = d.get("tracker")
    if not isinstance(tracker, dict):
        return ""
    source = _link(tracker.get("url"), escape(str(tracker.get("source"))))
    return f", counted in {source} ({escape(clip(str(tracker.get('where')), 200))})"


_FOUND = {"signoff": "before sign-off completed", "deploy": "before the production deploy",
          "poll": "when the bot counted again"}


def _new_bugs(p: Payload, d: Payload) -> str:
    """A recount found open bugs the test report did not list: back to testing."""
    named = [f"{_link(b.get('url'), escape(str(b.get('id'))))} ({escape(str(b.get('severity')))})"
             f" {escape(clip(str(b.get('title')), 80))}"
             for b in d.get("new") or [] if isinstance(b, dict)]
    more = f" and {d['more']} more" if d.get("more") else ""
    found = _FOUND.get(str(d.get("moment")), "when the bot counted again")
    return (f"🐞 New open bugs since the test report{_counted_in(d)}, found {found}: "
            f"{'; '.join(named) or 'see the tracker'}{more}. Back to *testing*: it needs a new "
            "test report and sign-off; earlier approvals no longer count.")


def _accept_risk(p: Payload, d: Payload) -> str:
    """An executive's acceptance, naming the tracker's bugs it covers when it knows them."""
    named = [escape(str(bug)) for bug in d.get("bugs") or []][:30]
    what = f"the open bugs {', '.join(named)}" if named else "the open bugs"
    return f"⚠️ {mention(p['actor'])} accepted {what} as a known risk{_reason(d)}."


def _approve(p: Payload, d: Payload) -> str:
    role = escape(str(d.get("role")))
    line = f"✅ {mention(p['actor'])} approved as {role}{_reason(d, 'comment')}."
    if p["to"] == "approved":
        return line + " All sign-offs are in: *approved*."
    if p["to"] == "scheduled":
        return line + " All sign-offs are in: *scheduled*."
    missing = d.get("missing") or []
    return line + (f" Still waiting for {escape(listed(missing))}." if missing else "")


def _version(d: Payload) -> str:
    """`v1.2.0` @ `3f2a9c1`: the ref and, when known, the commit it stands for."""
    sha = d.get("sha")
    at = f" @ `{escape(sha[:7])}`" if isinstance(sha, str) and sha else ""
    return f"`{escape(str(d.get('ref')))}`{at}"


def _of(d: Payload, before: str = "") -> str:
    """A train's component, as a line names it (`before` it); nothing for a one-project one."""
    return f"{before}{escape(str(d.get('component')))} " if d.get("train") else ""


def _names(items: Any) -> str:
    """`ledger, then payments` from a list of project keys."""
    return ", then ".join(escape(str(i)) for i in items) if isinstance(items, list) else ""


def _then(d: Payload) -> str:
    """` Next: ledger.` when a train goes on with another component."""
    return f" Next: {escape(str(d['next']))}." if d.get("next") else ""


def _deploy(p: Payload, d: Payload) -> str:
    env = escape(str(d.get("environment")))
    if d.get("train") and len(d.get("components") or ()) > 1:
        order = _names(d.get("components"))
        return (f"🚀 {mention(p['actor'])} started the deploy to {env}, one pipeline at a "
                f"time: {order} (first {_of(d)}{_version(d)}).")
    if d.get("train"):
        there = d.get("there")
        why = (f"; {', '.join(escape(str(t)) for t in there)} deployed there already"
               if isinstance(there, list) and there else
               ", the only project of the train that deploys there")
        return (f"🚀 {mention(p['actor'])} started the deploy of {_of(d)}{_version(d)} to "
                f"{env}{why}.")
    return f"🚀 {mention(p['actor'])} started the deploy of {_version(d)} to {env}."


def _pipeline(p: Payload, d: Payload) -> str:
    what = "Rollback" if d.get("rollback") else "Deploy"
    return (f"⏳ {what} pipeline {_link(d.get('url'), '#' + str(d.get('pipeline')))} "
            f"{_of(d, 'of ')}is running for {escape(str(d.get('environment')))}.")


def _deployed(p: Payload, d: Payload) -> str:
    secs = d.get("seconds")
    took = f" in {duration(secs)}" if isinstance(secs, int | float) else ""
    return (f"📦 Deployed {_of(d)}{_version(d)} to {escape(str(d.get('environment')))}"
            f"{took} ({_link(d.get('url'), 'pipeline')}).{_then(d)}")


def _deploy_failed(p: Payload, d: Payload) -> str:
    job = d.get("failed_job")
    where = f" at job {_link(d.get('failed_job_url'), escape(str(job)))}" if job else ""
    error = _reason(d, "error")
    pipeline = f" ({_link(d.get('url'), 'pipeline')})" if d.get("pipeline") or not d.get(
        "train") else ""
    line = (f"❌ Deploy {_of(d, 'of ')}to {escape(str(d.get('environment')))} failed{where}"
            f"{error}{pipeline}.")
    if not d.get("train"):  # nothing to roll back to (a first deploy there): deploy again
        return line + (" Roll back from the card." if d.get("undo", True) else
                       " Deploy again from the card.")
    stopped = f" The train stopped: {_names(d.get('stopped'))} did not deploy." if d.get(
        "stopped") else " The train stopped."
    undo = (f" Roll back from the card: {_names(d.get('undo'))}." if d.get("undo")
            else " Deploy again from the card.")
    return line + stopped + undo


def _rollback(p: Payload, d: Payload) -> str:
    env = escape(str(d.get("environment")))
    if d.get("train"):
        return (f"⏪ {mention(p['actor'])} is rolling back {env}, one pipeline at a time: "
                f"{_names(d.get('components'))} (first {_of(d)}to {_version(d)}){_reason(d)}.")
    return f"⏪ {mention(p['actor'])} is rolling back {env} to {_version(d)}{_reason(d)}."


def _rolled_back(p: Payload, d: Payload) -> str:
    return (f"↩️ Rolled back {_of(d)}{escape(str(d.get('environment')))} to "
            f"{_version(d)} ({_link(d.get('url'), 'pipeline')}).{_then(d)}")


def _rollback_failed(p: Payload, d: Payload) -> str:
    env = escape(str(d.get("environment")))
    where = f"{escape(str(d.get('component')))} in {env}" if d.get("train") else env
    why = (escape(clip(str(d["error"]), 500)) if d.get("train") and not d.get("pipeline")
           and d.get("error") else _link(d.get("url"), "pipeline"))
    return (f"🔥 Rollback of {where} failed ({why}). Someone needs to look now; once the "
            "cause is fixed, roll back again from the card.")


def _abandon(p: Payload, d: Payload) -> str:
    what = "rollback" if d.get("rollback") else "deploy"
    left = (" A cancel leaves manual jobs alone: GitLab still shows the pipeline waiting on "
            "one; don't start it." if d.get("gitlab_status") == "manual" else "")
    return (f"🛑 {mention(p['actor'])} abandoned the {what} {_of(d, 'of ')}to "
            f"{escape(str(d.get('environment')))}{_reason(d)} "
            f"({_link(d.get('url'), 'pipeline')} cancelled in GitLab). It counts as failed: "
            f"deploy again or roll back from the card.{left}")


def _simple(icon: str, verb: str, key: str = "reason") -> Callable[[Payload, Payload], str]:
    """`icon <@actor> verb: reason.`"""
    return lambda p, d: f"{icon} {mention(p['actor'])} {verb}{_reason(d, key)}."


def _rejected(p: Payload, d: Payload) -> str:
    """Rejected, and back with the requester for rework."""
    back = f"{mention(str(d['requester']))}, it" if d.get("requester") else "It"
    return (f"⛔ {mention(p['actor'])} rejected the release{_reason(d)}. {back} is back for "
            "rework: a new ref or test report restarts testing, or cancel it.")


def _tick(p: Payload, d: Payload) -> str:
    items = ", ".join(str(i) for i in d.get("items", []))
    return (f"☑️ {mention(p['actor'])} ticked checklist item {items or '(none new)'} "
            f"({d.get('done')}/{d.get('total')}).")


def _ref(p: Payload, d: Payload) -> str:
    voided = " Earlier approvals and the test report no longer count." if d.get(
        "voided_approvals") or p["to"] == "testing" else ""
    whose = f"{escape(str(d.get('component')))}'s ref" if d.get("train") else "the ref"
    return (f"🔀 {mention(p['actor'])} changed {whose} from `{escape(str(d.get('old_ref')))}` "
            f"to `{escape(str(d.get('ref')))}`.{voided}")


def _plan(p: Payload, d: Payload) -> str:
    changed = escape(", ".join(str(c) for c in d.get("changed") or []) or "nothing")
    review, approvals = d.get("review_voided"), d.get("voided_approvals")
    if review and approvals:
        again = " Its review and earlier approvals no longer count."
    elif review or approvals:
        again = " Its review no longer counts." if review else (
            " Earlier approvals no longer count.")
    else:
        again = ""
    return f"🗒 {mention(p['actor'])} changed the go-live plan: {changed}.{again}"


def _plan_ok(p: Payload, d: Payload) -> str:
    role = f" as {escape(str(d['role']))}" if d.get("role") else ""
    kind = (f" and confirmed it as {an(str(d['type']))} release"
            if d.get("type") else "")  # a colon here would run into the note's
    return f"🗒 {mention(p['actor'])} approved the go-live plan{role}{kind}{_reason(d, 'note')}."


def _retyped(p: Payload, d: Payload) -> str:
    """The reviewer's correction of the type, and the sign-offs it voided."""
    voided = int(d.get("voided_approvals") or 0)
    void = (f" {voided} sign-off{'' if voided == 1 else 's'} no longer "
            f"count{'s' if voided == 1 else ''}; the approvers sign again." if voided else "")
    ground = f" 🚨 {escape(ground_text(str(d['ground'])))}." if d.get("ground") else ""
    return (f"🏷 {mention(p['actor'])} changed the release type from "
            f"{escape(str(d.get('old_type')))} to {escape(str(d.get('type')))} at review"
            f"{_reason(d)}.{ground}{void}")


def _decided_fix(p: Payload, d: Payload) -> str:
    """The executive has the problems found online fixed."""
    back = mention(str(d["requester"])) + ", the" if d.get("requester") else "The"
    return (f"🛠 {mention(p['actor'])} decided the problems found in production get "
            f"fixed{_reason(d)}. {back} fixed ref goes in with `/release ref`; it is tested and "
            "signed off again.")


def _decided_accept(p: Payload, d: Payload) -> str:
    """The executive keeps the release live with its problems, as known issues."""
    found = f" ({escape(clip(str(d['found']), 300))})" if d.get("found") else ""
    return (f"📌 {mention(p['actor'])} accepted the problems found in production{found} as "
            f"known issues{_reason(d)}. The release stays live and goes on to observation.")


def _accepted(p: Payload, d: Payload) -> str:
    env = escape(str(d.get("environment")))
    nxt = escape(str(d.get("next")))
    return (f"✅ {mention(p['actor'])} accepted the release on {env}{_reason(d, 'note')}. "
            f"It may now be deployed to {nxt}.")


def _not_accepted(p: Payload, d: Payload) -> str:
    env = escape(str(d.get("environment")))
    return (f"🚧 {mention(p['actor'])} failed the release on {env}{_reason(d, 'note')}. "
            "It is held: a new ref restarts testing, or it is cancelled.")


def _armed(p: Payload, d: Payload) -> str:
    when = f" at {escape(str(d['when']))}" if d.get("when") else " at its planned time"
    held = " once deploys are open again" if d.get("held") else ""
    return (f"🔑 {mention(p['actor'])} armed the scheduled deploy: it goes on its own"
            f"{when}{held}.")


def _published(p: Payload, d: Payload) -> str:
    """Release notes made GitLab Releases: of the tag, or of each tag of a train."""
    if isinstance(many := d.get("published"), list):
        tags = ", ".join(f"{escape(str(i.get('project')))} "
                         f"{_link(i.get('url'), escape(str(i.get('tag'))))}"
                         for i in many if isinstance(i, dict))
        return f"📰 {mention(p['actor'])} published the release notes as GitLab releases: {tags}."
    return (f"📰 {mention(p['actor'])} published the release notes of "
            f"`{escape(str(d.get('tag')))}` as a {_link(d.get('url'), 'GitLab release')}.")


def _closed(p: Payload, d: Payload) -> str:
    """Closed and handed over; an executive's early end of observation says so."""
    early = d.get("early")
    line = "🏁 The release is closed and handed over to operations."
    if isinstance(early, dict):
        line += f" {mention(p['actor'])} ended observation early{_reason(early)}."
    return line + (f"\n*Release notes*\n{d['notes']}" if d.get("notes") else "")


_E = Event
RENDERERS: dict[Event, Callable[[Payload, Payload], str]] = {
    _E.REQUEST: _request,
    _E.START_TESTING: _simple("🧪", "started testing"),
    _E.REPORT: _report,
    _E.ACCEPT_RISK: _accept_risk,
    _E.APPROVE: _approve,
    _E.REJECT: _rejected,
    _E.CHANGE_REF: _ref,
    _E.TICK: _tick,
    _E.OVERRIDE_GATE: _simple("🔓", "allowed this release to deploy outside the windows/freeze"),
    _E.HOLD: lambda p, d: f"⏸ The scheduled deploy is held{_reason(d)}.",
    _E.DEPLOY: _deploy,
    _E.PIPELINE_STARTED: _pipeline,
    _E.DEPLOY_SUCCEEDED: _deployed,
    _E.DEPLOY_FAILED: _deploy_failed,
    _E.ACCEPTANCE_PASS: _accepted,
    _E.ACCEPTANCE_FAIL: _not_accepted,
    _E.VERIFY_PASS: _simple("✔️", "verified the release in production", "note"),
    _E.VERIFY_FAIL: _simple("⚠️", "found a problem in production", "note"),
    _E.OBSERVE: lambda p, d: "👀 Observation period started.",
    _E.CLOSE: _closed,
    _E.ROLLBACK: _rollback,
    _E.ROLLBACK_SUCCEEDED: _rolled_back,
    _E.ROLLBACK_FAILED: _rollback_failed,
    _E.ABANDON: _abandon,
    _E.CANCEL: _simple("🚫", "cancelled the release"),
    _E.EDIT_PLAN: _plan,
    _E.PLAN_OK: _plan_ok,
    _E.PLAN_CHANGES: _simple("🗒", "asked for changes to the go-live plan", "note"),
    _E.PUBLISH_NOTES: lambda p, d: _published(p, d),
    _E.ARM: _armed,
    _E.NEW_BUGS: _new_bugs,
    _E.RETYPE: _retyped,
    _E.DECIDE_FIX: _decided_fix,
    _E.DECIDE_ACCEPT: _decided_accept,
}


def payload_event(payload: Payload) -> Event | None:
    """The Event an outbox payload announces (None for a value no version of the bot wrote)."""
    try:
        return Event(payload.get("event", ""))
    except ValueError:
        return None


def event_text(payload: Payload) -> str:
    """The thread line for one outbox event."""
    event = payload_event(payload)
    if event is None:
        return f"{escape(str(payload.get('event')))} by {mention(str(payload.get('actor')))}"
    detail = payload.get("detail") or {}
    return clip(RENDERERS[event](payload, detail) + _unplanned(detail))


def _unplanned(d: Payload) -> str:
    """A new revision took back the planned time that arming had chosen."""
    if not d.get("unplanned"):
        return ""
    return (f" The planned time {escape(str(d['unplanned']))}, set when it was armed, no "
            "longer holds: arm it again once signed off.")


def tell_text(rel_id: str, what: str, payload: Payload, card_url: str | None) -> str:
    """The policy's `notify` line: which release, what happened, and a link to its card."""
    detail = {k: v for k, v in (payload.get("detail") or {}).items() if k != "notes"}
    line = event_text({**payload, "detail": detail})
    card = f" {link(card_url, 'Open the card')}" if card_url else ""
    return clip(f"*{rel_id}* {escape(clip(what, 150))}: {line}{card}")


def _stuck_reason(d: Payload) -> str:
    """The reason GitLab gives: the job waited on, or its status and for how long."""
    job, stage = d.get("job"), d.get("stage")
    where = f"`{escape(str(job))}` in stage {escape(str(stage))}" if job else ""
    if d.get("kind") == "manual":
        return f"waiting on the manual job {where}" if job else "waiting on a manual job"
    if d.get("kind") == "scheduled":
        return f"scheduled: the delayed job {where} has not started" if job else "scheduled"
    status = str(d.get("status") or "").replace("_", " ")
    minutes = d.get("minutes")
    return (f"{escape(status)} for {minutes} minutes" if status
            else f"not finished after {minutes} minutes")


def _stuck(rid: str, d: Payload) -> str:
    what = "rollback" if d.get("rollback") else "deploy"
    pipeline = _link(d.get("url"), f"pipeline #{d.get('pipeline')}")
    unblock = "Start the job in GitLab, or" if d.get("kind") in ("manual", "scheduled") else (
        "Look at it in GitLab, or")
    of = f"{escape(str(d['component']))} in " if d.get("component") else ""
    return (f"⏳ The {escape(str(d.get('environment')))} {what} of {of}{rid} is stuck: "
            f"{_stuck_reason(d)} ({pipeline}). {unblock} give it up with "
            f"`/release abandon {rid} {escape('<reason>')}` (or Abandon on the card).")


def _handover(rid: str, d: Payload) -> str:
    """The direct message operations get when a release closes."""
    impact = f" Impact: {escape(clip(str(d['impact']), 500))}." if d.get("impact") else ""
    what = f"{escape(str(d.get('project')))} `{escape(str(d.get('ref')))}`"
    if isinstance(parts := d.get("components"), list):
        what = ", ".join(f"{escape(str(c.get('project')))} `{escape(str(c.get('ref')))}`"
                         for c in parts if isinstance(c, dict))
    return (f"🤝 {rid} is handed over to operations: {what} — "
            f"{escape(clip(str(d.get('title')), 200))}. "
            f"Remaining issues: {remaining_text(d.get('remaining'))}.{impact}")


def remaining_text(remaining: Any) -> str:
    """The open bugs a release ships with, and who accepted those over the standard."""
    if not isinstance(remaining, dict):
        return "none known (no open bugs in the test report)"
    online = problems_text(remaining.get("problems"))
    if not remaining.get("bugs"):
        return online.removeprefix("; ")
    return bug_text(remaining) + online


def problems_text(problems: Any) -> str:
    """'; found in online verification: … — kept live as it is by @cto: …', or nothing."""
    if not isinstance(problems, dict):
        return ""
    found = escape(clip(str(problems.get("found") or "no note"), 500))
    why = escape(clip(str(problems.get("reason") or ""), 500))
    return (f"; found in online verification: {found} — kept live as it is by "
            f"{mention(str(problems.get('accepted_by')))}: {why}")


def bug_text(remaining: dict[str, Any]) -> str:
    """The open bugs of the test report, and who accepted those over the standard."""
    bugs = remaining.get("bugs") or {}
    counts = " · ".join(f"{sev} {bugs.get(sev, 0)}" for sev in "ABC")
    failures = remaining.get("failures") or []
    if not failures:
        return f"{counts} open, within the go-live standard"
    over = "; ".join(escape(str(f)) for f in failures)
    who = remaining.get("accepted_by")
    if not who:
        return f"{counts} open; over the standard: {over}"
    why = f": {escape(clip(str(remaining.get('reason') or ''), 500))}" if remaining.get(
        "reason") else ""
    return f"{counts} open; {over}, accepted by {mention(str(who))}{why}"


NOTICES: dict[str, Callable[[str, Payload], str]] = {
    "held": lambda rid, d: (f"⏸ {rid} was due to deploy but is held{_reason(d)} "
                            "It goes as soon as that is resolved."),
    "verify_now": lambda rid, d: (
        f"📦 {rid} is live in production. Please verify it online now, from the card or with "
        f"`/release verify {rid} pass|fail`."),
    "plan_changes": lambda rid, d: (
        f"🗒 The go-live plan of {rid} needs changes{_reason(d, 'note')}. Edit it with "
        f"`/release plan {rid}`; it is then reviewed again."),
    "plan_review": lambda rid, d: (
        f"🗒 The go-live plan of {rid} is complete and waits for your review: Plan OK on the "
        f"card, or `/release review {rid} ok|changes &lt;note&gt;`."),
    "accept": lambda rid, d: (
        f"🧪 {rid} is deployed to {escape(str(d.get('environment')))}: please run the "
        f"acceptance cases there, then pass or fail it from the card or with "
        f"`/release verify {rid} pass|fail [note]`. It goes no further until you do."),
    "arm": lambda rid, d: (
        f"🔑 {rid} was due to deploy{' at ' + escape(str(d['when'])) if d.get('when') else ''} "
        f"but is not armed: it deploys on its own only after the release manager arms it. "
        f"Arm it from the card or with `/release arm {rid}`."),
    "merge_back": lambda rid, d: (
        f"🔀 Hotfix {rid} (`{escape(str(d.get('ref')))}`) is not merged into the default "
        f"branch yet{' and is overdue' if d.get('overdue') else ''}: please merge it back."),
    "stuck": _stuck,
    "handover": _handover,
    "retyped": lambda rid, d: (
        f"🏷 {rid} is now {an(str(d.get('type')))} release, not "
        f"{escape(str(d.get('old_type')))}: the go-live plan's reviewer changed it"
        f"{_reason(d)}. Its sign-offs start again."),
    "decide": lambda rid, d: (
        f"🧭 {rid} failed its online verification{_reason(d, 'found')}. An executive "
        f"decides: have the problems fixed (`/release decide {rid} fix &lt;reason&gt;`) or keep "
        f"it live with them as known issues (`/release decide {rid} accept &lt;reason&gt;`)"
        f"{'; the release manager may also roll it back' if d.get('rollback') else ''}."),
    "fix": lambda rid, d: (
        f"🛠 The executive decided the problems {rid} showed in production get fixed"
        f"{_reason(d)}. Set the fixed ref with `/release ref {rid} &lt;ref&gt;`; it is tested "
        "and signed off again."),
}


def notice_text(notice: str, rel_id: str, detail: Payload) -> str:
    """A direct message about one release (reminders go out as digests: handlers.digest)."""
    render = NOTICES.get(notice)
    return clip(render(rel_id, detail) if render else f"{rel_id}: {escape(notice)}")
