"""parse_message: decoded fields for each fixture, and no exception on any input.

Fixtures in tests/fixtures/mail/ are small generated mails, one per charset or structure
problem a help desk meets. The hostile cases (10,000 headers, deep nesting, 30 MB) are
generated here, so the repository does not carry them.
"""

from __future__ import annotations

import base64
import codecs
import os
from datetime import UTC
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inboxd.model import ParsedMessage
from inboxd.triage.charsets import codec_chain, decode_bytes
from inboxd.triage.parse import MAX_HEADERS, parse_message

FIXTURES = Path(__file__).parent / "fixtures" / "mail"
FIXTURE_FILES = sorted(FIXTURES.glob("*.eml"))


def parse(name: str) -> ParsedMessage:
    return parse_message((FIXTURES / name).read_bytes())


def check_invariants(parsed: ParsedMessage) -> None:
    """What every later stage relies on, whatever the input was."""
    assert isinstance(parsed, ParsedMessage)
    assert isinstance(parsed.text, str) and len(parsed.text) <= 200_000
    one_line = [parsed.subject, parsed.from_name, *parsed.to, *parsed.cc, *parsed.reply_to]
    for value in one_line + [v for _, v in parsed.headers]:
        assert "\r" not in value and "\n" not in value
    everything = [*one_line, parsed.text, parsed.html or "", *(a.filename or "" for a in parsed.attachments)]
    for value in everything:
        value.encode("utf-8")  # no lone surrogates
        assert "\x00" not in value
    assert parsed.from_addr is None or "@" in parsed.from_addr
    assert all(i.startswith("<") and i.endswith(">") for i in (*parsed.in_reply_to, *parsed.references))
    assert parsed.date is None or parsed.date.tzinfo is not None
    assert len(parsed.headers) <= MAX_HEADERS
    assert parsed.truncated is False
    if parsed.charset_used:  # later stages re-decode with it
        codecs.lookup(parsed.charset_used)


# --- fixtures ---------------------------------------------------------------------------

CHARSET_CASES = [
    # file, subject, body substring, (declared, used, guessed)
    ("big5_traditional_chinese.eml", "客服問題：帳戶無法登入", "請協助處理",
     ("big5", "big5", False)),
    ("big5_label_hkscs_cantonese.eml", "查詢帳單", "你哋嘅服務好好㗎",
     ("big5", "big5hkscs", False)),
    ("gbk_declared_chinese.eml", "关于朱镕基的发票问题", "我是王喆",
     ("gbk", "gb18030", False)),
    ("gb2312_declared_with_gbk_chars.eml", "王喆的退款申请", "朱镕基路门店",
     ("gb2312", "gb18030", False)),
    ("iso2022jp_japanese.eml", "パスワードの再設定について", "再設定できません",
     ("iso-2022-jp", "iso2022_jp", False)),
    ("windows1252_quoted_printable.eml", "Café invoice – “urgent”", "shows 12 € instead",
     ("windows-1252", "cp1252", False)),
    ("koi8r_russian.eml", "Не работает доступ", "к личному кабинету",
     ("koi8-r", "koi8-r", False)),
    ("mislabeled_latin1_is_utf8_chinese.eml", "Mislabeled order question", "我的订单还没有发货",
     ("iso-8859-1", "utf-8", True)),
    ("unknown_charset_x_unknown.eml", "Unknown charset label", "n'est pas arrivée",
     ("x-unknown", "utf-8", True)),
]


@pytest.mark.parametrize(("name", "subject", "body", "charset"), CHARSET_CASES)
def test_charset_fixture(name: str, subject: str, body: str, charset: tuple[str, str, bool]) -> None:
    parsed = parse(name)
    check_invariants(parsed)
    assert parsed.subject == subject
    assert body in parsed.text
    assert (parsed.charset_declared, parsed.charset_used, parsed.charset_guessed) == charset
    assert parsed.from_name == "Support Customer"
    assert parsed.from_addr == "customer@example.com"
    assert parsed.to == ("help@example.org",)
    assert parsed.date is not None and parsed.date.utcoffset().total_seconds() == 8 * 3600
    assert parsed.message_id is not None and parsed.message_id.endswith("@example.com>")
    assert parsed.attachments == ()
    assert "\r" not in parsed.text


