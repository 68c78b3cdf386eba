"""Send: deliver queued mail from the outbox over SMTP.

Mail is already in the database (queued with the ticket change that caused it),
so sending can fail and be retried without losing anything. A temporary problem
(server down, 4xx answer, timeout) is retried with growing delays; a permanent
refusal (5xx) marks the mail failed, visible in ``inboxd status``. A row is
marked sent right after the server accepts it; the only window for a duplicate
is a crash between the server's "250 OK" and that commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from inboxd.config import SmtpSettings
from inboxd.errors import ConnectionLost, SendPermanent, SendTransient, StoreError
from inboxd.log import log
from inboxd.mail.smtp import SmtpConnection
from inboxd.mail.webhook import post_json
from inboxd.store.outbox import OutboxRow
from inboxd.store.sqlite import Store

logger = logging.getLogger("inboxd.send")

MAX_RETRY_DELAY = 3600.0
GIVE_UP_AFTER = timedelta(days=3)
PAGE = 20  # mails read at a time; urgent mail queued meanwhile waits at most one page


@dataclass
class SendReport:
    sent: int = 0
    retrying: int = 0
    failed: int = 0


class Sender:
    def __init__(self, settings: SmtpSettings, store: Store, clock: Callable[[], datetime]) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        # Outbox rows the server accepted whose "sent" mark could not be written yet (database
        # locked): never sent again by this process, and recorded before anything else is sent.
        self.accepted: dict[int, datetime] = {}

    async def record_accepted(self) -> bool:
        """Write the pending "sent" marks; False while the database still refuses."""
        for outbox_id, at in list(self.accepted.items()):
            try:
                await asyncio.to_thread(self.store.mark_sent, outbox_id, at)
            except StoreError as exc:  # busy or failing: the mark is written on the next call
                log(logger, logging.WARNING, "sent_mark_waiting", outbox_id=outbox_id, error=str(exc))
                return False
            del self.accepted[outbox_id]
        return True

    async def send_due(self, *, ignore_backoff: bool = False) -> SendReport:
        """Send what is due now (or everything pending): mail over one SMTP connection, webhooks by POST.

        Rows are read page by page in id order, each page preceded by the urgent mail queued
        meanwhile (the acknowledgement of a mail that just arrived goes out ahead of a backlog's).
        Each row is tried once per call however long the queue is, and a failure does not block
        what was queued after it.
        """
        report = SendReport()
        if not await self.record_accepted():
            return report  # sending more now could only repeat what the server already has
        after_id = 0
        tried: set[int] = set()
        connection: list[SmtpConnection] = []  # opened on the first mail, reused for the rest
        try:
            while True:
                now = None if ignore_backoff else self.clock()
                rows = [r for r in await asyncio.to_thread(self.store.due_urgent, now) if r.id not in tried]
                if not rows:
                    rows = await asyncio.to_thread(self.store.due_outbox, now, after_id, PAGE)
                    if not rows:
                        break
                    after_id = rows[-1].id
                    rows = [r for r in rows if r.id not in tried]
                tried.update(r.id for r in rows)
                # the decisions that queued these, and the "sent" marks of the page before, on disk
                await asyncio.to_thread(self.store.make_durable)
                for row in rows:
                    if row.id in self.accepted:
                        continue
                    if row.kind == "webhook":
                        await self._post(row, report)
                    elif not await self._send_mail(connection, row, report):
                        for later in rows[rows.index(row) + 1:]:
                            if later.kind != "webhook":
                                await self._retry_or_fail(later, "the mail server connection failed", report)
                        return report
        finally:
            for smtp in connection:
                await smtp.close()
            if report.sent:
                await asyncio.to_thread(self.store.make_durable)  # the last page's "sent" marks
        return report

    async def _send_mail(self, connection: list[SmtpConnection], row: OutboxRow, report: SendReport) -> bool:
        """Send one queued mail; False when the server cannot be reached or the connection broke."""
        try:
            if not connection:
                smtp = SmtpConnection(self.settings)
                await smtp.open()
                connection.append(smtp)
            await connection[0].send(row.mail_from, row.recipients, row.raw)
        except SendPermanent as exc:
            await self._fail(row, str(exc), report)
        except SendTransient as exc:
            await self._retry_or_fail(row, str(exc), report)
            return not isinstance(exc, ConnectionLost)
        else:
            await self._sent(row, report)
        return True

    async def _post(self, row: OutboxRow, report: SendReport) -> None:
        """Deliver a webhook (JSON POST); any 2xx answer counts as delivered."""
        url = row.recipients[0]
        try:
            await asyncio.to_thread(post_json, url, row.raw, self.settings.timeout)
        except SendPermanent as exc:
            await self._fail(row, str(exc), report)
        except SendTransient as exc:
            await self._retry_or_fail(row, str(exc), report)
        else:
            await self._sent(row, report)

    async def _sent(self, row: OutboxRow, report: SendReport) -> None:
        """The server took it: record that, or remember it until the database lets us."""
        self.accepted[row.id] = self.clock()
        await self.record_accepted()
        report.sent += 1
        log(logger, logging.INFO, "mail_sent" if row.kind != "webhook" else "webhook_sent", outbox_id=row.id,
            kind=row.kind, ticket=row.ticket_id, message_id=row.message_id)

    async def _fail(self, row: OutboxRow, error: str, report: SendReport) -> None:
        await asyncio.to_thread(self.store.mark_failed, row.id, error)
        report.failed += 1
        log(logger, logging.ERROR, "mail_failed", outbox_id=row.id, kind=row.kind,
            ticket=row.ticket_id, error=error)

    async def _retry_or_fail(self, row: OutboxRow, error: str, report: SendReport) -> None:
        now = self.clock()
        if now - row.created_at > GIVE_UP_AFTER:
            await self._fail(row, f"gave up after {GIVE_UP_AFTER.days} days: {error}", report)
            return
        delay = min(self.settings.retry_delay * 2 ** row.attempts, MAX_RETRY_DELAY)
        await asyncio.to_thread(self.store.mark_retry, row.id, error, now + timedelta(seconds=delay))
        report.retrying += 1
        log(logger, logging.WARNING, "mail_retry", outbox_id=row.id, kind=row.kind,
            ticket=row.ticket_id, error=error, retry_in=round(delay))
