"""Real mail servers for integration tests: a throwaway Dovecot and an SMTP sink feeding it.

inboxd's IMAP and SMTP code is only trusted once it has talked to real servers, so
integration tests run against an actual Dovecot (IMAP, IDLE, keywords, UIDs) and an
aiosmtpd server that delivers what inboxd sends into the recipients' Dovecot
mailboxes, where a test can read it back the way a person's mail client would.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import grp
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

import psutil
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

DOVECOT_BINARY = Path("/usr/sbin/dovecot")
USERS = ("support", "customer", "customer2", "stranger", "agent", "agent2", "lead", "manager", "other")
DOMAIN = "example.com"
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A loopback port nobody listens on right now (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return cast(int, sock.getsockname()[1])


# sdbox, not maildir: maildir keeps keywords as the letters a-z in file names, so a
# mailbox's 27th and later keywords live only in its index (a cache there) and vanish
# when it is rebuilt; dbox keeps every flag and keyword in its index, its primary store.
# auth_username_format = %Ln makes "support@example.com" log in as "support".
# auth_failure_delay = 0 and no anvil-auth-penalty socket keep a wrong-password test from
# slowing every later login from 127.0.0.1 by up to 15 s (Dovecot's brute-force penalty).
_CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = {host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_username_format = %Ln
auth_failure_delay = 0
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = sdbox:~/mail
mail_fsync = never
mail_max_userip_connections = 1000
mailbox_idle_check_interval = 1 secs
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/home/%n
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {host}
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""


class Dovecot:
    """A private Dovecot IMAP server in a temp directory, run with ``dovecot -F``.

    Mail data survives ``restart()`` (same port, same mailboxes) for outage tests and is
    deleted by ``close()``. UIDs keep growing across ``reset()``, as on a real server,
    so tests must not assume the first message has UID 1.
    """

    def __init__(self, binary: Path = DOVECOT_BINARY, users: Iterable[str] = USERS) -> None:
        self.binary = binary
        self.users = tuple(users)
        self.host = LOOPBACK
        self.port = 0
        self._root: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self, timeout: float = 15) -> None:
        """Start (or start again) and return once the IMAP greeting is served."""
        if self.running:
            raise RuntimeError("Dovecot is already running")
        if self._root is None:
            self._root = self._create_root()
        self.port = self.port or free_port()
        config = self._root / "dovecot.conf"
        config.write_text(_CONFIG.format(root=self._root, host=self.host, port=self.port, **self._identity()))
        with open(self._root / "dovecot.log", "ab") as log:
            self._process = subprocess.Popen(
                [str(self.binary), "-F", "-c", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self._wait_ready(timeout)

    def stop(self) -> None:
        """Stop the server and every connection it serves, as an outage would; mail data is kept.

        Dovecot's master leaves running imap processes serving open connections, so those
        are ended too: otherwise a client in IDLE would never notice the outage."""
        if self._process is None:
            return
        children = psutil.Process(self._process.pid).children(recursive=True)
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def restart(self) -> None:
        """Stop then start on the same port with the same mail, as after a server outage."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete the temp directory with all mail."""
        self.stop()
        if self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
            self._root = None

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log_text(self) -> str:
        """Dovecot's own log (startup errors, logins, disconnects), for failure messages."""
        if self._root is None:
            return ""
        path = self._root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _create_root(self) -> Path:
        root = Path(tempfile.mkdtemp(prefix="inboxd-dovecot-"))
        identity = self._identity()
        root.chmod(0o755)  # mail and auth processes may run as another user than ours
        (root / "home").mkdir(mode=0o755)
        os.chown(root / "home", identity["uid"], identity["gid"])
        passwd = root / "passwd"
        passwd.write_text("".join(f"{user}:{{PLAIN}}{self.password(user)}::::::\n" for user in self.users))
        passwd.chmod(0o644)
        return root

    @staticmethod
    def _identity() -> dict[str, Any]:
        """Who the Dovecot processes run as.

        As root (CI), Dovecot refuses mail access as uid 0 ("userdb returned 0 as uid"),
        so mail is owned by the ``dovecot`` system user and logins run as ``dovenull``,
        both created by Debian's package. As a normal user everything runs as that user.
        """
        if os.geteuid() == 0:
            mail = pwd.getpwnam("dovecot")
            return {
                "uid": mail.pw_uid,
                "gid": mail.pw_gid,
                "login_user": "dovenull",
                "internal_user": "dovecot",
                "internal_group": grp.getgrgid(mail.pw_gid).gr_name,
            }
        me = pwd.getpwuid(os.getuid())
        return {
            "uid": me.pw_uid,
            "gid": me.pw_gid,
            "login_user": me.pw_name,
            "internal_user": me.pw_name,
            "internal_group": grp.getgrgid(me.pw_gid).gr_name,
        }

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                raise RuntimeError(f"Dovecot exited while starting. Its log:\n{self.log_text()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Dovecot did not greet on {self.host}:{self.port} within {timeout} s. Its log:\n{self.log_text()}")

    # --- users -------------------------------------------------------------------------

    def password(self, user: str) -> str:
        if user not in self.users:
            raise ValueError(f"{user!r} is not a Dovecot test user; known: {', '.join(self.users)}")
        return f"pw-{user}"

    def address(self, user: str) -> str:
        self.password(user)  # same check for a typo in the user name
        return f"{user}@{DOMAIN}"

    def user_for(self, address: str) -> str | None:
        """The mailbox owner for an address: the local part, whatever the domain."""
        local = address.rsplit("@", 1)[0].lower()
        return local if local in self.users else None

    def imap_config(self, user: str = "support") -> dict[str, Any]:
        """The ``[imap]`` settings an inboxd config needs to reach this server as ``user``."""
        return {"host": self.host, "port": self.port, "tls": "none", "username": user, "password": self.password(user)}

    # --- mailbox helpers ---------------------------------------------------------------

    @contextmanager
    def client(self, user: str) -> Iterator[IMAPClient]:
        """A logged-in IMAPClient for ``user``, logged out afterwards."""
        imap = IMAPClient(self.host, self.port, ssl=False, timeout=10)
        try:
            imap.login(user, self.password(user))
            yield imap
        finally:
            try:
                imap.logout()
            except (IMAPClientError, OSError):
                imap.shutdown()

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags: Iterable[str] = ()) -> int:
        """Store a message as if it had been delivered; creates the folder if needed. Returns its UID."""
        with self.client(user) as imap:
            if not imap.folder_exists(folder):
                imap.create_folder(folder)
            response = imap.append(folder, raw, flags=tuple(flags))
        match = re.search(rb"APPENDUID \d+ (\d+)", response)
        if match is None:
            raise AssertionError(f"APPEND gave no UID: {response!r}")
        return int(match.group(1))

    def messages(self, user: str, folder: str = "INBOX") -> list[bytes]:
        """Every message's raw bytes in UID order, read without setting \\Seen."""
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            fetched = imap.fetch(imap.search("ALL"), [b"BODY.PEEK[]"])
        return [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]

    def flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple[str, ...]]:
        """UID -> stored flags and keywords, e.g. ``{7: ("\\Seen", "$inboxd")}``.

        ``\\Recent`` is left out: it is per-session state that depends on which client
        opened the mailbox first, not something stored on the message.
        """
        with self.client(user) as imap:
            imap.select_folder(folder, readonly=True)
            fetched = imap.fetch(imap.search("ALL"), ["FLAGS"])
        return {
            uid: tuple(flag.decode() for flag in data[b"FLAGS"] if flag != b"\\Recent")
            for uid, data in sorted(fetched.items())
        }

    def reset(self) -> None:
        """Empty every user's mail: delete all folders but INBOX and expunge INBOX."""
        assert self._root is not None, "Dovecot was never started"
        for user in self.users:
            if not (self._root / "home" / user).exists():
                continue  # never logged in: nothing to empty
            with self.client(user) as imap:
                folders = [name for _flags, _sep, name in imap.list_folders() if name.upper() != "INBOX"]
                for name in sorted(folders, key=lambda name: name.count("/"), reverse=True):
                    imap.delete_folder(name)
                for _flags, _sep, name in imap.list_sub_folders():
                    if name.upper() != "INBOX":
                        imap.unsubscribe_folder(name)
                if imap.select_folder("INBOX")[b"EXISTS"]:
                    imap.delete_messages(imap.search("ALL"))
                    imap.expunge()


