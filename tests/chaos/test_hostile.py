"""Hostile and broken input: the parser never lets an exception out, memory stays bounded, and the
daemon stores every hostile mail and still answers the normal mail behind it.

tests/test_parse.py already fuzzes parse_message with arbitrary bytes, mutated fixtures and random
header values. This module adds what those do not reach: the real-world corpus in
``../shared/corpus`` put through MIME-aware corruptions (wrong boundaries, truncation, NULs, invalid
encoded words, undeclared 8-bit headers, deep message/rfc822 wrapping, header floods), generated MIME
trees with the same corruptions, memory measured with tracemalloc, and the whole pipeline against
Dovecot and the SMTP sink. Every parser input is counted; the total is printed when the module ends.
"""

from __future__ import annotations

import base64
import json
import random
import re
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inboxd.store.sqlite import Store
from inboxd.triage.parse import MAX_HEADERS, parse_message

from hostile_helpers import (
    FUZZ,
    HOSTILE,
    Mailbox,
    big_attachment,
    corpus_mails,
    inboxd,
    many_headers,
    nested_rfc822,
    normal_mail,
    parse_checked,
    peak_while,
    undeclared_8bit_headers,
    write_instance,
)

pytestmark = pytest.mark.chaos

CORPUS = corpus_mails()
needs_corpus = pytest.mark.skipif(not CORPUS, reason="../shared/corpus is absent")
SMALL_CORPUS = [(name, raw) for name, raw in CORPUS if len(raw) <= 256 * 1024]
MEMORY: dict[str, str] = {}  # figures printed at the end of the module
FUZZ_SETTINGS = settings(max_examples=300, deadline=None, derandomize=False, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                HealthCheck.large_base_example])


@pytest.fixture(scope="module", autouse=True)
def report_figures(request: pytest.FixtureRequest) -> Any:
    """Print how many parser inputs were tried and the memory peaks, even without -s."""
    started = time.monotonic()
    yield
    lines = [f"[chaos/hostile] {FUZZ.summary()} in {time.monotonic() - started:.1f} s"]
    lines += [f"[chaos/hostile] memory {name}: {figure}" for name, figure in MEMORY.items()]
    top = ", ".join(f"{d} x{n}" for d, n in FUZZ.defects.most_common(6))
    lines.append(f"[chaos/hostile] most frequent defects recorded: {top}")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for line in lines:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)


# --- MIME-aware corruptions ------------------------------------------------------------------------

INVALID_WORDS = [
    "=?utf-8?q?a=0D=0ABcc:_x@evil.example?=", "=?utf-8?B?!!!notbase64?=", "=?x-unknown?Q?=FF=FE?=",
    "=?utf-8?Z?zzz?=", "=?utf-16?B?2D3d?=", "=?unicode_escape?Q?=5Cx00=5CN?=", "=?utf-8?q?unterminated",
    "=??=", "=?utf-8??abc?=", "=?*?B?AA==?=", "=?utf-8*en?Q?lang?=", "=?rot13?Q?uryyb?=",
    "=?utf-8?B?" + base64.b64encode("\u2028Bcc: x@evil\u0085".encode()).decode() + "?=",
    "=?iso-2022-jp?B?GyRCJEgbKEI?=", "=?utf-8?Q?" + "=E4=B8" * 3 + "?=",  # split multi-byte character
]
EIGHT_BIT = ["发票问题".encode("gbk"), "退款問題".encode("big5"), b"caf\xe9 cr\xe8me", b"\xff\xfe\xfd\x80",
             "日本語の件名".encode("shift_jis"), b"\xc3\x28 invalid utf-8", b"\x1b$B$3$s\x1b(B", "Ünïcödé".encode()]
CHARSETS = [b"utf-16", b"unicode_escape", b"x-unknown", b"\xff", b"utf-7", b"cp50221", b"", b'"', b"rot13",
            b"big5", b"gb2312", b"iso-2022-jp"]
