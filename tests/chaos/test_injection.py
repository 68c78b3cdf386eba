"""Injection and leaks: what a customer writes never becomes a header or markup in inboxd's mail, a
broken template falls back to the safe built-in text, secrets never reach a log or an error
message, and TLS certificates are checked unless the operator turned that off (and is warned).

Outgoing mail is checked as the raw bytes the SMTP sink accepted, not as inboxd meant to build it.
inboxd runs as ``python -m inboxd`` so its whole stderr can be searched.
"""

from __future__ import annotations

import base64
import email
import email.policy
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from inboxd.reply.render import BUNDLED_TEMPLATES
from inboxd.store.sqlite import Store
from inboxd.triage.parse import parse_message

from hostile_helpers import (
    MAIN,
    SUPPORT,
    AuthSink,
    Certs,
    Mailbox,
    TlsProxy,
    inboxd,
    make_certs,
    with_agent,
    write_instance,
)
from mailservers import LOOPBACK, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ACK_HEADERS = ["from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
               "x-auto-response-suppress", "x-inboxd-ticket", "content-type", "mime-version"]
ACK_HEADERS_TEXT_ONLY = [*ACK_HEADERS, "content-transfer-encoding"]  # no HTML part: a single text/plain
NOTIFY_HEADERS = ["content-type", "mime-version", "content-transfer-encoding", "from", "to", "reply-to",
                  "subject", "date", "message-id", "auto-submitted", "x-auto-response-suppress", "x-inboxd-ticket"]
# Anything a value could be split on by some mail software: CR, LF, VT, FF, FS/GS/RS/US, NEL, LS, PS.
LINE_BREAKS = re.compile("[\r\n\x0b\x0c\x1c-\x1f\x85\u2028\u2029]")
EVIL = "x@evil.example"


def b_word(text: str) -> str:
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def raw_mail(sender: str, *, from_header: bytes | None = None, subject: bytes = b"Help",
             extra: bytes = b"", body: bytes = b"My parcel has not arrived.", message_id: bytes | None = None) -> bytes:
    """A customer mail written byte by byte, so headers can be as broken as an attacker likes."""
    return (b"From: " + (from_header if from_header is not None else f"Customer <{sender}>".encode()) + b"\r\n"
            + b"To: " + SUPPORT.encode() + b"\r\nSubject: " + subject + b"\r\n"
            + b"Date: " + format_datetime(datetime.now().astimezone()).encode() + b"\r\n"
            + b"Message-ID: " + (message_id or make_msgid(domain="example.net").encode()) + b"\r\n" + extra
            + b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + b"\r\n")


# (case id, From header or None, Subject, extra headers, Message-ID or None). Each one must be
# acknowledged, to the real sender, except "bare CR": the stdlib ends a header line at a bare CR,
# so that mail's From is cut in two and it is quarantined for want of a sender (stored, no answer).
INJECTIONS: list[tuple[str, bytes | None, bytes, bytes, bytes | None]] = [
    ("q-word-crlf-subject", None, b"=?utf-8?q?a=0D=0ABcc:_x@evil.example?=", b"", None),
    ("b-word-crlf-subject", None, b_word(f"Hi\r\nBcc: {EVIL}\r\nX-Injected: 1\r\n\r\n<b>body</b>").encode(), b"", None),
    ("q-word-crlf-name", b"=?utf-8?q?Eve=0D=0ABcc=3A_x=40evil.example=0D=0AX-Injected=3A_1?= <{sender}>", b"Hello",
     b"", None),
    ("b-word-crlf-name", b_word(f"Eve\r\nBcc: {EVIL}\r\nTo: {EVIL}").encode() + b" <{sender}>", b"Hello", b"", None),
    ("folded-crlf-in-quoted-name", b'"Eve\r\n Bcc: x@evil.example" <{sender}>', b"Hello", b"", None),
    ("bare-cr-in-name", b'"Eve\rBcc: x@evil.example" <{sender}>', b"Bare\rCc: x@evil.example", b"", None),
    ("percent-encoded-crlf", b'"Eve%0d%0aBcc:%20x@evil.example" <{sender}>',
     b"Help%0d%0aBcc:%20x@evil.example%0D%0AX-Injected:%201", b"", None),
    ("unicode-line-separators", b_word(f"Eve\u2028Bcc: {EVIL}\u0085X-Injected: 1").encode() + b" <{sender}>",
     b_word(f"a\u2028Bcc: {EVIL}\u2029X-Injected: 1\u0085Cc: y@evil.example").encode(), b"", None),
    ("raw-utf8-separators", '"Eve\u2028Bcc: x@evil.example\u0085" <{sender}>'.encode(),
     "raw\u2028Bcc: x@evil.example\u0085X-Injected: 1".encode(), b"", None),
    ("other-control-characters", b_word("Eve\x0bBcc: a@evil.example\x0cX: 1\x1cY: 2\x1dZ: 3\x1e\x1f").encode()
     + b" <{sender}>", b_word("s\x0bBcc: a@evil.example\x0cX-Injected: 1\x00").encode(), b"", None),
    ("second-recipient-in-name", b"=?utf-8?q?Eve=2C_x=40evil.example_=3Cx=40evil.example=3E?= <{sender}>", b"Hi",
     b"", None),
    ("quoted-comma-name", b'"x@evil.example, Bcc: y@evil.example" <{sender}>', b"Hi", b"", None),
    ("folded-subject-header", None, b"first\r\n\tBcc: x@evil.example\r\n X-Injected: 1", b"", None),
    ("message-id-injection", None, b"Threading", b"References: <r1@example.net>\r\n\tBcc: x@evil.example\r\n",
     "<id\u2028Bcc:x@evil.example@example.net>".encode()),
    ("nul-in-name-and-subject", b'"Eve\x00Bcc: x@evil.example" <{sender}>', b"nul\x00Bcc: x@evil.example", b"",
     None),
]
NOT_ACKNOWLEDGED = {"bare-cr-in-name"}


