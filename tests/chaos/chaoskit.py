"""Helpers for the chaos tests: inboxd as a real process, a mixed mail stream, and read-back checks.

The daemon runs as ``python -m inboxd --config X run`` (what systemd runs), talking to the
real Dovecot and the SMTP sink from ``tests/mailservers.py``. The tests kill it, stop its
servers and lock its database, then compare what went in (the support INBOX) with what
came out (what the SMTP sink accepted, byte for byte) and with the database.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import psutil
from imapclient import IMAPClient

import helpers

SUPPORT = "support@example.com"
AGENT, AGENT2, LEAD = "agent@example.com", "agent2@example.com", "lead@example.com"
# Dovecot users that act as customers, so some acknowledgements are also read back from real mailboxes.
MAILBOX_CUSTOMERS = ("customer", "customer2", "stranger", "other")

AGENTS_TOML = f"""\
[[agent]]
name = "Alice Agent"
email = "{AGENT}"
languages = ["en", "zh-Hant", "zh-Hans"]
timezone = "UTC"
days = ["mon-sun"]
hours = ["00:00-24:00"]

[[agent]]
name = "Bob Agent"
email = "{AGENT2}"
languages = ["en", "zh-Hant", "zh-Hans"]
timezone = "UTC"
days = ["mon-sun"]
hours = ["00:00-24:00"]

[[agent]]
name = "Lena Lead"
email = "{LEAD}"
timezone = "UTC"
days = ["mon-sun"]
hours = ["00:00-24:00"]

[[team]]
name = "support"
members = ["{AGENT}", "{AGENT2}"]
lead = "{LEAD}"
strategy = "round_robin"
"""

ROUTES = '[[route]]\nname = "Everyone"\nteam = "support"\n'
SECRET = "chaos-secret"


def write_config(tmp_path: Path, mailenv: Any, *, smtp_timeout: float = 5, poll_interval: float = 1) -> Path:
    """inboxd.toml for the test servers: agents on shift around the clock, fast polling and retries."""
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    (rules / "routing.toml").write_text(ROUTES, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(AGENTS_TOML, encoding="utf-8")
    return helpers.write_config(
        tmp_path, mailenv, poll_interval=poll_interval, smtp_timeout=smtp_timeout,
        support="ack_limit_per_hour = 10000",
        extra=f"""
[classify]
rules_dir = "{rules}"
model = "{tmp_path / 'no-model.joblib'}"

[routing]
agents = "{tmp_path / 'agents.toml'}"
reply_secret = "{SECRET}"
""")


# --- the daemon as a process --------------------------------------------------------------------


class DaemonProcess:
    """``inboxd run`` as a child process; every start appends its log to one file."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config, self.log_path = config, log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> subprocess.Popen[bytes]:
        assert self.process is None or self.process.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(f"=== start {self.starts + 1} ===\n".encode())
            log.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(self.config), "run"],
                                            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.starts += 1
        return self.process

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed; exactly what a power cut leaves."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def wait_started(self, timeout: float = 30) -> None:
        """Until this start has logged ``daemon_started`` (imports and the model are loaded)."""
        marker = f"=== start {self.starts} ==="
        wait_until(lambda: "daemon_started" in self.log_text().rpartition(marker)[2], timeout,
                   f"start {self.starts} to come up", on_timeout=self.log_tail)

    def stop(self, timeout: float = 40) -> int | None:
        """SIGTERM and wait: the clean stop systemd does."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"inboxd did not stop within {timeout} s of SIGTERM:\n{self.log_tail()}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, *, interval: float = 0.1,
               on_timeout: Callable[[], str] = lambda: "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{on_timeout()}")
        time.sleep(interval)


def stop_dovecot_hard(dovecot: Any) -> int:
    """Stop Dovecot the way an outage does: every client connection drops.

    ``Dovecot.stop()`` ends only the master process; the imap processes serving established
    connections (inboxd's IDLE session among them) survive it and keep answering, so inboxd
    would never notice. End those too, by pid: they are children of the master this test
    suite started. Returns how many had survived the master.
    """
    master = psutil.Process(dovecot._process.pid)
    children = master.children(recursive=True)
    dovecot.stop()
    _, alive = psutil.wait_procs(children, timeout=2)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    return len(alive)


# --- the database, read from outside ---------------------------------------------------------------


def query(database: Path, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """Read the daemon's database without taking a write lock (WAL readers never block it)."""
    if not database.exists():
        return []
    conn = sqlite3.connect(str(database), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, args).fetchall()]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):  # the very first start has not created the schema yet
            return []
        raise
    finally:
        conn.close()


