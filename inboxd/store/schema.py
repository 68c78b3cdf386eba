"""The schema, as numbered migrations: a database is brought up to date step by step at start.

Each step runs in one transaction with its version number (``PRAGMA user_version``), so a
start interrupted mid-upgrade resumes at the step that did not commit.
"""

from __future__ import annotations

import sqlite3

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
""", """
ALTER TABLE raw_messages ADD COLUMN sender TEXT;
ALTER TABLE raw_messages ADD COLUMN message_id TEXT;
ALTER TABLE raw_messages ADD COLUMN refers_to TEXT NOT NULL DEFAULT '[]';
ALTER TABLE raw_messages ADD COLUMN fresh INTEGER NOT NULL DEFAULT 0;
CREATE INDEX raw_waiting_fresh ON raw_messages (id) WHERE state='received' AND fresh=1;
CREATE INDEX raw_sender ON raw_messages (sender, state);
CREATE INDEX raw_message_id ON raw_messages (message_id, state);
ALTER TABLE outbox ADD COLUMN urgent INTEGER NOT NULL DEFAULT 0;
CREATE INDEX outbox_urgent ON outbox (id) WHERE state='pending' AND urgent=1;
""", """
CREATE INDEX outbox_ticket ON outbox (ticket_id, kind);
""")


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit our transaction)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    return out
