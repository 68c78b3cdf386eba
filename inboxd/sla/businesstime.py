"""Business-time arithmetic: SLA targets, opening hours, holidays and due dates.

An acknowledgement promises "we will answer by Tue 24 Nov, 10:00 Taipei time",
so due times must be right across weekends, holidays, make-up workdays and
daylight-saving changes. Opening ranges are wall-clock times of a local day;
each day is turned into UTC intervals once (a time in a DST gap is read with
the offset before the change, ``fold=0``, an ambiguous time as its first
occurrence) and all arithmetic happens in UTC, because subtracting two aware
datetimes that share a tzinfo compares wall clocks, not elapsed time.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_datetime, get_timezone_gmt, get_timezone_location

from inboxd.errors import InvalidSetting

Ranges = tuple[tuple[time, time], ...]
Interval = tuple[datetime, datetime]

MIDNIGHT = time(0)  # as the end of a range it means 24:00, the end of the day
ONE_DAY = timedelta(days=1)
MAX_CLOSED_DAYS = 3 * 366  # give up looking for an opening after this many closed days in a row
DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_LOCALES = {"en": "en", "zh-Hant": "zh_Hant", "zh-Hans": "zh_Hans"}
_UNIT_MINUTES = {"m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1,
                 "h": 60, "hr": 60, "hrs": 60, "hour": 60, "hours": 60,
                 "d": 0, "day": 0, "days": 0}  # 0 marks business days
_DURATION = re.compile(r"(?:\s*\d+\s*(?:(?:business|working)\s+)?[a-z]+)+\s*")
_PART = re.compile(r"(\d+)\s*(?:(?:business|working)\s+)?([a-z]+)")
_RANGE = re.compile(r"\s*(\d{1,2}):(\d{2})\s*(?:-|–|~|～|to)\s*(\d{1,2}):(\d{2})\s*")
_DURATION_WORDS = {  # separator, then (singular, plural) for days, hours, minutes
    "en": (" and ", ("business day", "business days"), ("business hour", "business hours"),
           ("business minute", "business minutes")),
    "zh-Hant": (" ", ("個工作天",) * 2, ("個工作小時",) * 2, ("分鐘",) * 2),
    "zh-Hans": (" ", ("个工作日",) * 2, ("个工作小时",) * 2, ("分钟",) * 2),
}


@dataclass(frozen=True)
class Duration:
    """An SLA target: business minutes, business days, or days then minutes."""

    minutes: int = 0
    days: int = 0

    def __post_init__(self) -> None:
        if self.minutes < 0 or self.days < 0 or not (self.minutes or self.days):
            raise InvalidSetting("a duration must be longer than zero")


def parse_duration(text: str) -> Duration:
    """Read a target the way an admin writes it: 30m, 4h, 1h30m, 2d, '90 min', '1 business day'."""
    hint = f"'{text}' is not a duration: write it like 30m, 4h, 1h30m or 2d"
    lowered = text.strip().lower()
    if not _DURATION.fullmatch(lowered):
        raise InvalidSetting(hint)
    minutes = days = 0
    for number, unit in _PART.findall(lowered):
        if unit not in _UNIT_MINUTES:
            raise InvalidSetting(hint)
        if _UNIT_MINUTES[unit]:
            minutes += int(number) * _UNIT_MINUTES[unit]
        else:
            days += int(number)
    if not (minutes or days):
        raise InvalidSetting(f"'{text}' is zero: a target must be longer, e.g. 30m or 4h")
    if days > 366 or minutes > 366 * 24 * 60:
        raise InvalidSetting(f"'{text}' is too long: keep targets under a year")
    return Duration(minutes=minutes, days=days)


def format_duration(d: Duration, lang: str) -> str:
    """'4 business hours', '1 個工作天', '4 个工作小时'; English for unknown languages."""
    separator, *words = _DURATION_WORDS.get(lang, _DURATION_WORDS["en"])
    amounts = (d.days, d.minutes // 60, d.minutes % 60)
    return separator.join(f"{n} {w[n != 1]}" for n, w in zip(amounts, words) if n)


def _clock(t: time) -> str:
    return "24:00" if t == MIDNIGHT else t.strftime("%H:%M")


def _since_midnight(t: time, end: bool = False) -> timedelta:
    if end and t == MIDNIGHT:
        return ONE_DAY
    return timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _normalise(ranges: Iterable[tuple[time, time]]) -> Ranges:
    """Sort and check a day's ranges; merge ranges that touch (12:00-13:00, 13:00-18:00)."""
    merged: list[tuple[time, time]] = []
    for start, end in sorted(ranges, key=lambda r: r[0]):
        name = f"{_clock(start)}-{_clock(end)}"
        if _since_midnight(end, end=True) <= _since_midnight(start):
            raise InvalidSetting(f"'{name}' ends before it starts: write the earlier time first, e.g. "
                             "09:00-18:00 (to stay open past midnight, end at 24:00 and open again at 00:00)")
        if merged and _since_midnight(start) < _since_midnight(merged[-1][1], end=True):
            raise InvalidSetting(f"'{_clock(merged[-1][0])}-{_clock(merged[-1][1])}' and '{name}' overlap")
        if merged and start == merged[-1][1]:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)


