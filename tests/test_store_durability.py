"""The store's write lock between threads and its durability points (``make_durable``)."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from inboxd.errors import StoreBusy
from inboxd.mail.send import PAGE, Sender
from inboxd.store import base
from inboxd.store.sqlite import Store

from helpers import settings_for

NOW = datetime(2026, 12, 2, 10, tzinfo=UTC)


def test_threads_of_one_process_take_turns_and_every_write_lands(tmp_path: Path) -> None:
    db = tmp_path / "inboxd.db"
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        store = Store(db)
        try:
            for i in range(150):
                with store.tx():
                    store.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (f"w{n}-{i}", "x"))
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)
        finally:
            store.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    store = Store(db)
    assert store.query("SELECT COUNT(*) n FROM meta WHERE key LIKE 'w%'")[0]["n"] == 600
    store.close()


def test_a_writer_kept_waiting_by_another_thread_gets_store_busy(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "LOCK_TIMEOUT", 0.05)
    db = tmp_path / "inboxd.db"
    holder, waiter = Store(db), Store(db)
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.tx():
            inside.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    assert inside.wait(5)
    try:
        with pytest.raises(StoreBusy, match="another thread"):
            with waiter.tx():
                pass
    finally:
        release.set()
        t.join(5)
    with waiter.tx():  # free again
        waiter.conn.execute("INSERT INTO meta (key, value) VALUES ('after', 'x')")
    holder.close()
    waiter.close()


def test_commits_are_crash_safe_and_make_durable_syncs_the_write_ahead_log(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "inboxd.db")
    assert store.query("PRAGMA synchronous")[0]["synchronous"] == 1  # NORMAL: see store/base.py
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(base.os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")),
                                                      real_fsync(fd)))
    with store.tx():
        store.conn.execute("INSERT INTO meta (key, value) VALUES ('k', 'v')")
    store.make_durable()
    assert synced == [f"{tmp_path / 'inboxd.db'}-wal"]
    store.close()
    Store(":memory:").make_durable()  # nothing to sync, no error


def test_sender_makes_each_page_durable_before_sending_it_and_the_sent_marks_at_the_end(
        tmp_path: Path, mailenv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_for(tmp_path, mailenv)
    store = Store(settings.database)
    for n in range(1, PAGE + 6):
        store.enqueue(ticket_id=f"SUP-{n}", kind="ack", message_id=f"<ack{n}@example.com>",
                      mail_from="support@example.com", recipients=[f"c{n}@example.net"],
                      raw=f"Subject: ack {n}\r\nMessage-ID: <ack{n}@example.com>\r\n\r\nhello\r\n".encode(),
                      now=NOW)
    seen: list[tuple[str, int]] = []
    real = store.make_durable
    monkeypatch.setattr(store, "make_durable", lambda: (seen.append(("durable", len(mailenv.smtp.messages))),
                                                        real()))
    report = asyncio.run(Sender(settings.smtp, store, lambda: NOW).send_due())
    assert report.sent == PAGE + 5
    # on disk before the first page left, before the second (with the first page's "sent" marks), at the end
    assert seen == [("durable", 0), ("durable", PAGE), ("durable", PAGE + 5)]
    store.close()
