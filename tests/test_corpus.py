"""Every mail in the shared real-world corpus parses, and Zammad's subjects match ours.

The corpus is other projects' test data (see ../shared/corpus/README.md); it is not shipped
with inboxd, so the module skips when the folder is absent.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from inboxd.model import ParsedMessage
from inboxd.triage.parse import parse_message

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
MAIL_FOLDERS = (
    "cpython-email", "django-helpdesk-mail", "flanker-mail", "spamscope-mail-parser",
    "stalwart-mail-parser", "talon-replies", "zammad-mail",
)

if not CORPUS.is_dir():
    pytest.skip(f"corpus not found at {CORPUS}", allow_module_level=True)

pytestmark = pytest.mark.corpus


def _is_mail(path: Path) -> bool:
    # spamscope's mails have no extension (mail_test_1, mail_malformed_1, mail_outlook_1).
    return path.is_file() and (path.suffix in (".eml", ".box", ".txt") or path.name.startswith("mail_"))


MAILS = sorted(p for folder in MAIL_FOLDERS for p in (CORPUS / folder).rglob("*") if _is_mail(p))


@pytest.mark.parametrize("path", MAILS, ids=lambda p: str(p.relative_to(CORPUS)))
def test_corpus_mail_parses(path: Path) -> None:
    parsed = parse_message(path.read_bytes())
    assert isinstance(parsed, ParsedMessage)
    assert isinstance(parsed.text, str)
    assert not any(d.startswith("unparseable") for d in parsed.defects), parsed.defects
    for value in (parsed.subject, parsed.from_name, *parsed.to):
        assert "\r" not in value and "\n" not in value
    (parsed.text + parsed.subject).encode("utf-8")  # no lone surrogates reach storage


def test_corpus_is_complete() -> None:
    """README.md promises ~352 raw mails across the seven folders."""
    assert len(MAILS) >= 340


_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\", "/": "/", "0": "\0",
            "_": "\u00a0", "N": "\u0085", "L": "\u2028", "P": "\u2029", " ": " ", "e": "\x1b"}


def _yaml_subject(path: Path) -> str | None:
    """The top-level ``subject:`` scalar of a Zammad .yml, parsed by hand (no yaml dependency):
    plain, single- or double-quoted, folded over indented continuation lines."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("subject:")), None)
    if start is None:
        return None
    value = lines[start][len("subject:"):].strip()
    for line in lines[start + 1 :]:
        if not line[:1].isspace():
            break
        value += "\n" + line
    if value.startswith('"'):
        value = re.sub(r"\\\n[ \t]*", "", value)  # escaped line break: no space
        value = re.sub(r"[ \t]*\n[ \t]*", " ", value.strip()[1:-1])
        return re.sub(
            r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)",
            lambda m: chr(int(m[1][1:], 16)) if len(m[1]) > 1 else _ESCAPES.get(m[1], m[1]),
            value,
        )
    value = re.sub(r"[ \t]*\n[ \t]*", " ", value)
    if value.startswith("'"):
        return value[1:-1].replace("''", "'")
    return value


def _norm(text: str) -> str:
    return " ".join(text.split())


def test_zammad_subjects_match_expected() -> None:
    pairs = [(box, _yaml_subject(box.with_suffix(".yml")))
             for box in sorted((CORPUS / "zammad-mail").glob("*.box")) if box.with_suffix(".yml").exists()]
    pairs = [(box, expected) for box, expected in pairs if expected is not None]
    mismatches = []
    for box, expected in pairs:
        got = parse_message(box.read_bytes()).subject
        if _norm(got) != _norm(expected):
            mismatches.append(f"{box.name}: got {got[:80]!r}, expected {expected[:80]!r}")
    rate = 1 - len(mismatches) / len(pairs)
    print(f"zammad subject match rate: {rate:.1%} of {len(pairs)}")
    assert len(pairs) >= 80
    assert rate >= 0.9, "\n".join(mismatches)
