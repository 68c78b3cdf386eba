"""Priority and mood: how urgent a mail is and whether the customer is angry.

Signals a support lead would look for, in English and Chinese: urgency words,
threats to complain publicly or cancel, shouting (capitals, many exclamation
marks), a customer writing for the third time without an answer, and senders
the team has marked as VIP. The result raises priority; it never lowers it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_URGENT = re.compile(
    r"\b(urgent(ly)?|asap|immediately|emergency|right now|critical|as soon as possible|time[- ]sensitive)\b"
    r"|緊急|紧急|十萬火急|十万火急|盡快|尽快|馬上|马上|立刻|立即|火速|急件|急!|急！|【急】|\[急\]",
    re.I,
)
_ANGRY = re.compile(
    r"\b(unacceptable|ridiculous|outrageous|disgusting|terrible|horrible|worst|scam|fraud|lawyer|sue|"
    r"legal action|chargeback|rip[- ]?off|furious|angry|pathetic|incompetent|never again|"
    r"cancel (my|the) (account|subscription|order)|report you|consumer protection|bbb|trading standards|"
    r"bad review|1[- ]star|fed up|last time|third time)\b"
    r"|投訴|投诉|客訴|申訴|申诉|消保|消基會|消基会|12315|消協|消协|差評|差评|負評|负评|曝光|媒體|媒体|"
    r"律師|律师|告你|詐騙|诈骗|騙子|骗子|太誇張|太夸张|太離譜|太离谱|氣死|气死|爛透|烂透|垃圾服務|垃圾服务|"
    r"什麼態度|什么态度|受夠|受够|再也不|退訂|退订|不能接受|無法接受|无法接受",
    re.I,
)
_CAPS_WORD = re.compile(r"\b[A-Z]{3,}\b")
_WORD = re.compile(r"\b[A-Za-z]{3,}\b")
_BANG = re.compile(r"[!！]")
ORDER = ("low", "normal", "high", "urgent")


@dataclass(frozen=True)
class Mood:
    priority: str
    tags: tuple[str, ...] = ()
    signals: tuple[str, ...] = field(default=())  # why, for explanations


def raise_to(current: str, wanted: str) -> str:
    return wanted if ORDER.index(wanted) > ORDER.index(current) else current


def assess(subject: str, body: str, *, sender: str | None, vip: frozenset[str], unanswered: int = 1) -> Mood:
    """Priority and tags for a customer mail; ``unanswered`` counts their mails since our last answer."""
    text = f"{subject}\n{body[:5000]}"
    signals: list[str] = []
    tags: list[str] = []
    priority = "normal"
    if _URGENT.search(text):
        signals.append("urgency words")
        tags.append("urgent")
        priority = "high"
    anger = len(_ANGRY.findall(text))
    words = _WORD.findall(text)
    caps = _CAPS_WORD.findall(text)
    if len(words) >= 5 and len(caps) / len(words) > 0.3 or len(caps) >= 6:
        signals.append("writing in capitals")
        anger += 1
    if len(_BANG.findall(text)) >= 3:
        signals.append("many exclamation marks")
        anger += 1
    if unanswered >= 3:
        signals.append(f"follow-up number {unanswered} without an answer")
        anger += 1
        priority = raise_to(priority, "high")
    if anger:
        signals.append(f"{anger} anger signal(s)")
        tags.append("angry")
        priority = raise_to(priority, "high")
    if anger >= 3 or (anger >= 2 and "urgent" in tags):
        priority = "urgent"
    address = (sender or "").lower()
    if address and (address in vip or address.rpartition("@")[2] in vip):
        signals.append("VIP sender")
        tags.append("vip")
        priority = raise_to(priority, "high")
    return Mood(priority, tuple(tags), tuple(signals))
