"""The SQLite store: raw mail, tickets, their messages and events, and the outbox.

Every change that must not be half-done (a ticket, its message, its event and the
acknowledgement it queues) happens inside one ``tx()``. Each thread opens its own
``Store`` on the same file; WAL mode lets readers work while one writer commits,
and ``BEGIN IMMEDIATE`` makes writers queue instead of failing on upgrade.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_utils import Database

from inboxd.errors import StoreBusy, StoreError
from inboxd.model import RawState, TicketStatus

if TYPE_CHECKING:
    from inboxd.store.sla import SlaRepository

MIGRATIONS = ("""
CREATE TABLE IF NOT EXISTS checkpoints (
    account TEXT NOT NULL, folder TEXT NOT NULL, uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL, last_fetch_at TEXT, last_error TEXT,
    PRIMARY KEY (account, folder));
CREATE TABLE IF NOT EXISTS raw_messages (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL, folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL, uid INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT NOT NULL, raw BLOB NOT NULL, truncated INTEGER NOT NULL DEFAULT 0,
    omitted_attachments TEXT NOT NULL DEFAULT '[]', received_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'received', error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    ticket_id TEXT, flagged INTEGER NOT NULL DEFAULT 0, processed_at TEXT,
    UNIQUE (account, folder, uidvalidity, uid));
CREATE INDEX IF NOT EXISTS raw_state ON raw_messages (state);
CREATE INDEX IF NOT EXISTS raw_unflagged ON raw_messages (account, folder, flagged);
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ticket_id TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL, requester TEXT NOT NULL, requester_name TEXT NOT NULL,
    status TEXT NOT NULL, language TEXT NOT NULL, created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL, first_response_due TEXT, follow_up_of TEXT);
CREATE TABLE IF NOT EXISTS participants (
    ticket_id TEXT NOT NULL, address TEXT NOT NULL, role TEXT NOT NULL,
    PRIMARY KEY (ticket_id, address));
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, raw_id INTEGER, direction TEXT NOT NULL,
    kind TEXT NOT NULL, message_id TEXT, in_reply_to TEXT NOT NULL DEFAULT '[]',
    "references" TEXT NOT NULL DEFAULT '[]', from_addr TEXT, from_name TEXT NOT NULL DEFAULT '',
    to_addrs TEXT NOT NULL DEFAULT '[]', cc_addrs TEXT NOT NULL DEFAULT '[]',
    subject TEXT NOT NULL DEFAULT '', body TEXT NOT NULL DEFAULT '',
    attachments TEXT NOT NULL DEFAULT '[]', language TEXT, charset_declared TEXT,
    charset_used TEXT, charset_guessed INTEGER NOT NULL DEFAULT 0,
    defects TEXT NOT NULL DEFAULT '[]', no_ack_reason TEXT, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_ticket ON messages (ticket_id);
CREATE INDEX IF NOT EXISTS messages_msgid ON messages (message_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL,
    actor TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE INDEX IF NOT EXISTS events_ticket ON events (ticket_id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY, ticket_id TEXT, kind TEXT NOT NULL, message_id TEXT NOT NULL UNIQUE,
    mail_from TEXT NOT NULL, recipients TEXT NOT NULL, raw BLOB NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL, last_error TEXT, created_at TEXT NOT NULL, sent_at TEXT);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt_at);
""", """
ALTER TABLE tickets ADD COLUMN category TEXT;
ALTER TABLE tickets ADD COLUMN confidence REAL;
ALTER TABLE tickets ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal';
ALTER TABLE tickets ADD COLUMN spam INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN classification TEXT;
CREATE TABLE ticket_tags (ticket_id TEXT NOT NULL, tag TEXT NOT NULL, PRIMARY KEY (ticket_id, tag));
CREATE TABLE corrections (
    id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, text TEXT NOT NULL, field TEXT NOT NULL,
    old_value TEXT, new_value TEXT, actor TEXT NOT NULL, at TEXT NOT NULL);