def parse_hours(ranges: list[str]) -> Ranges:
    """Read opening hours like ["09:00-12:00", "13:00-18:00"]; "24:00" ends a range at midnight."""
    if not ranges:
        raise InvalidSetting("no opening hours given: write them like 09:00-18:00")
    parsed: list[tuple[time, time]] = []
    for text in ranges:
        m = _RANGE.fullmatch(text)
        if not m:
            raise InvalidSetting(f"'{text}' is not a time range: write it like 09:00-18:00")
        h1, m1, h2, m2 = map(int, m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
            raise InvalidSetting(f"'{text}' has an impossible time: use times from 00:00 to 24:00")
        parsed.append((time(h1, m1), time(h2 % 24, m2)))
    return _normalise(parsed)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidSetting(f"unknown time zone '{tz}': use a name like Asia/Taipei or Europe/London") from None


def _utc(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise InvalidSetting(f"{dt} has no time zone; business time needs an aware datetime")
    return dt.astimezone(UTC)


def _walk(intervals: Iterable[Interval], amount: timedelta) -> datetime:
    """The instant ``amount`` of open time into ``intervals``; a closing time rather than the next opening."""
    for start, end in intervals:
        if amount <= end - start:
            return start + amount
        amount -= end - start
    raise InvalidSetting("there are not enough opening hours to count that far")


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise InvalidSetting(f"'{text}' is not a date: write it like 2024-10-10") from None


def _parse_days(names: Iterable[str]) -> set[int]:
    """Weekday numbers from names like 'mon', 'Tuesday' or a span 'mon-fri'."""
    def one(name: str) -> int:
        key = name.strip().lower()
        for number, full in enumerate(DAY_NAMES):
            if key in (full, full[:3]):
                return number
        raise InvalidSetting(f"'{name}' is not a day of the week: use mon, tue, wed, thu, fri, sat or sun")

    days: set[int] = set()
    for name in names:
        first, _, last = name.partition("-")
        a, b = one(first), one(last or first)
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(b + 1)])
    return days


