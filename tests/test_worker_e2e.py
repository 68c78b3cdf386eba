"""The worker loop against real Dovecot and SMTP: poison mail across real restarts, model failures."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from inboxd.errors import ModelError
from inboxd.mail.fetch import Fetcher, ImapSource
from inboxd.stages.worker import CRASH_HOOK, POISON_LIMIT
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classifier

from helpers import CUSTOMER, mail, run_once, settings_for, tickets

pytestmark = pytest.mark.integration

MARKER = "KILL-THE-WORKER-7f3a"


def run_once_process(config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, CRASH_HOOK: MARKER}
    return subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"],
                          capture_output=True, text=True, timeout=60, env=env)


def raw_rows(settings) -> list[dict]:
    store = Store(settings.database)
    try:
        return store.query("SELECT uid, state, error, attempts FROM raw_messages ORDER BY uid")
    finally:
        store.close()


def test_mail_that_kills_the_worker_is_quarantined_after_the_limit_and_the_rest_flows(tmp_path: Path,
                                                                                     mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="before", sender="a@example.com"))
    mailenv.dovecot.append("support", mail(subject="poison", body=f"this mail kills the worker: {MARKER}"))
    mailenv.dovecot.append("support", mail(subject="after one", sender="b@example.com"))
    mailenv.dovecot.append("support", mail(subject="after two", sender="c@example.com"))

    crashes = 0
    for _ in range(POISON_LIMIT + 3):
        result = run_once_process(settings.path)
        if result.returncode == 0:
            break
        assert result.returncode == -9, result.stderr  # killed by the hook, a real crash of the process
        crashes += 1
    assert crashes == 1 + POISON_LIMIT  # once in its batch (which proves nothing), then alone each time

    before, poison, *after = raw_rows(settings)  # in UID order, as delivered
    assert poison["state"] == "quarantined"
    assert poison["error"] == f"crashed the worker {POISON_LIMIT} times"
    assert [r["state"] for r in (before, *after)] == ["processed"] * 3
    assert [r["attempts"] for r in after] == [2, 2]  # neighbours retried once each, never accused
    assert sorted(t["subject"] for t in tickets(settings)) == ["after one", "after two", "before"]
    acks = [m for m in mailenv.smtp.messages if any(r in ("a@example.com", "b@example.com", "c@example.com")
                                                    for r in m.rcpt_tos)]
    assert len(acks) == 3  # one acknowledgement each, none repeated by the restarts
    assert not [m for m in mailenv.smtp.messages if CUSTOMER in m.rcpt_tos]  # the poison mail got none


class BrokenOnOneText(Classifier):
    """A model that fails on any batch holding one particular text, as a bad input could make it fail."""

    def guesses(self, texts: list[str]) -> list[tuple[str, float] | None]:
        if any("BREAKS-THE-MODEL" in t for t in texts):
            raise ModelError("the model failed (ValueError: test)")
        return super().guesses(texts)


def test_model_failure_in_a_batch_quarantines_nothing_and_every_mail_is_ticketed(tmp_path: Path, mailenv,
                                                                                  monkeypatch) -> None:
    monkeypatch.setattr("inboxd.app.Classifier", BrokenOnOneText)
    settings = settings_for(tmp_path, mailenv)
    for n in range(5):
        body = "BREAKS-THE-MODEL" if n == 2 else "My order has not arrived yet."
        mailenv.dovecot.append("support", mail(subject=f"order {n}", sender=f"c{n}@example.com", body=body))

    assert run_once(settings)

    rows = raw_rows(settings)
    assert [r["state"] for r in rows] == ["processed"] * 5
    assert len(tickets(settings)) == 5
    assert len(mailenv.smtp.messages) == 5


def test_mail_stored_before_a_restart_is_processed_at_start_without_new_mail(tmp_path: Path, mailenv) -> None:
    """A daemon killed after storing but before processing: the next start must not wait for new mail."""
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="stored, then the daemon died", sender="d@example.com"))
    source = ImapSource(settings.imap, settings.imap.folder)
    source.connect()
    store = Store(settings.database)
    try:  # what a daemon killed right after its fetch leaves: the mail stored, the checkpoint past it
        Fetcher(source, store, account=settings.imap.account, folder=settings.imap.folder,
                max_size=settings.imap.max_message_size, clock=utcnow).sync()
    finally:
        source.close()
        store.close()
    process = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(settings.path), "run"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15  # well before the 30 s rescan
        while time.monotonic() < deadline and not tickets(settings):
            time.sleep(0.1)
        assert [t["subject"] for t in tickets(settings)] == ["stored, then the daemon died"]
    finally:
        process.terminate()
        process.wait(timeout=20)