""", """
ALTER TABLE tickets ADD COLUMN team TEXT;
ALTER TABLE tickets ADD COLUMN owner TEXT;
ALTER TABLE tickets ADD COLUMN sla_policy TEXT;
CREATE INDEX tickets_owner ON tickets (owner, status);
CREATE INDEX tickets_requester ON tickets (requester);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""", """
ALTER TABLE tickets ADD COLUMN first_response_at TEXT;
""", """
CREATE INDEX outbox_recipient ON outbox (kind, recipients, created_at);
CREATE INDEX raw_sha256 ON raw_messages (sha256);
""", """
CREATE TABLE sla_timers (
    id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, kind TEXT NOT NULL, policy TEXT NOT NULL,
    calendar TEXT NOT NULL, state TEXT NOT NULL, started_at TEXT NOT NULL, due_at TEXT,
    total_minutes REAL NOT NULL, remaining_minutes REAL, stopped_at TEXT);
CREATE INDEX sla_timers_state ON sla_timers (state, due_at);
CREATE INDEX sla_timers_ticket ON sla_timers (ticket_id);
CREATE TABLE sla_alerts (
    id INTEGER PRIMARY KEY, ticket_id TEXT NOT NULL, timer_id INTEGER NOT NULL, level TEXT NOT NULL,
    at TEXT NOT NULL, recipients TEXT NOT NULL, sent INTEGER NOT NULL, UNIQUE (timer_id, level));
