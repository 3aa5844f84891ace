"""The deliverer on a real database and the Slack emulator: what it posts, and at what cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event
from sqlmodel import col, select

from bot import releases
from bot.people import actor_for
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from emulators.sample import DEV, DIRECTOR, TESTER
from emulators.slack import SlackEmulator
from handlers.delivery import LEASE, PARALLEL, Deliverer, LeaseLost
from handlers.directory import Directory
from storage import queries as q
from storage.db import transaction
from storage.models import OutboxMessage
from tests.fixtures import FakeClock


@pytest.fixture
async def slack() -> AsyncIterator[SlackEmulator]:
    """The Slack emulator on loopback."""
    async with SlackEmulator() as emulator:
        yield emulator


def deliverer(deps: Deps, slack: SlackEmulator) -> Deliverer:
    """A deliverer posting to the emulator."""
    client = AsyncWebClient(token="xoxb-test", base_url=slack.base_url)
    return Deliverer(deps, client, Directory(deps.policy, client))


async def filed(deps: Deps, project: str = "payments") -> int:
    """A release with a passing report (its announcements not yet delivered)."""
    out = await releases.request_release(deps, actor=actor_for(deps.policy, DEV), new=NewRelease(
        project=project, ref="v1.1.0", title="Faster checkout", type="standard"))
    await releases.attach_report(deps, release_id=out.release.id,
                            actor=actor_for(deps.policy, TESTER),
                            report=ReportInput("https://ci/r/1", {"A": 0, "B": 0, "C": 0}))
    return out.release.id


def post_keys(slack: SlackEmulator) -> list[str]:
    """The metadata key of every chat.postMessage, in the order Slack got them."""
    keys = []
    for call in slack.calls_to("chat.postMessage"):
        meta = call.args.get("metadata")
        meta = json.loads(meta) if isinstance(meta, str) else meta
        keys.append(meta["event_payload"]["key"])
    return keys


async def outbox(deps: Deps, rid: int) -> list[OutboxMessage]:
    """A release's outbox rows, oldest first."""
    stmt = select(OutboxMessage).where(OutboxMessage.release_id == rid)
    async with deps.sessions() as session:
        return list((await session.exec(stmt.order_by(col(OutboxMessage.id)))).all())


async def test_an_approval_is_delivered_in_few_round_trips(deps: Deps,
                                                           slack: SlackEmulator) -> None:
    """One sign-off: a thread reply and a card redraw in 5 transactions (it was 7)."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    await d.deliver_pending()
    await releases.approve(deps, release_id=rid, actor=actor_for(deps.policy, DIRECTOR))
    engine = deps.sessions.kw["bind"].sync_engine
    seen: dict[str, int] = {"begin": 0, "sql": 0}

    def on_begin(_conn: Any) -> None:
        seen["begin"] += 1

    def on_sql(_conn: Any, _cur: Any, sql: str, *_: Any) -> None:
        seen["sql"] += not sql.startswith("BEGIN")  # SQLite's BEGIN is counted as a transaction

    event.listen(engine, "begin", on_begin)
    event.listen(engine, "before_cursor_execute", on_sql)
    try:
        assert await d.deliver_pending() == 1
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_sql)
    # Find the releases; lease and read; renew; mark sent and reread; save the card's hash.
    assert seen["begin"] <= 5 and seen["sql"] <= 17, seen
    assert len(slack.calls_to("chat.update")) == 1
    assert all(m.sent_at is not None for m in await outbox(deps, rid))


async def test_a_lost_lease_keeps_the_row_already_posted(deps: Deps, slack: SlackEmulator,
                                                         clock: FakeClock) -> None:
    """The lease lapses after the first post: that row stays sent, the rest go once, later."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    rows = await outbox(deps, rid)
    assert len(rows) >= 2
    post_row = d._post_row

    async def slow_post(view: Any, row: OutboxMessage) -> None:
        await post_row(view, row)
        if row.id == rows[0].id:
            clock.advance(seconds=LEASE.total_seconds() + 1)  # stalled past the lease

    d._post_row = slow_post  # type: ignore[method-assign]
    assert await d.deliver_pending() == 0  # stopped: the lease was lost
    first, *rest = await outbox(deps, rid)
    assert first.sent_at is not None and all(m.sent_at is None for m in rest)
    clock.advance(seconds=10)  # past the retry time the lost pass gave back
    d._post_row = post_row  # type: ignore[method-assign]
    assert await d.deliver_pending() == len(rest)
    keys = [k for k in post_keys(slack) if k.startswith("event:")]
    assert len(keys) == len(set(keys)), keys  # no announcement posted twice


