"""Fetch: copy new mail from the support mailbox into the database.

The position in each mailbox folder is a checkpoint (UIDVALIDITY + last UID),
moved in the same transaction that stores a message, so a restart neither skips
nor repeats one. The \\Seen flag is never used or changed (agents read the same
mailbox); mail is fetched with BODY.PEEK and, once processed, marked with the
keywords ``$inboxd`` and ``$inboxd-<ticket>``. Nothing is ever deleted.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from inboxd.config import ImapSettings
from inboxd.errors import MailboxError, MailboxPermanent, MailboxTransient, describe
from inboxd.log import log
from inboxd.mail.tls import client_context
from inboxd.store.sqlite import Store

logger = logging.getLogger("inboxd.fetch")

PROCESSED_KEYWORD = "$inboxd"
QUARANTINE_KEYWORD = "$inboxd-quarantined"
OVERSIZE_TEXT_BYTES = 256 * 1024  # of an oversized message, keep headers and this much of the body
BATCH_BYTES = 8 * 1024 * 1024
MAX_BACKOFF = 300.0
P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class Fetched:
    raw: bytes
    size: int
    truncated: bool = False
    omitted: list[dict[str, Any]] = field(default_factory=list)


class MailSource(Protocol):
    """A mailbox folder inboxd reads from: IMAP in production, a directory in the demo."""

    uidvalidity: int

    def connect(self) -> None: ...

    def close(self) -> None: ...

    def new_messages(self, after_uid: int) -> list[tuple[int, int]]:
        """(uid, size) of messages with a UID above ``after_uid``, in UID order."""
        ...

    def fetch(self, uids: Sequence[int], max_size: int, sizes: dict[int, int]) -> dict[int, Fetched]: ...

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None: ...

    def wait(self, timeout: float, interrupted: Callable[[], bool]) -> None:
        """Return when new mail may have arrived, ``timeout`` passed, or ``interrupted()``."""
        ...


def _mapped(method: Callable[P, R]) -> Callable[P, R]:
    """Translate imapclient's and the socket's errors into inboxd's (permanent: login or certificate)."""

    @functools.wraps(method)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except (LoginError, ssl.SSLCertVerificationError) as exc:
            raise MailboxPermanent(describe(exc)) from exc
        except (IMAPClientError, OSError) as exc:
            raise MailboxTransient(describe(exc)) from exc

    return call


