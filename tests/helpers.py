"""Helpers for tests that run inboxd against the real Dovecot and SMTP sink."""

from __future__ import annotations

import asyncio
import email
import email.policy
from datetime import datetime
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from inboxd.config import Settings, load_settings
from inboxd.daemon import Daemon
from inboxd.store.sqlite import Store

SUPPORT = "support@example.com"
CUSTOMER = "customer@example.com"

# The smallest valid inboxd.toml, for tests that need settings but no mail server.
MINIMAL_CONFIG = """\
[imap]
host = "imap.example.com"
username = "support"
password = "imap-secret"

[smtp]
host = "smtp.example.com"

[support]
address = "support@example.com"
timezone = "Asia/Taipei"
"""


def write_config(tmp_path: Path, mailenv: Any, *, imap: str = "", support: str = "", extra: str = "",
                 poll_interval: float = 2, smtp_timeout: float = 5) -> Path:
    """An inboxd.toml pointing at the test Dovecot (user ``support``) and SMTP sink."""
    box = mailenv.dovecot.imap_config("support")
    smtp = mailenv.smtp.smtp_config()
    text = f"""\
[imap]
host = "{box['host']}"
port = {box['port']}
tls = "none"
username = "{box['username']}"
password = "{box['password']}"
poll_interval = {poll_interval}
{imap}

[smtp]
host = "{smtp['host']}"
port = {smtp['port']}
tls = "none"
timeout = {smtp_timeout}
retry_delay = 1

[support]
address = "{SUPPORT}"
name = "Example Support"
timezone = "Asia/Taipei"
first_response = "4h"
business_days = ["mon", "tue", "wed", "thu", "fri"]
business_hours = ["09:00-18:00"]
holidays = ["2026-12-25"]
{support}
[storage]
database = "inboxd.db"
{extra}"""
    path = tmp_path / "inboxd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def settings_for(tmp_path: Path, mailenv: Any, **kwargs: str) -> Settings:
    return load_settings(write_config(tmp_path, mailenv, **kwargs))


def run_once(settings: Settings, now: datetime | None = None) -> bool:
    clock = (lambda: now) if now is not None else None
    daemon = Daemon(settings, clock=clock) if clock else Daemon(settings)
    return asyncio.run(daemon.run_once())


def mail(*, sender: str = CUSTOMER, name: str = "Chen Mei", to: str = SUPPORT, subject: str = "Help",
         body: str = "My order has not arrived yet. Please help.", cc: str | None = None,
         headers: dict[str, str] | None = None, message_id: str | None = None,
         in_reply_to: str | None = None, date: datetime | None = None) -> bytes:
    """A customer mail as a client would send it (UTF-8, Message-ID set)."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now().astimezone())
    msg["Message-ID"] = message_id or make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes()


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def tickets(settings: Settings) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query("SELECT * FROM tickets ORDER BY id")
    finally:
        store.close()


def events(settings: Settings, ticket_id: str) -> list[str]:
    store = Store(settings.database)
    try:
        return [r["kind"] for r in store.query("SELECT kind FROM events WHERE ticket_id=? ORDER BY id",
                                               (ticket_id,))]
    finally:
        store.close()
