"""SLA clocks: first response, next response and resolution, in business time.

A clock starts with a due time from its policy's target and calendar. While the
ticket is pending (waiting on the customer) the clock is paused: its remaining
business minutes are kept and a new due time is computed when it resumes. An
answer stops the response clocks; resolving stops them all. Status changes go
through ``change_status`` so the clocks can never drift from the ticket.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from inboxd.config import Settings
from inboxd.model import DONE, TicketStatus, TimerState
from inboxd.sla.businesstime import BusinessCalendar
from inboxd.store.base import iso
from inboxd.store.sqlite import Store

KINDS = ("first_response", "next_response", "resolution")
OPEN_STATES = (TimerState.RUNNING, TimerState.PAUSED)


@dataclass(frozen=True)
class Timer:
    id: int
    ticket_id: str
    kind: str
    policy: str
    calendar: str
    state: str
    started_at: datetime
    due_at: datetime | None
    total_minutes: float
    remaining_minutes: float | None
    stopped_at: datetime | None
    met: bool | None = None  # set when stopped: was the target kept?

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Timer:
        when = lambda key: datetime.fromisoformat(row[key]) if row[key] else None  # noqa: E731
        return cls(row["id"], row["ticket_id"], row["kind"], row["policy"], row["calendar"], row["state"],
                   datetime.fromisoformat(row["started_at"]), when("due_at"), row["total_minutes"],
                   row["remaining_minutes"], when("stopped_at"), None if row.get("met") is None else bool(row["met"]))


def _calendar(settings: Settings, timer_or_policy: Timer | str) -> BusinessCalendar:
    name = timer_or_policy.calendar if isinstance(timer_or_policy, Timer) else \
        settings.sla_policies[timer_or_policy].calendar
    return settings.calendars.get(name, settings.calendars["support"])  # renamed since: the team's hours


def timers(store: Store, ticket_id: str, states: tuple[TimerState, ...] = OPEN_STATES) -> list[Timer]:
    return [Timer.from_row(r) for r in store.sla.timers(ticket_id, states)]


def start(store: Store, settings: Settings, ticket_id: str, kind: str, now: datetime) -> datetime | None:
    """Start a clock unless its policy has no target for the ticket's priority; returns its due time."""
    ticket = store.ticket(ticket_id)
    assert ticket is not None
    policy_name = ticket.sla_policy if ticket.sla_policy in settings.sla_policies else settings.default_policy
    policy = settings.sla_policies[policy_name]
    target = policy.target(kind, ticket.priority)
    if target is None or any(t.kind == kind for t in timers(store, ticket_id)):
        return None
    calendar = settings.calendars[policy.calendar]
    due = calendar.add(now, target)
    total = calendar.business_minutes_between(now, due)
    with store.tx():
        store.sla.start_timer(ticket_id, kind, policy=policy_name, calendar=policy.calendar, started_at=now,
                              due_at=due, total_minutes=total)
        store.log_event(ticket_id, "sla_started", now, timer=kind, policy=policy_name, due=iso(due))
    return due


def stop(store: Store, ticket_id: str, kinds: tuple[str, ...], now: datetime) -> None:
    for timer in timers(store, ticket_id):
        if timer.kind in kinds:
            if timer.state == TimerState.PAUSED:  # stopped while paused: met if time was left when it paused
                met = (timer.remaining_minutes or 0) > 0
            else:
                met = timer.due_at is not None and now <= timer.due_at
            with store.tx():
                store.sla.stop_timer(timer.id, now, met=met)
                store.log_event(timer.ticket_id, "sla_met" if met else "sla_stopped_late", now, timer=timer.kind)


def pause(store: Store, settings: Settings, ticket_id: str, now: datetime) -> None:
    for timer in timers(store, ticket_id, (TimerState.RUNNING,)):
        assert timer.due_at is not None
        remaining = _calendar(settings, timer).business_minutes_between(now, timer.due_at)
        store.sla.pause_timer(timer.id, remaining)


def resume(store: Store, settings: Settings, ticket_id: str, now: datetime) -> None:
    for timer in timers(store, ticket_id, (TimerState.PAUSED,)):
        due = _calendar(settings, timer).add_time(now, timedelta(minutes=timer.remaining_minutes or 0))
        store.sla.resume_timer(timer.id, due)


def change_status(store: Store, settings: Settings, ticket_id: str, status: TicketStatus, now: datetime, *,
                  actor: str) -> TicketStatus:
    """Set a ticket's status and move its clocks with it; returns the previous status."""
    ticket = store.ticket(ticket_id)
    assert ticket is not None
    previous = ticket.status
    if previous == status:
        return previous
    with store.tx():
        store.update_ticket(ticket_id, now, status=status)
        store.log_event(ticket_id, f"status_{status}", now, actor=actor, previous=previous)
        if status == TicketStatus.PENDING:
            pause(store, settings, ticket_id, now)
        elif status in DONE:
            stop(store, ticket_id, KINDS, now)
        else:
            resume(store, settings, ticket_id, now)
            if previous in DONE:  # reopened: the team owes an answer and a resolution
                start(store, settings, ticket_id, "next_response", now)
                start(store, settings, ticket_id, "resolution", now)
    return previous


def customer_wrote(store: Store, settings: Settings, ticket_id: str, now: datetime) -> None:
    """After the team's first answer, each new customer mail starts the next-response clock."""
    ticket = store.ticket(ticket_id)
    assert ticket is not None
    if ticket.status in (TicketStatus.PENDING, *DONE):
        change_status(store, settings, ticket_id, TicketStatus.OPEN, now, actor=ticket.requester)
    if ticket.first_response_at:
        start(store, settings, ticket_id, "next_response", now)


def reply_due(store: Store, ticket_id: str) -> tuple[str, datetime | None] | None:
    """The response clock the team is on now, latest started first: (kind, due), due None while paused."""
    for timer in reversed(timers(store, ticket_id)):
        if timer.kind in ("first_response", "next_response"):
            return timer.kind, timer.due_at if timer.state == TimerState.RUNNING else None
    return None


def team_answered(store: Store, ticket_id: str, now: datetime) -> None:
    stop(store, ticket_id, ("first_response", "next_response"), now)
