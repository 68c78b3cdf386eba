"""One SQLite connection and its transactions: what every repository of the store shares.

Every change that must not be half-done (a ticket, its message, its event and the
acknowledgement it queues) happens inside one ``tx()``. Each thread opens its own
``Store`` on the same file; WAL mode lets readers work while one writer commits,
and ``BEGIN IMMEDIATE`` makes writers queue instead of failing on upgrade. sqlite3's
errors leave as inboxd's (``StoreBusy`` by error code), so callers never import sqlite3.

Durability: commits run with ``synchronous=NORMAL`` under WAL, which survives a crash of
inboxd (a committed transaction is in the operating system's hands) but not necessarily a
power cut. What must survive one is made so with ``make_durable()`` (one fsync of the
write-ahead log, outside the write lock) right before inboxd acts outside the database:
the sender calls it before it hands queued mail to the server and after it records "sent".
Lost on a power cut is thus only work that is redone (mail stored or processed since the
last fsync is fetched or processed again, with nothing sent for it yet).

Threads of one process take a Python lock before ``BEGIN IMMEDIATE``: they then queue in
order, instead of SQLite's busy handler making a waiting writer sleep (up to 100 ms per try)
while a busy thread takes the lock again and again. Other processes still wait on SQLite.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from inboxd.errors import StoreBusy, StoreError
from inboxd.store.schema import MIGRATIONS, _statements

LOCK_TIMEOUT = 30.0  # seconds a writer waits for another thread of this process, as busy_timeout does
_writers: dict[str, threading.Lock] = {}
_writers_guard = threading.Lock()


def _writer_lock(path: Path) -> threading.Lock:
    """The one lock all connections of this process to ``path`` write under."""
    key = str(path) if str(path) == ":memory:" else os.path.realpath(path)
    with _writers_guard:
        return _writers.setdefault(key, threading.Lock())


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
        conn.execute("PRAGMA synchronous=NORMAL")  # see the module docstring: make_durable() where it matters
        self.db = Database(conn)
        self.conn = conn
        self._lock = threading.Lock() if str(path) == ":memory:" else _writer_lock(self.path)
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
        if not self._lock.acquire(timeout=LOCK_TIMEOUT):
            raise StoreBusy(f"another thread has held the database for over {LOCK_TIMEOUT:.0f} s")
        try:
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
        finally:
            self._lock.release()

    def make_durable(self) -> None:
        """Put every committed transaction (of any connection) on disk: fsync of the write-ahead log.

        Called before inboxd acts on what the database says outside of it (see the module docstring).
        """
        if str(self.path) == ":memory:":
            return
        try:
            fd = os.open(f"{self.path}-wal", os.O_RDONLY)
        except FileNotFoundError:  # no log: everything is in the database file, synced at checkpoint
            return
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StoreError(f"could not write the database to disk: {exc}") from exc
        finally:
            os.close(fd)

    def query(self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        """Rows as dicts. Plain sqlite3 rather than sqlite-utils' ``query()``, which wraps every SELECT
        in a SAVEPOINT: 20 of the 50 statements per processed mail, measured."""
        try:
            cursor = self.conn.execute(sql, params)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row)) for row in cursor.fetchall()]
        except sqlite3.Error as exc:
            raise _translate(exc) from exc


def _translate(exc: sqlite3.Error) -> StoreError:
    """sqlite3's error as inboxd's: StoreBusy when another process holds the lock (by error code)."""
    code = getattr(exc, "sqlite_errorcode", None)
    busy = code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return (StoreBusy if busy else StoreError)(f"{type(exc).__name__}: {exc}")