CTES = [b"base64", b"x-uuencode", b" QUOTED-PRINTABLE ", b"binary", b"8bit", b"bogus", b'"base64"']
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]+)"?', re.I)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    end = _HEADER_END.search(raw)
    return (raw[: end.start()], raw[end.start():]) if end else (raw, b"")


def _set_header(raw: bytes, name: bytes, value: bytes) -> bytes:
    head, rest = _split(raw)
    pattern = re.compile(rb"(?im)^" + name + rb":[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*")
    if pattern.search(head):
        head = pattern.sub(lambda _m: name + b": " + value, head, count=1)
    else:
        head = name + b": " + value + b"\r\n" + head
    return head + rest


def corrupt(raw: bytes, op: str, rng: random.Random) -> bytes:
    """One corruption a hostile or broken mailer produces; ``rng`` decides where."""
    if op == "truncate":
        return raw[: rng.randrange(len(raw) + 1)]
    if op == "boundary":  # the declared boundary no longer matches the delimiters (or is lost)
        found = _BOUNDARY.search(raw)
        if found is None:
            return raw.replace(b"Content-Type:", b"Content-Type: multipart/mixed; boundary=nowhere;", 1)
        choice = rng.choice([b"wrong-" + found[1], b"", found[1][:-1], b'"' + found[1]])
        return raw[: found.start(1)] + choice + raw[found.end(1):]
    if op == "close":  # closing delimiters removed
        return re.sub(rb"(?m)^--[^\r\n]*--[ \t]*\r?$", b"", raw)
    if op == "nul":
        data = bytearray(raw)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data) + 1)
            data[at:at] = b"\x00" * rng.randint(1, 3)
        return bytes(data)
    if op == "words":
        words = b" ".join(w.encode() for w in rng.sample(INVALID_WORDS, rng.randint(1, 4)))
        raw = _set_header(raw, b"Subject", words)
        return _set_header(raw, b"From", rng.choice(INVALID_WORDS).encode() + b" <fuzz@example.org>")
    if op == "eightbit":
        raw = _set_header(raw, b"Subject", rng.choice(EIGHT_BIT) + b" " + rng.choice(EIGHT_BIT))
        return _set_header(raw, b"From", rng.choice(EIGHT_BIT) + b" <fuzz@example.org>")
    if op == "wrap":  # forwarded as message/rfc822 again and again
        for level in range(rng.randint(1, 60)):
            raw = (b"From: wrapper%d@example.org\r\nSubject: Fwd\r\nContent-Type: message/rfc822\r\n\r\n" % level) + raw
        return raw
    if op == "headers":  # a header flood, with conflicting duplicate Content-Types
        flood = b"".join(b"X-Flood-%d: %s\r\n" % (i, b"y" * rng.randint(0, 80)) for i in range(rng.randint(50, 800)))
        dupes = b"Content-Type: multipart/mixed; boundary=dup\r\nContent-Type: text/html; charset=big5\r\n"
        return flood + dupes + raw
    if op == "newlines":
        style = rng.choice([b"\r", b"\n", b"\r\r\n", b"\n\r"])
        return re.sub(rb"\r\n|\n", style, raw)
    if op == "cte":
        return re.sub(rb"(?i)(content-transfer-encoding:)[^\r\n]*", lambda m: m[1] + b" " + rng.choice(CTES), raw)
    if op == "charset":
        return re.sub(rb'(?i)(charset=)"?[^";\s]*"?', lambda m: m[1] + rng.choice(CHARSETS), raw)
    if op == "longline":
        return _set_header(raw, b"X-Long", b"z" * rng.randint(10_000, 300_000))
    raise ValueError(op)


OPS = ["truncate", "boundary", "close", "nul", "words", "eightbit", "wrap", "headers", "newlines", "cte",
       "charset", "longline"]
SWEEP_OPS = ["truncate", "boundary", "nul", "words", "eightbit", "wrap"]


# --- the real-world corpus ------------------------------------------------------------------------------