@dataclass(frozen=True)
class Captured:
    """One message the SMTP sink accepted, exactly as the client sent it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


class SmtpSink:
    """An aiosmtpd server that records every accepted message and delivers it into Dovecot.

    A recipient whose local part is a Dovecot user gets the message in that user's INBOX
    (byte for byte, via IMAP APPEND); any other recipient is accepted and only recorded.
    ``fail_with`` and ``delay`` simulate an unwell server until ``recover()``. While
    Dovecot is down, mail for its users is refused with 451 (nothing is queued), so an
    IMAP outage test that also sends mail should expect that.
    """

    def __init__(self, dovecot: Dovecot) -> None:
        self.dovecot = dovecot
        self.host = LOOPBACK
        self.port = 0
        self.messages: list[Captured] = []
        self._failure: str | None = None
        self._delay = 0.0
        self._controller: Controller | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start serving; a second start after ``stop()`` reuses the port."""
        self.port = self.port or free_port()
        self._controller = Controller(self, hostname=self.host, port=self.port, enable_SMTPUTF8=True)
        self._controller.start()

    @property
    def running(self) -> bool:
        return self._controller is not None

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def smtp_config(self) -> dict[str, Any]:
        """The ``[smtp]`` settings an inboxd config needs to send through this sink."""
        return {"host": self.host, "port": self.port, "tls": "none"}

    # --- test controls -----------------------------------------------------------------

    def clear(self) -> None:
        self.messages.clear()

    def fail_with(self, code: int = 421, message: str = "try later") -> None:
        """Answer every MAIL, RCPT and DATA with ``code message`` until ``recover()``."""
        self._failure = f"{code} {message}"

    def delay(self, seconds: float) -> None:
        """Hold every DATA answer back this long (a client that gives up first delivers nothing)."""
        self._delay = seconds

    def recover(self) -> None:
        """Back to normal service; a DATA being held back is answered at once."""
        self._failure = None
        self._delay = 0.0

    def wait_for(self, count: int, timeout: float = 10) -> list[Captured]:
        """Poll until at least ``count`` messages were accepted; AssertionError otherwise."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        captured = list(self.messages)
        if len(captured) < count:
            summary = [(c.mail_from, c.rcpt_tos, c.message["Subject"]) for c in captured]
            raise AssertionError(f"expected {count} message(s) within {timeout} s, captured {len(captured)}: {summary}")
        return captured

    # --- aiosmtpd hooks (run in the Controller's thread) ----------------------------------

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self._failure:
            return self._failure
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self._failure:
            return self._failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        # aiosmtpd cancels this coroutine when the client hangs up, so a client that timed
        # out during the delay leaves nothing behind to turn up in a later test.
        deadline = time.monotonic() + self._delay
        while self._delay and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self._failure:
            return self._failure
        data = cast(bytes, envelope.original_content)
        # Delivered synchronously: the APPEND is milliseconds on loopback, and doing it
        # without an await means a hang-up can't leave a message delivered but unrecorded.
        users = dict.fromkeys(user for rcpt in envelope.rcpt_tos if (user := self.dovecot.user_for(rcpt)))
        try:
            for user in users:
                self.dovecot.append(user, data)
        except (IMAPClientError, OSError) as error:
            return f"451 4.3.0 delivery into Dovecot failed: {error}"
        self.messages.append(Captured(str(envelope.mail_from), list(envelope.rcpt_tos), data))
        return "250 OK delivered"


@dataclass(frozen=True)
class MailEnv:
    """What an integration test talks to: ``dovecot`` for IMAP, ``smtp`` for sending."""

    dovecot: Dovecot
    smtp: SmtpSink
