"""What the team can do to a ticket, by a command in a mail reply or from the command line.

One place for both, so `#assign bob` in a reply and `inboxd tickets assign SUP-12 bob` have
the same effects: the status change moves the SLA clocks, an assignment notifies the new
owner, a category or tag change is kept as a training example for the model, and every
action is an event with the person who did it.
"""

from __future__ import annotations

from datetime import datetime

from inboxd.config import Settings
from inboxd.model import TicketStatus
from inboxd.reply.notify import internal_mail
from inboxd.routing.assign import Routing, notify_owner
from inboxd.sla import clocks
from inboxd.store.sqlite import Store


class TicketActions:
    def __init__(self, settings: Settings, store: Store, routing: Routing) -> None:
        self.settings, self.store, self.routing = settings, store, routing

    def set_status(self, ticket_id: str, status: TicketStatus, actor: str, now: datetime) -> TicketStatus:
        """Returns the previous status; pending pauses the clocks, resolved and closed stop them."""
        return clocks.change_status(self.store, self.settings, ticket_id, status, now, actor=actor)

    def assign(self, ticket_id: str, owner: str, actor: str, actor_name: str, now: datetime, *, how: str,
               notify: bool = True) -> None:
        """Give the ticket to ``owner`` (an agent's address) and notify them (``notify=False``: the
        caller notifies once its other changes are made, so the notification shows them)."""
        store = self.store
        with store.tx():
            store.update_ticket(ticket_id, now, owner=owner)
            store.log_event(ticket_id, "assigned", now, actor=actor, owner=owner, reason=how)
            if notify:
                self.notify_assigned(ticket_id, actor_name, now)

    def notify_assigned(self, ticket_id: str, actor_name: str, now: datetime) -> None:
        notify_owner(self.store, self.settings, self.routing, ticket_id, why=f"assigned by {actor_name}", now=now)

    def tag(self, ticket_id: str, tag: str, actor: str, now: datetime, *, remove: bool = False) -> None:
        self.store.tag(ticket_id, tag, actor, now, remove=remove)

    def category(self, ticket_id: str, category: str, actor: str, now: datetime) -> None:
        """Set by a person: kept as a training example, and the ticket no longer needs triage."""
        with self.store.tx():
            self.store.set_category(ticket_id, category, actor, now)
            if "needs-triage" in self.store.tags(ticket_id):
                self.store.tag(ticket_id, "needs-triage", actor, now, remove=True)

    def priority(self, ticket_id: str, priority: str, actor: str, now: datetime) -> None:
        with self.store.tx():
            self.store.update_ticket(ticket_id, now, priority=priority)
            self.store.log_event(ticket_id, "priority_changed", now, actor=actor, new=priority)

    def spam(self, ticket_id: str, actor: str, now: datetime) -> None:
        """Spam after all: category spam (a training example), tag spam, closed; nothing is sent."""
        with self.store.tx():
            self.store.set_category(ticket_id, "spam", actor, now)
            self.store.tag(ticket_id, "spam", actor, now)
            self.store.update_ticket(ticket_id, now, spam=1)
            self.set_status(ticket_id, TicketStatus.CLOSED, actor, now)

    def note(self, ticket_id: str, text: str, actor: str, actor_name: str, now: datetime,
             message_id: str | None = None) -> str:
        """An internal note: kept on the ticket, copied to the owner and watchers, never to the customer
        (``message_id``: of the mail it came in, so a second copy of that mail adds nothing)."""
        store = self.store
        with store.tx():
            store.add_message(ticket_id, direction="internal", kind="note", now=now, from_addr=actor,
                              from_name=actor_name, body=text, message_id=message_id)
            store.log_event(ticket_id, "note_added", now, actor=actor)
            ticket = store.ticket(ticket_id)
            assert ticket is not None
            others = [a for a, role in store.participants(ticket_id).items() if role == "watcher"]
            others = [a for a in dict.fromkeys([ticket.owner or "", *others]) if a and a != actor]
            if not others:
                return "note stored"
            mail = internal_mail(self.settings.support, to=others, subject=f"[{ticket_id}] Note from {actor_name}",
                                 body=f"{actor_name} added an internal note (not sent to the customer):\n\n{text}\n",
                                 ticket_id=ticket_id, now=now, kind="note",
                                 thread=store.internal_thread(ticket_id))
            store.enqueue(ticket_id=ticket_id, kind="note_copy", message_id=mail.message_id,
                          mail_from=mail.mail_from, recipients=list(mail.recipients), raw=mail.raw, now=now)
        return f"note stored and copied to {', '.join(others)}"