@needs_corpus
def test_corpus_sweep_every_mail_every_corruption() -> None:
    """Each corpus mail as is, then once with each of the main corruptions (seeded, repeatable)."""
    failures = []
    for name, raw in CORPUS:
        rng = random.Random(name)
        for op in ["none", *SWEEP_OPS]:
            data = raw if op == "none" else corrupt(raw, op, rng)
            try:
                parse_checked(data, "corpus sweep")
            except AssertionError as exc:  # collect them all: one report names every failing mail
                failures.append(f"{name} [{op}]: {str(exc)[:200]}")
    assert not failures, "\n".join(failures)


@needs_corpus
@FUZZ_SETTINGS
@given(st.sampled_from(SMALL_CORPUS or [("", b"")]), st.lists(st.sampled_from(OPS), min_size=1, max_size=5),
       st.randoms(use_true_random=False))
def test_fuzz_corpus_with_stacked_corruptions(mail: tuple[str, bytes], ops: list[str], rng: random.Random) -> None:
    raw = mail[1]
    for op in ops:
        raw = corrupt(raw, op, rng)
    parse_checked(raw, "corpus fuzz")


# --- generated MIME trees -------------------------------------------------------------------------------

LEAF_TYPES = ["text/plain", "text/html", "application/octet-stream", "image/png", "message/delivery-status",
              "application/pdf", "text/calendar"]
LEAF_CHARSETS = ["utf-8", "gbk", "big5", "iso-2022-jp", "utf-16", "x-unknown", "unicode_escape", "utf-7",
                 "koi8-r", "windows-1252", None]
LEAF_CTES = [None, "7bit", "8bit", "base64", "quoted-printable", " Base64 ", "x-uuencode", "bogus"]
TEXTS = ["Hello, my order is late.", "您好，我的發票還沒收到。", "您好，我的发票还没有收到。", "注文が届きません",
         "Привет", "<p>html <b>body</b><script>alert(1)</script></p>", ""]


def _encode(text: str, charset: str | None) -> bytes:
    try:
        return text.encode(charset or "utf-8")
    except (LookupError, UnicodeError):
        return text.encode("utf-8")


@st.composite
def leaves(draw: st.DrawFn) -> bytes:
    ctype = draw(st.sampled_from(LEAF_TYPES))
    charset = draw(st.sampled_from(LEAF_CHARSETS))
    cte = draw(st.sampled_from(LEAF_CTES))
    body = draw(st.one_of(st.sampled_from(TEXTS).map(lambda t: _encode(t, charset)), st.binary(max_size=400)))
    if cte and cte.strip().lower() == "base64":
        body = base64.encodebytes(body)
        if draw(st.booleans()):  # broken base64: a stray character, a lost one
            body = body[: max(0, len(body) - draw(st.integers(1, 5)))] + draw(st.sampled_from([b"!", b"=", b"*="]))
    elif cte == "quoted-printable":
        body = body.replace(b"=", b"=3D") + draw(st.sampled_from([b"", b"=", b"=ZZ", b"=\r\n"]))
    head = f"Content-Type: {ctype}" + (f'; charset="{charset}"' if charset else "")
    if draw(st.booleans()):
        name = draw(st.sampled_from(["a.pdf", "=?utf-8?B?5Y+R56Wo?=.xls", "x\x00y.bin", "../../etc/passwd",
                                     "*=utf-8''%E5%8F%91", "%ff%fe"]))
        head += f'\r\nContent-Disposition: attachment; filename="{name}"'
    if cte:
        head += f"\r\nContent-Transfer-Encoding: {cte}"
    return head.encode("utf-8", "surrogateescape") + b"\r\n\r\n" + body


