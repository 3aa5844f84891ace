"""The deliverer on a real database and the Slack emulator: what it posts, and at what cost."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy import event, update
from sqlmodel import col, select

from bot import releases
from bot.deploys import Deployer
from bot.jobs import Jobs
from bot.people import actor_for
from bot.readmodel import ReleaseView, read_view
from bot.releases import NewRelease, ReportInput
from bot.transition import Deps
from emulators.gitlab import GitLabEmulator
from emulators.sample import DEV, DIRECTOR, LEAD, TESTER, sample_policy
from emulators.slack import SlackEmulator
from handlers.blocks import ActionId
from handlers.delivery import LEASE, PARALLEL, SETTLE_TRIES, Deliverer, LeaseLost, _Hold
from handlers.directory import Directory
from handlers.notes_text import notes_mrkdwn
from storage import queries as q
from storage.db import transaction
from storage.models import AskMessage, OutboxMessage
from tests.fixtures import FakeClock, gitlab_client


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
    """One sign-off, kicked by its click: a thread reply, a card redraw and the approver's
    own ask DM settled, in 3 transactions and at most 7 statements (it was 5 and 17)."""
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
        assert await d.deliver_pending({rid}) == 1
    finally:
        event.remove(engine, "begin", on_begin)
        event.remove(engine, "before_cursor_execute", on_sql)
    # Claim the rows (PostgreSQL: under its advisory lock), read the open asks and the
    # release in one statement each; then keep the card's hash (reading the version), mark
    # the row sent; then claim the ask DM the approver no longer needs.
    assert seen["begin"] <= 3 and seen["sql"] <= 7, seen
    assert [c.args["channel"] for c in slack.calls_to("chat.update")] == ["C0RELEASES",
                                                                         "DU0DIRECTOR"]
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
    hold = _Hold(rid, "not-the-holder", clock() - LEASE, posted=[rows[0].id])  # an old lease
    with pytest.raises(LeaseLost):
        await d._renew(hold)
    assert (await outbox(deps, rid))[0].sent_at is not None


async def reminded(deps: Deps, d: Deliverer, gitlab: GitLabEmulator, clock: FakeClock,
                   n: int) -> list[int]:
    """n releases waiting 4 h for sign-off, their cards and asks posted, digests queued."""
    rids = [await filed(deps, "web") for _ in range(n)]
    await d.deliver_pending()
    clock.advance(hours=4)
    jobs = Jobs(deps, Deployer(deps, gitlab_client(gitlab)), notes_mrkdwn, people=d.directory)
    assert await jobs.remind() == 2  # the tech director and the test lead
    return rids


def digest_dms(slack: SlackEmulator, user: str) -> list[Any]:
    """The reminder digests a person got."""
    return [m for m in slack.dms(user) if m.text.startswith("Reminder:")]


async def test_a_digest_is_one_dm_linking_each_card_with_approve(
        deps: Deps, slack: SlackEmulator, gitlab: GitLabEmulator, clock: FakeClock) -> None:
    """Three releases wait on the test lead: one message, each card linked, Approve beside it;
    the director already signed one meanwhile, so their digest names the other two."""
    d = deliverer(deps, slack)
    rids = await reminded(deps, d, gitlab, clock, 3)
    await releases.approve(deps, release_id=rids[0], actor=actor_for(deps.policy, DIRECTOR))
    await d.deliver_pending()
    [lead] = digest_dms(slack, LEAD)
    assert lead.text == f"Reminder: 3 releases are waiting on you: REL-{rids[0]}, " \
                        f"REL-{rids[1]}, REL-{rids[2]}"
    drawn = lead.blocks[1:]
    values = [b["accessory"]["value"].split(":") for b in drawn]  # id:revision:state
    assert [(int(v[0]), v[2]) for v in values] == [(r, "ready_for_signoff") for r in rids]
    assert all(b["accessory"]["action_id"] == ActionId.APPROVE for b in drawn)
    assert all("/archives/C0RELEASES/p" in b["text"]["text"] for b in drawn)
    [director] = digest_dms(slack, DIRECTOR)
    assert [b["accessory"]["value"].split(":")[0] for b in director.blocks[1:]] == [
        str(r) for r in rids[1:]]
    assert await d.deliver_pending() == 0
    assert len(digest_dms(slack, LEAD)) == 1


async def test_a_digest_whose_releases_all_moved_on_is_not_sent(
        deps: Deps, slack: SlackEmulator, gitlab: GitLabEmulator, clock: FakeClock) -> None:
    """Signed before delivery: the director gets no reminder, and the row is done."""
    d = deliverer(deps, slack)
    [rid] = await reminded(deps, d, gitlab, clock, 1)
    await releases.approve(deps, release_id=rid, actor=actor_for(deps.policy, DIRECTOR))
    await d.deliver_pending()
    assert digest_dms(slack, DIRECTOR) == [] and len(digest_dms(slack, LEAD)) == 1
    async with deps.sessions() as session:
        assert await q.outbox_backlog(session) == 0


async def test_two_replicas_post_each_digest_once(
        deps: Deps, slack: SlackEmulator, gitlab: GitLabEmulator, clock: FakeClock) -> None:
    """Two deliverers racing over the same digests: each is posted by one of them."""
    first, second = deliverer(deps, slack), deliverer(deps, slack)
    await reminded(deps, first, gitlab, clock, 2)
    await asyncio.gather(first.deliver_pending(), second.deliver_pending(),
                         first.deliver_digests(), second.deliver_digests())
    keys = [k for k in post_keys(slack) if k.startswith("digest:")]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert len(digest_dms(slack, LEAD)) == len(digest_dms(slack, DIRECTOR)) == 1


async def test_a_user_groups_members_get_their_digest(
        deps: Deps, slack: SlackEmulator, gitlab: GitLabEmulator, clock: FakeClock) -> None:
    """Testers given as a Slack user group: its member is reminded, as asks reach groups."""
    deps.policy = sample_policy(roles={"tester": ["S0TESTERS"]})
    slack.usergroups["S0TESTERS"] = ["U0QA"]
    d = deliverer(deps, slack)
    out = await releases.request_release(deps, actor=actor_for(deps.policy, DEV), new=NewRelease(
        project="web", ref="v1.1.0", title="Copy"))
    clock.advance(hours=24)
    jobs = Jobs(deps, Deployer(deps, gitlab_client(gitlab)), notes_mrkdwn, people=d.directory)
    assert await jobs.remind() == 1
    await d.deliver_pending()
    [qa] = digest_dms(slack, "U0QA")
    assert qa.text == f"Reminder: {out.release.rel_id} is waiting on you: {out.release.rel_id}"


async def open_asks(deps: Deps, rid: int) -> list[AskMessage]:
    """The release's ask DMs not yet settled."""
    async with deps.sessions() as session:
        return list(await q.open_asks(session, rid))


