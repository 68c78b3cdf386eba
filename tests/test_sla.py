"""SLA clocks and the watch over them, without mail servers: configuration, calendars and .ics holidays,
timers on a real Store with a fixed clock, alert levels across weekends, holidays and DST, pause/resume,
superseding after downtime, who gets each alert, the webhook (real HTTP), and ``inboxd sla``."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import os
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import ConfigError, Settings, load_settings
from inboxd.mail.send import Sender
from inboxd.routing.assign import Routing
from inboxd.sla import clocks as sla
from inboxd.sla.businesstime import Duration
from inboxd.sla.calendars import holidays_from_ics
from inboxd.sla.clocks import Timer
from inboxd.sla.watch import Watch, levels
from inboxd.store.base import iso
from inboxd.store.sqlite import Store

TAIPEI, NEW_YORK, LONDON = ZoneInfo("Asia/Taipei"), ZoneInfo("America/New_York"), ZoneInfo("Europe/London")
AGENT, LEAD, MANAGER, CUSTOMER = "agent@example.com", "lead@example.com", "manager@example.com", "customer@example.com"


def tp(*args: int) -> datetime:
    """A Taipei wall-clock time: tp(2026, 11, 24, 10)."""
    return datetime(*args, tzinfo=TAIPEI)  # type: ignore[arg-type,misc]


TUE_10 = tp(2026, 11, 24, 10)  # a Tuesday; the first-response clock of 4h is due at 14:00

BASE = """\
[imap]
host = "imap.example.com"
username = "support"

[smtp]
host = "smtp.example.com"
retry_delay = 30

[support]
address = "support@example.com"
timezone = "Asia/Taipei"
business_days = ["mon-fri"]
business_hours = ["09:00-18:00"]

[storage]
database = "inboxd.db"

[routing]
agents = "agents.toml"
"""

SLA = """
[sla]
warn_at = [0.75, 0.9]
escalation = [{ after = "30m", to = "lead" }, { after = "1h", to = "manager" }]
manager = "manager@example.com"
{webhook}
[sla.policies.standard]
first_response = "4h"
next_response = "2h"
resolution = "2d"
"""

CALENDARS = """
[calendars.ny]
timezone = "America/New_York"
mon = "09:00-17:00"
tue = "09:00-17:00"
wed = "09:00-17:00"
thu = "09:00-17:00"
fri = "09:00-17:00"
holidays = ["2026-11-26"]

[calendars.london]
timezone = "Europe/London"
mon = "09:00-17:30"
tue = "09:00-17:30"
wed = "09:00-17:30"
thu = "09:00-17:30"
fri = "09:00-17:30"

[calendars.taipei]
timezone = "Asia/Taipei"
mon = ["09:00-12:00", "13:00-18:00"]
tue = ["09:00-12:00", "13:00-18:00"]
wed = ["09:00-12:00", "13:00-18:00"]
thu = ["09:00-12:00", "13:00-18:00"]
fri = ["09:00-12:00", "13:00-18:00"]
holidays_file = "holidays/taiwan.ics"
extra_workdays = ["2026-02-07"]

[sla.policies.ny]
calendar = "ny"
first_response = "4h"

[sla.policies.london]
calendar = "london"
first_response = "4h"

[sla.policies.taipei]
calendar = "taipei"
first_response = { urgent = "4h", normal = "8h" }
"""


def agents_toml(agent_hours: str = "09:00-18:00", lead_hours: str = "09:00-18:00", *, away: str = "",
                lead: bool = True) -> str:
    return f"""\
[[agent]]
name = "Alice Agent"
email = "{AGENT}"
hours = ["{agent_hours}"]
{f'away_until = "{away}"' if away else ''}

[[agent]]
name = "Lena Lead"
email = "{LEAD}"
hours = ["{lead_hours}"]

[[team]]
name = "support"
members = ["{AGENT}"]
{f'lead = "{LEAD}"' if lead else ''}
"""


def ics(*events: str) -> str:
    """An .ics calendar with the given VEVENT bodies (CRLF line ends, as RFC 5545 has them)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//inboxd tests//EN"]
    for number, body in enumerate(events, start=1):
        lines += ["BEGIN:VEVENT", f"UID:holiday-{number}@example.com", "DTSTAMP:20260101T000000Z",
                  *body.strip().splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "\r\n".join(lines) + "\r\n"


# Lunar New Year week as a one multi-day all-day event (DTEND is the day after the last holiday).
TAIWAN_ICS = ics("DTSTART;VALUE=DATE:20260216\nDTEND;VALUE=DATE:20260221\nSUMMARY:春節",
                 "DTSTART;VALUE=DATE:20261009\nDTEND;VALUE=DATE:20261010\nSUMMARY:國慶日補假")


def write_config(tmp_path: Path, *, sla_text: str | None = None, calendars: str = "", webhook: str = "",
                 agents: str | None = None, extra: str = "") -> Path:
    (tmp_path / "agents.toml").write_text(agents if agents is not None else agents_toml(), encoding="utf-8")
    (tmp_path / "holidays").mkdir(exist_ok=True)
    (tmp_path / "holidays" / "taiwan.ics").write_text(TAIWAN_ICS, encoding="utf-8")
    sla_part = sla_text if sla_text is not None else SLA.replace(
        "{webhook}", f'webhook_url = "{webhook}"' if webhook else "")
    path = tmp_path / "inboxd.toml"
    path.write_text(BASE + sla_part + calendars + extra, encoding="utf-8")
    return path


def make_settings(tmp_path: Path, **kwargs: Any) -> Settings:
    return load_settings(write_config(tmp_path, **kwargs))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path, calendars=CALENDARS)


@pytest.fixture
def store(settings: Settings) -> Iterator[Store]:
    s = Store(settings.database)
    yield s
    s.close()


def new_ticket(store: Store, now: datetime = TUE_10, *, owner: str | None = AGENT, team: str | None = "support",
               priority: str = "normal", policy: str = "standard", subject: str = "Order 1042 never arrived") -> str:
    ticket_id = store.create_ticket("SUP", subject=subject, requester=CUSTOMER, requester_name="Chen Mei",
                                    language="en", now=now)
    store.update_ticket(ticket_id, now, owner=owner, team=team, priority=priority, sla_policy=policy)
    return ticket_id


def opened(store: Store, settings: Settings, now: datetime = TUE_10, **kwargs: Any) -> str:
    """A ticket as the pipeline makes it: first-response and resolution clocks started at ``now``."""
    ticket_id = new_ticket(store, now, **kwargs)
    sla.start(store, settings, ticket_id, "first_response", now)
    sla.start(store, settings, ticket_id, "resolution", now)
    return ticket_id


def clocks(store: Store, ticket_id: str = "SUP-1", states: tuple[str, ...] = ("running", "paused", "stopped")
           ) -> dict[str, Timer]:
    return {t.kind: t for t in sla.timers(store, ticket_id, states)}


def clock(store: Store, kind: str = "first_response", ticket_id: str = "SUP-1") -> Timer:
    return clocks(store, ticket_id)[kind]


def event_kinds(store: Store, ticket_id: str = "SUP-1") -> list[str]:
    return [r["kind"] for r in store.query("SELECT kind FROM events WHERE ticket_id=? ORDER BY id", (ticket_id,))]


def alerts(store: Store) -> list[dict[str, Any]]:
    return store.query("SELECT a.level, a.sent, a.recipients, t.kind FROM sla_alerts a "
                       "JOIN sla_timers t ON t.id=a.timer_id ORDER BY a.id")


def sla_mail(store: Store) -> list[dict[str, Any]]:
    return store.query("SELECT * FROM outbox WHERE kind='sla_alert' ORDER BY id")


def subjects(store: Store) -> list[str]:
    return [str(email.message_from_bytes(r["raw"], policy=email.policy.default)["Subject"]) for r in sla_mail(store)]


def check(settings: Settings, store: Store, now: datetime) -> int:
    """One SLA check as after a (re)start: a new Routing and Watch on the same database."""
    return Watch(settings, store, Routing(settings)).check(now)


def seconds(dt: datetime) -> datetime:
    """``dt`` rounded to the second (level times come from a bisection, exact to well under a second)."""
    return (dt + timedelta(microseconds=500_000)).replace(microsecond=0)


