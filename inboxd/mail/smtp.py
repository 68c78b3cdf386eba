"""One SMTP connection (aiosmtplib), with the server's answers mapped to inboxd's send errors.

The outbox (``send.py``) decides by class only: SendPermanent marks a mail failed,
SendTransient retries it later, and ConnectionLost also ends the connection, so
the rest of the batch waits for the next round instead of failing one by one.
"""

from __future__ import annotations

import aiosmtplib

from inboxd.config import SmtpSettings
from inboxd.errors import ConnectionLost, SendPermanent, SendTransient
from inboxd.mail.tls import client_context


class SmtpConnection:
    """Opened on the first mail of a round and reused for the rest."""

    def __init__(self, settings: SmtpSettings) -> None:
        s = settings
        self.client = aiosmtplib.SMTP(hostname=s.host, port=s.port, use_tls=s.tls == "ssl",
                                      start_tls=s.tls == "starttls", tls_context=client_context(s.verify_tls),
                                      validate_certs=s.verify_tls, timeout=s.timeout,
                                      username=s.username or None, password=s.password or None)

    async def open(self) -> None:
        try:
            await self.client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ConnectionLost(f"cannot reach the mail server: {exc}") from exc

    async def send(self, mail_from: str, recipients: list[str], raw: bytes) -> None:
        international = not all(a.isascii() for a in (mail_from, *recipients))
        try:
            await self.client.sendmail(mail_from, recipients, raw, mail_options=["SMTPUTF8"] if international else [])
        except aiosmtplib.SMTPNotSupported as exc:  # checked by aiosmtplib before anything is sent
            raise SendPermanent("undeliverable: the address is international (UTF-8) and the mail server does "
                                f"not offer SMTPUTF8 ({exc})") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            error = "every recipient was refused: " + "; ".join(
                f"{r.recipient} {r.code} {r.message}" for r in exc.recipients)
            raise (SendPermanent if all(500 <= r.code < 600 for r in exc.recipients) else SendTransient)(error) \
                from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise SendPermanent(f"refused by the mail server: {exc.code} {exc.message}") from exc
            raise SendTransient(f"{exc.code} {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise ConnectionLost(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        try:
            await self.client.quit()
        except (aiosmtplib.SMTPException, OSError):  # already gone: nothing was in flight
            self.client.close()
