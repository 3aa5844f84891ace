"""Delivers the outbox to Slack: the card, its thread, broadcasts and direct asks, once each."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.plan import listed
from bot.readmodel import ReleaseView, read_view
from bot.transition import Deps
from bot.workflow import Event, State
from handlers.asks import (
    DOERS,
    PROMPTS,
    SIGNOFF,
    Doers,
    ask_over,
    prompt_over,
    prompt_stands,
    settled_line,
)
from handlers.blocks import ActionId, button, escape, mention, section, subject_text
from handlers.blocks import link as card_link
from handlers.cards import (
    abandon_button,
    acceptance_buttons,
    approval_buttons,
    arm_button,
    build_release_card,
    decide_buttons,
    rollback_button,
    verify_buttons,
)
from handlers.digest import DigestLine, build_digest
from handlers.directory import Directory
from handlers.render import event_text, notice_text, payload_event, tell_text
from handlers.status import close_summary
from storage import queries as q
from storage.db import one_read, transaction
from storage.models import AskMessage, OutboxMessage

log = logging.getLogger(__name__)
LEASE = timedelta(seconds=20)  # renewed while posting, so a dead replica's hold ends soon
RENEW_AFTER = LEASE / 4  # a lease younger than this is ours still: posts go without renewing
# Another worker holds a release's announcements: look again after 50 ms, doubling to 2 s (the
# periodic pass covers it after that), for rows committed after it took them.
BUSY_FIRST, BUSY_MOST = 0.05, 2.0
AMBIGUOUS = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
META_EVENT = "releasebot_post"
FIND_PAGES = 10  # how far back (pages of 200) a retry looks for a post that landed
PARALLEL = 4  # releases delivered at once; each one's lease keeps its own posts in order
# Failed deliveries wait 5 s, then twice as long each time, at most 10 minutes: a channel the
# bot is not in may stay so for days, and must not cost a call every few seconds meanwhile.
RETRY_FIRST, RETRY_MOST = 5.0, 600.0
PERMALINKS_KEPT = 2048  # cards whose links are remembered: every release in flight and more
NOT_IN_CHANNEL = frozenset({"not_in_channel", "channel_not_found"})
VERIFY_ASKS = frozenset({"verify_now", "verify"})  # testers' asks carry the verify buttons
# An ask DM whose update Slack may accept later is tried again at the card's next redraw, up
# to this many times in all: a live button there only leads to a refusal, but a DM Slack keeps
# refusing must not cost a call on every pass. Any other refusal (message_not_found,
# cant_update_message, channel_not_found) will not change: that DM is left settled.
SETTLE_TRIES = 3
PASSING = AMBIGUOUS | {"ratelimited", "connection"}


class Card(NamedTuple):
    """A card drawn once: its fallback text, blocks and their hash."""

    text: str
    blocks: list[dict[str, Any]]
    digest: str


@dataclass
class _Hold:
    """Our lease on one release's announcements during a pass."""

    release_id: int
    token: str
    renewed: datetime  # when it was taken or last extended
    posted: list[int] = field(default_factory=list)  # rows posted, not yet marked sent
    number: int = 0  # which posting pass of this process it is


class LeaseLost(Exception):
    """Another replica took over a release's announcements (ours expired)."""