def test_html_only_becomes_readable_text() -> None:
    parsed = parse("html_only_table_script.eml")
    assert parsed.content_type == "text/html"
    assert parsed.html is not None and "<table>" in parsed.html
    assert "Hello support team," in parsed.text
    assert "Blue widget" in parsed.text and "Qty" in parsed.text
    assert "Thanks & regards," in parsed.text
    assert "do-not-show" not in parsed.text and "<" not in parsed.text and "color: red" not in parsed.text
    assert parsed.charset_used == "utf-8"


def test_html_with_inline_image_counts_it_as_attachment() -> None:
    parsed = parse("html_with_inline_image.eml")
    assert parsed.content_type == "multipart/related"
    assert parsed.text.strip() == "See the screenshot:"
    assert [(a.content_type, a.size) for a in parsed.attachments] == [("image/png", 70)]


def test_two_attachments_with_rfc2231_chinese_filename() -> None:
    parsed = parse("two_attachments_rfc2231_filename.eml")
    assert parsed.text == "Please see the two attached files."
    assert [(a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("invoice.pdf", "application/pdf", 9 + 1024 + 7),
        ("发票说明.txt", "text/plain", len("发票说明：请查收。\n".encode())),
    ]


def test_bounce_keeps_report_type_and_does_not_merge_original() -> None:
    parsed = parse("bounce_multipart_report.eml")
    assert parsed.content_type == "multipart/report"
    assert parsed.from_addr == "mailer-daemon@mx.example.org"
    assert parsed.from_name == "Mail Delivery System"
    assert "could not be delivered" in parsed.text
    assert "ORIGINAL BODY" not in parsed.text
    assert parsed.in_reply_to == ("<ticket-42@example.org>",)
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status", "message/rfc822"]
    assert all(a.size > 0 for a in parsed.attachments)


def test_wrong_boundary_and_truncation_still_give_the_text() -> None:
    parsed = parse("malformed_wrong_boundary_truncated.eml")
    check_invariants(parsed)
    assert parsed.subject == "Broken multipart"
    assert parsed.text.strip() == "My printer is broken, please help."
    assert [a.filename for a in parsed.attachments] == ["log.bin"]
    assert any("boundary" in d for d in parsed.defects)


def test_truncated_mid_attachment() -> None:
    parsed = parse("truncated_mid_attachment.eml")
    assert parsed.text.strip() == "Log file attached."
    (attachment,) = parsed.attachments
    assert attachment.filename == "big.log" and 0 < attachment.size < 3000
    assert "CloseBoundaryNotFoundDefect" in parsed.defects
    assert parsed.truncated is False  # the caller sets it


def test_raw_8bit_headers_and_invalid_encoded_words() -> None:
    parsed = parse("raw_8bit_headers_invalid_words.eml")
    check_invariants(parsed)
    assert parsed.subject == "Grüße aus Köln abc✓"
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.from_addr == "juergen.mueller@example.de"
    assert parsed.to == ("help@example.org", "zoe@example.org")
    assert parsed.cc == ("cc@example.org",)
    assert parsed.date is None
    assert parsed.message_id == "<no-brackets@example.com>"
    assert parsed.references == ("<a@x>", "<b@x>", "<c@x>")
    assert parsed.in_reply_to == ("<c@x>",)
    assert parsed.text == "Grüße, Jürgen\n"
    assert (parsed.charset_declared, parsed.charset_used, parsed.charset_guessed) == (None, "utf-8", True)
    assert parsed.header("subject") == parsed.subject
    assert parsed.header("FROM") == "Jürgen Müller <Juergen.Mueller@Example.DE>"


# --- built in the test -------------------------------------------------------------------


def mail(headers: str, body: bytes = b"body\n", content_type: str = "text/plain") -> bytes:
    head = f"From: a@example.com\nContent-Type: {content_type}\n" + (headers + "\n" if headers else "")
    return head.encode() + b"\n" + body


@pytest.mark.parametrize(
    ("charset", "codec", "text"),
    [
        ("unicode-1-1-utf-7", "utf-7", "Grüße"),
        ("utf-16", "utf-16", "Привет, 世界"),
        ("ks_c_5601-1987", "cp949", "안녕하세요 똠방각하"),
        ("x-gbk", "gb18030", "朱镕基"),
        ("cp936", "gb18030", "王喆"),
        ("iso-gb2312", "gb18030", "中文邮件"),
        ("euc-kr", "cp949", "똠방각하"),
        ("shift_jis", "cp932", "①番目のお問い合わせ"),
        ("windows-1250", "cp1250", "Čtvrtek žluťoučký"),
        ("iso-8859-2", "iso8859-2", "Łódź"),
        ("windows-1258", "cp1258", "Xin chào Đà ư ơ ₫"),
    ],
)
def test_body_charsets_and_aliases(charset: str, codec: str, text: str) -> None:
    raw = mail("", text.encode(codec), f'text/plain; charset="{charset}"')
    parsed = parse_message(raw)
    assert parsed.text == text
    assert (parsed.charset_declared, parsed.charset_used, parsed.charset_guessed) == (charset, codec, False)


@pytest.mark.parametrize(
    ("charset", "data", "text"),
    [("gb2312", "朱镕基".encode("gbk"), "朱镕基"), ("x-gbk", "王喆".encode("gbk"), "王喆"),
     ("cp936", "发票".encode("gbk"), "发票"), ("iso-gb2312", "中文".encode("gbk"), "中文"),
     ("unicode-1-1-utf-7", "Übermittlung".encode("utf-7"), "Übermittlung"),
     ("ks_c_5601-1987", "똠방각하".encode("cp949"), "똠방각하"),
     ("big5", "㗎".encode("big5hkscs"), "㗎"),
     ("iso-2022-jp", b"\x1b$B-!HV\x1b(B", "①番"),  # NEC row 13, as Outlook writes it
     ("x-unknown", b"ascii only", "ascii only")],
)
def test_encoded_word_aliases(charset: str, data: bytes, text: str) -> None:
    word = base64.b64encode(data).decode()
    assert parse_message(mail(f"Subject: =?{charset}?B?{word}?=")).subject == text


def test_iso2022jp_with_windows_characters() -> None:
    body = b"\x1b$B-!HV$NLd$$9g$o$;\x1b(B\n"  # "①番の問い合わせ": NEC row 13, as Outlook writes it
    parsed = parse_message(mail("", body, "text/plain; charset=ISO-2022-JP"))
    assert parsed.text == "①番の問い合わせ\n"
    assert (parsed.charset_used, parsed.charset_guessed) == ("cp50221", False)
    assert body.decode(parsed.charset_used) == parsed.text


def test_unindented_header_continuation_is_folded() -> None:
    raw = (b"---- Original email message ----\nReceived: from mx.example\nby mx2.example with ESMTP\n"
           b"From: Anna <anna@example.com>\nSubject: Contact form\n\nHello")
    parsed = parse_message(raw)
    assert (parsed.subject, parsed.from_addr, parsed.text) == ("Contact form", "anna@example.com", "Hello")
    assert parsed.header("received") == "from mx.example by mx2.example with ESMTP"


def test_raw_8bit_filename_and_subject_use_the_message_charset() -> None:
    raw = (b"Subject: " + "绩效管理".encode("gbk") + b"\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain; charset=GB2312\n\n" + "正文".encode("gbk") + b"\n"
           b'--b\nContent-Type: application/octet-stream; name="' + "报表.xls".encode("gbk") + b'"\n\nxx\n--b--\n')
    parsed = parse_message(raw)
    assert parsed.subject == "绩效管理"
    assert parsed.text == "正文"
    assert [a.filename for a in parsed.attachments] == ["报表.xls"]


def test_charset_alias_table() -> None:
    assert codec_chain("gb2312") == ("gb18030",)
    assert codec_chain("GBK") == ("gb18030",)
    assert codec_chain("big5") == ("big5", "cp950", "big5hkscs")
    assert codec_chain("unicode-1-1-utf-7") == ("utf-7",)
    assert codec_chain("ks_c_5601-1987") == ("cp949",)
    assert codec_chain("x-mac-cyrillic") == ("mac-cyrillic",)
    assert codec_chain("x-unknown") == ()
    assert codec_chain("unicode_escape") == ()  # a transform, not a charset
    assert codec_chain("rot13") == ()


RUSSIAN = "Здравствуйте! У меня не работает доступ к личному кабинету. Пожалуйста, помогите."


@pytest.mark.parametrize(
    ("text", "codec"),
    [(RUSSIAN, "cp1251"), (RUSSIAN, "koi8-r"), ("您好，我的帐户无法登录，请帮我重置密码。谢谢您的帮助。", "gb18030")],
)
def test_unknown_charset_is_detected(text: str, codec: str) -> None:
    decoded = decode_bytes(text.encode(codec), "x-made-up")
    assert (decoded.text, decoded.codec, decoded.guessed) == (text, codec, True)


def test_declared_utf8_that_is_latin1_is_detected() -> None:
    text = "Bitte prüfen Sie die Rechnung für März. Mit freundlichen Grüßen, Jürgen Müller"
    parsed = parse_message(mail("", text.encode("latin-1"), "text/plain; charset=utf-8"))
    assert (parsed.charset_declared, parsed.charset_guessed) == ("utf-8", True)
    assert parsed.text == text


def test_encoded_comma_does_not_split_address() -> None:
    raw = mail('To: =?utf-8?Q?Doe=2C_John?= <John@Example.com>, "Roe, Jane" <jane@example.com>\n'
               "Reply-To: =?utf-8?B?5byg5LiJ?= <zhang@example.cn>\nCc: undisclosed-recipients:;")
    parsed = parse_message(raw)
    assert parsed.to == ("john@example.com", "jane@example.com")
    assert parsed.reply_to == ("zhang@example.cn",)
    assert parsed.cc == ()


def test_sender_without_address() -> None:
    parsed = parse_message(b"From: Just A Name\nSubject: x\n\nbody")
    assert parsed.from_addr is None and parsed.from_name == ""
    assert parse_message(b"Subject: no from\n\nbody").from_addr is None


def test_message_ids_normalized() -> None:
    raw = mail("Message-ID:   <abc@host>  \nIn-Reply-To: <p@h> (Message from x)\n"
               "References: <1@h>\n <2@h>\n\t<3\n @h>")
    parsed = parse_message(raw)
    assert parsed.message_id == "<abc@host>"
    assert parsed.in_reply_to == ("<p@h>",)
    assert parsed.references == ("<1@h>", "<2@h>", "<3@h>")
    assert parse_message(mail("Message-ID:")).message_id is None


def test_date_without_zone_is_utc() -> None:
    parsed = parse_message(mail("Date: Tue, 07 Apr 2026 10:00:00 -0000"))
    assert parsed.date is not None and parsed.date.tzinfo is UTC
    assert parse_message(mail("Date: 99 Foo 99999 99:99")).date is None


def test_crlf_inside_encoded_word_removed_from_subject() -> None:
    word = base64.b64encode(b"\r\nline one\r\nline two").decode()
    assert parse_message(mail(f"Subject: =?utf-8?B?{word}?=")).subject == "line one line two"


def test_split_multibyte_character_across_words() -> None:
    data = "中文".encode()
    words = " ".join(f"=?utf-8?B?{base64.b64encode(data[i:i + 2]).decode()}?=" for i in range(0, 6, 2))
    assert parse_message(mail(f"Subject: {words} end")).subject == "中文 end"


def test_nul_bytes_removed() -> None:
    parsed = parse_message(b"Subject: a\x00b\nFrom: x\x00y@example.com\n\nte\x00xt\n")
    check_invariants(parsed)
    assert parsed.subject == "ab" and parsed.text == "text\n"


def test_text_capped_at_max_text_chars() -> None:
    parsed = parse_message(mail("", b"x" * 5000), max_text_chars=1000)
    assert parsed.text == "x" * 1000
    assert "text cut at max_text_chars" in parsed.defects


def test_broken_base64_body_is_tolerated() -> None:
    body = base64.encodebytes("Bonjour, j'ai un problème.".encode())[:-3] + b"!!\n"  # len % 4 == 1
    parsed = parse_message(mail("Content-Transfer-Encoding:  Base64 ", body, "text/plain; charset=utf-8"))
    assert parsed.text.startswith("Bonjour, j'ai un probl")


def test_empty_plain_part_falls_back_to_html() -> None:
    raw = (b"Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\n \n"
           b"--b\nContent-Type: text/html\n\n<p>Only <b>here</b></p>\n--b--\n")
    assert parse_message(raw).text.strip() == "Only here"


# --- hostile input -----------------------------------------------------------------------


def test_ten_thousand_headers() -> None:
    headers = "".join(f"X-Spam-{i}: {'v' * 50}\n" for i in range(10_000))
    parsed = parse_message(mail(headers + "Subject: after many headers"))
    check_invariants(parsed)
    assert len(parsed.headers) == MAX_HEADERS
    assert parsed.subject == "after many headers"
    assert parsed.text == "body\n"


def test_huge_header_value_is_capped() -> None:
    parsed = parse_message(mail("X-Big: " + "a" * 2_000_000 + "\nSubject: ok"))
    assert parsed.subject == "ok"
    assert len(parsed.header("x-big") or "") <= 40_000


@pytest.mark.parametrize("depth", [50, 3000])
def test_deeply_nested_rfc822(depth: int) -> None:
    raw = b"Subject: outer\nContent-Type: message/rfc822\n\n"
    raw += b"".join(b"Subject: level %d\nContent-Type: message/rfc822\n\n" % i for i in range(depth))
    raw += b"Subject: innermost\n\nINNER TEXT\n"
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert parsed.subject == "outer"
    assert "INNER TEXT" not in parsed.text
    assert [a.content_type for a in parsed.attachments] == ["message/rfc822"]


@pytest.mark.parametrize("depth", [50, 3000])
def test_deeply_nested_multipart(depth: int) -> None:
    raw = b"Subject: nest\n" + b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth)
    ) + b"Content-Type: text/plain\n\ndeep text\n"
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert parsed.subject == "nest"
    assert any("deep" in d for d in parsed.defects)


