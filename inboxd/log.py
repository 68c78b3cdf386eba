"""Structured logging: one line per event, ``key=value`` or JSON, secrets masked.

Every line names what happened (``event``) and the identifiers an operator
searches for (ticket, uid, Message-ID). Passwords from the configuration are
registered at start and replaced by ``***`` in any line that would contain them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_SECRETS: set[str] = set()


def register_secrets(*values: str) -> None:
    _SECRETS.update(v for v in values if v and len(v) >= 3)


def mask(text: str) -> str:
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            fields["error"] = self.formatException(record.exc_info)
        if self.json_lines:
            return mask(json.dumps(fields, ensure_ascii=False, default=str))
        head = f"{fields.pop('time')} {fields.pop('level'):7} {fields.pop('logger')}: {fields.pop('event')}"
        rest = " ".join(f"{k}={_quote(v)}" for k, v in fields.items())
        return mask(f"{head} {rest}".rstrip())


def _quote(value: Any) -> str:
    text = str(value)
    return json.dumps(text, ensure_ascii=False) if (not text or any(c in text for c in ' ="\n')) else text


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json"))
    root = logging.getLogger("inboxd")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log(logger: logging.Logger, severity: int, event: str, /, **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (rendered as key=value or JSON).

    The first three parameters are positional-only, so a field may be called anything,
    ``level`` included.
    """
    logger.log(severity, event, extra={"fields": fields})