def header_block(data: bytes) -> list[bytes]:
    head, sep, _ = data.partition(b"\r\n\r\n")
    assert sep, "no blank line after the headers"
    return head.split(b"\r\n")


def check_headers(data: bytes, expected: list[str]) -> list[str]:
    """The raw header block has exactly the expected headers, each once, and nothing smuggled in."""
    lines = header_block(data)
    problems = []
    for line in lines:
        if b"\r" in line or b"\n" in line:
            problems.append(f"bare CR or LF in {line[:80]!r}")
        if not line.isascii():
            problems.append(f"unencoded 8-bit header line {line[:80]!r}")
        if len(line) > 998:
            problems.append(f"header line of {len(line)} characters (RFC 5322 allows 998)")
    names = [line.split(b":", 1)[0].decode("ascii", "replace").lower() for line in lines
             if line[:1] not in (b" ", b"\t")]
    if Counter(names) != Counter(expected):
        problems.append(f"header names {sorted(names)} != {sorted(expected)}")
    return problems


@pytest.fixture
def agent_config(tmp_path: Path, mailenv: Any) -> Path:
    return write_instance(tmp_path, mailenv, support={"ack_limit_per_hour": 1000},
                          extra=with_agent(tmp_path) + '\n[routing]\nreply_secret = "inj-secret"\n')


