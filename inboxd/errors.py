"""Every error inboxd raises on purpose, in one tree.

Callers decide by class, never by reading an error's text: a *transient* error
(a server down, a busy database) means "try again later, lose nothing", a
*permanent* one means "this will not work until a person changes something".
The adapters (``mail/``, ``store/``) translate their libraries' exceptions into
this tree, the way httpx maps transport errors, so the stages never import
imaplib, aiosmtplib or sqlite3 to handle a failure.

    InboxdError
    ├── ConfigError            the configuration file, with file and line (exit code 2)
    ├── InvalidSetting         one value is wrong (also a ValueError); the loader adds file and line
    ├── BadInput               a file or line given to a command is malformed (also a ValueError)
    ├── FileProblems           an admin-edited file (rules, routing, agents) has mistakes
    │   └── RuleError
    ├── ModelError             the saved model is missing, corrupt or from another version
    ├── TemplateError          a reply template is missing or does not render
    ├── MailboxError           reading the mailbox (IMAP)
    │   ├── MailboxTransient
    │   └── MailboxPermanent   login refused, certificate rejected
    ├── SendError              delivering outgoing mail or a webhook
    │   ├── SendTransient      4xx, timeouts: retried
    │   │   └── ConnectionLost no connection to the server: the rest of the round waits too
    │   └── SendPermanent      5xx or HTTP 4xx: marked failed
    ├── StoreError             the database
    │   └── StoreBusy          another process holds the write lock: retry, never quarantine
    └── AlreadyRunning         another inboxd uses the same database
"""

from __future__ import annotations

from pathlib import Path


class InboxdError(Exception):
    """Base of every error inboxd raises on purpose."""


class ConfigError(InboxdError):
    """A configuration problem, worded for the person who edits the file; inboxd exits with code 2."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.path, self.line, self.message = path, line, message
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {message}")


class InvalidSetting(InboxdError, ValueError):
    """One value is wrong (a time, a duration, a weekday...); the loader adds its file and line."""


class BadInput(InboxdError, ValueError):
    """A file or line given to a command is malformed (training data, ``classify --jsonl`` input)."""


class FileProblems(InboxdError):
    """An admin-edited file has mistakes; each problem names its file and line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class RuleError(FileProblems):
    """A rules file has mistakes; the last good rules stay in force."""


class ModelError(InboxdError):
    """The saved model cannot be used; inboxd falls back to rules only."""


class TemplateError(InboxdError):
    """A reply template is missing or fails to render."""


class MailboxError(InboxdError):
    """The mailbox could not be read."""


class MailboxTransient(MailboxError):
    """The server is unreachable or dropped the connection: reconnect with backoff."""


class MailboxPermanent(MailboxError):
    """Login or certificate refused: retrying will not help until the settings change."""


class SendError(InboxdError):
    """Outgoing mail or a webhook could not be delivered."""


class SendTransient(SendError):
    """Worth retrying later: 4xx answers, timeouts, a server that cannot be reached."""


class ConnectionLost(SendTransient):
    """The mail server could not be reached or the connection broke: the rest of the round waits."""


class SendPermanent(SendError):
    """Refused for good (5xx, HTTP 4xx): the outbox row is marked failed for a person to look at."""


class StoreError(InboxdError):
    """The database failed."""


class StoreBusy(StoreError):
    """Another process holds the database lock longer than the busy timeout: try again next round."""


class AlreadyRunning(InboxdError):
    """Another inboxd holds the database: two would fetch and answer the same mail."""


def describe(exc: BaseException) -> str:
    """An error as shown to an operator: ours are already worded; others get their class name first."""
    return str(exc) if isinstance(exc, InboxdError) else f"{type(exc).__name__}: {exc}"