""", """
ALTER TABLE sla_timers ADD COLUMN met INTEGER;
""", """
ALTER TABLE sla_timers ADD COLUMN next_alert_at TEXT;
CREATE INDEX sla_timers_next_alert ON sla_timers (state, next_alert_at);
""")


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Timestamps are stored as sortable UTC ISO-8601 text."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class RawRow:
    id: int
    account: str
    folder: str
    uid: int
    raw: bytes
    truncated: bool
    omitted_attachments: list[dict[str, Any]]
    attempts: int


class Store:
    """One connection to the inboxd database, for one thread."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=30, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=30000")  # first, so the statements below wait for a lock too
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        self.db = Database(conn)
        self.conn = conn
        self._migrate()

    def _migrate(self) -> None:
        """Bring the schema up to date; each step commits with its version number."""
        with self.tx():
            version = self.conn.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version={number}")

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def tx(self) -> Iterator[Database]:
        """A write transaction; nested calls join the outer one. sqlite3 errors leave as StoreError.

        BEGIN/COMMIT are written here rather than with sqlite-utils' ``atomic()``: inboxd
        needs ``BEGIN IMMEDIATE`` (take the write lock first, so two writers queue on the busy
        timeout instead of one failing at its first write), which ``atomic()`` does not offer.
        """
        if self.conn.in_transaction:
            yield self.db
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        try:
            yield self.db
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _translate(exc) from exc
            raise

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        try:
            return list(self.db.query(sql, params))
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    @cached_property
    def sla(self) -> SlaRepository:
        """The SLA clocks' SQL, in its own module (imported here because it imports this one)."""
        from inboxd.store.sla import SlaRepository

        return SlaRepository(self)

    # --- fetch side -------------------------------------------------------------------

    def checkpoint(self, account: str, folder: str) -> tuple[int, int] | None:
        """(uidvalidity, last_uid) stored for a mailbox folder, or None."""
        rows = self.query("SELECT uidvalidity, last_uid FROM checkpoints WHERE account=? AND folder=?",
                          (account, folder))
        return (rows[0]["uidvalidity"], rows[0]["last_uid"]) if rows else None

    def set_checkpoint(self, account: str, folder: str, uidvalidity: int, last_uid: int,
                       now: datetime) -> None:
        with self.tx():
            self.conn.execute(
                "INSERT INTO checkpoints (account, folder, uidvalidity, last_uid, last_fetch_at) "
                "VALUES (?,?,?,?,?) ON CONFLICT (account, folder) DO UPDATE SET "
                "uidvalidity=excluded.uidvalidity, last_uid=excluded.last_uid, "
                "last_fetch_at=excluded.last_fetch_at, last_error=NULL",
                (account, folder, uidvalidity, last_uid, iso(now)))

    def record_fetch_error(self, account: str, folder: str, error: str) -> None:
        """Remember why the mailbox could not be read, for `inboxd status` (even before a first fetch)."""
        with self.tx():
            self.conn.execute("INSERT INTO checkpoints (account, folder, uidvalidity, last_uid, last_error) "
                              "VALUES (?,?,0,0,?) ON CONFLICT (account, folder) DO UPDATE SET last_error=excluded."
                              "last_error", (account, folder, error))

    def store_raw(self, account: str, folder: str, uidvalidity: int, uid: int, raw: bytes, *,
                  size: int, truncated: bool, omitted: list[dict[str, Any]], now: datetime) -> None:
        """Keep the bytes and move the checkpoint past them in one transaction."""
        with self.tx():
            self.conn.execute(
                "INSERT OR IGNORE INTO raw_messages (account, folder, uidvalidity, uid, size, sha256, raw, "
                "truncated, omitted_attachments, received_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (account, folder, uidvalidity, uid, size, hashlib.sha256(raw).hexdigest(), raw,
                 int(truncated), json.dumps(omitted), iso(now)))
            self.set_checkpoint(account, folder, uidvalidity, uid, now)

    def pending_raw(self, after_id: int = 0, limit: int = 100) -> list[RawRow]:
        rows = self.query("SELECT id, account, folder, uid, raw, truncated, omitted_attachments, attempts "
                          "FROM raw_messages WHERE state='received' AND id>? ORDER BY id LIMIT ?", (after_id, limit))
        return [RawRow(r["id"], r["account"], r["folder"], r["uid"], r["raw"], bool(r["truncated"]),
                       json.loads(r["omitted_attachments"]), r["attempts"]) for r in rows]

    def claim_raw(self, ids: list[int]) -> None:
        """Count a try on each message before work on it begins, so a crash is counted (poison limit)."""
        if ids:
            with self.tx():
                self.conn.executemany("UPDATE raw_messages SET attempts=attempts+1 WHERE id=?", [(i,) for i in ids])

    def finish_raw(self, raw_id: int, state: RawState, *, ticket_id: str | None = None,
                   error: str | None = None, now: datetime) -> None:
        with self.tx():
            self.conn.execute("UPDATE raw_messages SET state=?, ticket_id=?, error=?, processed_at=? WHERE id=?",
                              (state, ticket_id, error, iso(now), raw_id))

    def ticket_with_same_bytes(self, raw_id: int) -> str | None:
        """The ticket of an earlier stored copy with exactly these bytes (the same mail fetched twice)."""
        rows = self.query("SELECT ticket_id FROM raw_messages WHERE sha256 = (SELECT sha256 FROM "
                          "raw_messages WHERE id=?) AND id!=? AND ticket_id IS NOT NULL LIMIT 1", (raw_id, raw_id))
        return rows[0]["ticket_id"] if rows else None

    def unflagged(self, account: str, folder: str) -> list[dict[str, Any]]:
        """Processed mail whose IMAP keyword has not been set yet."""
        return self.query("SELECT id, uid, state, ticket_id FROM raw_messages WHERE account=? AND folder=? "
                          "AND flagged=0 AND state!='received' ORDER BY uid", (account, folder))

    def mark_flagged(self, ids: list[int]) -> None:
        with self.tx():
            self.conn.executemany("UPDATE raw_messages SET flagged=1 WHERE id=?", [(i,) for i in ids])

    # --- tickets ----------------------------------------------------------------------

    def create_ticket(self, prefix: str, *, subject: str, requester: str, requester_name: str,
                      language: str, now: datetime, follow_up_of: str | None = None) -> str:
        """Insert a ticket and return its ID, e.g. SUP-1042, numbered by the row id."""
        with self.tx():
            cur = self.conn.execute(
                "INSERT INTO tickets (ticket_id, subject, requester, requester_name, status, language, "
                "created_at, updated_at, follow_up_of) VALUES ('', ?, ?, ?, 'new', ?, ?, ?, ?)",
                (subject, requester, requester_name, language, iso(now), iso(now), follow_up_of))
            ticket_id = f"{prefix}-{cur.lastrowid}"
            self.conn.execute("UPDATE tickets SET ticket_id=? WHERE id=?", (ticket_id, cur.lastrowid))
            self.add_participant(ticket_id, requester, "requester")
            return ticket_id

    def ticket(self, ticket_id: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,))
        return rows[0] if rows else None

    def update_ticket(self, ticket_id: str, now: datetime, **fields: Any) -> None:
        sets = "".join(f"{k}=?, " for k in fields)
        with self.tx():
            self.conn.execute(f"UPDATE tickets SET {sets}updated_at=? WHERE ticket_id=?",
                              (*fields.values(), iso(now), ticket_id))

    def add_participant(self, ticket_id: str, address: str, role: str) -> None:
        with self.tx():
            self.conn.execute("INSERT OR IGNORE INTO participants (ticket_id, address, role) VALUES (?,?,?)",
                              (ticket_id, address.lower(), role))

    def participants(self, ticket_id: str) -> dict[str, str]:
        return {r["address"]: r["role"] for r in
                self.query("SELECT address, role FROM participants WHERE ticket_id=?", (ticket_id,))}

    def add_message(self, ticket_id: str, *, direction: str, kind: str, now: datetime,
                    **fields: Any) -> int:
        row = {"ticket_id": ticket_id, "direction": direction, "kind": kind, "created_at": iso(now)}
        for key, value in fields.items():
            row[key] = json.dumps(list(value)) if isinstance(value, (list, tuple)) else value
        with self.tx():
            table = self.db.table("messages")
            table.insert(row)
            return int(table.last_pk)  # type: ignore[arg-type]

    def tickets_for_message_ids(self, ids: list[str]) -> list[tuple[str, str]]:
        """(ticket_id, direction) of stored messages carrying any of these Message-IDs."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        rows = self.query(f"SELECT ticket_id, direction FROM messages WHERE message_id IN ({marks})", tuple(ids))
        return [(r["ticket_id"], r["direction"]) for r in rows]

    def unanswered(self, ticket_id: str) -> int:
        """Customer mails on the ticket since the team last wrote (acknowledgements do not count)."""
        rows = self.query(
            "SELECT COUNT(*) n FROM messages WHERE ticket_id=? AND direction='in' AND id > COALESCE("
            "(SELECT MAX(id) FROM messages WHERE ticket_id=? AND direction='out' AND kind!='ack'), 0)",
            (ticket_id, ticket_id))
        return int(rows[0]["n"])

    def inbound_duplicate(self, message_id: str, from_addr: str) -> str | None:
        """Ticket of an earlier copy of the same customer mail (same Message-ID and sender)."""
        rows = self.query("SELECT ticket_id FROM messages WHERE message_id=? AND from_addr=? "
                          "AND direction='in' LIMIT 1", (message_id, from_addr))
        return rows[0]["ticket_id"] if rows else None

    def log_event(self, ticket_id: str, kind: str, now: datetime, actor: str = "inboxd",
                  **detail: Any) -> None:
        with self.tx():
            self.conn.execute("INSERT INTO events (ticket_id, at, kind, actor, detail) VALUES (?,?,?,?,?)",
                              (ticket_id, iso(now), kind, actor, json.dumps(detail, ensure_ascii=False)))

    # --- classification and the team's corrections ------------------------------------

    def tags(self, ticket_id: str) -> list[str]:
        return [r["tag"] for r in self.query("SELECT tag FROM ticket_tags WHERE ticket_id=? ORDER BY rowid",
                                             (ticket_id,))]

    def add_tags(self, ticket_id: str, tags: list[str] | tuple[str, ...]) -> None:
        with self.tx():
            self.conn.executemany("INSERT OR IGNORE INTO ticket_tags (ticket_id, tag) VALUES (?, ?)",
                                  [(ticket_id, t) for t in tags])

    def _ticket_text(self, ticket_id: str) -> str:
        """The customer's first mail, which is what the classifier saw."""
        rows = self.query("SELECT subject, body FROM messages WHERE ticket_id=? AND direction='in' "
                          "ORDER BY id LIMIT 1", (ticket_id,))
        return f"{rows[0]['subject']}\n{rows[0]['body']}" if rows else ""

    def _correct(self, ticket_id: str, field: str, old: str | None, new: str | None, actor: str,
                 now: datetime) -> None:
        self.conn.execute("INSERT INTO corrections (ticket_id, text, field, old_value, new_value, actor, at) "
                          "VALUES (?,?,?,?,?,?,?)", (ticket_id, self._ticket_text(ticket_id), field, old, new,
                                                     actor, iso(now)))

    def set_category(self, ticket_id: str, category: str, actor: str, now: datetime) -> None:
        """An agent's category change: applied, logged, and kept as a training example."""
        with self.tx():
            ticket = self.ticket(ticket_id)
            if ticket is None:
                raise KeyError(ticket_id)
            self.update_ticket(ticket_id, now, category=category, confidence=None)
            self._correct(ticket_id, "category", ticket["category"], category, actor, now)
            self.log_event(ticket_id, "category_changed", now, actor=actor, old=ticket["category"], new=category)

    def tag(self, ticket_id: str, tag: str, actor: str, now: datetime, *, remove: bool = False) -> None:
        """An agent adds or removes a tag: applied, logged, and kept as a training example."""
        with self.tx():
            if remove:
                self.conn.execute("DELETE FROM ticket_tags WHERE ticket_id=? AND tag=?", (ticket_id, tag))
            else:
                self.add_tags(ticket_id, [tag])
            self._correct(ticket_id, "tag", tag if remove else None, None if remove else tag, actor, now)
            self.log_event(ticket_id, "tag_removed" if remove else "tag_added", now, actor=actor, tag=tag)

    def category_corrections(self) -> list[tuple[str, str]]:
        """(text, category) of every category correction, latest per ticket."""
        rows = self.query("SELECT text, new_value FROM corrections WHERE id IN (SELECT MAX(id) FROM corrections "
                          "WHERE field='category' GROUP BY ticket_id)")
        return [(r["text"], r["new_value"]) for r in rows]

    # --- assignment ---------------------------------------------------------------------

    def open_tickets(self, email: str) -> int:
        rows = self.query("SELECT COUNT(*) n FROM tickets WHERE owner=? AND status IN ('new','open','pending')",
                          (email,))
        return int(rows[0]["n"])

    def last_assignee(self, team: str) -> str | None:
        rows = self.query("SELECT json_extract(detail, '$.owner') AS owner FROM events WHERE kind='assigned' "
                          "AND json_extract(detail, '$.team')=? AND json_extract(detail, '$.owner') IS NOT NULL "
                          "ORDER BY id DESC LIMIT 1", (team,))
        return rows[0]["owner"] if rows else None

    def last_owner_of(self, customer: str) -> str | None:
        rows = self.query("SELECT owner FROM tickets WHERE requester=? AND owner IS NOT NULL ORDER BY id DESC "
                          "LIMIT 1", (customer,))
        return rows[0]["owner"] if rows else None

    def secret(self, key: str) -> str:
        """A random secret created once and kept in the database (e.g. for reply tokens)."""
        with self.tx():
            rows = self.query("SELECT value FROM meta WHERE key=?", (key,))
            if rows:
                return str(rows[0]["value"])
            value = secrets.token_urlsafe(32)
            self.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            return value

    # --- outbox -----------------------------------------------------------------------

    def enqueue(self, *, ticket_id: str | None, kind: str, message_id: str, mail_from: str,
                recipients: list[str], raw: bytes, now: datetime) -> None:
        with self.tx():
            self.conn.execute(
                "INSERT INTO outbox (ticket_id, kind, message_id, mail_from, recipients, raw, "
                "next_attempt_at, created_at) VALUES (?,?,?,?,?,?,?,?)",
                (ticket_id, kind, message_id, mail_from, json.dumps(recipients), raw, iso(now), iso(now)))

    def is_outgoing(self, message_id: str) -> bool:
        """Whether inboxd itself queued a mail with this Message-ID (its copy in the Sent folder is no answer)."""
        return bool(self.query("SELECT 1 FROM outbox WHERE message_id=?", (message_id,)))

    def acks_sent_to(self, address: str, since: datetime) -> int:
        """Acknowledgements queued for ``address`` since ``since`` (for the hourly limit)."""
        rows = self.query("SELECT COUNT(*) AS n FROM outbox WHERE kind='ack' AND recipients=? "
                          "AND created_at>=?", (json.dumps([address]), iso(since)))
        return int(rows[0]["n"])

    def due_outbox(self, now: datetime | None, after_id: int = 0, limit: int = 50) -> list[dict[str, Any]]:
        """Pending mail whose retry time has come (all pending mail when ``now`` is None), by id."""
        if now is None:
            return self.query("SELECT * FROM outbox WHERE state='pending' AND id>? ORDER BY id LIMIT ?",
                              (after_id, limit))
        return self.query("SELECT * FROM outbox WHERE state='pending' AND next_attempt_at<=? AND id>? "
                          "ORDER BY id LIMIT ?", (iso(now), after_id, limit))

    def next_outbox_time(self) -> datetime | None:
        rows = self.query("SELECT MIN(next_attempt_at) AS t FROM outbox WHERE state='pending'")
        return datetime.fromisoformat(rows[0]["t"]) if rows and rows[0]["t"] else None

    def mark_sent(self, outbox_id: int, now: datetime) -> None:
        with self.tx():
            self.conn.execute("UPDATE outbox SET state='sent', sent_at=?, attempts=attempts+1, last_error=NULL "
                              "WHERE id=?", (iso(now), outbox_id))

    def mark_retry(self, outbox_id: int, error: str, retry_at: datetime) -> None:
        with self.tx():
            self.conn.execute("UPDATE outbox SET attempts=attempts+1, last_error=?, next_attempt_at=? "
                              "WHERE id=?", (error, iso(retry_at), outbox_id))

    def mark_failed(self, outbox_id: int, error: str) -> None:
        with self.tx():
            self.conn.execute("UPDATE outbox SET state='failed', attempts=attempts+1, last_error=? WHERE id=?",
                              (error, outbox_id))

    # --- reporting --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """What an operator checks first: is mail coming in, and is anything stuck."""
        one = lambda sql: self.query(sql)[0]["n"]  # noqa: E731
        by_status = {s.value: 0 for s in TicketStatus}
        by_status |= {r["status"]: r["n"] for r in self.query("SELECT status, COUNT(*) n FROM tickets GROUP BY status")}
        return {
            "messages_stored": one("SELECT COUNT(*) n FROM raw_messages"),
            "messages_waiting": one("SELECT COUNT(*) n FROM raw_messages WHERE state='received'"),
            "messages_quarantined": one("SELECT COUNT(*) n FROM raw_messages WHERE state='quarantined'"),
            "tickets": by_status,
            "outbox_pending": one("SELECT COUNT(*) n FROM outbox WHERE state='pending'"),
            "outbox_failed": one("SELECT COUNT(*) n FROM outbox WHERE state='failed'"),
            "mailboxes": self.query("SELECT account, folder, uidvalidity, last_uid, last_fetch_at, last_error "
                                    "FROM checkpoints ORDER BY account, folder"),
        }


def _translate(exc: sqlite3.Error) -> StoreError:
    """sqlite3's error as inboxd's: StoreBusy when another process holds the lock (by error code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return (StoreBusy if busy else StoreError)(f"{type(exc).__name__}: {exc}")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
