"""Quotes: keep only what an agent wrote, not the notification they replied to.

Mail clients quote differently (Gmail's "On ... wrote:", Outlook's "From:/Sent:"
block or underscore line, Apple's "> " lines, Chinese clients' "寫道："), and
anything left over could leak the internal notification to the customer. So the
cut is generous: the first line that starts a quotation, or the signature
delimiter, ends the reply.
"""

from __future__ import annotations

import math
import re

_ATTRIBUTION = re.compile(
    r"^(on\b.{0,200}\b(wrote|writes)\s*:?"             # On Mon, 2 Apr 2012, Bob <b@x> wrote:
    r"|.{0,200}\b(wrote|schrieb|a écrit|escribió|scrisse|написал|написала)\s*:"
    r"|am\b.{0,200}\bschrieb\b.{0,200}:"                # Am 24.11.2026 um 10:00 schrieb Bob <b@x>:
    r"|.{0,200}(寫道|写道|撰寫|撰写|來信|来信)\s*[：:]"
    r"|在\s*.{0,200}(寫道|写道)"
    r"|-{2,}\s*(original message|forwarded message|原始郵件|原始邮件|轉寄郵件|转发邮件)\s*-{2,}"
    r"|_{10,}"                                          # Outlook's separator line
    r"|-{5} .* wrote \(.*\) -{5})$",                     # inboxd's own notification marker
    re.I,
)
_ATTRIBUTION_START = re.compile(r"^(on|am|le|el|il|於|在)\b|<\s*$|\d{1,4}[/.-]\d{1,2}[/.-]\d{1,4}", re.I)
_HEADER_BLOCK = re.compile(r"^(from|寄件者|发件人|發件人)\s*[:：]", re.I)
_HEADER_NEXT = re.compile(r"^(sent|date|to|subject|寄件日期|发送时间|收件者|收件人|主旨|主题)\s*[:：]", re.I)
_SENT_FROM = re.compile(r"^(sent from my \w+|從我的 iphone 傳送|发自我的 ?iphone|get outlook for \w+)", re.I)


def reply_text(text: str) -> str:
    """The new text of a reply, without quoted mail or signature.

    Top-posted replies are cut at the first quotation. A reply written below a
    ">"-quoted block (bottom-posting) keeps only what follows the last quoted line;
    when nothing is left either way, the reply is empty: sending nothing is safer
    than sending a quoted notification to a customer.
    """
    lines = text.replace("\r\n", "\n").split("\n")
    top = _top(lines)
    if top:
        return top
    quoted = [i for i, line in enumerate(lines) if line.strip().startswith(">")]
    return _top(lines[quoted[-1] + 1:]) if quoted else ""


def _top(lines: list[str]) -> str:
    for i, line in enumerate(lines):
        stripped = line.strip()
        if line in ("-- ", "--") or _SENT_FROM.match(stripped):
            return _tidy(lines[:i])
        if _ATTRIBUTION.match(stripped):
            previous = lines[i - 1].strip() if i else ""
            wrapped = _ATTRIBUTION_START.search(previous) and _ATTRIBUTION.match(f"{previous} {stripped}")
            return _tidy(lines[:i - 1] if wrapped else lines[:i])  # a long attribution wraps onto two lines
        if _HEADER_BLOCK.match(stripped) and any(_HEADER_NEXT.match(n.strip()) for n in lines[i + 1:i + 4]):
            return _tidy(lines[:i])
        if stripped.startswith(">") and _mostly_quoted(lines[i:]):
            return _tidy(lines[:i])
    return _tidy(lines)


def _mostly_quoted(rest: list[str]) -> bool:
    """True when the remaining non-empty lines are (nearly) all quotes: a trailing quotation."""
    content = [line.strip() for line in rest if line.strip()]
    quoted = sum(line.startswith(">") for line in content)
    return quoted >= max(1, math.ceil(len(content) * 0.8))


def _tidy(lines: list[str]) -> str:
    return "\n".join(lines).strip()
