"""Acknowledge: the automatic answer that tells a customer their ticket number and
when a human will answer.

This module only builds the mail; the pipeline queues it in the outbox in the
same transaction that creates the ticket, and ``send`` delivers it.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import format_datetime, make_msgid

from inboxd.config import SUPPORTED_LANGUAGES, SupportSettings
from inboxd.mail.compose import address, compose
from inboxd.model import OutgoingMail, ParsedMessage
from inboxd.reply.render import Renderer, one_line
from inboxd.sla.businesstime import Duration, format_due, format_duration

EXCERPT_CHARS = 600


def reply_language(detected: str, default: str) -> str:
    return detected if detected in SUPPORTED_LANGUAGES else default


def expected_reply(support: SupportSettings, received: datetime, target: Duration) -> datetime:
    """When the first answer is due: the first-response target counted in business time."""
    return support.calendar.add(received, target)


def build_ack(*, ticket_id: str, parsed: ParsedMessage, language: str, support: SupportSettings,
              renderer: Renderer, due: datetime, target: Duration, now: datetime) -> OutgoingMail:
    assert parsed.from_addr is not None
    context = {
        "ticket_id": ticket_id,
        "subject": one_line(parsed.subject),
        "customer_name": one_line(parsed.from_name),
        "support_name": support.name,
        "support_address": support.address,
        "due_text": format_due(due, support.timezone, language),
        "target_text": format_duration(target, language),
        "excerpt": parsed.text.strip()[:EXCERPT_CHARS],
    }
    rendered = renderer.render("ack", language, context)
    domain = support.address.rpartition("@")[2]
    message_id = make_msgid(idstring=f"ack.{ticket_id}", domain=domain)
    headers = [("From", address(support.name, support.address)), ("To", address(parsed.from_name, parsed.from_addr)),
               ("Subject", rendered.subject), ("Date", format_datetime(now)), ("Message-ID", message_id)]
    if parsed.message_id:
        headers += [("In-Reply-To", parsed.message_id),
                    ("References", " ".join([*parsed.references[-9:], parsed.message_id]))]
    headers += [("Auto-Submitted", "auto-replied"),
                ("X-Auto-Response-Suppress", "All"),  # keeps Outlook out-of-office replies from answering us
                ("X-Inboxd-Ticket", ticket_id)]
    return OutgoingMail(message_id=message_id, mail_from=support.address, recipients=(parsed.from_addr,),
                        subject=rendered.subject, text=rendered.text,
                        raw=compose(headers, rendered.text, rendered.html))