async def cancelled(deps: Deps, slack: SlackEmulator) -> tuple[int, ReleaseView]:
    """A release whose two asks went out, then cancelled (not yet delivered); its view."""
    rid = await filed(deps)
    await deliverer(deps, slack).deliver_pending()
    await releases.cancel(deps, release_id=rid, actor=actor_for(deps.policy, DEV))
    async with deps.sessions() as session:
        view = await read_view(session, deps.policy, rid)
    assert view is not None and len(await open_asks(deps, rid)) == 2
    return rid, view


def dm_updates(slack: SlackEmulator) -> list[str]:
    """The channel of each chat.update of a DM, in order."""
    return [c.args["channel"] for c in slack.calls_to("chat.update")
            if c.args["channel"].startswith("D")]


async def test_two_replicas_settle_each_ask_dm_once(deps: Deps, slack: SlackEmulator) -> None:
    """Two deliverers settling the same asks at once: each DM is updated by one of them."""
    rid, view = await cancelled(deps, slack)
    one, two = deliverer(deps, slack), deliverer(deps, slack)
    asks = await open_asks(deps, rid)
    done = await asyncio.gather(one.settle_asks(view, asks), two.settle_asks(view, asks))
    assert sum(done) == 2 and sorted(dm_updates(slack)) == [f"D{DIRECTOR}", f"D{LEAD}"]
    assert await open_asks(deps, rid) == []
    assert await one.settle_asks(view, asks) == 0 and len(dm_updates(slack)) == 2