def drained(database: Path, inbox_count: int) -> bool:
    """Every INBOX message stored and processed, and nothing left to send."""
    rows = query(database, "SELECT (SELECT COUNT(*) FROM raw_messages) AS stored, "
                           "(SELECT COUNT(*) FROM raw_messages WHERE state='received') AS waiting, "
                           "(SELECT COUNT(*) FROM outbox WHERE state='pending') AS pending")
    return bool(rows) and rows[0]["stored"] == inbox_count and rows[0]["waiting"] == 0 and rows[0]["pending"] == 0


# --- mail --------------------------------------------------------------------------------------------


class Mailbox:
    """One kept-open IMAP login (Dovecot.append logs in for every message: too slow for hundreds)."""

    def __init__(self, dovecot: Any, user: str = "support") -> None:
        self.dovecot, self.user = dovecot, user
        self.client: IMAPClient | None = None

    def _connect(self) -> IMAPClient:
        if self.client is None:
            client = IMAPClient(self.dovecot.host, self.dovecot.port, ssl=False, timeout=10)
            client.login(self.user, self.dovecot.password(self.user))
            self.client = client
        return self.client

    def _retrying(self, what: str, action: Callable[[IMAPClient], Any], patience: float = 20) -> Any:
        """Run ``action`` on the connection, reconnecting while Dovecot is down (an outage test)."""
        deadline = time.monotonic() + patience
        while True:
            try:
                return action(self._connect())
            except Exception as exc:  # IMAP errors and dropped connections alike
                self.close()
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not {what} {self.user}'s mailbox: {exc!r}") from exc
                time.sleep(0.2)

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        """Deliver a message, as the MTA would (waiting for Dovecot if it is down)."""
        self._retrying("deliver into", lambda client: client.append(folder, raw))

    def count(self, folder: str = "INBOX") -> int:
        return int(self._retrying("count", lambda client: client.select_folder(folder, readonly=True))[b"EXISTS"])

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.logout()
            except Exception:  # noqa: BLE001 - already gone
                try:
                    self.client.shutdown()
                except Exception:  # noqa: BLE001
                    pass
            self.client = None


def customer_mail(*, sender: str, subject: str, body: str, name: str = "", html: bool = False,
                  headers: dict[str, str] | None = None, in_reply_to: str | None = None,
                  message_id: str | None = None) -> tuple[str, bytes]:
    """(Message-ID, raw) of a UTF-8 customer mail, plain or HTML only."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>" if name else sender
    msg["To"] = SUPPORT
    msg["Subject"] = subject
    msg["Date"] = format_datetime(time_now())
    message_id = message_id or make_msgid(domain=sender.rpartition("@")[2])
    msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    for key, value in (headers or {}).items():
        msg[key] = value
    if html:
        msg.set_content(f"<html><body><p>{body}</p><table><tr><td>order</td></tr></table></body></html>",
                        subtype="html")
    else:
        msg.set_content(body)
    return message_id, msg.as_bytes()


def chinese_mail(*, sender: str, charset: str, subject: str, body: str) -> tuple[str, bytes]:
    """(Message-ID, raw) of a Big5 or GBK mail as a Taiwanese or mainland client writes it."""
    message_id = make_msgid(domain=sender.rpartition("@")[2])
    encoded = base64.b64encode(subject.encode(charset)).decode()
    raw = (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: =?{charset}?B?{encoded}?=\r\n"
           f"Date: {format_datetime(time_now())}\r\nMessage-ID: {message_id}\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").encode()
    return message_id, raw + body.encode(charset) + b"\r\n"


def time_now() -> datetime:
    return datetime.now().astimezone()


def parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


def header(msg: EmailMessage, name: str) -> str:
    """A header's value without the folding whitespace a long Message-ID gets."""
    return " ".join(str(msg[name] or "").split())


def agent_reply(notification: EmailMessage, *, agent: str, name: str, answer: str) -> tuple[str, bytes]:
    """What the agent's mail client sends when they answer the notification (to its Reply-To)."""
    msg = EmailMessage()
    msg["From"] = f"{name} <{agent}>"
    msg["To"] = str(notification["Reply-To"])
    msg["Subject"] = f"Re: {notification['Subject']}"
    msg["Date"] = format_datetime(time_now())
    message_id = make_msgid(domain="example.com")
    msg["Message-ID"] = message_id
    msg["In-Reply-To"] = header(notification, "Message-ID")
    msg["References"] = header(notification, "Message-ID")
    msg.set_content(f"{answer}\n\nOn a day, Example Support <{SUPPORT}> wrote:\n\n> Ticket assigned to you.\n")
    return message_id, msg.as_bytes()


def notifications(dovecot: Any, user: str) -> list[EmailMessage]:
    """The assignment notifications in an agent's mailbox (headers only: that is all a reply needs)."""
    with dovecot.client(user) as imap:
        imap.select_folder("INBOX", readonly=True)
        uids = imap.search("ALL")
        fetched = imap.fetch(uids, [b"BODY.PEEK[HEADER]"]) if uids else {}
    found = [parse(fetched[u][b"BODY[HEADER]"]) for u in sorted(fetched)]
    return [m for m in found if m["Reply-To"] is not None and "Unassigned" not in str(m["Subject"])]


