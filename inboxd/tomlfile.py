"""Admin-edited TOML files (rules, routes, agents): reading them and pointing at lines.

tomllib drops positions, so a validation error finds its line again with a light
scan of the text: the ``index``-th ``[[table]]`` header, then the first line
below it that writes ``key``. That is enough for the flat files inboxd reads and
lets every message start with ``file:line:``.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any


class FileProblems(Exception):
    """Problems in admin files, each a line ``file:line: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text; FileProblems with the parser's line when it is not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise FileProblems([f"{path}:{m.group(1) if m else 1}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblems([f"{path}:1: cannot read the file: {exc}"]) from None


def table_line(text: str, table: str, index: int) -> int:
    """1-based line of the ``index``-th ``[[table]]`` header (1 when not found)."""
    seen = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", line):
            seen += 1
            if seen == index:
                return number
    return 1


def locate(path: Path, text: str, table: str, index: int, key: str | None = None) -> str:
    """``file:line`` of ``key`` inside the ``index``-th ``[[table]]`` (its header when not found)."""
    lines = text.splitlines()
    start = table_line(text, table, index)
    line = start
    if key is not None:
        pattern = re.compile(rf"(^|[.\s\"'{{,\[]){re.escape(key)}[\"']?\s*[=.\]]")
        for number in range(start, len(lines)):  # the lines after the header
            content = lines[number].split("#", 1)[0]
            if content.strip().startswith("[["):
                break
            if pattern.search(content):
                line = number + 1
                break
    return f"{path}:{line}"
