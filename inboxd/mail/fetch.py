"""Fetch: copy new mail from the support mailbox into the database.

The position in each mailbox folder is a checkpoint (UIDVALIDITY + last UID),
moved in the same transaction that stores a message, so a restart neither skips
nor repeats one. The \\Seen flag is never used or changed (agents read the same
mailbox); mail is fetched with BODY.PEEK and, once processed, marked with the
keywords ``$inboxd`` and ``$inboxd-<ticket>``. Nothing is ever deleted.

Memory does not grow with the backlog: new mail is read and stored a batch at a
time, keywords are set a page at a time, and the ``FLAGS`` lists a server sends
whenever a new keyword appears (each naming every keyword of the mailbox, one per
ticket) are dropped instead of piling up in imaplib.
"""

from __future__ import annotations

import functools
import logging
import random
import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby, islice
from typing import Any, ParamSpec, Protocol, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError, LoginError

from inboxd.config import ImapSettings
from inboxd.errors import MailboxError, MailboxPermanent, MailboxTransient, describe
from inboxd.log import log
from inboxd.mail.tls import client_context
from inboxd.model import RawState
from inboxd.store.sqlite import Store
from inboxd.triage.parse import envelope

logger = logging.getLogger("inboxd.fetch")

PROCESSED_KEYWORD = "$inboxd"
QUARANTINE_KEYWORD = "$inboxd-quarantined"
GENERIC_KEYWORDS = (PROCESSED_KEYWORD, QUARANTINE_KEYWORD)
OVERSIZE_TEXT_BYTES = 256 * 1024  # of an oversized message, keep headers and this much of the body
BATCH_BYTES = 8 * 1024 * 1024
FETCH_UIDS = 500  # UIDs per FETCH and per stored batch: a short command line, a bounded answer
FRESH_MAILS = 20  # a round that finds at most this many new mails found new arrivals, not a backlog
KEYWORD_PAGE = 1000  # processed mails given their keywords per round
PIPELINE = 100  # STOREs sent before their answers are read (a few KB: no risk of a send/receive deadlock)
UID_SET_CHARS = 4000  # longest UID set in one command (servers limit lines; RFC 7162 advises <= 8192 octets)
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

    def new_messages(self, after_uid: int) -> Iterable[tuple[int, int]]:
        """(uid, size) of messages with a UID above ``after_uid``, in UID order (may be produced lazily)."""
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
        _drop_flag_lists(self.client)  # e.g. from a keyword another client created meanwhile
        return self.client

    def new_messages(self, after_uid: int) -> Iterator[tuple[int, int]]:
        """One SEARCH for the UIDs, then their sizes FETCH_UIDS at a time as the caller goes, so a large
        backlog is never held whole (a size answer costs about 400 bytes of Python objects per mail)."""
        uids = self._uids_after(after_uid)
        for start in range(0, len(uids), FETCH_UIDS):
            yield from self._sizes(uids[start:start + FETCH_UIDS])

    @_mapped
    def _uids_after(self, after_uid: int) -> list[int]:
        return sorted(u for u in self._client().search(["UID", f"{after_uid + 1}:*"]) if u > after_uid)

    @_mapped
    def _sizes(self, uids: list[int]) -> list[tuple[int, int]]:
        sizes = self._client().fetch(uids, ["RFC822.SIZE"])
        return [(u, int(sizes[u][b"RFC822.SIZE"])) for u in uids if u in sizes]

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

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        """MailSource's form: the same keywords on every UID."""
        self.add_keyword_map({k: uids for k in keywords})

    @_mapped
    def add_keyword_map(self, marks: Mapping[str, Sequence[int]]) -> None:
        """Add each keyword to its own UIDs, with one pipelined round trip per PIPELINE STOREs.

        IMAP sets the same flags on every UID of a STORE, so each ticket keyword needs its own
        command; sent PIPELINE at a time before the answers are read, they cost a round trip
        per hundred tickets, not per ticket (and Dovecot folds the FLAGS updates of several
        into one). The generic keywords go first: if the server then refuses ticket keywords
        (some cap how many a mailbox may have), every mail is still marked as handled, and
        ticket keywords stay off for this source.
        """
        if not self.keywords_allowed:
            return
        client = self._client()
        generic = [(k, uids) for k, uids in marks.items() if k in GENERIC_KEYWORDS and uids]
        if refused := _store_pipelined(client, generic):
            raise IMAPClientError(f"UID STORE refused: {refused}")
        tickets = [(k, uids) for k, uids in marks.items() if k not in GENERIC_KEYWORDS and uids]
        if self.ticket_keywords and (refused := _store_pipelined(client, tickets)):
            self.ticket_keywords = False
            log(logger, logging.WARNING, "ticket_keywords_disabled", error=refused)

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


    @_mapped
    def new_mail_announced(self) -> bool:
        """Whether the server told us of new mail in the answers to our last commands."""
        return self._pending_new_mail(self._client())

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


