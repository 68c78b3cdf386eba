"""Turn bytes in a mail's declared charset into text, whatever the label says.

Mailers use charset labels Python does not know (``iso-gb2312``, ``ks_c_5601-1987``) and
label text with a smaller charset than it uses (GBK text labelled ``gb2312``, UTF-8 labelled
``iso-8859-1``). This module maps labels to codecs and falls back to detection, so decoding
always yields text and says whether the charset was guessed. RFC 2047 encoded words and
lenient base64 live here too: they are the other two ways mail bytes become text.
"""

from __future__ import annotations

import binascii
import codecs
import re
import string
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from charset_normalizer import from_bytes

# Label (lower-case) -> Python codecs to try in order. Supersets come first where mailers
# routinely under-declare, so one label is not a promise about the bytes.
_GB = ("gb18030",)  # gb2312 < gbk < gb18030: mailers send GBK/GB18030 text as "gb2312"
_BIG5 = ("big5", "cp950", "big5hkscs")  # Microsoft and Hong Kong extensions of big5
_KOREAN = ("cp949",)  # Unified Hangul Code, sent as euc-kr or ks_c_5601-1987
_SJIS = ("cp932",)  # Windows Shift_JIS with NEC/IBM extensions
_LATIN1 = ("cp1252", "latin-1")  # "iso-8859-1" text is really windows-1252 in practice
ALIASES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(
        ("gb2312", "gbk", "x-gbk", "cp936", "ms936", "windows-936", "euc-cn", "x-euc-cn",
         "iso-gb2312", "csgb2312", "gb_2312-80", "gb2312-80", "chinese", "gb18030"), _GB),
    **dict.fromkeys(("big5", "x-x-big5", "csbig5", "cn-big5", "big-5", "big-five"), _BIG5),
    **dict.fromkeys(("cp950", "ms950", "windows-950", "x-windows-950"), ("cp950", "big5hkscs")),
    **dict.fromkeys(("big5-hkscs", "big5hkscs"), ("big5hkscs",)),
    **dict.fromkeys(
        ("ks_c_5601-1987", "ks_c_5601-1989", "ks_c_5601", "ksc5601", "ksc_5601", "euc-kr",
         "cseuckr", "korean", "iso-ir-149", "csksc56011987", "windows-949", "uhc"), _KOREAN),
    **dict.fromkeys(
        ("shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j",
         "cswindows31j", "cp932", "ms932"), _SJIS),
    **dict.fromkeys(
        ("iso-2022-jp", "csiso2022jp", "jis", "iso-2022-jp-1", "cp50220", "cp50221", "cp50222"),
        ("iso2022_jp", "iso2022_jp_2", "cp50221")),
    **dict.fromkeys(("euc-jp", "cseucpkdfmtjapanese"), ("euc_jp", "euc_jis_2004")),
    **dict.fromkeys(("unicode-1-1-utf-7", "unicode-2-0-utf-7", "x-unicode-2-0-utf-7", "utf7"),
                    ("utf-7",)),
    **dict.fromkeys(("unicode-1-1-utf-8", "unicode-2-0-utf-8", "x-unicode20utf8"), ("utf-8",)),
    **dict.fromkeys(("unicode", "ucs-2", "ucs2", "iso-10646-ucs-2", "csunicode"), ("utf-16",)),
    **dict.fromkeys(("iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "latin-1", "l1",
                     "cp819", "ibm819", "csisolatin1", "iso-ir-100"), _LATIN1),
    **dict.fromkeys(("iso-8859-8-i", "iso-8859-8-e", "logical", "visual"), ("iso8859_8",)),
    **dict.fromkeys(("iso-8859-6-i", "iso-8859-6-e"), ("iso8859_6",)),
    **dict.fromkeys(("tis-620", "windows-874", "iso-8859-11"), ("cp874",)),
}
# Codecs that accept a charset name but are transforms, not character sets.
_NOT_CHARSETS = {"unicode-escape", "raw-unicode-escape", "punycode", "idna", "undefined", "charmap"}
_CJK = {"gb18030", "big5", "cp950", "big5hkscs", "cp949", "cp932", "euc_jp", "euc_jis_2004"}
_DETECT_SAMPLE = 64 * 1024  # detection cost must not grow with a 30 MB body
_JIS_ESCAPE = re.compile(rb"(\x1b\$[@B]|\x1b\([BJI])")
_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?(.*?)\?=", re.S)
_B64_RUN = re.compile(r"[A-Za-z0-9+/]*")
_NOT_B64 = bytes(sorted(set(range(256)) - set((string.ascii_letters + string.digits + "+/").encode())))