def test_customer_text_never_becomes_a_header(agent_config: Path, mailenv: Any) -> None:
    """CR/LF however written (encoded words, raw, %0d%0a, U+2028/U+0085, other controls) in a
    customer's subject or name: every acknowledgement and notification keeps exactly its own headers."""
    senders = {}
    with Mailbox(mailenv.dovecot, "support") as box:
        for i, (case, from_header, subject, extra, message_id) in enumerate(INJECTIONS):
            sender = f"inj{i}@example.net"
            senders[sender] = case
            header = from_header.replace(b"{sender}", sender.encode()) if from_header is not None else None
            box.append(raw_mail(sender, from_header=header, subject=subject, extra=extra, message_id=message_id))
    run = inboxd(agent_config, "run", "--once")
    assert run.returncode == 0, run.stderr[-3000:]

    acks = {c.rcpt_tos[0]: c for c in mailenv.smtp.messages if c.rcpt_tos[0] in senders}
    notifications = [c for c in mailenv.smtp.messages if c.rcpt_tos == ["agent@example.com"]]
    expected = {sender for sender, case in senders.items() if case not in NOT_ACKNOWLEDGED}
    assert set(acks) == expected, f"no acknowledgement for {[senders[s] for s in expected - set(acks)]}"
    assert len(notifications) == len(expected)
    assert len(mailenv.smtp.messages) == 2 * len(expected)  # nothing sent to anyone else (no x@evil.example)
    status = Store(agent_config.parent / "inboxd.db").status()
    assert status["messages_quarantined"] == len(NOT_ACKNOWLEDGED) and status["outbox_failed"] == 0
    failures = []
    for sender, captured in acks.items():
        case = senders[sender]
        problems = check_headers(captured.data, ACK_HEADERS)
        back = email.message_from_bytes(captured.data, policy=email.policy.default)
        if [a.addr_spec for a in back["To"].addresses] != [sender] or captured.rcpt_tos != [sender]:
            problems.append(f"recipients {back['To']} / {captured.rcpt_tos}")
        for name in ("Bcc", "Cc", "X-Injected", "Reply-To"):
            if back[name] is not None:
                problems.append(f"{name}: {back[name]}")
        for name in ("Subject", "To"):
            if LINE_BREAKS.search(str(back[name])):
                problems.append(f"line break kept in {name}: {str(back[name])!r}")
        if "[SUP-" not in str(back["Subject"]):
            problems.append(f"subject without the ticket tag: {back['Subject']}")
        ours = parse_message(captured.data)  # inboxd's own parser, which reads the mail back when replied to
        if sorted(dict.fromkeys(k for k, _ in ours.headers)) != sorted(ACK_HEADERS):
            problems.append(f"inboxd reads back headers {[k for k, _ in ours.headers]}")
        failures += [f"{case} (ack): {p}" for p in problems]
    for captured in notifications:
        back = email.message_from_bytes(captured.data, policy=email.policy.default)
        problems = check_headers(captured.data, NOTIFY_HEADERS)
        if [a.addr_spec for a in back["To"].addresses] != ["agent@example.com"]:
            problems.append(f"notification to {back['To']}")
        if LINE_BREAKS.search(str(back["Subject"])):
            problems.append(f"line break kept in the notification subject {str(back['Subject'])!r}")
        failures += [f"notification {back['X-Inboxd-Ticket']}: {p}" for p in problems]
    assert not failures, "\n".join(failures)


def test_very_long_subject_word_still_gets_a_deliverable_acknowledgement(tmp_path: Path, mailenv: Any) -> None:
    config = write_instance(tmp_path, mailenv)
    subject = b"Link: https://shop.example/track?token=" + b"A" * 3000 + b" please help"
    mailenv.dovecot.append("support", raw_mail("customer@example.com", subject=subject))
    assert inboxd(config, "run", "--once").returncode == 0
    assert Store(config.parent / "inboxd.db").status()["outbox_failed"] == 0
    [captured] = mailenv.smtp.messages
    assert not check_headers(captured.data, ACK_HEADERS)


SLOPPY_WORDS = {
    # Q-encoded words with raw '@' or ':' (RFC 2047 5(3) forbids them in a phrase; PHP and web forms write them)
    "at-sign in the name": (b"=?utf-8?Q?john@home?= <john@example.com>", "john@example.com"),
    "header in the name": (b"=?utf-8?q?Eve=0D=0ABcc:_x@evil.example=0D=0AX-Injected:_1?= <inj@example.net>",
                           "inj@example.net"),
}


@pytest.mark.parametrize("case", list(SLOPPY_WORDS))
def test_at_or_colon_inside_an_encoded_display_name_does_not_change_the_sender(case: str) -> None:
    from_header, sender = SLOPPY_WORDS[case]
    assert parse_message(raw_mail(sender, from_header=from_header)).from_addr == sender


def test_customer_html_is_escaped_in_the_html_acknowledgement(tmp_path: Path, mailenv: Any) -> None:
    config = write_instance(tmp_path, mailenv)
    name = '<script>alert("name")</script>'
    subject = "<img src=x onerror=alert(1)> order"
    body = "Hi <script>alert('body')</script> <b>bold</b> <a href=\"javascript:alert(3)\">x</a> & \"quotes\""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = f"{b_word(name)} <customer@example.com>", SUPPORT, subject
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(body)
    mailenv.dovecot.append("support", msg.as_bytes())
    assert inboxd(config, "run", "--once").returncode == 0
    [captured] = mailenv.smtp.messages
    ack = email.message_from_bytes(captured.data, policy=email.policy.default)
    html = ack.get_body(("html",)).get_content()
    text = ack.get_body(("plain",)).get_content()
    lowered = html.lower()
    for markup in ("<script", "<img", "<b>", "<a href=\"javascript", "onerror=alert(1)>"):
        assert markup not in lowered, f"customer markup {markup!r} is live in the HTML acknowledgement"
    assert "&lt;script&gt;alert(" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<img src=x onerror=alert(1)> order" in text  # plain text: shown as written, nothing to escape


