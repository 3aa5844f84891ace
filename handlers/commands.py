"""`/release` and its subcommands: ack, parse, call the service, answer, announce."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.errors import SlackApiError

from bot import calendar, deploys, releases, transition
from bot.notes import notes_text, publish_notes
from bot.policy import ReleaseType
from bot.workflow import Actor, Event, Refused
from handlers.answer import tell
from handlers.blocks import escape
from handlers.modals import build_request_modal
from handlers.notes_text import notes_mrkdwn
from handlers.parse import (
    SUBCOMMANDS,
    Parsed,
    UsageError,
    help_text,
    parse_bug_counts,
    parse_command,
    parse_items,
    parse_verdict,
)
from handlers.runtime import Runtime
from handlers.status import calendar_text, list_text, status_blocks

log = logging.getLogger(__name__)
Body = dict[str, Any]
Reply = str | tuple[str, list[dict[str, Any]]]
Handler = Callable[[Runtime, str, Parsed, Body], Awaitable[Reply]]
SORRY = "Sorry, something went wrong on our side. It has been logged; please try again."


async def on_release_command(ack: AsyncAck, body: Body, runtime: Runtime) -> None:
    """Ack at once, then do the work and answer the person privately."""
    await ack()
    user = body.get("user_id", "")
    try:
        parsed = parse_command(body.get("text") or "")
        reply = await SUBS[parsed.sub.name](runtime, user, parsed, body)
    except Refused as exc:
        reply = escape(exc.sentence)  # refusals quote what people typed
    except Exception:
        log.exception("/release %r by %s failed", (body.get("text") or "")[:200], user)
        reply = SORRY
    runtime.deliverer.kick()
    if reply:
        text, blocks = (reply, None) if isinstance(reply, str) else reply
        await tell(runtime.client, user=user, text=text, blocks=blocks,
                   channel=body.get("channel_id"), response_url=body.get("response_url"))


async def _request(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """With arguments: file it now; without: open the form."""
    if not p.words:
        return await _open_request_form(rt, body)
    if len(p.words) < 2:
        raise UsageError(p.sub, "Give at least a project and a ref.")
    policy = rt.deps.policy
    scheduled = None
    if at := p.options.get("at"):
        try:
            scheduled = calendar.parse_local(at, policy)
        except ValueError as exc:
            raise UsageError(p.sub, str(exc)) from None
    kind = p.options.get("type", ReleaseType.STANDARD.value).lower()
    title = " ".join(p.words[2:]) or f"{p.words[0]} {p.words[1]}"
    new = releases.NewRelease(project=p.words[0], ref=p.words[1], title=title, type=kind,
                         version_label=p.options.get("version", ""), scheduled_at=scheduled)
    out = await releases.request_release(rt.deps, actor=await rt.directory.actor(user), new=new)
    return f"Filed {out.release.rel_id}. Its card is in <#{policy.release_channel}>."


async def _open_request_form(rt: Runtime, body: Body) -> Reply:
    """The request modal; an expired trigger falls back to the one-line form."""
    try:
        view = build_request_modal(rt.deps.policy, body.get("channel_id", ""))
        await rt.client.views_open(trigger_id=body.get("trigger_id", ""), view=view)
    except SlackApiError as exc:
        log.info("request form not opened: %s", exc.response.get("error"))
        return ("I couldn't open the form in time. File it in one line: "
                f"`{SUBCOMMANDS['request'].usage}`")
    return ""


async def _list(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Releases newest first: active (default), mine or all."""
    which = (p.words[0].lower() if p.words else "active")
    if which not in ("active", "mine", "all"):
        raise UsageError(p.sub, f"{which[:20]!r} is not active, mine or all.")
    return await list_text(rt.deps, which, user)


