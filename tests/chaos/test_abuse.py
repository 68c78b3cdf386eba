"""Abuse: floods and mail loops. A flood from one forged sender gets at most ``ack_limit_per_hour``
acknowledgements while every mail is still stored and ticketed; an auto-responder on the customer's
side cannot start an endless exchange; two inboxd instances facing each other do not answer each
other's acknowledgements.

inboxd runs in-process through ``Daemon.run_once`` against the real Dovecot and SMTP sink (the sink
delivers acknowledgements for Dovecot users into their INBOX, where the "customer" reads them).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import time
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest

from inboxd.config import Settings, load_settings
from inboxd.daemon import Daemon
from inboxd.store.sqlite import Store

from hostile_helpers import SUPPORT, Mailbox, normal_mail, write_instance

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

FORGED = "ceo@bigbank.example"
LIMIT = 5


def run_once(settings: Settings) -> bool:
    return asyncio.run(Daemon(settings).run_once())


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def query(settings: Settings, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql, args)
    finally:
        store.close()


def flood_mail(n: int) -> bytes:
    """One of the flood: the same forged sender (its case and display name vary), a new subject each time."""
    address = FORGED.upper() if n % 3 == 0 else FORGED
    return normal_mail(address, f"Urgent wire transfer #{n}", name=f"Chief Executive {n % 7}",
                       body=f"Transfer request number {n}. Reply at once.",
                       extra={"Return-Path": f"<{FORGED}>", "Received": f"from mx{n % 5}.forged.example"})


def test_flood_from_one_forged_sender_gets_at_most_the_hourly_limit(tmp_path: Path, mailenv: Any) -> None:
    settings = load_settings(write_instance(tmp_path, mailenv, support={"ack_limit_per_hour": LIMIT}))
    started = time.monotonic()
    with Mailbox(mailenv.dovecot, "support") as box:
        box.append_many([flood_mail(n) for n in range(500)])  # MULTIAPPEND, 100 mails per command
        appended = time.monotonic() - started
        assert run_once(settings)
        box.append_many([flood_mail(n) for n in range(500, 1000)])  # more of it, in a later round
        box.append(normal_mail("customer@example.com", "My own question"))  # a real customer behind the flood
        assert box.count() == 1001
    assert run_once(settings)
    elapsed = time.monotonic() - started

    rows = query(settings, "SELECT state, ticket_id FROM raw_messages ORDER BY uid")
    assert len(rows) == 1001 and all(r["state"] == "processed" and r["ticket_id"] for r in rows)
    tickets = query(settings, "SELECT requester, COUNT(*) n FROM tickets GROUP BY requester")
    assert {r["requester"]: r["n"] for r in tickets} == {FORGED: 1000, "customer@example.com": 1}
    to_forged = [c for c in mailenv.smtp.messages if c.rcpt_tos == [FORGED]]
    assert len(to_forged) == LIMIT
    suppressed = query(settings, "SELECT COUNT(*) n FROM events WHERE kind='ack_suppressed' AND detail LIKE ?",
                       (f"%more than {LIMIT} acknowledgements%",))[0]["n"]
    assert suppressed == 1000 - LIMIT
    assert [c.rcpt_tos for c in mailenv.smtp.messages if c.rcpt_tos != [FORGED]] == [["customer@example.com"]]
    status = Store(settings.database).status()
    assert status["outbox_pending"] == 0 and status["outbox_failed"] == 0 and status["messages_waiting"] == 0
    print(f"\n[chaos/abuse] flood: 1000 mails from {FORGED} (appended 500 in {appended:.1f} s, all done in "
          f"{elapsed:.1f} s): 1000 tickets, {len(to_forged)} acknowledgements (limit {LIMIT}), "
          f"{suppressed} suppressed; the customer behind the flood got theirs")


# --- an auto-responder on the customer's side ------------------------------------------------------------


def auto_reply(ack: EmailMessage, style: str, n: int) -> bytes:
    """What the customer's mail system sends back when an acknowledgement lands in their INBOX."""
    msg = EmailMessage()
    msg["From"] = "Chen Mei <customer@example.com>"
    msg["To"] = SUPPORT
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain="example.com")
    if style == "rfc3834":  # a well-behaved vacation responder
        msg["Subject"] = f"Out of Office: {ack['Subject']}"
        msg["Auto-Submitted"] = "auto-replied"
        msg["In-Reply-To"] = ack["Message-ID"]
    elif style == "naive-threaded":  # no Auto-Submitted, keeps the subject (and its [SUP-n] tag)
        msg["Subject"] = f"Auto: {ack['Subject']}"
        msg["In-Reply-To"] = ack["Message-ID"]
    else:  # naive-fresh: no Auto-Submitted, no reference, its own subject: every reply looks like a new mail
        msg["Subject"] = f"Auto: I am away until Monday ({n})"
    msg.set_content("I am out of the office and will answer when I am back.")
    return msg.as_bytes()