# --- broken templates -----------------------------------------------------------------------------------

BROKEN = {
    "syntax-error": ("ack.txt.j2", "{% if %}broken\n"),
    "undefined-variable": ("ack.subject.j2", "[{{ ticket_id }}] {{ no_such_variable }}"),
    "unknown-filter": ("ack.txt.j2", "{{ ticket_id | no_such_filter }}\n"),
    "runtime-error": ("ack.txt.j2", "{{ ticket_id }} {{ 1 // 0 }}\n"),
    "html-only": ("ack.html.j2", "<p>{{ customer.name.first }}</p>"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_template_falls_back_to_the_safe_acknowledgement(case: str, tmp_path: Path, mailenv: Any) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_TEMPLATES, templates)
    name, content = BROKEN[case]
    for language in ("en", "zh-Hant", "zh-Hans"):
        (templates / language / name).write_text(content, encoding="utf-8")
    config = write_instance(tmp_path, mailenv, extra=f'\n[templates]\ndirectory = "{templates}"\n')
    mailenv.dovecot.append("support", raw_mail("customer@example.com", subject=b"=?utf-8?q?x=0D=0ABcc:_y@evil?="))
    run = inboxd(config, "run", "--once")
    assert run.returncode == 0, run.stderr[-3000:]
    [captured] = mailenv.smtp.messages
    assert not check_headers(captured.data, ACK_HEADERS_TEXT_ONLY)  # the fallback has no HTML part
    ack = email.message_from_bytes(captured.data, policy=email.policy.default)
    text = ack.get_body(("plain",)).get_content()
    assert "[SUP-1]" in str(ack["Subject"]) and "SUP-1" in text
    failed = [line for line in run.stderr.splitlines() if "template_failed" in line]
    assert failed and all(" error " in line for line in failed), run.stderr[-2000:]
    if case == "html-only":  # the text template still works: only the HTML part is dropped
        assert "Ticket number: SUP-1" in text and ack.get_body(("html",)) is None
        assert "template=en/ack.html" in failed[0]
    else:
        assert "registered as ticket SUP-1" in text and ack.get_body(("html",)) is None
        assert "{{" not in text and "{%" not in text


# --- secrets ---------------------------------------------------------------------------------------------

IMAP_PASSWORD = "pw-support"  # Dovecot's password for the support user (tests/mailservers.py)
SMTP_PASSWORD = "Smtp-S3cret-9f1c"
REPLY_SECRET = "Reply-S3cret-77ab"
WRONG_IMAP = "Imap-Wr0ng-5ecret"
WRONG_SMTP = "Smtp-Wr0ng-5ecret"


def assert_no_secret(text: str, secrets: list[str], where: str) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} appears in {where}:\n" + "\n".join(
            line for line in text.splitlines() if secret in line)[:3000]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_passwords_and_reply_tokens_never_reach_the_log(tmp_path: Path, mailenv: Any) -> None:
    with AuthSink(mailenv.smtp, "mailer", SMTP_PASSWORD) as auth:
        def config(folder: str, imap_password: str, smtp_password: str, fmt: str) -> Path:
            path = write_instance(tmp_path / folder, mailenv, smtp={**auth.config(), "username": "mailer",
                                                                     "password": smtp_password},
                                  imap={"password": imap_password},
                                  extra=with_agent(tmp_path / folder) + f'\n[routing]\nreply_secret = "{REPLY_SECRET}"'
                                  f'\n\n[logging]\nlevel = "debug"\nformat = "{fmt}"\n')
            return path

        good = config("good", IMAP_PASSWORD, SMTP_PASSWORD, "text")
        logs: dict[str, str] = {}
        # 1. a customer mail: acknowledgement and notification (with its reply token) sent over SMTP AUTH
        mailenv.dovecot.append("support", raw_mail("customer@example.com", subject=b"Where is my parcel?"))
        first = inboxd(good, "run", "--once")
        assert first.returncode == 0, first.stderr[-3000:]
        logs["run --once"] = first.output
        assert ("mailer", True) in auth.attempts
        [notification] = [c for c in mailenv.smtp.messages if c.rcpt_tos == ["agent@example.com"]]
        reply_to = str(email.message_from_bytes(notification.data, policy=email.policy.default)["Reply-To"])
        token = re.fullmatch(r"support\+SUP-1\.([a-z2-7]+)@example\.com", reply_to)
        assert token, reply_to
        # 2. the agent answers through the reply-token address: relayed to the customer
        answer = EmailMessage()
        answer["From"], answer["To"], answer["Subject"] = "Alice Agent <agent@example.com>", reply_to, "Re: [SUP-1]"
        answer["Message-ID"] = make_msgid(domain="example.com")
        answer.set_content("It ships today.\n")
        mailenv.dovecot.append("support", answer.as_bytes())
        second = inboxd(good, "run", "--once")
        assert second.returncode == 0 and "reply_relayed" in second.stderr, second.stderr[-3000:]
        logs["agent reply"] = second.output
        # 3. the SMTP password is wrong: the send fails and is retried, the log says why
        smtp_wrong = config("smtp-wrong", IMAP_PASSWORD, WRONG_SMTP, "json")
        mailenv.dovecot.append("support", raw_mail("customer2@example.com"))
        third = inboxd(smtp_wrong, "run", "--once")
        logs["wrong SMTP password"] = third.output
        assert "mail_retry" in third.stderr and ("535" in third.stderr or "auth" in third.stderr.lower())
        # 4. the IMAP password is wrong: run --once and the daemon both report the failed login
        imap_wrong = config("imap-wrong", WRONG_IMAP, SMTP_PASSWORD, "text")
        fourth = inboxd(imap_wrong, "run", "--once")
        logs["wrong IMAP password, run --once"] = fourth.output
        assert fourth.returncode == 1 and "mailbox_failed" in fourth.stderr
        assert "authenticat" in fourth.stderr.lower(), fourth.stderr  # says what is wrong, without the password
        daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(imap_wrong), "run"], cwd=MAIN,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(2.5)
        finally:
            daemon.send_signal(signal.SIGTERM)
            out, err = daemon.communicate(timeout=30)
        logs["wrong IMAP password, daemon"] = out + err
        assert "mailbox_unreachable" in err, err[-2000:]
        for name, path in (("check-config", good), ("check-config (wrong)", imap_wrong)):
            checked = inboxd(path, "check-config")
            assert checked.returncode == 0, checked.output
            logs[name] = checked.output
    secrets = [IMAP_PASSWORD, SMTP_PASSWORD, REPLY_SECRET, WRONG_IMAP, WRONG_SMTP, token[1]]
    for where, text in logs.items():
        assert_no_secret(text, secrets, where)
    assert any(token[1] in c.data.decode("ascii", "replace") for c in mailenv.smtp.messages)  # it did exist


