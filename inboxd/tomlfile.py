"""Admin-edited TOML files (rules, routes, agents): reading them and pointing at lines.

tomllib drops positions, so a validation error finds its line again with a light
scan of the text: the ``index``-th ``[[table]]`` header, then the first line
below it that writes ``key``. That is enough for the flat files inboxd reads and
lets every message start with ``file:line:``.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from inboxd.errors import FileProblems
from inboxd.log import log

logger = logging.getLogger("inboxd.reload")
T = TypeVar("T")


def read_toml(path: Path) -> tuple[dict[str, Any], str]:
    """The parsed file and its text; FileProblems with the parser's line when it is not TOML."""
    try:
        text = path.read_text(encoding="utf-8")
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        line = m.group(1) if m else max(1, len(text.splitlines()))  # "at end of document"
        raise FileProblems([f"{path}:{line}: not valid TOML: {exc}"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FileProblems([f"{path}:1: cannot read the file: {exc}"]) from None


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_ASSIGN = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def find_line(text: str, section: str, key: str | None = None) -> int:
    """Line number (1-based) where ``[section] key`` is written, 0 when unknown.

    tomllib drops positions, so validation errors find their line again by a
    light scan of the text: table headers and ``key =`` lines are enough for the
    flat files inboxd reads.
    """
    current = ""
    header_line = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if m := _HEADER.match(line):
            current = m.group(1).replace(" ", "")
            if current == section:
                header_line = number
            continue
        m = _ASSIGN.match(line)
        if m and key is not None:
            name = m.group(1).strip("\"'")
            full = f"{current}.{name}" if current else name
            if full == f"{section}.{key}" or (not current and name == f"{section}.{key}"):
                return number
    return header_line


def top_level_line(text: str, key: str) -> int:
    """1-based line where a top-level ``key`` (a table header or an assignment) is written."""
    pattern = re.compile(rf"^\s*(\[\[?\s*{re.escape(key)}\s*[\].]|{re.escape(key)}\s*[=.])")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return 1


def table_line(text: str, table: str, index: int) -> int:
    """1-based line of the ``index``-th ``[[table]]`` header (1 when not found)."""
    seen = -1
    for number, line in enumerate(text.splitlines(), start=1):
        if re.match(rf"^\s*\[\[\s*{re.escape(table)}\s*\]\]", line):
            seen += 1
            if seen == index:
                return number
    return 1


def _key_pattern(key: str) -> re.Pattern[str]:
    return re.compile(rf"(^|[.\s\"'{{,\[]){re.escape(key)}[\"']?\s*[=.\]]")


def locate(path: Path, text: str, table: str, index: int, key: str | None = None) -> str:
    """``file:line`` of ``key`` inside the ``index``-th ``[[table]]`` (its header when not found).

    A dotted key such as ``body.regex`` first looks for a line naming both parts in
    order, so the second of two regex mistakes points at its own line.
    """
    lines = text.splitlines()
    start = table_line(text, table, index)
    if key is None:
        return f"{path}:{start}"
    body: list[tuple[int, str]] = []
    for number in range(start, len(lines)):  # the lines after the header, up to the next [[...]]
        content = lines[number].split("#", 1)[0]
        if content.strip().startswith("[["):
            break
        body.append((number + 1, content))
    parts = key.split(".")
    attempts = [parts, [parts[-1]]] if len(parts) > 1 else [parts]
    for attempt in attempts:
        patterns = [_key_pattern(p) for p in attempt]
        for number, content in body:
            position, found = 0, True
            for pattern in patterns:
                m = pattern.search(content, position)
                if m is None:
                    found = False
                    break
                position = m.end() - 1
            if found:
                return f"{path}:{number}"
    return f"{path}:{start}"


class LastGood(Generic[T]):
    """What admin files say, reloaded when they change; a broken edit keeps the last good value.

    ``files`` lists the files to watch (their modification times are compared);
    ``load`` reads them and raises FileProblems. Each problem is logged as
    ``file:line: message`` and kept in ``errors`` for the commands that check files.
    """

    def __init__(self, name: str, files: Callable[[], Iterable[Path]], load: Callable[[], T], empty: T) -> None:
        self.name, self.files, self.load = name, files, load
        self.value: T = empty
        self.errors: list[str] = []
        self._seen: tuple[tuple[str, int | None], ...] = ()
        self.reload()

    def _state(self) -> tuple[tuple[str, int | None], ...]:
        return tuple((str(p), p.stat().st_mtime_ns if p.exists() else None) for p in self.files())

    def reload(self) -> bool:
        """Load again; True when the new value is in force."""
        self._seen = self._state()
        try:
            value = self.load()
        except FileProblems as exc:
            self.errors = exc.problems
            for problem in exc.problems:
                log(logger, logging.ERROR, f"{self.name}_invalid", problem=problem,
                    note="keeping the last good version")
            return False
        self.errors, self.value = [], value
        log(logger, logging.INFO, f"{self.name}_loaded")
        return True

    def reload_if_changed(self) -> bool:
        return self.reload() if self._state() != self._seen else False
