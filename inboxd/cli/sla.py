"""``inboxd sla``: where each ticket stands against its promises."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

import click

from inboxd.config import ConfigError, Settings, load_settings
from inboxd.model import TimerState
from inboxd.reply.alerts import LABELS
from inboxd.sla.businesstime import format_due
from inboxd.sla.clocks import Timer
from inboxd.sla.watch import levels
from inboxd.store import views
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store


def _open(ctx: click.Context) -> tuple[Settings, Store]:
    try:
        settings = load_settings(ctx.obj["config"], secrets=False)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(2)
    if not settings.database.exists():
        click.echo(f"No database yet at {settings.database}: run `inboxd run` first.", err=True)
        sys.exit(1)
    return settings, Store(settings.database)


def describe(settings: Settings, timer: Timer, now: datetime) -> dict[str, Any]:
    """A clock's state in words and numbers, as `sla show` and `sla at-risk` print it."""
    calendar = settings.calendars[timer.calendar]
    due = timer.due_at if timer.state != TimerState.PAUSED else None  # a paused clock has no due time until it resumes
    info: dict[str, Any] = {"timer": timer.kind, "policy": timer.policy, "state": timer.state,
                            "started_at": timer.started_at.isoformat(), "due_at": due.isoformat() if due else None}
    if timer.state == TimerState.RUNNING and timer.due_at is not None:
        left = calendar.business_minutes_between(now, timer.due_at) if now < timer.due_at else \
            -calendar.business_minutes_between(timer.due_at, now)
        info["business_minutes_left"] = round(left, 1)
        info["used"] = round(1 - max(left, 0) / timer.total_minutes, 3) if timer.total_minutes else 1.0
        passed = [lv.name for lv in levels(settings, timer) if lv.at <= now]
        info["level"] = passed[-1] if passed else "ok"
    elif timer.state == TimerState.PAUSED:
        info["business_minutes_left"] = round(timer.remaining_minutes or 0, 1)
        info["level"] = "paused (waiting on the customer)"
    else:
        info["stopped_at"] = timer.stopped_at.isoformat() if timer.stopped_at else None
        info["level"] = "met" if timer.met else "late"
    return info


def _left(minutes: float) -> str:
    sign, minutes = ("-" if minutes < 0 else ""), abs(int(round(minutes)))
    return f"{sign}{minutes // 60}h{minutes % 60:02d}m"


@click.group()
def sla() -> None:
    """See SLA clocks: what is due, when, and what is at risk."""


@sla.command("show")
@click.argument("ticket_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def sla_show(ctx: click.Context, ticket_id: str, as_json: bool) -> None:
    """Each clock of one ticket: its state, due time and working time left."""
    settings, store = _open(ctx)
    ticket = store.ticket(ticket_id.upper())
    if ticket is None:
        click.echo(f"No ticket {ticket_id}.", err=True)
        sys.exit(1)
    now = utcnow()
    clocks = [describe(settings, Timer.from_row(r), now) for r in views.sla_timers(store, ticket.ticket_id)]
    alerts = views.sla_alerts(store, ticket.ticket_id)
    for alert in alerts:
        alert["recipients"] = json.loads(alert["recipients"])
        alert["sent"] = bool(alert["sent"])
    if as_json:
        click.echo(json.dumps({"ticket": ticket.ticket_id, "status": ticket.status, "clocks": clocks,
                               "alerts": alerts}, indent=2, ensure_ascii=False))
        return
    click.echo(f"{ticket.ticket_id} [{ticket.status}] priority {ticket.priority}, "
               f"policy {ticket.sla_policy or settings.default_policy}")
    if not clocks:
        click.echo("  no SLA clocks (the policy sets no target for this priority)")
    for clock in clocks:
        due = format_due(datetime.fromisoformat(clock["due_at"]), settings.support.timezone, "en") \
            if clock["due_at"] else "-"
        left = f", {_left(clock['business_minutes_left'])} working time left" if "business_minutes_left" in clock \
            else ""
        click.echo(f"  {LABELS[clock['timer']]:<15} {clock['state']:<8} due {due}{left}  [{clock['level']}]")
    for alert in alerts:
        click.echo(f"  alert {alert['level']:<11} {alert['at'][:16]}  "
                   f"{'to ' + ', '.join(alert['recipients']) if alert['sent'] else '(superseded)'}")


@sla.command("at-risk")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def sla_at_risk(ctx: click.Context, as_json: bool) -> None:
    """Every running clock past its first warning, soonest due first."""
    settings, store = _open(ctx)
    now = utcnow()
    risky = []
    for row in views.running_timers(store):
        clock = describe(settings, Timer.from_row(row), now)
        if clock["level"] != "ok":
            risky.append({"ticket": row["ticket_id"], "subject": row["subject"], "owner": row["owner"],
                          "priority": row["priority"], **clock})
    if as_json:
        click.echo(json.dumps(risky, indent=2, ensure_ascii=False))
        return
    if not risky:
        click.echo("Nothing at risk.")
    for r in risky:
        due = format_due(datetime.fromisoformat(r["due_at"]), settings.support.timezone, "en")
        click.echo(f"{r['ticket']:<9} {LABELS[r['timer']]:<15} due {due:<32} {_left(r['business_minutes_left']):>8}"
                   f"  [{r['level']}]  {r['owner'] or '(unassigned)'}  {r['subject'][:40]}")