def level_times(settings: Settings, timer: Timer, tz: ZoneInfo) -> dict[str, datetime]:
    return {lv.name: seconds(lv.at).astimezone(tz) for lv in levels(settings, timer)}


def running(settings: Settings, policy: str, kind: str, start: datetime, priority: str = "normal") -> Timer:
    """A running clock as ``sla.start`` would make it, without a database."""
    pol = settings.sla_policies[policy]
    target = pol.target(kind, priority)
    assert target is not None
    calendar = settings.calendars[pol.calendar]
    due = calendar.add(start, target)
    return Timer(1, "SUP-1", kind, policy, pol.calendar, "running", start, due,
                 calendar.business_minutes_between(start, due), None, None)


def test_an_alert_does_not_crash_the_watch(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings)
    assert check(settings, store, tp(2026, 11, 24, 13)) == 1
    assert [a["level"] for a in alerts(store)] == ["warn-75"]


# --- configuration: calendars and policies --------------------------------------------------


def test_calendars_and_policies_are_read(settings: Settings) -> None:
    assert set(settings.calendars) == {"support", "ny", "london", "taipei"}
    standard = settings.sla_policies["standard"]
    assert standard.calendar == "support"
    for priority in ("low", "normal", "high", "urgent"):  # one duration: every priority
        assert standard.target("first_response", priority) == Duration(minutes=240)
        assert standard.target("next_response", priority) == Duration(minutes=120)
        assert standard.target("resolution", priority) == Duration(days=2)
    taipei = settings.sla_policies["taipei"]
    assert taipei.calendar == "taipei"
    assert taipei.target("first_response", "urgent") == Duration(minutes=240)
    assert taipei.target("first_response", "normal") == Duration(minutes=480)
    assert taipei.target("first_response", "low") is None  # no target: no promise
    assert taipei.target("resolution", "normal") is None
    assert settings.sla.warn_at == (0.75, 0.9)
    assert settings.sla.escalation == ((Duration(minutes=30), "lead"), (Duration(minutes=60), "manager"))
    assert settings.sla.manager == MANAGER and settings.sla.webhook_url == ""
    assert settings.default_policy == "standard"

    ny = settings.calendars["ny"]
    assert ny.tz == "America/New_York" and date(2026, 11, 26) in ny.holidays
    assert not ny.is_open(datetime(2026, 11, 26, 12, tzinfo=NEW_YORK))  # Thanksgiving
    assert ny.is_open(datetime(2026, 11, 27, 12, tzinfo=NEW_YORK))
    tw = settings.calendars["taipei"]
    assert {date(2026, 2, d) for d in range(16, 21)} <= tw.holidays  # from the .ics file, relative to the config
    assert date(2026, 2, 21) not in tw.holidays and date(2026, 10, 9) in tw.holidays
    assert tw.is_open(tp(2026, 2, 7, 10)) and not tw.is_open(tp(2026, 2, 7, 12, 30))  # make-up Saturday, Monday's hours
    assert not tw.is_open(tp(2026, 2, 14, 10))  # an ordinary Saturday


def test_without_policies_the_support_first_response_applies_to_every_priority(tmp_path: Path) -> None:
    s = make_settings(tmp_path, sla_text="")
    [policy] = s.sla_policies.values()
    assert policy.name == "standard" and policy.calendar == "support"
    assert all(policy.target("first_response", p) == Duration(minutes=240) for p in ("low", "urgent"))
    assert policy.target("next_response", "normal") is None and policy.target("resolution", "normal") is None
    assert s.sla.warn_at == (0.75, 0.9) and s.sla.escalation == ((Duration(minutes=30), "lead"),)


def test_warn_at_is_kept_in_order(tmp_path: Path) -> None:
    s = make_settings(tmp_path, sla_text='\n[sla]\nwarn_at = [0.9, 0.5]\nescalation = []\n')
    assert s.sla.warn_at == (0.5, 0.9) and s.sla.escalation == ()


def line_of(path: Path, needle: str, after: str = "") -> int:
    """The 1-based line holding ``needle``: the first one from the line holding ``after`` on."""
    seen = not after
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        seen = seen or after in line
        if seen and needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


GOOD_CAL = '\n[calendars.c]\ntimezone = "Asia/Taipei"\nmon = "09:00-18:00"\n'


