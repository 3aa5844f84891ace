"""`/release` and its subcommands: one table to parse, dispatch and explain them."""

from __future__ import annotations

from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot import calendar, deploys, golive, releases, transition
from bot.notes import notes_text, publish_notes
from bot.policy import ReleaseType
from bot.trains import is_component, parse_order, split_component
from bot.workflow import NO_REASON, Actor, Event, Refused
from handlers import answer
from handlers.answer import Asker, Reply, answer_after, open_form
from handlers.blocks import escape, safe_url
from handlers.modals import build_request_modal
from handlers.notes_text import notes_mrkdwn
from handlers.parse import (
    Parsed,
    Sub,
    UsageError,
    help_text,
    parse_bug_counts,
    parse_command,
    parse_items,
    parse_verdict,
    reason_command,
    unescape,
)
from handlers.plan_form import open_plan_form
from handlers.runtime import Runtime
from handlers.status import calendar_text, list_text, status_blocks

Body = dict[str, Any]


async def on_release_command(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """Ack at once, then do the work and answer the person privately."""
    user = body.get("user_id", "")
    text = unescape(body.get("text") or "")  # forms' values come unescaped; commands' don't

    async def work() -> Reply:
        parsed = parse_command(text, SUBCOMMANDS)
        try:
            return await parsed.sub.handler(runtime, user, parsed, body)
        except Refused as exc:
            if exc.sentence != NO_REASON or parsed.release_id is None:
                raise
            # Whichever rule wants the reason, the person sees where it goes in what they typed.
            raise UsageError(None, f"{REASON}:",
                             usage=f"`{reason_command(parsed)}`") from None

    asker = Asker(user, body.get("channel_id"), body.get("response_url"))
    await answer_after(ack, runtime, work, asker=asker, doing=f"/release {text[:200]!r}")


async def _request(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """With arguments: file it now (`project ref` or a train of `project@ref`…); else a form."""
    if not p.words:
        return await _open_request_form(rt, p, body)
    parts, title_words = _components(p)
    policy = rt.deps.policy
    scheduled = None
    if at := p.options.get("at"):
        try:
            scheduled = calendar.parse_local(at, policy)
        except ValueError as exc:
            raise UsageError(p.sub, str(exc)) from None
    kind = p.options.get("type", ReleaseType.STANDARD.value).lower()
    title = " ".join(title_words) or ", ".join(f"{project} {ref}" for project, ref in parts)
    new = releases.NewRelease(project=parts[0][0], ref=parts[0][1], title=title, type=kind,
                              version_label=p.options.get("version", ""), scheduled_at=scheduled,
                              more=tuple(parts[1:]),
                              order=parse_order(p.options.get("order", "")),
                              ground=p.options.get("ground", "").lower(),
                              reason=p.options.get("reason", ""))
    out = await releases.request_release(rt.deps, actor=await rt.directory.actor(user), new=new)
    return answer.filed(out, policy.release_channel, rt.deliverer.channel_problem,
                            answer.planned_hold(out.release, policy))


def _components(p: Parsed) -> tuple[list[tuple[str, str]], list[str]]:
    """The (project, ref) pairs a request names, and the words of its title after them."""
    words = list(p.words)
    for word in words:  # the leading project@ref words, before the title
        if word.endswith("@") and len(word) > 1:
            raise UsageError(p.sub, f"The ref after `{word}` is missing.")
        if not is_component(word):
            break
    if not is_component(words[0]):
        if len(words) < 2:
            raise UsageError(p.sub, "Give at least a project and a ref (or project@ref).")
        return [(words[0], words[1])], words[2:]
    count = next((i for i, w in enumerate(words) if not is_component(w)), len(words))
    return [split_component(w) for w in words[:count]], words[count:]


async def _open_request_form(rt: Runtime, p: Parsed, body: Body) -> Reply:
    """The request modal; an expired trigger falls back to the one-line form."""
    view = build_request_modal(rt.deps.policy, body.get("channel_id", ""))
    return await open_form(rt, body.get("trigger_id", ""), view, p.sub.usage)


async def _list(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Releases newest first: active (default), mine or all."""
    which = (p.words[0].lower() if p.words else "active")
    if which not in ("active", "mine", "all"):
        raise UsageError(p.sub, f"{which[:20]!r} is not active, mine or all.")
    return await list_text(rt.deps, which, user)


async def _status(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """One release in full."""
    if p.words:
        raise UsageError(p.sub, f"{p.words[0][:30]!r} is not part of it.")
    return await status_blocks(rt.deps, p.release_id or 0)


async def _test(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """A tester picks the release up."""
    out = await releases.start_testing(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user))
    return answer.testing(out)


async def _report(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Attach a test report link with open-bug counts."""
    report = releases.ReportInput(url=p.words[0], bugs=parse_bug_counts(p.sub, p.words[1:]))
    out = await releases.attach_report(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user), report=report)
    return answer.report_attached(out)


async def _accept(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """An executive accepts known issues."""
    out = await releases.accept_risk(rt.deps, release_id=p.release_id or 0,
                                actor=await rt.directory.actor(user), reason=p.rest)
    return f"Recorded: {out.release.rel_id} may ship with its open bugs."


async def _approve(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Sign off for one's role."""
    out = await releases.approve(rt.deps, release_id=p.release_id or 0,
                            actor=await rt.directory.actor(user), comment=p.rest)
    return answer.approved(out)


async def _reject(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Stop the release with a reason."""
    out = await releases.reject(rt.deps, release_id=p.release_id or 0,
                           actor=await rt.directory.actor(user), reason=p.rest)
    return answer.rejected(out)


async def _ref(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Point the release, or one project of a train (`project@ref`), at another ref."""
    if len(p.words) != 1:
        raise UsageError(p.sub, "Give exactly one ref (or project@ref).")
    project, ref = None, p.words[0]
    if is_component(ref) and split_component(ref)[0] in rt.deps.policy.projects:
        project, ref = split_component(ref)
    out = await releases.change_ref(rt.deps, release_id=p.release_id or 0,
                                    actor=await rt.directory.actor(user), ref=ref,
                                    project=project)
    which = f"{project} in " if project else ""
    return (f"{which}{out.release.rel_id} now points at `{escape(ref)}`; "
            "it needs testing and sign-off again.")


async def _check(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Tick checklist items."""
    out = await releases.tick(rt.deps, release_id=p.release_id or 0,
                         actor=await rt.directory.actor(user), items=parse_items(p.sub, p.words))
    return answer.ticked(out)


async def _override(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """An executive lets an emergency release deploy in a freeze or outside windows."""
    out = await releases.override_gate(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user), reason=p.rest)
    return f"Recorded: {out.release.rel_id} may deploy outside the windows and freezes."


async def _cancel(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Withdraw it, until its production deploy starts."""
    out = await releases.cancel(rt.deps, release_id=p.release_id or 0,
                           actor=await rt.directory.actor(user), reason=p.rest)
    return f"{out.release.rel_id} is cancelled."


async def _deploy(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Start the deploy pipeline (the next environment unless one is named)."""
    env = p.words[0] if p.words else None
    out = await rt.deployer.deploy(release_id=p.release_id or 0, environment=env,
                                   actor=await rt.directory.actor(user))
    return answer.deploy_started(out)


async def _verify(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Online verification result."""
    passed, note = parse_verdict(p.sub, p.words)
    out = await deploys.verify(rt.deps, release_id=p.release_id or 0, passed=passed, note=note,
                               actor=await rt.directory.actor(user))
    return answer.verified(out, passed)


async def _arm(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Let a scheduled or held release deploy on its own."""
    out = await releases.arm(rt.deps, release_id=p.release_id or 0,
                             actor=await rt.directory.actor(user))
    return answer.armed(out)


async def _rollback(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Redeploy the previous version."""
    out = await rt.deployer.rollback(release_id=p.release_id or 0, reason=p.rest,
                                     actor=await rt.directory.actor(user))
    return answer.rolling_back(out)


async def _abandon(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Cancel a stuck deploy pipeline in GitLab; the deploy counts as failed."""
    out = await rt.deployer.abandon(release_id=p.release_id or 0, reason=p.rest,
                                    actor=await rt.directory.actor(user))
    return answer.abandoned(out)


async def _close(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Close after observation; an executive may end it early with a reason."""
    out = await close_release(rt, p.release_id or 0, await rt.directory.actor(user),
                              reason=p.rest)
    return answer.closed(out)


async def close_release(rt: Runtime, release_id: int, actor: Actor,
                        revision: int | None = None, reason: str = "") -> transition.Outcome:
    """Close with the release notes attached to the announcement (role checked before GitLab)."""
    await transition.check_event(rt.deps, release_id=release_id, event=Event.CLOSE, actor=actor,
                                 revision=revision)
    notes = await notes_text(rt.deps, rt.deployer, release_id=release_id, render=notes_mrkdwn)
    return await deploys.close(rt.deps, release_id=release_id, actor=actor, revision=revision,
                               notes=notes, reason=reason)


async def _notes(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Release notes since what was live; `publish` makes a GitLab Release of a tag."""
    if p.words and (len(p.words) > 1 or p.words[0].lower() != "publish"):
        word = next(w for w in p.words if w.lower() != "publish")
        raise UsageError(p.sub, f"{word[:30]!r} is not part of it; only `publish` may follow.")
    if p.words:
        return await _publish(rt, p.release_id or 0, user)
    return await release_notes(rt, p.release_id or 0)


async def release_notes(rt: Runtime, release_id: int) -> str:
    """The notes as a private answer, whether asked by command or by a button."""
    text = await notes_text(rt.deps, rt.deployer, release_id=release_id, render=notes_mrkdwn)
    return f"*Release notes of REL-{release_id}*\n{text}"


async def _publish(rt: Runtime, release_id: int, user: str) -> Reply:
    """Publish the notes as a GitLab Release (tags only; release manager)."""
    published = await publish_notes(rt.deps, rt.deployer, release_id=release_id,
                                    actor=await rt.directory.actor(user))
    if len(published) == 1:
        return (f"Published {escape(published[0].ref)} as a GitLab release: "
                f"<{safe_url(published[0].url)}>")
    return "Published as GitLab releases: " + ", ".join(
        f"{escape(p.project)} {escape(p.ref)} <{safe_url(p.url)}>" for p in published)


async def _plan(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """No more words: the plan form; `<part> <text…>`: set that part of the plan."""
    actor = await rt.directory.actor(user)
    rid = p.release_id or 0
    if not p.words:
        return await open_plan_form(rt, actor, rid, None, body.get("trigger_id", ""))
    part = golive.plan_field(p.words[0])
    text = p.rest.strip()[len(p.words[0]):].strip()
    if not text:
        raise UsageError(p.sub, f"Write the {part.label} after `{part.value}`.")
    out = await golive.edit_plan(rt.deps, release_id=rid, actor=actor, changes={part: text})
    return answer.plan_edited(out)


async def _review(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """The plan's reviewer: `ok [note…]` (confirms the type) or `changes <note…>`; with
    `--type T [--ground G]` the type is corrected first."""
    verdict, rel = p.words[0].lower(), f"REL-{p.release_id}"
    if verdict not in ("ok", "changes"):
        raise UsageError(p.sub, "Say ok or changes:",
                         usage=f"`{p.sub.usage.replace('<ID>', rel)}`")
    note = p.rest.strip()[len(p.words[0]):].strip()
    kind = p.options.get("type")
    if verdict == "changes" and not note and not kind:
        # The requester is told this note; an empty one would tell them nothing to change.
        raise UsageError(p.sub, "Say what needs changing:",
                         usage=f"`/release review {rel} changes <note…>`")
    out = await golive.review_plan(rt.deps, release_id=p.release_id or 0, ok=verdict == "ok",
                                   note=note, actor=await rt.directory.actor(user),
                                   release_type=kind.lower() if kind else None,
                                   ground=p.options.get("ground", "").lower())
    return answer.plan_reviewed(out)


async def _decide(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """The executive, after a failed online verification: `fix <reason…>` or `accept <reason…>`."""
    verdict = p.words[0].lower()
    if verdict not in ("fix", "accept"):
        raise UsageError(p.sub, f"{p.words[0][:20]!r} is not fix or accept.")
    reason = p.rest.strip()[len(p.words[0]):].strip()
    out = await deploys.decide(rt.deps, release_id=p.release_id or 0, fix=verdict == "fix",
                               reason=reason, actor=await rt.directory.actor(user))
    return answer.decided(out)


async def _calendar(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """What is coming, and when deploys may happen."""
    return await calendar_text(rt.deps)


async def _help(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Usage, only for the person who asked; anything unknown says so first."""
    if p.unknown:
        return f"Unknown subcommand {escape(repr(p.unknown))}.\n{help_text(SUBCOMMANDS)}"
    return help_text(SUBCOMMANDS)


REASON = NO_REASON.removesuffix(".")  # the same request, followed by what to type
SUBCOMMANDS: dict[str, Sub] = {s.name: s for s in (
    Sub("request", '/release request [<project> <ref> | <project>@<ref> <project>@<ref>…] '
        '[title…] [--type standard|emergency|hotfix|campaign] [--at "YYYY-MM-DD HH:MM"] '
        '[--version V] [--order a,b] [--ground G --reason "…"]',
        "open a release, of one project or a train of several (no arguments: a form)",
        _request, takes_id=False),
    Sub("list", "/release list [active|mine|all]", "releases, newest first", _list,
        takes_id=False),
    Sub("status", "/release status <ID>",
        "one release: state, sign-offs, report, checklist, deploys, timeline", _status),
    Sub("test", "/release test <ID>", "a tester picks it up", _test),
    Sub("report", "/release report <ID> <url> [A=n B=n C=n]",
        "attach a test report and open-bug counts (a bug tracker's, when there is one)",
        _report, min_args=1, needs="Give the test report link"),
    Sub("accept", "/release accept <ID> <reason…>",
        "executive: ship an emergency release with its open bugs", _accept, min_args=1,
        needs=REASON),
    Sub("approve", "/release approve <ID> [comment…]", "sign off for your role", _approve),
    Sub("reject", "/release reject <ID> <reason…>", "send it back for rework", _reject,
        min_args=1, needs=REASON),
    Sub("ref", "/release ref <ID> <new ref> | <project>@<new ref>",
        "point it (or one project of a train) at another ref (testing and sign-off start "
        "again)", _ref, min_args=1, needs="Give the new ref"),
    Sub("plan", "/release plan <ID> [impact|rollback|db_scripts|stop_services|deploy_order|"
        "planned_time|on_duty <text…>]", "the go-live plan (no part: a form)", _plan),
    Sub("review", "/release review <ID> ok|changes [note…] [--type T [--ground G]]",
        "the plan's reviewer: approve the go-live plan and confirm the release type, or ask "
        "for changes; `--type` corrects the type (with why; sign-off starts again)", _review,
        min_args=1, needs="Say ok or changes"),
    Sub("check", "/release check <ID> <item number…>",
        "tick checklist items (each by its role: the release manager, or e.g. the DBA)", _check,
        min_args=1, needs="Give the checklist item numbers"),
    Sub("override", "/release override <ID> <reason…>",
        "executive: let an emergency release deploy in a freeze or outside windows", _override,
        min_args=1, needs=REASON),
    Sub("deploy", "/release deploy <ID> [environment]",
        "start the deploy pipeline (the next environment by default)", _deploy),
    Sub("verify", "/release verify <ID> pass|fail [note…]",
        "a tester's verdict on the newest environment: acceptance before production, "
        "online verification in it", _verify, min_args=1, needs="Say pass or fail"),
    Sub("decide", "/release decide <ID> fix|accept <reason…>",
        "executive, after a failed online verification of an emergency release: have the "
        "problems fixed (back for rework) or keep it live with them as known issues", _decide,
        min_args=1, needs="Say fix or accept, and why"),
    Sub("arm", "/release arm <ID>",
        "release manager: let a scheduled or held release deploy on its own", _arm),
    Sub("rollback", "/release rollback <ID> [reason…]",
        "redeploy the version that was live before", _rollback),
    Sub("abandon", "/release abandon <ID> <reason…>",
        "release manager: cancel a stuck deploy or rollback pipeline in GitLab; the deploy "
        "counts as failed", _abandon, min_args=1, needs=REASON),
    Sub("cancel", "/release cancel <ID> [reason…]",
        "withdraw it, until its production deploy starts", _cancel),
    Sub("close", "/release close <ID> [reason…]",
        "close after observation (an executive may end it early, with a reason)", _close),
    Sub("notes", "/release notes <ID> [publish]",
        "release notes from what was live in production to the pinned commit; `publish` "
        "makes a GitLab Release of a tag", _notes),
    Sub("calendar", "/release calendar",
        "scheduled releases (armed or not), windows, freezes, and whether deploys are open now",
        _calendar, takes_id=False),
    Sub("help", "/release help", "all of this", _help, takes_id=False),
)}
