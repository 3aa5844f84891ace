"""Helpers the adversarial tests share: counting rows, finding buttons, reading state."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from sqlmodel import SQLModel, func, select

from bot.app import DEPS
from emulators.sample import DBA, DEV, DIRECTOR, LEAD, OPS, TESTER
from handlers.blocks import ActionId
from storage import queries as q
from storage.models import Approval, AuditEntry, Release
from tests.scenario.harness import Harness


async def row_counts(h: Harness) -> dict[str, int]:
    """How many rows every table of the schema holds."""
    counts = {}
    async with h.app[DEPS].sessions() as session:
        for table in SQLModel.metadata.sorted_tables:
            stmt = select(func.count()).select_from(table)
            counts[table.name] = (await session.exec(stmt)).one()
    return counts


async def release(h: Harness, rid: int) -> Release:
    """The stored release."""
    async with h.app[DEPS].sessions() as session:
        found = await q.get_release(session, rid)
    assert found is not None
    return found


async def approvals(h: Harness, rid: int) -> list[Approval]:
    """Approval rows of every revision of a release."""
    async with h.app[DEPS].sessions() as session:
        return list(await q.approvals_of(session, await release(h, rid), current_only=False))


async def audit(h: Harness, rid: int) -> list[AuditEntry]:
    """The audit trail of a release, oldest first."""
    async with h.app[DEPS].sessions() as session:
        return list(await q.audit_of(session, rid))


def button_value(h: Harness, rid: int, action_id: str = ActionId.APPROVE) -> str:
    """The value of a button on the release's card as it is drawn now."""
    card = h.card(rid)
    assert card is not None, f"REL-{rid} has no card"
    return next(e["value"] for b in card.blocks if b["type"] == "actions"
                for e in b["elements"] if e.get("action_id") == action_id)


def rid_of(answer: str) -> int:
    """The release id in an answer like `Filed REL-3. …`."""
    match = re.search(r"REL-(\d+)", answer)
    assert match, answer
    return int(match.group(1))


async def filed(h: Harness, text: str, user: str = DEV) -> int:
    """File a release by command; its id."""
    answer = await h.says(user, f"request {text}")
    assert "Filed" in answer, answer
    await h.settle()
    return rid_of(answer)


async def ready(h: Harness, text: str = "payments v1.1.0 Checkout", user: str = DEV) -> int:
    """A release waiting for sign-off (passing report attached)."""
    rid = await filed(h, text, user)
    answer = await h.says(TESTER, f"report REL-{rid} https://ci.example/r/{rid} A=0 B=0 C=0")
    assert "meets the go-live" in answer, answer
    await h.settle()
    return rid


async def signed(h: Harness, text: str = "web v1.1.0 Copy fix") -> int:
    """A release with every sign-off and its checklist done: ready to deploy."""
    rid = await ready(h, text)
    assert "You approved" in await h.says(DIRECTOR, f"approve REL-{rid}")
    assert "You approved" in await h.says(LEAD, f"approve REL-{rid}")
    if text.startswith("payments"):
        assert "ticked" in await h.says(OPS, f"check REL-{rid} 1 2")
        assert "ticked" in await h.says(DBA, f"check REL-{rid} 3")
    await h.settle()
    return rid


def thread_count(h: Harness, rid: int, words: str) -> int:
    """How many lines of the card's thread contain `words`."""
    return sum(words in t for t in h.thread(rid))


def bot_texts(h: Harness) -> list[str]:
    """Every mrkdwn text the bot sent anywhere: posts, edits, ephemerals, views, response_urls.

    plain_text objects are left out: Slack shows them as typed, never as mentions.
    """
    out: list[str] = []
    for call in h.slack.calls:
        if isinstance(call.args.get("text"), str):
            out.append(call.args["text"])
        for key in ("blocks", "view", "attachments"):
            out += list(_mrkdwn(call.args.get(key)))
    return out


def _mrkdwn(node: Any) -> Iterator[str]:
    """The text of every mrkdwn object under a Block Kit node."""
    if isinstance(node, list):
        for item in node:
            yield from _mrkdwn(item)
    elif isinstance(node, dict):
        if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str):
            yield node["text"]
        for value in node.values():
            yield from _mrkdwn(value)