@pytest.mark.parametrize("extra, needle, message", [
    (GOOD_CAL + 'lunch = "12:00-13:00"\n', "lunch =", "unknown setting 'lunch' in [calendars.c]; known: timezone"),
    ('\n[calendars.c]\nmon = "09:00-18:00"\n', "[calendars.c]", "[calendars.c] needs a timezone"),
    ('\n[calendars.c]\ntimezone = "Mars/Olympus"\nmon = "09:00-18:00"\n', "timezone = \"Mars",
     "unknown time zone 'Mars/Olympus'"),
    (GOOD_CAL + 'tue = "9-18"\n', 'tue = "9-18"', "[calendars.c] tue: '9-18' is not a time range"),
    (GOOD_CAL + 'wed = ["13:00-18:00", "09:00-14:00"]\n', "wed =",
     "[calendars.c] wed: '09:00-14:00' and '13:00-18:00' overlap"),
    (GOOD_CAL + 'thu = 9\n', "thu = 9", "[calendars.c] thu must be a text or a list of texts"),
    (GOOD_CAL + 'holidays = ["2026-02-30"]\n', "holidays =", "[calendars.c] holidays: '2026-02-30' is not a date"),
    (GOOD_CAL + 'extra_workdays = ["next saturday"]\n', "extra_workdays =",
     "[calendars.c] extra_workdays: 'next saturday' is not a date"),
    (GOOD_CAL + 'extra_workday_hours = ["18:00-09:00"]\n', "extra_workday_hours",
     "[calendars.c] extra_workday_hours: '18:00-09:00' ends before it starts"),
    (GOOD_CAL + 'holidays_file = "missing.ics"\n', "holidays_file", "cannot read holidays from"),
    (GOOD_CAL + 'holidays_file = "holidays/broken.ics"\n', "holidays_file", "cannot read holidays from"),
    ('\n[calendars.c]\ntimezone = "Asia/Taipei"\n', "timezone =", "the calendar has no opening hours"),
    ('\n[calendars]\nc = "Asia/Taipei"\n', 'c = "Asia/Taipei"', "[calendars.c] must be a table"),
    ('\n[sla.policies.vip]\ncalendar = "nowhere"\nfirst_response = "1h"\n', 'calendar = "nowhere"',
     "[sla.policies.vip] calendar 'nowhere' is not defined; calendars: support"),
    ('\n[sla.policies.vip]\nfirst_response = "4 fortnights"\n', "4 fortnights",
     "[sla.policies.vip] first_response: '4 fortnights' is not a duration"),
    ('\n[sla.policies.vip]\nnext_response = { critical = "1h" }\n', "critical",
     "[sla.policies.vip] next_response takes a duration like \"4h\", or one per priority"),
    ('\n[sla.policies.vip]\nresolution = { urgent = 4 }\n', "urgent = 4", "resolution takes a duration"),
    ('\n[sla.policies.vip]\nfirst_reply = "1h"\n', "first_reply",
     "unknown setting 'first_reply' in [sla.policies.vip]; known: calendar, first_response"),
    ('\n[sla.policies.vip]\nresolution = "0h"\n', 'resolution = "0h"', "[sla.policies.vip] resolution: '0h' is zero"),
])
def test_calendar_and_policy_errors_name_file_line_and_key(tmp_path: Path, extra: str, needle: str,
                                                            message: str) -> None:
    path = write_config(tmp_path, extra=extra)
    (tmp_path / "holidays" / "broken.ics").write_text("this is not a calendar\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    err = info.value
    assert err.line == line_of(path, needle, after="[calendars" if "[calendars" in extra else "[sla.policies.vip"), \
        str(err)
    assert str(err).startswith(f"{path}:{err.line}: ")
    assert message in err.message


@pytest.mark.parametrize("sla_text, needle, message", [
    ('\n[sla]\nwarn_at = [0.75, 1.5]\n', "warn_at", "[sla] warn_at must be a list of fractions between 0 and 1"),
    ('\n[sla]\nwarn_at = [true]\n', "warn_at", "fractions between 0 and 1"),
    ('\n[sla]\nescalation = [{ after = "30m", to = "boss" }]\n', "escalation", "to is owner, lead, manager"),
    ('\n[sla]\nescalation = [{ after = "soon", to = "lead" }]\n', "escalation", "'soon' is not a duration"),
    ('\n[sla]\nescalation = [{ after = "1h", to = "manager" }]\n', "escalation",
     "escalates to the manager, but [sla] manager is not set"),
    ('\n[sla]\nmanager = "the boss"\n', "manager", "[sla] manager must be an email address"),
    ('\n[sla]\nwebhook_url = "hooks.example.com/x"\n', "webhook_url", "must start with http:// or https://"),
    ('\n[sla]\ncheck_seconds = 0\n', "check_seconds", "[sla] check_seconds must be greater than zero"),
    ('\n[sla]\ndefault_policy = "gold"\n\n[sla.policies.standard]\nfirst_response = "4h"\n', "default_policy",
     "[sla] default_policy 'gold' is not one of the policies: standard"),
])
def test_sla_setting_errors_name_file_line_and_key(tmp_path: Path, sla_text: str, needle: str, message: str) -> None:
    path = write_config(tmp_path, sla_text=sla_text)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.line == line_of(path, needle), str(info.value)
    assert message in info.value.message and str(info.value).startswith(f"{path}:{info.value.line}: ")


def test_check_config_reports_a_calendar_error_with_exit_code_2(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra=GOOD_CAL + 'fri = "09:00-25:00"\n')
    result = CliRunner().invoke(main, ["--config", str(path), "check-config"])
    assert result.exit_code == 2
    assert f"{path}:{line_of(path, 'fri =')}: [calendars.c] fri: '09:00-25:00' has an impossible time" in result.output


def test_a_policy_calendar_that_is_not_a_text_is_a_config_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra='\n[sla.policies.vip]\ncalendar = ["support"]\nfirst_response = "1h"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.line == line_of(path, 'calendar = ["support"]')


def test_a_day_both_holiday_and_extra_workday_points_at_extra_workdays(tmp_path: Path) -> None:
    path = write_config(tmp_path, extra=GOOD_CAL + 'holidays = ["2026-02-07"]\nextra_workdays = ["2026-02-07"]\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert "2026-02-07 is both a holiday and an extra working day" in info.value.message
    assert info.value.line == line_of(path, "extra_workdays =")


# --- .ics holidays ----------------------------------------------------------------------


def holidays_of(tmp_path: Path, text: str) -> set[date]:
    path = tmp_path / "h.ics"
    path.write_text(text, encoding="utf-8")
    return holidays_from_ics(path)


def test_ics_all_day_events_single_and_multi_day(tmp_path: Path) -> None:
    days = holidays_of(tmp_path, ics(
        "DTSTART;VALUE=DATE:20261010\nDTEND;VALUE=DATE:20261011\nSUMMARY:National Day",  # one day
        "DTSTART;VALUE=DATE:20260216\nDTEND;VALUE=DATE:20260221\nSUMMARY:Lunar New Year",  # Mon-Fri, DTEND exclusive
        "DTSTART;VALUE=DATE:20261231\nDTEND;VALUE=DATE:20270102\nSUMMARY:Year end",  # across the new year
        "DTSTART;VALUE=DATE:20260404\nSUMMARY:Children's Day"))  # no DTEND: that one day
    assert days == {date(2026, 10, 10), *(date(2026, 2, d) for d in range(16, 21)), date(2026, 12, 31),
                    date(2027, 1, 1), date(2026, 4, 4)}


def test_ics_timed_event_and_empty_calendar(tmp_path: Path) -> None:
    timed = ics("DTSTART:20261001T000000\nDTEND:20261002T000000\nSUMMARY:x")  # midnight to midnight: one day
    assert holidays_of(tmp_path, timed) == {date(2026, 10, 1)}
    assert holidays_of(tmp_path, ics()) == set()


def test_ics_holidays_and_listed_holidays_add_up(tmp_path: Path) -> None:
    s = make_settings(tmp_path, extra=GOOD_CAL.replace('mon = "09:00-18:00"', 'mon = "09:00-18:00"\n'
                                                       'tue = "09:00-18:00"\nholidays = ["2026-02-23"]\n'
                                                       'holidays_file = "holidays/taiwan.ics"'))
    cal = s.calendars["c"]
    assert date(2026, 2, 23) in cal.holidays and date(2026, 2, 16) in cal.holidays
    # open Mondays and Tuesdays only; 16-17 Feb (.ics) and Mon 23 Feb (listed) are closed: 9h Tue 24, 1h Mon 2 Mar
    assert cal.add(tp(2026, 2, 13, 17), Duration(minutes=600)) == tp(2026, 3, 2, 10)


def test_ics_event_with_a_duration_instead_of_dtend(tmp_path: Path) -> None:
    days = holidays_of(tmp_path, ics("DTSTART;VALUE=DATE:20261001\nDURATION:P3D\nSUMMARY:Mid-autumn"))
    assert days == {date(2026, 10, 1), date(2026, 10, 2), date(2026, 10, 3)}


# --- timers on a store ------------------------------------------------------------------------


def test_start_makes_a_running_clock_with_its_due_time(settings: Settings, store: Store) -> None:
    ticket_id = new_ticket(store)
    assert sla.start(store, settings, ticket_id, "first_response", TUE_10) == tp(2026, 11, 24, 14)
    assert sla.start(store, settings, ticket_id, "resolution", TUE_10) == tp(2026, 11, 26, 10)  # 2 business days
    assert sla.start(store, settings, ticket_id, "first_response", tp(2026, 11, 24, 11)) is None  # already running
    fr, res = clock(store), clock(store, "resolution")
    assert (fr.state, fr.policy, fr.calendar, fr.total_minutes) == ("running", "standard", "support", 240)
    assert fr.started_at == TUE_10 and fr.due_at == tp(2026, 11, 24, 14) and fr.remaining_minutes is None
    assert res.total_minutes == 2 * 9 * 60
    [row] = store.query("SELECT detail FROM events WHERE kind='sla_started' ORDER BY id LIMIT 1")
    assert json.loads(row["detail"]) == {"timer": "first_response", "policy": "standard",
                                         "due": iso(tp(2026, 11, 24, 14))}


def test_start_outside_hours_counts_from_the_next_opening(settings: Settings, store: Store) -> None:
    ticket_id = new_ticket(store, tp(2026, 11, 27, 20))  # Friday evening
    assert sla.start(store, settings, ticket_id, "first_response", tp(2026, 11, 27, 20)) == tp(2026, 11, 30, 13)
    assert clock(store).total_minutes == 240


def test_no_clock_without_a_target_for_the_priority(settings: Settings, store: Store) -> None:
    ticket_id = new_ticket(store, priority="low", policy="taipei")
    assert sla.start(store, settings, ticket_id, "first_response", TUE_10) is None
    assert sla.start(store, settings, ticket_id, "resolution", TUE_10) is None
    assert clocks(store) == {} and "sla_started" not in event_kinds(store)


def test_the_default_policy_applies_when_the_ticket_has_none(settings: Settings, store: Store) -> None:
    ticket_id = store.create_ticket("SUP", subject="x", requester=CUSTOMER, requester_name="", language="en",
                                    now=TUE_10)
    assert sla.start(store, settings, ticket_id, "first_response", TUE_10) == tp(2026, 11, 24, 14)
    assert clock(store).policy == "standard"


def test_policy_calendar_counts_in_its_own_zone(settings: Settings, store: Store) -> None:
    start = datetime(2026, 11, 24, 15, tzinfo=NEW_YORK)
    ticket_id = new_ticket(store, start, policy="ny")
    due = sla.start(store, settings, ticket_id, "first_response", start)
    assert due == datetime(2026, 11, 25, 11, tzinfo=NEW_YORK)  # 2h Tue, 2h Wed in New York hours
    assert clock(store).calendar == "ny"


def test_answer_stops_the_response_clocks_and_keeps_resolution(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 11))
    c = clocks(store)
    assert c["first_response"].state == "stopped" and c["first_response"].stopped_at == tp(2026, 11, 24, 11)
    assert c["resolution"].state == "running"
    assert "sla_met" in event_kinds(store)


def test_a_late_answer_is_logged_as_late(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 14, 1))
    assert "sla_stopped_late" in event_kinds(store) and "sla_met" not in event_kinds(store)
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 15))  # nothing left to stop
    assert event_kinds(store).count("sla_stopped_late") == 1


