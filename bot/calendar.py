"""Release windows and freezes: pure functions of an instant and the policy, no I/O.

Instants go in and come out as aware UTC; reasoning happens on the policy's local clock. A window
is open whenever the local clock shows a time inside it, so on the night the clocks skip an hour a
window inside that hour does not open, and one starting inside it opens when the clocks resume.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.policy import Freeze, Policy, Window

SEARCH_DAYS = 400
# No zone is more than 14 hours ahead of UTC; bounds when a local day can begin.
_MAX_OFFSET = timedelta(hours=14)
_LOCAL_INPUT = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:\s+|T)(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class GateResult:
    """Whether a deploy may start now; if not, why and when it next may."""

    open: bool
    reason: str | None = None
    next_allowed: datetime | None = None
    freeze: Freeze | None = None


def _utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime is taken as UTC (SQLite returns them without a zone)."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _local(moment: datetime, policy: Policy) -> datetime:
    """The instant on the policy's clock."""
    return _utc(moment).astimezone(policy.tz)


def active_freeze(now: datetime, policy: Policy) -> Freeze | None:
    """The freeze whose dates (inclusive, local) contain now, if any."""
    today = _local(now, policy).date()
    return next((f for f in policy.freezes if f.start <= today <= f.to), None)


def _covers(window: Window, local: datetime) -> bool:
    """Whether the local clock is inside the window; past midnight it counts for its start day."""
    days = {day.number for day in window.days}
    weekday, clock = local.weekday(), local.time()
    if not window.crosses_midnight:
        return weekday in days and window.start <= clock < window.end
    started_today = weekday in days and clock >= window.start
    started_yesterday = (weekday - 1) % 7 in days and clock < window.end
    return started_today or started_yesterday


def in_window(now: datetime, policy: Policy) -> bool:
    """Inside a release window (no windows means always)."""
    if not policy.windows:
        return True
    local = _local(now, policy)
    return any(_covers(window, local) for window in policy.windows)


def _allowed(moment: datetime, policy: Policy) -> bool:
    """Inside a window and outside every freeze."""
    return in_window(moment, policy) and active_freeze(moment, policy) is None


def _offset_change(lo: datetime, hi: datetime, tz: ZoneInfo) -> datetime:
    """The first whole second in (lo, hi] with a different UTC offset than lo (one change)."""
    before = lo.astimezone(tz).utcoffset()
    low, high = int(lo.timestamp()), int(hi.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, tz).utcoffset() == before:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _wall_instants(day: date, at: time, tz: ZoneInfo) -> list[datetime]:
    """Every UTC instant the local clock reads `day at`; for a skipped time, the end of the gap."""
    wall = datetime.combine(day, at)
    tries = {_utc(wall.replace(tzinfo=tz, fold=fold)) for fold in (0, 1)}
    real = sorted(t for t in tries if t.astimezone(tz).replace(tzinfo=None) == wall)
    if real:
        return real
    # In a gap, fold=1 lands before the jump and fold=0 after it: the jump lies between.
    return [_offset_change(min(tries), max(tries), tz)]


def _clock_changes(day: date, tz: ZoneInfo) -> list[datetime]:
    """The instant the local clock jumps on `day`, if it does."""
    lo = _utc(datetime.combine(day, time()).replace(tzinfo=tz))
    hi = _utc(datetime.combine(day + timedelta(days=1), time()).replace(tzinfo=tz))
    if lo.astimezone(tz).utcoffset() == hi.astimezone(tz).utcoffset():
        return []
    return [_offset_change(lo, hi, tz)]


def _candidates(day: date, policy: Policy) -> list[datetime]:
    """Instants on local `day` where deploys can become allowed: starts, thaws, clock jumps."""
    if any(f.start <= day <= f.to for f in policy.freezes):
        return []  # every instant of a frozen day is frozen
    tz = policy.tz
    starts = [w.start for w in policy.windows if day.weekday() in {d.number for d in w.days}]
    if any(f.to + timedelta(days=1) == day for f in policy.freezes):
        starts.append(time())
    # A jump can land inside a window without its start being crossed.
    return [t for at in starts for t in _wall_instants(day, at, tz)] + _clock_changes(day, tz)


