"""Open bugs as the project's tracker counts them: the test report's counts, and recounts.

With a tracker, a report takes its counts from it (typed counts may only be higher), and the
bot counts again before sign-off completes, before a production deploy and on its own poll. A
bug open then that the report did not list, A or B (or C past the limit), sends the release
back to testing with its approvals void. A tracker that can't be read keeps the gate closed.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.policy import PolicyError
from bot.trackers import SEVERITIES, Bug, BugCount, Scope, Tracker, TrackerError
from bot.transition import (
    Deps,
    Outcome,
    check_event,
    locked,
    run_in_transaction,
    step,
    type_limits,
    void_approvals,
)
from bot.workflow import (
    SIGNED_OFF,
    SYSTEM,
    Actor,
    Ctx,
    Event,
    Facts,
    Refused,
    State,
    TransitionError,
)
from storage import queries as q
from storage.models import Release

log = logging.getLogger(__name__)

# What each gate lets the release do, as a refusal says it.
DOING = {"report": "take its test report", "signoff": "complete its sign-off",
         "deploy": "go to production", "poll": "stay signed off"}
# Where a release may be sent back from: tested, and production not begun.
WATCHED = (State.READY_FOR_SIGNOFF, *SIGNED_OFF, State.DEPLOYED, State.DEPLOY_FAILED)
NAMED = 20  # new bugs named in the audit trail and the thread; the rest are counted
MAX_BACKOFF = 1800.0  # seconds: a tracker down for long is still tried every half hour


class RecountNeeded(Exception):
    """A gate is about to close on a tracked release: its bugs must be counted first."""


class SentBack(Refused):
    """A recount found new open bugs: the release went back to testing."""


class Unreadable(Refused):
    """The tracker could not be read; the gate stays closed."""

    def __init__(self, sentence: str, cause: TrackerError) -> None:
        super().__init__(sentence)
        self.cause = cause


# --- which tracker, and which bugs ----------------------------------------------------------------

def tracker_of(deps: Deps, release: Release) -> Tracker | None:
    """The release's tracker, when its project has one and its type is tested at all."""
    if deps.trackers is None:
        return None
    try:
        if not deps.policy.type_policy(release.type).require_test_report:
            return None
    except PolicyError:
        return None
    return deps.trackers.for_project(release.project)


def scope_of(release: Release) -> Scope:
    """The release's project, ID and milestone (its version, else its ref)."""
    return Scope(release.project, release.rel_id, release.version_label or release.ref)


async def read(deps: Deps, release: Release, moment: str) -> BugCount:
    """The tracker's count now; Unreadable, with the tracker's reason, when it can't say."""
    tracker = tracker_of(deps, release)
    if tracker is None:
        raise Refused(f"{release.rel_id}'s project has no bug tracker.")
    try:
        return await tracker.count(scope_of(release))
    except TrackerError as exc:
        log.warning("%s: %s not read: %s", release.rel_id, tracker.source, exc)
        raise Unreadable(
            f"{release.rel_id} can't {DOING[moment]}: its open bugs are counted in "
            f"{tracker.source}, which can't be read now ({exc}). Nothing changed; try again "
            "once it answers.", exc) from None


# --- the test report ----------------------------------------------------------------------------

async def count_for_report(deps: Deps, *, release_id: int, actor: Actor,
                           revision: int | None) -> BugCount | None:
    """The tracker's count for a new report (None: untracked); asked only if it may be filed."""
    if deps.trackers is None or not deps.trackers.items():
        return None  # nothing is tracked: no read at all
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
    if release is None or tracker_of(deps, release) is None:
        return None
    await check_event(deps, release_id=release_id, event=Event.REPORT, actor=actor,
                      revision=revision)
    return await read(deps, release, "report")