def test_pending_pauses_and_open_resumes(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    assert sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 11), actor=AGENT) == "new"
    c = clocks(store)
    assert {k: t.state for k, t in c.items()} == {"first_response": "paused", "resolution": "paused"}
    assert c["first_response"].state == "paused" and c["first_response"].remaining_minutes == 180
    assert c["resolution"].remaining_minutes == 2 * 540 - 60
    assert sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 12), actor=AGENT) == "pending"
    assert clock(store).remaining_minutes == 180  # pausing twice changes nothing

    sla.change_status(store, settings, ticket_id, "open", tp(2026, 11, 24, 16), actor=CUSTOMER)
    c = clocks(store)
    assert c["first_response"].state == "running" and c["first_response"].remaining_minutes is None
    assert c["first_response"].due_at == tp(2026, 11, 25, 10)  # 16-18 today, 09-10 tomorrow
    assert c["first_response"].total_minutes == 240  # the target itself does not change
    assert c["resolution"].due_at == tp(2026, 11, 26, 15)
    assert store.ticket(ticket_id)["status"] == "open"  # type: ignore[index]
    assert {"status_pending", "status_open"} <= set(event_kinds(store))


def test_resolve_stops_everything_and_reopen_starts_next_response_and_resolution(settings: Settings,
                                                                              store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "resolved", tp(2026, 11, 24, 11), actor=AGENT)
    assert sla.timers(store, ticket_id) == []
    sla.change_status(store, settings, ticket_id, "open", tp(2026, 11, 25, 9), actor=CUSTOMER)
    running_now = {t.kind: t.due_at for t in sla.timers(store, ticket_id)}
    # 2 business days from an opening run to the close of the second working day
    assert running_now == {"next_response": tp(2026, 11, 25, 11), "resolution": tp(2026, 11, 26, 18)}
    sla.change_status(store, settings, ticket_id, "closed", tp(2026, 11, 25, 10), actor=AGENT)
    assert sla.timers(store, ticket_id) == []


def test_customer_mail_starts_next_response_only_after_the_first_answer(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.customer_wrote(store, settings, ticket_id, tp(2026, 11, 24, 10, 30))  # before any answer
    assert set(clocks(store)) == {"first_response", "resolution"}

    store.update_ticket(ticket_id, tp(2026, 11, 24, 11), first_response_at=iso(tp(2026, 11, 24, 11)))
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 11))
    sla.customer_wrote(store, settings, ticket_id, tp(2026, 11, 24, 15))
    assert clock(store, "next_response").due_at == tp(2026, 11, 24, 17)
    sla.customer_wrote(store, settings, ticket_id, tp(2026, 11, 24, 16))  # still unanswered: same clock
    assert [t.started_at for t in sla.timers(store, ticket_id) if t.kind == "next_response"] == [tp(2026, 11, 24, 15)]


def test_customer_mail_on_a_pending_ticket_reopens_it_and_resumes(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 11), actor=AGENT)
    sla.customer_wrote(store, settings, ticket_id, tp(2026, 11, 24, 16))
    assert store.ticket(ticket_id)["status"] == "open"  # type: ignore[index]
    assert clock(store).due_at == tp(2026, 11, 25, 10) and clock(store).state == "running"


# --- levels in business time ------------------------------------------------------------------


def test_levels_of_a_four_hour_clock(settings: Settings) -> None:
    timer = running(settings, "standard", "first_response", TUE_10)
    assert [(lv.name, lv.role) for lv in levels(settings, timer)] == [
        ("warn-75", "owner"), ("warn-90", "owner"), ("breach", "owner"), ("escalate-1", "lead"),
        ("escalate-2", "manager")]
    assert level_times(settings, timer, TAIPEI) == {
        "warn-75": tp(2026, 11, 24, 13), "warn-90": tp(2026, 11, 24, 13, 36), "breach": tp(2026, 11, 24, 14),
        "escalate-1": tp(2026, 11, 24, 14, 30), "escalate-2": tp(2026, 11, 24, 15)}


def test_warn_90_is_exactly_at_ninety_percent(settings: Settings) -> None:
    timer = running(settings, "standard", "first_response", TUE_10)
    at = {lv.name: lv.at for lv in levels(settings, timer)}
    assert at["warn-90"] == tp(2026, 11, 24, 13, 36)


def test_escalations_count_business_time_past_closing(settings: Settings) -> None:
    timer = running(settings, "standard", "first_response", tp(2026, 11, 27, 13, 45))  # Friday afternoon
    times = level_times(settings, timer, TAIPEI)
    assert times["breach"] == tp(2026, 11, 27, 17, 45)
    assert times["escalate-1"] == tp(2026, 11, 30, 9, 15) and times["escalate-2"] == tp(2026, 11, 30, 9, 45)


def test_levels_across_the_new_york_spring_forward_weekend(tmp_path: Path) -> None:
    s = make_settings(tmp_path, calendars=CALENDARS, sla_text=SLA.replace("[0.75, 0.9]", "[0.25, 0.75]")
                      .replace("{webhook}", ""))
    timer = running(s, "ny", "first_response", datetime(2026, 3, 6, 15, tzinfo=NEW_YORK))  # Fri 15:00 EST
    assert timer.due_at == datetime(2026, 3, 9, 11, tzinfo=NEW_YORK)  # Mon 11:00 EDT: 2h Friday, 2h Monday
    times = level_times(s, timer, NEW_YORK)
    assert times == {
        "warn-25": datetime(2026, 3, 6, 16, tzinfo=NEW_YORK),  # 3h before the due time: 1h of it on Friday
        "warn-75": datetime(2026, 3, 9, 10, tzinfo=NEW_YORK),
        "breach": datetime(2026, 3, 9, 11, tzinfo=NEW_YORK),
        "escalate-1": datetime(2026, 3, 9, 11, 30, tzinfo=NEW_YORK),
        "escalate-2": datetime(2026, 3, 9, 12, tzinfo=NEW_YORK)}
    assert times["warn-25"].utcoffset() == timedelta(hours=-5) and times["warn-75"].utcoffset() == timedelta(hours=-4)
    assert times["warn-75"].astimezone(UTC) == datetime(2026, 3, 9, 14, tzinfo=UTC)


def test_levels_across_thanksgiving_in_new_york(tmp_path: Path) -> None:
    s = make_settings(tmp_path, calendars=CALENDARS, sla_text=SLA.replace("[0.75, 0.9]", "[0.25, 0.75]")
                      .replace("{webhook}", ""))
    timer = running(s, "ny", "first_response", datetime(2026, 11, 25, 16, tzinfo=NEW_YORK))  # Wed before
    times = level_times(s, timer, NEW_YORK)
    assert timer.due_at == datetime(2026, 11, 27, 12, tzinfo=NEW_YORK)  # 1h Wed, Thursday closed, 3h Fri
    assert times["warn-75"] == datetime(2026, 11, 27, 11, tzinfo=NEW_YORK)
    assert times["escalate-2"] == datetime(2026, 11, 27, 13, tzinfo=NEW_YORK)


def test_a_warning_that_falls_in_a_weekend_is_not_sent_in_the_middle_of_it(settings: Settings) -> None:
    timer = running(settings, "standard", "first_response", tp(2026, 11, 27, 15))  # Fri 15:00, due Mon 10:00
    assert timer.due_at == tp(2026, 11, 30, 10)
    warn_75 = level_times(settings, timer, TAIPEI)["warn-75"]  # 60 business minutes before Mon 10:00
    assert warn_75 in (tp(2026, 11, 27, 18), tp(2026, 11, 30, 9)), warn_75  # Friday's close or Monday's opening


