"""The mail-server fixtures behave like the real servers integration tests rely on them to be."""

from __future__ import annotations

import smtplib
import socket
import time
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from mailservers import MailEnv

pytestmark = pytest.mark.integration


def make_message(subject: str, to: str = "support@example.com", sender: str = "customer@example.com") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = f"<{subject.replace(' ', '-')}@example.com>"
    msg.set_content(f"Body of {subject}.\n")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def send(mailenv: MailEnv, raw: bytes, to: list[str], timeout: float = 10) -> None:
    config = mailenv.smtp.smtp_config()
    with smtplib.SMTP(config["host"], config["port"], timeout=timeout) as smtp:
        smtp.sendmail("customer@example.com", to, raw)


def test_append_and_read_back(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    first = dovecot.append("support", make_message("first"))
    second = dovecot.append("support", make_message("second"), flags=["\\Flagged", "$inboxd"])
    archived = dovecot.append("support", make_message("archived"), folder="Archive/2024")

    assert second > first
    assert dovecot.messages("support") == [make_message("first"), make_message("second")]
    assert dovecot.messages("support", "Archive/2024") == [make_message("archived")]
    flags = dovecot.flags("support")
    assert flags[first] == ()  # reading with BODY.PEEK[] did not set \Seen
    assert set(flags[second]) == {"\\Flagged", "$inboxd"}
    assert dovecot.flags("support", "Archive/2024") == {archived: ()}
    assert dovecot.messages("customer") == []


def test_imap_config_logs_in_with_user_or_address(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    config = dovecot.imap_config("agent")
    assert config == {"host": "127.0.0.1", "port": dovecot.port, "tls": "none", "username": "agent", "password": "pw-agent"}
    for username in ("agent", dovecot.address("agent")):
        with IMAPClient(config["host"], config["port"], ssl=False, timeout=5) as imap:
            imap.login(username, config["password"])
            imap.select_folder("INBOX")


def test_wrong_password_fails_without_slowing_later_logins(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=5) as imap, pytest.raises(LoginError):
        imap.login("agent", "wrong")
    started = time.monotonic()
    with dovecot.client("agent"):
        pass
    assert time.monotonic() - started < 0.5  # Dovecot's auth penalty would make this 2 s or more


def test_idle_is_advertised_and_wakes_on_new_mail(mailenv: MailEnv) -> None:
    with mailenv.dovecot.client("support") as imap:
        assert b"IDLE" in imap.capabilities()
        imap.select_folder("INBOX")
        imap.idle()
        try:
            uid = mailenv.dovecot.append("support", make_message("wake up"))
            responses = imap.idle_check(timeout=5)
        finally:
            imap.idle_done()
    assert (1, b"EXISTS") in responses, responses
    assert uid


def test_smtp_delivers_into_recipient_mailbox(mailenv: MailEnv) -> None:
    raw = make_message("Printer on fire")
    send(mailenv, raw, ["Support@example.com", "agent@other.example"])

    [captured] = mailenv.smtp.wait_for(1)
    assert captured.mail_from == "customer@example.com"
    assert captured.rcpt_tos == ["Support@example.com", "agent@other.example"]
    assert captured.data == raw
    assert captured.message["Subject"] == "Printer on fire"
    assert mailenv.dovecot.messages("support") == [raw]
    assert mailenv.dovecot.messages("agent") == [raw]


def test_unknown_recipient_is_accepted_and_captured(mailenv: MailEnv) -> None:
    send(mailenv, make_message("to nobody", to="nobody@elsewhere.example"), ["nobody@elsewhere.example"])
    [captured] = mailenv.smtp.wait_for(1)
    assert captured.rcpt_tos == ["nobody@elsewhere.example"]
    assert mailenv.dovecot.messages("support") == []


def test_fail_with_then_recover(mailenv: MailEnv) -> None:
    mailenv.smtp.fail_with(421, "try later")
    with pytest.raises(smtplib.SMTPResponseException) as raised:
        send(mailenv, make_message("during outage"), ["support@example.com"])
    assert (raised.value.smtp_code, raised.value.smtp_error) == (421, b"try later")
    assert mailenv.smtp.messages == []

    mailenv.smtp.recover()
    send(mailenv, make_message("after outage"), ["support@example.com"])
    assert [c.message["Subject"] for c in mailenv.smtp.wait_for(1)] == ["after outage"]
    assert len(mailenv.dovecot.messages("support")) == 1


def test_delay_holds_back_the_data_answer(mailenv: MailEnv) -> None:
    mailenv.smtp.delay(0.3)
    started = time.monotonic()
    send(mailenv, make_message("slow but fine"), ["support@example.com"])
    assert time.monotonic() - started >= 0.3
    assert len(mailenv.dovecot.messages("support")) == 1


def test_delay_past_client_timeout_delivers_nothing(mailenv: MailEnv) -> None:
    mailenv.smtp.delay(5)
    with pytest.raises((TimeoutError, smtplib.SMTPServerDisconnected)):
        send(mailenv, make_message("too slow"), ["support@example.com"], timeout=0.3)
    mailenv.smtp.recover()
    time.sleep(0.1)
    assert mailenv.smtp.messages == []
    assert mailenv.dovecot.messages("support") == []


def test_wait_for_reports_what_was_captured(mailenv: MailEnv) -> None:
    send(mailenv, make_message("only one"), ["support@example.com"])
    with pytest.raises(AssertionError, match="captured 1.*only one"):
        mailenv.smtp.wait_for(2, timeout=0.2)


def test_thirty_custom_keywords_are_permanent(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    keywords = [f"$inboxd-SUP-{n}" for n in range(1, 31)]
    uids = [dovecot.append("support", make_message(f"ticket {n}")) for n in range(1, 31)]
    with dovecot.client("support") as imap:
        assert b"\\*" in imap.select_folder("INBOX")[b"PERMANENTFLAGS"]
        for uid, keyword in zip(uids, keywords):
            imap.add_flags([uid], ["$inboxd", keyword])

    dovecot.restart()
    flags = dovecot.flags("support")
    assert [set(flags[uid]) for uid in uids] == [{"$inboxd", keyword} for keyword in keywords]
    with dovecot.client("support") as imap:
        permanent = imap.select_folder("INBOX")[b"PERMANENTFLAGS"]
    assert {keyword.encode() for keyword in keywords} <= set(permanent)


def test_restart_keeps_port_and_mail(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    uid = dovecot.append("support", make_message("before restart"), flags=["$inboxd"])
    port = dovecot.port

    dovecot.stop()
    assert not dovecot.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((dovecot.host, port), timeout=1).close()
    dovecot.start()

    assert dovecot.port == port
    assert dovecot.messages("support") == [make_message("before restart")]
    assert dovecot.flags("support") == {uid: ("$inboxd",)}
    assert "starting up" in dovecot.log_text()


def test_reset_empties_every_mailbox(mailenv: MailEnv) -> None:
    dovecot = mailenv.dovecot
    dovecot.append("support", make_message("inbox"))
    dovecot.append("support", make_message("nested"), folder="Tickets/Closed")
    dovecot.append("customer2", make_message("sent"), folder="Sent")
    with dovecot.client("support") as imap:
        imap.subscribe_folder("Tickets/Closed")

    dovecot.reset()

    for user in ("support", "customer2"):
        with dovecot.client(user) as imap:
            assert [name for _flags, _sep, name in imap.list_folders()] == ["INBOX"]
            assert [name for _flags, _sep, name in imap.list_sub_folders()] == []
        assert dovecot.messages(user) == []