def card_hash(text: str, blocks: list[dict[str, Any]]) -> str:
    """A fingerprint of what the card shows, to skip updates that change nothing."""
    raw = json.dumps([text, blocks], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()


def _metadata(release_id: int | None, key: str) -> dict[str, Any]:
    """Message metadata that lets a retry find a post that landed despite an error."""
    return {"event_type": META_EVENT, "event_payload": {"release": release_id, "key": key}}


class Deliverer:
    """Posts pending announcements; any replica may run one, leases keep each post single."""

    def __init__(self, deps: Deps, client: AsyncWebClient, directory: Directory) -> None:
        self.deps, self.client, self.directory = deps, client, directory
        self.owner = uuid.uuid4().hex
        self._wake = asyncio.Event()
        self._pass = asyncio.Lock()  # one pass at a time here; leases keep replicas apart
        self._due: set[int | None] = set()  # kicked for these releases (None: digests)
        self._scan = True  # kicked for whatever waits: look it up
        self._busy: dict[int, int] = {}  # releases another worker was delivering: tries since
        # Slack's last word on the release channel when it refused our posts there
        # (not_in_channel, channel_not_found); None since a delivery went through.
        self.channel_problem: str | None = None
        self._permalinks: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._posts = 0  # posting passes begun, numbered
        self._ok_from = 0  # the newest pass that went through: older failures are stale news

    def kick(self, release_ids: Iterable[int | None] | None = None) -> None:
        """Deliver soon: something was just committed (for these releases, when known)."""
        if release_ids is None:
            self._scan = True
        else:
            self._due.update(release_ids)
        self._wake.set()

    async def run(self, interval: float = 2.0) -> None:
        """Deliver whenever kicked, and every `interval` seconds for what others left."""
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
            # lands as the timeout fires, and this loop would then never stop.
            try:
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            except TimeoutError:
                self._scan = True
            self._wake.clear()
            due, self._due = self._due, set()
            scan, self._scan = self._scan, False
            try:
                await self.deliver_pending(None if scan else due)
            except Exception:  # the loop must outlive any one failure; the rows stay pending
                log.exception("outbox delivery failed")

    async def deliver_pending(self, only: set[int | None] | None = None) -> int:
        """One pass over releases with pending announcements, and digests; how many posts.

        `only`: just these releases (None in it: the digests), known to have new rows; they
        need no query to find them.
        """
        async with self._pass:
            if only is None:
                async with self.deps.sessions() as session:
                    waiting = await q.releases_with_outbox(session, now=self.deps.clock())
            else:
                waiting = sorted(only, key=lambda r: (r is not None, r or 0))
            release_ids = [r for r in waiting if r is not None]
            slots = asyncio.Semaphore(PARALLEL)

            async def deliver(rid: int) -> int:
                async with slots:
                    return await self.deliver_release(rid)

            digests = [self.deliver_digests()] if None in waiting else []
            # One release failing must not cancel the others mid-post: let all finish first.
            done = await asyncio.gather(*map(deliver, release_ids), *digests,
                                        return_exceptions=True)
        failed = [r for r in done if isinstance(r, BaseException)]
        for exc in failed[1:]:
            log.error("outbox delivery failed", exc_info=exc)
        if failed:
            raise failed[0]
        return sum(r for r in done if isinstance(r, int))

    async def deliver_release(self, release_id: int) -> int:
        """Lease one release's announcements and post them in order."""
        now = self.deps.clock()
        token = f"{self.owner}:{uuid.uuid4().hex[:8]}"  # one lease per pass, even in-process
        async with transaction(self.deps.sessions) as session:
            rows = await q.lease_release_outbox(session, release_id, owner=token, now=now,
                                                until=now + LEASE)
            # What to post, read in the lease's transaction: one database session fewer. The
            # open asks first: the view read after them is as new as what each was sent on.
            asks = await q.open_asks(session, release_id) if rows else []
            view = await self._load(session, release_id) if rows else None
        if rows is None:  # another worker is posting it: look again soon for what it missed
            self._look_again(release_id)
        if view is None or not rows:
            return 0
        self._busy.pop(release_id, None)
        self._posts += 1
        this_pass = self._posts
        try:
            posted = await self._post_all(view, list(rows),
                                          _Hold(release_id, token, now, number=this_pass), asks)
        except (SlackApiError, LeaseLost) as exc:
            error = str(exc.response.get("error")) if isinstance(exc, SlackApiError) else "lost"
            log.warning("REL-%s: delivery stopped (%s); will retry", release_id, error)
            if error in NOT_IN_CHANNEL:
                if this_pass > self._ok_from:  # not a pass begun before a later one went through
                    self.channel_problem = error
                if rows[0].last_error != error:  # news: say it once
                    await self._invite_me(view)
            await self._give_back(release_id, token, error, rows[0].attempts)
            return 0
        return posted

    def _in_channel(self, number: int) -> None:
        """Slack took a post in the release channel during pass `number`: the bot is in."""
        self._ok_from = max(self._ok_from, number)
        self.channel_problem = None

    def _look_again(self, release_id: int) -> None:
        """Kick this release again shortly, backing off while another worker keeps it."""
        tries = self._busy[release_id] = self._busy.get(release_id, 0) + 1
        delay = min(BUSY_FIRST * 2 ** (tries - 1), BUSY_MOST)
        asyncio.get_running_loop().call_later(delay, self.kick, [release_id])

    async def deliver_digests(self) -> int:
        """Post the reminder digests nobody else is posting, each under its own lease."""
        posted = 0
        while True:
            now = self.deps.clock()
            token = f"{self.owner}:{uuid.uuid4().hex[:8]}"
            async with transaction(self.deps.sessions) as session:
                row = await q.lease_digest(session, owner=token, now=now, until=now + LEASE)
            if row is None:
                return posted
            posted += await self._post_digest(row, token)

    async def _post_digest(self, row: OutboxMessage, token: str) -> int:
        """One digest: the releases still waiting on its person, linked; then marked sent.

        A release that moved on since the digest was queued is left out; a person nothing
        waits on any more gets no message. Like every direct message, a Slack refusal skips it.
        """
        user = str(row.payload.get("user") or "")
        items = row.payload.get("items") or []
        lines = await self._digest_lines(user, items)
        more = max(int(row.payload.get("total") or 0) - len(items), 0)
        now = self.deps.clock()
        async with transaction(self.deps.sessions) as session:
            if not await q.renew_digest_lease(session, row.id, owner=token, now=now,
                                              until=now + LEASE):
                return 0  # it took us too long: another replica has it now
        if lines:
            text, blocks = build_digest(lines, more, now)
            await self._direct(user, None, f"digest:{row.id}", text=text, blocks=blocks)
        async with transaction(self.deps.sessions) as session:
            await q.mark_sent(session, row.id, self.deps.clock())
        return int(bool(lines))

    async def _digest_lines(self, user: str, items: list[dict[str, Any]]) -> list[DigestLine]:
        """The digest's releases as they are now, with links to their cards."""
        actor = await self.directory.actor(user)
        async with self.deps.sessions() as session:
            views = {}
            for item in items:
                view = await read_view(session, self.deps.policy, int(item["release"]))
                rel = view and view.release
                if rel and (rel.state, rel.revision) == (item.get("state"), item.get("revision")):
                    views[rel.id] = view
        lines = []
        for item in items:
            view = views.get(int(item["release"]))
            if view is None:
                continue  # it moved on since the digest was queued
            if item.get("waits") == "approval" and view.may_sign(actor) is None:
                continue  # signed meanwhile, or the role is gone
            rel = view.release
            link = await self.permalink(rel.card_channel, rel.card_ts)
            lines.append(DigestLine(view, str(item.get("waits")), link, item.get("detail") or {}))
        return lines

    async def _give_back(self, release_id: int, token: str, error: str, attempts: int) -> None:
        """Return the lease so the rows are retried, later each time they fail again."""
        delay = timedelta(seconds=min(RETRY_FIRST * 2 ** max(attempts - 1, 0), RETRY_MOST))
        async with transaction(self.deps.sessions) as session:
            await q.release_outbox_lease(session, release_id, owner=token, error=error,
                                         retry_at=self.deps.clock() + delay)

    async def _invite_me(self, view: ReleaseView) -> None:
        """Tell the requester and the release managers the bot must be invited to the channel."""
        channel = self.deps.policy.release_channel
        text = (f"I can't post {view.release.rel_id} in <#{channel}>: I'm not a member of it. "
                f"Please invite me there (`/invite @releasebot` in that channel); its card and "
                f"updates follow as soon as I'm in.")
        managers = await self.directory.users_in_roles(["release_manager"])
        for user in dict.fromkeys([view.release.requester, *managers]):
            try:
                await self.client.chat_postMessage(channel=user, text=text)
            except SlackApiError as exc:
                log.warning("REL-%s: could not tell %s about the channel: %s",
                            view.release.id, user, exc.response.get("error"))

    async def _renew(self, hold: _Hold, *, now: datetime | None = None) -> None:
        """Once the lease is a while old, mark the rows posted sent and extend it.

        One transaction for both; the marks commit even when the lease turns out lost, so
        whoever took over does not post those rows again. Then, if it is lost, stop. A lease
        taken or extended moments ago is ours still: no round trip for it.
        """
        now = now or self.deps.clock()
        if now - hold.renewed < RENEW_AFTER:
            return
        async with transaction(self.deps.sessions) as session:
            await q.mark_sent_many(session, hold.posted, now)
            ours = await q.renew_outbox_lease(session, hold.release_id, owner=hold.token,
                                              now=now, until=now + LEASE)
        hold.posted.clear()
        hold.renewed = now
        if not ours:
            raise LeaseLost(hold.release_id)

    async def _post_all(self, view: ReleaseView, rows: list[OutboxMessage], hold: _Hold,
                        asks: Sequence[AskMessage] = ()) -> int:
        """Ensure the card, post each row, redraw the card once, then settle the `asks` over.

        The rows stay leased until the card is redrawn, so no other worker redraws it at the
        same time; they are marked sent with the new card's hash in one transaction.
        """
        card = self._render(view)
        if not view.release.card_ts:  # a stall since the lease must not let two cards out
            await self._renew(hold)
        await self._ensure_card(view, card, retrying=rows[0].attempts > 1)
        self._in_channel(hold.number)  # said at once: a filing meanwhile is told where its card is
        for row in rows:
            await self._renew(hold)
            await self._post_row(view, row)
            hold.posted.append(int(row.id or 0))
        fresh = None
        try:
            fresh = await self._finish(hold, view, await self._redrawn(hold, view, card))
            if fresh is not None:  # the release moved on while we posted: show that too
                await self._finish(hold, None,
                                   await self._redrawn(hold, fresh, self._render(fresh)))
        finally:  # the DMs are other messages: a card Slack refused leaves them no less over
            await self.settle_asks(fresh or view, asks)
        return len(rows)

    async def _redrawn(self, hold: _Hold, view: ReleaseView, card: Card) -> str | None:
        """The card updated (its new hash, if it changed); a failure still marks what was
        posted sent before it is raised."""
        try:
            return await self._update_card(view, card)
        except Exception:
            await self._finish(hold, None, None)
            raise

    async def _post_row(self, view: ReleaseView, row: OutboxMessage) -> None:
        """Post one announcement the way its kind is delivered."""
        if row.kind == "event":
            await self._post_event(view, row)
        elif row.kind == "ask":
            await self._ask(view, row)
        elif row.kind == "notify":
            await self._notify(view, row)
        elif row.kind == "tell":
            await self._tell(view, row)

    async def _finish(self, hold: _Hold, drawn: ReleaseView | None,
                      shown: str | None) -> ReleaseView | None:
        """Keep the card's new hash; mark the rows sent unless the release moved on since
        `drawn` (then it is read afresh and returned, its rows still held for its redraw)."""
        async with transaction(self.deps.sessions) as session:
            if shown is not None:
                version = await q.save_card_hash(session, hold.release_id, shown)
            else:
                version = await q.release_version(session, hold.release_id)
            if drawn is not None and version not in (None, drawn.release.version):
                return await self._load(session, hold.release_id)
            await q.mark_sent_many(session, hold.posted, self.deps.clock())
        hold.posted.clear()
        return None

    async def _summary(self, release_id: int, payload: dict[str, Any]) -> str:
        """The closing report: timeline, sign-offs, report, deploys, release notes."""
        async with self.deps.sessions() as session:
            view = await read_view(session, self.deps.policy, release_id, full=True)
        assert view is not None, release_id  # a release is never deleted
        return close_summary(view, self.deps.policy.tz, payload.get("detail") or {},
                             self.deps.policy.users_in_role("operations"))

    async def _load(self, session: AsyncSession, release_id: int) -> ReleaseView | None:
        """The release as this session sees it, in one statement."""
        return await read_view(session, self.deps.policy, release_id)

    def _render(self, view: ReleaseView) -> Card:
        """The card of this view, drawn once for however many uses."""
        text, blocks = build_release_card(view, self.deps.policy.tz)
        return Card(text, blocks, card_hash(text, blocks))

    async def _ensure_card(self, view: ReleaseView, card: Card, retrying: bool) -> None:
        """Post the card once; an earlier post that landed despite an error is reused."""
        rel = view.release
        if rel.card_ts:
            return
        channel = self.deps.policy.release_channel
        ts = await self._find_post(channel, rel.id, "card") if retrying else None
        if ts is None:
            ts = await self._post(channel, rel.id, "card", text=card.text, blocks=card.blocks)
        async with transaction(self.deps.sessions) as session:
            await q.save_card(session, rel.id, channel=channel, ts=ts, card_hash=card.digest)
        rel.card_channel, rel.card_ts, rel.card_hash = channel, ts, card.digest

    async def refresh_card(self, release_id: int, force: bool = False) -> bool:
        """Redraw the card in place if what it shows changed, and settle the asks that are
        over; whether the card was updated."""
        async with one_read(self.deps.sessions) as session:
            asks = await q.open_asks(session, release_id)  # before the view, as in a pass
            view = await self._load(session, release_id)
        if view is None:  # no such release (a forged button)
            return False
        await self.settle_asks(view, asks)
        if not view.release.card_ts:  # no card yet
            return False
        shown = await self._update_card(view, self._render(view), force)
        if shown is None:
            return False
        async with transaction(self.deps.sessions) as session:
            await q.save_card(session, release_id, card_hash=shown)
        return True

    async def _update_card(self, view: ReleaseView, card: Card,
                           force: bool = False) -> str | None:
        """chat.update the posted card to `card` unless it shows it already (or `force`);
        the hash it shows now, when it was updated."""
        rel = view.release
        if card.digest == rel.card_hash and not force:
            return None
        await self.client.chat_update(channel=rel.card_channel, ts=rel.card_ts, text=card.text,
                                      blocks=card.blocks)
        rel.card_hash = card.digest
        return card.digest

    async def _post_event(self, view: ReleaseView, row: OutboxMessage) -> None:
        """One thread reply; results are broadcast to the channel too."""
        rel = view.release
        key = f"event:{row.id}"
        if row.attempts > 1 and await self._find_post(rel.card_channel, rel.id, key,
                                                       thread_ts=rel.card_ts):
            return
        text = event_text(row.payload)
        if payload_event(row.payload) is Event.CLOSE:
            text = await self._summary(rel.id, row.payload)
        await self._post(rel.card_channel, rel.id, key, text=text,
                         thread_ts=rel.card_ts, reply_broadcast=bool(row.payload.get("broadcast")))

    async def _ask(self, view: ReleaseView, row: OutboxMessage) -> None:
        """Ask each approver still needed, directly, with the card's buttons."""
        rel = view.release
        if view.state is not State.READY_FOR_SIGNOFF or row.payload.get("revision") != rel.revision:
            return  # the moment passed before delivery: asking now would be noise
        what = (", ".join(c.project for c in view.components) if view.is_train else
                f"{rel.project} @ {view.pin.short}" if view.pin else rel.project)
        text = f"{rel.rel_id} ({escape(what)}) needs your sign-off: {escape(rel.title[:200])}"
        link = await self.permalink(rel.card_channel, rel.card_ts)
        users = row.payload.get("users") or await self.directory.users_in_roles(
            view.missing_roles)
        blocks = ask_blocks(view, link)  # the same for every approver: drawn once
        asked = await self._asked(row)
        sent: list[tuple[str, str, str]] = []
        for user in users:
            if user in asked or view.may_sign(await self.directory.actor(user)) is None:
                continue  # asked before a retry, the requester, or every role here signed
            where = await self._direct(user, rel.id, f"ask:{row.id}:{user}", text=text,
                                       blocks=blocks)
            if where is not None:
                sent.append((user, *where))
        await self._keep_asks(view, row, sent, SIGNOFF)

    async def _asked(self, row: OutboxMessage) -> set[str]:
        """Who got this ask already, when it is being retried (none on the first try)."""
        if row.attempts <= 1 or row.id is None:
            return set()
        async with self.deps.sessions() as session:
            return await q.asked_users(session, row.id)

    async def settle_asks(self, view: ReleaseView, asks: Sequence[AskMessage]) -> int:
        """Replace each of these DMs with buttons (sign-off asks, prompts) that no longer
        stands by one line saying why.

        Each is claimed (marked settled) before its update, so replicas settling the same
        release update it once; how many this call updated.
        """
        doers = await self._doers(view, asks)
        over: dict[int, tuple[AskMessage, str]] = {}
        for ask in asks:
            if ask.kind == SIGNOFF:
                reason = ask_over(view, ask.revision, await self.directory.actor(ask.user))
            else:
                reason = prompt_over(view, ask.kind, ask.revision, ask.environment, ask.user,
                                     doers)
            if reason is not None and ask.id is not None:
                over[ask.id] = (ask, reason)
        if not over:
            return 0
        async with transaction(self.deps.sessions) as session:
            mine = await q.claim_asks(session, list(over), self.deps.clock())
        link = await self.permalink(view.release.card_channel, view.release.card_ts)
        done = 0
        for ask_id in mine:
            ask, reason = over[ask_id]
            text = settled_line(view, ask.kind, ask.environment, reason, link)
            done += await self._close_ask(ask, text)
        return done

    async def _doers(self, view: ReleaseView, asks: Sequence[AskMessage]) -> Doers:
        """Who last verified, failed or abandoned the release: read only when a prompt among
        `asks` no longer stands, to name who ended it."""
        if all(a.kind == SIGNOFF or prompt_stands(view, a.kind, a.revision, a.environment)
               for a in asks):
            return {}
        async with self.deps.sessions() as session:
            return await q.newest_actors(session, view.release.id or 0, [e.value for e in DOERS])

    async def _close_ask(self, ask: AskMessage, text: str) -> bool:
        """Update one claimed ask DM to `text`, without buttons; a failure Slack may get over
        is given back for the next redraw, up to SETTLE_TRIES tries."""
        try:
            await self.client.chat_update(channel=ask.channel, ts=ask.ts, text=text,
                                          blocks=[section(text)])
            return True
        except SlackApiError as exc:
            error = str(exc.response.get("error"))
        except (aiohttp.ClientError, TimeoutError):
            error = "connection"
        again = error in PASSING and ask.attempts + 1 < SETTLE_TRIES
        log.warning("REL-%s: ask DM to %s not settled: %s%s", ask.release_id, ask.user, error,
                    " (tried again at the next redraw)" if again else "")
        async with transaction(self.deps.sessions) as session:
            await q.note_ask_error(session, int(ask.id or 0), error, reopen=again)
        return False

    async def _notify(self, view: ReleaseView, row: OutboxMessage) -> None:
        """A direct message to people and roles (and the thread, if asked), with a prompt button."""
        rel = view.release
        payload = row.payload
        in_roles = await self.directory.users_in_roles(payload.get("roles", []))
        skip = set(payload.get("skip") or ())
        users = [u for u in dict.fromkeys([*payload.get("users", []), *in_roles]) if u not in skip]
        notice = str(payload.get("notice", ""))
        text = notice_text(notice, rel.rel_id, payload.get("detail") or {})
        if payload.get("thread"):
            await self._post_thread_line(view, f"notify:{row.id}:thread", text,
                                         retrying=row.attempts > 1)
        blocks = [section(text)]
        if buttons := prompt_buttons(view, notice):
            blocks.append({"type": "actions", "block_id": f"prompt:{rel.id}",
                           "elements": buttons})
        sent: list[tuple[str, str, str]] = []
        for user in users:
            where = await self._direct(user, rel.id, f"notify:{row.id}:{user}", text=text,
                                       blocks=blocks)
            if where is not None and buttons:
                sent.append((user, *where))
        if notice in PROMPTS:
            env = (payload.get("detail") or {}).get("environment")
            await self._keep_asks(view, row, sent, notice, str(env) if env else None)

    async def _keep_asks(self, view: ReleaseView, row: OutboxMessage,
                         sent: list[tuple[str, str, str]], kind: str,
                         environment: str | None = None) -> None:
        """Record the DMs with buttons just sent (user, channel, ts), at once, so a later
        redraw can take their buttons away again."""
        if not sent:
            return
        rel, now = view.release, self.deps.clock()
        async with transaction(self.deps.sessions) as session:
            for user, channel, ts in sent:
                q.add_ask_message(session, release_id=rel.id or 0, revision=rel.revision,
                                  outbox_id=row.id, user=user, channel=channel, ts=ts, at=now,
                                  kind=kind, environment=environment)

    async def _tell(self, view: ReleaseView, row: OutboxMessage) -> None:
        """The policy's `notify`: a line linking the card to channels, a DM to people and groups."""
        rel = view.release
        link = await self.permalink(rel.card_channel, rel.card_ts)
        names = ", ".join(c.project for c in view.components) if view.is_train else rel.project
        text = tell_text(rel.rel_id, f"{names} — {rel.title[:100]}", row.payload, link)
        groups = await self.directory.groups()
        targets: dict[str, None] = {}
        for target in row.payload.get("targets") or []:
            members = sorted(groups.get(target, ())) if target.startswith("S") else [target]
            targets.update(dict.fromkeys(members))
        for target in targets:  # a channel post, like a DM, is tried once and skipped on error
            await self._direct(target, rel.id, f"tell:{row.id}:{target}", text=text)

    async def _post_thread_line(self, view: ReleaseView, key: str, text: str, *,
                                retrying: bool) -> None:
        """One reply in the card's thread, once even when a retry follows a Slack error."""
        rel = view.release
        if retrying and await self._find_post(rel.card_channel, rel.id, key,
                                              thread_ts=rel.card_ts):
            return
        await self._post(rel.card_channel, rel.id, key, text=text, thread_ts=rel.card_ts)

    async def _direct(self, user: str, release_id: int | None, key: str,
                      **kw: Any) -> tuple[str, str] | None:
        """A direct message, at most once: a refusal or an error skips this one person.
        Where it went: the IM's channel id and the message's ts.

        Retrying the row would repeat the messages already sent to the others, forever if
        this person can't be reached, and hold back the release's later announcements.
        """
        try:
            return await self._posted(user, release_id, key, **kw)
        except SlackApiError as exc:
            error = exc.response.get("error")
            maybe = " (it may have arrived)" if error in AMBIGUOUS else ""
            about = f"REL-{release_id}" if release_id is not None else "reminder digest"
            log.warning("%s: direct message %s to %s failed: %s%s", about, key, user, error,
                        maybe)
            return None

    async def permalink(self, channel: str | None, ts: str | None) -> str | None:
        """A link to the card, when Slack gives one; asked once per card, since a message's
        permalink never changes (App Home shows up to 15 at each opening)."""
        if not channel or not ts:
            return None
        if (found := self._permalinks.get((channel, ts))) is not None:
            self._permalinks.move_to_end((channel, ts))
            return found
        try:
            resp = await self.client.chat_getPermalink(channel=channel, message_ts=ts)
        except SlackApiError:
            return None
        link = resp.get("permalink")
        if isinstance(link, str):
            self._permalinks[(channel, ts)] = link
            if len(self._permalinks) > PERMALINKS_KEPT:
                self._permalinks.popitem(last=False)
        return link

    async def _post(self, channel: str | None, release_id: int | None, key: str,
                    **kw: Any) -> str:
        """chat.postMessage with metadata; the new message's ts."""
        return (await self._posted(channel, release_id, key, **kw))[1]

    async def _posted(self, channel: str | None, release_id: int | None, key: str,
                      **kw: Any) -> tuple[str, str]:
        """chat.postMessage with metadata; the channel (a DM's is the IM, not the user) and
        ts. Mentions in user text stay inert (no link_names)."""
        resp = await self.client.chat_postMessage(
            channel=channel, metadata=_metadata(release_id, key), unfurl_links=False,
            unfurl_media=False, **kw)
        return str(resp["channel"]), str(resp["ts"])

    async def _find_post(self, channel: str | None, release_id: int, key: str,
                         thread_ts: str | None = None) -> str | None:
        """The ts of an earlier post with this key, if one landed (Slack may err after posting).

        Pages back through the channel (or thread): a busy channel may have moved far past it.
        """
        if not channel:
            return None
        cursor = None
        for _ in range(FIND_PAGES):
            try:
                if thread_ts:
                    resp = await self.client.conversations_replies(
                        channel=channel, ts=thread_ts, include_all_metadata=True, limit=200,
                        cursor=cursor)
                else:
                    resp = await self.client.conversations_history(
                        channel=channel, include_all_metadata=True, limit=200, cursor=cursor)
            except SlackApiError:
                return None
            for msg in resp.get("messages") or []:
                payload = (msg.get("metadata") or {}).get("event_payload") or {}
                if payload.get("release") == release_id and payload.get("key") == key:
                    return str(msg["ts"])
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None


def prompt_buttons(view: ReleaseView, notice: str) -> list[dict[str, Any]]:
    """The buttons a notice carries while what it prompts is still possible (else none)."""
    if notice == "verify_deadline" and view.state is State.DEPLOYED:
        return [rollback_button(view)]
    if notice == "stuck" and view.state in (State.DEPLOYING, State.ROLLING_BACK):
        return [abandon_button(view)]
    if notice in VERIFY_ASKS and view.state is State.DEPLOYED:
        return verify_buttons(view)
    if notice == "accept":
        return acceptance_buttons(view)
    if notice == "arm":
        return arm_button(view)
    if notice == "decide":
        return decide_buttons(view)
    return []


def ask_blocks(view: ReleaseView, link: str | None) -> list[dict[str, Any]]:
    """The direct ask: what, where, and the same Approve/Reject buttons as the card."""

    rel = view.release
    where = f" ({card_link(link, 'see the card')})" if link else ""
    text = (f"*{rel.rel_id}* · {subject_text(view)} — "
            f"{escape(rel.title[:500])}\nRequested by {mention(rel.requester)}; "
            f"needs sign-off by {escape(listed(view.missing_roles))}{where}.")
    # The notes' button carries the release alone: reading them stays possible as it moves on.
    notes = button("Release notes", ActionId.NOTES, str(rel.id))
    return [section(text), {"type": "actions", "block_id": f"ask:{rel.id}",
                            "elements": [*approval_buttons(view), notes]}]
