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
import sqlite3
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiosmtplib

from inboxd.config import SmtpSettings
from inboxd.log import log
from inboxd.store.sqlite import Store

logger = logging.getLogger("inboxd.send")

MAX_RETRY_DELAY = 3600.0
GIVE_UP_AFTER = timedelta(days=3)


def _post_json(url: str, body: bytes, timeout: float) -> int:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "inboxd"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (admin-set URL)
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


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
            except sqlite3.OperationalError as exc:
                log(logger, logging.WARNING, "sent_mark_waiting", outbox_id=outbox_id, error=str(exc))
                return False
            del self.accepted[outbox_id]
        return True

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
        """Send what is due now (or everything pending): mail over one SMTP connection, webhooks by POST.

        Rows are read page by page in id order, so each is tried once per call however
        long the queue is, and a failure does not block what was queued after it.
        """
        report = SendReport()
        if not await self.record_accepted():
            return report  # sending more now could only repeat what the server already has
        after_id = 0
        connection: list[aiosmtplib.SMTP] = []  # opened on the first mail, reused for the rest
        try:
            while rows := await asyncio.to_thread(self.store.due_outbox, None if ignore_backoff else self.clock(),
                                                  after_id):
                after_id = rows[-1]["id"]
                for row in rows:
                    if row["id"] in self.accepted:
                        continue
                    if row["kind"] == "webhook":
                        await self._post(row, report)
                    elif not await self._send_mail(connection, row, report):
                        for later in rows[rows.index(row) + 1:]:
                            if later["kind"] != "webhook":
                                await self._retry_or_fail(later, "the mail server connection failed", report)
                        return report
        finally:
            for client in connection:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
        return report

    async def _send_mail(self, connection: list[aiosmtplib.SMTP], row: dict[str, Any], report: SendReport) -> bool:
        """Send one queued mail; False when the server cannot be reached or the connection broke."""
        if not connection:
            client = self._client()
            try:
                await client.connect()
            except (aiosmtplib.SMTPException, OSError) as exc:
                await self._retry_or_fail(row, f"cannot reach the mail server: {exc}", report)
                return False
            connection.append(client)
        try:
            await connection[0].sendmail(row["mail_from"], json.loads(row["recipients"]), row["raw"])
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
            await self._retry_or_fail(row, f"{type(exc).__name__}: {exc}", report)
            return False
        else:
            await self._sent(row, report)
        return True

    async def _post(self, row: dict[str, Any], report: SendReport) -> None:
        """Deliver a webhook (JSON POST); any 2xx answer counts as delivered."""
        url = json.loads(row["recipients"])[0]
        try:
            status = await asyncio.to_thread(_post_json, url, row["raw"], self.settings.timeout)
        except (OSError, ValueError) as exc:
            await self._retry_or_fail(row, f"webhook {type(exc).__name__}: {exc}", report)
            return
        if 200 <= status < 300:
            await self._sent(row, report)
        elif 400 <= status < 500 and status not in (408, 429):
            await self._fail(row, f"webhook refused: HTTP {status}", report)
        else:
            await self._retry_or_fail(row, f"webhook answered HTTP {status}", report)

    async def _sent(self, row: dict[str, Any], report: SendReport) -> None:
        """The server took it: record that, or remember it until the database lets us."""
        self.accepted[row["id"]] = self.clock()
        await self.record_accepted()
        report.sent += 1
        log(logger, logging.INFO, "mail_sent" if row["kind"] != "webhook" else "webhook_sent", outbox_id=row["id"],
            kind=row["kind"], ticket=row["ticket_id"], message_id=row["message_id"])

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
