"""A DM with buttons, once what it asks is over: the one line that replaces its buttons.

Sign-off asks, and the prompts some notices carry (verify, accept, arm, decide, abandon).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from bot.plan import listed
from bot.readmodel import ReleaseView
from bot.workflow import UNTESTED, Actor, Event, State
from handlers.blocks import an, escape, mention
from handlers.blocks import link as card_link


def ask_over(view: ReleaseView, revision: int, actor: Actor) -> str | None:
    """Why an ask to `actor` to sign `revision` no longer stands (mrkdwn); None while it does."""
    rel, state = view.release, view.state
    if state is State.CANCELLED:
        return "it was cancelled."
    if state is State.REJECTED:
        if rel.rejected_by == actor.user:
            return "you rejected it."
        by = f" by {mention(rel.rejected_by)}" if rel.rejected_by else ""
        return f"it was rejected{by}."
    if rel.revision != revision:
        if state in UNTESTED:
            return "it went back to testing for a new revision."
        if not set(view.required_roles) & actor.roles:  # e.g. retyped: no executive now
            return f"it is now {an(rel.type)} release, which you don't sign."
        if state is State.READY_FOR_SIGNOFF:
            return "a new revision needs signing instead."
        return f"it has a new revision, {state.label} now."
    if state is State.READY_FOR_SIGNOFF:
        return None if view.may_sign(actor) is not None else _signed_for(view, actor)
    if approvers := list(dict.fromkeys(view.approved_by.values())):
        return f"approved by {listed([_who(u, actor.user) for u in approvers])}."
    return f"it is {state.label} now."


def _signed_for(view: ReleaseView, actor: Actor) -> str:
    """Who signed the roles this person could have signed."""
    signed = view.approved_by
    mine = [r for r in view.required_roles if r in actor.roles and r in signed]
    if not mine:  # the policy no longer gives them a role this release needs
        return "it no longer needs you."
    said = [f"{_who(signed[r], actor.user)} signed as {escape(r)}" for r in mine]
    return f"{listed(said)}."


def ask_over_line(view: ReleaseView, reason: str, card_url: str | None) -> str:
    """'REL-5 no longer needs your sign-off: approved by @a and @b.' (REL-5 links the card)."""
    return f"{card_link(card_url, view.release.rel_id)} no longer needs your sign-off: {reason}"


SIGNOFF = "signoff"  # the kind of a recorded sign-off ask; a prompt's kind is its notice
# The notices whose DM carries buttons (handlers.delivery.prompt_buttons), each with its
# headline once settled; {env} is the environment the prompt was about.
PROMPTS: dict[str, str] = {
    "verify_now": "no longer needs your verification",
    "accept": "no longer needs your acceptance on {env}",
    "arm": "no longer needs arming",
    "decide": "no longer needs your decision",
    "stuck": "is no longer stuck in {env}",
}
# The events whose doer a settled prompt names (the audit trail keeps who did them).
DOERS = (Event.VERIFY_PASS, Event.VERIFY_FAIL, Event.ABANDON)
Doers = Mapping[str, str]  # an event's value → who last raised it on the release


def _who(user: str | None, reader: str) -> str:
    """'you' to the person who did it, a mention to anyone else."""
    return "you" if user == reader else mention(str(user))


def _verify_stands(view: ReleaseView, env: str | None) -> bool:
    return view.state is State.DEPLOYED and view.next_env is None


def _stuck_stands(view: ReleaseView, env: str | None) -> bool:
    running = view.active_deployment
    return (view.state in (State.DEPLOYING, State.ROLLING_BACK) and running is not None
            and running.environment == env)


STANDS: dict[str, Callable[[ReleaseView, str | None], bool]] = {
    "verify_now": _verify_stands,
    "accept": lambda view, env: env is not None and view.awaiting_acceptance == env,
    "arm": lambda view, env: view.unarmed,
    "decide": lambda view, env: view.decision_due,
    "stuck": _stuck_stands,
}


def prompt_stands(view: ReleaseView, kind: str, revision: int, env: str | None) -> bool:
    """Whether the prompt sent about `revision` still asks for something possible now."""
    stands = STANDS.get(kind)
    return view.release.revision == revision and stands is not None and stands(view, env)


def _verified(view: ReleaseView, env: str | None, reader: str, doers: Doers) -> str | None:
    production = view.environments[-1] if view.environments else "production"
    if view.state in (State.VERIFIED, State.OBSERVING, State.CLOSED) and (
            by := doers.get(Event.VERIFY_PASS)):
        return f"{_who(by, reader)} verified it in {escape(production)}."
    if view.state is State.VERIFICATION_FAILED and (by := doers.get(Event.VERIFY_FAIL)):
        return f"{_who(by, reader)} found it failing in {escape(production)}."
    return None


def _accepted(view: ReleaseView, env: str | None, reader: str, doers: Doers) -> str | None:
    verdict = view.accepted.get(str(env))
    if verdict is None:
        return None
    did = "accepted" if verdict.passed else "failed"
    return f"{_who(verdict.tester, reader)} {did} it on {escape(str(env))}."


def _armed(view: ReleaseView, env: str | None, reader: str, doers: Doers) -> str | None:
    return f"{_who(view.release.armed_by, reader)} armed it." if view.armed else None


def _decided(view: ReleaseView, env: str | None, reader: str, doers: Doers) -> str | None:
    rel = view.release
    if rel.decision == "fix":
        return f"{_who(rel.decided_by, reader)} decided its problems get fixed."
    if rel.decision == "accept":
        return (f"{_who(rel.decided_by, reader)} decided it stays live with its problems as "
                "known issues.")
    return None


def _abandoned(view: ReleaseView, env: str | None, reader: str, doers: Doers) -> str | None:
    by = doers.get(Event.ABANDON)
    if by and view.state is State.DEPLOY_FAILED:  # where an abandoned pipeline leaves it
        return f"{_who(by, reader)} abandoned its pipeline."
    return None


# What ended each prompt, when it was the thing the prompt asked for.
DONE: dict[str, Callable[[ReleaseView, str | None, str, Doers], str | None]] = {
    "verify_now": _verified, "accept": _accepted, "arm": _armed, "stuck": _abandoned,
}


def prompt_over(view: ReleaseView, kind: str, revision: int, env: str | None, reader: str,
                doers: Doers) -> str | None:
    """Why a prompt to `reader` about `revision` no longer stands (mrkdwn); None while it does.

    `doers`: who last verified, failed or abandoned the release (DOERS).
    """
    if prompt_stands(view, kind, revision, env):
        return None
    done = DONE.get(kind)
    if done is not None and view.release.revision == revision and (
            said := done(view, env, reader, doers)):
        return said
    if kind == "decide" and view.release.decided_revision == revision and (
            said := _decided(view, env, reader, doers)):
        return said  # even when the fix it decided has made a new revision since
    return _moved_on(view, revision)


def _moved_on(view: ReleaseView, revision: int) -> str:
    """The release went elsewhere than the prompt asked: where it is now."""
    rel, state = view.release, view.state
    if state is State.CANCELLED:
        return "it was cancelled."
    if state is State.ROLLING_BACK:
        return "it is being rolled back."
    if state is State.ROLLED_BACK:
        return "it was rolled back."
    if rel.revision != revision:
        if state in UNTESTED:
            return "it went back to testing for a new revision."
        return f"it has a new revision, {state.label} now."
    return FAILED.get(state, f"it is {state.label} now.")


# Where a state's label reads badly after "it is …".
FAILED = {State.DEPLOY_FAILED: "its deploy failed.",
          State.ACCEPTANCE_FAILED: "it failed acceptance.",
          State.VERIFICATION_FAILED: "it failed its online verification."}


def settled_line(view: ReleaseView, kind: str, env: str | None, reason: str,
                 card_url: str | None) -> str:
    """'REL-5 no longer needs your verification: you verified it in production.'"""
    if kind == SIGNOFF:
        return ask_over_line(view, reason, card_url)
    headline = PROMPTS.get(kind, "needs nothing more from you").format(env=escape(str(env)))
    return f"{card_link(card_url, view.release.rel_id)} {headline}: {reason}"
