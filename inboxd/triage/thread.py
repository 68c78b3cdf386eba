"""Thread: decide which ticket an incoming mail belongs to.

A mail joins an existing ticket when it carries the ticket's subject tag or
references one of its messages, and only when the sender is a participant of
that ticket or the reference is to a mail inboxd itself sent. Otherwise it opens
a new ticket: typing someone else's ``[SUP-12]`` into a subject must never give
a stranger access to their conversation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from inboxd.model import ParsedMessage, TicketStatus


class TicketFields(Protocol):
    """What threading reads of a ticket, by column name: the store's ``TicketRow`` and a plain dict both fit.

    Read by name rather than as ``ticket.status`` so this module needs nothing from the store
    and a stand-in index can hand out dicts.
    """

    def __getitem__(self, key: str, /) -> object: ...


class ThreadIndex(Protocol):
    """The lookups threading needs; the Store provides them."""

    def ticket(self, ticket_id: str) -> TicketFields | None: ...

    def participants(self, ticket_id: str) -> dict[str, str]: ...

    def tickets_for_message_ids(self, ids: list[str]) -> list[tuple[str, str]]: ...


@dataclass(frozen=True)
class ThreadMatch:
    """Where a mail goes: ``ticket_id`` None means a new ticket; ``reason`` says why."""

    ticket_id: str | None
    reason: str
    follow_up_of: str | None = None  # a closed ticket the new one continues


def subject_tags(subject: str, prefix: str) -> list[str]:
    """Ticket IDs written as ``[PREFIX-n]`` in a subject, in order of appearance."""
    return [f"{prefix}-{n}" for n in re.findall(rf"\[{re.escape(prefix)}-(\d+)\]", subject, re.I)]


def find_ticket(parsed: ParsedMessage, index: ThreadIndex, prefix: str) -> ThreadMatch:
    sender = parsed.from_addr or ""
    refused: list[str] = []
    # References first: they are set by the mail client and point at an exact mail.
    refs = list(dict.fromkeys([*parsed.in_reply_to, *reversed(parsed.references)]))
    for ticket_id, direction in index.tickets_for_message_ids(refs):
        if direction == "out" or sender in index.participants(ticket_id):
            return _joinable(index, ticket_id, f"references a message of {ticket_id}")
        refused.append(ticket_id)
    for ticket_id in subject_tags(parsed.subject, prefix):
        if index.ticket(ticket_id) is None:
            continue
        if sender in index.participants(ticket_id):
            return _joinable(index, ticket_id, f"subject tag [{ticket_id}] from a participant")
        refused.append(ticket_id)
    if refused:
        return ThreadMatch(None, f"names {', '.join(dict.fromkeys(refused))} but {sender} is not a participant")
    return ThreadMatch(None, "no ticket tag or known reference")


def _joinable(index: ThreadIndex, ticket_id: str, reason: str) -> ThreadMatch:
    """A closed ticket stays closed: the mail starts a follow-up ticket instead."""
    ticket = index.ticket(ticket_id)
    if ticket is not None and ticket["status"] == TicketStatus.CLOSED:
        return ThreadMatch(None, f"{reason}, which is closed", follow_up_of=ticket_id)
    return ThreadMatch(ticket_id, reason)