def _decode_cp50221(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """ISO-2022-JP as Windows writes it, with NEC/IBM characters (①, Ⅲ, ㈱) that Python's
    iso2022_jp codecs reject: each JIS X 0208 pair is moved to Shift_JIS and read as cp932."""
    out: list[str] = []
    mode = b"\x1b(B"
    for chunk in _JIS_ESCAPE.split(bytes(data)):
        if _JIS_ESCAPE.fullmatch(chunk):
            mode = chunk
            continue
        if mode.startswith(b"\x1b$"):
            chunk = bytes(_jis_to_sjis(chunk))
        elif mode == b"\x1b(I":  # JIS X 0201 katakana: same bytes as Shift_JIS plus 0x80
            chunk = bytes(b | 0x80 if 0x21 <= b <= 0x5F else b for b in chunk)
        out.append(chunk.decode("cp932", errors))
    return "".join(out), len(data)


def _jis_to_sjis(chunk: bytes) -> bytearray:
    out, i = bytearray(), 0
    while i < len(chunk):
        j1, j2 = chunk[i], chunk[i + 1] if i + 1 < len(chunk) else 0
        if not (0x21 <= j1 <= 0x7E and 0x21 <= j2 <= 0x7E):
            out.append(j1)  # not a JIS pair (a stray newline); cp932 decides if it is valid
            i += 1
            continue
        s1 = (j1 + 1) // 2 + (0x70 if j1 <= 0x5E else 0xB0)
        s2 = j2 + (0x7E if j1 % 2 == 0 else 0x1F if j2 <= 0x5F else 0x20)
        out += bytes((s1, s2))
        i += 2
    return out


def _find_cp50221(name: str) -> codecs.CodecInfo | None:
    if name != "cp50221":
        return None
    decode: Any = _decode_cp50221  # typeshed wants a Buffer-typed positional signature; bytes is what arrives
    return codecs.CodecInfo(codecs.lookup("iso2022_jp").encode, decode, name="cp50221")


# Registered so that charset_used="cp50221" can be decoded again by any later stage.
codecs.register(_find_cp50221)


@dataclass(frozen=True)
class Decoded:
    """Text plus the codec that produced it; ``guessed`` when it was not the declared one."""

    text: str
    codec: str
    guessed: bool


@lru_cache(maxsize=512)
def codec_chain(label: str | None) -> tuple[str, ...]:
    """Python codec names to try for a charset label, empty when the label is unusable."""
    if not label or len(label) > 64:
        return ()
    name = label.strip(" \t\r\n\"';").lower()
    bare = name.removeprefix("x-")
    names = ALIASES.get(name) or ALIASES.get(bare) or (name, bare)
    chain: list[str] = []
    for candidate in names:
        codec = _codec(candidate)
        if codec and codec not in chain:
            chain.append(codec)
    return tuple(chain)


def _codec(name: str) -> str | None:
    """Canonical codec name, or None for unknown names and non-text codecs."""
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError, TypeError):
        return None
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return None
    return info.name


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _mostly_utf8(sample: bytes) -> bool:
    """UTF-8 with a few stray bytes (a pasted Windows-1252 quote), as opposed to another
    charset whose bytes merely happen to form a few UTF-8 sequences."""
    text = sample.decode("utf-8", errors="replace")
    invalid = text.count("\ufffd")
    return sum(c > "\x7f" for c in text) - invalid >= 10 * invalid


def is_cjk(label: str | None) -> bool:
    """True for legacy multi-byte CJK charsets: strict decoding with them rejects most other
    8-bit text, so their success is evidence, unlike a single-byte charset's."""
    chain = codec_chain(label)
    return bool(chain) and chain[0] in _CJK


def ascii_compatible(label: str | None) -> bool:
    """True when ``label`` names a known charset that encodes ASCII as ASCII (not UTF-16/32)."""
    chain = codec_chain(label)
    return bool(chain) and not chain[0].startswith(("utf-16", "utf-32"))