@dataclass(frozen=True)
class BusinessCalendar:
    """A team's opening hours in one time zone.

    ``weekly`` maps weekday (0=Mon..6=Sun) to opening ranges (a missing day is
    closed); ``holidays`` close whole days; ``extra_workdays`` are make-up
    working days (補班 / 调休) with their own ranges.
    """

    tz: str
    weekly: Mapping[int, Ranges]
    holidays: frozenset[date] = frozenset()
    extra_workdays: Mapping[date, Ranges] = field(default_factory=dict)
    _tzinfo: ZoneInfo = field(init=False, repr=False, compare=False)
    _days: dict[date, tuple[Interval, ...]] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        zone = _zone(self.tz)
        weekly = {day: _normalise(r) for day, r in self.weekly.items()}
        if bad := [day for day in weekly if day not in range(7)]:
            raise InvalidSetting(f"weekday {bad[0]!r} is not a number from 0 (Monday) to 6 (Sunday)")
        extra = {day: _normalise(r) for day, r in self.extra_workdays.items()}
        holidays = frozenset(self.holidays)
        if both := sorted(holidays & extra.keys()):
            raise InvalidSetting(f"{both[0]} is listed both as a holiday and as an extra workday")
        if not any(weekly.values()) and not any(extra.values()):
            raise InvalidSetting("the calendar has no opening hours")
        for name, value in (("_tzinfo", zone), ("weekly", weekly),
                            ("extra_workdays", extra), ("holidays", holidays)):
            object.__setattr__(self, name, value)

    @classmethod
    def simple(cls, tz: str, days: Iterable[str] = ("mon", "tue", "wed", "thu", "fri"),
               hours: Iterable[str] = ("09:00-18:00",), holidays: Iterable[str] = (),
               extra_workdays: Iterable[str] = ()) -> BusinessCalendar:
        """Build from config strings; make-up workdays get the same ``hours`` as every business day."""
        ranges = parse_hours(list(hours))
        return cls(tz, {day: ranges for day in _parse_days(days)},
                   frozenset(map(_parse_date, holidays)),
                   {_parse_date(day): ranges for day in extra_workdays})

    def _ranges(self, day: date) -> Ranges:
        if day in self.holidays:
            return ()
        return self.extra_workdays.get(day, self.weekly.get(day.weekday(), ()))

    def _day_intervals(self, day: date) -> tuple[Interval, ...]:
        """One local day's opening as sorted UTC intervals (DST may shift, shrink or drop a range).

        Kept per day once computed: the calendar never changes, and the SLA watch asks
        for the same few days for every clock it places.
        """
        if (known := self._days.get(day)) is not None:
            return known
        out = []
        for start, end in self._ranges(day):
            opens = datetime.combine(day, start, self._tzinfo).astimezone(UTC)
            end_day = day + ONE_DAY if end == MIDNIGHT else day
            closes = datetime.combine(end_day, end, self._tzinfo).astimezone(UTC)
            if closes > opens:
                out.append((opens, closes))
        merged: list[Interval] = []
        for opens, closes in sorted(out):  # shifted ranges may now overlap
            if merged and opens <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], closes))
            else:
                merged.append((opens, closes))
        self._days[day] = intervals = tuple(merged)
        return intervals

    def _working_days(self, first: date, until: date | None) -> Iterator[tuple[date, tuple[Interval, ...]]]:
        """Days with opening hours from ``first``; unbounded searches stop after 3 closed years."""
        day, closed = first, 0
        while until is None or day <= until:
            if intervals := self._day_intervals(day):
                closed = 0
                yield day, intervals
            elif (closed := closed + 1) > MAX_CLOSED_DAYS and until is None:
                raise InvalidSetting(f"no opening hours in the three years up to {day}: "
                                 "check the business days and holidays")
            day += ONE_DAY

    def _local_date(self, instant: datetime) -> date:
        return instant.astimezone(self._tzinfo).date()

    def _intervals(self, start: datetime, end: datetime | None) -> Iterator[Interval]:
        """Disjoint UTC opening intervals clipped to [start, end), day by day; endless without ``end``."""
        until = None if end is None else self._local_date(end) + ONE_DAY
        cursor = start  # nothing before it is yielded again, even if a DST shift overlaps two days
        for _, intervals in self._working_days(self._local_date(start) - ONE_DAY, until):
            for opens, closes in intervals:
                opens, closes = max(opens, cursor), closes if end is None else min(closes, end)
                if end is not None and opens >= end:
                    return
                if closes > opens:
                    yield opens, closes
                    cursor = closes

    def open_intervals(self, start: datetime, end: datetime | None = None) -> Iterator[Interval]:
        """Opening periods (open, close) covering [start, end), in the calendar's zone."""
        for opens, closes in self._intervals(_utc(start), None if end is None else _utc(end)):
            yield opens.astimezone(self._tzinfo), closes.astimezone(self._tzinfo)

    def is_open(self, dt: datetime) -> bool:
        """Whether ``dt`` is within opening hours (a closing time itself is closed)."""
        at = _utc(dt)
        return any(self._intervals(at, at + timedelta(microseconds=1)))

    def next_open(self, dt: datetime) -> datetime:
        """``dt`` itself when open, else the start of the next opening period."""
        return next(self._intervals(_utc(dt), None))[0].astimezone(self._tzinfo)

    def _add_days(self, start: datetime, n: int) -> datetime:
        """N business days: the same business time into the N-th next working day.

        Counting starts at the next opening. If that is the first opening of a
        working day, the result is the close of the N-th working day counted
        from it (overnight mail with a 1d target is due at the end of the next
        working day); otherwise it is the point with the same business time
        elapsed since that day's opening on the N-th following working day,
        clamped to that day's closing time if it is shorter.
        """
        at = _utc(self.next_open(start))
        days = self._working_days(self._local_date(at) - ONE_DAY, None)
        intervals = next(ivs for _, ivs in days if any(o <= at < c for o, c in ivs))
        offset = sum((min(c, at) - o for o, c in intervals if o < at), timedelta())
        for _ in range(n if offset else n - 1):
            _, intervals = next(days)
        total = sum((c - o for o, c in intervals), timedelta())
        return _walk(intervals, min(offset or total, total))

    def add(self, start: datetime, duration: Duration) -> datetime:
        """The due time: ``duration.days`` business days, then ``duration.minutes`` business minutes."""
        at = _utc(start)
        if duration.days:
            at = self._add_days(at, duration.days)
        if duration.minutes:
            at = _walk(self._intervals(at, None), timedelta(minutes=duration.minutes))
        return at.astimezone(self._tzinfo)

    def add_time(self, start: datetime, amount: timedelta) -> datetime:
        """``amount`` of business time after ``start``, to the microsecond (for resuming a paused clock)."""
        if amount <= timedelta(0):
            return self.next_open(start)
        return _walk(self._intervals(_utc(start), None), amount).astimezone(self._tzinfo)

    def _intervals_back(self, end: datetime) -> Iterator[Interval]:
        """The opening intervals before ``end``, latest first, clipped to it; gives up after 3 closed years.

        Read a week at a time with ``_intervals`` (so exactly the open time that
        ``business_minutes_between`` counts); an interval across a week boundary
        comes in two touching pieces.
        """
        upper, closed = end, timedelta(0)
        while True:
            lower = upper - 7 * ONE_DAY
            week = list(self._intervals(lower, upper))
            yield from reversed(week)
            closed = closed + (upper - lower) if not week else timedelta(0)
            if closed > MAX_CLOSED_DAYS * ONE_DAY:
                raise InvalidSetting(f"no opening hours in the three years before {self._local_date(upper)}: "
                                     "check the business days and holidays")
            upper = lower

    def subtract_time(self, end: datetime, amount: timedelta) -> datetime:
        """The earliest instant with at most ``amount`` of business time left before ``end``.

        The mirror of ``add_time``: when the count lands on an opening, the previous
        closing time is returned (at it, exactly ``amount`` is left, and the closed
        stretch between adds none), so a warning is never placed inside a night or
        weekend. ``end`` itself for an amount below zero.
        """
        at = _utc(end)
        if amount < timedelta(0):
            return end
        for opens, closes in self._intervals_back(at):
            if closes - opens > amount:
                return (closes - amount).astimezone(end.tzinfo)
            amount -= closes - opens
        raise AssertionError("unreachable: _intervals_back is endless")  # pragma: no cover

    def business_minutes_between(self, a: datetime, b: datetime) -> float:
        """Business minutes elapsed from ``a`` to ``b`` (0 when ``b`` is not after ``a``)."""
        elapsed = sum((c - o for o, c in self._intervals(_utc(a), _utc(b))), timedelta())
        return elapsed / timedelta(minutes=1)


def format_due(dt: datetime, tz: str, lang: str) -> str:
    """A due time for customers: 'Tue 24 Nov, 10:00 Taipei time', '11月24日（週二）10:00（台北時間）'."""
    zone = _zone(tz)
    locale = _LOCALES.get(lang, "en")
    local = _utc(dt).astimezone(zone)
    city = get_timezone_location(zone, locale=locale, return_city=True)
    if "/" in city or zone.key.startswith("Etc/GMT"):  # no city known (Etc/GMT-8 is UTC+8): name the offset
        city = get_timezone_gmt(local, locale=locale)
    if locale == "en":
        return f"{format_datetime(local, 'EEE d MMM, HH:mm', tzinfo=zone, locale=locale)} {city} time"
    suffix = "時間" if locale == "zh_Hant" else "时间"
    when = format_datetime(local, "M月d日（EEE）HH:mm", tzinfo=zone, locale=locale)
    return f"{when}（{city}{suffix}）"
