"""Parsing in the helper process (inboxd/stages/prepare.py): same result, and a dead helper loses nothing."""

from __future__ import annotations

import base64
import os
import signal
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from inboxd.app import App
from inboxd.config import load_settings
from inboxd.stages.prepare import MIN_BATCH, Preparer
from inboxd.store.sqlite import Store
from inboxd.triage.parse import parse_message

from helpers import MINIMAL_CONFIG, mail

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


def big5(i: int) -> bytes:
    return (f"From: c{i}@example.com\r\nTo: support@example.com\r\nSubject: =?big5?b?"
            + base64.b64encode(f"訂單 {i} 還沒到".encode("big5")).decode()
            + f"?=\r\nMessage-ID: <big5-{i}@example.com>\r\nContent-Type: text/plain; charset=big5\r\n\r\n"
            ).encode() + "您好，我的訂單還沒到。".encode("big5") + b"\r\n"


def mails(n: int) -> list[bytes]:
    return [big5(i) if i % 3 == 0 else mail(subject=f"訂單 {i} 還沒到", sender=f"c{i}@example.com",
                                             body=f"Order {i}, where is it?") for i in range(n)]


def test_the_helper_parses_exactly_as_the_worker_would() -> None:
    raws = mails(MIN_BATCH + 5)
    preparer = Preparer(1)
    try:
        ahead = preparer.submit(list(range(len(raws))), raws)
        assert ahead is not None
        assert preparer.collect(ahead) == {i: parse_message(raw) for i, raw in enumerate(raws)}
    finally:
        preparer.close()


def test_small_batches_and_a_single_core_are_parsed_in_the_worker() -> None:
    assert Preparer(1).submit([1], mails(1)) is None
    assert Preparer(0).submit(list(range(50)), mails(50)) is None


def test_a_killed_helper_is_replaced_and_its_batch_is_parsed_in_the_worker() -> None:
    raws = mails(MIN_BATCH)
    preparer = Preparer(1)
    try:
        first = preparer.submit(list(range(len(raws))), raws)
        assert first is not None and len(preparer.collect(first)) == len(raws)
        assert preparer._pool is not None
        for pid in list(preparer._pool._processes):  # the OOM killer, or a mail that crashes the parser
            os.kill(pid, signal.SIGKILL)
        doomed = preparer.submit(list(range(len(raws))), raws)
        assert doomed is None or preparer.collect(doomed) == {}  # nothing from it: the worker parses these
        assert preparer._pool is None  # given up (logged as parse_helper_failed) ...
        again = preparer.submit(list(range(len(raws))), raws)  # ... and a fresh helper started
        assert again is not None and len(preparer.collect(again)) == len(raws)
    finally:
        preparer.close()


def test_a_backlog_processed_with_the_helper_equals_one_processed_without(tmp_path: Path) -> None:
    path = tmp_path / "inboxd.toml"
    path.write_text(MINIMAL_CONFIG, encoding="utf-8")
    settings = load_settings(path)
    results = []
    for processes in (0, 1):
        store = Store(":memory:")
        for uid, raw in enumerate(mails(3 * MIN_BATCH), start=1):
            store.store_raw("support", "INBOX", 1, uid, raw, size=len(raw), truncated=False, omitted=[], now=NOW)
        worker = App(settings, clock=lambda: NOW).worker(store)
        worker.preparer.processes = processes
        try:
            assert worker.process_pending() == 3 * MIN_BATCH
        finally:
            worker.close()
        results.append((store.query("SELECT ticket_id, requester, subject, language, category FROM tickets "
                                    "ORDER BY id"),
                        store.query("SELECT subject, body, charset_used FROM messages WHERE direction='in' "
                                    "ORDER BY id"),
                        store.query("SELECT state, COUNT(*) n FROM raw_messages GROUP BY state")))
        store.close()
    assert results[0] == results[1]
    assert results[1][2] == [{"state": "processed", "n": 3 * MIN_BATCH}]
