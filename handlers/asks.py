"""A sign-off ask sent as a DM, once it is over: the one line that replaces its buttons."""

from __future__ import annotations

from bot.plan import listed
from bot.readmodel import ReleaseView
from bot.workflow import UNTESTED, Actor, State
from handlers.blocks import escape, mention
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
        if state is State.READY_FOR_SIGNOFF:
            return "a new revision needs signing instead."
        return f"it has a new revision, {state.label} now."
    if state is State.READY_FOR_SIGNOFF:
        return None if view.may_sign(actor) is not None else _signed_for(view, actor)
    if approvers := list(dict.fromkeys(view.approved_by.values())):
        named = [("you" if u == actor.user else mention(u)) for u in approvers]
        return f"approved by {listed(named)}."
    return f"it is {state.label} now."


def _signed_for(view: ReleaseView, actor: Actor) -> str:
    """Who signed the roles this person could have signed."""
    signed = view.approved_by
    mine = [r for r in view.required_roles if r in actor.roles and r in signed]
    if not mine:  # the policy no longer gives them a role this release needs
        return "it no longer needs you."
    said = [f"{'you' if signed[r] == actor.user else mention(signed[r])} signed as {escape(r)}"
            for r in mine]
    return f"{listed(said)}."


def ask_over_line(view: ReleaseView, reason: str, card_url: str | None) -> str:
    """'REL-5 no longer needs your sign-off: approved by @a and @b.' (REL-5 links the card)."""
    return f"{card_link(card_url, view.release.rel_id)} no longer needs your sign-off: {reason}"
