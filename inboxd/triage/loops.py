"""Loop and backscatter protection: which mail must not get an acknowledgement.

An acknowledgement to an auto-responder starts a mail loop; one to a bounce or a
forged sender is backscatter. Such mail is still stored and threaded, it only
gets no automatic answer. Heuristics follow RFC 3834 and what large help desks
check in practice.
"""

from __future__ import annotations

import re

from inboxd.model import ParsedMessage

_OUT_OF_OFFICE = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response|antwort)|auto\s*:|out of (the )?office|ooo\b|away from|"
    r"on vacation|vacation reply|absence|abwesenheit|"
    r"自動回覆|自動回复|自动回复|自动答复|自動答覆|休假|不在辦公室|不在办公室|外出)",
    re.I,
)
_NO_REPLY = re.compile(r"^(no[-_.]?reply|do[-_.]?not[-_.]?reply|noreply|mailer-daemon|postmaster|"
                       r"bounces?|listserv|majordomo)([+-].*)?@", re.I)


def no_ack_reason(parsed: ParsedMessage, own_addresses: frozenset[str]) -> str | None:
    """Why this mail gets no acknowledgement, or None when it should get one."""
    sender = parsed.from_addr
    if not sender:
        return "no sender address"
    if sender in own_addresses:
        return "sent from our own address"
    auto = (parsed.header("auto-submitted") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto}"
    precedence = (parsed.header("precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    for name in ("x-autoreply", "x-autorespond", "list-id", "list-unsubscribe", "x-loop", "feedback-id"):
        if parsed.header(name) is not None:
            return f"{name} header"
    suppress = (parsed.header("x-auto-response-suppress") or "").lower()
    if any(word in suppress for word in ("all", "autoreply", "oof")):
        return f"X-Auto-Response-Suppress: {suppress}"
    if parsed.content_type == "multipart/report":
        return "delivery or read report"
    if _NO_REPLY.match(sender):
        return "no-reply or system address"
    return_path = parsed.header("return-path")
    if return_path is not None and return_path.strip() in ("<>", ""):
        return "empty return path (a bounce)"
    if _OUT_OF_OFFICE.match(parsed.subject):
        return "out-of-office subject"
    return None