@pytest.mark.parametrize(("section", "key"), [("imap", "password"), ("smtp", "password"), ("routing", "reply_secret")])
def test_config_error_does_not_print_a_secret(section: str, key: str, tmp_path: Path, mailenv: Any) -> None:
    path = write_instance(tmp_path, mailenv, extra="\n[routing]\n" if section == "routing" else "")
    text = path.read_text()
    if section == "imap":
        text = re.sub(r'(?m)^password = ".*"$', "password = 31415926535", text, count=1)
    elif section == "smtp":
        text = text.replace("[smtp]\n", "[smtp]\npassword = 31415926535\n")
    else:
        text += "reply_secret = 31415926535\n"
    path.write_text(text)
    checked = inboxd(path, "check-config")
    assert checked.returncode == 2 and f"[{section}] {key}" in checked.stderr  # the mistake is reported...
    assert "31415926535" not in checked.output  # ...without the secret itself


# --- TLS ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    try:
        return make_certs(tmp_path_factory.mktemp("certs"))
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make test certificates: {exc}")


def tickets(config: Path) -> int:
    database = config.parent / "inboxd.db"
    return Store(database).query("SELECT COUNT(*) n FROM tickets")[0]["n"] if database.exists() else 0


IMAP_CASES = {
    # case: (certificate, verify_tls, trust the private CA, expect success, text the log must contain)
    "self-signed, verified by default": ("self_signed", None, False, False, "CERTIFICATE_VERIFY_FAILED"),
    "self-signed, verify_tls = false": ("self_signed", False, False, True, "tls_verification_off"),
    "trusted CA, right name": ("good", None, True, True, ""),
    "trusted CA, wrong name": ("wrong_name", None, True, False, "mismatch"),
}


