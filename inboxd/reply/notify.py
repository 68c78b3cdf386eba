"""Notify: the mail an agent gets when a ticket is theirs, and the alert a lead gets
when nobody could take one.

The notification's Reply-To is the support address with a plus-part that names
the ticket and carries a token (an HMAC over ticket and agent), e.g.
``support+SUP-1042.x7k2q9ab@example.com``: the agent's reply comes back to the
support mailbox and can be recognised as theirs, without trusting the From line.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING, Any

from inboxd.config import SupportSettings
from inboxd.mail.compose import address, compose
from inboxd.model import OutgoingMail
from inboxd.reply.render import one_line
from inboxd.sla.businesstime import format_due

if TYPE_CHECKING:
    from inboxd.store.tickets import TicketRow

TOKEN_LENGTH = 10


def reply_token(secret: str, ticket_id: str, agent_email: str) -> str:
    """A short token only inboxd can make: it proves a reply answers this agent's notification."""
    digest = hmac.new(secret.encode(), f"{ticket_id}:{agent_email.lower()}".encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode().lower()[:TOKEN_LENGTH]


def reply_address(support_address: str, ticket_id: str, token: str) -> str:
    local, _, domain = support_address.partition("@")
    return f"{local}+{ticket_id}.{token}@{domain}"


def parse_reply_address(address: str, support_address: str) -> tuple[str, str] | None:
    """(ticket_id, token) from a plus-address made by ``reply_address``, else None."""
    local, _, domain = support_address.partition("@")
    m = re.fullmatch(rf"{re.escape(local)}\+([A-Za-z0-9]+-\d+)\.([a-z2-7]+)@{re.escape(domain)}", address, re.I)
    return (m.group(1).upper(), m.group(2).lower()) if m else None


def internal_mail(support: SupportSettings, *, to: list[str], subject: str, body: str, ticket_id: str,
                  now: datetime, kind: str, cc: list[str] | None = None, reply_to: str | None = None,
                  thread: Sequence[str] = ()) -> OutgoingMail:
    """A mail from inboxd to the team (never to a customer), marked as machine-generated.

    ``thread``: the Message-IDs of the earlier mail to the team about this ticket (``Outbox.internal_thread``);
    this one answers the last of them, so an agent's mail client shows a ticket as one conversation.
    """
    cc = cc or []
    domain = support.address.rpartition("@")[2]
    message_id = make_msgid(idstring=f"{kind}.{ticket_id}", domain=domain)
    headers = [("From", address(support.name, support.address)), ("To", ", ".join(to))]
    headers += [("Cc", ", ".join(cc))] if cc else []
    headers += [("Reply-To", reply_to)] if reply_to else []
    headers += [("Subject", subject), ("Date", format_datetime(now)), ("Message-ID", message_id),
                ("Auto-Submitted", "auto-generated"), ("X-Auto-Response-Suppress", "All"),
                ("X-Inboxd-Ticket", ticket_id)]
    if thread:
        headers += [("In-Reply-To", thread[-1]), ("References", " ".join(dict.fromkeys([thread[0], *thread[-9:]])))]
    return OutgoingMail(message_id=message_id, mail_from=support.address, recipients=tuple(dict.fromkeys(to + cc)),
                        subject=one_line(subject), text=body, raw=compose(headers, body))


def due_line(support: SupportSettings, due: tuple[str, datetime | None] | None) -> str:
    """The answer the team owes now: the clock that runs (first or next response), or why none does."""
    if due is None:
        return "no SLA target (no response clock runs for this ticket)"
    clock, at = due
    what = clock.replace("_", " ")
    if at is None:
        return f"paused while the ticket waits on the customer ({what})"
    return f"{format_due(at, support.timezone, 'en')} ({what})"


def build_notification(*, support: SupportSettings, ticket: TicketRow, tags: list[str], owner: str,
                       watchers: list[str], secret: str, message: dict[str, Any],
                       due: tuple[str, datetime | None] | None, why: str, now: datetime,
                       thread: Sequence[str] = ()) -> OutgoingMail:
    """The owner's copy of a customer mail, with everything needed to answer it from the mail client.

    ``due`` is the response clock that runs now, so a follow-up shows when the next answer is due,
    not the first response that was already given."""
    ticket_id = ticket.ticket_id
    body = "\n".join([
        f"Ticket {ticket_id} is assigned to you ({why}).",
        "Reply to this mail to answer the customer; your reply is sent from the support address.",
        "",
        f"Customer:  {ticket.requester_name} <{ticket.requester}>".strip(),
        f"Category:  {ticket.category or 'not sorted (needs triage)'}",
        f"Priority:  {ticket.priority}",
        f"Tags:      {', '.join(tags) or '-'}",
        f"Language:  {ticket.language}",
        f"Team:      {ticket.team or '-'}",
        f"Status:    {ticket.status}",
        f"Reply due: {due_line(support, due)}",
        "",
        f"----- {message['from_name'] or message['from_addr']} wrote ({message['created_at'][:16]} UTC) -----",
        "",
        message["body"].strip(),
        "",
    ])
    token = reply_token(secret, ticket_id, owner)
    return internal_mail(support, to=[owner], cc=[w for w in watchers if w != owner],
                 subject=f"[{ticket_id}] {ticket.subject}", body=body, ticket_id=ticket_id, now=now,
                 reply_to=reply_address(support.address, ticket_id, token), kind="notify", thread=thread)


def build_queue_alert(*, support: SupportSettings, ticket: TicketRow, lead: str, team: str,
                      considered: tuple[tuple[str, str], ...], now: datetime,
                      thread: Sequence[str] = ()) -> OutgoingMail:
    """Tell a team lead that a ticket waits on the team queue because nobody could take it."""
    lines = [f"Ticket {ticket.ticket_id} is waiting on the {team} queue: nobody could take it.", "",
             "Team members:"] + [f"  {email}: {why}" for email, why in considered] + [
             "", f"Subject:  {ticket.subject}", f"Customer: {ticket.requester}",
             f"Priority: {ticket.priority}", "",
             "Assign it by replying to the notification with a line: #assign NAME"]
    return internal_mail(support, to=[lead], subject=f"[{ticket.ticket_id}] Unassigned: {ticket.subject}",
                 body="\n".join(lines) + "\n", ticket_id=ticket.ticket_id, now=now, kind="alert", thread=thread)
