"""Tickets and what hangs off them: participants, messages, the append-only event log, tags, the
team's corrections (training examples) and the assignment history the strategies read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from inboxd.model import TicketStatus
from inboxd.store.base import Connection, iso


@dataclass(frozen=True)
class TicketRow:
    """One row of ``tickets``, typed: one field per column, in the table's column order.

    Timestamps stay the stored UTC ISO-8601 text (``iso()``) rather than ``datetime``: that
    text is what ``tickets show --json`` prints and what SQL compares (``created_at < ?``),
    a ``datetime`` would not print back byte-identical (``isoformat()`` drops ``.000000``),
    and only one caller needs a time (``first_response_due``, parsed where it is used).
    ``status`` is a ``TicketStatus`` (a StrEnum, so it still equals and prints as its word);
    ``spam`` is a ``bool``.

    inboxd's code reads attributes (``ticket.owner``). The read-only mapping side
    (``ticket["owner"]``, ``keys()``, iteration over the column names) exists for older
    callers, for plain-dict stand-ins in tests and for Jinja templates; ``as_dict()`` is the
    row as JSON and templates want it, in column order.
    """

    id: int
    ticket_id: str
    subject: str
    requester: str
    requester_name: str
    status: TicketStatus
    language: str
    created_at: str
    updated_at: str
    first_response_due: str | None
    follow_up_of: str | None
    category: str | None
    confidence: float | None
    priority: str
    spam: bool
    team: str | None
    owner: str | None
    sla_policy: str | None
    first_response_at: str | None

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> TicketRow:
        """A ``SELECT *`` row (extra columns of a join are ignored)."""
        return cls(id=r["id"], ticket_id=r["ticket_id"], subject=r["subject"], requester=r["requester"],
                   requester_name=r["requester_name"], status=TicketStatus(r["status"]), language=r["language"],
                   created_at=r["created_at"], updated_at=r["updated_at"],
                   first_response_due=r["first_response_due"], follow_up_of=r["follow_up_of"],
                   category=r["category"], confidence=r["confidence"], priority=r["priority"],
                   spam=bool(r["spam"]), team=r["team"], owner=r["owner"], sla_policy=r["sla_policy"],
                   first_response_at=r["first_response_at"])

    def keys(self) -> tuple[str, ...]:
        return _TICKET_COLUMNS

    def __iter__(self) -> Iterator[str]:
        return iter(_TICKET_COLUMNS)

    def __getitem__(self, key: str) -> Any:
        if key not in _TICKET_COLUMNS:
            raise KeyError(key)
        return getattr(self, key)

    def as_dict(self) -> dict[str, Any]:
        """The row as a plain dict, in column order: ``status`` as its plain word, ``spam`` as a bool."""
        return {key: getattr(self, key) for key in _TICKET_COLUMNS} | {"status": str(self.status)}


_TICKET_COLUMNS = tuple(f.name for f in fields(TicketRow))


class Tickets(Connection):
    def create_ticket(self, prefix: str, *, subject: str, requester: str, requester_name: str,
                      language: str, now: datetime, follow_up_of: str | None = None) -> str:
        """Insert a ticket and return its ID, e.g. SUP-1042, numbered by the row id."""
        with self.tx():
            cur = self.conn.execute(
                "INSERT INTO tickets (ticket_id, subject, requester, requester_name, status, language, "
                "created_at, updated_at, follow_up_of) VALUES ('', ?, ?, ?, 'new', ?, ?, ?, ?)",
                (subject, requester, requester_name, language, iso(now), iso(now), follow_up_of))
            ticket_id = f"{prefix}-{cur.lastrowid}"
            self.conn.execute("UPDATE tickets SET ticket_id=? WHERE id=?", (ticket_id, cur.lastrowid))
            self.add_participant(ticket_id, requester, "requester")
            return ticket_id

    def ticket(self, ticket_id: str) -> TicketRow | None:
        rows = self.query("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,))
        return TicketRow.from_row(rows[0]) if rows else None

    def update_ticket(self, ticket_id: str, now: datetime, **fields: Any) -> None:
        sets = "".join(f"{k}=?, " for k in fields)
        with self.tx():
            self.conn.execute(f"UPDATE tickets SET {sets}updated_at=? WHERE ticket_id=?",
                              (*fields.values(), iso(now), ticket_id))

    def add_participant(self, ticket_id: str, address: str, role: str) -> None:
        with self.tx():
            self.conn.execute("INSERT OR IGNORE INTO participants (ticket_id, address, role) VALUES (?,?,?)",
                              (ticket_id, address.lower(), role))

    def participants(self, ticket_id: str) -> dict[str, str]:
        return {r["address"]: r["role"] for r in
                self.query("SELECT address, role FROM participants WHERE ticket_id=?", (ticket_id,))}

    def add_message(self, ticket_id: str, *, direction: str, kind: str, now: datetime,
                    **fields: Any) -> int:
        row = {"ticket_id": ticket_id, "direction": direction, "kind": kind, "created_at": iso(now)}
        for key, value in fields.items():
            row[key] = json.dumps(list(value)) if isinstance(value, (list, tuple)) else value
        columns = ", ".join(f'"{c}"' for c in row)  # quoted ("references" is SQL); names from our code
        with self.tx():  # plain SQL: sqlite-utils' insert() inspects the table each time (0.4 ms a message)
            cur = self.conn.execute(f"INSERT INTO messages ({columns}) VALUES ({', '.join('?' * len(row))})",
                                    tuple(row.values()))
            return int(cur.lastrowid or 0)

    def tickets_for_message_ids(self, ids: list[str]) -> list[tuple[str, str]]:
        """(ticket_id, direction) of stored messages carrying any of these Message-IDs."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.query(f"SELECT ticket_id, direction FROM messages WHERE message_id IN ({marks})", tuple(ids))
        return [(r["ticket_id"], r["direction"]) for r in rows]

    def unanswered(self, ticket_id: str) -> int:
        """Customer mails on the ticket since the team last wrote (acknowledgements do not count)."""
        rows = self.query(
            "SELECT COUNT(*) n FROM messages WHERE ticket_id=? AND direction='in' AND id > COALESCE("
            "(SELECT MAX(id) FROM messages WHERE ticket_id=? AND direction='out' AND kind!='ack'), 0)",
            (ticket_id, ticket_id))
        return int(rows[0]["n"])

    def inbound_duplicate(self, message_id: str, from_addr: str) -> str | None:
        """Ticket of an earlier copy of the same customer mail (same Message-ID and sender)."""
        rows = self.query("SELECT ticket_id FROM messages WHERE message_id=? AND from_addr=? "
                          "AND direction='in' LIMIT 1", (message_id, from_addr))
        return rows[0]["ticket_id"] if rows else None

    def log_event(self, ticket_id: str, kind: str, now: datetime, actor: str = "inboxd",
                  **detail: Any) -> None:
        with self.tx():
            self.conn.execute("INSERT INTO events (ticket_id, at, kind, actor, detail) VALUES (?,?,?,?,?)",
                              (ticket_id, iso(now), kind, actor, json.dumps(detail, ensure_ascii=False)))

    # --- classification and the team's corrections ------------------------------------

    def tags(self, ticket_id: str) -> list[str]:
        return [r["tag"] for r in self.query("SELECT tag FROM ticket_tags WHERE ticket_id=? ORDER BY rowid",
                                             (ticket_id,))]

    def add_tags(self, ticket_id: str, tags: list[str] | tuple[str, ...]) -> None:
        with self.tx():
            self.conn.executemany("INSERT OR IGNORE INTO ticket_tags (ticket_id, tag) VALUES (?, ?)",
                                  [(ticket_id, t) for t in tags])

    def _ticket_text(self, ticket_id: str) -> str:
        """The customer's first mail, which is what the classifier saw."""
        rows = self.query("SELECT subject, body FROM messages WHERE ticket_id=? AND direction='in' "
                          "ORDER BY id LIMIT 1", (ticket_id,))
        return f"{rows[0]['subject']}\n{rows[0]['body']}" if rows else ""

    def _correct(self, ticket_id: str, field: str, old: str | None, new: str | None, actor: str,
                 now: datetime) -> None:
        self.conn.execute("INSERT INTO corrections (ticket_id, text, field, old_value, new_value, actor, at) "
                          "VALUES (?,?,?,?,?,?,?)", (ticket_id, self._ticket_text(ticket_id), field, old, new,
                                                     actor, iso(now)))

    def set_category(self, ticket_id: str, category: str, actor: str, now: datetime) -> None:
        """An agent's category change: applied, logged, and kept as a training example."""
        with self.tx():
            ticket = self.ticket(ticket_id)
            if ticket is None:
                raise KeyError(ticket_id)
            self.update_ticket(ticket_id, now, category=category, confidence=None)
            self._correct(ticket_id, "category", ticket.category, category, actor, now)
            self.log_event(ticket_id, "category_changed", now, actor=actor, old=ticket.category, new=category)

    def tag(self, ticket_id: str, tag: str, actor: str, now: datetime, *, remove: bool = False) -> None:
        """An agent adds or removes a tag: applied, logged, and kept as a training example."""
        with self.tx():
            if remove:
                self.conn.execute("DELETE FROM ticket_tags WHERE ticket_id=? AND tag=?", (ticket_id, tag))
            else:
                self.add_tags(ticket_id, [tag])
            self._correct(ticket_id, "tag", tag if remove else None, None if remove else tag, actor, now)
            self.log_event(ticket_id, "tag_removed" if remove else "tag_added", now, actor=actor, tag=tag)

    def category_corrections(self) -> list[tuple[str, str]]:
        """(text, category) of every category correction, latest per ticket."""
        rows = self.query("SELECT text, new_value FROM corrections WHERE id IN (SELECT MAX(id) FROM corrections "
                          "WHERE field='category' GROUP BY ticket_id)")
        return [(r["text"], r["new_value"]) for r in rows]

    # --- assignment ---------------------------------------------------------------------

    def open_tickets(self, email: str) -> int:
        rows = self.query("SELECT COUNT(*) n FROM tickets WHERE owner=? AND status IN ('new','open','pending')",
                          (email,))
        return int(rows[0]["n"])

    def last_assignee(self, team: str) -> str | None:
        rows = self.query("SELECT json_extract(detail, '$.owner') AS owner FROM events WHERE kind='assigned' "
                          "AND json_extract(detail, '$.team')=? AND json_extract(detail, '$.owner') IS NOT NULL "
                          "ORDER BY id DESC LIMIT 1", (team,))
        return rows[0]["owner"] if rows else None

    def resolved_before(self, before: datetime, limit: int = 500) -> list[str]:
        """Resolved tickets not touched since ``before`` (a customer reply would have reopened them)."""
        rows = self.query("SELECT ticket_id FROM tickets WHERE status='resolved' AND updated_at<? ORDER BY id "
                          "LIMIT ?", (iso(before), limit))
        return [r["ticket_id"] for r in rows]

    def last_owner_of(self, customer: str) -> str | None:
        rows = self.query("SELECT owner FROM tickets WHERE requester=? AND owner IS NOT NULL ORDER BY id DESC "
                          "LIMIT 1", (customer,))
        return rows[0]["owner"] if rows else None