def test_levels_across_the_london_autumn_change(settings: Settings) -> None:
    timer = running(settings, "london", "first_response", datetime(2026, 10, 23, 16, tzinfo=LONDON))  # Fri BST
    assert timer.due_at == datetime(2026, 10, 26, 11, 30, tzinfo=LONDON)  # 1.5h Fri, 2.5h Mon (GMT)
    times = level_times(settings, timer, LONDON)
    assert times["warn-75"] == datetime(2026, 10, 26, 10, 30, tzinfo=LONDON)
    assert times["warn-90"] == datetime(2026, 10, 26, 11, 6, tzinfo=LONDON)
    assert times["escalate-1"] == datetime(2026, 10, 26, 12, tzinfo=LONDON)
    assert times["escalate-1"].astimezone(UTC) == datetime(2026, 10, 26, 12, tzinfo=UTC)  # GMT = UTC
    assert timer.total_minutes == 240  # the extra wall-clock hour of the weekend is not working time


def test_levels_on_a_taipei_make_up_saturday(settings: Settings) -> None:
    timer = running(settings, "taipei", "first_response", tp(2026, 2, 6, 16))  # Fri 16:00, 8h target
    assert timer.due_at == tp(2026, 2, 7, 16)  # 2h Friday, then the make-up Saturday 09-12, 13-16
    assert level_times(settings, timer, TAIPEI) == {
        "warn-75": tp(2026, 2, 7, 14), "warn-90": tp(2026, 2, 7, 15, 12), "breach": tp(2026, 2, 7, 16),
        "escalate-1": tp(2026, 2, 7, 16, 30), "escalate-2": tp(2026, 2, 7, 17)}


def test_levels_across_the_lunar_new_year_week_from_the_ics_file(settings: Settings) -> None:
    timer = running(settings, "taipei", "first_response", tp(2026, 2, 13, 17), priority="urgent")  # Fri, 4h
    assert timer.due_at == tp(2026, 2, 23, 12)  # 1h Friday, the holiday week, 3h on Mon 23 Feb
    times = level_times(settings, timer, TAIPEI)
    assert times["warn-75"] == tp(2026, 2, 23, 11)
    assert times["escalate-1"] == tp(2026, 2, 23, 13, 30)  # the lunch hour is not counted
    assert times["escalate-2"] == tp(2026, 2, 23, 14)


# --- pause and resume move the due time by exactly the paused business time -----------------------


@pytest.mark.parametrize("policy, start, pause_at, resume_at, new_due", [
    ("standard", TUE_10, tp(2026, 11, 24, 11), tp(2026, 11, 24, 16), tp(2026, 11, 25, 10)),
    ("standard", TUE_10, tp(2026, 11, 24, 11), tp(2026, 11, 27, 16), tp(2026, 11, 30, 10)),  # over a weekend
    ("standard", TUE_10, tp(2026, 11, 24, 13, 59), tp(2026, 11, 28, 3), tp(2026, 11, 30, 9, 1)),  # resumed Sat
    ("ny", datetime(2026, 3, 6, 15, tzinfo=NEW_YORK), datetime(2026, 3, 6, 16, tzinfo=NEW_YORK),
     datetime(2026, 3, 9, 10, tzinfo=NEW_YORK), datetime(2026, 3, 9, 13, tzinfo=NEW_YORK)),  # over the DST change
    ("ny", datetime(2026, 11, 25, 9, tzinfo=NEW_YORK), datetime(2026, 11, 25, 10, tzinfo=NEW_YORK),
     datetime(2026, 11, 25, 15, tzinfo=NEW_YORK), datetime(2026, 11, 27, 10, tzinfo=NEW_YORK)),  # Thanksgiving
    ("taipei", tp(2026, 2, 13, 10), tp(2026, 2, 13, 11), tp(2026, 2, 23, 9), tp(2026, 2, 23, 17)),  # 7h left
])
def test_pause_and_resume_move_the_due_time_by_the_paused_business_time(
        settings: Settings, store: Store, policy: str, start: datetime, pause_at: datetime,
        resume_at: datetime, new_due: datetime) -> None:
    ticket_id = new_ticket(store, start, policy=policy)
    old_due = sla.start(store, settings, ticket_id, "first_response", start)
    assert old_due is not None
    sla.pause(store, settings, ticket_id, pause_at)
    sla.resume(store, settings, ticket_id, resume_at)
    timer = clock(store)
    calendar = settings.calendars[timer.calendar]
    assert timer.due_at == new_due
    assert calendar.business_minutes_between(old_due, new_due) == calendar.business_minutes_between(pause_at,
                                                                                                    resume_at)
    assert calendar.business_minutes_between(resume_at, new_due) == calendar.business_minutes_between(pause_at,
                                                                                                      old_due)


def test_levels_follow_the_resumed_due_time(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 11), actor=AGENT)
    sla.change_status(store, settings, ticket_id, "open", tp(2026, 11, 24, 16), actor=CUSTOMER)
    times = level_times(settings, clock(store), TAIPEI)
    assert times["warn-75"] == tp(2026, 11, 24, 18)  # 75% of 4h is used at today's closing time
    assert times["warn-90"] == tp(2026, 11, 25, 9, 36) and times["breach"] == tp(2026, 11, 25, 10)
    assert times["escalate-1"] == tp(2026, 11, 25, 10, 30)


def test_pause_and_resume_are_exact_to_the_second(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.pause(store, settings, ticket_id, tp(2026, 11, 24, 11, 0, 30))
    sla.resume(store, settings, ticket_id, tp(2026, 11, 24, 12))
    assert clock(store).due_at == tp(2026, 11, 24, 14, 59, 30)  # 179.5 minutes were left


def test_paused_clocks_give_no_alert(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 11), actor=AGENT)
    assert check(settings, store, tp(2026, 11, 24, 17)) == 0 and alerts(store) == []


def test_stopped_clocks_give_no_alert(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 11))
    assert check(settings, store, tp(2026, 11, 24, 17)) == 0 and alerts(store) == []


def test_a_clock_breached_before_pending_is_not_met_when_resolved(settings: Settings, store: Store) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 15), actor=AGENT)  # due 14:00
    sla.change_status(store, settings, ticket_id, "resolved", tp(2026, 11, 24, 16), actor=AGENT)
    rows = store.query("SELECT kind, detail FROM events WHERE kind IN ('sla_met', 'sla_stopped_late') ORDER BY id")
    kinds = {json.loads(r["detail"])["timer"]: r["kind"] for r in rows}
    assert kinds == {"first_response": "sla_stopped_late", "resolution": "sla_met"}


# --- the watch: once per level, superseded after downtime -------------------------------------------


def test_each_level_is_sent_once_across_restarts(settings: Settings, store: Store) -> None:
    opened(store, settings)
    steps = [(tp(2026, 11, 24, 12, 59), []), (tp(2026, 11, 24, 13), ["warn-75"]), (tp(2026, 11, 24, 13, 35), []),
             (tp(2026, 11, 24, 13, 36, 1), ["warn-90"]), (tp(2026, 11, 24, 14), ["breach"]),
             (tp(2026, 11, 24, 14, 29), []), (tp(2026, 11, 24, 14, 30), ["escalate-1"]),
             (tp(2026, 11, 24, 15), ["escalate-2"])]
    seen: list[str] = []
    for now, expected in steps:
        assert check(settings, store, now) == len(expected), now
        assert check(settings, store, now) == 0  # a restart at the same instant sends nothing again
        seen += expected
        assert [a["level"] for a in alerts(store)] == seen
    assert all(a["sent"] == 1 and a["kind"] == "first_response" for a in alerts(store))
    assert [s.split(":")[0] for s in subjects(store)] == [
        "[SUP-1] SLA warn 75", "[SUP-1] SLA warn 90", "[SUP-1] SLA breach", "[SUP-1] SLA escalate 1",
        "[SUP-1] SLA escalate 2"]
    assert [json.loads(r["recipients"]) for r in sla_mail(store)] == [[AGENT], [AGENT], [AGENT], [LEAD], [MANAGER]]
    assert event_kinds(store).count("sla_alert") == 5


