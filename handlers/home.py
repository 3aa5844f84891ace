"""App Home: my pending approvals, my releases, releases in flight, each with its buttons."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from slack_bolt.context.ack.async_ack import AsyncAck

from bot.readmodel import ReleaseView, load_view
from bot.workflow import ACTIVE, Actor
from handlers.blocks import Block, context, escape, link, section, title_line
from handlers.cards import build_release_card
from handlers.runtime import Runtime
from storage import queries as q
from storage.db import transaction

log = logging.getLogger(__name__)
PER_SECTION = 5  # three sections of cards stay under Slack's 100-block limit for Home


def awaiting(view: ReleaseView, actor: Actor) -> bool:
    """Whether this person's sign-off is what the release waits for."""
    return view.may_sign(actor) is not None


def home_entry(view: ReleaseView, tz: Any, card_url: str | None = None) -> list[Block]:
    """One release on Home: its card without the header, the first line naming it instead
    (`REL-42 · payments — Title`, the ID linked to the card when its permalink is known)."""
    rel = view.release
    # The header is for the channel; a train's matrix stays on its card and `status`.
    blocks = build_release_card(view, tz, matrix=False)[1][1:]
    rest = title_line(view).removeprefix(rel.rel_id)
    name = f"*{link(card_url, rel.rel_id)}*{escape(rest)}"
    return [section(f"{name}\n{blocks[0]['text']['text']}"), *blocks[1:]]


def build_home(pending: list[ReleaseView], mine: list[ReleaseView], flight: list[ReleaseView],
               tz: Any, links: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The Home tab view; `links` maps a release's id to its card's permalink."""
    links = links or {}
    blocks: list[Block] = [{"type": "header", "text": {"type": "plain_text",
                                                       "text": "ReleaseBot"}}]
    for title, views, empty in (
            ("Waiting for your sign-off", pending, "Nothing waits for you."),
            ("Your releases", mine, "You have no releases in flight."),
            ("Releases in flight", flight, "No releases in flight.")):
        blocks += [{"type": "divider"}, section(f"*{title}*")]
        for view in views[:PER_SECTION]:
            blocks += home_entry(view, tz, links.get(view.release.id or 0))
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
    pending = [v for v in views if awaiting(v, actor)]
    mine = [v for v in views if v.release.requester == user]
    shown = {v.release.id: v for part in (pending, mine, views) for v in part[:PER_SECTION]}
    links = await card_links(rt, list(shown.values()))
    home = build_home(pending, mine, views, rt.deps.policy.tz, links)
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
