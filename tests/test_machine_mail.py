"""Machine mail creates no work (issue 11, item 1), against the real Dovecot and SMTP server.

Auto-replies, bounces and bulk mail about no ticket are kept as tickets closed on arrival: no
owner, no clock, no alert, counted by ``status``. On an existing ticket they join the thread
without reopening it or starting a clock; a bounce of one of our mails tells the owner why.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from test_routing_e2e import AGENT, routed_settings

from inboxd.cli.main import main
from inboxd.model import TicketStatus
from inboxd.sla import clocks
from inboxd.store.sqlite import Store

from helpers import CUSTOMER, mail, parse, run_once

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


def dsn(returned_message_id: str, recipient: str = CUSTOMER) -> bytes:
    return (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\nTo: support@example.com\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <dsn-" + returned_message_id[1:-1].encode()
            + b">\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: multipart/report; report-type=delivery-status; boundary=\"b1\"\r\n\r\n"
            b"--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
            b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
            b"Final-Recipient: rfc822; " + recipient.encode() + b"\r\nAction: failed\r\nStatus: 5.1.1\r\n"
            b"Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\r\n"
            b"--b1\r\nContent-Type: text/rfc822-headers\r\n\r\nFrom: support@example.com\r\n"
            b"To: " + recipient.encode() + b"\r\nMessage-ID: " + returned_message_id.encode()
            + b"\r\nSubject: [SUP-1] We have your message\r\n\r\n--b1--\r\n")


def query(settings: Any, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql, params)
    finally:
        store.close()


def test_machine_mail_about_no_ticket_is_closed_on_arrival_and_never_alerts(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(sender="amy@example.net", subject="Out of Office: back on Monday",
                                           headers={"Auto-Submitted": "auto-replied"}))
    mailenv.dovecot.append("support", mail(sender="li@example.cn", subject="自动回复：我正在休假"))
    mailenv.dovecot.append("support", dsn("<somebody-elses@example.org>", "nobody@example.org"))
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    assert run_once(settings, TUESDAY_10)

    rows = query(settings, "SELECT ticket_id, requester, status, owner FROM tickets ORDER BY id")
    machine = [r for r in rows if r["requester"] != CUSTOMER]
    assert [(r["status"], r["owner"]) for r in machine] == [("closed", None)] * 3
    [person] = [r for r in rows if r["requester"] == CUSTOMER]
    assert person["status"] == "new" and person["owner"] == AGENT
    ids = tuple(r["ticket_id"] for r in machine)
    marks = ",".join("?" * len(ids))
    assert query(settings, f"SELECT * FROM sla_timers WHERE ticket_id IN ({marks})", ids) == []
    tags = {r["ticket_id"]: set() for r in machine}
    for r in query(settings, f"SELECT ticket_id, tag FROM ticket_tags WHERE ticket_id IN ({marks})", ids):
        tags[r["ticket_id"]].add(r["tag"])
    assert all("auto-reply" in t for t in tags.values()) and "bounce" in tags[machine[2]["ticket_id"]]

    # five days later: the customer's ticket has escalated; the machine mail has alerted nobody
    assert run_once(settings, TUESDAY_10 + timedelta(days=5))
    assert query(settings, f"SELECT * FROM outbox WHERE ticket_id IN ({marks})", ids) == []
    assert query(settings, f"SELECT * FROM sla_alerts WHERE ticket_id IN ({marks})", ids) == []
    assert query(settings, "SELECT COUNT(*) n FROM sla_alerts WHERE ticket_id=?", (person["ticket_id"],))[0]["n"]
    assert not [m for m in mailenv.smtp.messages if "Undelivered" in m.message.get("Subject", "")]

    result = CliRunner().invoke(main, ["--config", str(settings.path), "status", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["machine_mail"] == 3
    listed = CliRunner().invoke(main, ["--config", str(settings.path), "tickets", "list", "--status", "closed"])
    assert all(r["ticket_id"] in listed.output for r in machine)


def test_an_out_of_office_reply_on_a_pending_ticket_leaves_it_pending_without_a_clock(tmp_path: Path,
                                                                                     mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    assert run_once(settings, TUESDAY_10)
    store = Store(settings.database)
    try:  # the agent answered and asked the customer for the order number: pending
        answered = TUESDAY_10 + timedelta(hours=1)
        store.add_message("SUP-1", direction="out", kind="answer", now=answered, message_id="<answer-1@example.com>",
                          from_addr="support@example.com", to_addrs=[CUSTOMER], subject="Re: Where is my parcel?",
                          body="Which order number?")
        store.update_ticket("SUP-1", answered, first_response_at=answered.isoformat())
        clocks.team_answered(store, "SUP-1", answered)
        clocks.change_status(store, settings, "SUP-1", TicketStatus.PENDING, answered, actor=AGENT)
    finally:
        store.close()
    mailenv.dovecot.append("support", mail(subject="Automatic reply: Re: Where is my parcel?",
                                           headers={"Auto-Submitted": "auto-replied"},
                                           in_reply_to="<answer-1@example.com>"))
    assert run_once(settings, TUESDAY_10 + timedelta(hours=2))

    [ticket] = query(settings, "SELECT status FROM tickets")
    assert ticket["status"] == "pending"
    assert query(settings, "SELECT kind FROM sla_timers WHERE state='running'") == []
    kinds = [r["kind"] for r in query(settings, "SELECT kind FROM events ORDER BY id")]
    assert "machine_mail_added" in kinds and "customer_replied" not in kinds and "status_open" not in kinds
    assert len(query(settings, "SELECT id FROM messages WHERE direction='in'")) == 2  # on the thread


def test_a_bounce_of_our_acknowledgement_joins_its_ticket_and_tells_the_owner(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    assert run_once(settings, TUESDAY_10)
    [ack] = [r for r in query(settings, "SELECT message_id, kind FROM outbox") if r["kind"] == "ack"]
    mailenv.dovecot.append("support", dsn(ack["message_id"]))
    assert run_once(settings, TUESDAY_10 + timedelta(minutes=5))

    assert [r["ticket_id"] for r in query(settings, "SELECT ticket_id FROM tickets")] == ["SUP-1"]
    [ticket] = query(settings, "SELECT status FROM tickets")
    assert ticket["status"] == "new"
    assert len(query(settings, "SELECT id FROM messages WHERE ticket_id='SUP-1' AND direction='in'")) == 2
    notes = [parse(raw) for raw in mailenv.dovecot.messages("agent")]
    bounced = [n for n in notes if "bounced" in n.get_body(("plain",)).get_content()]  # type: ignore[union-attr]
    assert len(bounced) == 1
    text = bounced[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "the customer's address bounced: 5.1.1" in text and "User unknown" in text