# style: (most acknowledgements, most auto-replies) inboxd may cause
AUTO_RESPONDERS = {"rfc3834": (1, 1), "naive-threaded": (1, 1), "naive-fresh": (LIMIT, LIMIT)}


@pytest.mark.parametrize("style", list(AUTO_RESPONDERS))
def test_auto_responder_on_the_customer_side_does_not_loop(style: str, tmp_path: Path, mailenv: Any) -> None:
    settings = load_settings(write_instance(tmp_path, mailenv, support={"ack_limit_per_hour": LIMIT}))
    mailenv.dovecot.append("support", normal_mail("customer@example.com", "Where is my parcel?", name="Chen Mei"))
    seen = replies = rounds = 0
    for rounds in range(1, 16):
        assert run_once(settings)
        acks = [parse(raw) for raw in mailenv.dovecot.messages("customer")]
        new, seen = acks[seen:], len(acks)
        if not new:
            break
        for ack in new:  # the responder answers every acknowledgement that arrives
            replies += 1
            mailenv.dovecot.append("support", auto_reply(ack, style, replies))
    max_acks, max_replies = AUTO_RESPONDERS[style]
    assert rounds < 15, "the exchange did not stop"
    assert seen <= max_acks and replies <= max_replies
    stored = query(settings, "SELECT state, ticket_id FROM raw_messages")
    assert len(stored) == 1 + replies and all(r["state"] == "processed" and r["ticket_id"] for r in stored)
    print(f"\n[chaos/abuse] {style} auto-responder: stopped after {rounds} rounds, {seen} acknowledgements, "
          f"{replies} auto-replies")


# --- two inboxd instances facing each other ---------------------------------------------------------------

A_ADDRESS, B_ADDRESS = SUPPORT, "other@example.com"  # Dovecot users "support" and "other"


def customer_mail(sender: str, to: str, subject: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = make_msgid(domain="forged.example")
    msg.set_content("Please call me back.")
    return msg.as_bytes()


@pytest.mark.parametrize("crossed", [False, True], ids=["A-gets-mail-from-B", "each-gets-mail-from-the-other"])
def test_two_inboxd_instances_do_not_answer_each_other(crossed: bool, tmp_path: Path, mailenv: Any) -> None:
    """A forged mail to A "from B's support address": A acknowledges it to B; B sees A's automatic
    acknowledgement and must not answer it. Crossed: also a forged mail to B "from A"."""
    a = load_settings(write_instance(tmp_path / "a", mailenv, user="support", address=A_ADDRESS))
    b = load_settings(write_instance(tmp_path / "b", mailenv, user="other", address=B_ADDRESS))
    mailenv.dovecot.append("support", customer_mail(B_ADDRESS, A_ADDRESS, "Partnership question"))
    if crossed:
        mailenv.dovecot.append("other", customer_mail(A_ADDRESS, B_ADDRESS, "Question for B"))
    for _ in range(4):
        assert run_once(a) and run_once(b)
    total = len(mailenv.dovecot.messages("support")) + len(mailenv.dovecot.messages("other"))
    sent = [(parse(c.data)["From"].addresses[0].addr_spec, c.rcpt_tos) for c in mailenv.smtp.messages]
    if not crossed:
        assert total <= 2 and sent == [(A_ADDRESS, [B_ADDRESS])]
        assert not [s for s in sent if s[1] == [A_ADDRESS]], "B answered A's acknowledgement"
    else:
        assert total <= 4 and sorted(sent) == sorted([(A_ADDRESS, [B_ADDRESS]), (B_ADDRESS, [A_ADDRESS])])
    # each acknowledgement that arrived is stored and ticketed, marked as machine mail, never answered
    acks_in = [r for settings in (a, b) for r in query(
        settings, "SELECT no_ack_reason FROM messages WHERE direction='in' AND subject LIKE '[SUP-%'")]
    assert len(acks_in) == len(sent)
    assert all(r["no_ack_reason"] and "Auto-Submitted" in r["no_ack_reason"] for r in acks_in)
    rounds_ok = query(a, "SELECT COUNT(*) n FROM outbox")[0]["n"] + query(b, "SELECT COUNT(*) n FROM outbox")[0]["n"]
    assert rounds_ok == len(sent)
    print(f"\n[chaos/abuse] two instances ({'crossed' if crossed else 'one way'}): {total} mails in both "
          f"mailboxes after 4 rounds each, {len(sent)} acknowledgements")
