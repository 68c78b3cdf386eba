"""Business-time arithmetic: the due dates promised to customers must be exactly right."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inboxd.sla.businesstime import (
    BusinessCalendar,
    Duration,
    format_due,
    format_duration,
    parse_duration,
    parse_hours,
)

TAIPEI, SHANGHAI = ZoneInfo("Asia/Taipei"), ZoneInfo("Asia/Shanghai")
LONDON, NEW_YORK = ZoneInfo("Europe/London"), ZoneInfo("America/New_York")
ZONES = ("Asia/Taipei", "Asia/Shanghai", "Europe/London", "America/New_York")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = ["mon-sun"]
LUNCH = ["09:00-12:00", "13:00-18:00"]
H = Duration(minutes=60)


def tp(*args: int) -> datetime:
    """A Taipei wall-clock time: tp(2026, 11, 20, 17)."""
    return datetime(*args, tzinfo=TAIPEI)  # type: ignore[misc]


def hours(n: int) -> Duration:
    return Duration(minutes=60 * n)


def office(tz: str = "Asia/Taipei", **kwargs: object) -> BusinessCalendar:
    return BusinessCalendar.simple(tz, **kwargs)  # type: ignore[arg-type]


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, minutes, days", [
    ("30m", 30, 0), ("4h", 240, 0), ("1h30m", 90, 0), ("1h 30m", 90, 0), ("90 min", 90, 0),
    ("4 hours", 240, 0), ("2d", 0, 2), ("1 business day", 0, 1), ("3 days", 0, 3),
    (" 4H ", 240, 0), ("2 working days", 0, 2), ("1d4h", 240, 1),
])
def test_parse_duration(text: str, minutes: int, days: int) -> None:
    assert parse_duration(text) == Duration(minutes=minutes, days=days)


@pytest.mark.parametrize("text, fragment", [
    ("4x", "'4x' is not a duration: write it like 30m, 4h, 1h30m or 2d"),
    ("", "is not a duration"), ("h", "is not a duration"), ("-4h", "is not a duration"),
    ("4.5h", "is not a duration"), ("4 business", "is not a duration"),
    ("0m", "is zero"), ("0h 0m", "is zero"), ("400d", "too long"),
])
def test_parse_duration_errors(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_duration(text)


@pytest.mark.parametrize("minutes, days", [(0, 0), (-5, 0), (30, -1)])
def test_duration_must_be_positive(minutes: int, days: int) -> None:
    with pytest.raises(ValueError, match="longer than zero"):
        Duration(minutes=minutes, days=days)


@pytest.mark.parametrize("text, en, hant, hans", [
    ("4h", "4 business hours", "4 個工作小時", "4 个工作小时"),
    ("1d", "1 business day", "1 個工作天", "1 个工作日"),
    ("1h", "1 business hour", "1 個工作小時", "1 个工作小时"),
    ("30m", "30 business minutes", "30 分鐘", "30 分钟"),
    ("1h30m", "1 business hour and 30 business minutes", "1 個工作小時 30 分鐘", "1 个工作小时 30 分钟"),
])
def test_format_duration(text: str, en: str, hant: str, hans: str) -> None:
    d = parse_duration(text)
    assert [format_duration(d, lang) for lang in ("en", "zh-Hant", "zh-Hans")] == [en, hant, hans]
    assert format_duration(d, "fr") == en


def test_parse_hours() -> None:
    assert parse_hours(["13:00-18:00", "9:00-12:00"]) == ((time(9), time(12)), (time(13), time(18)))
    assert parse_hours(["09:00 – 12:00", "12:00~18:30"]) == ((time(9), time(18, 30)),)  # touching ranges merge
    assert parse_hours(["00:00-24:00"]) == ((time(0), time(0)),)  # an end of 00:00 means 24:00


@pytest.mark.parametrize("ranges, fragment", [
    ([], "no opening hours given"), (["9-18"], "'9-18' is not a time range: write it like 09:00-18:00"),
    (["09:00"], "not a time range"), (["18:00-09:00"], "ends before it starts"),
    (["09:00-09:00"], "ends before it starts"), (["25:00-26:00"], "impossible time"),
    (["09:60-10:00"], "impossible time"), (["22:00-24:30"], "impossible time"),
    (["09:00-13:00", "12:00-18:00"], "'09:00-13:00' and '12:00-18:00' overlap"),
])
def test_parse_hours_errors(ranges: list[str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_hours(ranges)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"), ({"tz": ""}, "unknown time zone"),
    ({"days": ["funday"]}, "'funday' is not a day of the week"), ({"days": []}, "no opening hours"),
    ({"holidays": ["2024-13-01"]}, "'2024-13-01' is not a date: write it like 2024-10-10"),
    ({"extra_workdays": ["next saturday"]}, "is not a date"),
    ({"holidays": ["2024-02-17"], "extra_workdays": ["2024-02-17"]}, "both as a holiday and as an extra"),
])
def test_simple_errors(kwargs: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        office(**kwargs)


def test_calendar_errors() -> None:
    with pytest.raises(ValueError, match="the calendar has no opening hours"):
        BusinessCalendar("Asia/Taipei", {5: (), 6: ()})
    with pytest.raises(ValueError, match="from 0 \\(Monday\\) to 6"):
        BusinessCalendar("Asia/Taipei", {7: ((time(9), time(18)),)})
    with pytest.raises(ValueError, match="overlap"):
        BusinessCalendar("Asia/Taipei", {0: ((time(9), time(18)), (time(17), time(19)))})
    cal = office()
    for call in (lambda: cal.add(datetime(2026, 11, 20, 17), H), lambda: cal.is_open(datetime(2026, 1, 1)),
                 lambda: cal.business_minutes_between(datetime(2026, 1, 1), tp(2026, 1, 2))):
        with pytest.raises(ValueError, match="no time zone"):
            call()


def test_simple_day_names() -> None:
    cal = office(days=["Monday", "wed-fri", "sat-sun"])
    assert set(cal.weekly) == {0, 2, 3, 4, 5, 6}
    assert set(office(days=["fri-mon"]).weekly) == {4, 5, 6, 0}


def test_no_opening_ever_is_an_error_not_a_hang() -> None:
    mondays = [(date(2026, 11, 23) + timedelta(weeks=w)).isoformat() for w in range(53 * 4)]
    cal = office(days=["mon"], holidays=mondays)
    with pytest.raises(ValueError, match="no opening hours in the three years"):
        cal.add(tp(2026, 11, 20), H)
    nine_to_six = ((time(9), time(18)),)
    only_one_day = BusinessCalendar("Asia/Taipei", {}, extra_workdays={date(2026, 1, 3): nine_to_six})
    assert only_one_day.next_open(tp(2026, 1, 1)) == tp(2026, 1, 3, 9)
    with pytest.raises(ValueError, match="no opening hours"):
        only_one_day.next_open(tp(2026, 1, 4))


# --- opening hours and due times -----------------------------------------------------------


def test_friday_afternoon_plus_four_hours_is_monday_noon() -> None:
    cal = office()
    due = cal.add(tp(2026, 11, 20, 17), hours(4))
    assert due == tp(2026, 11, 23, 12) and due.tzinfo == TAIPEI
    assert cal.business_minutes_between(tp(2026, 11, 20, 17), due) == 240


def test_results_are_in_the_calendar_zone() -> None:
    start = datetime(2026, 11, 20, 9, tzinfo=ZoneInfo("UTC"))  # Friday 17:00 in Taipei
    due = office().add(start, hours(4))
    assert due.tzinfo == TAIPEI and due == tp(2026, 11, 23, 12)


def test_is_open_and_next_open() -> None:
    cal = office(hours=LUNCH)
    tue = tp(2026, 11, 24)
    assert cal.is_open(tue.replace(hour=9)) and cal.is_open(tue.replace(hour=17, minute=59))
    assert not cal.is_open(tue.replace(hour=12, minute=30)) and not cal.is_open(tue.replace(hour=18))
    assert cal.next_open(tue.replace(hour=10)) == tue.replace(hour=10)
    assert cal.next_open(tue.replace(hour=12, minute=30)) == tue.replace(hour=13)
    assert cal.next_open(tue.replace(hour=18)) == tue.replace(day=25, hour=9)
    assert cal.next_open(tp(2026, 11, 28, 1)) == tp(2026, 11, 30, 9)


def test_lunch_break() -> None:
    cal = office(hours=LUNCH)
    day = tp(2026, 11, 24)
    assert cal.add(day.replace(hour=11), hours(2)) == day.replace(hour=14)
    assert cal.add(day.replace(hour=12, minute=30), H) == day.replace(hour=14)
    assert cal.add(day.replace(hour=11), H) == day.replace(hour=12)  # the closing time is a valid deadline
    assert cal.add(day.replace(hour=9), hours(8)) == day.replace(hour=18)
    assert cal.add(day.replace(hour=18), Duration(minutes=30)) == day.replace(day=25, hour=9, minute=30)
    assert cal.business_minutes_between(day.replace(hour=11), day.replace(hour=14)) == 120
    assert cal.business_minutes_between(day.replace(hour=14), day.replace(hour=11)) == 0
    assert list(cal.open_intervals(day.replace(hour=11), day.replace(hour=15))) == [
        (day.replace(hour=11), day.replace(hour=12)), (day.replace(hour=13), day.replace(hour=15))]


def test_start_on_a_sunday() -> None:
    due = office().add(tp(2026, 11, 22, 15, 45), Duration(minutes=30))
    assert due == tp(2026, 11, 23, 9, 30)


def test_holiday_skipped() -> None:
    cal = office(holidays=["2026-11-23"])
    assert cal.add(tp(2026, 11, 20, 17), hours(4)) == tp(2026, 11, 24, 12)
    assert not cal.is_open(tp(2026, 11, 23, 10))


def test_taiwan_lunar_new_year_with_make_up_saturday() -> None:
    """2024: days off 8-14 Feb, and Saturday 17 Feb was a make-up workday (補班)."""
    cal = office(holidays=["2024-02-08", "2024-02-09", "2024-02-12", "2024-02-13", "2024-02-14"],
                 extra_workdays=["2024-02-17"])
    assert cal.add(tp(2024, 2, 7, 17), hours(4)) == tp(2024, 2, 15, 12)
    assert cal.add(tp(2024, 2, 16, 17), hours(4)) == tp(2024, 2, 17, 12)
    assert cal.is_open(tp(2024, 2, 17, 10))


def test_china_national_day_with_make_up_sunday() -> None:
    """2024: 1-7 Oct off; Sunday 29 Sep and Saturday 12 Oct were worked (调休)."""
    cal = office("Asia/Shanghai", holidays=[f"2024-10-0{d}" for d in range(1, 8)],
                 extra_workdays=["2024-09-29", "2024-10-12"])
    friday, monday = datetime(2024, 9, 27, 17, tzinfo=SHANGHAI), datetime(2024, 9, 30, 17, tzinfo=SHANGHAI)
    assert cal.add(friday, hours(4)) == datetime(2024, 9, 29, 12, tzinfo=SHANGHAI)
    assert cal.add(monday, hours(4)) == datetime(2024, 10, 8, 12, tzinfo=SHANGHAI)


def test_make_up_day_with_its_own_hours() -> None:
    cal = BusinessCalendar("Asia/Taipei", {d: ((time(9), time(18)),) for d in range(5)},
                           extra_workdays={date(2024, 2, 17): ((time(10), time(12)),)})
    assert cal.add(tp(2024, 2, 16, 17), hours(2)) == tp(2024, 2, 17, 11)
    assert cal.add(tp(2024, 2, 16, 17), hours(4)) == tp(2024, 2, 19, 10)


def test_forty_hours_span_a_week_and_a_holiday() -> None:
    cal = office(hours=LUNCH, holidays=["2026-11-25"])  # 8 h a day, Wednesday off
    due = cal.add(tp(2026, 11, 23, 9), hours(40))
    assert due == tp(2026, 11, 30, 18)
    assert cal.add(tp(2026, 11, 23, 10), hours(40)) == tp(2026, 12, 1, 10)


def test_business_days() -> None:
    cal = office()
    at = tp(2026, 11, 23, 10)  # Monday
    two = Duration(days=2)
    assert cal.add(at, two) == tp(2026, 11, 25, 10)
    assert cal.add(tp(2026, 11, 20, 17), two) == tp(2026, 11, 24, 17)
    # counting from a day's opening ends at the close of the N-th day, not the next morning
    assert cal.add(tp(2026, 11, 23, 9), Duration(days=1)) == tp(2026, 11, 23, 18)
    assert cal.add(tp(2026, 11, 21, 3), two) == tp(2026, 11, 24, 18)
    assert cal.add(tp(2026, 11, 23, 18), Duration(days=1)) == tp(2026, 11, 24, 18)
    assert cal.add(at, parse_duration("1d4h")) == tp(2026, 11, 24, 14)
    assert office(holidays=["2026-11-24"]).add(at, two) == tp(2026, 11, 26, 10)


def test_business_day_clamped_to_a_shorter_day() -> None:
    long_day, short_day = ((time(9), time(18)),), ((time(9), time(13)),)
    cal = BusinessCalendar("Asia/Taipei", {3: long_day, 4: short_day, 0: long_day})
    thursday = tp(2026, 11, 26, 15)
    assert cal.add(thursday, Duration(days=1)) == tp(2026, 11, 27, 13)
    assert cal.add(thursday, Duration(days=2)) == tp(2026, 11, 30, 15)


# --- daylight saving ----------------------------------------------------------------------------


def test_new_york_spring_forward_weekend() -> None:
    cal = office("America/New_York")
    friday = datetime(2025, 3, 7, 17, tzinfo=NEW_YORK)
    due = cal.add(friday, hours(4))
    assert due == datetime(2025, 3, 10, 12, tzinfo=NEW_YORK) and due.utcoffset() == timedelta(hours=-4)
    always = office("America/New_York", days=ALL_DAYS, hours=["00:00-24:00"])
    saturday_night = datetime(2025, 3, 8, 23, tzinfo=NEW_YORK)
    assert always.is_open(datetime(2025, 3, 9, 1, 30, tzinfo=NEW_YORK))
    # 02:00-03:00 does not exist that night, so four hours after 23:00 is 04:00
    assert always.add(saturday_night, hours(4)) == datetime(2025, 3, 9, 4, tzinfo=NEW_YORK)
    sunday = datetime(2025, 3, 9, tzinfo=NEW_YORK)
    assert always.business_minutes_between(sunday, sunday + timedelta(days=1)) == 23 * 60
    assert always.add(sunday, Duration(days=1)) == datetime(2025, 3, 10, tzinfo=NEW_YORK)


def test_new_york_fall_back_weekend() -> None:
    always = office("America/New_York", days=ALL_DAYS, hours=["00:00-24:00"])
    saturday_night = datetime(2025, 11, 1, 23, tzinfo=NEW_YORK)
    assert always.add(saturday_night, hours(4)) == datetime(2025, 11, 2, 2, tzinfo=NEW_YORK)  # 01:00 twice
    sunday = datetime(2025, 11, 2, tzinfo=NEW_YORK)
    assert always.business_minutes_between(sunday, sunday + timedelta(days=1)) == 25 * 60
    nights = office("America/New_York", days=ALL_DAYS, hours=["00:00-06:00", "22:00-24:00"])
    assert nights.business_minutes_between(sunday, sunday.replace(hour=12)) == 7 * 60
    assert office("America/New_York").add(datetime(2025, 10, 31, 17, tzinfo=NEW_YORK), hours(4)) == \
        datetime(2025, 11, 3, 12, tzinfo=NEW_YORK)


def test_range_inside_a_dst_gap_is_shifted_not_lost() -> None:
    """A wall time that does not exist is read with the offset before the change (fold=0)."""
    sunday = datetime(2025, 3, 9, tzinfo=NEW_YORK)
    gap = office("America/New_York", days=["sun"], hours=["02:30-04:00"])
    assert list(gap.open_intervals(sunday, sunday + timedelta(days=1))) == [
        (datetime(2025, 3, 9, 3, 30, tzinfo=NEW_YORK), datetime(2025, 3, 9, 4, tzinfo=NEW_YORK))]
    around = office("America/New_York", days=["sun"], hours=["01:00-02:30", "03:00-04:00"])
    assert around.business_minutes_between(sunday, sunday + timedelta(days=1)) == 120  # 01:00 EST to 04:00 EDT


def test_london_and_taipei_across_the_march_change() -> None:
    friday = datetime(2025, 3, 28, 17, tzinfo=LONDON)
    assert office("Europe/London").add(friday, hours(4)) == datetime(2025, 3, 31, 12, tzinfo=LONDON)
    always = office("Europe/London", days=ALL_DAYS, hours=["00:00-24:00"])
    due = always.add(datetime(2025, 3, 29, 23, 30, tzinfo=LONDON), hours(2))
    assert due == datetime(2025, 3, 30, 2, 30, tzinfo=LONDON) and due.utcoffset() == timedelta(hours=1)
    taipei_friday = tp(2025, 3, 7, 17)  # no DST in Taipei: the US change is irrelevant
    assert office().add(taipei_friday, hours(4)) == tp(2025, 3, 10, 12)


# --- format_due ------------------------------------------------------------------------------


@pytest.mark.parametrize("tz, en, hant, hans", [
    ("Asia/Taipei", "Tue 24 Nov, 10:00 Taipei time", "11月24日（週二）10:00（台北時間）", "11月24日（周二）10:00（台北时间）"),
    ("Asia/Shanghai", "Tue 24 Nov, 10:00 Shanghai time", "11月24日（週二）10:00（上海時間）",
     "11月24日（周二）10:00（上海时间）"),
    ("Europe/London", "Tue 24 Nov, 02:00 London time", "11月24日（週二）02:00（倫敦時間）", "11月24日（周二）02:00（伦敦时间）"),
    ("America/New_York", "Mon 23 Nov, 21:00 New York time", "11月23日（週一）21:00（紐約時間）",
     "11月23日（周一）21:00（纽约时间）"),
])
def test_format_due(tz: str, en: str, hant: str, hans: str) -> None:
    due = tp(2026, 11, 24, 10)
    assert [format_due(due, tz, lang) for lang in ("en", "zh-Hant", "zh-Hans")] == [en, hant, hans]
    assert format_due(due, tz, "de") == en


def test_format_due_without_a_city_names_the_offset() -> None:
    due = tp(2026, 11, 24, 10)
    assert format_due(due, "Etc/GMT-8", "en") == "Tue 24 Nov, 10:00 GMT+08:00 time"  # Etc/GMT-8 is UTC+8
    # a zone that has no city by definition: no test may depend on which cities a babel release names
    assert format_due(due, "Etc/GMT+3", "zh-Hant") == "11月23日（週一）23:00（GMT-03:00時間）"  # UTC-3
    assert format_due(due, "UTC", "en") == "Tue 24 Nov, 02:00 UTC time"


def test_format_due_errors() -> None:
    with pytest.raises(ValueError, match="no time zone"):
        format_due(datetime(2026, 11, 24, 10), "Asia/Taipei", "en")
    with pytest.raises(ValueError, match="unknown time zone"):
        format_due(tp(2026, 11, 24, 10), "Taipei", "en")


# --- properties ----------------------------------------------------------------------------

HOURS = (["09:00-18:00"], LUNCH, ["08:30-12:00", "13:30-17:45"], ["00:00-24:00"],
         ["00:00-06:00", "22:00-24:00"])
DAYS = (WEEKDAYS, ["mon-sat"], ALL_DAYS)
starts = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31),
                      timezones=st.sampled_from([ZoneInfo(z) for z in ZONES]))


@st.composite
def calendars(draw: st.DrawFn, start: datetime) -> BusinessCalendar:
    """Random zone, hours and days, with holidays and make-up days in the weeks after ``start``."""
    offsets = draw(st.lists(st.integers(-1, 60), max_size=20, unique=True))
    split = draw(st.integers(0, len(offsets)))
    day = start.date()
    return office(draw(st.sampled_from(ZONES)), days=draw(st.sampled_from(DAYS)),
                  hours=draw(st.sampled_from(HOURS)),
                  holidays=[(day + timedelta(days=k)).isoformat() for k in offsets[:split]],
                  extra_workdays=[(day + timedelta(days=k)).isoformat() for k in offsets[split:]])


@st.composite
def cases(draw: st.DrawFn) -> tuple[BusinessCalendar, datetime]:
    start = draw(starts)
    return draw(calendars(start)), start


def assert_valid_deadline(cal: BusinessCalendar, due: datetime) -> None:
    """Open just before ``due``: it is inside an opening range or at its closing edge, never on a holiday."""
    before = due - timedelta(microseconds=1)
    assert cal.is_open(before), due
    assert before.astimezone(ZoneInfo(cal.tz)).date() not in cal.holidays
    assert due.tzinfo == ZoneInfo(cal.tz)


@settings(max_examples=300, deadline=None)
@given(cases(), st.integers(1, 10_000))
def test_add_then_measure_round_trips(case: tuple[BusinessCalendar, datetime], minutes: int) -> None:
    cal, start = case
    due = cal.add(start, Duration(minutes=minutes))
    assert cal.business_minutes_between(start, due) == minutes
    assert_valid_deadline(cal, due)


@settings(max_examples=200, deadline=None)
@given(cases(), st.integers(1, 5_000), st.integers(1, 5_000))
def test_add_is_monotonic(case: tuple[BusinessCalendar, datetime], a: int, b: int) -> None:
    cal, start = case
    due_a, due_b = cal.add(start, Duration(minutes=a)), cal.add(start, Duration(minutes=b))
    assert start < min(due_a, due_b)
    assert (due_a < due_b) == (a < b) and (due_a == due_b) == (a == b)


@settings(max_examples=200, deadline=None)
@given(cases(), st.integers(1, 10))
def test_business_days_are_valid_and_monotonic(case: tuple[BusinessCalendar, datetime], days: int) -> None:
    cal, start = case
    due, later = cal.add(start, Duration(days=days)), cal.add(start, Duration(days=days + 1))
    assert start < due < later
    assert_valid_deadline(cal, due)
    assert_valid_deadline(cal, cal.add(start, Duration(minutes=90, days=days)))


def open_by_the_clock(cal: BusinessCalendar, instant: datetime) -> bool:
    """Independent oracle: is the local wall-clock time within the day's configured ranges?"""
    local = instant.astimezone(ZoneInfo(cal.tz))
    day, clock = local.date(), local.time()
    if day in cal.holidays:
        return False
    ranges = cal.extra_workdays.get(day, cal.weekly.get(day.weekday(), ()))
    return any(start <= clock and (end == time(0) or clock < end) for start, end in ranges)


