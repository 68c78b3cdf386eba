"""Raw RFC 5322 bytes to a :class:`ParsedMessage`, for any input at all.

A support mailbox receives spam, bounces and broken mailers' output, and one mail that
crashes the daemon stops every ticket behind it. So parsing never raises: what cannot be
understood becomes an entry in ``defects``. The stdlib parser runs with the ``compat32``
policy, which keeps raw header strings; decoding (RFC 2047, 8-bit bytes, charset aliases)
is done here, where every failure can be caught and worked around.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterator
from datetime import datetime, timezone
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32
from email.utils import getaddresses, parsedate_to_datetime
from itertools import islice

from inscriptis import get_text

from inboxd.charsets import Decoded, ascii_compatible, decode_bytes
from inboxd.models import Attachment, ParsedMessage

MAX_DEPTH = 20  # multipart nesting followed; deeper parts are dropped with a defect
MAX_HEADERS = 500  # headers kept in ParsedMessage.headers
MAX_HEADER_CHARS = 32_768  # characters of one header value that are decoded
MAX_IDS = 100  # In-Reply-To/References ids kept (the newest References)
HTML_INPUT_FACTOR = 20  # HTML converted to text is capped at this many times max_text_chars
MAX_DEFECTS = 50

_PARSER = BytesParser(policy=compat32)
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_NEWLINES = re.compile(r"[\r\n]+")
_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?(.*?)\?=", re.S)
_BRACKETED = re.compile(r"<([^<>]*)>")
_ADDR_SPEC = re.compile(r"[^\s<>,;:\"()\[\]]+@[^\s<>,;:\"()\[\]]+")
_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_B64 = bytes(sorted(set(range(256)) - set(_B64_ALPHABET)))
_BODY_TYPES = ("text/plain", "text/html")


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
    defects: list[str] = []
    try:
        msg = _PARSER.parsebytes(raw)
    except RecursionError:  # the stdlib parser recurses once per nesting level
        defects.append("nesting too deep: body kept unsplit")
        msg = _PARSER.parsebytes(raw, headersonly=True)
    leaves = list(_leaves(msg, 0, defects))
    # Undeclared 8-bit headers are most often in the body's charset.
    charsets = (p.get_content_charset() for p in [msg, *leaves])
    hint = next((c for c in charsets if ascii_compatible(c)), None)
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
        content_type=msg.get_content_type(),
        text=body.text,
        html=body.html,
        attachments=tuple(_attachment(p, dec) for p in leaves if id(p) not in body.part_ids),
        charset_declared=body.declared,
        charset_used=body.decoded.codec if body.decoded else None,
        charset_guessed=body.decoded.guessed if body.decoded else False,
        defects=tuple(dict.fromkeys(defects))[:MAX_DEFECTS],
    )


def _leaves(part: Message, depth: int, defects: list[str]) -> Iterator[Message]:
    """Content-carrying parts in order; a message/* part is one leaf, since its body belongs
    to the enclosed message, not to this one."""
    defects.extend(type(d).__name__ for d in part.defects)
    if part.get_content_maintype() == "message" or not part.is_multipart():
        yield part
    elif depth >= MAX_DEPTH:
        defects.append("multipart nesting too deep: inner parts dropped")
    else:
        for sub in part.get_payload():
            yield from _leaves(sub, depth + 1, defects)


class _Body:
    """Choose and decode the body: first inline text/plain, else HTML converted to text."""

    def __init__(self, leaves: list[Message], defects: list[str], max_text_chars: int) -> None:
        # A multipart whose boundary never appeared stays one unsplit part: still readable.
        readable = [p for p in leaves if _readable(p)]
        inline = [p for p in readable if _filename_param(p) is None]
        pool = inline or readable  # named parts only when nothing else can be the body
        plain = next((p for p in pool if p.get_content_type() != "text/html"), None)
        html_part = next((p for p in pool if p.get_content_type() == "text/html"), None)
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
    ctype = part.get_content_type()
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
    """Decoded payload bytes, tolerating broken base64 and odd Content-Transfer-Encodings."""
    data = _raw(part.get_payload() if isinstance(part.get_payload(), str) else "")
    cte = _header_value(part, "content-transfer-encoding").strip().strip("\"'").lower()
    if cte == "base64":
        return _b64decode(data.translate(None, _NOT_B64), defects)
    if cte == "quoted-printable":
        return binascii.a2b_qp(data)
    if cte in ("x-uuencode", "uuencode", "x-uue", "uue"):
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else data
    return data


def _b64decode(data: bytes, defects: list[str]) -> bytes:
    """Base64 without padding rules: a lost character must not lose the whole part."""
    if len(data) % 4 == 1:
        defects.append("base64 length invalid")
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _attachment(part: Message, dec: _HeaderDecoder) -> Attachment:
    name = _filename_param(part)
    if isinstance(name, tuple):  # RFC 2231: (charset, language, percent-decoded text)
        filename = dec.line(decode_bytes(_raw(name[2]), name[0] or dec.hint).text)
    else:
        filename = dec.text(name or "")
    return Attachment(filename=filename or None, content_type=part.get_content_type(),
                      size=_size(part, dec.defects))


def _filename_param(part: Message) -> str | tuple[str, str, str] | None:
    value = part.get_param("filename", None, "content-disposition")
    return part.get_param("name") if value is None else value  # type: ignore[return-value]


def _size(part: Message, defects: list[str]) -> int:
    if not part.is_multipart():
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
        return self.line(self.words(self.unfold(value)))

    @staticmethod
    def line(value: str) -> str:
        """No CR/LF, so a header value can never inject a header into a reply."""
        return _safe(_NEWLINES.sub(" ", value)).strip()

    def words(self, value: str) -> str:
        """Decode RFC 2047 encoded words; adjacent words in one charset are joined as bytes
        first, because mailers split multi-byte characters across words."""
        if "=?" not in value:
            return value
        out: list[str] = []
        run, run_charset, pos = b"", None, 0
        for match in _WORD.finditer(value):
            gap = value[pos : match.start()]
            pos = match.end()
            charset, data = match.group(1).split("*", 1)[0].lower(), self._word_bytes(match)
            adjacent = run_charset is not None and data is not None and not gap.strip()
            if adjacent and charset == run_charset:
                run += data
                continue
            if run_charset is not None:
                out.append(decode_bytes(run, run_charset).text)
            out.append("" if adjacent else gap)
            if data is None:
                out.append(match.group(0))
                run, run_charset = b"", None
            else:
                run, run_charset = data, charset
        if run_charset is not None:
            out.append(decode_bytes(run, run_charset).text)
        out.append(value[pos:])
        return "".join(out)

    def _word_bytes(self, match: re.Match[str]) -> bytes | None:
        payload = match.group(3)
        if not payload.isascii():
            self.defects.append("invalid encoded word")
            return None
        if match.group(2) in "qQ":
            return binascii.a2b_qp(payload.encode(), header=True)
        return _b64decode(payload.encode().translate(None, _NOT_B64), self.defects)

    def addresses(self, value: str) -> list[tuple[str, str]]:
        """(display name, lower-cased addr-spec) pairs that have an @. Names are decoded after
        splitting, so an encoded comma cannot split one address in two."""
        text = self.unfold(value)
        found = [(self.line(self.words(name)), _safe("".join(addr.split()).lower()))
                 for name, addr in getaddresses([text])]
        found = [(name.strip("\"' "), addr) for name, addr in found if "@" in addr]
        return found or [("", _safe(a).lower()) for a in _ADDR_SPEC.findall(text)]


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
    return date if date.tzinfo else date.replace(tzinfo=timezone.utc)


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
