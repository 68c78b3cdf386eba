"""Senders with an international (UTF-8, RFC 6531) address, and malformed ones, end to end."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from inboxd.store.sqlite import Store

from helpers import load_settings, run_once, write_config
from mailservers import free_port

UTF8_SENDER = "jdöe@mächine.example"
UTF8_MAIL = ('From: "Jöhn Doe" <jdöe@mächine.example>\r\nTo: support@example.com\r\nSubject: Order 1042\r\n'
             "Message-ID: <utf8-sender@mächine.example>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
             "My order has not arrived.\r\n").encode()


def _rows(settings: Any, sql: str) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql)
    finally:
        store.close()


def test_a_utf8_address_becomes_a_ticket_and_is_acknowledged_over_smtputf8(tmp_path: Path, mailenv: Any) -> None:
    settings = load_settings(write_config(tmp_path, mailenv))
    mailenv.dovecot.append("support", UTF8_MAIL)
    assert run_once(settings)
    [ticket] = _rows(settings, "SELECT requester, requester_name FROM tickets")
    assert ticket == {"requester": UTF8_SENDER, "requester_name": "Jöhn Doe"}
    [ack] = [m for m in mailenv.smtp.messages if m.rcpt_tos == [UTF8_SENDER]]
    parsed = email.message_from_string(ack.data.decode("utf-8"), policy=email.policy.default)  # RFC 6532
    assert parsed["To"].addresses[0].addr_spec == UTF8_SENDER
    assert parsed["To"].addresses[0].display_name == "Jöhn Doe"
    assert _rows(settings, "SELECT state FROM outbox") == [{"state": "sent"}]


class _Accept:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


def test_without_smtputf8_the_acknowledgement_is_recorded_undeliverable(tmp_path: Path, mailenv: Any) -> None:
    port = free_port()
    plain = Controller(_Accept(), hostname="127.0.0.1", port=port, enable_SMTPUTF8=False)
    plain.start()
    try:
        path = write_config(tmp_path, mailenv)
        path.write_text(path.read_text().replace(f"port = {mailenv.smtp.port}", f"port = {port}"), encoding="utf-8")
        settings = load_settings(path)
        mailenv.dovecot.append("support", UTF8_MAIL)
        assert run_once(settings)
    finally:
        plain.stop()
    assert [t["requester"] for t in _rows(settings, "SELECT requester FROM tickets")] == [UTF8_SENDER]
    [row] = _rows(settings, "SELECT state, last_error FROM outbox")
    assert row["state"] == "failed" and "SMTPUTF8" in row["last_error"]


def test_a_from_address_without_a_local_part_gets_no_acknowledgement(tmp_path: Path, mailenv: Any) -> None:
    settings = load_settings(write_config(tmp_path, mailenv))
    mailenv.dovecot.append("support", b"From: @powerupdev.com\r\nTo: support@example.com\r\nSubject: hello\r\n"
                                      b"Message-ID: <no-local@powerupdev.com>\r\n\r\nhi\r\n")
    assert run_once(settings)
    assert _rows(settings, "SELECT COUNT(*) n FROM outbox") == [{"n": 0}]
    [raw] = _rows(settings, "SELECT state, error FROM raw_messages")
    assert raw["state"] == "quarantined" and "no usable sender" in raw["error"]
    assert mailenv.smtp.messages == []
