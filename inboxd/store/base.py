"""One SQLite connection and its transactions: what every repository of the store shares.

Every change that must not be half-done (a ticket, its message, its event and the
acknowledgement it queues) happens inside one ``tx()``. Each thread opens its own
``Store`` on the same file; WAL mode lets readers work while one writer commits,
and ``BEGIN IMMEDIATE`` makes writers queue instead of failing on upgrade. sqlite3's
errors leave as inboxd's (``StoreBusy`` by error code), so callers never import sqlite3.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from inboxd.errors import StoreBusy, StoreError
from inboxd.store.schema import MIGRATIONS, _statements


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """Timestamps are stored as sortable UTC ISO-8601 text."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds")


class Connection:
    """One connection to the inboxd database, for one thread; the repositories build on it."""

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
        except BaseException as exc:  # anything, even KeyboardInterrupt, must roll back; re-raised below
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


def _translate(exc: sqlite3.Error) -> StoreError:
    """sqlite3's error as inboxd's: StoreBusy when another process holds the lock (by error code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return (StoreBusy if busy else StoreError)(f"{type(exc).__name__}: {exc}")
