"""Assign: route a ticket, pick its owner, and tell them.

``Routing`` holds the agent directory and the routes, reloading both within
seconds of an edit and keeping the last good pair when an edit is broken.
``notify_owner`` is the one way a ticket gets (re)assigned and its owner told,
used by the pipeline for new tickets and follow-ups and by agent commands.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from inboxd.config import Settings
from inboxd.model import OutgoingMail
from inboxd.reply.notify import build_notification, build_queue_alert
from inboxd.routing.agents import AssignmentHistory, Choice, Directory, choose, load_directory
from inboxd.routing.route import Route, RouteContext, RouteDecision, load_routes, route
from inboxd.sla.businesstime import Duration
from inboxd.sla.clocks import reply_due
from inboxd.store.base import iso
from inboxd.store.messages import customer_message
from inboxd.store.sqlite import Store
from inboxd.tomlfile import LastGood


class Routing:
    """The agent directory and routes in force, reloaded when their files change."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        files = (settings.routing.agents_file, settings.routing.routes_file)
        self._files: LastGood[tuple[Directory, tuple[Route, ...]]] = LastGood(
            "routing", lambda: files, self._load, (Directory({}, {}), ()))

    def _load(self) -> tuple[Directory, tuple[Route, ...]]:
        directory = load_directory(self.settings.routing.agents_file, self.settings.support.timezone)
        return directory, load_routes(self.settings.routing.routes_file, directory, set(self.settings.sla_policies))

    @property
    def directory(self) -> Directory:
        return self._files.value[0]

    @property
    def routes(self) -> tuple[Route, ...]:
        return self._files.value[1]

    @property
    def errors(self) -> list[str]:
        return self._files.errors

    def reload(self) -> bool:
        return self._files.reload()

    def reload_if_changed(self) -> bool:
        return self._files.reload_if_changed()


@dataclass(frozen=True)
class Assignment:
    team: str | None
    owner: str | None
    watchers: tuple[str, ...]
    sla: str
    decision: RouteDecision
    choice: Choice | None
    reason: str


def decide(routing: Routing, ctx: RouteContext, history: AssignmentHistory) -> Assignment:
    """Where a ticket goes and why; pure apart from the history lookups."""
    decision = route(routing.routes, ctx)
    sla = decision.sla or routing.settings.default_policy
    choice = None
    owner: str | None
    if decision.owner:
        owner, reason = decision.owner, f"fixed owner in route '{decision.matched[-1]}'"
    elif decision.team:
        team = routing.directory.teams[decision.team]
        choice = choose(team, routing.directory, strategy=decision.strategy or team.strategy, at=ctx.at,
                        customer=ctx.sender, language=ctx.language, history=history)
        owner, reason = choice.owner, choice.reason
    else:
        owner, reason = None, "no route gives a team or an owner"
    return Assignment(decision.team, owner, tuple(decision.cc), sla, decision, choice, reason)


def first_response_target(settings: Settings, policy: str, priority: str) -> Duration:
    found = settings.sla_policies[policy].target("first_response", priority)
    return found if found is not None else settings.support.first_response


def notify_owner(store: Store, settings: Settings, routing: Routing, ticket_id: str, *, why: str,
                 now: datetime, message_id: int | None = None) -> str:
    """Queue the owner's notification (or the lead's queue alert) for a ticket's latest customer mail."""
    ticket = store.ticket(ticket_id)
    assert ticket is not None
    message = customer_message(store, ticket_id, message_id)
    if message is None:
        return "nothing to notify"
    watchers = [a for a, role in store.participants(ticket_id).items() if role == "watcher"]
    mail: OutgoingMail
    thread = store.internal_thread(ticket_id)
    if ticket.owner:
        due = reply_due(store, ticket_id)
        if due is None and ticket.first_response_due and not ticket.first_response_at:  # a promise, no SLA clock
            due = ("first_response", datetime.fromisoformat(ticket.first_response_due))
        secret = settings.routing.reply_secret or store.secret("reply_token")
        mail = build_notification(support=settings.support, ticket=ticket, tags=store.tags(ticket_id),
                                  owner=ticket.owner, watchers=watchers, secret=secret, message=message,
                                  due=due, why=why, now=now, thread=thread)
        kind, note = "notification", f"owner {ticket.owner} notified"
    else:
        team = routing.directory.teams.get(ticket.team or "")
        if team is None or team.lead is None:
            return "unassigned, and no team lead to alert"
        considered = tuple((email, agent.unavailable(now, store.open_tickets(email)) or "available")
                           for email in team.members if (agent := routing.directory.agents.get(email)))
        mail = build_queue_alert(support=settings.support, ticket=ticket, lead=team.lead, team=team.name,
                                 considered=considered, now=now, thread=thread)
        kind, note = "queue_alert", f"lead {team.lead} alerted"
    store.enqueue(ticket_id=ticket_id, kind=kind, message_id=mail.message_id, mail_from=mail.mail_from,
                  recipients=list(mail.recipients), raw=mail.raw, now=now)
    store.add_message(ticket_id, direction="out", kind=kind, now=now, message_id=mail.message_id,
                      from_addr=settings.support.address, from_name=settings.support.name,
                      to_addrs=mail.recipients, subject=mail.subject, body=mail.text)
    store.log_event(ticket_id, f"{kind}_queued", now, recipients=list(mail.recipients))
    return note


def apply_assignment(store: Store, ticket_id: str, assignment: Assignment, now: datetime) -> None:
    """Record where routing put the ticket, with the explanation, in the event log."""
    store.update_ticket(ticket_id, now, team=assignment.team, owner=assignment.owner, sla_policy=assignment.sla)
    for watcher in assignment.watchers:
        store.add_participant(ticket_id, watcher, "watcher")
    store.log_event(ticket_id, "assigned", now, team=assignment.team, owner=assignment.owner, sla=assignment.sla,
                    routes=assignment.decision.matched, reason=assignment.reason,
                    considered=[list(c) for c in assignment.choice.considered] if assignment.choice else [],
                    at=iso(now))
