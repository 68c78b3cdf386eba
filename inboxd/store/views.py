"""Read-only queries behind the ``inboxd`` commands and the demo report.

They return rows as stored (JSON columns still text), so each command decides
how to show them; a whole ticket comes back as a ``TicketRow``. Nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inboxd.store.base import iso
from inboxd.store.sqlite import Store
from inboxd.store.tickets import TicketRow


@dataclass(frozen=True)
class TicketFilter:
    """Which tickets `tickets list` shows; None (or empty) means any."""

    statuses: tuple[str, ...] = ()
    owner: str | None = None  # "none" for tickets nobody owns
    team: str | None = None
    tag: str | None = None
    category: str | None = None
    overdue_at: datetime | None = None  # only tickets whose running clock was due before this
    mailbox: str | None = None  # the account or folder the ticket's mail came in through


def ticket_list(store: Store, which: TicketFilter = TicketFilter()) -> list[dict[str, Any]]:
    """The columns `tickets list` shows, newest ticket first: with the owner, team and the running
    clock due soonest (``next_due``, ``next_due_clock``)."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if which.statuses:
        where.append(f"t.status IN ({','.join('?' * len(which.statuses))})")
        params += which.statuses
    if which.owner is not None:
        where.append("t.owner IS NULL" if which.owner.lower() == "none" else "t.owner=?")
        params += [] if which.owner.lower() == "none" else [which.owner.lower()]
    for column, value in (("team", which.team), ("category", which.category)):
        if value is not None:
            where.append(f"t.{column}=?")
            params.append(value)
    if which.tag is not None:
        where.append("EXISTS (SELECT 1 FROM ticket_tags g WHERE g.ticket_id=t.ticket_id AND g.tag=?)")
        params.append(which.tag)
    if which.mailbox is not None:
        where.append("EXISTS (SELECT 1 FROM messages m JOIN raw_messages r ON r.id=m.raw_id "
                     "WHERE m.ticket_id=t.ticket_id AND (r.account=? OR r.folder=?))")
        params += [which.mailbox, which.mailbox]
    next_due = ("(SELECT c.{} FROM sla_timers c WHERE c.ticket_id=t.ticket_id AND c.state='running' "
                "ORDER BY c.due_at LIMIT 1)")
    if which.overdue_at is not None:
        where.append(f"{next_due.format('due_at')}<?")
        params.append(iso(which.overdue_at))
    return store.query(
        "SELECT t.ticket_id, t.status, t.priority, t.category, t.requester, t.language, t.subject, t.created_at, "
        f"t.updated_at, t.owner, t.team, {next_due.format('due_at')} AS next_due, "
        f"{next_due.format('kind')} AS next_due_clock FROM tickets t WHERE {' AND '.join(where)} ORDER BY t.id DESC",
        tuple(params))


