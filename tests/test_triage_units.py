"""Pure unit tests: threading decisions, loop protection and language detection."""

from __future__ import annotations

from dataclasses import replace

import pytest

from inboxd.model import ParsedMessage
from inboxd.triage.language import detect_language
from inboxd.triage.loops import no_ack_reason
from inboxd.triage.thread import find_ticket, subject_tags

OWN = frozenset({"support@example.com"})


def parsed(**kw: object) -> ParsedMessage:
    base = ParsedMessage(message_id="<m1@example.com>", in_reply_to=(), references=(), from_name="Mei",
                         from_addr="mei@example.com", reply_to=(), to=("support@example.com",), cc=(),
                         subject="Help", date=None, headers=(), content_type="text/plain", text="Hello",
                         html=None, attachments=(), charset_declared="utf-8", charset_used="utf-8",
                         charset_guessed=False)
    return replace(base, **kw)  # type: ignore[arg-type]


class FakeIndex:
    """The three lookups threading needs, over plain dicts."""

    def __init__(self) -> None:
        self.tickets = {"SUP-7": {"status": "open"}, "SUP-8": {"status": "closed"}}
        self.people = {"SUP-7": {"mei@example.com": "requester", "li@example.com": "cc"},
                       "SUP-8": {"mei@example.com": "requester"}}
        self.ids = {"<ack-7@example.com>": ("SUP-7", "out"), "<cust-7@example.com>": ("SUP-7", "in")}

    def ticket(self, ticket_id: str) -> dict[str, object] | None:
        return self.tickets.get(ticket_id)

    def participants(self, ticket_id: str) -> dict[str, str]:
        return self.people.get(ticket_id, {})

    def tickets_for_message_ids(self, ids: list[str]) -> list[tuple[str, str]]:
        return [self.ids[i] for i in ids if i in self.ids]


def test_subject_tags() -> None:
    assert subject_tags("Re: [SUP-7] Fw: [sup-12] x [OTHER-1]", "SUP") == ["SUP-7", "SUP-12"]


@pytest.mark.parametrize("kw, expected", [
    ({"subject": "Re: [SUP-7] Help"}, "SUP-7"),
    ({"subject": "Re: [SUP-7] Help", "from_addr": "li@example.com"}, "SUP-7"),  # a cc participant
    ({"subject": "Re: [SUP-7] Help", "from_addr": "eve@example.com"}, None),  # a stranger
    ({"in_reply_to": ("<ack-7@example.com>",), "from_addr": "eve@example.com"}, "SUP-7"),  # a mail we sent
    ({"in_reply_to": ("<cust-7@example.com>",), "from_addr": "eve@example.com"}, None),
    ({"references": ("<x@y>", "<cust-7@example.com>")}, "SUP-7"),
    ({"subject": "[SUP-99] no such ticket"}, None),
])
def test_find_ticket(kw: dict[str, object], expected: str | None) -> None:
    assert find_ticket(parsed(**kw), FakeIndex(), "SUP").ticket_id == expected


def test_stranger_reason_is_explained() -> None:
    match = find_ticket(parsed(subject="[SUP-7]", from_addr="eve@example.com"), FakeIndex(), "SUP")
    assert "not a participant" in match.reason


def test_closed_ticket_starts_a_follow_up_ticket() -> None:
    match = find_ticket(parsed(subject="Re: [SUP-8] again"), FakeIndex(), "SUP")
    assert match.ticket_id is None and match.follow_up_of == "SUP-8"


@pytest.mark.parametrize("kw", [
    {"headers": (("auto-submitted", "auto-replied"),)},
    {"headers": (("precedence", "bulk"),)},
    {"headers": (("list-id", "<x.example.com>"),)},
    {"headers": (("x-autoreply", "yes"),)},
    {"headers": (("x-auto-response-suppress", "OOF, AutoReply"),)},
    {"headers": (("return-path", "<>"),)},
    {"content_type": "multipart/report"},
    {"from_addr": "noreply@shop.example"},
    {"from_addr": "mailer-daemon@mx.example"},
    {"from_addr": "support@example.com"},
    {"subject": "Out of office"},
    {"subject": "自動回覆: 休假"},
    {"subject": "自动回复：休假"},
    {"from_addr": None},
])
def test_no_ack_reasons(kw: dict[str, object]) -> None:
    assert no_ack_reason(parsed(**kw), OWN) is not None


@pytest.mark.parametrize("kw", [
    {},
    {"headers": (("auto-submitted", "no"),)},
    {"subject": "Re: my office chair is broken"},
    {"headers": (("x-auto-response-suppress", "None"),)},
])
def test_normal_mail_is_acknowledged(kw: dict[str, object]) -> None:
    assert no_ack_reason(parsed(**kw), OWN) is None


@pytest.mark.parametrize("text, charset, expected", [
    ("Hello, my order has not arrived and I would like a refund.", "utf-8", "en"),
    ("您好，我的訂單還沒有收到，請問什麼時候會到貨？", "utf-8", "zh-Hant"),
    ("您好，我的订单还没有收到，请问什么时候会到货？", "utf-8", "zh-Hans"),
    ("你好，我们明天", "big5", "zh-Hans"),
    ("您好 謝謝", "gb18030", "zh-Hant"),
    ("您好", "big5", "zh-Hant"),
    ("您好", "gbk", "zh-Hans"),
    ("注文した商品がまだ届いていません。", "iso-2022-jp", "other"),
    ("Guten Tag, meine Bestellung ist nicht angekommen.", "utf-8", "other"),
    ("", None, "other"),
])
def test_detect_language(text: str, charset: str | None, expected: str) -> None:
    assert detect_language(text, charset) == expected