async def test_an_ask_slack_refuses_for_good_is_left(deps: Deps, slack: SlackEmulator) -> None:
    """message_not_found will not change: that DM is left settled, never tried again."""
    rid, view = await cancelled(deps, slack)
    d = deliverer(deps, slack)
    slack.fail("chat.update", error="message_not_found")
    assert await d.settle_asks(view, await open_asks(deps, rid)) == 1
    assert await open_asks(deps, rid) == [] and len(dm_updates(slack)) == 2


async def test_a_passing_failure_is_tried_a_few_times(deps: Deps, slack: SlackEmulator) -> None:
    """service_unavailable may pass: tried again at each redraw, SETTLE_TRIES times in all."""
    rid, view = await cancelled(deps, slack)
    d = deliverer(deps, slack)
    slack.fail("chat.update", times=100, error="service_unavailable")
    for _ in range(SETTLE_TRIES):
        assert len(await open_asks(deps, rid)) == 2
        assert await d.settle_asks(view, await open_asks(deps, rid)) == 0
    assert await open_asks(deps, rid) == []
    assert len(dm_updates(slack)) == 2 * SETTLE_TRIES


async def test_a_retried_ask_skips_those_asked(deps: Deps, slack: SlackEmulator,
                                               clock: FakeClock) -> None:
    """Slack fails after the ask went out, so the ask is retried: nobody is asked twice."""
    d = deliverer(deps, slack)
    rid = await filed(deps)
    post_row = d._post_row

    async def post_then_fail(view: Any, row: OutboxMessage) -> None:
        await post_row(view, row)
        if row.kind == "ask":  # as if the next row failed: the rows held are given back
            raise SlackApiError("internal_error", {"ok": False, "error": "internal_error"})

    d._post_row = post_then_fail  # type: ignore[method-assign]
    assert await d.deliver_pending() == 0
    d._post_row = post_row  # type: ignore[method-assign]
    clock.advance(seconds=600)
    assert await d.deliver_pending() > 0
    assert [len(slack.dms(u)) for u in (DIRECTOR, LEAD)] == [1, 1]
    assert len(await open_asks(deps, rid)) == 2


async def test_two_replicas_settle_each_prompt_dm_once(deps: Deps, slack: SlackEmulator) -> None:
    """Prompts are settled as asks are: claimed first, so two deliverers update each once,
    with the prompt's own line."""
    rid, view = await cancelled(deps, slack)
    async with transaction(deps.sessions) as session:  # as if both DMs had prompted arming
        await session.exec(update(AskMessage).where(col(AskMessage.release_id) == rid)
                           .values(kind="arm"))  # type: ignore[call-overload]
    one, two = deliverer(deps, slack), deliverer(deps, slack)
    asks = await open_asks(deps, rid)
    assert {a.kind for a in asks} == {"arm"}
    done = await asyncio.gather(one.settle_asks(view, asks), two.settle_asks(view, asks))
    assert sum(done) == 2 and sorted(dm_updates(slack)) == [f"D{DIRECTOR}", f"D{LEAD}"]
    assert {m.text.split("|", 1)[1] for u in (DIRECTOR, LEAD) for m in slack.dms(u)} == {
        f"REL-{rid}> no longer needs arming: it was cancelled."}
    assert await open_asks(deps, rid) == []