async def test_a_stall_before_the_first_card_posts_no_card(deps: Deps, slack: SlackEmulator,
                                                            clock: FakeClock) -> None:
    """Stalled past the lease before the card went out: this pass posts nothing at all."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    load = d._load

    async def slow_load(session: Any, release_id: int) -> Any:
        view = await load(session, release_id)
        clock.advance(seconds=LEASE.total_seconds() + 1)  # another replica may hold it now
        return view

    d._load = slow_load  # type: ignore[method-assign]
    assert await d.deliver_pending() == 0
    assert slack.calls_to("chat.postMessage") == []
    d._load = load  # type: ignore[method-assign]
    clock.advance(seconds=10)
    assert await d.deliver_pending() == len(await outbox(deps, rid))
    assert post_keys(slack).count("card") == 1


async def test_releases_are_delivered_side_by_side_each_in_order(deps: Deps,
                                                                 slack: SlackEmulator) -> None:
    """Several releases at once (never more than PARALLEL); each thread keeps its order."""
    d = deliverer(deps, slack)
    rids = [await filed(deps, project) for project in ["payments", "web"] * 4]
    pending = sum([len(await outbox(deps, rid)) for rid in rids])
    running, most = 0, 0
    deliver_release = d.deliver_release

    async def counted(rid: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            return await deliver_release(rid)
        finally:
            running -= 1

    d.deliver_release = counted  # type: ignore[method-assign]
    assert await d.deliver_pending() == pending
    assert 1 < most <= PARALLEL
    for rid in rids:
        rows = await outbox(deps, rid)
        assert all(m.sent_at is not None for m in rows)
        mine = [k for k in post_keys(slack) if k.startswith("event:")
                and int(k.split(":")[1]) in {m.id for m in rows}]
        assert mine == [f"event:{m.id}" for m in rows if m.kind == "event"]


async def test_refresh_card_alone_redraws_only_on_change_unless_forced(
        deps: Deps, slack: SlackEmulator) -> None:
    """No change, no update; `force` redraws anyway; no card or no release, nothing."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    assert await d.refresh_card(rid) is False  # no card yet
    await d.deliver_pending()
    updates = len(slack.calls_to("chat.update"))
    assert await d.refresh_card(rid) is False
    assert await d.refresh_card(rid, force=True) is True
    assert await d.refresh_card(999) is False
    assert len(slack.calls_to("chat.update")) == updates + 1


async def test_one_failing_release_does_not_stop_the_others(deps: Deps,
                                                            slack: SlackEmulator) -> None:
    """An error in one release's delivery is raised after the others are done."""
    d = deliverer(deps, slack)
    bad, good = await filed(deps), await filed(deps, "web")
    deliver_release = d.deliver_release

    async def failing(rid: int) -> int:
        if rid == bad:
            raise RuntimeError("database went away")
        await asyncio.sleep(0.05)  # still running when the other fails
        return await deliver_release(rid)

    d.deliver_release = failing  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await d.deliver_pending()
    assert all(m.sent_at is not None for m in await outbox(deps, good))
    assert all(m.sent_at is None for m in await outbox(deps, bad))


async def test_mark_sent_commits_with_a_failed_renewal(deps: Deps, slack: SlackEmulator,
                                                       clock: FakeClock) -> None:
    """Renewing a lease that is gone still records the row posted before it."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    rows = await outbox(deps, rid)
    async with transaction(deps.sessions) as session:
        await q.lease_release_outbox(session, rid, owner="another:pass", now=clock(),
                                     until=clock() + LEASE)
    with pytest.raises(LeaseLost):
        await d._renew(rid, "not-the-holder", rows[0].id)
    assert (await outbox(deps, rid))[0].sent_at is not None