async def _status(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """One release in full."""
    return await status_blocks(rt.deps, p.release_id or 0)


async def _test(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """A tester picks the release up."""
    out = await releases.start_testing(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user))
    return f"You're testing {out.release.rel_id}. Attach the report with `/release report`."


async def _report(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Attach a test report link with open-bug counts."""
    report = releases.ReportInput(url=p.words[0], bugs=parse_bug_counts(p.words[1:]))
    out = await releases.attach_report(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user), report=report)
    if out.detail["passes"]:
        return f"Report attached to {out.release.rel_id}; it meets the go-live standard."
    return (f"Report attached to {out.release.rel_id}, but it does not meet the go-live standard: "
            f"{'; '.join(out.detail['failures'])}.")


async def _accept(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """An executive accepts known issues."""
    out = await releases.accept_risk(rt.deps, release_id=p.release_id or 0,
                                actor=await rt.directory.actor(user), reason=p.rest)
    return f"Recorded: {out.release.rel_id} may ship with its open bugs."


async def _approve(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Sign off for one's role."""
    out = await releases.approve(rt.deps, release_id=p.release_id or 0,
                            actor=await rt.directory.actor(user), comment=p.rest)
    return f"You approved {out.release.rel_id} as {out.detail['role']}."


async def _reject(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Stop the release with a reason."""
    out = await releases.reject(rt.deps, release_id=p.release_id or 0,
                           actor=await rt.directory.actor(user), reason=p.rest)
    return f"You rejected {out.release.rel_id}."


async def _ref(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Point the release at another ref."""
    if len(p.words) != 1:
        raise UsageError(p.sub, "Give exactly one ref.")
    out = await releases.change_ref(rt.deps, release_id=p.release_id or 0,
                               actor=await rt.directory.actor(user), ref=p.words[0])
    return (f"{out.release.rel_id} now points at `{p.words[0]}`; "
            "it needs testing and sign-off again.")


async def _check(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Tick checklist items."""
    out = await releases.tick(rt.deps, release_id=p.release_id or 0,
                         actor=await rt.directory.actor(user), items=parse_items(p.words))
    return f"Checklist of {out.release.rel_id}: {out.detail['done']}/{out.detail['total']} ticked."


async def _override(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """An executive lets an emergency release deploy in a freeze or outside windows."""
    out = await releases.override_gate(rt.deps, release_id=p.release_id or 0,
                                  actor=await rt.directory.actor(user), reason=p.rest)
    return f"Recorded: {out.release.rel_id} may deploy outside the windows and freezes."


async def _cancel(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Withdraw before deploy."""
    out = await releases.cancel(rt.deps, release_id=p.release_id or 0,
                           actor=await rt.directory.actor(user), reason=p.rest)
    return f"{out.release.rel_id} is cancelled."


async def _deploy(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Start the deploy pipeline (the next environment unless one is named)."""
    env = p.words[0] if p.words else None
    out = await rt.deployer.deploy(release_id=p.release_id or 0, environment=env,
                                   actor=await rt.directory.actor(user))
    return deploy_answer(out)


def deploy_answer(out: transition.Outcome) -> str:
    """What the deployer did, in a sentence."""
    env = out.detail.get("environment", "")
    if out.event is Event.DEPLOY_FAILED:
        return (f"The {env} pipeline of {out.release.rel_id} did not start: "
                f"{out.detail.get('error')}")
    return f"{out.release.rel_id}: the {env} pipeline is running. Follow it on the card."


async def _verify(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Online verification result."""
    passed, note = parse_verdict(p.words)
    out = await deploys.verify(rt.deps, release_id=p.release_id or 0, passed=passed, note=note,
                               actor=await rt.directory.actor(user))
    return verify_answer(out, passed)


def verify_answer(out: transition.Outcome, passed: bool) -> str:
    """The verification, acknowledged."""
    if passed:
        return f"Verified {out.release.rel_id}; the observation period has started."
    return f"Recorded the failed verification of {out.release.rel_id}. Roll back from the card."


async def _rollback(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Redeploy the previous version."""
    out = await rt.deployer.rollback(release_id=p.release_id or 0, reason=p.rest,
                                     actor=await rt.directory.actor(user))
    if out.event is Event.ROLLBACK_FAILED:
        return (f"The rollback pipeline of {out.release.rel_id} did not start: "
                f"{out.detail.get('error')}")
    return f"Rolling {out.release.rel_id} back to `{out.detail.get('ref')}`."


async def _close(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """End the observation period now."""
    out = await close_release(rt, p.release_id or 0, await rt.directory.actor(user))
    return f"{out.release.rel_id} is closed."


async def close_release(rt: Runtime, release_id: int, actor: Actor,
                        revision: int | None = None) -> transition.Outcome:
    """Close with the release notes attached to the announcement."""
    notes = await notes_text(rt.deps, rt.deployer, release_id=release_id, render=notes_mrkdwn)
    return await deploys.close(rt.deps, release_id=release_id, actor=actor, revision=revision,
                               notes=notes)


async def _notes(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Release notes since the previous release; `publish` makes a GitLab Release of a tag."""
    if p.words and p.words[0].lower() == "publish":
        return await _publish(rt, p.release_id or 0, user)
    text = await notes_text(rt.deps, rt.deployer, release_id=p.release_id or 0,
                            render=notes_mrkdwn)
    return f"*Release notes of REL-{p.release_id}*\n{text}"


async def _publish(rt: Runtime, release_id: int, user: str) -> Reply:
    """Publish the notes as a GitLab Release (tags only; release manager)."""
    published = await publish_notes(rt.deps, rt.deployer, release_id=release_id,
                                    actor=await rt.directory.actor(user))
    return f"Published {published.ref} as a GitLab release: {published.url}"


async def _calendar(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """What is coming, and when deploys may happen."""
    return await calendar_text(rt.deps)


async def _help(rt: Runtime, user: str, p: Parsed, body: Body) -> Reply:
    """Usage, only for the person who asked."""
    return help_text()


SUBS: dict[str, Handler] = {
    "request": _request, "list": _list, "status": _status, "test": _test, "report": _report,
    "accept": _accept, "approve": _approve, "reject": _reject, "ref": _ref, "check": _check,
    "override": _override, "cancel": _cancel, "help": _help, "deploy": _deploy,
    "verify": _verify, "rollback": _rollback, "close": _close, "notes": _notes,
    "calendar": _calendar,
}
