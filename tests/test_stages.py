"""The stage handlers and the worker loop on their own: an in-memory database, no mail server.

Fetch is simulated by storing raw bytes the way the IMAP adapter does; sending is
left out (the outbox is read back instead), so these run in milliseconds.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from inboxd.app import App
from inboxd.config import Settings, load_settings
from inboxd.stages import worker as worker_module
from inboxd.stages.worker import POISON_LIMIT, Worker
from inboxd.store.sqlite import Store

from helpers import MINIMAL_CONFIG, mail

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    path = tmp_path / "inboxd.toml"
    path.write_text(MINIMAL_CONFIG, encoding="utf-8")
    return load_settings(path)


@pytest.fixture
def store() -> Store:
    return Store(":memory:")


def make_worker(settings: Settings, store: Store) -> Worker:
    return App(settings, clock=lambda: NOW).worker(store)


def deliver(store: Store, uid: int, raw: bytes, folder: str = "INBOX") -> None:
    store.store_raw("support", folder, 1, uid, raw, size=len(raw), truncated=False, omitted=[], now=NOW)


def raw_states(store: Store) -> list[tuple[int, str, str | None]]:
    return [(r["uid"], r["state"], r["error"]) for r in
            store.query("SELECT uid, state, error FROM raw_messages ORDER BY uid")]


def test_customer_mail_becomes_a_ticket_with_its_acknowledgement_queued(settings: Settings, store: Store) -> None:
    deliver(store, 1, mail(subject="Where is my order?", sender="amy@example.com"))
    assert make_worker(settings, store).process_pending() == 1
    [ticket] = store.query("SELECT ticket_id, requester, status FROM tickets")
    assert (ticket["ticket_id"], ticket["requester"], ticket["status"]) == ("SUP-1", "amy@example.com", "new")
    [queued] = store.query("SELECT kind, recipients FROM outbox")
    assert queued["kind"] == "ack" and "amy@example.com" in queued["recipients"]
    assert raw_states(store) == [(1, "processed", None)]


def test_a_follow_up_joins_its_ticket(settings: Settings, store: Store) -> None:
    deliver(store, 1, mail(subject="Broken lamp", message_id="<first@example.com>"))
    deliver(store, 2, mail(subject="Re: Broken lamp", in_reply_to="<first@example.com>"))
    make_worker(settings, store).process_pending()
    assert [t["ticket_id"] for t in store.query("SELECT ticket_id FROM tickets")] == ["SUP-1"]
    assert len(store.query("SELECT id FROM messages WHERE direction='in' AND ticket_id='SUP-1'")) == 2


def test_a_parser_crash_quarantines_that_mail_only(settings: Settings, store: Store,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    real = worker_module.parse_message

    def parse(raw: bytes):  # type: ignore[no-untyped-def]
        if b"PARSER-BUG" in raw:
            raise RecursionError("maximum recursion depth exceeded")
        return real(raw)

    monkeypatch.setattr(worker_module, "parse_message", parse)
    for uid, subject in enumerate(["one", "PARSER-BUG", "three"], start=1):
        deliver(store, uid, mail(subject=subject, sender=f"c{uid}@example.com"))
    make_worker(settings, store).process_pending()
    assert raw_states(store) == [(1, "processed", None),
                                 (2, "quarantined", "RecursionError: maximum recursion depth exceeded"),
                                 (3, "processed", None)]


def test_a_mail_claimed_up_to_the_limit_is_quarantined_and_the_next_flows(settings: Settings,
                                                                          store: Store) -> None:
    deliver(store, 1, mail(subject="crashed us before", sender="x@example.com"))
    deliver(store, 2, mail(subject="fine", sender="y@example.com"))
    store.claim_raw([1])  # in a batch, then
    for _ in range(POISON_LIMIT):
        store.claim_raw([1])  # alone, three runs died while working on it
    make_worker(settings, store).process_pending()
    assert raw_states(store) == [(1, "quarantined", f"crashed the worker {POISON_LIMIT} times"),
                                 (2, "processed", None)]


def test_a_mail_claimed_alone_fewer_times_is_still_processed(settings: Settings, store: Store) -> None:
    deliver(store, 1, mail(subject="unlucky", sender="x@example.com"))
    for _ in range(POISON_LIMIT):
        store.claim_raw([1])  # the batch claim and two kills while it was worked on alone
    make_worker(settings, store).process_pending()
    assert raw_states(store) == [(1, "processed", None)]


def test_a_mail_left_over_by_a_crash_is_retried_alone_and_counted_once(settings: Settings, store: Store) -> None:
    for uid in (1, 2, 3):
        deliver(store, uid, mail(subject=f"mail {uid}", sender=f"c{uid}@example.com"))
    store.claim_raw([1, 2, 3])  # a batch was claimed, then the process died
    make_worker(settings, store).process_pending()
    attempts = [r["attempts"] for r in store.query("SELECT attempts FROM raw_messages ORDER BY uid")]
    assert attempts == [2, 2, 2] and [s for _, s, _ in raw_states(store)] == ["processed"] * 3


def test_mail_without_a_sender_is_quarantined_with_a_reason(settings: Settings, store: Store) -> None:
    deliver(store, 1, b"Subject: no sender\r\n\r\nhello\r\n")
    make_worker(settings, store).process_pending()
    [(_, state, error)] = raw_states(store)
    assert state == "quarantined" and error is not None and "sender" in error
