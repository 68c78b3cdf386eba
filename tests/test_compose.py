"""compose(): header lines as written on the wire."""

from __future__ import annotations

import email
import email.policy

from inboxd.mail.compose import address, compose


def _header_lines(raw: bytes) -> list[str]:
    return raw.split(b"\r\n\r\n" if b"\r\n\r\n" in raw else b"\n\n", 1)[0].decode("ascii").splitlines()


def test_short_subject_and_message_id_stay_on_their_own_header_line() -> None:
    msg_id = "<179622202570.4894.11431781643440896290.ack.SUP-1@example.com>"
    raw = compose([("From", address("客服", "support@example.com")), ("Subject", "Re: [SUP-12] 我的訂單還沒到"),
                   ("Message-ID", msg_id)], "text\n", "<p>text</p>")
    lines = _header_lines(raw)
    assert f"Message-ID: {msg_id}" in lines
    [subject] = [line for line in lines if line.startswith("Subject:")]
    assert subject.startswith("Subject: =?utf-8?")  # not "Subject:" and the value on the next line
    assert all(len(line) <= 78 for line in lines if not line.startswith("Content-Type: multipart"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Subject"] == "Re: [SUP-12] 我的訂單還沒到" and parsed["Message-ID"] == msg_id
    assert parsed["From"].addresses[0].display_name == "客服"


def test_long_values_are_still_folded_and_read_back_whole() -> None:
    refs = " ".join(f"<{'x' * 40}.{n}@example.net>" for n in range(30))  # about 1,500 characters
    subject = "Order " + "很長的主旨 " * 30
    raw = compose([("References", refs), ("Subject", subject)], "text\n")
    assert max(len(line) for line in _header_lines(raw)) <= 78
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["References"].split() == refs.split()
    assert parsed["Subject"] == subject.strip()


def test_a_message_id_longer_than_a_line_is_written_on_its_header_line() -> None:
    msg_id = "<179623864274.10130.14958810729642997547.notify.SUP-1042@example.com>"  # "In-Reply-To: " + 70
    raw = compose([("Message-ID", msg_id), ("In-Reply-To", msg_id)], "text\n")
    lines = _header_lines(raw)
    assert f"Message-ID: {msg_id}" in lines and f"In-Reply-To: {msg_id}" in lines
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["In-Reply-To"] == msg_id