class ImapSource:
    """The support mailbox over IMAP (imapclient is synchronous: one thread owns it)."""

    def __init__(self, settings: ImapSettings, folder: str) -> None:
        self.settings = settings
        self.folder = folder
        self.client: IMAPClient | None = None
        self.uidvalidity = 0
        self.keywords_allowed = True
        self.ticket_keywords = True

    @_mapped
    def connect(self) -> None:
        s = self.settings
        context = client_context(s.verify_tls)
        client = IMAPClient(s.host, port=s.port, ssl=s.tls == "ssl", ssl_context=context, timeout=60)
        try:
            if s.tls == "starttls":
                client.starttls(context)
            client.login(s.username, s.password)
            info = client.select_folder(self.folder)
        except BaseException:
            _quiet_logout(client)
            raise
        self.client = client
        self.uidvalidity = int(info[b"UIDVALIDITY"])
        permanent = [f.decode() if isinstance(f, bytes) else str(f) for f in info.get(b"PERMANENTFLAGS", ())]
        self.keywords_allowed = "\\*" in permanent
        if not self.keywords_allowed:
            log(logger, logging.WARNING, "keywords_unsupported", folder=self.folder,
                note="the server does not allow custom keywords; processed mail will not be marked")

    def close(self) -> None:
        if self.client is not None:
            _quiet_logout(self.client)
            self.client = None

    def _client(self) -> IMAPClient:
        if self.client is None:
            raise ConnectionError("not connected")
        return self.client

    @_mapped
    def new_messages(self, after_uid: int) -> list[tuple[int, int]]:
        client = self._client()
        uids = [u for u in client.search(["UID", f"{after_uid + 1}:*"]) if u > after_uid]
        if not uids:
            return []
        sizes = client.fetch(uids, ["RFC822.SIZE"])
        return sorted((u, int(sizes[u][b"RFC822.SIZE"])) for u in uids if u in sizes)

    @_mapped
    def fetch(self, uids: Sequence[int], max_size: int, sizes: dict[int, int]) -> dict[int, Fetched]:
        client = self._client()
        small = [u for u in uids if sizes[u] <= max_size]
        out: dict[int, Fetched] = {}
        if small:
            for uid, data in client.fetch(small, ["BODY.PEEK[]"]).items():
                out[uid] = Fetched(bytes(data[b"BODY[]"]), sizes[uid])
        for uid in (u for u in uids if sizes[u] > max_size):
            data = client.fetch([uid], ["BODY.PEEK[HEADER]", f"BODY.PEEK[TEXT]<0.{OVERSIZE_TEXT_BYTES}>",
                                        "BODYSTRUCTURE"]).get(uid)
            if data is None:
                continue
            text = next((v for k, v in data.items() if k.startswith(b"BODY[TEXT]")), b"")
            out[uid] = Fetched(bytes(data[b"BODY[HEADER]"]) + bytes(text or b""), sizes[uid], truncated=True,
                               omitted=_attachments_from_structure(data.get(b"BODYSTRUCTURE")))
        return out

    @_mapped
    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        if not self.keywords_allowed or not uids:
            return
        client = self._client()
        wanted = [k for k in keywords if self.ticket_keywords or k in (PROCESSED_KEYWORD, QUARANTINE_KEYWORD)]
        try:
            client.add_flags(list(uids), [k.encode() for k in wanted], silent=True)
        except IMAPClientError as exc:
            if not self.ticket_keywords or len(wanted) == 1:
                raise
            # Some servers cap the number of distinct keywords: keep only the generic one.
            self.ticket_keywords = False
            log(logger, logging.WARNING, "ticket_keywords_disabled", error=str(exc))
            client.add_flags(list(uids), [wanted[0].encode()], silent=True)

    @_mapped
    def wait(self, timeout: float, interrupted: Callable[[], bool]) -> None:
        client = self._client()
        deadline = time.monotonic() + timeout
        if not client.has_capability("IDLE"):
            while time.monotonic() < deadline and not interrupted():
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            client.noop()
            return
        if self._pending_new_mail(client):
            return
        client.idle()
        try:
            while time.monotonic() < deadline and not interrupted():
                responses = client.idle_check(timeout=min(1.0, max(0.05, deadline - time.monotonic())))
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses):
                    break
        finally:
            client.idle_done()


    @staticmethod
    def _pending_new_mail(client: IMAPClient) -> bool:
        """Whether a new-mail notice already came in with an earlier command's answer.

        imaplib keeps untagged EXISTS/RECENT lines that arrive with a STORE or SEARCH
        answer to itself; IDLE would then wait for the next mail or the poll interval.
        """
        pending = getattr(getattr(client, "_imap", None), "untagged_responses", None)
        if not isinstance(pending, dict):
            return False
        found = False
        for name in ("EXISTS", "RECENT"):
            found = pending.pop(name, None) is not None or found
        return found


def _quiet_logout(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection may already be gone; nothing to save
        try:
            client.shutdown()
        except Exception:
            pass


def _attachments_from_structure(structure: Any) -> list[dict[str, Any]]:
    """Name, type and size of each part from BODYSTRUCTURE, for mail too big to download."""
    found: list[dict[str, Any]] = []

    def text(v: Any) -> str:
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v or "")

    def params(v: Any) -> dict[str, str]:
        items = list(v) if isinstance(v, (tuple, list)) else []
        return {text(items[i]).lower(): text(items[i + 1]) for i in range(0, len(items) - 1, 2)}

    def walk(part: Any, depth: int) -> None:
        if depth > 20 or not isinstance(part, (tuple, list)) or not part:
            return
        if isinstance(part[0], (tuple, list)):  # multipart: child parts, then the subtype
            for child in part[0] if isinstance(part[0][0], (tuple, list)) else part:
                if isinstance(child, (tuple, list)):
                    walk(child, depth + 1)
            return
        try:
            ctype = f"{text(part[0])}/{text(part[1])}".lower()
            name = params(part[2]).get("name")
            size = int(part[6]) if len(part) > 6 and str(part[6]).isdigit() else 0
        except (IndexError, TypeError, ValueError):
            return
        for extra in part[7:]:
            if isinstance(extra, (tuple, list)) and len(extra) == 2 and isinstance(extra[1], (tuple, list)):
                name = params(extra[1]).get("filename", name)
        if name or not ctype.startswith("text/"):
            found.append({"filename": name, "content_type": ctype, "size": size})

    walk(structure, 0)
    return found


