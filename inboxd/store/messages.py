"""Lookups of a ticket's stored mail that the reply and notification stages need."""

from __future__ import annotations

import json
from typing import Any

from inboxd.store.sqlite import Store


def agent_mail_stored(store: Store, message_id: str, agent: str) -> bool:
    """Whether this agent mail is already on a ticket, e.g. because it was sent to both Reply-To and support@."""
    return bool(store.query("SELECT 1 FROM messages WHERE message_id=? AND from_addr=? AND kind='agent'",
                            (message_id, agent)))


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
    """(Message-ID, References) of the customer's latest mail that has a Message-ID: an answer threads under it."""
    rows = store.query("SELECT message_id, \"references\" FROM messages WHERE ticket_id=? AND direction='in' "
                       "AND kind='customer' AND message_id IS NOT NULL ORDER BY id DESC LIMIT 1", (ticket_id,))
    if not rows:
        return None
    references = rows[0]["references"]
    return rows[0]["message_id"], list(json.loads(references)) if references else []