def test_alert_mail_says_what_is_due_and_for_whom(settings: Settings, store: Store) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 13))
    [row] = sla_mail(store)
    msg = email.message_from_bytes(row["raw"], policy=email.policy.default)
    assert msg["Subject"] == "[SUP-1] SLA warn 75: first response due Tue 24 Nov, 14:00 Taipei time " \
                             "(1h 00m of working time left)"
    assert msg["To"] == AGENT and msg["Auto-Submitted"] == "auto-generated" and msg["X-Inboxd-Ticket"] == "SUP-1"
    body = msg.get_content()
    for line in ("Ticket:    SUP-1  Order 1042 never arrived", f"Customer:  {CUSTOMER}", "Priority:  normal",
                 f"Owner:     {AGENT}", "Team:      support", "Policy:    standard"):
        assert line in body
    assert row["mail_from"] == "support@example.com" and row["ticket_id"] == "SUP-1"


def test_after_downtime_only_the_most_severe_warning_is_sent(settings: Settings, store: Store) -> None:
    opened(store, settings)
    check(settings, store, TUE_10)
    assert check(settings, store, tp(2026, 11, 24, 14, 5)) == 1
    assert [(a["level"], a["sent"], json.loads(a["recipients"])) for a in alerts(store)] == [
        ("warn-75", 0, []), ("warn-90", 0, []), ("breach", 1, [AGENT])]
    assert len(sla_mail(store)) == 1 and "SLA breach" in subjects(store)[0]
    assert check(settings, store, tp(2026, 11, 24, 14, 5)) == 0
    assert check(settings, store, tp(2026, 11, 24, 15)) == 2  # both escalations passed since: both sent
    assert [a["level"] for a in alerts(store)][-2:] == ["escalate-1", "escalate-2"]


def test_downtime_past_escalations_sends_the_breach_and_every_escalation(settings: Settings, store: Store) -> None:
    opened(store, settings)
    assert check(settings, store, tp(2026, 11, 24, 16)) == 3
    assert [(a["level"], a["sent"]) for a in alerts(store)] == [
        ("warn-75", 0), ("warn-90", 0), ("breach", 1), ("escalate-1", 1), ("escalate-2", 1)]
    assert [json.loads(r["recipients"]) for r in sla_mail(store)] == [[AGENT], [LEAD], [MANAGER]]


def test_a_warning_already_sent_is_not_superseded_later(settings: Settings, store: Store) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 13, 10))
    check(settings, store, tp(2026, 11, 24, 14, 10))  # warn-90 and breach passed while down
    assert [(a["level"], a["sent"]) for a in alerts(store)] == [("warn-75", 1), ("warn-90", 0), ("breach", 1)]


def test_each_clock_has_its_own_levels(settings: Settings, store: Store) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 26, 10))  # first response and resolution both overdue by now
    got = {(a["kind"], a["level"]) for a in alerts(store) if a["sent"]}
    assert ("first_response", "escalate-2") in got and ("resolution", "breach") in got


def test_duplicate_warn_fractions_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        make_settings(tmp_path, sla_text=SLA.replace("[0.75, 0.9]", "[0.9, 0.75, 0.9]").replace("{webhook}", ""))
    assert "warn_at lists the same percentage twice" in info.value.message


# --- who gets an alert --------------------------------------------------------------------------


@pytest.mark.parametrize("agents, owner, at, expected", [
    (agents_toml(), AGENT, tp(2026, 11, 24, 13), [AGENT]),  # owner on shift
    (agents_toml("09:00-12:00"), AGENT, tp(2026, 11, 24, 13), [LEAD]),  # owner off shift: lead on shift
    (agents_toml(away="2026-11-30"), AGENT, tp(2026, 11, 24, 13), [LEAD]),  # owner away
    (agents_toml("09:00-12:00", "14:00-18:00"), AGENT, tp(2026, 11, 24, 13), [AGENT]),  # both off: the owner
    (agents_toml("09:00-12:00", lead=False), AGENT, tp(2026, 11, 24, 13), [AGENT]),  # no lead
    (agents_toml(), None, tp(2026, 11, 24, 13), [LEAD]),  # on the team queue: the lead
    (agents_toml(lead_hours="14:00-18:00"), None, tp(2026, 11, 24, 13), [LEAD]),  # even off shift
    (agents_toml(), "someone@example.com", tp(2026, 11, 24, 13), ["someone@example.com"]),  # not in the directory
], ids=["owner-on-shift", "owner-off-shift", "owner-away", "both-off-shift", "no-lead", "queue", "queue-lead-off",
        "owner-unknown"])
def test_warning_recipients(tmp_path: Path, agents: str, owner: str | None, at: datetime,
                            expected: list[str]) -> None:
    s = make_settings(tmp_path, agents=agents)
    st = Store(s.database)
    try:
        opened(st, s, owner=owner)
        check(s, st, at)
        [row] = sla_mail(st)
        assert json.loads(row["recipients"]) == expected
        [alert] = alerts(st)
        assert json.loads(alert["recipients"]) == expected
    finally:
        st.close()


def test_nobody_to_warn_records_the_level_without_mail(settings: Settings, store: Store) -> None:
    opened(store, settings, owner=None, team=None)
    assert check(settings, store, tp(2026, 11, 24, 13)) == 1
    assert sla_mail(store) == [] and [(a["level"], a["recipients"]) for a in alerts(store)] == [("warn-75", "[]")]


def test_escalation_without_a_lead_does_not_tell_the_owner_of_the_same_breach_twice(tmp_path: Path) -> None:
    s = make_settings(tmp_path, agents=agents_toml(lead=False))
    st = Store(s.database)
    try:
        opened(st, s)
        check(s, st, tp(2026, 11, 24, 15))
        # breach to the owner; escalate-1 (the lead's, who is missing) would be the owner again: not sent
        assert [json.loads(r["recipients"]) for r in sla_mail(st)] == [[AGENT], [MANAGER]]
        levels = {r["level"]: json.loads(r["recipients"]) for r in st.query("SELECT level, recipients FROM sla_alerts")}
        assert levels["escalate-1"] == [] and levels["escalate-2"] == [MANAGER]
    finally:
        st.close()


def test_escalation_to_the_lead_ignores_shifts(tmp_path: Path) -> None:
    s = make_settings(tmp_path, agents=agents_toml(lead_hours="09:00-10:00"))
    st = Store(s.database)
    try:
        opened(st, s)
        check(s, st, tp(2026, 11, 24, 14))
        check(s, st, tp(2026, 11, 24, 14, 30))
        assert json.loads(sla_mail(st)[-1]["recipients"]) == [LEAD]
    finally:
        st.close()


# --- webhook ------------------------------------------------------------------------------------


def test_webhook_payload_is_queued_with_each_alert(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/hooks/sla"
    s = make_settings(tmp_path, webhook=url)
    st = Store(s.database)
    try:
        opened(st, s)
        check(s, st, tp(2026, 11, 24, 14, 5))
        [hook] = st.query("SELECT * FROM outbox WHERE kind='webhook'")
        assert json.loads(hook["recipients"]) == [url] and hook["mail_from"] == "" and hook["state"] == "pending"
        payload = json.loads(hook["raw"])
        assert payload == {
            "text": subjects(st)[0], "ticket": "SUP-1", "timer": "first_response", "level": "breach",
            "due": iso(tp(2026, 11, 24, 14)), "owner": AGENT, "team": "support", "priority": "normal",
            "recipients": [AGENT]}
        assert payload["text"].startswith("[SUP-1] SLA breach: first response is overdue")
        check(s, st, tp(2026, 11, 24, 15))
        assert len(st.query("SELECT 1 FROM outbox WHERE kind='webhook'")) == 3
        assert len({r["message_id"] for r in st.query("SELECT message_id FROM outbox")}) == \
            len(st.query("SELECT 1 FROM outbox"))
    finally:
        st.close()


def test_no_webhook_without_a_url(settings: Settings, store: Store) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 15))
    assert store.query("SELECT 1 FROM outbox WHERE kind='webhook'") == []


