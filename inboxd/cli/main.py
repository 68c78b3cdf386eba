"""The ``inboxd`` command.

Written for the support team lead who runs it: every command has help text, and
every error is one plain sentence with exit code 2 for configuration problems.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from inboxd.cli import actions as cli_actions
from inboxd.cli import rules as cli_rules
from inboxd.cli import sla as cli_sla
from inboxd.cli import triage as cli_triage
from inboxd.config import ConfigError, Settings, load_settings
from inboxd.daemon import Daemon
from inboxd.errors import AlreadyRunning
from inboxd.log import register_secrets, setup_logging
from inboxd.model import TicketStatus
from inboxd.store import views
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store

CONFIG_HELP = "Configuration file (default: ./inboxd.toml, or the INBOXD_CONFIG environment variable)."


def _settings(ctx: click.Context, *, secrets: bool = False) -> Settings:
    """The settings; ``secrets`` for the commands that connect (and check-config, which must say
    that a password variable is missing before `run` starts half-configured)."""
    path = ctx.obj["config"]
    try:
        settings = load_settings(path, secrets=secrets)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(2)
    register_secrets(*settings.secrets())
    setup_logging(settings.log_level, settings.log_format)
    return settings


def _store(ctx: click.Context) -> Store:
    settings = _settings(ctx)
    if not settings.database.exists():
        click.echo(f"No database yet at {settings.database}: run `inboxd run` first.", err=True)
        sys.exit(1)
    return Store(settings.database)


def _dump(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "-c", type=click.Path(path_type=Path), envvar="INBOXD_CONFIG",
              default=Path("inboxd.toml"), show_default=True, help=CONFIG_HELP)
@click.version_option(package_name="inboxd")
@click.pass_context
def main(ctx: click.Context, config: Path) -> None:
    """inboxd turns a shared support mailbox into a help desk: every customer email
    becomes a ticket and gets an immediate acknowledgement with its ticket number
    and the time by which the team will answer."""
    ctx.obj = {"config": config}


@main.command()
@click.option("--once", is_flag=True, help="Process the mail waiting now, send what is queued, then exit "
                                           "(for cron jobs and tests).")
@click.pass_context
def run(ctx: click.Context, once: bool) -> None:
    """Watch the support mailbox and answer new mail (stop with Ctrl-C or SIGTERM)."""
    if not once:  # a stop request while starting up (loading the model) is a clean stop too
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    daemon = Daemon(_settings(ctx, secrets=True))
    try:
        if once:
            sys.exit(0 if asyncio.run(daemon.run_once()) else 1)
        asyncio.run(daemon.run_forever())
    except AlreadyRunning as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@main.command("check-config")
@click.pass_context
def check_config(ctx: click.Context) -> None:
    """Check the configuration file without connecting to anything."""
    settings = _settings(ctx, secrets=True)
    click.echo(f"{settings.path}: OK (mailbox {settings.imap.account}/{settings.imap.folder}, "
               f"database {settings.database})")


@main.group()
def tickets() -> None:
    """List, inspect and act on tickets (resolve, close, assign, tag, note...)."""


for _action in cli_actions.COMMANDS:
    tickets.add_command(_action)


OPEN_WORK = (TicketStatus.NEW.value, TicketStatus.OPEN.value, TicketStatus.PENDING.value)


@tickets.command("list")
@click.option("--status", "statuses", multiple=True, type=click.Choice([s.value for s in TicketStatus]),
              help="Only tickets with this status (repeat for several). Default: the open work, i.e. new, open "
                   "and pending.")
@click.option("--all", "show_all", is_flag=True, help="Every ticket, resolved and closed ones too.")
@click.option("--owner", help="Only tickets of this agent (their address), or 'none' for unowned tickets.")
@click.option("--team", help="Only tickets of this team.")
@click.option("--tag", help="Only tickets with this tag.")
@click.option("--category", help="Only tickets of this category.")
@click.option("--overdue", is_flag=True, help="Only tickets whose running SLA clock is past its due time.")
@click.option("--mailbox", help="Only tickets whose mail came in through this mailbox account or folder.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def tickets_list(ctx: click.Context, statuses: tuple[str, ...], show_all: bool, owner: str | None,
                 team: str | None, tag: str | None, category: str | None, overdue: bool, mailbox: str | None,
                 as_json: bool) -> None:
    """List tickets, newest first: by default the open work (new, open and pending)."""
    now = utcnow()
    which = views.TicketFilter(statuses=() if show_all else (statuses or OPEN_WORK), owner=owner, team=team,
                               tag=tag, category=category, overdue_at=now if overdue else None, mailbox=mailbox)
    rows = views.ticket_list(_store(ctx), which)
    if as_json:
        _dump(rows)
        return
    if rows:
        click.echo(f"{'TICKET':<10} {'STATUS':<9} {'PRIORITY':<8} {'OWNER':<24} {'TEAM':<10} {'AGE':>6}  "
                   f"{'NEXT DUE':<22} SUBJECT")
    for row in rows:
        click.echo(f"{row['ticket_id']:<10} {row['status']:<9} {row['priority']:<8} {row['owner'] or '-':<24.24} "
                   f"{row['team'] or '-':<10.10} {_age(now, row['created_at']):>6}  "
                   f"{_due(now, row['next_due'], row['next_due_clock']):<22} {row['subject'][:50]}")
    if not rows:
        click.echo("No tickets." if show_all or statuses else "No open work (new, open or pending tickets).")


def _age(now: datetime, iso_time: str) -> str:
    """How long ago, in the largest unit that fits: 45m, 5h, 3d."""
    minutes = int((now - datetime.fromisoformat(iso_time)).total_seconds() // 60)
    return f"{minutes}m" if minutes < 60 else f"{minutes // 60}h" if minutes < 48 * 60 else f"{minutes // 1440}d"


def _due(now: datetime, iso_time: str | None, clock: str | None) -> str:
    """The running clock due soonest: '14:00 first_response', or 'OVERDUE 2h next_response'."""
    if not iso_time:
        return "-"
    due = datetime.fromisoformat(iso_time)
    if due < now:
        return f"OVERDUE {_age(now, iso_time)} {clock}"
    return f"{due.astimezone():%m-%d %H:%M} {clock}"


def ticket_details(store: Store, ticket_id: str) -> dict[str, Any] | None:
    """A ticket with its participants, messages and event log, as shown by ``tickets show``."""
    ticket = store.ticket(ticket_id.upper())
    if ticket is None:
        return None
    ticket_id = ticket.ticket_id
    messages = views.ticket_messages(store, ticket_id)
    for message in messages:
        for key in ("to_addrs", "cc_addrs", "attachments", "defects"):
            message[key] = json.loads(message[key])
        message["charset_guessed"] = bool(message["charset_guessed"])
    events = views.ticket_events(store, ticket_id)
    for event in events:
        event["detail"] = json.loads(event["detail"])
    for message in messages:
        message["classification"] = json.loads(message["classification"]) if message["classification"] else None
    participants = store.participants(ticket_id)
    return {**ticket.as_dict(), "tags": store.tags(ticket_id),
            "cc": [a for a, role in participants.items() if role == "cc"], "messages": messages, "events": events}


@tickets.command("show")
@click.argument("ticket_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (fields, messages and events).")
@click.pass_context
def tickets_show(ctx: click.Context, ticket_id: str, as_json: bool) -> None:
    """Show one ticket, e.g. `inboxd tickets show SUP-12`."""
    details = ticket_details(_store(ctx), ticket_id)
    if details is None:
        click.echo(f"No ticket {ticket_id}.", err=True)
        sys.exit(1)
    if as_json:
        _dump(details)
        return
    click.echo(f"{details['ticket_id']}  [{details['status']}]  {details['subject']}")
    click.echo(f"Requester: {details['requester_name']} <{details['requester']}>   Language: "
               f"{details['language']}   Created: {details['created_at']}")
    click.echo(f"Owner: {details['owner'] or '-'}   Team: {details['team'] or '-'}   "
               f"SLA policy: {details['sla_policy'] or '-'}")
    click.echo(f"Category: {details['category'] or '-'}   Priority: {details['priority']}   "
               f"Tags: {', '.join(details['tags']) or '-'}" + ("   SPAM" if details["spam"] else ""))
    if details["cc"]:
        click.echo(f"Cc: {', '.join(details['cc'])}")
    if details["first_response_due"]:
        click.echo(f"First response due: {details['first_response_due']}")
    for message in details["messages"]:
        click.echo(f"\n--- {message['created_at']}  {message['direction']}/{message['kind']}  "
                   f"from {message['from_addr']}")
        click.echo(message["body"].strip()[:2000])
    click.echo("\nEvents:")
    for event in details["events"]:
        click.echo(f"  {event['at']}  {_event_text(event)}")


def _event_text(event: dict[str, Any]) -> str:
    """One history line a lead can read: what happened, to what, and who did it."""
    kind, actor, detail = event["kind"], event["actor"], event["detail"] or {}
    by = f" by {actor}"
    if kind == "assigned":
        owner = detail.get("owner")
        return (f"assigned to {owner}" if owner else "left on the team queue") + by + \
            (f" ({detail['reason']})" if detail.get("reason") else "")
    if kind.startswith("status_"):
        return f"status {kind.removeprefix('status_')} (was {detail.get('previous', '?')}){by}"
    if kind in ("category_changed", "priority_changed", "priority_raised"):
        return f"{kind.replace('_', ' ')}: {detail.get('old') or '-'} -> {detail.get('new')}{by}"
    shown = ", ".join(f"{k}={v}" for k, v in detail.items() if v not in (None, "", [], {}) and k != "signals")
    return f"{kind}{by}" + (f": {shown[:160]}" if shown else "")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """What to check first: mail stored, tickets by status, quarantine, outbox, last fetch."""
    info = _store(ctx).status()
    if as_json:
        _dump(info)
        return
    click.echo(f"Messages stored:       {info['messages_stored']} ({info['messages_waiting']} waiting)")
    click.echo(f"Messages quarantined:  {info['messages_quarantined']}")
    click.echo("Tickets:               " + ", ".join(f"{k} {v}" for k, v in info["tickets"].items()))
    click.echo(f"Machine mail and spam: {info['machine_mail']} (auto-replies, bounces, bulk mail, spam: "
               "closed on arrival, on nobody's queue)")
    click.echo(f"Outbox:                {info['outbox_pending']} pending, {info['outbox_failed']} failed")
    for box in info["mailboxes"]:
        line = f"Mailbox {box['account']}/{box['folder']}: last fetch {box['last_fetch_at'] or 'never'}"
        click.echo(line + (f", last error: {box['last_error']}" if box["last_error"] else ""))


@main.command()
@click.option("--keep", type=click.Path(path_type=Path), default=None,
              help="Keep the demo database and captured mail in this folder.")
def demo(keep: Path | None) -> None:
    """Run the whole pipeline on a bundled sample mailbox, with no mail server needed."""
    from inboxd.cli.demo import run_demo

    setup_logging("error")
    run_demo(keep)


for _command in (cli_rules.rules, cli_triage.classify, cli_triage.train_command, cli_triage.eval_command,
                 cli_sla.sla):
    main.add_command(_command)
