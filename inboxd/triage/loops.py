"""Loop and backscatter protection: which mail must not get an acknowledgement.

An acknowledgement to an auto-responder starts a mail loop; one to a bounce or a
forged sender is backscatter. Such mail is still stored and threaded, it only
gets no automatic answer. Heuristics follow RFC 3834 and what large help desks
check in practice.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import Message

from inboxd.model import ParsedMessage

MAX_REPORT_BYTES = 1_000_000  # of a bounce read for its report (the returned mail may be large)

_OUT_OF_OFFICE = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto\s*:|out of (the )?office|ooo\b|away from|"
    r"on vacation|vacation reply|absence|abwesenheit|"
    r"自動回覆|自動回复|自动回复|自动答复|自動答覆|休假|不在辦公室|不在办公室|外出)",
    re.I,
)
_NO_REPLY = re.compile(r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply|listserv|majordomo)([+-].*)?@", re.I)
_BOUNCER = re.compile(r"^(mailer-daemon|postmaster|bounces?)([+-].*)?@", re.I)


AUTO_REPLY, BOUNCE, BULK = "auto-reply", "bounce", "bulk"  # kinds of machine mail, also its tags


def no_ack_reason(parsed: ParsedMessage, own_addresses: frozenset[str]) -> str | None:
    """Why this mail gets no acknowledgement, or None when it should get one."""
    sender = parsed.from_addr
    if not sender:
        return "no sender address"
    if sender in own_addresses:
        return "sent from our own address"
    machine = machine_mail(parsed)
    return machine[1] if machine else None


def machine_mail(parsed: ParsedMessage) -> tuple[str, str] | None:
    """(kind, reason) when no person wrote this mail: a bounce or delivery report, an automatic
    reply, or bulk and list mail. Such mail is kept on record but creates no work for the team."""
    sender = parsed.from_addr or ""
    auto = (parsed.header("auto-submitted") or "").strip().lower()
    if parsed.content_type == "multipart/report":
        report = (parsed.header("content-type") or "").lower()
        return (BOUNCE if "delivery-status" in report else AUTO_REPLY), "delivery or read report"
    return_path = parsed.header("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return BOUNCE, "empty return path (a bounce)"
    if _BOUNCER.match(sender):
        return BOUNCE, "no-reply or system address"
    if auto and not auto.startswith("no"):
        return AUTO_REPLY, f"Auto-Submitted: {auto}"
    precedence = (parsed.header("precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return (AUTO_REPLY if precedence == "auto_reply" else BULK), f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "x-loop"):
        if parsed.header(name) is not None:
            return AUTO_REPLY, f"{name} header"
    for name in ("list-id", "list-unsubscribe", "feedback-id"):
        if parsed.header(name) is not None:
            return BULK, f"{name} header"
    suppress = (parsed.header("x-auto-response-suppress") or "").lower()
    if any(word in suppress for word in ("all", "autoreply", "oof")):
        return AUTO_REPLY, f"X-Auto-Response-Suppress: {suppress}"
    if _NO_REPLY.match(sender):
        return AUTO_REPLY, "no-reply or system address"
    if _OUT_OF_OFFICE.match(parsed.subject):
        return AUTO_REPLY, "out-of-office subject"
    return None


@dataclass(frozen=True)
class Bounce:
    """What a delivery report says about one of our mails: which, to whom, and why it failed."""

    original_message_id: str | None
    recipient: str | None
    reason: str  # e.g. "5.1.1 <amy@example.com>: Recipient address rejected: User unknown"


def bounce_report(raw: bytes) -> Bounce | None:
    """Read a delivery status notification (RFC 3464): the failed recipient, the server's reason,
    and the Message-ID of the mail that bounced (from its returned copy or headers). None if the
    mail holds no delivery-status part; never raises."""
    try:
        msg = email.message_from_bytes(raw[:MAX_REPORT_BYTES], policy=email.policy.compat32)
        status: Message | None = None
        original: str | None = None
        for part in msg.walk():
            ctype = part.get_content_type()
            if ctype == "message/delivery-status" and status is None:
                blocks = part.get_payload()
                status = next((b for b in blocks[1:] if isinstance(b, Message)), None) if isinstance(blocks, list) \
                    else None
            elif ctype == "message/rfc822" and original is None:
                inner = part.get_payload()
                if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                    original = inner[0].get("message-id")
            elif ctype == "text/rfc822-headers" and original is None:
                data = part.get_payload(decode=True)
                text = data.decode("utf-8", "replace") if isinstance(data, bytes) else str(part.get_payload())
                original = email.message_from_string(text, policy=email.policy.compat32).get("message-id")
        if status is None:
            return None
        recipient = (status.get("final-recipient") or status.get("original-recipient") or "").partition(";")[2]
        diagnostic = " ".join((status.get("diagnostic-code") or "").partition(";")[2].split())
        code = (status.get("status") or "").strip()
        reason = " ".join(p for p in (code, diagnostic or (status.get("action") or "").strip()) if p)
        ids = re.findall(r"<[^<>\s]+>", original or "")
        return Bounce(ids[0] if ids else None, recipient.strip().lower() or None, reason or "delivery failed")
    except Exception:  # a malformed report is still a bounce; only its details are unknown
        return Bounce(None, None, "delivery failed (the report could not be read)")
