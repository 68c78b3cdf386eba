"""Plain data passed between pipeline stages, and the names of every state.

Stages exchange frozen dataclasses rather than email.message objects, so each
stage can be tested on its own with hand-made values. States are StrEnums: they
are stored and shown as the plain words ("pending"), and a typo is a NameError
instead of a ticket stuck in a state nothing else knows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


@dataclass(frozen=True)
class OutgoingMail:
    """A mail ready for the outbox: its Message-ID is fixed before it is queued."""

    message_id: str
    mail_from: str
    recipients: tuple[str, ...]
    subject: str
    text: str
    raw: bytes


class TicketStatus(StrEnum):
    NEW = "new"  # nobody from the team has written yet
    OPEN = "open"
    PENDING = "pending"  # waiting on the customer: SLA clocks paused
    RESOLVED = "resolved"  # a customer reply reopens it
    CLOSED = "closed"  # a customer reply starts a new ticket


DONE = (TicketStatus.RESOLVED, TicketStatus.CLOSED)


class RawState(StrEnum):
    """Where one stored raw mail is: waiting, or finished in one of three ways."""

    RECEIVED = "received"
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    QUARANTINED = "quarantined"  # kept with its error, visible in `inboxd status`


class TimerState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # the ticket is pending: the remaining business minutes are kept
    STOPPED = "stopped"


@dataclass(frozen=True)
class Attachment:
    """An attachment as recorded on the ticket (its bytes stay in the raw message)."""

    filename: str | None
    content_type: str
    size: int
    omitted: bool = False  # True when the message was over the size limit and the part was not fetched


@dataclass(frozen=True)
class ParsedMessage:
    """Everything inboxd needs from one email, decoded to text.

    ``charset_declared``/``charset_used`` describe the body part that became ``text``,
    so a message can be re-decoded later; ``charset_guessed`` is True when the declared
    charset was missing, unknown or wrong and a detector chose another one.
    """

    message_id: str | None  # "<id@host>" with angle brackets, or None when absent
    in_reply_to: tuple[str, ...]  # Message-IDs, with angle brackets
    references: tuple[str, ...]
    from_name: str
    from_addr: str | None  # lower-cased addr-spec, None when no usable sender
    reply_to: tuple[str, ...]
    to: tuple[str, ...]  # lower-cased addresses
    cc: tuple[str, ...]
    subject: str  # decoded, CR/LF removed
    date: datetime | None  # timezone-aware when the Date header was parseable
    headers: tuple[tuple[str, str], ...]  # every header, names lower-cased, values decoded
    content_type: str  # top-level, e.g. "multipart/report"
    text: str  # readable body: text/plain, else HTML converted to text
    html: str | None  # the HTML body when there was one
    attachments: tuple[Attachment, ...]
    charset_declared: str | None
    charset_used: str | None
    charset_guessed: bool
    defects: tuple[str, ...] = field(default=())
    truncated: bool = False  # the raw message was cut at the size limit

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class Envelope:
    """Who sent a stored mail and what it answers, read from its headers alone when it is stored.

    The worker uses it to decide whether a newly arrived mail may be processed ahead of an older
    backlog: only if no waiting mail is from the same sender or is one it refers to.
    """

    sender: str | None
    message_id: str | None
    refers_to: tuple[str, ...]  # In-Reply-To and References
