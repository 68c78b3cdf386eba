"""Shared fixtures. Mail servers: one Dovecot and one SMTP sink per session, emptied per test."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from mailservers import DOVECOT_BINARY, Dovecot, MailEnv, SmtpSink

# --- real mail servers (tests/mailservers.py) --------------------------------------------


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One Dovecot for the whole run (stopping one takes Dovecot a second); ``mailenv`` empties it per test."""
    if not DOVECOT_BINARY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{DOVECOT_BINARY} is missing: CI must install dovecot-imapd before running the tests")
        pytest.skip("Dovecot not installed: run the README test command, which installs it")
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="session")
def smtp_sink(dovecot: Dovecot) -> Iterator[SmtpSink]:
    """The SMTP server inboxd sends through; it delivers into ``dovecot``."""
    with SmtpSink(dovecot) as sink:
        yield sink


@pytest.fixture
def mailenv(dovecot: Dovecot, smtp_sink: SmtpSink) -> MailEnv:
    """Empty mailboxes and a healthy, empty SMTP sink for each test.

    An outage test may leave a server stopped; it is started again here (same port).
    """
    if not dovecot.running:
        dovecot.start()
    if not smtp_sink.running:
        smtp_sink.start()
    smtp_sink.recover()
    smtp_sink.clear()
    dovecot.reset()
    return MailEnv(dovecot, smtp_sink)