class HookServer:
    """A local HTTP endpoint answering each POST with the next status of ``statuses`` (200 once empty)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.received.append((self.path, dict(self.headers), body))
                status = hook.statuses.pop(0) if hook.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/sla"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def hook(monkeypatch: pytest.MonkeyPatch) -> Iterator[HookServer]:
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)  # urllib would send even a loopback POST through a configured proxy
    server = HookServer()
    yield server
    server.close()


def send(settings: Settings, store: Store, now: datetime) -> Any:
    return asyncio.run(Sender(settings.smtp, store, lambda: now).send_due())


def webhook_row(store: Store) -> dict[str, Any]:
    [row] = store.query("SELECT * FROM outbox WHERE kind='webhook'")
    return row


def test_webhook_is_posted_as_json(tmp_path: Path, hook: HookServer) -> None:
    s = make_settings(tmp_path, webhook=hook.url)
    st = Store(s.database)
    try:
        opened(st, s, owner=None, team=None)  # nobody to mail: only the webhook is sent, no SMTP needed
        check(s, st, tp(2026, 11, 24, 14))
        report = send(s, st, tp(2026, 11, 24, 14))
        assert (report.sent, report.retrying, report.failed) == (1, 0, 0)
        [(path, headers, body)] = hook.received
        assert path == "/hooks/sla" and headers["Content-Type"] == "application/json"
        assert headers["User-Agent"] == "inboxd"
        payload = json.loads(body)
        assert "[SUP-1]" in payload["text"] and payload["level"] == "breach" and payload["recipients"] == []
        row = webhook_row(st)
        assert row["state"] == "sent" and row["attempts"] == 1 and row["sent_at"] == iso(tp(2026, 11, 24, 14))
        assert send(s, st, tp(2026, 11, 24, 15)).sent == 0 and len(hook.received) == 1  # never posted twice
    finally:
        st.close()


@pytest.mark.parametrize("status", [500, 503, 429, 408])
def test_webhook_server_error_is_retried_later(tmp_path: Path, hook: HookServer, status: int) -> None:
    s = make_settings(tmp_path, webhook=hook.url)
    st = Store(s.database)
    try:
        opened(st, s, owner=None, team=None)
        now = tp(2026, 11, 24, 14)
        check(s, st, now)
        hook.statuses = [status]
        report = send(s, st, now)
        assert (report.sent, report.retrying, report.failed) == (0, 1, 0)
        row = webhook_row(st)
        assert row["state"] == "pending" and row["attempts"] == 1
        assert row["last_error"] == f"webhook answered HTTP {status}"
        assert row["next_attempt_at"] == iso(now + timedelta(seconds=30))  # [smtp] retry_delay
        assert send(s, st, now + timedelta(seconds=10)).sent == 0 and len(hook.received) == 1  # not yet
        assert send(s, st, now + timedelta(seconds=30)).sent == 1
        assert webhook_row(st)["state"] == "sent" and len(hook.received) == 2
        assert hook.received[0][2] == hook.received[1][2]  # the same payload again
    finally:
        st.close()


@pytest.mark.parametrize("status", [404, 400, 403])
def test_webhook_refused_is_failed_not_retried(tmp_path: Path, hook: HookServer, status: int) -> None:
    s = make_settings(tmp_path, webhook=hook.url)
    st = Store(s.database)
    try:
        opened(st, s, owner=None, team=None)
        check(s, st, tp(2026, 11, 24, 14))
        hook.statuses = [status]
        report = send(s, st, tp(2026, 11, 24, 14))
        assert (report.sent, report.retrying, report.failed) == (0, 0, 1)
        row = webhook_row(st)
        assert row["state"] == "failed" and row["last_error"] == f"webhook refused: HTTP {status}"
        assert send(s, st, tp(2026, 11, 25, 14)).sent == 0 and len(hook.received) == 1
    finally:
        st.close()


def test_webhook_nobody_listening_is_retried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)
    with socket.socket() as sock:  # a port nobody listens on: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    s = make_settings(tmp_path, webhook=f"http://127.0.0.1:{port}/hooks/sla")
    st = Store(s.database)
    try:
        opened(st, s, owner=None, team=None)
        check(s, st, tp(2026, 11, 24, 14))
        report = send(s, st, tp(2026, 11, 24, 14))
        assert (report.sent, report.retrying, report.failed) == (0, 1, 0)
        row = webhook_row(st)
        assert row["state"] == "pending" and row["last_error"].startswith("webhook URLError")
    finally:
        st.close()


# --- inboxd sla show / at-risk ------------------------------------------------------------------


def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch, now: datetime, *args: str) -> Any:
    monkeypatch.setattr("inboxd.cli.sla.utcnow", lambda: now)
    return CliRunner().invoke(main, ["--config", str(settings.path), "sla", *args])


def test_sla_show_text(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 13, 10))
    result = cli(settings, monkeypatch, tp(2026, 11, 24, 13, 10), "show", "sup-1")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "SUP-1 [new] priority normal, policy standard",
        "  first response  running  due Tue 24 Nov, 14:00 Taipei time, 0h50m working time left  [warn-75]",
        "  resolution      running  due Thu 26 Nov, 10:00 Taipei time, 14h50m working time left  [ok]",
        f"  alert warn-75     2026-11-24T05:10  to {AGENT}",
    ]


def test_sla_show_json_after_downtime_shows_superseded_warnings(settings: Settings, store: Store,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 14, 5))
    result = cli(settings, monkeypatch, tp(2026, 11, 24, 14, 5), "show", "SUP-1", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ticket"] == "SUP-1" and data["status"] == "new"
    fr, res = data["clocks"]
    assert datetime.fromisoformat(fr.pop("started_at")) == TUE_10
    assert datetime.fromisoformat(fr.pop("due_at")) == tp(2026, 11, 24, 14)
    assert fr == {"timer": "first_response", "policy": "standard", "state": "running",
                  "business_minutes_left": -5.0, "used": 1.0, "level": "breach"}
    assert res["timer"] == "resolution" and res["level"] == "ok" and res["used"] == round(245 / 1080, 3)
    assert [(a["level"], a["sent"]) for a in data["alerts"]] == [("warn-75", 0), ("warn-90", 0), ("breach", 1)]
    assert all(a["at"] == iso(tp(2026, 11, 24, 14, 5)) for a in data["alerts"])

    text = cli(settings, monkeypatch, tp(2026, 11, 24, 14, 5), "show", "SUP-1").output
    assert "  alert warn-75     2026-11-24T06:05  (superseded)" in text
    assert f"  alert breach      2026-11-24T06:05  to {AGENT}" in text
    assert "-0h05m working time left  [breach]" in text


def test_sla_show_json_recipients_are_a_list(settings: Settings, store: Store,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings)
    check(settings, store, tp(2026, 11, 24, 14, 5))
    data = json.loads(cli(settings, monkeypatch, tp(2026, 11, 24, 14, 5), "show", "SUP-1", "--json").output)
    assert [a["recipients"] for a in data["alerts"]] == [[], [], [AGENT]]


def test_sla_show_paused_and_stopped_clocks(settings: Settings, store: Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    ticket_id = opened(store, settings)
    sla.team_answered(store, ticket_id, tp(2026, 11, 24, 11))
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 12), actor=AGENT)
    data = json.loads(cli(settings, monkeypatch, tp(2026, 11, 24, 15), "show", "SUP-1", "--json").output)
    fr, res = data["clocks"]
    assert (fr["state"], fr["level"]) == ("stopped", "met")
    assert datetime.fromisoformat(fr["stopped_at"]) == tp(2026, 11, 24, 11)
    assert (res["state"], res["level"], res["due_at"]) == ("paused", "paused (waiting on the customer)", None)
    assert res["business_minutes_left"] == 1080 - 120
    text = cli(settings, monkeypatch, tp(2026, 11, 24, 15), "show", "SUP-1").output.splitlines()
    assert text[1] == "  first response  stopped  due Tue 24 Nov, 14:00 Taipei time  [met]"
    assert text[2] == "  resolution      paused   due -, 16h00m working time left  [paused (waiting on the customer)]"


def test_sla_show_a_clock_resolved_while_pending_is_met(settings: Settings, store: Store,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    ticket_id = opened(store, settings)
    sla.change_status(store, settings, ticket_id, "pending", tp(2026, 11, 24, 11), actor=AGENT)
    sla.change_status(store, settings, ticket_id, "resolved", tp(2026, 11, 24, 12), actor=AGENT)
    assert event_kinds(store).count("sla_met") == 2
    data = json.loads(cli(settings, monkeypatch, tp(2026, 11, 24, 15), "show", "SUP-1", "--json").output)
    assert [c["level"] for c in data["clocks"]] == ["met", "met"]


def test_sla_show_without_clocks_and_errors(settings: Settings, store: Store,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    new_ticket(store, policy="taipei", priority="low")
    result = cli(settings, monkeypatch, TUE_10, "show", "SUP-1")
    assert result.exit_code == 0
    assert result.output.splitlines() == ["SUP-1 [new] priority low, policy taipei",
                                          "  no SLA clocks (the policy sets no target for this priority)"]
    missing = cli(settings, monkeypatch, TUE_10, "show", "SUP-99")
    assert missing.exit_code == 1 and "No ticket SUP-99." in missing.output


def test_sla_commands_need_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = make_settings(tmp_path)
    for args in (("show", "SUP-1"), ("at-risk",)):
        result = cli(s, monkeypatch, TUE_10, *args)
        assert result.exit_code == 1 and "No database yet" in result.output


def test_sla_commands_report_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_config(tmp_path, extra='\n[sla.policies.vip]\nfirst_response = "soon"\n')
    monkeypatch.setattr("inboxd.cli.sla.utcnow", lambda: TUE_10)
    result = CliRunner().invoke(main, ["--config", str(path), "sla", "at-risk"])
    assert result.exit_code == 2 and f"{path}:{line_of(path, 'soon')}:" in result.output


def test_sla_at_risk(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings, subject="Order 1042 never arrived")  # SUP-1: at 13:10, past warn-75
    opened(store, settings, tp(2026, 11, 24, 9), subject="Refund please", owner=None)  # SUP-2: overdue at 13:10
    opened(store, settings, tp(2026, 11, 24, 13), subject="Just a question")  # SUP-3: fine
    now = tp(2026, 11, 24, 13, 10)
    data = json.loads(cli(settings, monkeypatch, now, "at-risk", "--json").output)
    assert [(r["ticket"], r["timer"], r["level"]) for r in data] == [
        ("SUP-2", "first_response", "breach"), ("SUP-1", "first_response", "warn-75")]  # soonest due first
    assert data[0]["owner"] is None and data[0]["subject"] == "Refund please" and data[0]["priority"] == "normal"
    assert data[0]["business_minutes_left"] == -10.0 and data[1]["business_minutes_left"] == 50.0
    text = cli(settings, monkeypatch, now, "at-risk").output.splitlines()
    assert text[0].split() == ["SUP-2", "first", "response", "due", "Tue", "24", "Nov,", "13:00", "Taipei", "time",
                               "-0h10m", "[breach]", "(unassigned)", "Refund", "please"]
    assert text[1].startswith("SUP-1     first response  due Tue 24 Nov, 14:00 Taipei time") and AGENT in text[1]
    assert len(text) == 2


def test_sla_at_risk_with_nothing_at_risk(settings: Settings, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    opened(store, settings)
    assert cli(settings, monkeypatch, TUE_10, "at-risk").output == "Nothing at risk.\n"
    assert json.loads(cli(settings, monkeypatch, TUE_10, "at-risk", "--json").output) == []


def test_alert_times_are_placed_once_and_replaced_when_the_settings_change(settings: Settings, store: Store,
                                                                           tmp_path: Path) -> None:
    opened(store, settings)
    assert check(settings, store, tp(2026, 11, 24, 10, 5)) == 0
    placed = {r["kind"]: r["next_alert_at"] for r in store.query("SELECT kind, next_alert_at FROM sla_timers")}
    assert seconds(datetime.fromisoformat(placed["first_response"])) == tp(2026, 11, 24, 13)  # warn-75 of 10-14
    (tmp_path / "other").mkdir()
    changed = make_settings(tmp_path / "other", calendars=CALENDARS, sla_text=SLA.replace("[0.75, 0.9]", "[0.5]")
                            .replace("{webhook}", ""))
    Watch(changed, store, Routing(changed))  # a restart with other warning settings forgets the placements
    assert {r["next_alert_at"] for r in store.query("SELECT next_alert_at FROM sla_timers")} == {None}


# --- the watch over many clocks: a page at a time, the write lock free while placing -----------------------------


def test_the_watch_pages_clocks_in_due_order_and_commits_per_page(settings: Settings, store: Store,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import inboxd.sla.watch as watch_module

    monkeypatch.setattr(watch_module, "PAGE", 3)
    for minute in (50, 10, 40, 0, 30, 20, 5):  # 7 tickets, 14 clocks, started out of due order
        opened(store, settings, TUE_10 + timedelta(minutes=minute))
    seen_pages: list[list[str]] = []
    real_check_page = Watch._check_page

    def check_page(self: Watch, timers: list[Timer], now: datetime) -> int:
        seen_pages.append([iso(t.due_at) for t in timers if t.due_at])
        other = Store(settings.database)
        other.conn.execute("PRAGMA busy_timeout=0")  # between pages another thread writes at once
        with other.tx():
            other.conn.execute("INSERT INTO meta (key, value) VALUES ('probe', ?) ON CONFLICT (key) DO UPDATE "
                               "SET value=excluded.value", (str(len(seen_pages)),))
        other.close()
        return real_check_page(self, timers, now)

    monkeypatch.setattr(Watch, "_check_page", check_page)
    assert check(settings, store, tp(2026, 11, 24, 16)) == 7 * 3  # each first response: breach, esc-1, esc-2
    assert [len(p) for p in seen_pages] == [3, 3, 3, 3, 2]
    dues = [due for page in seen_pages for due in page]
    assert dues == sorted(dues) and len(dues) == 14
    assert {r["next_alert_at"] is not None for r in store.query("SELECT next_alert_at FROM sla_timers")} == {True}
    sent = [(a["level"], a["sent"]) for a in alerts(store)]
    assert sent.count(("breach", 1)) == sent.count(("escalate-2", 1)) == sent.count(("warn-75", 0)) == 7
    seen_pages.clear()
    assert check(settings, store, tp(2026, 11, 24, 16, 1)) == 0 and seen_pages == []  # nothing due: no page


def test_placing_alert_times_holds_no_write_lock(settings: Settings, store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import inboxd.sla.watch as watch_module

    for minute in range(5):
        opened(store, settings, TUE_10 + timedelta(minutes=minute))
    real_levels, calls = watch_module.levels, []

    def levels_checked(s: Settings, timer: Timer) -> list[Any]:
        assert not store.conn.in_transaction
        calls.append(timer.id)
        return real_levels(s, timer)

    monkeypatch.setattr(watch_module, "levels", levels_checked)
    assert check(settings, store, tp(2026, 11, 24, 13, 30)) == 5  # warn-75 of each first response
    assert len(calls) == 10


def test_a_failing_clock_keeps_the_alerts_of_the_clocks_before_it(settings: Settings, store: Store,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    for minute in range(4):
        opened(store, settings, TUE_10 + timedelta(minutes=minute))
    real_alert = Watch._alert

    def alert(self: Watch, timer: Timer, level: Any, now: datetime) -> None:
        if timer.ticket_id == "SUP-3":
            raise RuntimeError("template broken")
        real_alert(self, timer, level, now)

    monkeypatch.setattr(Watch, "_alert", alert)
    with pytest.raises(RuntimeError, match="template broken"):
        check(settings, store, tp(2026, 11, 24, 13, 30))
    assert [r["ticket_id"] for r in store.query("SELECT ticket_id FROM sla_alerts ORDER BY id")] == ["SUP-1", "SUP-2"]
    monkeypatch.setattr(Watch, "_alert", real_alert)
    assert check(settings, store, tp(2026, 11, 24, 13, 30)) == 2  # the next check sends the rest, once
    assert sorted(r["ticket_id"] for r in store.query("SELECT ticket_id FROM sla_alerts")) == [
        "SUP-1", "SUP-2", "SUP-3", "SUP-4"]