def report_counts(rel_id: str, typed: dict[str, int], count: BugCount | None) -> dict[str, int]:
    """The report's counts: as typed (0 when left out), or the tracker's where it has one.

    A typed count below the tracker's is refused with both shown: bugs the tracker lists are
    open whatever the report says. A higher one stands (bugs not filed yet).
    """
    if count is None:
        return {sev: typed.get(sev, 0) for sev in SEVERITIES}
    tracked = count.counts
    lower = [sev for sev in SEVERITIES if sev in typed and typed[sev] < tracked[sev]]
    if lower:
        yours = " ".join(f"{sev}={typed[sev]}" for sev in lower)
        theirs = " ".join(f"{sev}={tracked[sev]}" for sev in lower)
        raise Refused(f"{rel_id}'s report can't show fewer open bugs than its tracker: you "
                      f"typed {yours}, and {count.source} ({count.where}) shows {theirs}. "
                      "Leave the counts out to take the tracker's, or give at least those.")
    return {sev: typed.get(sev, tracked[sev]) for sev in SEVERITIES}


def keep(session: AsyncSession, release: Release, count: BugCount, moment: str) -> None:
    """Keep what the tracker said, for the card and for the next recount to compare with."""
    q.add_bug_count(session, release=release, moment=moment, source=count.source,
                    scope=count.where, url=count.url, ids=count.ids, read_at=count.read_at)


def gate(session: AsyncSession, deps: Deps, release: Release, count: BugCount | None,
         moment: str) -> None:
    """A tracked release passes a gate only with a fresh count, kept beside the event."""
    if tracker_of(deps, release) is None:
        return
    if count is None:
        raise RecountNeeded(release.id)
    keep(session, release, count, moment)


async def reported_ids(session: AsyncSession, release: Release) -> dict[str, list[str]]:
    """The tracker's bugs the current test report was attached with, by severity."""
    if await q.latest_report(session, release) is None:
        return {}
    row = await q.latest_bug_count(session, release.id, "report")
    return dict(row.ids) if row else {}


async def accepted_bugs(session: AsyncSession, release: Release, facts: Facts) -> list[str]:
    """The reported bugs an executive's acceptance covers: those of each failing severity."""
    report, ids = facts.report, await reported_ids(session, release)
    if report is None:
        return []
    failing = [sev for sev in SEVERITIES if report.bugs.get(sev, 0) > report.limits.get(sev, 0)]
    return [f"{bug} ({sev})" for sev in failing for bug in ids.get(sev, [])]


# --- recounting before a gate closes ------------------------------------------------------------

def sending_back(count: BugCount, known: dict[str, list[str]],
                 limits: dict[str, int]) -> list[Bug]:
    """The bugs that send a release back: any new A or B, new C once past C's limit."""
    listed = {bug for ids in known.values() for bug in ids}
    new = count.new_since(listed)
    grave = [bug for bug in new if bug.severity in ("A", "B")]
    if count.counts["C"] > limits.get("C", 0):
        grave += [bug for bug in new if bug.severity == "C"]
    return grave


async def recount(deps: Deps, release_id: int, *, moment: str) -> BugCount:
    """Count again before a gate; new open bugs send the release back to testing (SentBack)."""
    async with deps.sessions() as session:
        release = await q.get_release(session, release_id)
        if release is None:
            raise Refused(f"There is no release REL-{release_id}.")
        known = await reported_ids(session, release)
    count = await read(deps, release, moment)
    new = sending_back(count, known, type_limits(deps, release))
    if not new:
        return count
    try:
        sent = await send_back(deps, release_id, count, new, moment, release.revision)
    except TransitionError as exc:
        raise Refused(f"{release.rel_id}: {count.source} shows {_listed(new)} since its test "
                      f"report, so it can't {DOING[moment]}. {exc.sentence}") from None
    if sent is None:
        raise Refused(f"{release.rel_id} changed while its bugs were being counted; look at "
                      "the card and try again.")
    raise SentBack(back_sentence(release.rel_id, count, new, moment))