@pytest.mark.parametrize("case", list(IMAP_CASES))
def test_imap_tls_certificate_is_verified(case: str, certs: Certs, tmp_path: Path, mailenv: Any) -> None:
    cert_name, verify, trust, ok, logged = IMAP_CASES[case]
    env = {"SSL_CERT_FILE": str(certs.ca)} if trust else {}
    mailenv.dovecot.append("support", raw_mail("customer@example.com"))
    with TlsProxy((mailenv.dovecot.host, mailenv.dovecot.port), getattr(certs, cert_name)) as proxy:
        imap = {"host": LOOPBACK, "port": proxy.port, "tls": "ssl"} | ({"verify_tls": verify} if verify is not None else {})
        config = write_instance(tmp_path, mailenv, imap=imap)
        run = inboxd(config, "run", "--once", env=env)
    if ok:
        assert run.returncode == 0 and proxy.sessions >= 1, run.stderr[-2000:]
        assert tickets(config) == 1 and len(mailenv.smtp.messages) == 1
    else:
        assert run.returncode == 1 and proxy.sessions == 0, run.stderr[-2000:]
        assert tickets(config) == 0 and not mailenv.smtp.messages
        [line] = [line for line in run.stderr.splitlines() if "mailbox_failed" in line]
        assert " error " in line and "SSL" in line, line
    if logged:
        assert logged in run.stderr, run.stderr[-2000:]
    warnings = [line for line in run.stderr.splitlines() if "tls_verification_off" in line]
    if verify is False:
        assert warnings and "warning" in warnings[0] and "server=imap" in warnings[0], run.stderr[-2000:]
    else:
        assert not warnings


@pytest.mark.parametrize("mode", ["run --once", "run"])
def test_refused_certificate_shows_in_status(mode: str, certs: Certs, tmp_path: Path, mailenv: Any) -> None:
    with TlsProxy((mailenv.dovecot.host, mailenv.dovecot.port), certs.self_signed) as proxy:
        config = write_instance(tmp_path, mailenv, imap={"host": LOOPBACK, "port": proxy.port, "tls": "ssl"})
        if mode == "run --once":
            assert inboxd(config, "run", "--once").returncode == 1
        else:
            daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(config), "run"], cwd=MAIN,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(2.5)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=30)
    status = inboxd(config, "status")
    assert "CERTIFICATE_VERIFY_FAILED" in status.output, status.output


SMTP_CASES = {
    "ssl, self-signed, verified by default": ("ssl", None, False),
    "ssl, self-signed, verify_tls = false": ("ssl", False, True),
    "starttls, self-signed, verified by default": ("starttls", None, False),
    "starttls, self-signed, verify_tls = false": ("starttls", False, True),
}


@pytest.mark.parametrize("case", list(SMTP_CASES))
def test_smtp_tls_certificate_is_verified(case: str, certs: Certs, tmp_path: Path, mailenv: Any) -> None:
    mode, verify, ok = SMTP_CASES[case]
    mailenv.dovecot.append("support", raw_mail("customer@example.com"))
    smtp = {"tls": mode} | ({"verify_tls": verify} if verify is not None else {})
    if mode == "ssl":
        front: Any = TlsProxy((mailenv.smtp.host, mailenv.smtp.port), certs.self_signed)
    else:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*map(str, certs.self_signed))
        front = StartTls(mailenv.smtp, context)
    with front:
        config = write_instance(tmp_path, mailenv, smtp={"host": LOOPBACK, "port": front.port, **smtp})
        run = inboxd(config, "run", "--once")
    assert run.returncode == 0, run.stderr[-2000:]  # the mailbox was fine; sending is retried later
    pending = Store(config.parent / "inboxd.db").status()["outbox_pending"]
    if ok:
        assert len(mailenv.smtp.messages) == 1 and pending == 0, run.stderr[-2000:]
        [warning] = [line for line in run.stderr.splitlines() if "tls_verification_off" in line]
        assert "warning" in warning and "server=smtp" in warning
    else:
        assert not mailenv.smtp.messages and pending == 1, run.stderr[-2000:]
        [line] = [line for line in run.stderr.splitlines() if "mail_retry" in line]
        assert "CERTIFICATE_VERIFY_FAILED" in line, line
        assert "tls_verification_off" not in run.stderr
        status = json.loads(inboxd(config, "status", "--json").stdout)
        assert status["outbox_pending"] == 1


class StartTls:
    """The SMTP sink behind STARTTLS (aiosmtpd), with the given server certificate."""

    def __init__(self, sink: Any, context: Any) -> None:
        self.port = free_port()
        self._controller = Controller(sink, hostname=LOOPBACK, port=self.port, tls_context=context,
                                      require_starttls=True)

    def __enter__(self) -> StartTls:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
