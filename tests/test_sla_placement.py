"""Placing a clock's warning times: ``_before`` walks the openings back from the due time once, and must
give exactly the instant the former bisection over ``business_minutes_between`` found, on any calendar
(lunch breaks, nights, 24-hour days, holidays, make-up days, closed weekends, DST changes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxd.errors import InvalidSetting
from inboxd.sla.businesstime import BusinessCalendar, Duration
from inboxd.sla.watch import _before, _most_time_within

ZONES = ("Asia/Taipei", "Europe/London", "America/New_York", "Australia/Sydney")
HOURS = (["09:00-18:00"], ["09:00-12:00", "13:00-18:00"], ["08:30-12:00", "13:30-17:45"], ["00:00-24:00"],
         ["00:00-06:00", "22:00-24:00"], ["01:00-03:30"])
DAYS = (["mon-fri"], ["mon-sat"], ["mon-sun"], ["sat-sun"])
NEW_YORK, LONDON = ZoneInfo("America/New_York"), ZoneInfo("Europe/London")


def bisected(calendar: BusinessCalendar, due: datetime, minutes: float) -> datetime:
    """The former ``_before``: step back a day at a time, then bisect to the microsecond (the oracle)."""
    low = due - timedelta(days=1)
    while calendar.business_minutes_between(low, due) <= minutes:
        low -= timedelta(days=1)
    high = due
    while high - low > timedelta(microseconds=1):
        middle = low + (high - low) / 2
        if calendar.business_minutes_between(middle, due) > minutes:
            low = middle
        else:
            high = middle
    return high


def same(a: datetime, b: datetime) -> bool:
    """The same instant with the same offset (what the watch stores and compares)."""
    return a == b and a.utcoffset() == b.utcoffset()


@st.composite
def calendars(draw: st.DrawFn, around: datetime) -> BusinessCalendar:
    """Random zone, hours and days, with holidays and make-up days in the weeks before ``around``."""
    offsets = draw(st.lists(st.integers(-30, 2), max_size=12, unique=True))
    split = draw(st.integers(0, len(offsets)))
    day = around.date()
    return BusinessCalendar.simple(draw(st.sampled_from(ZONES)), days=draw(st.sampled_from(DAYS)),
                                   hours=draw(st.sampled_from(HOURS)),
                                   holidays=[(day + timedelta(days=k)).isoformat() for k in offsets[:split]],
                                   extra_workdays=[(day + timedelta(days=k)).isoformat() for k in offsets[split:]])


# instants around the DST changes of 2026 (Mar/Apr, Oct/Nov) and elsewhere in the year, to the microsecond
instants = st.one_of(
    st.datetimes(min_value=datetime(2026, 3, 1), max_value=datetime(2026, 4, 12), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(2026, 10, 1), max_value=datetime(2026, 11, 15), timezones=st.just(UTC)),
    st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)))


def _rounded(at: datetime, step: int) -> datetime:
    return at - timedelta(seconds=at.minute * 60 % step + at.second, microseconds=at.microsecond) if step else at


# to the microsecond, or on whole minutes or half hours, so that counts land exactly on openings and closings too
instants = st.builds(_rounded, instants, st.sampled_from([0, 60, 1800]))
fractions = st.sampled_from([0.1, 0.25, 0.5, 0.75, 0.8, 0.9, 0.95, 0.99, 1 / 3])


@st.composite
def clocks(draw: st.DrawFn) -> tuple[BusinessCalendar, datetime, float]:
    """A calendar, a due time as the watch reads it from the database (UTC) and a number of minutes left."""
    start = draw(instants)
    calendar = draw(calendars(start))
    if draw(st.booleans()):  # as started: ``add`` of a target, then the minutes left at a warning fraction
        target = Duration(minutes=draw(st.integers(1, 6000)), days=draw(st.integers(0, 3)))
        due = calendar.add(start, target).astimezone(UTC)
        total = calendar.business_minutes_between(start, due)
        return calendar, due, round(total * (1 - draw(fractions)), 6)
    edges = [edge for interval in calendar.open_intervals(start - timedelta(days=12), start) for edge in interval]
    if edges and draw(st.booleans()):  # exactly the business time back to an opening or a closing, or a hair off it
        nudge = draw(st.sampled_from([0, 1, -1])) / 60_000_000
        return calendar, start, max(0.0, calendar.business_minutes_between(draw(st.sampled_from(edges)), start) + nudge)
    return calendar, start, draw(st.one_of(st.integers(0, 5000), st.floats(0, 5000)))  # any instant, any amount


@settings(max_examples=400, deadline=None)
@given(clocks())
def test_before_is_what_the_bisection_found(clock: tuple[BusinessCalendar, datetime, float]) -> None:
    calendar, due, minutes = clock
    found = _before(calendar, due, minutes)
    assert same(found, bisected(calendar, due, minutes)), (calendar, due, minutes)
    assert calendar.business_minutes_between(found, due) <= minutes
    assert calendar.business_minutes_between(found - timedelta(microseconds=1), due) > minutes


@settings(max_examples=150, deadline=None)
@given(clocks())
def test_before_a_due_time_in_the_calendar_zone(clock: tuple[BusinessCalendar, datetime, float]) -> None:
    """``levels`` of a clock made by ``sla.start`` without the database: the due time in the calendar's zone."""
    calendar, due, minutes = clock
    local = due.astimezone(ZoneInfo(calendar.tz))
    found = _before(calendar, local, minutes)
    assert found.tzinfo == local.tzinfo
    ranges = [r for rs in (*calendar.weekly.values(), *calendar.extra_workdays.values()) for r in rs]
    if all(start.hour >= 4 and end.hour >= 4 for start, end in ranges):
        # the bisection added wall-clock time; it agrees where no opening is inside a DST gap or repeated hour
        assert same(found, bisected(calendar, local, minutes)), (calendar, local, minutes)
    assert calendar.business_minutes_between(found, due) <= minutes
    assert calendar.business_minutes_between(found - timedelta(microseconds=1), due) > minutes


