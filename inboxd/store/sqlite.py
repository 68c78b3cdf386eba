"""The SQLite store: one object per thread, made of one repository per table group.

``Ledger`` (raw mail, checkpoints), ``Tickets`` (tickets, messages, events, tags,
corrections), ``Outbox``, and ``store.sla`` (SLA timers and alerts) all share the one
connection and transaction helper of ``base.Connection``. A second backend implements the
same methods; the stages only ever see a ``Store``.
"""

from __future__ import annotations

import secrets
from functools import cached_property
from typing import TYPE_CHECKING, Any

from inboxd.model import TicketStatus
from inboxd.store.ledger import Ledger
from inboxd.store.outbox import Outbox
from inboxd.store.tickets import Tickets

if TYPE_CHECKING:
    from inboxd.store.sla import SlaRepository


class Store(Ledger, Tickets, Outbox):
    """The database as the stages use it: open one per thread (``Store(path)``), close it when done."""

    @cached_property
    def sla(self) -> SlaRepository:
        """The SLA clocks' SQL, in its own module (imported here because it imports this one)."""
        from inboxd.store.sla import SlaRepository

        return SlaRepository(self)

    def secret(self, key: str) -> str:
        """A random secret created once and kept in the database (e.g. for reply tokens)."""
        with self.tx():
            rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
            if rows:
                return str(rows[0]["value"])
            value = secrets.token_urlsafe(32)
            self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            return value

    def status(self) -> dict[str, Any]:
        """What an operator checks first: is mail coming in, and is anything stuck."""
        one = lambda sql: self.query(sql)[0]["n"]  # noqa: E731
        by_status = {s.value: 0 for s in TicketStatus}
        by_status |= {r["status"]: r["n"] for r in self.query("SELECT status, COUNT(*) n FROM tickets GROUP BY status")}
        return {
            "messages_stored": one("SELECT COUNT(*) n FROM raw_messages"),
            "messages_waiting": one("SELECT COUNT(*) n FROM raw_messages WHERE state='received'"),
            "messages_quarantined": one("SELECT COUNT(*) n FROM raw_messages WHERE state='quarantined'"),
            "tickets": by_status,
            "machine_mail": one("SELECT COUNT(*) n FROM events WHERE kind='closed_on_arrival'"),
            "outbox_pending": one("SELECT COUNT(*) n FROM outbox WHERE state='pending'"),
            "outbox_failed": one("SELECT COUNT(*) n FROM outbox WHERE state='failed'"),
            "mailboxes": self.query("SELECT account, folder, uidvalidity, last_uid, last_fetch_at, last_error "
                                    "FROM checkpoints ORDER BY account, folder"),
        }
