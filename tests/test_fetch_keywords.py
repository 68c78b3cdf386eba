"""IMAP keywords after processing, against the real Dovecot: batched, and still on every mail.

``Fetcher.mark_processed`` sets ``$inboxd`` on a page of mails with one STORE and pipelines
the one-per-ticket ``$inboxd-<ticket>`` STOREs, so a backlog costs a few round trips
instead of one per ticket. A round trip is observed as the client going back to sending
after it has read (imaplib's ``send`` / ``readline``, in the thread that marks).
"""

from __future__ import annotations

import imaplib
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from inboxd.mail import fetch
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store

from helpers import mail, run_once, settings_for

pytestmark = pytest.mark.integration

TICKETS = 150  # more than one pipeline window (fetch.PIPELINE)
FOLLOW_UPS = 10  # a ticket keyword on two mails


def _append_backlog(mailenv: Any) -> None:
    with mailenv.dovecot.client("support") as imap:
        for i in range(TICKETS):
            imap.append("INBOX", mail(sender=f"cust{i}@example.net", name=f"Customer {i}", subject=f"Order {i}"))
        for i in range(FOLLOW_UPS):
            imap.append("INBOX", mail(sender=f"cust{i}@example.net", subject=f"Re: [SUP-{i + 1}] Order {i}",
                                      body="Any news?"))
        imap.append("INBOX", b"Subject: no sender at all\r\n\r\nquarantined: no From\r\n")


def _raw_rows(settings: Any) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query("SELECT uid, state, ticket_id, flagged FROM raw_messages ORDER BY uid")
    finally:
        store.close()


class RoundTrips:
    """Counts, in the thread running ``mark_processed``, each return to sending after reading."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.thread: int | None = None
        self.round_trips = 0
        self.stores = 0
        self._reading = True
        send, readline, command = imaplib.IMAP4.send, imaplib.IMAP4.readline, imaplib.IMAP4._command
        mark = fetch.Fetcher.mark_processed

        def counted_send(imap: imaplib.IMAP4, data: bytes) -> None:
            if threading.get_ident() == self.thread and self._reading:
                self.round_trips += 1
                self._reading = False
            send(imap, data)

        def counted_readline(imap: imaplib.IMAP4) -> bytes:
            if threading.get_ident() == self.thread:
                self._reading = True
            return readline(imap)

        def counted_command(imap: imaplib.IMAP4, name: str, *args: Any) -> bytes:
            if threading.get_ident() == self.thread and "STORE" in args[:1]:
                self.stores += 1
            return command(imap, name, *args)

        def marking(fetcher: fetch.Fetcher) -> int:
            self.thread = threading.get_ident()
            try:
                return mark(fetcher)
            finally:
                self.thread = None

        monkeypatch.setattr(imaplib.IMAP4, "send", counted_send)
        monkeypatch.setattr(imaplib.IMAP4, "readline", counted_readline)
        monkeypatch.setattr(imaplib.IMAP4, "_command", counted_command)
        monkeypatch.setattr(fetch.Fetcher, "mark_processed", marking)


def test_every_processed_mail_gets_both_keywords_in_a_few_round_trips(tmp_path: Path, mailenv,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, mailenv, support="ack_limit_per_hour = 1000\n")
    _append_backlog(mailenv)
    counter = RoundTrips(monkeypatch)

    assert run_once(settings)

    rows = _raw_rows(settings)
    assert len(rows) == TICKETS + FOLLOW_UPS + 1 and all(r["flagged"] for r in rows)
    flags = mailenv.dovecot.flags("support")
    processed = [r for r in rows if r["state"] == "processed"]
    assert len({r["ticket_id"] for r in processed}) == TICKETS and len(processed) == TICKETS + FOLLOW_UPS
    for row in processed:
        assert {"$inboxd", f"$inboxd-{row['ticket_id']}"} <= set(flags[row["uid"]]), row
    [quarantined] = [r for r in rows if r["state"] == "quarantined"]
    assert "$inboxd-quarantined" in flags[quarantined["uid"]]
    assert not any("\\Seen" in f for f in flags.values())
    # One STORE per ticket keyword plus one for $inboxd and one for $inboxd-quarantined ...
    assert counter.stores == TICKETS + 2
    # ... but sent a window at a time: 3 round trips here (generic, 2 windows), not 150.
    assert counter.round_trips <= 2 + -(-TICKETS // fetch.PIPELINE)


def test_refused_ticket_keywords_fall_back_to_the_generic_one(tmp_path: Path, mailenv,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A server that refuses per-ticket keywords (here: Dovecot answers BAD to a bogus system flag
    sent instead of each) still leaves every mail with ``$inboxd``."""
    settings = settings_for(tmp_path, mailenv)
    for i in range(3):
        mailenv.dovecot.append("support", mail(sender=f"cust{i}@example.net", subject=f"Order {i}"))
    command = imaplib.IMAP4._command

    def refusing(imap: imaplib.IMAP4, name: str, *args: Any) -> bytes:
        if args[:1] == ("STORE",) and str(args[-1]).startswith("($inboxd-SUP-"):
            args = (*args[:-1], "(\\Bogus)")
        return command(imap, name, *args)

    monkeypatch.setattr(imaplib.IMAP4, "_command", refusing)
    with caplog.at_level(logging.WARNING, logger="inboxd.fetch"):
        assert run_once(settings)

    assert any(r.getMessage() == "ticket_keywords_disabled" for r in caplog.records)
    flags = mailenv.dovecot.flags("support")
    assert len(flags) == 3 and all(set(f) == {"$inboxd"} for f in flags.values())
    assert all(r["flagged"] for r in _raw_rows(settings))


def test_mail_that_arrives_while_a_backlog_is_marked_is_fetched_before_marking_ends(
        tmp_path: Path, mailenv, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, mailenv, support="ack_limit_per_hour = 1000\n")
    with mailenv.dovecot.client("support") as imap:
        for i in range(12):
            imap.append("INBOX", mail(sender=f"cust{i}@example.net", subject=f"Order {i}"))
    source = fetch.ImapSource(settings.imap, settings.imap.folder)
    store = Store(settings.database)
    source.connect()
    try:
        fetcher = fetch.Fetcher(source, store, account=settings.imap.account, folder=settings.imap.folder,
                                max_size=settings.imap.max_message_size, clock=utcnow)
        fetcher.sync()
        with store.tx():
            store.conn.execute("UPDATE raw_messages SET state='processed'")
        monkeypatch.setattr(fetch, "KEYWORD_PAGE", 5)
        real = fetch.ImapSource.add_keyword_map
        stored_during: list[int] = []

        def marking(self: fetch.ImapSource, marks: Any) -> None:
            if not stored_during:  # a customer writes while the first page is marked
                mailenv.dovecot.append("support", mail(sender="new@example.net", subject="I just wrote"))
            real(self, marks)
            stored_during.append(len(store.query("SELECT id FROM raw_messages")))

        monkeypatch.setattr(fetch.ImapSource, "add_keyword_map", marking)
        assert fetcher.mark_processed() == 12
    finally:
        source.close()
    senders = [r["sender"] for r in store.query("SELECT sender FROM raw_messages ORDER BY id")]
    store.close()
    assert senders[-1] == "new@example.net"
    assert stored_during[-1] == 13 and stored_during[0] == 12  # fetched between pages, not after the last one