@pytest.mark.parametrize("due, minutes, expected", [
    # New York, spring forward on Sun 8 Mar 2026: 2h Friday (EST) + 1h Monday (EDT) before Mon 10:00
    (datetime(2026, 3, 9, 10, tzinfo=NEW_YORK), 180, datetime(2026, 3, 6, 15, tzinfo=NEW_YORK)),
    # exactly Monday's opening hour left: Friday's close, not Monday 09:00 (the weekend adds nothing)
    (datetime(2026, 3, 9, 10, tzinfo=NEW_YORK), 60, datetime(2026, 3, 6, 17, tzinfo=NEW_YORK)),
    (datetime(2026, 3, 9, 10, tzinfo=NEW_YORK), 59.5, datetime(2026, 3, 9, 9, 0, 30, tzinfo=NEW_YORK)),
    # Thanksgiving (26 Nov) is a holiday: back from Friday 10:00 over it into Wednesday
    (datetime(2026, 11, 27, 10, tzinfo=NEW_YORK), 90, datetime(2026, 11, 25, 16, 30, tzinfo=NEW_YORK)),
    # London autumn change on Sun 25 Oct 2026: 30 min on Monday (GMT), 60 on Friday (BST)
    (datetime(2026, 10, 26, 9, 30, tzinfo=LONDON), 90, datetime(2026, 10, 23, 16, 30, tzinfo=LONDON)),
])
def test_before_across_a_holiday_and_dst_changes(due: datetime, minutes: float, expected: datetime) -> None:
    ny = BusinessCalendar.simple("America/New_York", hours=["09:00-17:00"], holidays=["2026-11-26"])
    london = BusinessCalendar.simple("Europe/London", hours=["09:00-17:30"])
    calendar = london if due.tzinfo == LONDON else ny
    for at in (due, due.astimezone(UTC)):
        found = _before(calendar, at, minutes)
        assert found == expected and same(found, bisected(calendar, at, minutes))
        assert found.tzinfo == at.tzinfo


def test_most_time_within_matches_the_float_comparison() -> None:
    for minutes in (0, 24, 23.999999999999996, 60.0000001, 1e-7, 1234.567891, round(240 * (1 - 0.9), 6)):
        span = _most_time_within(minutes)
        micro = span // timedelta(microseconds=1)
        assert span / timedelta(minutes=1) <= minutes < (micro + 1) / 60_000_000
    assert _most_time_within(-1) < timedelta(0)


def test_nothing_left_is_the_due_time_or_the_closing_before_it() -> None:
    calendar = BusinessCalendar.simple("Asia/Taipei", hours=["09:00-12:00", "13:00-18:00"])
    noon = datetime(2026, 11, 24, 12, 30, tzinfo=ZoneInfo("Asia/Taipei"))  # in the lunch break
    assert _before(calendar, noon, 0) == noon.replace(minute=0)
    assert _before(calendar, noon.replace(hour=14), 0) == noon.replace(hour=14)
    assert _before(calendar, noon, -5) == noon  # as the bisection: no instant has less than nothing left


def test_subtract_time_gives_up_after_three_closed_years() -> None:
    calendar = BusinessCalendar.simple("Asia/Taipei", days=["mon"], extra_workdays=["2030-01-05"])
    calendar = BusinessCalendar(calendar.tz, {}, extra_workdays=calendar.extra_workdays)  # one working day ever
    with pytest.raises(InvalidSetting, match="no opening hours in the three years"):
        calendar.subtract_time(datetime(2030, 1, 6, tzinfo=UTC), timedelta(hours=10))
