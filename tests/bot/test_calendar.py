"""Windows and freezes on the policy's clock, including the nights the clocks change."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.calendar import (
    active_freeze,
    deploy_gate,
    describe_windows,
    format_local,
    in_window,
    next_allowed,
    parse_local,
)
from bot.policy import Policy, Weekday

YEAR_END = {"from": "2026-12-24", "to": "2027-01-02", "reason": "Year-end freeze"}
TUE_THU_EVENINGS = {"days": ["tue", "thu"], "start": "20:00", "end": "23:00"}


def make_policy(timezone: str = "Asia/Shanghai", windows: Any = (), freezes: Any = ()) -> Policy:
    """A minimal valid policy with these windows and freezes."""
    return Policy.model_validate({
        "release_channel": "C0RELEASES",
        "timezone": timezone,
        "roles": {"release_manager": ["U0OPS"]},
        "projects": {"payments": {"gitlab": "acme/payments"}},
        "policies": {"standard": {}},
        "windows": list(windows),
        "freezes": list(freezes),
    })


def utc(*parts: int) -> datetime:
    """An aware UTC datetime."""
    return datetime(*parts, tzinfo=UTC)


# --- windows ------------------------------------------------------------------------------------

def test_no_windows_means_always_open() -> None:
    policy = make_policy()
    assert in_window(utc(2026, 6, 7, 3, 33), policy)
    gate = deploy_gate(utc(2026, 6, 7, 3, 33), policy)
    assert gate.open and gate.reason is None and gate.freeze is None
    assert gate.next_allowed == utc(2026, 6, 7, 3, 33)


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (utc(2026, 6, 2, 11, 59), False),  # Tue 19:59 in Shanghai
        (utc(2026, 6, 2, 12, 0), True),  # Tue 20:00
        (utc(2026, 6, 2, 14, 59), True),  # Tue 22:59
        (utc(2026, 6, 2, 15, 0), False),  # Tue 23:00: the end is not inside
        (utc(2026, 6, 3, 12, 30), False),  # Wed 20:30
        (utc(2026, 6, 4, 13, 0), True),  # Thu 21:00
    ],
)
def test_same_day_window(moment: datetime, inside: bool) -> None:
    assert in_window(moment, make_policy(windows=[TUE_THU_EVENINGS])) is inside


@pytest.mark.parametrize(
    ("moment", "inside"),
    [
        (utc(2026, 6, 2, 15, 0), True),  # Tue 23:00
        (utc(2026, 6, 2, 17, 0), True),  # Wed 01:00 belongs to Tuesday's window
        (utc(2026, 6, 2, 18, 0), False),  # Wed 02:00
        (utc(2026, 6, 3, 15, 0), False),  # Wed 23:00: Wednesday is not a window day
        (utc(2026, 6, 1, 17, 0), False),  # Tue 01:00: Monday is not a window day
    ],
)
def test_window_across_midnight_counts_for_its_start_day(moment: datetime, inside: bool) -> None:
    policy = make_policy(windows=[{"days": ["tue"], "start": "22:00", "end": "02:00"}])
    assert in_window(moment, policy) is inside


def test_sunday_night_window_covers_monday_morning() -> None:
    policy = make_policy("UTC", windows=[{"days": ["sun"], "start": "22:00", "end": "02:00"}])
    assert in_window(utc(2026, 6, 8, 1, 0), policy)  # Monday 01:00
    assert not in_window(utc(2026, 6, 9, 1, 0), policy)  # Tuesday 01:00


def test_weekday_numbers_match_datetime() -> None:
    assert [day.number for day in Weekday] == list(range(7))
    assert date(2026, 6, 1).weekday() == Weekday.MON.number


# --- freezes ------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("moment", "frozen"),
    [
        (utc(2026, 12, 23, 15, 59), False),  # 23rd 23:59 in Shanghai
        (utc(2026, 12, 23, 16, 0), True),  # 24th 00:00 in Shanghai, still the 23rd in UTC
        (utc(2027, 1, 2, 15, 59), True),  # 2nd 23:59: the last day counts
        (utc(2027, 1, 2, 16, 0), False),  # 3rd 00:00
    ],
)
def test_freeze_is_inclusive_in_the_policy_zone(moment: datetime, frozen: bool) -> None:
    policy = make_policy(freezes=[YEAR_END])
    assert (active_freeze(moment, policy) is not None) is frozen


def test_gate_in_a_freeze_names_its_reason() -> None:
    policy = make_policy(windows=[TUE_THU_EVENINGS], freezes=[YEAR_END])
    gate = deploy_gate(utc(2026, 12, 24, 13, 0), policy)  # Thu 21:00, inside a window
    assert not gate.open
    assert gate.reason == "Year-end freeze (freeze from 2026-12-24 to 2027-01-02)"
    assert gate.freeze is not None and gate.freeze.reason == "Year-end freeze"
    assert gate.next_allowed == utc(2027, 1, 5, 12, 0)  # Tue 20:00 after the freeze


def test_gate_outside_windows() -> None:
    policy = make_policy(windows=[TUE_THU_EVENINGS])
    gate = deploy_gate(utc(2026, 6, 3, 4, 0), policy)  # Wed 12:00
    assert not gate.open and gate.freeze is None
    assert gate.reason == "outside the release windows (Tue, Thu 20:00–23:00)"
    assert gate.next_allowed == utc(2026, 6, 4, 12, 0)  # Thu 20:00


def test_gate_inside_a_window() -> None:
    gate = deploy_gate(utc(2026, 6, 4, 12, 0), make_policy(windows=[TUE_THU_EVENINGS]))
    assert gate.open and gate.next_allowed == utc(2026, 6, 4, 12, 0)


def test_describe_windows() -> None:
    late = {"days": ["fri"], "start": "22:00", "end": "02:00"}
    assert describe_windows(make_policy(windows=[TUE_THU_EVENINGS, late])) == (
        "Tue, Thu 20:00–23:00; Fri 22:00–02:00"
    )
    assert describe_windows(make_policy()) == "any time"


# --- next_allowed -------------------------------------------------------------------------------

def test_next_allowed_is_now_when_allowed() -> None:
    now = utc(2026, 6, 4, 13, 17, 42)
    assert next_allowed(now, make_policy(windows=[TUE_THU_EVENINGS])) == now


def test_next_allowed_finds_the_next_window() -> None:
    policy = make_policy(windows=[TUE_THU_EVENINGS])
    assert next_allowed(utc(2026, 6, 4, 15, 0), policy) == utc(2026, 6, 9, 12, 0)  # Thu → Tue


def test_next_allowed_skips_a_freeze() -> None:
    policy = make_policy(windows=[TUE_THU_EVENINGS], freezes=[YEAR_END])
    assert next_allowed(utc(2026, 12, 22, 15, 0), policy) == utc(2027, 1, 5, 12, 0)


def test_next_allowed_without_windows_is_the_thaw() -> None:
    policy = make_policy(freezes=[YEAR_END])
    assert next_allowed(utc(2026, 12, 25, 9, 0), policy) == utc(2027, 1, 2, 16, 0)


def test_thaw_inside_a_window_opens_at_midnight() -> None:
    policy = make_policy(windows=[{"days": ["sat"], "start": "22:00", "end": "02:00"}],
                         freezes=[YEAR_END])  # the freeze ends on Saturday 2027-01-02
    assert next_allowed(utc(2027, 1, 2, 14, 30), policy) == utc(2027, 1, 2, 16, 0)


def test_overlapping_freezes() -> None:
    second = {"from": "2027-01-01", "to": "2027-01-10", "reason": "Audit"}
    policy = make_policy(freezes=[YEAR_END, second])
    assert next_allowed(utc(2026, 12, 25), policy) == utc(2027, 1, 10, 16, 0)


def test_nothing_within_400_days() -> None:
    policy = make_policy(freezes=[{"from": "2026-01-01", "to": "2028-01-01", "reason": "Never"}])
    assert next_allowed(utc(2026, 3, 1), policy) is None
    assert deploy_gate(utc(2026, 3, 1), policy).next_allowed is None


def test_naive_datetimes_are_utc() -> None:
    policy = make_policy(windows=[TUE_THU_EVENINGS])
    assert in_window(datetime(2026, 6, 2, 12, 0), policy)
    assert next_allowed(datetime(2026, 6, 3), policy) == utc(2026, 6, 4, 12, 0)


# --- daylight saving ----------------------------------------------------------------------------
# Berlin: 2026-03-29 02:00 CET → 03:00 CEST (01:00Z); 2026-10-25 03:00 CEST → 02:00 CET (01:00Z).
# New York: 2026-03-08 02:00 EST → 03:00 EDT (07:00Z); 2026-11-01 02:00 EDT → 01:00 EST (06:00Z).

@pytest.mark.parametrize(
    ("zone", "before", "next_week"),
    [
        ("Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 4, 5, 0, 0)),
        ("America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 15, 6, 0)),
    ],
)
def test_window_inside_the_skipped_hour_does_not_open(
    zone: str, before: datetime, next_week: datetime
) -> None:
    policy = make_policy(zone, windows=[{"days": ["sun"], "start": "02:00", "end": "03:00"}])
    assert next_allowed(before, policy) == next_week


@pytest.mark.parametrize(
    ("zone", "before", "jump"),
    [
        ("Europe/Berlin", utc(2026, 3, 28, 12), utc(2026, 3, 29, 1, 0)),
        ("America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 8, 7, 0)),
    ],
)
def test_window_starting_in_the_skipped_hour_opens_when_clocks_resume(
    zone: str, before: datetime, jump: datetime
) -> None:
    policy = make_policy(zone, windows=[{"days": ["sun"], "start": "02:30", "end": "03:30"}])
    assert next_allowed(before, policy) == jump
    assert not in_window(jump - timedelta(seconds=1), policy)
    assert in_window(jump + timedelta(minutes=29), policy)
    assert not in_window(jump + timedelta(minutes=30), policy)


def test_window_across_the_fall_back_night_new_york() -> None:
    policy = make_policy("America/New_York",
                         windows=[{"days": ["sat"], "start": "22:00", "end": "03:00"}])
    assert next_allowed(utc(2026, 10, 31, 12), policy) == utc(2026, 11, 1, 2, 0)  # 22:00 EDT
    assert in_window(utc(2026, 11, 1, 5, 30), policy)  # 01:30 EDT
    assert in_window(utc(2026, 11, 1, 6, 30), policy)  # 01:30 EST, the second time round
    assert in_window(utc(2026, 11, 1, 7, 59), policy)  # 02:59 EST
    assert not in_window(utc(2026, 11, 1, 8, 0), policy)  # 03:00 EST: six hours in all


def test_window_across_the_fall_back_night_berlin() -> None:
    policy = make_policy("Europe/Berlin",
                         windows=[{"days": ["sat"], "start": "23:00", "end": "02:30"}])
    assert next_allowed(utc(2026, 10, 24, 12), policy) == utc(2026, 10, 24, 21, 0)  # 23:00 CEST
    assert in_window(utc(2026, 10, 25, 0, 29), policy)  # 02:29 CEST
    assert not in_window(utc(2026, 10, 25, 0, 30), policy)  # 02:30 CEST
    # The clocks go back to 02:00 CET, inside the window again, without a start being crossed.
    assert next_allowed(utc(2026, 10, 25, 0, 45), policy) == utc(2026, 10, 25, 1, 0)
    assert not in_window(utc(2026, 10, 25, 1, 30), policy)  # 02:30 CET


def test_window_starting_in_the_repeated_hour_opens_twice() -> None:
    policy = make_policy("America/New_York",
                         windows=[{"days": ["sun"], "start": "01:30", "end": "01:45"}])
    assert next_allowed(utc(2026, 10, 31, 12), policy) == utc(2026, 11, 1, 5, 30)  # 01:30 EDT
    assert next_allowed(utc(2026, 11, 1, 5, 50), policy) == utc(2026, 11, 1, 6, 30)  # 01:30 EST


ZONES = ["Europe/Berlin", "America/New_York", "Asia/Shanghai", "Australia/Lord_Howe",
         "America/Santiago", "Asia/Kathmandu"]
QUARTERS = st.integers(0, 95).map(lambda q: f"{q // 4:02d}:{q % 4 * 15:02d}")
WINDOWS = st.fixed_dictionaries({
    "days": st.lists(st.sampled_from(list(Weekday)), min_size=1, max_size=7, unique=True),
    "start": QUARTERS,
    "end": QUARTERS,
}).filter(lambda w: w["start"] != w["end"])


@st.composite
def freezes(draw: st.DrawFn) -> dict[str, str]:
    """A short freeze somewhere in 2026."""
    start = date(2026, 1, 1) + timedelta(days=draw(st.integers(0, 364)))
    end = start + timedelta(days=draw(st.integers(0, 6)))
    return {"from": start.isoformat(), "to": end.isoformat(), "reason": "Freeze"}


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    windows=st.lists(WINDOWS, min_size=1, max_size=3),
    frozen=st.lists(freezes(), max_size=2),
    quarter=st.integers(0, 365 * 96),
)
def test_next_allowed_matches_a_quarter_hour_scan(
    zone: str, windows: list[dict[str, Any]], frozen: list[dict[str, str]], quarter: int
) -> None:
    # Every offset and window edge here is a multiple of 15 minutes, so a scan finds the same.
    policy = make_policy(zone, windows=windows, freezes=frozen)
    now = utc(2026, 1, 1) + timedelta(minutes=15 * quarter)
    found = next_allowed(now, policy)
    scan = now
    while in_window(scan, policy) is False or active_freeze(scan, policy) is not None:
        scan += timedelta(minutes=15)
    assert found == scan


# --- showing and reading local times ------------------------------------------------------------

def test_format_local() -> None:
    assert format_local(utc(2026, 12, 24, 12, 0), make_policy()) == "2026-12-24 20:00 CST"
    berlin = make_policy("Europe/Berlin")
    assert format_local(utc(2026, 7, 1, 18, 5), berlin) == "2026-07-01 20:05 CEST"
    assert format_local(datetime(2026, 1, 1, 18, 5), berlin) == "2026-01-01 19:05 CET"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-24 20:00", utc(2026, 12, 24, 12, 0)),
        ("  2026-12-24T08:05 ", utc(2026, 12, 24, 0, 5)),
        ('"2026-1-2 9:30"', utc(2026, 1, 2, 1, 30)),
    ],
)
def test_parse_local(text: str, expected: datetime) -> None:
    parsed = parse_local(text, make_policy())
    assert parsed == expected and parsed.tzinfo is UTC


def test_parse_local_repeated_time_means_the_first() -> None:
    policy = make_policy("America/New_York")
    assert parse_local("2026-11-01 01:30", policy) == utc(2026, 11, 1, 5, 30)


@pytest.mark.parametrize(
    ("zone", "text", "message"),
    [
        ("Asia/Shanghai", "tomorrow 8pm",
         "'tomorrow 8pm' is not a date and time; write YYYY-MM-DD HH:MM, "
         "for example 2026-12-24 20:00."),
        ("Asia/Shanghai", "2026-12-24", "'2026-12-24' is not a date and time; write "
         "YYYY-MM-DD HH:MM, for example 2026-12-24 20:00."),
        ("Asia/Shanghai", "2026-02-30 10:00", "2026-02-30 10:00 is not a real date and time."),
        ("Asia/Shanghai", "2026-12-24 24:00", "2026-12-24 24:00 is not a real date and time."),
        ("Europe/Berlin", "2026-03-29 02:30",
         "2026-03-29 02:30 does not exist in Europe/Berlin: the clocks skip it that night. "
         "Pick a time after the change."),
        ("America/New_York", "2026-03-08 02:00",
         "2026-03-08 02:00 does not exist in America/New_York: the clocks skip it that night. "
         "Pick a time after the change."),
    ],
)
def test_parse_local_errors(zone: str, text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_local(text, make_policy(zone))
    assert str(caught.value) == message