def _store_pipelined(client: IMAPClient, marks: Sequence[tuple[str, Sequence[int]]]) -> str | None:
    """``UID STORE +FLAGS.SILENT`` of each (keyword, UIDs), PIPELINE commands in flight at a time.

    Uses imaplib's tagged-command calls, as imapclient's own fetch does: ``_command`` sends and
    registers a tag, ``_command_complete`` reads up to that tag's answer. Returns the first
    refusal (NO or BAD); no command is sent after one, but every answer in flight is read.
    """
    imap = client._imap
    commands = ((keyword, uid_set) for keyword, uids in marks for uid_set in _uid_sets(uids))
    refused: str | None = None
    while refused is None and (window := list(islice(commands, PIPELINE))):
        tags = [imap._command("UID", "STORE", uid_set, "+FLAGS.SILENT", f"({keyword})") for keyword, uid_set in window]
        for tag, (keyword, _uids) in zip(tags, window):
            try:
                typ, data = imap._command_complete("STORE", tag)
            except IMAPClientAbortError:
                raise
            except IMAPClientError as exc:  # a BAD answer
                typ, data = "BAD", [str(exc)]
            finally:
                _drop_flag_lists(client)
            if typ != "OK" and refused is None:
                refused = f"{keyword}: {typ} {data[0]!r}"
    return refused


def _uid_sets(uids: Iterable[int]) -> Iterator[str]:
    """The UIDs as IMAP sets of runs ("4:9,12"), each at most UID_SET_CHARS long."""
    parts: list[str] = []
    length = 0
    for _, run in groupby(enumerate(sorted(set(uids))), lambda pair: pair[1] - pair[0]):
        members = [uid for _, uid in run]
        part = str(members[0]) if len(members) == 1 else f"{members[0]}:{members[-1]}"
        if parts and length + len(part) + 1 > UID_SET_CHARS:
            yield ",".join(parts)
            parts, length = [], 0
        parts.append(part)
        length += len(part) + 1
    if parts:
        yield ",".join(parts)


def _drop_flag_lists(client: IMAPClient) -> None:
    """Forget the untagged FLAGS / PERMANENTFLAGS (and OK) lines imaplib keeps for the caller.

    A server sends both, naming every keyword of the mailbox, each time a new keyword appears:
    with a keyword per ticket that is one line per ticket, each longer than the last. imaplib
    keeps them all until the next SELECT; inboxd reads none of them (EXISTS/RECENT are kept,
    ``_pending_new_mail`` needs them).
    """
    pending = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    if isinstance(pending, dict):
        for name in ("FLAGS", "PERMANENTFLAGS", "OK"):
            pending.pop(name, None)


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
        """Store every message above the checkpoint; returns how many were stored.

        The backlog is fetched and stored as it is listed, a batch at a time (BATCH_BYTES,
        FETCH_UIDS), so what is held in memory does not depend on its length.
        """
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
        stored = total = 0
        batch: dict[int, int] = {}  # uid -> size
        for uid, size in self.source.new_messages(last_uid):
            if batch and (len(batch) >= FETCH_UIDS or total + min(size, self.max_size) > BATCH_BYTES):
                stored += self._store_batch(batch, uidvalidity, fresh=False)
                batch, total = {}, 0
            batch[uid] = size
            total += min(size, self.max_size)
        if batch:  # a few new mails and nothing before them in this round: they just arrived
            stored += self._store_batch(batch, uidvalidity, fresh=not stored and len(batch) <= FRESH_MAILS)
        if not stored:
            self.store.set_checkpoint(self.account, self.folder, uidvalidity, last_uid, self.clock())
        return stored

    def _store_batch(self, sizes: dict[int, int], uidvalidity: int, *, fresh: bool) -> int:
        fetched = self.source.fetch(list(sizes), self.max_size, sizes)
        stored = 0
        with self.store.tx():  # one durable commit per fetched batch, checkpoint included
            for uid in sizes:
                item = fetched.get(uid)
                if item is None:  # expunged by someone between SEARCH and FETCH
                    continue
                self.store.store_raw(self.account, self.folder, uidvalidity, uid, item.raw, size=item.size,
                                     truncated=item.truncated, omitted=item.omitted, now=self.clock(),
                                     envelope=envelope(item.raw), fresh=fresh)
                stored += 1
                if item.truncated:
                    log(logger, logging.WARNING, "message_oversized", uid=uid, size=item.size,
                        limit=self.max_size, note="stored without its attachments")
        self.on_stored()
        return stored

    def mark_processed(self) -> int:
        """Set keywords on processed mail so agents see in their client what inboxd has handled.

        A page of KEYWORD_PAGE mails at a time: one STORE of ``$inboxd`` for the page, the
        ticket keywords pipelined (``ImapSource.add_keyword_map``); a page is marked flagged
        in the database only once its STOREs succeeded, so a failure repeats them, harmlessly.
        """
        done = last_id = 0
        while rows := self.store.unflagged_page(self.account, self.folder, after_id=last_id, limit=KEYWORD_PAGE):
            marks: dict[str, list[int]] = defaultdict(list)
            for row in rows:
                if row["state"] == RawState.QUARANTINED:
                    marks[QUARANTINE_KEYWORD].append(row["uid"])
                    continue
                marks[PROCESSED_KEYWORD].append(row["uid"])
                if row["ticket_id"]:  # e.g. an agent's mail that names no ticket has none
                    marks[f"{PROCESSED_KEYWORD}-{row['ticket_id']}"].append(row["uid"])
            if isinstance(self.source, ImapSource):  # other sources (the demo's folder) take one set per call
                self.source.add_keyword_map(marks)
            else:
                for keyword, uids in marks.items():
                    self.source.add_keywords(uids, [keyword])
            self.store.mark_flagged([r["id"] for r in rows])
            last_id = rows[-1]["id"]
            done += len(rows)
            if isinstance(self.source, ImapSource) and self.source.new_mail_announced():
                self.sync()  # a customer who wrote meanwhile is not kept waiting by a long marking
        return done

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
