"""Chaos tests: inboxd under hostile conditions. The ``chaos`` fixture below serves the crash and outage
tests: inboxd as a real process, killed, cut off from its servers and locked out of its database.

Run them alone with ``.venv/bin/pytest tests/chaos -q -s`` (``-s`` shows the figures), or skip them
with ``-m "not chaos"``. ``INBOXD_CHAOS_SEED`` replays a crash run's random kill times.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chaoskit import DaemonProcess, Mailbox, drained, query, wait_until, write_config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: inboxd under hostile conditions (killed, its mail servers down, its "
                                       "database locked, hostile mail); slow, needs Dovecot")


@dataclass
class Chaos:
    """One inboxd installation under test: its config, database, process and the support INBOX."""

    tmp_path: Path
    mailenv: Any
    config: Path
    database: Path
    daemon: DaemonProcess
    inbox: Mailbox

    def reconfigure(self, **kwargs: Any) -> None:
        self.config = write_config(self.tmp_path, self.mailenv, **kwargs)

    def start(self, wait: bool = True) -> None:
        """Start the daemon; with ``wait``, return once it has checked the mailbox (schema exists)."""
        self.daemon.start()
        if wait:
            wait_until(lambda: query(self.database, "SELECT 1 FROM checkpoints WHERE last_fetch_at IS NOT NULL"),
                       20, "the daemon's first mailbox check", on_timeout=self.daemon.log_tail)

    def wait_drained(self, timeout: float, what: str = "every message processed and the outbox empty") -> None:
        wait_until(lambda: self.daemon.running and drained(self.database, self.inbox.count()), timeout, what,
                   interval=0.2, on_timeout=self.daemon.log_tail)
        assert self.daemon.running, f"inboxd exited by itself:\n{self.daemon.log_tail()}"


@pytest.fixture
def chaos(tmp_path: Path, mailenv: Any) -> Iterator[Chaos]:
    config = write_config(tmp_path, mailenv)
    daemon = DaemonProcess(config, tmp_path / "inboxd.log")
    inbox = Mailbox(mailenv.dovecot, "support")
    env = Chaos(tmp_path, mailenv, config, tmp_path / "inboxd.db", daemon, inbox)
    try:
        yield env
    finally:
        daemon.kill()
        inbox.close()
        if not mailenv.dovecot.running:  # an outage test that failed half-way
            mailenv.dovecot.start()
        mailenv.smtp.recover()
