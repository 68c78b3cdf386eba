"""Business calendars from the configuration: ``[calendars.NAME]`` tables.

A calendar has a time zone, opening hours per weekday (several ranges a day),
holidays written as dates or read from an .ics file (as governments publish
them), and extra working days such as Taiwan's 補班 or mainland China's 调休
Saturdays. The ``[support]`` hours always exist as the calendar named
``support``; SLA policies name the calendar they count in.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from inboxd.errors import InvalidSetting
from inboxd.sla.businesstime import DAY_NAMES, BusinessCalendar, Ranges, parse_hours

CALENDAR_KEYS = ("timezone", *(d[:3] for d in DAY_NAMES), "holidays", "holidays_file", "extra_workdays",
                 "extra_workday_hours")


def holidays_from_ics(path: Path) -> set[date]:
    """Every day covered by an event in an .ics file (all-day events, DTEND exclusive)."""
    import icalendar

    try:
        calendar = icalendar.Calendar.from_ical(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidSetting(f"cannot read holidays from {path}: {exc}") from None
    days: set[date] = set()
    for event in calendar.walk("VEVENT"):
        start = event.get("DTSTART")
        if start is None:
            continue
        first = start.dt.date() if isinstance(start.dt, datetime) else start.dt
        end, duration = event.get("DTEND"), event.get("DURATION")
        if end is not None:
            last = end.dt.date() if isinstance(end.dt, datetime) else end.dt
        elif duration is not None:  # DTSTART plus DURATION, e.g. P3D for a three-day holiday
            last = first + timedelta(days=max(1, duration.dt.days))
        else:
            last = first
        day = first
        days.add(day)
        while day + timedelta(days=1) < last:  # DTEND of an all-day event is the day after it
            day += timedelta(days=1)
            days.add(day)
    return days


def build_calendar(name: str, spec: dict[str, Any], base: Path,
                   fail: Callable[[str, str], Exception]) -> BusinessCalendar:
    """One ``[calendars.NAME]`` table; ``fail(key, message)`` makes the error to raise."""
    for key in spec:
        if key not in CALENDAR_KEYS:
            raise fail(key, f"unknown setting '{key}' in [calendars.{name}]; known: {', '.join(CALENDAR_KEYS)}")
    for key in CALENDAR_KEYS[1:]:
        value = spec.get(key)
        if key != "holidays_file" and value is not None and not (
                isinstance(value, str) or isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise fail(key, f"[calendars.{name}] {key} must be a text or a list of texts")
    tz = spec.get("timezone")
    if not isinstance(tz, str):
        raise fail("timezone", f"[calendars.{name}] needs a timezone, e.g. \"Asia/Taipei\"")
    weekly: dict[int, Ranges] = {}
    for number, day in enumerate(d[:3] for d in DAY_NAMES):
        if day in spec:
            try:
                if ranges := parse_hours(_texts(spec[day])):
                    weekly[number] = ranges
            except ValueError as exc:
                raise fail(day, f"[calendars.{name}] {day}: {exc}") from None
    holidays: set[date] = set()
    for key in ("holidays", "extra_workdays"):
        for text in _texts(spec.get(key, [])):
            try:
                date.fromisoformat(text)
            except ValueError:
                raise fail(key, f"[calendars.{name}] {key}: '{text}' is not a date like 2026-10-10") from None
    holidays |= {date.fromisoformat(t) for t in _texts(spec.get("holidays", []))}
    if "holidays_file" in spec:
        try:
            holidays |= holidays_from_ics(base / str(spec["holidays_file"]))
        except ValueError as exc:
            raise fail("holidays_file", str(exc)) from None
    try:
        extra_hours = parse_hours(_texts(spec["extra_workday_hours"])) if "extra_workday_hours" in spec else \
            weekly.get(0) or next(iter(weekly.values()), ())
    except ValueError as exc:
        raise fail("extra_workday_hours", f"[calendars.{name}] extra_workday_hours: {exc}") from None
    extra = {date.fromisoformat(t): extra_hours for t in _texts(spec.get("extra_workdays", []))}
    both = sorted(holidays & set(extra))
    if both:
        raise fail("extra_workdays", f"[calendars.{name}] {both[0].isoformat()} is both a holiday and an extra "
                                     "working day")
    try:
        return BusinessCalendar(tz, weekly, frozenset(holidays), extra)
    except ValueError as exc:
        raise fail("timezone", f"[calendars.{name}]: {exc}") from None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise InvalidSetting("must be a text or a list of texts")
