"""Raw RFC 5322 bytes to a :class:`ParsedMessage`, for any input at all.

A support mailbox receives spam, bounces and broken mailers' output, and one mail that
crashes the daemon stops every ticket behind it. So parsing never raises: what cannot be
understood becomes an entry in ``defects``. The stdlib parser runs with the ``compat32``
policy, which keeps raw header strings; decoding (RFC 2047, 8-bit bytes, charset aliases)
is done here, where every failure can be caught and worked around.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.errors import InvalidBase64LengthDefect, MissingHeaderBodySeparatorDefect
from email.feedparser import BytesFeedParser
from email.message import Message
from email.parser import BytesHeaderParser, BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from itertools import islice
from typing import cast

from inscriptis import get_text

from inboxd.model import Attachment, Envelope, ParsedMessage
from inboxd.triage.charsets import (
    Decoded,
    ascii_compatible,
    decode_bytes,
    decode_words,
    is_cjk,
    lenient_b64decode,
)

MAX_DEPTH = 20  # multipart nesting followed; deeper parts are dropped with a defect
MAX_HEADERS = 500  # headers kept in ParsedMessage.headers
MAX_HEADER_CHARS = 32_768  # characters of one header value that are decoded
MAX_IDS = 100  # In-Reply-To/References ids kept (the newest References)
MAX_HEADER_BLOCK = 256_000  # bytes read by envelope(): headers are at the top
HTML_INPUT_FACTOR = 20  # HTML converted to text is capped at this many times max_text_chars
MAX_DEFECTS = 50

_PARSER = BytesParser(policy=compat32)
_CHUNK = 64 * 1024
_ENCODED_WORD = re.compile(r"=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEWLINES = re.compile(r"[\r\n]+")
_BRACKETED = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
_BODY_TYPES = ("text/plain", "text/html")
_HEADER_START = re.compile(rb"[\x21-\x39\x3b-\x7e]+:|From |[ \t]")  # as the stdlib sees it
_BLANK_LINE = re.compile(rb"\r?\n\r?\n")
_DELIMITER = re.compile(rb'^--(-*[^\s"-][^\s"]*?)(?:--)?[ \t\r]*$', re.M)  # not a "----" rule


def parse_message(raw: bytes, *, max_text_chars: int = 200_000) -> ParsedMessage:
    """Parse one raw message; never raises, problems are listed in ``defects``."""
    try:
        return _parse(raw, max_text_chars)
    except Exception as exc:  # last resort: the daemon must survive parser bugs too
        text = _safe(bytes(raw[: 4 * max_text_chars]).decode("utf-8", "replace"))
        return ParsedMessage(
            message_id=None, in_reply_to=(), references=(), from_name="", from_addr=None,
            reply_to=(), to=(), cc=(), subject="", date=None, headers=(),
            content_type="text/plain", text=text[:max_text_chars], html=None, attachments=(),
            charset_declared=None, charset_used="utf-8", charset_guessed=True,
            defects=(f"unparseable: {type(exc).__name__}",),
        )


def _parse(raw: bytes, max_text_chars: int) -> ParsedMessage:
    """The real work; every step degrades to a defect instead of raising."""
    defects: list[str] = []
    msg = _parse_bytes(raw, defects)
    if any(isinstance(d, MissingHeaderBodySeparatorDefect) for d in msg.defects):
        repaired = _parse_bytes(_repair_headers(raw), [])
        if len(repaired) > len(msg):
            defects.append("stray lines in header block folded")
            msg = repaired
    leaves = list(_leaves(msg, 0, defects))
    # Undeclared 8-bit headers are most often in a charset the body declares (a CJK one if any).
    charsets = [c for p in _all_parts(msg) if ascii_compatible(c := p.get_content_charset())]
    hint = next((c for c in charsets if is_cjk(c)), charsets[0] if charsets else None)
    dec = _HeaderDecoder(hint, defects)
    first: dict[str, str] = {}
    for name, value in msg.raw_items():
        first.setdefault(name.lower(), value)

    senders = dec.addresses(first.get("from", "")) or dec.addresses(first.get("sender", ""))
    body = _Body(leaves, defects, max_text_chars)
    return ParsedMessage(
        message_id=next(iter(_ids(dec.unfold(first.get("message-id", "")))), None),
        in_reply_to=_ids(dec.unfold(first.get("in-reply-to", "")))[:MAX_IDS],
        references=_ids(dec.unfold(first.get("references", "")[-MAX_HEADER_CHARS:]))[-MAX_IDS:],
        from_name=senders[0][0] if senders else "",
        from_addr=senders[0][1] if senders else None,
        reply_to=_addrs(dec.addresses(first.get("reply-to", ""))),
        to=_addrs(dec.addresses(first.get("to", ""))),
        cc=_addrs(dec.addresses(first.get("cc", ""))),
        subject=dec.text(first.get("subject", "")),
        date=_date(dec.unfold(first.get("date", ""))),
        headers=tuple((n.lower(), dec.text(v)) for n, v in islice(msg.raw_items(), MAX_HEADERS)),
        content_type=_ctype(msg),
        text=body.text,
        html=body.html,
        attachments=tuple(_attachment(p, dec) for p in leaves if id(p) not in body.part_ids),
        charset_declared=body.declared,
        charset_used=body.decoded.codec if body.decoded else None,
        charset_guessed=body.decoded.guessed if body.decoded else False,
        defects=tuple(dict.fromkeys(defects))[:MAX_DEFECTS],
    )


def envelope(raw: bytes) -> Envelope:
    """The headers only (a fraction of a full parse); never raises."""
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(raw[:MAX_HEADER_BLOCK])
        dec = _HeaderDecoder(None, [])
        senders = dec.addresses(msg.get("from", "")) or dec.addresses(msg.get("sender", ""))
        refs = _ids(dec.unfold(msg.get("in-reply-to", "")))[:MAX_IDS] + \
            _ids(dec.unfold(msg.get("references", "")[-MAX_HEADER_CHARS:]))[-MAX_IDS:]
        return Envelope(senders[0][1] if senders else None,
                        next(iter(_ids(dec.unfold(msg.get("message-id", "")))), None), tuple(dict.fromkeys(refs)))
    except Exception:  # same last resort as parse_message: unknown just means "not ahead of the queue"
        return Envelope(None, None, ())


def _parse_bytes(raw: bytes, defects: list[str]) -> Message:
    """Parse in chunks: BytesParser.parsebytes copies the whole mail into one string first,
    which for a 30 MB attachment costs several times its size in memory."""
    try:
        feeder = BytesFeedParser(policy=compat32)
        for start in range(0, len(raw), _CHUNK):
            feeder.feed(raw[start:start + _CHUNK])
        return feeder.close()
    except RecursionError:  # the stdlib parser recurses once per nesting level
        defects.append("nesting too deep: body kept unsplit")
        return _PARSER.parsebytes(raw, headersonly=True)


def _repair_headers(raw: bytes) -> bytes:
    """Fold stray lines of the header block into the header above (a mailer that forgot to
    indent a continuation, a pasted header block) and drop a junk first line, so the
    headers after them are not read as body."""
    end = _BLANK_LINE.search(raw)
    head, rest = (raw[: end.end()], raw[end.end() :]) if end else (raw, b"")
    lines = head.splitlines(keepends=True)
    ok = [bool(_HEADER_START.match(line)) for line in lines]
    last = max((i for i, good in enumerate(ok) if good), default=-1)
    fixed = [line if good or i > last else b" " + line
             for i, (line, good) in enumerate(zip(lines, ok)) if good or i > 0 or last < 0]
    return b"".join(fixed) + rest


def _all_parts(msg: Message, limit: int = 1000) -> list[Message]:
    """Parts at any depth, enclosed messages included, breadth-first without recursion."""
    parts = [msg]
    for part in parts:
        if len(parts) >= limit:
            break
        if part.is_multipart():
            parts.extend(cast(list[Message], part.get_payload()))
    return parts[:limit]


def _leaves(part: Message, depth: int, defects: list[str]) -> Iterator[Message]:
    """Content-carrying parts in order; a message/* part is one leaf, since its body belongs
    to the enclosed message, not to this one."""
    defects.extend(type(d).__name__ for d in part.defects)
    unsplit = part.get_content_maintype() == "multipart" and not part.is_multipart()
    if unsplit and depth < MAX_DEPTH and (resplit := _resplit(part)) is not None:
        defects.append("multipart boundary mismatch: split at the boundary found")
        yield from _leaves(resplit, depth + 1, defects)
    elif part.get_content_maintype() == "message" or not part.is_multipart():
        yield part
    elif depth >= MAX_DEPTH:
        defects.append("multipart nesting too deep: inner parts dropped")
    else:
        for sub in cast(list[Message], part.get_payload()):
            yield from _leaves(sub, depth + 1, defects)


def _resplit(part: Message) -> Message | None:
    """Reparse a multipart whose declared boundary never occurs (or is missing) with the
    first delimiter-looking line of its body, as left by mailers that rewrite boundaries.
    The body is taken as is: multipart bodies are never transfer-encoded (RFC 2045 6.4)."""
    payload = getattr(part, "_payload", None)  # not get_payload(): it decodes 8-bit text and can raise
    body = _raw(payload) if isinstance(payload, str) else b""
    found = _DELIMITER.search(body)
    if found is None:
        return None
    ctype = _ctype(part).encode("ascii", "replace")
    try:
        return _PARSER.parsebytes(b'Content-Type: %s; boundary="%s"\n\n' % (ctype, found[1]) + body)
    except RecursionError:
        return None


class _Body:
    """Choose and decode the body: first inline text/plain, else HTML converted to text."""

    def __init__(self, leaves: list[Message], defects: list[str], max_text_chars: int) -> None:
        # A multipart whose boundary never appeared stays one unsplit part: still readable.
        readable = [p for p in leaves if _readable(p)]
        inline = [p for p in readable if not _named(p)]
        pool = inline or readable  # named parts only when nothing else can be the body
        plain = next((p for p in pool if _ctype(p) != "text/html"), None)
        html_part = next((p for p in pool if _ctype(p) == "text/html"), None)
        self.part_ids = {id(p) for p in [*inline, plain, html_part] if p is not None}
        self.html: str | None = None
        self.decoded: Decoded | None = None
        self.declared: str | None = None
        text = ""
        if plain is not None:
            self.decoded, self.declared = _decode_part(plain, defects), plain.get_content_charset()
            text = self.decoded.text
        if html_part is not None:
            html_decoded = _decode_part(html_part, defects)
            self.html = html_decoded.text
            if not text.strip():
                self.decoded, self.declared = html_decoded, html_part.get_content_charset()
                text = _html_to_text(self.html[: HTML_INPUT_FACTOR * max_text_chars], defects)
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if len(text) > max_text_chars:
            defects.append("text cut at max_text_chars")
        self.text = text[:max_text_chars]


def _readable(part: Message) -> bool:
    ctype = _ctype(part)
    unsplit = part.get_content_maintype() == "multipart" and not part.is_multipart()
    return (ctype in _BODY_TYPES or unsplit) and part.get_content_disposition() != "attachment"


def _decode_part(part: Message, defects: list[str]) -> Decoded:
    decoded = decode_bytes(_payload(part, defects), part.get_content_charset())
    return Decoded(_safe(decoded.text), decoded.codec, decoded.guessed)


def _html_to_text(html: str, defects: list[str]) -> str:
    try:
        return get_text(html)
    except Exception:  # lxml rejects some documents; tag stripping still gives the words
        defects.append("html conversion failed")
        return re.sub(r"<[^>]*>", " ", html)


def _payload(part: Message, defects: list[str]) -> bytes:
    """Decoded payload bytes, tolerating broken base64 and padded or quoted CTE names."""
    cte = _header_value(part, "content-transfer-encoding")
    if cte.strip(" \t\"'").lower() != cte:  # the stdlib only decodes exact lower-case names
        part.replace_header("content-transfer-encoding", cte.strip(" \t\"'").lower())
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return b""
    if any(isinstance(d, InvalidBase64LengthDefect) for d in part.defects):
        return lenient_b64decode(data, defects)  # the stdlib gave up and returned it encoded
    return data


def _attachment(part: Message, dec: _HeaderDecoder) -> Attachment:
    return Attachment(filename=_filename(part, dec), content_type=_ctype(part),
                      size=_size(part, dec.defects))


def _named(part: Message) -> bool:
    return any(part.get_param(param, None, header) is not None
               for header, param in (("content-disposition", "filename"), ("content-type", "name")))


def _filename(part: Message, dec: _HeaderDecoder) -> str | None:
    """Decoded filename: RFC 2231, RFC 2047 words (invalid there, but common) or raw 8-bit
    bytes. Read from the raw header, since the stdlib turns 8-bit bytes into U+FFFD."""
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        scratch = Message()
        scratch[header] = dec.unfold(_header_value(part, header))
        value = scratch.get_param(param, None, header)
        if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded text)
            return dec.line(decode_bytes(_raw(value[2]), value[0] or dec.hint).text) or None
        if value is not None:
            return dec.line(decode_words(value, dec.defects)) or None
    return None


def _size(part: Message, defects: list[str]) -> int:
    if not part.is_multipart():
        try:
            encoded = part.get_payload()
        except (LookupError, ValueError):  # e.g. a NUL in the charset parameter
            encoded = None
        if _header_value(part, "content-transfer-encoding").strip(" \t\"'").lower() == "base64" and \
                isinstance(encoded, str):  # size from the encoded length: no need to decode 30 MB to count it
            chars = len(encoded) - sum(encoded.count(c) for c in "\r\n\t ")
            return max(0, chars * 3 // 4 - len(encoded.rstrip()) + len(encoded.rstrip().rstrip("=")))
        return len(_payload(part, defects))
    try:  # an enclosed message: its size as serialized
        return len(part.as_bytes(policy=compat32.clone(max_line_length=0)))
    except Exception:  # e.g. RecursionError on absurd nesting
        defects.append("enclosed message size unknown")
        return 0


class _HeaderDecoder:
    """Header values to clean text; ``hint`` is the charset tried for undeclared 8-bit bytes."""

    def __init__(self, hint: str | None, defects: list[str]) -> None:
        self.hint = hint
        self.defects = defects

    def unfold(self, value: str) -> str:
        """One logical line, 8-bit bytes decoded, RFC 2047 words left alone."""
        value = _FOLD.sub("", value[:MAX_HEADER_CHARS])
        return value if value.isascii() else decode_bytes(_raw(value), self.hint).text

    def text(self, value: str) -> str:
        return self.line(decode_words(self.unfold(value), self.defects))

    @staticmethod
    def line(value: str) -> str:
        """No CR/LF, so a header value can never inject a header into a reply."""
        return _safe(_NEWLINES.sub(" ", value)).strip()

    def addresses(self, value: str) -> list[tuple[str, str]]:
        """(display name, lower-cased addr-spec) pairs that have an @. Encoded words are set aside
        while splitting, so an encoded comma, @ or colon in a name cannot change the address."""
        text = self.unfold(value)
        words: list[str] = []

        def stash(match: re.Match[str]) -> str:
            words.append(match.group(0))
            return f"inboxdword{len(words) - 1}x"

        def restore(text: str) -> str:
            return re.sub(r"inboxdword(\d+)x", lambda m: words[int(m.group(1))], text)

        found = [(self.line(decode_words(restore(name), self.defects)), _safe("".join(addr.split()).lower()))
                 for name, addr in getaddresses([_ENCODED_WORD.sub(stash, text)])]
        found = [(name.strip("\"' "), addr) for name, addr in found if _usable(addr)]
        return found or [("", _safe(a).lower()) for a in _ADDR_SPEC.findall(text)]


def _usable(addr: str) -> bool:
    """An address mail can be sent to: something before and after one "@" (not "@example.com")."""
    local, at, domain = addr.rpartition("@")
    return bool(at and local and domain)


def _addrs(pairs: list[tuple[str, str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(addr for _, addr in pairs))


def _ids(value: str) -> tuple[str, ...]:
    """Message-IDs as "<id>"; bare ids are accepted when they look like one (contain @)."""
    found = ["".join(i.split()) for i in _BRACKETED.findall(value)]
    found = found or [t.strip("<>") for t in value.split() if "@" in t]
    return tuple(f"<{_safe(i)}>" for i in found if 0 < len(i) <= 998)


def _date(value: str) -> datetime | None:
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return date if date.tzinfo else date.replace(tzinfo=UTC)


def _ctype(part: Message) -> str:
    """The stdlib's lower-cased type, cut at whitespace (a missing ';' leaves params in it)."""
    return part.get_content_type().split()[0]


def _header_value(part: Message, name: str) -> str:
    return next((v for k, v in part.raw_items() if k.lower() == name), "")


def _raw(value: str) -> bytes:
    """Bytes behind the parser's str: it maps 8-bit bytes to surrogates and RFC 2231 text
    to latin-1, and both map back losslessly."""
    try:
        return value.encode("latin-1", "surrogateescape")
    except UnicodeEncodeError:  # not parser output after all; keep every character
        return value.encode("utf-8", "surrogatepass")


def _safe(text: str) -> str:
    """Drop NULs and lone surrogates, which SQLite and UTF-8 encoders reject."""
    text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return text
