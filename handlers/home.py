"""App Home: what waits for me, my releases, releases in flight, each with the buttons the
reader may use now (the channel card shows everyone all of them)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot.readmodel import ReleaseView, load_view
from bot.workflow import ACTIVE, Actor, Event, verdict_event
from handlers.blocks import (
    ActionId,
    Block,
    context,
    escape,
    link,
    section,
    title_line,
    value_environment,
)
from handlers.cards import build_release_card
from handlers.runtime import Runtime
from storage import queries as q
from storage.db import transaction

log = logging.getLogger(__name__)
PER_SECTION = 5  # three sections of cards stay under Slack's 100-block limit for Home


def awaiting(view: ReleaseView, actor: Actor) -> bool:
    """Whether the release waits for this person: their sign-off, plan review or decision."""
    return awaited(view, actor) is not None


def awaited(view: ReleaseView, actor: Actor) -> str | None:
    """What the release waits for this person to do, as one line for Home (mrkdwn).

    The plan's review comes first: sign-off is refused until it is done.
    """
    rid = view.release.rel_id
    if view.may_review_plan(actor):
        return (f"🗒 Waits for your review of its go-live plan: Plan OK or Plan changes, or "
                f"`/release review {rid} ok|changes &lt;note&gt;`.")
    if view.may_decide(actor):
        return (f"🧭 Failed its online verification: waits for your decision, fix the problems "
                f"or accept them as known issues (`/release decide {rid} fix|accept "
                f"&lt;reason&gt;`).")
    if role := view.may_sign(actor):
        return f"✍️ Waits for your sign-off as {escape(role)}."
    return None


# What each card button raises; a button not named here (Release notes) is anyone's to use.
_EVENTS: dict[str, Event] = {
    ActionId.APPROVE: Event.APPROVE, ActionId.REJECT: Event.REJECT,
    ActionId.REPORT: Event.REPORT, ActionId.START_TESTING: Event.START_TESTING,
    ActionId.DEPLOY: Event.DEPLOY, ActionId.ROLLBACK: Event.ROLLBACK,
    ActionId.CLOSE: Event.CLOSE, ActionId.ABANDON: Event.ABANDON, ActionId.ARM: Event.ARM,
    ActionId.CHECKLIST: Event.TICK, ActionId.EDIT_PLAN: Event.EDIT_PLAN,
    ActionId.PLAN_OK: Event.PLAN_OK, ActionId.PLAN_CHANGES: Event.PLAN_CHANGES,
    ActionId.DECIDE_FIX: Event.DECIDE_FIX, ActionId.DECIDE_ACCEPT: Event.DECIDE_ACCEPT,
}
_VERDICTS = {ActionId.VERIFY_PASS: True, ActionId.VERIFY_FAIL: False}


def usable(view: ReleaseView, actor: Actor, element: Block) -> bool:
    """Whether the reader may use this card button now, as the transition table decides."""
    action = str(element.get("action_id", ""))
    env = value_environment(str(element.get("value", "")))
    if action in _VERDICTS:
        return view.may(actor, verdict_event(view.facts, _VERDICTS[action], env), env)
    if action == ActionId.DEPLOY:  # the button deploys to the next environment
        env = view.next_env or view.environments[-1]
    event = _EVENTS.get(action)
    return event is None or view.may(actor, event, env)


def reader_buttons(view: ReleaseView, actor: Actor, blocks: list[Block]) -> list[Block]:
    """The card's blocks with only the buttons `actor` may use; a row left empty goes."""
    out = []
    for block in blocks:
        if block.get("type") == "actions":
            mine = [e for e in block["elements"] if usable(view, actor, e)]
            if not mine:
                continue
            block = {**block, "elements": mine}
        out.append(block)
    return out


def home_entry(view: ReleaseView, tz: Any, card_url: str | None = None,
               waits: str | None = None, reader: Actor | None = None) -> list[Block]:
    """One release on Home: its card without the header, the first line naming it instead
    (`REL-42 · payments — Title`, the ID linked to the card when its permalink is known),
    and `waits`, what it waits for the reader to do, under that line. With `reader`, only
    the buttons they may use now: Home is theirs alone, unlike the channel's card."""
    rel = view.release
    # The header is for the channel; a train's matrix stays on its card and `status`.
    blocks = build_release_card(view, tz, matrix=False)[1][1:]
    if reader is not None:
        blocks = reader_buttons(view, reader, blocks)
    rest = title_line(view).removeprefix(rel.rel_id)
    name = f"*{link(card_url, rel.rel_id)}*{escape(rest)}"
    said = [context(waits)] if waits else []
    return [section(f"{name}\n{blocks[0]['text']['text']}"), *said, *blocks[1:]]


def build_home(pending: list[ReleaseView], mine: list[ReleaseView], flight: list[ReleaseView],
               tz: Any, links: Mapping[int, str] | None = None,
               waits: Mapping[int, str] | None = None,
               reader: Actor | None = None) -> dict[str, Any]:
    """The Home tab view; `links` maps a release's id to its card's permalink, `waits` a
    pending release's id to what it waits for the reader to do; `reader` is whose buttons."""
    links, waits = links or {}, waits or {}
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text",
                                                       "text": "ReleaseBot"}}]
    for title, views, empty, said in (
            ("Waiting for you", pending, "Nothing waits for you.", waits),
            ("Your releases", mine, "You have no releases in flight.", {}),
            ("Releases in flight", flight, "No releases in flight.", {})):
        blocks += [{"type": "divider"}, section(f"*{title}*")]
        for view in views[:PER_SECTION]:
            rid = view.release.id or 0
            blocks += home_entry(view, tz, links.get(rid), said.get(rid), reader)
        if not views:
            blocks.append(context(empty))
    blocks.append(context("Type `/release help` anywhere for every command."))
    return {"type": "home", "blocks": blocks[:100]}


async def publish_home(rt: Runtime, user: str) -> None:
    """Draw one person's Home tab."""
    actor = await rt.directory.actor(user)
    async with rt.deps.sessions() as session:
        rows = await q.list_releases(session, states=ACTIVE, limit=50)
        views = [await load_view(session, rt.deps.policy, r) for r in rows]
    waits = {v.release.id or 0: line for v in views if (line := awaited(v, actor))}
    pending = [v for v in views if (v.release.id or 0) in waits]
    mine = [v for v in views if v.release.requester == user]
    shown = {v.release.id: v for part in (pending, mine, views) for v in part[:PER_SECTION]}
    links = await card_links(rt, list(shown.values()))
    home = build_home(pending, mine, views, rt.deps.policy.tz, links, waits, actor)
    await rt.client.views_publish(user_id=user, view=home)


async def card_links(rt: Runtime, views: list[ReleaseView]) -> dict[int, str]:
    """Release id → its card's permalink, for the cards Slack gives one for."""
    found = await asyncio.gather(*(rt.deliverer.permalink(v.release.card_channel,
                                                          v.release.card_ts) for v in views))
    return {v.release.id or 0: url for v, url in zip(views, found, strict=True) if url}


async def on_home_opened(ack: AsyncAck, body: dict[str, Any], runtime: Runtime) -> None:
    """Publish Home once per event, however often Slack retries its delivery."""
    await ack()
    event = body.get("event") or {}
    if event.get("tab", "home") != "home":
        return
    async with transaction(runtime.deps.sessions) as session:
        first = await q.mark_seen(session, f"slack:{body.get('event_id')}", runtime.deps.clock())
    if first:
        await publish_home(runtime, event.get("user", ""))