def decode_bytes(data: bytes, label: str | None) -> Decoded:
    """Decode ``data`` labelled ``label``; never raises.

    Order: the label's codecs (unless the bytes are non-ASCII valid UTF-8, which a legacy
    8-bit text practically never is), then ASCII, UTF-8, mostly-UTF-8, charset-normalizer,
    and finally the declared codec or UTF-8 with replacement characters.
    """
    chain = codec_chain(label)
    mislabeled_utf8 = (
        ascii_compatible(label) and chain[0] != "utf-8" and not data.isascii() and _is_utf8(data)
    )
    if not mislabeled_utf8:
        for codec in chain:
            try:
                return Decoded(data.decode(codec), codec, False)
            except UnicodeError:
                continue
    if data.isascii():
        return Decoded(data.decode("ascii"), "ascii", label is not None)
    if mislabeled_utf8 or _is_utf8(data):
        return Decoded(data.decode("utf-8"), "utf-8", True)
    if _mostly_utf8(data[:_DETECT_SAMPLE]):
        return Decoded(data.decode("utf-8", errors="replace"), "utf-8", True)
    if not chain and (chinese := _as_chinese(data)) is not None:
        return chinese
    best = from_bytes(data[:_DETECT_SAMPLE]).best()
    detected = _codec(best.encoding) if best is not None else None
    if detected and detected.startswith(("utf-16", "utf-32")) and b"\x00" not in data:
        detected = None  # a byte-order-mark lookalike in 8-bit text, not UTF-16
    fallback = detected or (chain[0] if chain else "utf-8")
    return Decoded(data.decode(fallback, errors="replace"), fallback, True)


@lru_cache(maxsize=1)
def _common_han() -> frozenset[str]:
    text = (Path(__file__).parent / "common_han.txt").read_text(encoding="utf-8")
    return frozenset("".join(line for line in text.splitlines() if not line.startswith("#")))


def _as_chinese(data: bytes) -> Decoded | None:
    """Unlabelled 8-bit text read as GB18030 or Big5 when either gives ordinary Chinese.

    Detectors often take short Chinese for Japanese or Korean, and GB and Big5 bytes
    overlap, so each strict decoding is scored by how many of its ideographs are common
    in real support mail; the better one wins if most of it is ordinary text.
    """
    common = _common_han()
    best: tuple[float, str, str] | None = None
    for codec in ("gb18030", "big5hkscs"):
        try:
            text = data[:_DETECT_SAMPLE].decode(codec)
        except UnicodeDecodeError:
            continue
        wide = [c for c in text if ord(c) > 127 and not ("\u3000" <= c <= "\u303f" or "\uff00" <= c <= "\uffef")]
        if not wide:
            continue
        score = sum(c in common for c in wide) / len(wide)
        if best is None or score > best[0]:
            best = (score, codec, text)
    if best is None or best[0] < 0.6:
        return None
    return Decoded(data.decode(best[1], errors="replace"), best[1], True)


def decode_words(value: str, defects: list[str]) -> str:
    """Decode RFC 2047 encoded words; adjacent words in one charset are joined as bytes
    first, because mailers split multi-byte characters across words."""
    if "=?" not in value:
        return value
    out: list[str] = []
    run, run_charset, pos = b"", None, 0
    for match in _WORD.finditer(value):
        gap = value[pos : match.start()]
        pos = match.end()
        charset = match.group(1).split("*", 1)[0].lower()  # RFC 2231 adds "*language"
        data = _word_bytes(charset, match.group(2), match.group(3), defects)
        adjacent = run_charset is not None and not gap.strip()
        if adjacent and charset == run_charset:
            run += data
            continue
        if run_charset is not None:
            out.append(decode_bytes(run, run_charset).text)
        out.append("" if adjacent else gap)
        run, run_charset = data, charset
    if run_charset is not None:
        out.append(decode_bytes(run, run_charset).text)
    out.append(value[pos:])
    return "".join(out)


def _word_bytes(charset: str, encoding: str, payload: str, defects: list[str]) -> bytes:
    """Payload bytes. Raw 8-bit text inside a Q word (invalid, but seen) goes back into the
    word's charset, which is what the sender's bytes were in."""
    if encoding in "bB":  # decode up to the first character that cannot be base64
        run = _B64_RUN.match("".join(payload.split()))
        return lenient_b64decode((run[0] if run else "").encode(), defects)
    codec = codec_chain(charset)[0] if ascii_compatible(charset) else "utf-8"
    data = payload.encode() if payload.isascii() else payload.encode(codec, "replace")
    return binascii.a2b_qp(data, header=True)


def lenient_b64decode(data: bytes, defects: list[str]) -> bytes:
    """Base64 ignoring stray characters and padding rules: one lost character in a
    truncated mail must not lose the whole part."""
    data = data.translate(None, _NOT_B64)
    if len(data) % 4 == 1:
        defects.append("base64 length invalid")
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))