def ticket_messages(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """A ticket's messages in arrival order, without their raw mail (`tickets show` prints them)."""
    return store.query("SELECT id, direction, kind, message_id, from_addr, from_name, to_addrs, cc_addrs, "
                       "subject, body, attachments, language, charset_declared, charset_used, "
                       "charset_guessed, defects, no_ack_reason, classification, created_at FROM messages "
                       "WHERE ticket_id=? ORDER BY id", (ticket_id,))


def ticket_events(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """A ticket's event log in the order it was written."""
    return store.query("SELECT at, kind, actor, detail FROM events WHERE ticket_id=? ORDER BY id", (ticket_id,))


def sla_timers(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """Every clock of a ticket, stopped ones too, in the order they started (`sla show`)."""
    return store.query("SELECT * FROM sla_timers WHERE ticket_id=? ORDER BY id", (ticket_id,))


def sla_alerts(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """A ticket's SLA alerts, sent and superseded, in the order they fired (`sla show`)."""
    return store.query("SELECT level, at, recipients, sent FROM sla_alerts WHERE ticket_id=? ORDER BY id",
                       (ticket_id,))


def running_timers(store: Store) -> list[dict[str, Any]]:
    """Every running clock with its ticket's subject, owner and priority, soonest due first (`sla at-risk`)."""
    return store.query("SELECT c.*, t.subject, t.owner, t.priority FROM sla_timers c JOIN tickets t "
                       "ON t.ticket_id=c.ticket_id WHERE c.state='running' ORDER BY c.due_at")


def demo_tickets(store: Store) -> list[dict[str, Any]]:
    """Every ticket in the order it was opened, with what the demo report prints of it."""
    return store.query("SELECT ticket_id, status, language, requester, subject, category, priority, team, "
                       "owner FROM tickets ORDER BY id")


def inbound_count(store: Store, ticket_id: str) -> int:
    """How many mails came in on a ticket (customer and agent mail)."""
    return int(store.query("SELECT COUNT(*) n FROM messages WHERE ticket_id=? AND direction='in'",
                           (ticket_id,))[0]["n"])


def ack_events(store: Store, ticket_id: str) -> list[dict[str, Any]]:
    """The events that tell whether a ticket's acknowledgement was queued or suppressed (and why)."""
    return store.query("SELECT kind, detail FROM events WHERE ticket_id=? AND kind IN "
                       "('ack_queued', 'ack_suppressed')", (ticket_id,))


def outbox_counts(store: Store) -> dict[str, int]:
    """Outgoing mail of every state, counted by kind (ack, notification, ...)."""
    return {r["kind"]: r["n"] for r in store.query("SELECT kind, COUNT(*) n FROM outbox GROUP BY kind")}


def quarantined(store: Store) -> list[dict[str, Any]]:
    """Stored mail that could not become a ticket: its IMAP UID and the reason."""
    return store.query("SELECT uid, error FROM raw_messages WHERE state='quarantined'")


@dataclass(frozen=True)
class ReplayTicket:
    """A ticket with the raw bytes and the mailbox (account, folder) of its first mail."""

    ticket: TicketRow
    raw: bytes
    mailbox: tuple[str, str]


def replay_tickets(store: Store, since: datetime) -> list[ReplayTicket]:
    """Tickets opened since ``since``, oldest first, with the raw bytes and mailbox of their first mail.

    ``rules replay`` parses that mail again, so it classifies and routes exactly what inboxd saw.
    """
    rows = store.query("SELECT t.*, r.raw, r.account, r.folder FROM tickets t JOIN messages m ON m.id = "
                       "(SELECT MIN(id) FROM messages WHERE ticket_id=t.ticket_id AND direction='in') "
                       "JOIN raw_messages r ON r.id=m.raw_id WHERE t.created_at>=? ORDER BY t.id", (iso(since),))
    return [ReplayTicket(TicketRow.from_row(r), r["raw"], (r["account"], r["folder"])) for r in rows]


class HistoryBefore:
    """The assignment history as it stood when ``ticket`` arrived: later tickets and itself do not count.

    Replaying routing with today's history would let a ticket's own (or later) assignment decide it.
    """

    def __init__(self, store: Store, ticket: TicketRow) -> None:
        self.store, self.id, self.created = store, ticket.id, ticket.created_at

    def open_tickets(self, email: str) -> int:
        rows = self.store.query("SELECT COUNT(*) n FROM tickets WHERE owner=? AND id<? AND status IN "
                                "('new','open','pending')", (email, self.id))
        return int(rows[0]["n"])

    def last_assignee(self, team: str) -> str | None:
        rows = self.store.query("SELECT json_extract(detail, '$.owner') AS owner FROM events WHERE kind='assigned' "
                                "AND json_extract(detail, '$.team')=? AND json_extract(detail, '$.owner') IS NOT "
                                "NULL AND at<? ORDER BY id DESC LIMIT 1", (team, self.created))
        return rows[0]["owner"] if rows else None

    def last_owner_of(self, customer: str) -> str | None:
        rows = self.store.query("SELECT owner FROM tickets WHERE requester=? AND owner IS NOT NULL AND id<? "
                                "ORDER BY id DESC LIMIT 1", (customer, self.id))
        return rows[0]["owner"] if rows else None
