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
import json
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib

from inboxd.config import SmtpSettings
from inboxd.log import log
from inboxd.store import Store

logger = logging.getLogger("inboxd.send")

MAX_RETRY_DELAY = 3600.0
GIVE_UP_AFTER = timedelta(days=3)


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

    def _client(self) -> aiosmtplib.SMTP:
        s = self.settings
        context = ssl.create_default_context()
        if not s.verify_tls:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls == "ssl",
                               start_tls=True if s.tls == "starttls" else False, tls_context=context,
                               validate_certs=s.verify_tls, timeout=s.timeout,
                               username=s.username or None, password=s.password or None)

    async def send_due(self, *, ignore_backoff: bool = False) -> SendReport:
        """Send what is due now (or everything pending) over one SMTP connection.

        Rows are read page by page in id order, so each is tried once per call however
        long the queue is, and a page that fails does not block the ones queued after it.
        """
        report = SendReport()
        after_id = 0
        client: aiosmtplib.SMTP | None = None
        try:
            while rows := await asyncio.to_thread(self.store.due_outbox, None if ignore_backoff else self.clock(),
                                                  after_id):
                after_id = rows[-1]["id"]
                if client is None:
                    client = self._client()
                    try:
                        await client.connect()
                    except (aiosmtplib.SMTPException, OSError) as exc:
                        client = None
                        for row in rows:
                            await self._retry_or_fail(row, f"cannot reach the mail server: {exc}", report)
                        return report
                if not await self._send_page(client, rows, report):
                    return report
        finally:
            if client is not None:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return report

    async def _send_page(self, client: aiosmtplib.SMTP, rows: list[dict[str, Any]], report: SendReport) -> bool:
        """Send one page; False when the connection broke (the rest of the page is retried later)."""
        for index, row in enumerate(rows):
            try:
                await client.sendmail(row["mail_from"], json.loads(row["recipients"]), row["raw"])
            except aiosmtplib.SMTPRecipientsRefused as exc:
                error = "every recipient was refused: " + "; ".join(
                    f"{r.recipient} {r.code} {r.message}" for r in exc.recipients)
                if all(500 <= r.code < 600 for r in exc.recipients):
                    await self._fail(row, error, report)
                else:
                    await self._retry_or_fail(row, error, report)
            except aiosmtplib.SMTPResponseException as exc:
                if 500 <= exc.code < 600:
                    await self._fail(row, f"refused by the mail server: {exc.code} {exc.message}", report)
                else:
                    await self._retry_or_fail(row, f"{exc.code} {exc.message}", report)
            except (aiosmtplib.SMTPException, OSError) as exc:
                for later in rows[index:]:  # the connection is gone; try these later
                    await self._retry_or_fail(later, f"{type(exc).__name__}: {exc}", report)
                return False
            else:
                await asyncio.to_thread(self.store.mark_sent, row["id"], self.clock())
                report.sent += 1
                log(logger, logging.INFO, "mail_sent", outbox_id=row["id"], kind=row["kind"],
                    ticket=row["ticket_id"], message_id=row["message_id"])
        return True

    async def _fail(self, row: dict[str, Any], error: str, report: SendReport) -> None:
        await asyncio.to_thread(self.store.mark_failed, row["id"], error)
        report.failed += 1
        log(logger, logging.ERROR, "mail_failed", outbox_id=row["id"], kind=row["kind"],
            ticket=row["ticket_id"], error=error)

    async def _retry_or_fail(self, row: dict[str, Any], error: str, report: SendReport) -> None:
        now = self.clock()
        if now - datetime.fromisoformat(row["created_at"]) > GIVE_UP_AFTER:
            await self._fail(row, f"gave up after {GIVE_UP_AFTER.days} days: {error}", report)
            return
        delay = min(self.settings.retry_delay * 2 ** row["attempts"], MAX_RETRY_DELAY)
        await asyncio.to_thread(self.store.mark_retry, row["id"], error, now + timedelta(seconds=delay))
        report.retrying += 1
        log(logger, logging.WARNING, "mail_retry", outbox_id=row["id"], kind=row["kind"],
            ticket=row["ticket_id"], error=error, retry_in=round(delay))
