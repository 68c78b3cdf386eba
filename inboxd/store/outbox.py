"""The outbox: every mail and webhook inboxd will send, queued in the transaction that decided it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from inboxd.store.base import Connection, iso

INTERNAL_KINDS = ("notification", "queue_alert", "agent_notice", "note_copy", "sla_alert")  # mail to the team


@dataclass(frozen=True)
class OutboxRow:
    """One queued mail (or webhook: ``recipients`` is then the URL) as the sender reads it."""

    id: int
    ticket_id: str | None
    kind: str
    message_id: str
    mail_from: str
    recipients: list[str]
    raw: bytes
    attempts: int
    created_at: datetime

    @classmethod
    def from_row(cls, r: dict[str, Any]) -> OutboxRow:
        return cls(r["id"], r["ticket_id"], r["kind"], r["message_id"], r["mail_from"], json.loads(r["recipients"]),
                   r["raw"], r["attempts"], datetime.fromisoformat(r["created_at"]))


class Outbox(Connection):
    def enqueue(self, *, ticket_id: str | None, kind: str, message_id: str, mail_from: str,
                recipients: list[str], raw: bytes, now: datetime, urgent: bool = False) -> None:
        """Queue a mail; an ``urgent`` one is sent before the rest of the queue (``due_urgent``)."""
        with self.tx():
            self.conn.execute(
                "INSERT INTO outbox (ticket_id, kind, message_id, mail_from, recipients, raw, "
                "next_attempt_at, created_at, urgent) VALUES (?,?,?,?,?,?,?,?,?)",
                (ticket_id, kind, message_id, mail_from, json.dumps(recipients), raw, iso(now), iso(now),
                 int(urgent)))

    def is_outgoing(self, message_id: str) -> bool:
        """Whether inboxd itself queued a mail with this Message-ID (its copy in the Sent folder is no answer)."""
        return bool(self.query("SELECT 1 FROM outbox WHERE message_id=?", (message_id,)))

    def internal_thread(self, ticket_id: str) -> list[str]:
        """Message-IDs of the mail inboxd sent the team about a ticket, oldest first: the next one
        threads under them in the agents' mail clients."""
        marks = ",".join("?" * len(INTERNAL_KINDS))
        return [r["message_id"] for r in self.query(
            f"SELECT message_id FROM outbox WHERE ticket_id=? AND kind IN ({marks}) ORDER BY id",
            (ticket_id, *INTERNAL_KINDS))]

    def internal_message_ids(self, message_ids: list[str]) -> set[str]:
        """Which of these Message-IDs are inboxd's mail to the team: never to be named to a customer."""
        if not message_ids:
            return set()
        marks = ",".join("?" * len(message_ids))
        kinds = ",".join("?" * len(INTERNAL_KINDS))
        return {r["message_id"] for r in self.query(
            f"SELECT message_id FROM outbox WHERE message_id IN ({marks}) AND kind IN ({kinds})",
            (*message_ids, *INTERNAL_KINDS))}

    def acks_sent_to(self, address: str, since: datetime) -> int:
        """Acknowledgements queued for ``address`` since ``since`` (for the hourly limit)."""
        rows = self.query("SELECT COUNT(*) AS n FROM outbox WHERE kind='ack' AND recipients=? "
                          "AND created_at>=?", (json.dumps([address]), iso(since)))
        return int(rows[0]["n"])

    def due_outbox(self, now: datetime | None, after_id: int = 0, limit: int = 50) -> list[OutboxRow]:
        """Pending mail whose retry time has come (all pending mail when ``now`` is None), by id."""
        if now is None:
            rows = self.query("SELECT * FROM outbox WHERE state='pending' AND id>? ORDER BY id LIMIT ?",
                              (after_id, limit))
        else:
            rows = self.query("SELECT * FROM outbox WHERE state='pending' AND next_attempt_at<=? AND id>? "
                              "ORDER BY id LIMIT ?", (iso(now), after_id, limit))
        return [OutboxRow.from_row(r) for r in rows]

    def due_urgent(self, now: datetime | None, limit: int = 20) -> list[OutboxRow]:
        """Urgent pending mail that is due (all of it when ``now`` is None), by id."""
        rows = self.query("SELECT * FROM outbox WHERE state='pending' AND urgent=1 AND next_attempt_at<=? "
                          "ORDER BY id LIMIT ?", ("9999" if now is None else iso(now), limit))
        return [OutboxRow.from_row(r) for r in rows]

    def next_outbox_time(self) -> datetime | None:
        rows = self.query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state='pending'")
        return datetime.fromisoformat(rows[0]["t"]) if rows and rows[0]["t"] else None

    def mark_sent(self, outbox_id: int, now: datetime) -> None:
        """Record that the server took the mail: committed before anything else is sent, so a crash
        sends it again at most once; the sender's next page puts it on disk (``make_durable``)."""
        with self.tx():
            self.conn.execute("UPDATE outbox SET state='sent', sent_at=?, attempts=attempts+1, last_error=NULL "
                              "WHERE id=?", (iso(now), outbox_id))

    def mark_retry(self, outbox_id: int, error: str, retry_at: datetime) -> None:
        with self.tx():
            self.conn.execute("UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt_at=? "
                              "WHERE id=?", (error, iso(retry_at), outbox_id))

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.tx():
            self.conn.execute("UPDATE outbox SET state='failed', attempts=attempts+1, last_error=? WHERE id=?",
                              (error, outbox_id))