async def send_back(deps: Deps, release_id: int, count: BugCount, new: Sequence[Bug],
                    moment: str, revision: int) -> Outcome | None:
    """Back to testing, approvals void, the new bugs named: one transaction."""

    async def work(session: AsyncSession) -> Outcome | None:
        release = await locked(session, release_id)
        if release.revision != revision:
            return None  # a new report or ref meanwhile: its own gates count again

        async def apply(_s: AsyncSession, rel: Release, facts: Facts) -> dict[str, Any]:
            voided = void_approvals(rel, facts)
            keep(session, rel, count, "recount")
            return {"moment": moment, "new": [bug.stored() for bug in new[:NAMED]],
                    "more": max(len(new) - NAMED, 0), "tracker": count.summary(),
                    "voided_approvals": voided}

        return await step(session, deps, release, Event.NEW_BUGS, Ctx(SYSTEM), apply)

    return await run_in_transaction(deps, work)


def _listed(bugs: Sequence[Bug]) -> str:
    """'a new open B bug (#7 Checkout fails)', '3 new open bugs (#7 (B), #8 (A), …)'."""
    if len(bugs) == 1:
        bug = bugs[0]
        return f"a new open {bug.severity} bug ({bug.id} {bug.title[:60]})"
    names = ", ".join(f"{bug.id} ({bug.severity})" for bug in bugs[:5])
    more = ", …" if len(bugs) > 5 else ""
    return f"{len(bugs)} new open bugs ({names}{more})"


_AFTER = {"signoff": "Your approval was not recorded, and earlier approvals no longer count.",
          "deploy": "Nothing was deployed; it needs a new test report and sign-off.",
          "poll": "It needs a new test report and sign-off."}


def back_sentence(rel_id: str, count: BugCount, new: Sequence[Bug], moment: str) -> str:
    """What the person whose action found the bugs is told."""
    return (f"{rel_id} went back to testing: {count.source} ({count.where}) shows "
            f"{_listed(new)} since its test report. {_AFTER.get(moment, _AFTER['poll'])}")


# --- the poll -----------------------------------------------------------------------------------

@dataclass
class BugPoller:
    """Recounts signed-off releases now and then; backs off a tracker that fails."""

    deps: Deps
    backoff_until: dict[str, datetime] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    async def poll_once(self) -> int:
        """One pass over the releases a new bug could still send back; how many went back."""
        sent = 0
        for release in await self._watched():
            project, now = release.project, self.deps.clock()
            if (until := self.backoff_until.get(project)) and now < until:
                continue
            try:
                await recount(self.deps, release.id, moment="poll")
            except SentBack:
                sent += 1
            except Unreadable as exc:
                self._back_off(project, exc.cause, now)
                continue
            except Refused:
                continue  # it moved on meanwhile
            self.failures.pop(project, None)
            self.backoff_until.pop(project, None)
        return sent

    async def _watched(self) -> list[Release]:
        """Tracked releases between sign-off and production, production not begun."""
        async with self.deps.sessions() as session:
            found = await q.releases_in(session, list(WATCHED))
            return [rel for rel in found if tracker_of(self.deps, rel) is not None
                    and not await _production_started(session, self.deps, rel)]

    def _back_off(self, project: str, exc: TrackerError, now: datetime) -> None:
        """Wait as the tracker asks, else twice as long each time (with jitter)."""
        self.failures[project] += 1
        delay = exc.retry_after if exc.retry_after is not None else (
            min(MAX_BACKOFF, 30.0 * 2 ** self.failures[project]) * random.uniform(0.5, 1.0))
        self.backoff_until[project] = now + timedelta(seconds=delay)
        log.warning("bug tracker of %s not read (%s); next try in %.0f s", project, exc, delay)


async def _production_started(session: AsyncSession, deps: Deps, release: Release) -> bool:
    """Whether this revision began a production deploy (then only rollback undoes it)."""
    project = deps.policy.projects.get(release.project)
    production = project.production if project else "production"
    return any(d.environment == production and not d.rollback and d.revision == release.revision
               for d in await q.deployments_of(session, release.id))
