"""SLA watch: warn before a clock runs out, alert when it does, escalate after.

Levels per clock: a warning at each ``warn_at`` fraction of the target, a
breach at the due time, then each escalation step a further business-time delay
after the breach. Every level is recorded in ``sla_alerts`` in the same
transaction that queues its mail, and a UNIQUE constraint makes a level fire at
most once per clock, across restarts. After downtime, only the most severe of
the warning/breach levels that passed is sent (the others are recorded as
superseded), and every escalation step that passed is sent.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from inboxd.config import Settings
from inboxd.errors import StoreBusy
from inboxd.log import log
from inboxd.reply.alerts import sla_alert
from inboxd.reply.notify import internal_mail
from inboxd.routing.assign import Routing
from inboxd.sla.businesstime import BusinessCalendar, format_due
from inboxd.sla.clocks import Timer
from inboxd.store.base import iso
from inboxd.store.sqlite import Store
from inboxd.store.tickets import TicketRow

logger = logging.getLogger("inboxd.watch")
PAGE = 100  # clocks read, placed and committed together by one check
MICROSECONDS_PER_MINUTE = 60_000_000  # business_minutes_between divides whole microseconds by this


@dataclass(frozen=True)
class Level:
    name: str  # "warn-75", "breach", "escalate-1", ...
    at: datetime
    role: str  # who it goes to: "owner", "lead" or "manager"


def levels(settings: Settings, timer: Timer) -> list[Level]:
    """Every alert level of a running clock, in time order."""
    assert timer.due_at is not None
    calendar = settings.calendars[timer.calendar]
    out = []
    for fraction in settings.sla.warn_at:
        # the moment the given share of the target is used: that much business time before the due time
        left = round(timer.total_minutes * (1 - fraction), 6)  # 0.1 * 240 is 23.999999999999996
        out.append(Level(f"warn-{round(fraction * 100)}", _before(calendar, timer.due_at, left), "owner"))
    out.append(Level("breach", timer.due_at, "owner"))
    for number, (delay, role) in enumerate(settings.sla.escalation, start=1):
        out.append(Level(f"escalate-{number}", calendar.add(timer.due_at, delay), role))
    return out


def _before(calendar: BusinessCalendar, due: datetime, minutes: float) -> datetime:
    """The earliest instant with at most ``minutes`` of business time left before ``due``.

    ``minutes`` is compared as ``business_minutes_between`` measures (a float of whole
    microseconds), so this is exactly the instant a bisection over that function finds,
    walked back once over the calendar's openings instead of some 50 measurements.
    """
    return calendar.subtract_time(due, _most_time_within(minutes))


def _most_time_within(minutes: float) -> timedelta:
    """The longest whole-microsecond span that measures at most ``minutes`` (negative when none does)."""
    micro = math.floor(minutes * MICROSECONDS_PER_MINUTE)  # the float product may be a microsecond off
    while (micro + 1) / MICROSECONDS_PER_MINUTE <= minutes:
        micro += 1
    while micro >= 0 and micro / MICROSECONDS_PER_MINUTE > minutes:
        micro -= 1
    return timedelta(microseconds=micro)


class Watch:
    def __init__(self, settings: Settings, store: Store, routing: Routing) -> None:
        self.settings, self.store, self.routing = settings, store, routing
        self._forget_placements_if_settings_changed()

    def _forget_placements_if_settings_changed(self) -> None:
        """Alert times were placed with the warning and escalation settings of their day."""
        sla = self.settings.sla
        digest = repr((sla.warn_at, [(d.minutes, d.days, role) for d, role in sla.escalation],
                       sorted((n, repr(sorted(c.weekly.items())), sorted(c.holidays))
                              for n, c in self.settings.calendars.items())))
        self.store.sla.forget_placements_unless(digest)

    def check(self, now: datetime) -> int:
        """Queue every alert whose time has come; returns how many were queued.

        A page of clocks at a time (``PAGE``): their alert times are placed first, without
        holding the write lock, then the page is written in one transaction, so other
        threads write between pages and a backlog costs one commit per page, not per clock.
        """
        queued, after = 0, ("", 0)
        while page := self.store.sla.running_with_alert_due(now, after=after, limit=PAGE):
            after = (page[-1]["due_at"], page[-1]["id"])
            queued += self._check_page([self._timer(row) for row in page], now)
        return queued

    def _timer(self, row: dict[str, Any]) -> Timer:
        timer = Timer.from_row(row)
        if timer.calendar not in self.settings.calendars:  # renamed in the configuration since it started
            log(logger, logging.WARNING, "sla_calendar_missing", ticket=timer.ticket_id, calendar=timer.calendar,
                note="using the [support] calendar for this clock")
            timer = replace(timer, calendar="support")
        return timer

    def _check_page(self, timers: list[Timer], now: datetime) -> int:
        done = self.store.sla.levels_done([timer.id for timer in timers])
        plans = [(timer, self._plan(timer, done[timer.id], now)) for timer in timers]
        try:
            with self.store.tx():
                return sum(self._apply(timer, plan, now) for timer, plan in plans)
        except StoreBusy:
            raise
        except Exception as exc:  # one clock failed and undid its page: redo the page a clock at a time
            log(logger, logging.WARNING, "sla_page_retried_alone", clocks=len(plans), error=type(exc).__name__)
            queued = 0
            for timer, plan in plans:  # the clocks before the failing one keep their alerts; it raises again
                with self.store.tx():
                    queued += self._apply(timer, plan, now)
            return queued

    def _plan(self, timer: Timer, done: set[str], now: datetime) -> tuple[datetime | None, list[Level], list[Level]]:
        """What a clock needs now: its next alert time, the levels to record as superseded, the levels to send."""
        pending = [lv for lv in levels(self.settings, timer) if lv.name not in done]
        passed = [lv for lv in pending if lv.at <= now]
        upcoming = min((lv.at for lv in pending if lv.at > now), default=None)
        warnings = [lv for lv in passed if not lv.name.startswith("escalate")]
        send = ([warnings[-1]] if warnings else []) + [lv for lv in passed if lv.name.startswith("escalate")]
        return upcoming, warnings[:-1], send

    def _apply(self, timer: Timer, plan: tuple[datetime | None, list[Level], list[Level]], now: datetime) -> int:
        store = self.store
        upcoming, superseded, send = plan
        with store.tx():
            store.sla.set_next_alert(timer.id, upcoming)
            for level in superseded:  # passed while inboxd was down, outranked by a later level
                store.sla.record_superseded(timer.ticket_id, timer.id, level.name, now)
            for level in send:
                self._alert(timer, level, now)
        return len(send)

    def _recipients(self, ticket: TicketRow, role: str, now: datetime) -> list[str]:
        """Who gets an alert; an owner off shift or away is replaced by the team lead on shift."""
        directory = self.routing.directory
        team = directory.teams.get(ticket.team or "")
        lead = team.lead if team else None
        owner = ticket.owner or None
        if role == "manager":
            return [self.settings.sla.manager] if self.settings.sla.manager else []
        if role == "lead":
            return [lead] if lead else ([owner] if owner else [])
        agent = directory.agents.get(owner or "")
        if owner and (agent is None or agent.unavailable(now, 0) is None):
            return [owner]
        lead_agent = directory.agents.get(lead or "")
        if lead and lead_agent is not None and lead_agent.unavailable(now, 0) is None:
            return [lead]
        return [owner] if owner else ([lead] if lead else [])

    def _alert(self, timer: Timer, level: Level, now: datetime) -> None:
        store, settings = self.store, self.settings
        ticket = store.ticket(timer.ticket_id)
        assert ticket is not None and timer.due_at is not None
        recipients = self._recipients(ticket, level.role, now)
        if level.name.startswith("escalate"):  # nobody is told of the same breach twice
            told = store.sla.told_of_breach(timer.id)
            recipients = [r for r in recipients if r not in told]
        left = settings.calendars[timer.calendar].business_minutes_between(now, timer.due_at)
        subject, body = sla_alert(ticket, clock=timer.kind, level=level.name, policy=timer.policy,
                                  due_text=format_due(timer.due_at, settings.support.timezone, "en"), minutes_left=left)
        if recipients:
            mail = internal_mail(settings.support, to=recipients, subject=subject, body=body,
                                 ticket_id=ticket.ticket_id, now=now, kind="sla",
                                 thread=store.internal_thread(ticket.ticket_id))
            store.enqueue(ticket_id=ticket.ticket_id, kind="sla_alert", message_id=mail.message_id,
                          mail_from=mail.mail_from, recipients=recipients, raw=mail.raw, now=now)
        if settings.sla.webhook_url:
            payload = {"text": subject, "ticket": ticket.ticket_id, "timer": timer.kind, "level": level.name,
                       "due": iso(timer.due_at), "owner": ticket.owner, "team": ticket.team,
                       "priority": ticket.priority, "recipients": recipients}
            store.enqueue(ticket_id=ticket.ticket_id, kind="webhook",
                          message_id=f"<webhook.{timer.id}.{level.name}@inboxd>", mail_from="",
                          recipients=[settings.sla.webhook_url], raw=json.dumps(payload).encode(), now=now)
        store.sla.record_sent(ticket.ticket_id, timer.id, level.name, now, recipients)
        store.log_event(ticket.ticket_id, "sla_alert", now, timer=timer.kind, level=level.name,
                        recipients=recipients)
        log(logger, logging.WARNING if level.name != "breach" else logging.ERROR, "sla_alert",
            ticket=ticket.ticket_id, timer=timer.kind, level=level.name, recipients=",".join(recipients) or "-")

