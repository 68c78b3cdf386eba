"""Lookups of a ticket's stored mail that the reply and notification stages need."""

from __future__ import annotations

import json
from typing import Any

from inboxd.store.sqlite import Store


def agent_mail_stored(store: Store, message_id: str, agent: str, kind: str = "agent") -> bool:
    """Whether this mail of the team (an agent's, or a ``note``) is already on a ticket, e.g. because it
    was sent to both Reply-To and support@."""
    return bool(store.query("SELECT 1 FROM messages WHERE message_id=? AND from_addr=? AND kind=?",
                            (message_id, agent, kind)))


def customer_message(store: Store, ticket_id: str, message_id: int | None = None) -> dict[str, Any] | None:
    """The customer mail a notification is about: the one with row id ``message_id``, else the ticket's latest."""
    if message_id is None:
        rows = store.query("SELECT * FROM messages WHERE ticket_id=? AND kind='customer' ORDER BY id DESC LIMIT 1",
                           (ticket_id,))
    else:
        rows = store.query("SELECT * FROM messages WHERE ticket_id=? AND kind='customer' AND id=?",
                           (ticket_id, message_id))
    return rows[0] if rows else None


def reply_anchor(store: Store, ticket_id: str) -> tuple[str, list[str]] | None:
    """(Message-ID, References) of the customer's latest mail that has a Message-ID: an answer threads under it.

    References that name inboxd's mail to the team (a notification the customer never saw) are dropped:
    an answer must thread on the customer's own messages and reveal nothing internal."""
    rows = store.query("SELECT message_id, \"references\" FROM messages WHERE ticket_id=? AND direction='in' "
                       "AND kind='customer' AND message_id IS NOT NULL ORDER BY id DESC LIMIT 1", (ticket_id,))
    if not rows:
        return None
    references = list(json.loads(rows[0]["references"] or "[]"))
    internal = store.internal_message_ids(references)
    return rows[0]["message_id"], [r for r in references if r not in internal]