def next_allowed(now: datetime, policy: Policy) -> datetime | None:
    """The first instant (UTC) from now on inside a window and outside freezes, within 400 days."""
    now = _utc(now)
    if _allowed(now, policy):
        return now
    horizon = now + timedelta(days=SEARCH_DAYS)
    first_day = _local(now, policy).date()
    pending: list[datetime] = []
    for offset in range(-1, SEARCH_DAYS + 2):
        day = first_day + timedelta(days=offset)
        for candidate in _candidates(day, policy):
            heapq.heappush(pending, candidate)
        # Later days cannot produce instants before this bound, so these are in final order.
        settled = datetime.combine(day + timedelta(days=1), time(), UTC) - _MAX_OFFSET
        while pending and pending[0] < settled:
            candidate = heapq.heappop(pending)
            if now < candidate <= horizon and _allowed(candidate, policy):
                return candidate
    return None


def describe_window(window: Window) -> str:
    """`Tue, Thu 20:00–23:00`."""
    days = ", ".join(day.value.title() for day in window.days)
    return f"{days} {window.start:%H:%M}–{window.end:%H:%M}"


def describe_windows(policy: Policy) -> str:
    """All windows for a sentence; `any time` when there are none."""
    return "; ".join(describe_window(w) for w in policy.windows) or "any time"


def deploy_gate(now: datetime, policy: Policy) -> GateResult:
    """Whether windows and freezes let a deploy start now, with the reason and next chance."""
    now = _utc(now)
    freeze = active_freeze(now, policy)
    if freeze is not None:
        reason = f"{freeze.reason} (freeze from {freeze.start} to {freeze.to})"
    elif not in_window(now, policy):
        reason = f"outside the release windows ({describe_windows(policy)})"
    else:
        return GateResult(open=True, next_allowed=now)
    return GateResult(open=False, reason=reason, next_allowed=next_allowed(now, policy),
                      freeze=freeze)


def planned_hold(moment: datetime, policy: Policy, release_type: str | None = None
                 ) -> str | None:
    """What holds a deploy planned for `moment` then, and when it goes instead; None if free.

    A type that may bypass the gate (an emergency) is told an executive may let it go then.
    """
    gate = deploy_gate(moment, policy)
    if gate.open:
        return None
    why = f"falls in a freeze: {gate.reason}" if gate.freeze else f"is {gate.reason}"
    unless = ""
    if release_type in policy.policies and policy.type_policy(str(release_type)).bypass_freeze:
        held_by = "the freeze" if gate.freeze else "the release windows"
        unless = f", unless an executive overrides {held_by} for it (`/release override`)"
    if gate.next_allowed is None:
        return f"{why}, and no allowed time follows it within {SEARCH_DAYS} days{unless}"
    return f"{why}, so it goes at {format_local(gate.next_allowed, policy)} instead{unless}"


def format_local(moment: datetime, policy: Policy) -> str:
    """`2026-12-24 20:00 CST` on the policy's clock."""
    return _local(moment, policy).strftime("%Y-%m-%d %H:%M %Z")


def parse_local(text: str, policy: Policy) -> datetime:
    """`YYYY-MM-DD HH:MM` on the policy's clock → aware UTC; ValueError with a sentence if not."""
    typed = text.strip().strip("\"'“”")
    match = _LOCAL_INPUT.match(typed)
    if match is None:
        raise ValueError(f"{typed[:40]!r} is not a date and time; write YYYY-MM-DD HH:MM, "
                         f"for example 2026-12-24 20:00.")
    try:
        wall = datetime(*(int(part) for part in match.groups()))
        # fold=0: a time the clocks repeat means its first occurrence.
        moment = _utc(wall.replace(tzinfo=policy.tz))
    except (ValueError, OverflowError):  # OverflowError: year 1 in a zone east of UTC
        raise ValueError(f"{typed} is not a real date and time.") from None
    if moment.astimezone(policy.tz).replace(tzinfo=None) != wall:
        raise ValueError(f"{wall:%Y-%m-%d %H:%M} does not exist in {policy.timezone}: the clocks "
                         f"skip it that night. Pick a time after the change.")
    return moment
