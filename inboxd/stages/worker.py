"""The worker: the one loop that takes stored mail through the stages.

Fetch has already put the raw bytes in the database. Each batch of waiting mail
is claimed, parsed, and shown to the model in one call (batched prediction is
about 7x cheaper), then each message goes to its handler: a copy from the Sent
folder, an agent's reply, or customer mail. Every step for one message runs in
``_guarded``, the loop's only broad ``except``: whatever goes wrong quarantines
that message alone (it stays stored and visible) and the others go on.

Poison mail (Mailman's MAX_BAK_COUNT): a message is claimed (``attempts`` + 1,
committed) before it is worked on. A batch is claimed with one commit; since a
crash then says nothing about which mail of the batch caused it, every mail it
left unfinished is retried alone, claimed right before its own turn. A mail
claimed alone ``POISON_LIMIT`` times without finishing has crashed the worker that
often by itself: it is quarantined, and the mail behind it flows.

Before the first claim the worker warms up what the first Chinese mail would
otherwise load during its own processing (OpenCC's dictionaries, babel's locale
data): the first customer after a restart is not kept waiting, and a restart
killed while loading is not counted against a mail.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from functools import partial
from itertools import takewhile

from inboxd.config import SUPPORTED_LANGUAGES, Settings
from inboxd.errors import ModelError, StoreBusy, StoreError
from inboxd.log import log
from inboxd.model import Attachment, ParsedMessage, RawState
from inboxd.reply.render import Renderer
from inboxd.routing.assign import Routing
from inboxd.sla.businesstime import format_due
from inboxd.stages.agent_reply import AgentReplies
from inboxd.stages.customer import CustomerMail
from inboxd.stages.prepare import Ahead, Preparer
from inboxd.stages.sent_copy import SentCopies
from inboxd.store.base import utcnow
from inboxd.store.ledger import RawRow
from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classifier, Guess
from inboxd.triage.identity import AgentMail, identify, token_ticket
from inboxd.triage.language import detect_language
from inboxd.triage.parse import parse_message
from inboxd.triage.train import example_text

logger = logging.getLogger("inboxd.pipeline")
POISON_LIMIT = 3
CRASH_HOOK = "INBOXD_TEST_CRASH_MARKER"  # tests only: a mail containing this text kills the worker process


class Worker:
    def __init__(self, settings: Settings, store: Store, renderer: Renderer, classifier: Classifier,
                 routing: Routing, clock: Callable[[], datetime] = utcnow, processes: int | None = 0) -> None:
        self.settings, self.store, self.classifier, self.routing, self.clock = \
            settings, store, classifier, routing, clock
        self.sent_copies = SentCopies(settings, store)
        self.agent_replies = AgentReplies(settings, store, routing)
        self.customers = CustomerMail(settings, store, renderer, classifier, routing)
        self.preparer = Preparer(processes)
        self._busy: set[int] = set()  # claimed, then the database was busy: the next try is not another claim
        self._crash_marker = os.environ.get(CRASH_HOOK, "").encode()
        self._secret: str | None = None

    def process_pending(self, on_batch: Callable[[], None] = lambda: None) -> int:
        """Process every stored message still waiting; returns how many were handled.

        Two lanes: the waiting mail in arrival order, a batch at a time, and before each batch
        any fresh mail that may go ahead of it (``Ledger.fresh_raw``), so a customer who writes
        while a backlog drains is answered in seconds. ``on_batch`` runs after each batch so the
        sender can start on a long backlog early.
        """
        done = after = 0
        rows: list[RawRow] | None = None  # the next batch of the arrival-order lane; None: read it
        ahead: Ahead | None = None
        while True:
            if fresh := self.store.fresh_raw():
                batch, early = fresh, {}
                taken = {r.id for r in fresh}
                rows = [r for r in rows if r.id not in taken] if rows else None
            elif rows or (rows := self.store.pending_raw(after_id=after)):
                batch = rows[:1] if rows[0].attempts else list(takewhile(lambda r: not r.attempts, rows))
                early = self.preparer.collect(ahead) if ahead is not None and ahead.ids[0] == batch[0].id else {}
                after = batch[-1].id
                rows = self.store.pending_raw(after_id=after)  # read now: parsed elsewhere meanwhile
                ahead = self.preparer.submit([r.id for r in rows], [r.raw for r in rows]) if rows else None
            else:
                return done
            try:
                self._run(batch, early)
            except StoreBusy as exc:  # the claim could not be written: nothing was done, try next round
                log(logger, logging.WARNING, "batch_retry", raw_id=batch[0].id, error=str(exc))
                return done
            done += len(batch)
            on_batch()

    def close(self) -> None:
        """Stop the parsing helper process, if one was started."""
        self.preparer.close()

    def warm_up(self) -> None:
        """Load the lazily loaded language data now, outside any mail's claim (see the module docstring)."""
        for text in ("您好，我的訂單還沒到，請幫忙查詢。", "您好，我的订单还没到，请帮忙查询。"):
            detect_language(text)
        for language in SUPPORTED_LANGUAGES:
            format_due(self.clock(), self.settings.support.timezone, language)

    def _run(self, batch: list[RawRow], early: dict[int, ParsedMessage]) -> None:
        """Claim, parse (unless the helper did), guess in one model call, then handle each mail."""
        first = batch[0]
        if first.attempts > POISON_LIMIT:  # the batch claim, then POISON_LIMIT claims alone
            self._quarantine(first, f"crashed the worker {POISON_LIMIT} times", self.clock())
            return
        self.store.claim_raw([r.id for r in batch if r.id not in self._busy])
        parsed: dict[int, ParsedMessage] = {}
        for row in batch:
            self._guarded(row, partial(self._parse_into, parsed, row, early.get(row.id)))
        guesses = self._guesses([(r.id, parsed[r.id]) for r in batch if r.id in parsed])
        for row in batch:
            if row.id in parsed:
                self._guarded(row, partial(self._handle, row, parsed[row.id], guesses[row.id]))

    def _guarded(self, row: RawRow, step: Callable[[], None]) -> None:
        now = self.clock()
        try:
            step()
            self._busy.discard(row.id)
        except StoreBusy as exc:  # another process holds the database: next round, never quarantined for it
            self._busy.add(row.id)
            log(logger, logging.WARNING, "message_retry", raw_id=row.id, uid=row.uid, error=repr(exc))
        except StoreError as exc:
            logger.exception("message_failed", extra={"fields": {"raw_id": row.id, "uid": row.uid}})
            self._quarantine(row, f"database error: {exc}", now)
        except Exception as exc:  # the loop's one catch-all: whatever a message does, it alone is quarantined
            logger.exception("message_failed", extra={"fields": {"raw_id": row.id, "uid": row.uid}})
            self._quarantine(row, f"{type(exc).__name__}: {exc}", now)

    @staticmethod
    def _parse_into(parsed: dict[int, ParsedMessage], row: RawRow, early: ParsedMessage | None) -> None:
        message = early or parse_message(row.raw)
        if row.truncated:  # stored without its attachments: list what the server said they were
            omitted = tuple(Attachment(a.get("filename"), a.get("content_type", "application/octet-stream"),
                                       int(a.get("size", 0)), omitted=True) for a in row.omitted_attachments)
            message = replace(message, truncated=True, attachments=omitted or message.attachments)
        parsed[row.id] = message

    def _guesses(self, items: list[tuple[int, ParsedMessage]]) -> dict[int, Guess | None]:
        """The model's guesses for a batch in one call; if the batch fails, one by one, and rules only for
        a message the model cannot take (it is still processed, and tagged for triage)."""
        texts = [example_text(p.subject, p.text) for _, p in items]
        try:
            return dict(zip((i for i, _ in items), self.classifier.guesses(texts), strict=True))
        except ModelError as exc:
            log(logger, logging.WARNING, "model_batch_failed", messages=len(items), error=str(exc))
        out: dict[int, Guess | None] = {}
        for (raw_id, _), text in zip(items, texts, strict=True):
            try:
                out[raw_id] = self.classifier.guesses([text])[0]
            except ModelError as exc:
                log(logger, logging.WARNING, "model_failed", raw_id=raw_id, error=str(exc), note="rules only")
                out[raw_id] = None
        return out

    def _handle(self, row: RawRow, parsed: ParsedMessage, guess: Guess | None) -> None:
        if self._crash_marker and self._crash_marker in row.raw:
            os.kill(os.getpid(), signal.SIGKILL)
        now = self.clock()
        if parsed.from_addr is None:
            self._quarantine(row, "no usable sender address (From header missing or unreadable)", now)
            return
        support = self.settings.support
        if row.folder and row.folder == self.settings.imap.sent_folder:
            outcome = self.sent_copies.handle(row, parsed, now)
        else:
            secret = self._reply_secret()
            who = identify(parsed, self.routing.directory, secret=secret, support_address=support.address,
                           trusted_servers=self.settings.routing.trusted_auth_servers)
            team_ticket = None if isinstance(who, AgentMail) else \
                token_ticket(parsed, self.routing.directory, secret=secret, support_address=support.address)
            if isinstance(who, AgentMail):
                outcome = self.agent_replies.handle(row, parsed, who, now)
            elif team_ticket and self.agent_replies.from_team_side(team_ticket, parsed):
                outcome = self.agent_replies.comment(row, parsed, team_ticket, who, now)
            else:
                outcome = self.customers.handle(row, parsed, who, guess, now)
        if outcome is not None:
            log(logger, logging.INFO, "message_processed", raw_id=row.id, uid=row.uid, **outcome)

    def _reply_secret(self) -> str:
        """The reply-token secret: from the config, else created once in the database and kept here."""
        if self._secret is None:
            self._secret = self.settings.routing.reply_secret or self.store.secret("reply_token")
        return self._secret

    def _quarantine(self, row: RawRow, reason: str, now: datetime) -> None:
        self.store.finish_raw(row.id, RawState.QUARANTINED, error=reason, now=now)
        log(logger, logging.WARNING, "message_quarantined", raw_id=row.id, uid=row.uid, reason=reason)