@settings(max_examples=60, deadline=None)
@given(cases(), st.integers(0, 2 * 24 * 60))
def test_business_minutes_match_a_minute_count(case: tuple[BusinessCalendar, datetime], span: int) -> None:
    cal, start = case
    start = start.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=span)  # same tzinfo: wall-clock arithmetic, fine for an oracle window
    minutes = int((end.astimezone(ZoneInfo("UTC")) - start.astimezone(ZoneInfo("UTC"))) / timedelta(minutes=1))
    utc_start = start.astimezone(ZoneInfo("UTC"))
    expected = sum(open_by_the_clock(cal, utc_start + timedelta(minutes=m)) for m in range(minutes))
    assert cal.business_minutes_between(start, end) == expected


@pytest.mark.parametrize("tz, saturday", [
    ("America/New_York", date(2025, 3, 8)), ("America/New_York", date(2025, 11, 1)),
    ("Europe/London", date(2025, 3, 29)), ("Europe/London", date(2025, 10, 25))])
@pytest.mark.parametrize("hours_", [["00:00-24:00"], ["00:00-06:00", "22:00-24:00"], LUNCH])
def test_dst_weekends_match_the_wall_clock(tz: str, saturday: date, hours_: list[str]) -> None:
    cal = office(tz, days=ALL_DAYS, hours=hours_)
    start = datetime.combine(saturday, time(0), ZoneInfo(tz)).astimezone(ZoneInfo("UTC"))
    open_minutes = [m for m in range(3 * 24 * 60) if open_by_the_clock(cal, start + timedelta(minutes=m))]
    assert cal.business_minutes_between(start, start + timedelta(days=3)) == len(open_minutes)
    for n in (1, 60, 1000, len(open_minutes)):  # the n-th open minute ends at the due time
        assert cal.add(start, Duration(minutes=n)) == start + timedelta(minutes=open_minutes[n - 1] + 1)
