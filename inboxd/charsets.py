"""Turn bytes in a mail's declared charset into text, whatever the label says.

Mailers use charset labels Python does not know (``iso-gb2312``, ``ks_c_5601-1987``) and
label text with a smaller charset than it uses (GBK text labelled ``gb2312``, UTF-8 labelled
``iso-8859-1``). This module maps labels to codecs and falls back to detection, so decoding
always yields text and says whether the charset was guessed.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from functools import lru_cache

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
        ("iso-2022-jp", "csiso2022jp", "jis", "iso-2022-jp-1"),
        ("iso2022_jp", "iso2022_jp_ext", "iso2022_jp_2")),
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
_NOT_CHARSETS = {"unicode_escape", "raw_unicode_escape", "punycode", "idna", "undefined"}
_DETECT_SAMPLE = 64 * 1024  # detection cost must not grow with a 30 MB body


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


def ascii_compatible(label: str | None) -> bool:
    """True when ``label`` names a known charset that encodes ASCII as ASCII (not UTF-16/32)."""
    chain = codec_chain(label)
    return bool(chain) and not chain[0].startswith(("utf-16", "utf-32"))


def decode_bytes(data: bytes, label: str | None) -> Decoded:
    """Decode ``data`` labelled ``label``; never raises.

    Order: the label's codecs (unless the bytes are non-ASCII valid UTF-8, which a legacy
    8-bit text practically never is), then ASCII, UTF-8, charset-normalizer, and finally
    the declared codec or UTF-8 with replacement characters.
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
    best = from_bytes(data[:_DETECT_SAMPLE]).best()
    codec = _codec(best.encoding) if best is not None else None
    if codec is None:
        codec = chain[0] if chain else "utf-8"
    return Decoded(data.decode(codec, errors="replace"), codec, True)