def test_thirty_megabyte_attachment() -> None:
    payload = os.urandom(30 * 1024 * 1024)
    raw = (b"Subject: big\nContent-Type: multipart/mixed; boundary=XX\n\n"
           b"--XX\nContent-Type: text/plain; charset=utf-8\n\nSee attachment.\n"
           b"--XX\nContent-Type: application/octet-stream\n"
           b"Content-Disposition: attachment; filename=big.bin\nContent-Transfer-Encoding: base64\n\n"
           + base64.encodebytes(payload) + b"--XX--\n")
    parsed = parse_message(raw)
    assert parsed.text == "See attachment."
    assert [(a.filename, a.size) for a in parsed.attachments] == [("big.bin", len(payload))]


def test_thirty_megabyte_text_body_is_capped() -> None:
    parsed = parse_message(mail("", "Grüße ".encode() * 5_000_000, "text/plain; charset=utf-8"))
    assert len(parsed.text) == 200_000 and parsed.text.startswith("Grüße")


def assert_parsed(parsed: ParsedMessage) -> None:
    """The parser itself coped: its last-resort fallback (which satisfies every invariant) was not used."""
    assert not any(d.startswith("unparseable") for d in parsed.defects), parsed.defects


@pytest.mark.parametrize("raw", [b"", b"\n", b"\r\n\r\n", b"\x00" * 100, b":", b"From ", b"--", b"=?"])
def test_degenerate_inputs(raw: bytes) -> None:
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert_parsed(parsed)


