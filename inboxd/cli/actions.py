"""`inboxd tickets resolve|close|reopen|pending|spam|assign|tag|untag|priority|category|note`.

The same actions as the commands in a mail reply (stages/actions.py), for a lead or an agent at
a terminal: each is an event with who did it (``--as``, default the login name), and mail they
cause (an assignment's notification, a note's copy) is queued for the running daemon to send.
"""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable
from datetime import datetime

import click

from inboxd.config import ConfigError, load_settings
from inboxd.log import register_secrets, setup_logging
from inboxd.model import TicketStatus
from inboxd.routing.assign import Routing
from inboxd.stages.actions import TicketActions
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store
from inboxd.triage.rules import CATEGORIES, PRIORITIES

AS_HELP = "Who does it: an agent's address or name (default: your login name). Recorded in the ticket's history."
STATUSES = {"resolve": TicketStatus.RESOLVED, "close": TicketStatus.CLOSED, "reopen": TicketStatus.OPEN,
            "pending": TicketStatus.PENDING}
STATUS_HELP = {
    "resolve": "Mark tickets resolved (the customer's next reply reopens them); their SLA clocks stop.",
    "close": "Close tickets (a later reply from the customer starts a new ticket); their SLA clocks stop.",
    "reopen": "Open tickets again; a resolved or closed ticket gets new response and resolution clocks.",
    "pending": "Mark tickets as waiting on the customer; their SLA clocks pause until the customer writes.",
}


class _Acting:
    """The settings, database and actions for one command; closes the database at the end."""

    def __init__(self, ctx: click.Context, actor: str | None) -> None:
        try:  # the secrets too: a notification carries a reply token made with the reply secret
            self.settings = load_settings(ctx.obj["config"])
        except ConfigError as exc:
            click.echo(f"Configuration error: {exc}", err=True)
            sys.exit(2)
        register_secrets(*self.settings.secrets())
        setup_logging(self.settings.log_level, self.settings.log_format)
        if not self.settings.database.exists():
            click.echo(f"No database yet at {self.settings.database}: run `inboxd run` first.", err=True)
            sys.exit(1)
        self.routing = Routing(self.settings)
        self.store = Store(self.settings.database)
        self.actions = TicketActions(self.settings, self.store, self.routing)
        who = actor or getpass.getuser()
        agent = self.routing.directory.find(who)
        self.actor, self.actor_name = (agent.email, agent.name) if agent else (who, who)
        self.now: datetime = utcnow()

    def each(self, ticket_ids: tuple[str, ...], act: Callable[[str], str]) -> None:
        """Run ``act`` on every ticket that exists; exit code 1 if any did not."""
        missing = []
        try:
            for raw_id in ticket_ids:
                ticket = self.store.ticket(raw_id.upper())
                if ticket is None:
                    missing.append(raw_id)
                    click.echo(f"No ticket {raw_id}.", err=True)
                    continue
                click.echo(f"{ticket.ticket_id}: {act(ticket.ticket_id)}")
        finally:
            self.store.close()
        if missing:
            sys.exit(1)


def _status_command(name: str, status: TicketStatus) -> click.Command:
    @click.command(name, help=STATUS_HELP[name])
    @click.argument("ticket_ids", nargs=-1, required=True)
    @click.option("--as", "actor", help=AS_HELP)
    @click.pass_context
    def command(ctx: click.Context, ticket_ids: tuple[str, ...], actor: str | None) -> None:
        acting = _Acting(ctx, actor)

        def act(ticket_id: str) -> str:
            previous = acting.actions.set_status(ticket_id, status, acting.actor, acting.now)
            return f"{status} (was {previous})" if previous != status else f"already {status}"

        acting.each(ticket_ids, act)

    return command


STATUS_COMMANDS = [_status_command(name, status) for name, status in STATUSES.items()]


