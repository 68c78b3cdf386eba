"""The ledger of raw mail: every fetched message's bytes, its state, and each folder's checkpoint.

The checkpoint moves in the same transaction that stores a batch, so a restart neither skips
nor repeats a message; ``attempts`` counts claims for the poison-mail limit.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any

from inboxd.model import Envelope, RawState
from inboxd.store.base import Connection, iso


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
    fresh: bool = False  # arrived while inboxd was watching (not found waiting in a backlog)


class Ledger(Connection):
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
                  size: int, truncated: bool, omitted: list[dict[str, Any]], now: datetime,
                  envelope: Envelope | None = None, fresh: bool = False) -> None:
        """Keep the bytes and move the checkpoint past them in one transaction.

        ``envelope`` (sender, Message-ID, what it refers to) lets a ``fresh`` mail be processed
        ahead of older waiting mail it has nothing to do with; without one the sender is unknown
        (NULL), and nothing fresh goes ahead of this mail.
        """
        sender, message_id, refers = (envelope.sender or "", envelope.message_id, list(envelope.refers_to)) \
            if envelope else (None, None, [])
        with self.tx():
            self.conn.execute(
                "INSERT OR IGNORE INTO raw_messages (account, folder, uidvalidity, uid, size, sha256, raw, "
                "truncated, omitted_attachments, received_at, sender, message_id, refers_to, fresh) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (account, folder, uidvalidity, uid, size, hashlib.sha256(raw).hexdigest(), raw,
                 int(truncated), json.dumps(omitted), iso(now), sender, message_id, json.dumps(refers), int(fresh)))
            self.set_checkpoint(account, folder, uidvalidity, uid, now)

    def fresh_raw(self, limit: int = 20) -> list[RawRow]:
        """Fresh mail that may go ahead of the older waiting mail, in arrival order: it stops at the
        first fresh mail that an older waiting one is from the same sender as (or of unknown sender)
        or is referred to by, so no thread and no two fresh mails are processed out of order."""
        rows = self.query(
            f"SELECT {_RAW_COLUMNS}, (EXISTS (SELECT 1 FROM raw_messages o WHERE o.state='received' AND o.id<r.id "
            "AND (o.sender IS NULL OR o.sender=r.sender)) OR EXISTS (SELECT 1 FROM json_each(r.refers_to) j "
            "JOIN raw_messages o ON o.message_id=j.value WHERE o.state='received' AND o.id<r.id)) AS blocked "
            "FROM raw_messages r WHERE r.state='received' AND r.fresh=1 AND r.attempts=0 ORDER BY r.id LIMIT ?",
            (limit,))
        return [_raw_row(r) for r in takewhile(lambda r: not r["blocked"], rows)]

    def pending_raw(self, after_id: int = 0, limit: int = 50) -> list[RawRow]:
        """Waiting mail in arrival order, a batch at a time."""
        rows = self.query(f"SELECT {_RAW_COLUMNS} FROM raw_messages r WHERE r.state='received' AND r.id>? "
                          "ORDER BY r.id LIMIT ?", (after_id, limit))
        return [_raw_row(r) for r in rows]

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

    def unflagged_page(self, account: str, folder: str, *, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Processed mail whose IMAP keywords are not set yet, a page at a time in id (index) order.

        Paged so that marking a large backlog holds one page of rows, not one row per mail.
        """
        return self.query("SELECT id, uid, state, ticket_id FROM raw_messages WHERE account=? AND folder=? "
                          "AND flagged=0 AND state!='received' AND id>? ORDER BY id LIMIT ?",
                          (account, folder, after_id, limit))

    def mark_flagged(self, ids: list[int]) -> None:
        with self.tx():
            self.conn.executemany("UPDATE raw_messages SET flagged=1 WHERE id=?", [(i,) for i in ids])


_RAW_COLUMNS = "r.id, r.account, r.folder, r.uid, r.raw, r.truncated, r.omitted_attachments, r.attempts, r.fresh"


def _raw_row(r: dict[str, Any]) -> RawRow:
    return RawRow(r["id"], r["account"], r["folder"], r["uid"], r["raw"], bool(r["truncated"]),
                  json.loads(r["omitted_attachments"]), r["attempts"], bool(r["fresh"]))