class Fetcher:
    """Moves mail from one source folder into the store and marks what was processed."""

    def __init__(self, source: MailSource, store: Store, *, account: str, folder: str, max_size: int,
                 clock: Callable[[], datetime], on_stored: Callable[[], None] = lambda: None) -> None:
        self.source, self.store = source, store
        self.account, self.folder, self.max_size = account, folder, max_size
        self.clock, self.on_stored = clock, on_stored

    def sync(self) -> int:
        """Store every message above the checkpoint; returns how many were stored."""
        uidvalidity = self.source.uidvalidity
        checkpoint = self.store.checkpoint(self.account, self.folder)
        last_uid = 0
        if checkpoint is not None:
            if checkpoint[0] == uidvalidity:
                last_uid = checkpoint[1]
            else:
                log(logger, logging.WARNING, "uidvalidity_changed", account=self.account, folder=self.folder,
                    old=checkpoint[0], new=uidvalidity,
                    note="reading the folder again; mail already ticketed is recognised and not duplicated")
        pending = self.source.new_messages(last_uid)
        sizes = dict(pending)
        stored = 0
        while pending:
            batch: list[int] = []
            total = 0
            while pending and (not batch or total + min(pending[0][1], self.max_size) <= BATCH_BYTES):
                uid, size = pending.pop(0)
                batch.append(uid)
                total += min(size, self.max_size)
            fetched = self.source.fetch(batch, self.max_size, sizes)
            with self.store.tx():  # one durable commit per fetched batch, checkpoint included
                for uid in batch:
                    item = fetched.get(uid)
                    if item is None:  # expunged by someone between SEARCH and FETCH
                        continue
                    self.store.store_raw(self.account, self.folder, uidvalidity, uid, item.raw, size=item.size,
                                         truncated=item.truncated, omitted=item.omitted, now=self.clock())
                    stored += 1
                    if item.truncated:
                        log(logger, logging.WARNING, "message_oversized", uid=uid, size=item.size,
                            limit=self.max_size, note="stored without its attachments")
            self.on_stored()
        if not stored:
            self.store.set_checkpoint(self.account, self.folder, uidvalidity, last_uid, self.clock())
        return stored

    def mark_processed(self) -> int:
        """Set keywords on processed mail so agents see in their client what inboxd has handled."""
        rows = self.store.unflagged(self.account, self.folder)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["state"] == "quarantined":
                groups[(QUARANTINE_KEYWORD,)].append(row)
            else:
                groups[(PROCESSED_KEYWORD, f"{PROCESSED_KEYWORD}-{row['ticket_id']}")].append(row)
        for keywords, members in groups.items():
            self.source.add_keywords([r["uid"] for r in members], keywords)
            self.store.mark_flagged([r["id"] for r in members])
        return len(rows)

    def run(self, stop: threading.Event, wake: threading.Event, poll_interval: float) -> None:
        """The fetch loop of the daemon: connect, sync, mark, wait; reconnect with backoff."""
        delay = 1.0
        while not stop.is_set():
            try:
                self.source.connect()
                log(logger, logging.INFO, "mailbox_connected", account=self.account, folder=self.folder)
                delay = 1.0
                while not stop.is_set():
                    wake.clear()
                    self.sync()
                    self.mark_processed()
                    self.source.wait(poll_interval, lambda: stop.is_set() or wake.is_set())
            except MailboxError as exc:
                self._failed(exc, delay)
            except Exception as exc:  # the loop must survive anything; the error is logged in full
                logger.exception("fetch_failed", extra={"fields": {"account": self.account}})
                self._failed(exc, delay)
            finally:
                self.source.close()
            stop.wait(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, MAX_BACKOFF)

    def _failed(self, exc: Exception, delay: float) -> None:
        error = describe(exc)
        try:
            self.store.record_fetch_error(self.account, self.folder, error)
        except Exception:  # the database itself may be the problem; the log line below still tells
            pass
        log(logger, logging.WARNING, "mailbox_unreachable", account=self.account, error=error,
            retry_in=round(delay, 1))