@dataclass
class Expected:
    """What went into the support INBOX and what each mail should cause."""

    acked: dict[str, str] = field(default_factory=dict)  # customer Message-ID -> customer address
    not_acked: dict[str, str] = field(default_factory=dict)  # auto-replies and follow-ups
    follow_ups: dict[str, str] = field(default_factory=dict)  # Message-ID -> ticket it must join
    agent_replies: dict[str, str] = field(default_factory=dict)  # agent mail Message-ID -> ticket
    appended: int = 0

    @property
    def customer_ids(self) -> set[str]:
        return set(self.acked) | set(self.not_acked)


# --- what came out -------------------------------------------------------------------------------------


@dataclass
class Delivery:
    """The sink's captured mail, grouped by outbox kind and ticket."""

    copies: Counter[str]  # Message-ID -> raw copies accepted by the SMTP server
    by_kind_ticket: dict[tuple[str, str], set[str]]  # (kind, ticket) -> distinct Message-IDs
    recipients: dict[str, set[str]]  # Message-ID -> recipients
    unknown: list[str]  # Message-IDs not in the outbox (must be empty)

    def extra_copies(self, ids: Iterable[str] | None = None) -> int:
        """Raw copies beyond the first, over all Message-IDs or the given ones."""
        wanted = set(ids) if ids is not None else None
        return sum(n - 1 for mid, n in self.copies.items() if wanted is None or mid in wanted)


def deliveries(sink: Any, database: Path) -> Delivery:
    outbox = {r["message_id"]: r for r in query(database, "SELECT message_id, kind, ticket_id FROM outbox")}
    copies: Counter[str] = Counter()
    recipients: dict[str, set[str]] = defaultdict(set)
    by: dict[tuple[str, str], set[str]] = defaultdict(set)
    unknown = []
    for captured in list(sink.messages):
        mid = header(parse(captured.data), "Message-ID")
        copies[mid] += 1
        recipients[mid].update(captured.rcpt_tos)
        row = outbox.get(mid)
        if row is None:
            unknown.append(mid)
            continue
        by[(row["kind"], row["ticket_id"] or "")].add(mid)
    return Delivery(copies, by, recipients, unknown)


def write_report(tmp_path: Path, name: str, figures: dict[str, Any]) -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True), encoding="utf-8")
    return path


def env_seed(default: int) -> int:
    return int(os.environ.get("INBOXD_CHAOS_SEED", default))


def check_exactly_once(database: Path, sink: Any, acked: dict[str, str]) -> dict[str, int]:
    """With no kill, the strict promise: everything stored, processed and sent, each mail exactly once.

    ``acked`` maps each customer mail that must be acknowledged to its sender. Every queued mail
    (acknowledgements and agent notifications alike) must have reached the SMTP server as exactly
    one raw copy; every acknowledged mail's ticket exactly one acknowledgement, to that customer.
    """
    raw = query(database, "SELECT uid, state, error FROM raw_messages")
    assert Counter(r["state"] for r in raw) == {"processed": len(raw)}, [r for r in raw if r["state"] != "processed"]
    inbound = query(database, "SELECT message_id, ticket_id FROM messages WHERE direction='in' AND kind='customer'")
    per_id = Counter(r["message_id"] for r in inbound)
    assert {m: n for m, n in per_id.items() if n > 1} == {}, "a customer mail was stored twice"
    assert set(acked) <= set(per_id), f"customer mail lost: {set(acked) - set(per_id)}"
    ticket_of = {r["message_id"]: r["ticket_id"] for r in inbound}
    outbox = query(database, "SELECT kind, ticket_id, state, message_id, attempts, last_error FROM outbox")
    assert Counter(r["state"] for r in outbox) == {"sent": len(outbox)}, [r for r in outbox if r["state"] != "sent"]
    ack_rows = Counter(r["ticket_id"] for r in outbox if r["kind"] == "ack")
    assert ack_rows == Counter({ticket_of[m] for m in acked}), "an acknowledgement queued twice, or not at all"
    out = deliveries(sink, database)
    assert out.unknown == [], "the SMTP server received mail inboxd never queued"
    repeated = {m: n for m, n in out.copies.items() if n != 1}
    assert repeated == {}, f"mail sent more than once: {repeated}"
    assert set(out.copies) == {r["message_id"] for r in outbox}, "queued mail that never reached the server"
    for mid, customer in acked.items():
        ids = out.by_kind_ticket.get(("ack", ticket_of[mid]), set())
        assert len(ids) == 1, (ticket_of[mid], ids)
        assert out.recipients[next(iter(ids))] == {customer}
    return {"stored": len(raw), "acknowledged": len(acked), "sent": sum(out.copies.values()),
            "retried_sends": sum(1 for r in outbox if r["attempts"] > 1)}