@st.composite
def multiparts(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    kids = draw(st.lists(children, min_size=0, max_size=4))
    boundary = draw(st.sampled_from(["b1", "=_Part_0_1", "a b", "x" * 80, "--", ""]))
    used = boundary if draw(st.integers(0, 3)) else draw(st.sampled_from(["other", boundary + "x", ""]))
    subtype = draw(st.sampled_from(["mixed", "alternative", "related", "report", "signed", "digest"]))
    body = b"preamble\r\n" if draw(st.booleans()) else b""
    for kid in kids:
        body += b"--" + used.encode() + b"\r\n" + kid + b"\r\n"
    if draw(st.integers(0, 3)):
        body += b"--" + used.encode() + b"--\r\n"
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n\r\n'.encode() + body


@st.composite
def enclosed(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    inner = draw(children)
    headers = draw(st.sampled_from([b"From: inner@example.org\r\nSubject: inner\r\n", b"", b"garbage line\r\n"]))
    return b"Content-Type: message/rfc822\r\n\r\n" + headers + inner


MIME_TREES = st.recursive(leaves(), lambda kids: st.one_of(multiparts(kids), enclosed(kids)), max_leaves=12)


@st.composite
def hostile_messages(draw: st.DrawFn) -> dict[str, Any]:
    """A generated mail plus what is known about it, so properties can be checked, not only survival."""
    sender = draw(st.sampled_from(["anna@example.com", "chen.mei@example.com.tw", "x@[127.0.0.1]"]))
    kind = draw(st.sampled_from(["plain", "words", "eightbit"]))
    subject = {"plain": b"Order question", "words": " ".join(draw(st.lists(
        st.sampled_from(INVALID_WORDS), min_size=1, max_size=4))).encode(),
               "eightbit": draw(st.sampled_from(EIGHT_BIT))}[kind]
    flood = draw(st.integers(0, 1500)) if draw(st.integers(0, 4)) == 0 else draw(st.integers(0, 5))
    head = (b"From: Fuzz <" + sender.encode() + b">\r\nTo: support@example.com\r\nSubject: " + subject + b"\r\n"
            + b"".join(b"X-Junk-%d: j\r\n" % i for i in range(flood)) + b"MIME-Version: 1.0\r\n")
    tree = draw(MIME_TREES)
    for level in range(draw(st.sampled_from([0, 0, 0, 1, 5, 55]))):  # forwarded N times
        tree = b"Content-Type: message/rfc822\r\n\r\nFrom: fwd%d@example.org\r\n" % level + tree
    raw = head + tree
    header_len = len(head)
    cut = draw(st.none() | st.integers(0, len(raw)))
    if cut is not None:
        raw = raw[:cut]
    nuls = draw(st.lists(st.integers(0, len(raw)), max_size=3))
    data = bytearray(raw)
    for at in sorted(nuls, reverse=True):
        data[at:at] = b"\x00"
    intact = (cut is None or cut > header_len) and all(at >= header_len for at in nuls)
    return {"raw": bytes(data), "sender": sender, "subject": subject.decode() if kind == "plain" else None,
            "intact": intact}


@FUZZ_SETTINGS
@given(hostile_messages())
def test_fuzz_generated_mime(msg: dict[str, Any]) -> None:
    parsed = parse_checked(msg["raw"], "generated MIME")
    if msg["intact"]:  # whatever the body did, the header block was whole: the sender must be found
        assert parsed.from_addr == msg["sender"].lower()
        if msg["subject"] is not None:
            assert parsed.subject == msg["subject"]


# --- the named hostile mails ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in HOSTILE if n != "attachment_30mb"])  # 30 MB: memory tests below
def test_named_hostile_mail(name: str) -> None:
    sender = f"hostile-{name.replace('_', '-')}@example.org"
    parsed = parse_checked(HOSTILE[name](sender), "named hostile")
    assert parsed.from_addr == sender
    expected_text = {"truncated_mime": "The log is attached.", "wrong_boundary": "Printer on fire.",
                     "nested_rfc822_50": "See the forwarded chain.", "headers_10000": "body after many headers",
                     "nul_bytes": "Text with  NUL  bytes.", "invalid_encoded_words": "body with broken encoded words"}
    if name in expected_text:
        assert parsed.text.strip() == expected_text[name]
    if name == "nested_rfc822_50":
        assert "INNERMOST" not in parsed.text and [a.content_type for a in parsed.attachments] == ["message/rfc822"]
    if name == "headers_10000":
        assert parsed.subject == "after ten thousand headers" and len(parsed.headers) == MAX_HEADERS
    if name == "invalid_encoded_words":  # the encoded CR/LF became a space, not a line break
        assert "a Bcc: x@evil.example" in parsed.subject
    if name == "truncated_mime":
        assert [a.filename for a in parsed.attachments] == ["log.bin"]


UNDECLARED = [
    ("gbk", "发票问题", "您好，我的发票还没有收到。"),
    ("big5", "退款問題", "您好，我上週訂購的商品有瑕疵，想申請退款，謝謝。"),
]


@pytest.mark.parametrize(("codec", "subject", "body"), UNDECLARED, ids=[u[0] for u in UNDECLARED])
def test_undeclared_chinese_headers_and_body_are_read_as_chinese(codec: str, subject: str, body: str) -> None:
    raw = (b"From: customer@example.com\r\nSubject: " + subject.encode(codec) + b"\r\n\r\n"
           + body.encode(codec) + b"\r\n")
    parsed = parse_checked(raw, "named hostile")
    assert (parsed.subject, parsed.text.strip()) == (subject, body)


def test_undeclared_8bit_headers_keep_sender_and_one_line() -> None:
    parsed = parse_checked(undeclared_8bit_headers("chen@example.com.tw"), "named hostile")
    assert parsed.from_addr == "chen@example.com.tw"
    assert parsed.subject and "\n" not in parsed.subject and "\ufffd" not in parsed.from_name


# --- memory ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def thirty_mb() -> dict[str, Any]:
    """Parse the 30 MB mail once under tracemalloc; the figures serve two tests."""
    raw = big_attachment("big@example.com")
    started = time.monotonic()
    parsed, peak = peak_while(lambda: parse_checked(raw, "memory"))
    seconds = time.monotonic() - started
    MEMORY["30 MB attachment"] = (f"input {len(raw) / 2**20:.1f} MiB, peak {peak / 2**20:.0f} MiB "
                                  f"({peak / len(raw):.1f}x input), {seconds:.1f} s")
    return {"size": len(raw), "peak": peak, "parsed": parsed}


def test_thirty_megabyte_attachment_parses_with_a_memory_ceiling(thirty_mb: dict[str, Any]) -> None:
    parsed = thirty_mb["parsed"]
    assert parsed.text.strip() == "The video shows the problem."
    assert [(a.filename, a.size) for a in parsed.attachments] == [("problem.mp4", 30 * 1024 * 1024)]
    assert thirty_mb["peak"] < 10 * thirty_mb["size"]  # today ~7.7x: a guard against it getting worse


def test_thirty_megabyte_attachment_peak_below_four_times_input(thirty_mb: dict[str, Any]) -> None:
    assert thirty_mb["peak"] < 4 * thirty_mb["size"]


@pytest.mark.parametrize(("name", "build", "limit"), [
    ("10,000 headers", lambda: many_headers("flood@example.com"), 16 * 2**20),
    ("message/rfc822 50 deep", lambda: nested_rfc822("deep@example.com", 50), 16 * 2**20),
    ("message/rfc822 300 deep", lambda: nested_rfc822("deeper@example.com", 300), 64 * 2**20),
])
def test_memory_stays_small(name: str, build: Any, limit: int) -> None:
    raw = build()
    started = time.monotonic()
    parsed, peak = peak_while(lambda: parse_checked(raw, "memory"))
    MEMORY[name] = (f"input {len(raw) / 1024:.0f} KiB, peak {peak / 2**20:.1f} MiB ({peak / len(raw):.1f}x), "
                    f"{time.monotonic() - started:.2f} s")
    assert parsed.from_addr is not None
    assert peak < limit, MEMORY[name]


# --- through the daemon --------------------------------------------------------------------------------------


def _corpus_hostiles() -> dict[str, bytes]:
    """A few of the corpus's own broken mails, if it is there."""
    wanted = ("spamscope-mail-parser/mail_malformed_1", "spamscope-mail-parser/mail_malformed_2",
              "spamscope-mail-parser/mail_malformed_3", "stalwart-mail-parser/malformed/000.eml",
              "flanker-mail/torture.eml", "cpython-email/msg_15.txt")
    return {f"corpus:{name}": raw for name, raw in CORPUS if any(name.endswith(w) for w in wanted)}


@pytest.mark.integration
def test_hostile_mail_then_normal_mail_through_the_daemon(tmp_path: Any, mailenv: Any) -> None:
    """Each hostile mail is followed by a normal one: every normal one gets its ticket and ack, every
    hostile one is stored (ticketed or quarantined), nothing crashes, and ``inboxd status`` says so."""
    config = write_instance(tmp_path, mailenv, support={"ack_limit_per_hour": 1000})
    hostiles = {name: build(f"hostile-{name.replace('_', '-')}@example.org") for name, build in HOSTILE.items()}
    hostiles |= _corpus_hostiles()
    hostiles["no sender, garbage"] = b"\x00\x01\xff garbage without headers\r\n\r\n--broken\r\n"
    normals = {}
    started = time.monotonic()
    with Mailbox(mailenv.dovecot, "support") as box:
        for i, raw in enumerate(hostiles.values()):
            box.append(raw)
            normals[f"normal{i}@example.net"] = f"Normal request {i}"
            box.append(normal_mail(f"normal{i}@example.net", f"Normal request {i}"))
    appended = time.monotonic() - started

    run = inboxd(config, "run", "--once", timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr and "message_failed" not in run.stderr, run.stderr[-3000:]

    store = Store(tmp_path / "inboxd.db")
    rows = store.query("SELECT r.uid, r.state, r.error, r.truncated, r.ticket_id, t.requester FROM raw_messages r "
                       "LEFT JOIN tickets t ON t.ticket_id = r.ticket_id ORDER BY r.uid")
    assert len(rows) == 2 * len(hostiles)
    assert {r["state"] for r in rows} <= {"processed", "quarantined", "duplicate"}
    for row in rows:  # quarantine only for the documented reason, never for an exception inside inboxd
        assert row["state"] != "quarantined" or row["error"].startswith("no usable sender address"), row
    hostile_rows, normal_rows = rows[0::2], rows[1::2]
    quarantined = [name for name, row in zip(hostiles, hostile_rows) if row["state"] == "quarantined"]
    senderless = [name for name, raw in hostiles.items() if parse_message(raw).from_addr is None]
    assert quarantined == senderless and "no sender, garbage" in senderless
    oversized = dict(zip(hostiles, hostile_rows))["attachment_30mb"]
    assert oversized["truncated"] == 1 and oversized["ticket_id"]

    # every normal mail: its own ticket and an acknowledgement the sink accepted
    assert [r["requester"] for r in normal_rows] == list(normals)
    acks = {c.rcpt_tos[0]: c.message for c in mailenv.smtp.messages}
    for sender, subject in normals.items():
        assert sender in acks, f"no acknowledgement for {sender}"
        assert subject in str(acks[sender]["Subject"]) and "[SUP-" in str(acks[sender]["Subject"])

    # the mailbox shows what happened to each one
    flags = mailenv.dovecot.flags("support")
    for row in rows:
        expected = "$inboxd-quarantined" if row["state"] == "quarantined" else "$inboxd"
        assert expected in flags[row["uid"]]

    status = inboxd(config, "status", "--json")
    assert status.returncode == 0, status.output
    info = json.loads(status.stdout)
    tickets = sum(info["tickets"].values())
    assert info["messages_stored"] == len(rows) and info["messages_waiting"] == 0
    assert info["messages_quarantined"] == len(quarantined)
    assert tickets == len({r["ticket_id"] for r in rows if r["ticket_id"]})
    assert info["outbox_pending"] == 0 and info["outbox_failed"] == 0
    text = inboxd(config, "status").stdout
    assert f"Messages quarantined:  {len(quarantined)}" in text
    print(f"\n[chaos/hostile] daemon: {len(hostiles)} hostile + {len(normals)} normal mails "
          f"(appended in {appended:.1f} s): {len(rows) - len(quarantined)} ticketed, {len(quarantined)} "
          f"quarantined, {len(acks)} acknowledgements; run --once {run.stderr.count('message_processed')} "
          f"processed")
