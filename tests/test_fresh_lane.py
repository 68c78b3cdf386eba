"""A customer who writes while a backlog drains is not queued behind it (the fresh lane).

Unit tests of the worker's two lanes and the sender's urgent mail (in-memory store, no mail
server), the fetcher's marking against the real Dovecot, and the whole daemon end to end.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from inboxd.app import App
from inboxd.config import Settings, load_settings
from inboxd.mail.fetch import FRESH_MAILS, Fetcher, ImapSource
from inboxd.mail.send import PAGE, Sender
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store
from inboxd.triage.parse import envelope

from helpers import MINIMAL_CONFIG, mail, settings_for

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "inboxd.toml"
    path.write_text(MINIMAL_CONFIG, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def store() -> Store:
    return Store(":memory:")


def deliver(store: Store, uid: int, raw: bytes, *, fresh: bool = False, known: bool = True) -> None:
    store.store_raw("support", "INBOX", 1, uid, raw, size=len(raw), truncated=False, omitted=[], now=NOW,
                    envelope=envelope(raw) if known else None, fresh=fresh)


def backlog(store: Store, n: int = 120) -> None:
    for uid in range(1, n + 1):
        deliver(store, uid, mail(subject=f"old question {uid}", sender=f"old{uid}@example.com",
                                 message_id=f"<old{uid}@example.com>"))


def ticket_of(store: Store, sender: str) -> str:
    return str(store.query("SELECT ticket_id FROM tickets WHERE requester=?", (sender,))[0]["ticket_id"])


def process(settings: Settings, store: Store) -> int:
    worker = App(settings, clock=lambda: NOW).worker(store)
    worker.preparer.processes = 0
    return worker.process_pending()


def test_a_new_customer_goes_ahead_of_the_backlog_and_their_ack_is_urgent(settings: Settings,
                                                                           store: Store) -> None:
    backlog(store)
    deliver(store, 500, mail(subject="Just now: my parcel", sender="new@example.com"), fresh=True)
    assert process(settings, store) == 121
    assert ticket_of(store, "new@example.com") == "SUP-1"  # the first ticket made
    assert ticket_of(store, "old1@example.com") == "SUP-2"
    urgent = store.query("SELECT ticket_id FROM outbox WHERE urgent=1")
    assert urgent == [{"ticket_id": "SUP-1"}]
    assert store.query("SELECT COUNT(*) n FROM raw_messages WHERE state='processed'")[0]["n"] == 121


def test_a_customer_with_mail_still_waiting_stays_in_order_and_joins_their_ticket(settings: Settings,
                                                                                   store: Store) -> None:
    backlog(store)
    deliver(store, 500, mail(subject="Re: old question 90", sender="old90@example.com",
                             in_reply_to="<old90@example.com>"), fresh=True)
    process(settings, store)
    [ticket] = store.query("SELECT ticket_id FROM tickets WHERE requester='old90@example.com'")
    assert ticket["ticket_id"] == "SUP-90"  # not ahead: made in arrival order, and the follow-up joined it
    assert store.query("SELECT COUNT(*) n FROM messages WHERE ticket_id='SUP-90' AND direction='in'")[0]["n"] == 2


def test_a_reply_to_a_waiting_mail_from_someone_else_stays_in_order(settings: Settings, store: Store) -> None:
    backlog(store)
    deliver(store, 500, mail(subject="Re: old question 70", sender="colleague@example.com",
                             in_reply_to="<old70@example.com>"), fresh=True)
    process(settings, store)
    assert ticket_of(store, "old70@example.com") == "SUP-70"
    # not before the mail it answers was processed (it may go ahead of what came after that)
    assert int(ticket_of(store, "colleague@example.com").split("-")[1]) > 70


def test_waiting_mail_of_unknown_sender_keeps_everything_in_order(settings: Settings, store: Store) -> None:
    deliver(store, 1, mail(subject="stored before the upgrade", sender="legacy@example.com"), known=False)
    deliver(store, 2, mail(subject="new", sender="new@example.com"), fresh=True)
    process(settings, store)
    assert ticket_of(store, "legacy@example.com") == "SUP-1"
    assert ticket_of(store, "new@example.com") == "SUP-2"


def test_urgent_mail_is_sent_ahead_of_the_queue(tmp_path: Path, mailenv: Any) -> None:
    settings = settings_for(tmp_path, mailenv)
    store = Store(settings.database)

    def queue(n: int, urgent: bool = False) -> None:
        store.enqueue(ticket_id=f"SUP-{n}", kind="ack", message_id=f"<ack{n}@example.com>",
                      mail_from="support@example.com", recipients=[f"c{n}@example.net"], now=NOW, urgent=urgent,
                      raw=f"Subject: ack {n}\r\nMessage-ID: <ack{n}@example.com>\r\n\r\nhello\r\n".encode())

    for n in range(1, 2 * PAGE + 1):
        queue(n)
    sender = Sender(settings.smtp, store, lambda: NOW)
    real = store.due_urgent

    def due_urgent(*args: Any, **kwargs: Any) -> Any:
        if mailenv.smtp.messages and not store.query("SELECT 1 FROM outbox WHERE urgent=1"):
            queue(999, urgent=True)  # a fresh mail's ack, queued while the backlog is being sent
        return real(*args, **kwargs)

    store.due_urgent = due_urgent  # type: ignore[method-assign]
    report = asyncio.run(sender.send_due())
    assert report.sent == 2 * PAGE + 1
    order = [m.rcpt_tos[0] for m in mailenv.smtp.messages]
    assert order.index("c999@example.net") == PAGE  # right after the page in hand, not after the whole queue
    store.close()


def test_a_few_new_mails_are_marked_fresh_and_a_backlog_is_not(tmp_path: Path, mailenv: Any) -> None:
    settings = settings_for(tmp_path, mailenv)
    for n in range(FRESH_MAILS + 5):
        mailenv.dovecot.append("support", mail(subject=f"backlog {n}", sender=f"b{n}@example.com"))
    source = ImapSource(settings.imap, settings.imap.folder)
    source.connect()
    store = Store(settings.database)
    try:
        fetcher = Fetcher(source, store, account=settings.imap.account, folder=settings.imap.folder,
                          max_size=settings.imap.max_message_size, clock=utcnow)
        fetcher.sync()
        source.close()
        for n in range(2):
            mailenv.dovecot.append("support", mail(subject=f"new {n}", sender=f"n{n}@example.com",
                                                   message_id=f"<new{n}@example.com>"))
        source.connect()
        fetcher.sync()
        rows = store.query("SELECT sender, message_id, fresh FROM raw_messages ORDER BY id")
    finally:
        source.close()
        store.close()
    assert [r["fresh"] for r in rows] == [0] * (FRESH_MAILS + 5) + [1, 1]
    assert rows[-1]["sender"] == "n1@example.com" and rows[-1]["message_id"] == "<new1@example.com>"


def test_a_customer_writing_during_a_backlog_is_answered_before_it_is_through(tmp_path: Path,
                                                                               mailenv: Any) -> None:
    settings = settings_for(tmp_path, mailenv)
    for n in range(500):
        mailenv.dovecot.append("support", mail(subject=f"backlog {n}", sender=f"b{n}@example.com"))
    daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(settings.path), "run"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not mailenv.smtp.messages and time.monotonic() < deadline:  # draining has begun
            time.sleep(0.01)
        mailenv.dovecot.append("support", mail(subject="I just wrote", sender="fresh@example.com"))
        while len(mailenv.smtp.messages) < 501 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        daemon.terminate()
        daemon.wait(30)
    order = [m.rcpt_tos[0] for m in mailenv.smtp.messages]
    assert len(order) == 501 and "fresh@example.com" in order
    assert order.index("fresh@example.com") < 400  # not behind the whole backlog
