"""End to end: real Dovecot in, real SMTP out, the customer's own mailbox read back."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.store.sqlite import Store

from helpers import CUSTOMER, SUPPORT, events, mail, parse, run_once, settings_for, tickets

pytestmark = pytest.mark.integration

TAIPEI = ZoneInfo("Asia/Taipei")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TAIPEI)  # 4 business hours later: 14:00


def acks_for(mailenv, user: str = "customer") -> list:
    return [parse(raw) for raw in mailenv.dovecot.messages(user)]


def test_new_mail_becomes_ticket_and_customer_receives_acknowledgement(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    raw = mail(subject="Order 1042 never arrived", message_id="<order-1042@example.com>")
    mailenv.dovecot.append("support", raw)

    assert run_once(settings, TUESDAY_10)

    [ticket] = tickets(settings)
    assert ticket["ticket_id"] == "SUP-1" and ticket["status"] == "new" and ticket["requester"] == CUSTOMER
    [ack] = acks_for(mailenv)
    assert "[SUP-1]" in ack["Subject"] and "Order 1042 never arrived" in ack["Subject"]
    assert ack["From"].addresses[0].addr_spec == SUPPORT
    assert ack["In-Reply-To"] == "<order-1042@example.com>"
    assert "<order-1042@example.com>" in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    text = ack.get_body(("plain",)).get_content()
    html = ack.get_body(("html",)).get_content()
    assert "SUP-1" in text and "Tue 24 Nov, 14:00" in text and "Taipei" in text
    assert "SUP-1" in html and "Tue 24 Nov, 14:00" in html
    store = Store(settings.database)
    [out] = store.query("SELECT message_id FROM messages WHERE direction='out'")
    assert out["message_id"] == ack["Message-ID"]  # the Message-ID we sent is recorded for threading
    assert store.status()["outbox_pending"] == 0
    assert events(settings, "SUP-1") == ["created", "assigned", "sla_started", "classified", "ack_queued"]


def test_processed_mail_is_marked_with_keywords_not_seen(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="first"))
    run_once(settings)
    flags = mailenv.dovecot.flags("support")
    [uid] = flags
    assert "$inboxd" in flags[uid] and "$inboxd-SUP-1" in flags[uid]
    assert "\\Seen" not in flags[uid]
    assert len(mailenv.dovecot.messages("support")) == 1  # nothing deleted or expunged


def test_restart_neither_skips_nor_repeats(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="one", sender="customer@example.com"))
    run_once(settings)
    run_once(settings)  # nothing new: nothing repeated
    mailenv.dovecot.append("support", mail(subject="two", sender="customer2@example.com"))
    run_once(settings)
    assert [t["subject"] for t in tickets(settings)] == ["one", "two"]
    assert len(mailenv.smtp.messages) == 2
    store = Store(settings.database)
    assert store.query("SELECT last_uid FROM checkpoints")[0]["last_uid"] == max(mailenv.dovecot.flags("support"))


def test_follow_up_threads_into_ticket(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Refund please"))
    run_once(settings)
    [ack] = acks_for(mailenv)
    # by subject tag, from the requester
    mailenv.dovecot.append("support", mail(subject="Re: [SUP-1] Refund please", body="Any news?"))
    # by In-Reply-To to the acknowledgement, subject tag removed by the client
    mailenv.dovecot.append("support", mail(subject="Refund", body="Hello?", in_reply_to=ack["Message-ID"]))
    run_once(settings)
    assert len(tickets(settings)) == 1
    store = Store(settings.database)
    assert store.query("SELECT COUNT(*) n FROM messages WHERE ticket_id='SUP-1' AND direction='in'")[0]["n"] == 3
    assert len(mailenv.smtp.messages) == 1  # the follow-ups get no second acknowledgement


def test_cc_participant_can_follow_up(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Team issue", cc="customer2@example.com"))
    run_once(settings)
    mailenv.dovecot.append("support", mail(sender="customer2@example.com", subject="Re: [SUP-1] Team issue"))
    run_once(settings)
    assert len(tickets(settings)) == 1


def test_stranger_with_copied_tag_gets_new_ticket(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="My invoice"))
    run_once(settings)
    mailenv.dovecot.append("support", mail(sender="stranger@example.com", subject="Re: [SUP-1] My invoice",
                                           body="Show me the invoice"))
    run_once(settings)
    assert [t["requester"] for t in tickets(settings)] == [CUSTOMER, "stranger@example.com"]
    assert len(acks_for(mailenv, "stranger")) == 1
    assert "[SUP-2]" in acks_for(mailenv, "stranger")[0]["Subject"]


def test_follow_up_reopens_resolved_ticket(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Broken"))
    run_once(settings)
    store = Store(settings.database)
    store.update_ticket("SUP-1", datetime.now(TAIPEI), status="resolved")
    mailenv.dovecot.append("support", mail(subject="Re: [SUP-1] Broken", body="Still broken"))
    run_once(settings)
    assert tickets(settings)[0]["status"] == "open"
    assert "reopened" in events(settings, "SUP-1")


LOOP_CASES = {
    "auto-submitted": dict(headers={"Auto-Submitted": "auto-replied"}),
    "auto-generated": dict(headers={"Auto-Submitted": "auto-generated"}),
    "precedence-bulk": dict(headers={"Precedence": "bulk"}),
    "precedence-junk": dict(headers={"Precedence": "junk"}),
    "precedence-list": dict(headers={"Precedence": "list"}),
    "x-autoreply": dict(headers={"X-Autoreply": "yes"}),
    "x-autorespond": dict(headers={"X-Autorespond": "yes"}),
    "list-id": dict(headers={"List-Id": "<news.example.com>"}),
    "ooo-en": dict(subject="Out of Office: back on Monday"),
    "autoreply-en": dict(subject="Automatic reply: Your order"),
    "ooo-zh-hant": dict(subject="自動回覆：休假中"),
    "ooo-zh-hans": dict(subject="自动回复：我正在休假"),
    "mailer-daemon": dict(sender="MAILER-DAEMON@mx.example.com", name=""),
    "no-reply": dict(sender="no-reply@shop.example.com", name=""),
    "empty-return-path": dict(headers={"Return-Path": "<>"}),
    "our-own-address": dict(sender=SUPPORT, name="Example Support"),
}


def bounce() -> bytes:
    return (b"From: Mail Delivery System <postmaster@mx.example.com>\r\nTo: support@example.com\r\n"
            b"Subject: Undelivered Mail Returned to Sender\r\nMessage-ID: <bounce-1@mx.example.com>\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; "
            b"boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
            b"--b1\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
            b"Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n--b1--\r\n")


def test_loop_protection_stores_and_threads_but_never_acknowledges(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    for case, kwargs in LOOP_CASES.items():
        kwargs = {"sender": "customer@example.com", **kwargs}
        kwargs.setdefault("subject", f"case {case}")
        mailenv.dovecot.append("support", mail(body=f"case {case}", **kwargs))
    mailenv.dovecot.append("support", bounce())
    assert run_once(settings)
    store = Store(settings.database)
    rows = store.query("SELECT body, no_ack_reason FROM messages WHERE direction='in' ORDER BY id")
    assert len(rows) == len(LOOP_CASES) + 1  # every mail is stored and ticketed
    for row in rows:
        assert row["no_ack_reason"], f"would acknowledge: {row['body'][:40]}"
    assert mailenv.smtp.messages == []
    assert store.status()["outbox_pending"] == 0


def test_acknowledgements_per_sender_are_limited(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv, support="ack_limit_per_hour = 3")
    for n in range(6):
        mailenv.dovecot.append("support", mail(subject=f"flood {n}"))
    run_once(settings)
    assert len(tickets(settings)) == 6
    assert len(acks_for(mailenv)) == 3
    assert "ack_suppressed" in events(settings, "SUP-6")


def encoded(charset: str, text: str) -> bytes:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?=".encode()


def raw_mail(charset: str, subject: str, body: str, sender: str = "customer@example.com") -> bytes:
    return (b"From: " + sender.encode() + b"\r\nTo: support@example.com\r\nSubject: " + encoded(charset, subject)
            + b"\r\nMessage-ID: <" + charset.encode() + b"-1@example.com>\r\nMIME-Version: 1.0\r\n"
            + b"Content-Type: text/plain; charset=" + charset.encode()
            + b"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + body.encode(charset) + b"\r\n")


@pytest.mark.parametrize("charset, subject, body, language", [
    ("big5", "退款問題", "您好，我上週訂購的商品有瑕疵，想申請退款，謝謝。", "zh-Hant"),
    ("gbk", "发票问题", "您好，请问我的发票什么时候可以开出来？谢谢。", "zh-Hans"),
    ("iso-2022-jp", "注文について", "注文した商品がまだ届いていません。", "other"),
])
def test_chinese_and_japanese_mail_decoded(tmp_path: Path, mailenv, charset, subject, body, language) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", raw_mail(charset, subject, body))
    run_once(settings)
    result = CliRunner().invoke(main, ["--config", str(settings.path), "tickets", "show", "SUP-1", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["subject"] == subject and shown["language"] == language
    [message] = shown["messages"][:1]
    assert body in message["body"]
    assert message["charset_declared"] == charset
    [ack] = acks_for(mailenv)
    if language == "zh-Hant":
        assert "工單" in ack.get_body(("plain",)).get_content()
    if language == "zh-Hans":
        assert "工单" in ack.get_body(("plain",)).get_content()


def test_malformed_message_is_quarantined_and_next_is_processed(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.dovecot.append("support", b"\x00\x01garbage without headers\r\n\r\n--broken")
    mailenv.dovecot.append("support", mail(subject="After the broken one"))
    run_once(settings)
    store = Store(settings.database)
    assert store.status()["messages_quarantined"] == 1
    assert store.status()["messages_stored"] == 2
    assert [t["subject"] for t in tickets(settings)] == ["After the broken one"]
    flags = mailenv.dovecot.flags("support")
    assert "$inboxd-quarantined" in flags[min(flags)]


def test_oversized_message_ticketed_without_attachments(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv, imap='max_message_size = "100KB"')
    big = EmailMessage()
    big["From"], big["To"], big["Subject"] = CUSTOMER, SUPPORT, "Photos of the damage"
    big["Message-ID"] = "<big@example.com>"
    big.set_content("The box arrived crushed, photos attached.")
    big.add_attachment(os.urandom(600_000), maintype="image", subtype="jpeg", filename="damage.jpg")
    mailenv.dovecot.append("support", big.as_bytes())
    mailenv.dovecot.append("support", mail(subject="small one", sender="customer2@example.com"))
    run_once(settings)
    store = Store(settings.database)
    [first, second] = tickets(settings)
    assert first["subject"] == "Photos of the damage" and second["subject"] == "small one"
    [row] = store.query("SELECT truncated, length(raw) AS n FROM raw_messages ORDER BY uid LIMIT 1")
    assert row["truncated"] == 1 and row["n"] < 400_000
    [msg] = store.query("SELECT body, attachments FROM messages WHERE ticket_id='SUP-1' AND direction='in'")
    assert "crushed" in msg["body"]
    [attachment] = json.loads(msg["attachments"])
    assert attachment["filename"] == "damage.jpg" and attachment["omitted"] and attachment["size"] > 600_000


def test_smtp_down_then_up(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.smtp.fail_with(421, "service not available")
    mailenv.dovecot.append("support", mail(subject="While SMTP is down"))
    run_once(settings)
    store = Store(settings.database)
    assert store.status()["outbox_pending"] == 1 and acks_for(mailenv) == []
    mailenv.smtp.recover()
    run_once(settings)
    assert len(acks_for(mailenv)) == 1 and store.status()["outbox_pending"] == 0


def test_permanent_smtp_refusal_marks_failed(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.smtp.fail_with(550, "no such user")
    mailenv.dovecot.append("support", mail(subject="refused"))
    run_once(settings)
    assert Store(settings.database).status()["outbox_failed"] == 1


# --- the daemon as a real process ---------------------------------------------------------


def start_daemon(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_until(predicate, timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=20)
    return out.decode(errors="replace")


def test_daemon_answers_new_mail_via_idle_and_stops_cleanly(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    process = start_daemon(settings.path)
    try:
        wait_until(lambda: Store(settings.database).status()["mailboxes"] if settings.database.exists() else False,
                   what="first fetch")
        mailenv.dovecot.append("support", mail(subject="Pushed by IDLE"))
        mailenv.smtp.wait_for(1, timeout=10)
        second = run_once_process(settings.path)
        assert second.returncode == 1 and "already running" in second.stderr
    finally:
        log = stop(process)
    assert process.returncode == 0, log
    assert "message_processed" in log and "ticket=SUP-1" in log
    assert "pw-support" not in log  # the IMAP password never reaches the log


def run_once_process(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), "run", "--once"],
                          capture_output=True, text=True, timeout=30)


def test_killed_between_storing_and_sending_sends_exactly_one_ack(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    mailenv.smtp.fail_with(421, "try later")
    mailenv.dovecot.append("support", mail(subject="Kill me"))
    process = start_daemon(settings.path)

    def attempted() -> bool:
        if not settings.database.exists():
            return False
        rows = Store(settings.database).query("SELECT attempts FROM outbox")
        return bool(rows) and rows[0]["attempts"] >= 1

    try:
        wait_until(attempted, what="a failed send attempt")
    finally:
        process.kill()
        process.wait()
    assert acks_for(mailenv) == []
    mailenv.smtp.recover()
    run_once(settings)
    run_once(settings)
    assert len(acks_for(mailenv)) == 1
    assert len(tickets(settings)) == 1


def test_daemon_reconnects_after_imap_restart(tmp_path: Path, mailenv) -> None:
    settings = settings_for(tmp_path, mailenv)
    process = start_daemon(settings.path)
    try:
        mailenv.dovecot.append("support", mail(subject="before restart"))
        mailenv.smtp.wait_for(1, timeout=10)
        mailenv.dovecot.restart()
        mailenv.dovecot.append("support", mail(subject="after restart", sender="customer2@example.com"))
        mailenv.smtp.wait_for(2, timeout=20)
    finally:
        log = stop(process)
    assert "mailbox_unreachable" in log and log.count("mailbox_connected") >= 2  # it noticed, and came back
    assert [t["subject"] for t in tickets(settings)] == ["before restart", "after restart"]