@click.command("spam")
@click.argument("ticket_ids", nargs=-1, required=True)
@click.option("--as", "actor", help=AS_HELP)
@click.pass_context
def spam(ctx: click.Context, ticket_ids: tuple[str, ...], actor: str | None) -> None:
    """Mark tickets as spam: closed, tagged spam, and kept as spam examples for the model."""
    acting = _Acting(ctx, actor)

    def act(ticket_id: str) -> str:
        acting.actions.spam(ticket_id, acting.actor, acting.now)
        return "spam (closed)"

    acting.each(ticket_ids, act)


@click.command("assign")
@click.argument("ticket_id")
@click.argument("agent")
@click.option("--as", "actor", help=AS_HELP)
@click.pass_context
def assign(ctx: click.Context, ticket_id: str, agent: str, actor: str | None) -> None:
    """Give a ticket to an agent (address or name from agents.toml); they get its notification."""
    acting = _Acting(ctx, actor)
    target = acting.routing.directory.find(agent)
    if target is None:
        known = ", ".join(sorted(acting.routing.directory.agents)) or "none (agents.toml has no agents)"
        click.echo(f"No agent {agent!r}. Agents: {known}", err=True)
        acting.store.close()
        sys.exit(2)

    def act(ticket_id: str) -> str:
        acting.actions.assign(ticket_id, target.email, acting.actor, acting.actor_name, acting.now,
                              how=f"assigned by {acting.actor} from the command line")
        return f"assigned to {target.email}"

    acting.each((ticket_id,), act)


def _tag_command(name: str, remove: bool) -> click.Command:
    @click.command(name, help=("Remove a tag from a ticket." if remove else "Add a tag to a ticket."))
    @click.argument("ticket_id")
    @click.argument("tag")
    @click.option("--as", "actor", help=AS_HELP)
    @click.pass_context
    def command(ctx: click.Context, ticket_id: str, tag: str, actor: str | None) -> None:
        acting = _Acting(ctx, actor)

        def act(ticket_id: str) -> str:
            acting.actions.tag(ticket_id, tag, acting.actor, acting.now, remove=remove)
            return f"tag {tag} {'removed' if remove else 'added'}"

        acting.each((ticket_id,), act)

    return command


def _value_command(name: str, choices: tuple[str, ...], help_text: str,
                   apply: Callable[[TicketActions, str, str, str, datetime], None]) -> click.Command:
    """``inboxd tickets NAME ID VALUE``, VALUE one of ``choices``."""
    @click.command(name, help=help_text)
    @click.argument("ticket_id")
    @click.argument("value", metavar=name.upper(), type=click.Choice(choices))
    @click.option("--as", "actor", help=AS_HELP)
    @click.pass_context
    def command(ctx: click.Context, ticket_id: str, value: str, actor: str | None) -> None:
        acting = _Acting(ctx, actor)

        def act(ticket_id: str) -> str:
            apply(acting.actions, ticket_id, value, acting.actor, acting.now)
            return f"{name} {value}"

        acting.each((ticket_id,), act)

    return command


priority = _value_command("priority", PRIORITIES, "Set a ticket's priority.", TicketActions.priority)
category = _value_command("category", CATEGORIES, "Set a ticket's category (a correction the model learns "
                          "from; removes needs-triage).", TicketActions.category)


@click.command("note")
@click.argument("ticket_id")
@click.argument("text")
@click.option("--as", "actor", help=AS_HELP)
@click.pass_context
def note(ctx: click.Context, ticket_id: str, text: str, actor: str | None) -> None:
    """Add an internal note (never sent to the customer; copied to the owner and watchers)."""
    acting = _Acting(ctx, actor)
    acting.each((ticket_id,), lambda t: acting.actions.note(t, text, acting.actor, acting.actor_name, acting.now))


COMMANDS = [*STATUS_COMMANDS, spam, assign, _tag_command("tag", False), _tag_command("untag", True), priority,
            category, note]
