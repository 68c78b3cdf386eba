"""The ``inboxd`` command.

Written for the support team lead who runs it: every command has help text, and
every error is one plain sentence with exit code 2 for configuration problems.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
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


@tickets.command("list")
@click.option("--status", type=click.Choice([s.value for s in TicketStatus]),
              help="Only tickets with this status.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def tickets_list(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List tickets, newest first."""
    rows = views.ticket_list(_store(ctx), status)
    if as_json:
        _dump(rows)
        return
    for row in rows:
        click.echo(f"{row['ticket_id']:<10} {row['status']:<9} {row['priority']:<7} {row['category'] or '-':<10} "
                   f"{row['language']:<8} {row['requester']:<32} {row['subject'][:50]}")
    if not rows:
        click.echo("No tickets.")


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
        click.echo(f"  {event['at']}  {event['kind']:<16} {event['actor']}")


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