# --- properties --------------------------------------------------------------------------

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.binary(max_size=4000))
def test_never_raises_on_arbitrary_bytes(raw: bytes) -> None:
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert_parsed(parsed)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> bytes:
    raw = bytearray(draw(st.sampled_from(FIXTURE_FILES)).read_bytes())
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["truncate", "flip", "nul", "insert", "delete"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "truncate":
            del raw[at:]
        elif kind == "flip" and raw:
            raw[at] ^= draw(st.integers(1, 255))
        elif kind == "nul":
            raw[at:at] = b"\x00" * draw(st.integers(1, 4))
        elif kind == "insert":
            raw[at:at] = draw(st.sampled_from([b"\n", b"\r\n\r\n", b"=?utf-8?B?", b"?=", b"--XYZ\n",
                                               b"--XYZ--", b"\xff\xfe", b":", b'"', b";", b"<", b"%"]))
        else:
            del raw[at : at + draw(st.integers(1, 20))]
    return bytes(raw)


@PROPERTY
@given(mutated_fixture())
def test_never_raises_on_mutated_fixtures(raw: bytes) -> None:
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert_parsed(parsed)


HEADER_NAMES = ["Subject", "From", "To", "Cc", "Reply-To", "Message-ID", "References", "In-Reply-To",
                "Date", "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "X-Other"]
CHARSETS = ["utf-8", "gb2312", "big5", "iso-2022-jp", "utf-7", "utf-16", "x-unknown", "unicode_escape",
            "rot13", "koi8-r", "", "\udcff"]


@st.composite
def hostile_mime(draw: st.DrawFn) -> bytes:
    """Well-formed-looking messages with random values in every place that gets decoded."""
    charset = draw(st.sampled_from(CHARSETS))
    word = draw(st.sampled_from(["", "=?{}?B?{}?=", "=?{}?Q?{}?=", "=?{}?X?{}?="]))
    text = draw(st.text(max_size=60))
    value = word.format(charset, draw(st.text(max_size=30))) + text if word else text
    headers = [(draw(st.sampled_from(HEADER_NAMES)), value) for _ in range(draw(st.integers(0, 6)))]
    ctype = draw(st.sampled_from(["text/plain", "text/html", "multipart/mixed; boundary=B",
                                  "message/rfc822", "application/pdf; name=\"a.pdf\"", "garbage"]))
    head = "".join(f"{name}: {val}\n" for name, val in headers)
    head += f'Content-Type: {ctype}; charset="{charset}"\n'
    head += draw(st.sampled_from(["", "Content-Transfer-Encoding: base64\n",
                                  "Content-Transfer-Encoding: quoted-printable\n"]))
    body = draw(st.binary(max_size=300))
    if ctype.startswith("multipart"):
        body = b"--B\nContent-Type: text/plain\n\n" + body + b"\n--B\n" + draw(st.binary(max_size=100))
    return head.encode("utf-8", "surrogateescape") + b"\n" + body


@PROPERTY
@given(hostile_mime())
def test_never_raises_on_hostile_mime(raw: bytes) -> None:
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert_parsed(parsed)
