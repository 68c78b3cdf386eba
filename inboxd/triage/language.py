"""Detect the customer's language: English, Traditional or Simplified Chinese.

Chinese is told apart from other text by its characters; Traditional from
Simplified by asking OpenCC which characters it would convert in each direction
(a Traditional text changes under t2s, a Simplified one under s2t). The declared
charset breaks a tie: Big5 mail is Traditional, GB mail Simplified.
"""

from __future__ import annotations

import re
from functools import lru_cache

import opencc

LANGUAGES = ("en", "zh-Hant", "zh-Hans", "other")
_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_KANA_HANGUL = re.compile(r"[\u3040-\u30ff\uac00-\ud7af]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_ENGLISH_HINTS = frozenset("the and you your to is are for of my i we please order not have with".split())


@lru_cache(maxsize=2)
def _converter(config: str) -> opencc.OpenCC:
    return opencc.OpenCC(config)


def detect_language(text: str, charset: str | None = None) -> str:
    """One of ``LANGUAGES`` for a subject plus body (only the first few KB are read)."""
    sample = text[:4000]
    han = _HAN.findall(sample)
    if _KANA_HANGUL.search(sample) and len(_KANA_HANGUL.findall(sample)) * 4 > len(han):
        return "other"  # Japanese or Korean
    if len(han) >= 2:
        chars = "".join(han)
        traditional = sum(a != b for a, b in zip(chars, _converter("t2s").convert(chars)))
        simplified = sum(a != b for a, b in zip(chars, _converter("s2t").convert(chars)))
        if traditional != simplified:
            return "zh-Hant" if traditional > simplified else "zh-Hans"
        cs = (charset or "").lower()
        if "big5" in cs:
            return "zh-Hant"
        if cs.startswith("gb") or cs in ("cp936", "x-gbk", "hz-gb-2312"):
            return "zh-Hans"
        return "zh-Hans" if traditional == 0 else "zh-Hant"
    words = [w.lower() for w in _LATIN_WORD.findall(sample)]
    if words and sum(w in _ENGLISH_HINTS for w in words) >= max(1, len(words) // 20):
        return "en"
    return "other"
