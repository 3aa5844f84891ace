"""Releases waiting for sign-off, written straight to the database with their cards posted.

Each is a `web` standard release requested by U0DEV with a passing test report, so an Approve
click by U0DIRECTOR or U0TESTLEAD is a real approval. The card is rendered by the bot's own
card builder and posted to the bench Slack emulator, so a later redraw that shows the same
thing is recognised as identical.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.common import policy
from bot.readmodel import ReleaseView
from emulators.sample import CHANNEL, DEV, TESTER
from handlers.cards import build_release_card
from handlers.delivery import card_hash
from storage.db import make_engine
from storage.models import AuditEntry, OutboxMessage, Release, TestReport, audit_chain
from storage.queries import AUDIT_CHAIN_LOCK

BATCH = 500


def _rows(rid: int, now: datetime) -> tuple[Release, TestReport]:
    """One release ready for sign-off and its passing report (not yet stored)."""
    rel = Release(id=rid, project="web", ref=f"v2.{rid}.0", title=f"Bench release {rid}",
                  type="standard", requester=DEV, state="ready_for_signoff", revision=1,
                  checklist=[], created_at=now, updated_at=now, state_since=now, version=1)
    rep = TestReport(release_id=rid, revision=1, url=f"https://ci.example/report/{rid}",
                     bugs_a=0, bugs_b=0, bugs_c=1, passes=True, reporter=TESTER, created_at=now)
    return rel, rep


def _card(rel: Release, rep: TestReport, tz: Any) -> tuple[str, list[dict[str, Any]]]:
    """The card exactly as the bot draws it for this state."""
    view = ReleaseView(release=rel, required_roles=("tech_director", "test_lead"),
                       approvals=(), report=rep, ticks=(), deployments=(),
                       environments=("production",))
    return build_release_card(view, tz)


def chain_rows(rows: list[dict[str, Any]], previous: str) -> str:
    """Give each audit row its chain value, in order, following `previous`; the last one."""
    for row in rows:
        previous = row["chain"] = audit_chain(previous, **row)
    return previous


async def insert_chained(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Append audit rows chained to the newest one, as the bot does (`releasebot audit verify`
    then passes); on PostgreSQL under the bot's own chain lock, held until commit."""
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": AUDIT_CHAIN_LOCK})
    last = await conn.execute(text("SELECT chain FROM audit_trail ORDER BY id DESC LIMIT 1"))
    chain_rows(rows, last.scalar() or "")
    await conn.execute(insert(AuditEntry.__table__), rows)  # type: ignore[attr-defined]


def sample_blocks() -> list[dict[str, Any]]:
    """A card's blocks as a click payload carries them (for the floor's requests)."""
    rel, rep = _rows(1, datetime.now(UTC))
    return _card(rel, rep, policy().tz)[1]


async def seed_signoff(db_url: str, slack_root: str, count: int, first_id: int = 1
                       ) -> tuple[list[tuple[int, str]], list[dict[str, Any]]]:
    """`count` releases from `first_id` on; their (id, card ts) and one card's blocks."""
    pol = policy()
    now = datetime.now(UTC)
    engine = make_engine(db_url)
    out: list[tuple[int, str]] = []
    sample: list[dict[str, Any]] = []
    try:
        async with aiohttp.ClientSession() as http:
            for start in range(first_id, first_id + count, BATCH):
                ids = range(start, min(start + BATCH, first_id + count))
                pairs = [_rows(rid, now) for rid in ids]
                cards = [_card(rel, rep, pol.tz) for rel, rep in pairs]
                sample = cards[0][1]
                payload = {"channel": CHANNEL,
                           "cards": [{"text": t, "blocks": b} for t, b in cards]}
                async with http.post(f"{slack_root}/_bench/cards", json=payload) as resp:
                    resp.raise_for_status()
                    ts_list = (await resp.json())["ts"]
                releases = []
                for (rel, _rep), (txt, blocks), ts in zip(pairs, cards, ts_list, strict=True):
                    rel.card_channel, rel.card_ts = CHANNEL, ts
                    rel.card_hash = card_hash(txt, blocks)
                    releases.append(rel.model_dump())
                    out.append((int(rel.id or 0), ts))
                audit, outbox = [], []
                for rel, _rep in pairs:
                    for action, before, after in (("request", None, "requested"),
                                                  ("report", "requested", "ready_for_signoff")):
                        audit.append({"release_id": rel.id, "at": now, "actor": DEV,
                                      "action": action, "from_state": before,
                                      "to_state": after, "detail": {}})
                        outbox.append({"release_id": rel.id, "kind": "event", "created_at": now,
                                       "sent_at": now, "attempts": 1,
                                       "payload": {"event": action, "to": after}})
                async with engine.begin() as conn:
                    await conn.execute(insert(Release.__table__), releases)  # type: ignore[attr-defined]
                    await conn.execute(insert(TestReport.__table__),  # type: ignore[attr-defined]
                                       [rep.model_dump(exclude={"id"}) for _rel, rep in pairs])
                    await insert_chained(conn, audit)
                    await conn.execute(insert(OutboxMessage.__table__), outbox)  # type: ignore[attr-defined]
        if engine.dialect.name == "postgresql":
            async with engine.begin() as conn:
                await conn.execute(text(
                    "SELECT setval('releases_id_seq', (SELECT max(id) FROM releases))"))
    finally:
        await engine.dispose()
    return out, sample
