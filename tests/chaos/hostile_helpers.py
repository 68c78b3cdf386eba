"""Shared helpers for the hostile-input, injection and abuse chaos tests.

- the shared real-world corpus (``../shared/corpus``), read once;
- a session-wide counter of the parser inputs the fuzz tests tried (printed at the end);
- hostile mails built here (truncated MIME, wrong boundaries, deep nesting, 30 MB, 10,000
  headers, NUL bytes, invalid encoded words, undeclared 8-bit headers);
- inboxd configurations for any Dovecot user (two instances can face each other);
- TLS: certificates made with ``openssl`` and a TLS-terminating proxy in front of the
  plain-text test servers, and an SMTP server that insists on AUTH;
- running ``python -m inboxd`` as a process and keeping its whole stderr.

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from imapclient import IMAPClient
from test_parse import check_invariants  # the invariants every later stage relies on

from inboxd.model import ParsedMessage
from inboxd.triage.parse import parse_message

from mailservers import LOOPBACK, free_port

MAIN = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus"
MAIL_FOLDERS = ("cpython-email", "django-helpdesk-mail", "flanker-mail", "spamscope-mail-parser",
                "stalwart-mail-parser", "talon-replies", "zammad-mail")
SUPPORT = "support@example.com"


# --- the corpus ------------------------------------------------------------------------------------


def _is_mail(path: Path) -> bool:
    return path.is_file() and (path.suffix in (".eml", ".box", ".txt") or path.name.startswith("mail_"))


_CORPUS_CACHE: list[tuple[str, bytes]] | None = None


def corpus_mails() -> list[tuple[str, bytes]]:
    """(name, raw) of every raw mail in the shared corpus; empty when the corpus is absent."""
    global _CORPUS_CACHE
    if _CORPUS_CACHE is None:
        if not CORPUS.is_dir():
            _CORPUS_CACHE = []
        else:
            paths = sorted(p for folder in MAIL_FOLDERS if (CORPUS / folder).is_dir()
                           for p in (CORPUS / folder).rglob("*") if _is_mail(p))
            _CORPUS_CACHE = [(str(p.relative_to(CORPUS)), p.read_bytes()) for p in paths]
    return _CORPUS_CACHE


# --- counting what the fuzzers tried -----------------------------------------------------------------


@dataclass
class FuzzStats:
    """Parser inputs tried in this session, by source; printed when the hostile module ends."""

    by_source: Counter[str] = field(default_factory=Counter)
    defects: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.by_source.values())

    def summary(self) -> str:
        parts = ", ".join(f"{source} {n}" for source, n in sorted(self.by_source.items()))
        return f"parser inputs tried: {self.total} ({parts})"


FUZZ = FuzzStats()


def parse_checked(raw: bytes, source: str) -> ParsedMessage:
    """parse_message plus the invariants every later stage relies on, counted under ``source``.

    ``unparseable`` is parse_message's last resort: an exception was raised inside the parser
    and only the outer catch-all saved the daemon. That is a parser bug, so it fails here.
    """
    FUZZ.by_source[source] += 1
    parsed = parse_message(raw)
    check_invariants(parsed)
    assert not any(d.startswith("unparseable") for d in parsed.defects), parsed.defects
    FUZZ.defects.update(parsed.defects)
    return parsed


def peak_while(func: Callable[[], Any]) -> tuple[Any, int]:
    """(result, peak bytes newly allocated by Python while ``func`` ran), measured with tracemalloc."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = func()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    return result, peak


# --- hostile mails -------------------------------------------------------------------------------------


def _head(sender: str, subject: str, extra: str = "") -> bytes:
    """ASCII header block start; ``extra`` lines end with \\r\\n."""
    return (f"From: {sender}\r\nTo: {SUPPORT}\r\nSubject: {subject}\r\n"
            f"Date: {format_datetime(datetime.now().astimezone())}\r\n"
            f"Message-ID: {make_msgid(domain='hostile.example')}\r\nMIME-Version: 1.0\r\n{extra}").encode()


def truncated_mime(sender: str) -> bytes:
    """A multipart cut off in the middle of its base64 attachment: no closing delimiter."""
    attachment = base64.encodebytes(os.urandom(20_000)).replace(b"\n", b"\r\n")
    return (_head(sender, "Truncated upload", 'Content-Type: multipart/mixed; boundary="cut"\r\n') + b"\r\n"
            b"--cut\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe log is attached.\r\n"
            b"--cut\r\nContent-Type: application/octet-stream; name=\"log.bin\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment[: len(attachment) // 2 + 7])


def wrong_boundary(sender: str) -> bytes:
    """The declared boundary never occurs; the body uses another one (a rewriting gateway)."""
    return (_head(sender, "Wrong boundary", 'Content-Type: multipart/alternative; boundary="declared"\r\n')
            + b"\r\n--actual\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPrinter on fire.\r\n"
            b"--actual\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Printer on fire.</p>\r\n--actual--\r\n")


def nested_rfc822(sender: str, depth: int = 50) -> bytes:
    """A forward of a forward of ... ``depth`` levels of message/rfc822, each with a text part."""
    inner = b"From: innermost@example.org\r\nSubject: innermost\r\n\r\nINNERMOST TEXT\r\n"
    for level in range(depth):
        inner = (f"From: level{level}@example.org\r\nSubject: level {level}\r\n"
                 f'Content-Type: multipart/mixed; boundary="n{level}"\r\n\r\n--n{level}\r\n'
                 f"Content-Type: text/plain\r\n\r\nforwarded at level {level}\r\n--n{level}\r\n"
                 f"Content-Type: message/rfc822\r\n\r\n").encode() + inner + f"\r\n--n{level}--\r\n".encode()
    return (_head(sender, f"Forwarded {depth} times", 'Content-Type: multipart/mixed; boundary="top"\r\n')
            + b"\r\n--top\r\nContent-Type: text/plain\r\n\r\nSee the forwarded chain.\r\n"
            b"--top\r\nContent-Type: message/rfc822\r\n\r\n" + inner + b"\r\n--top--\r\n")


def big_attachment(sender: str, size: int = 30 * 1024 * 1024) -> bytes:
    """A short text and one ``size``-byte base64 attachment (30 MB: over the 25 MB default limit)."""
    data = base64.encodebytes(os.urandom(size)).replace(b"\n", b"\r\n")
    return (_head(sender, "Video of the problem", 'Content-Type: multipart/mixed; boundary="big"\r\n') + b"\r\n"
            b"--big\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe video shows the problem.\r\n"
            b"--big\r\nContent-Type: video/mp4\r\nContent-Disposition: attachment; filename=\"problem.mp4\"\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + data + b"--big--\r\n")


def many_headers(sender: str, count: int = 10_000) -> bytes:
    """``count`` junk headers before the body; Subject comes after them all."""
    junk = b"".join(b"X-Junk-%d: %s\r\n" % (i, b"v" * 40) for i in range(count))
    head = _head(sender, "placeholder").replace(b"Subject: placeholder\r\n", b"")
    return head + junk + b"Subject: after ten thousand headers\r\n\r\nbody after many headers\r\n"


def nul_bytes(sender: str) -> bytes:
    """NUL bytes in the subject, a header name, the body and a filename."""
    return (_head(sender, "nul\x00in\x00subject", "X-Nul\x00Header: a\x00b\r\n"
                  'Content-Type: multipart/mixed; boundary="z"\r\n')
            + b"\r\n--z\r\nContent-Type: text/plain\r\n\r\nText with \x00 NUL \x00\x00 bytes.\r\n"
            b"--z\r\nContent-Type: application/octet-stream; name=\"a\x00b.txt\"\r\n\r\n\x00\x00\x00\r\n--z--\r\n")


def invalid_encoded_words(sender_addr: str) -> bytes:
    """Broken RFC 2047: unknown charsets and encodings, bad base64, unterminated words, CR/LF inside."""
    subject = ("=?utf-8?B?!!!notbase64?= =?x-made-up?Q?caf=E9?= =?utf-8?X?what?= "
               "=?utf-8?q?a=0D=0ABcc:_x@evil.example?= =?utf-16?B?2D3d?= =?unicode_escape?Q?=5CN?= "
               "=?utf-8?q?unterminated")
    return (f"From: =?utf-8?B?////?= =?bogus?Q?=FF=FE?= <{sender_addr}>\r\nTo: {SUPPORT}\r\n"
            f"Subject: {subject}\r\nMessage-ID: {make_msgid(domain='hostile.example')}\r\n"
            f'Content-Type: text/plain; charset="=?utf-8?q?x?="\r\n\r\nbody with broken encoded words\r\n').encode()


def undeclared_8bit_headers(sender: str) -> bytes:
    """Raw GBK in Subject, raw Big5 in the From name, latin-1 in another header, no charset anywhere."""
    return (b"From: " + "陳小姐".encode("big5") + b" <" + sender.encode() + b">\r\nTo: " + SUPPORT.encode()
            + b"\r\nSubject: " + "发票问题，请尽快处理".encode("gbk") + b"\r\nX-Note: caf" + b"\xe9 cr\xe8me\r\n"
            + b"Message-ID: " + make_msgid(domain="hostile.example").encode()
            + b"\r\n\r\n" + "您好，我的发票还没有收到。".encode("gbk") + b"\r\n")


HOSTILE: dict[str, Callable[[str], bytes]] = {
    "truncated_mime": truncated_mime,
    "wrong_boundary": wrong_boundary,
    "nested_rfc822_50": nested_rfc822,
    "attachment_30mb": big_attachment,
    "headers_10000": many_headers,
    "nul_bytes": nul_bytes,
    "invalid_encoded_words": invalid_encoded_words,
    "undeclared_8bit_headers": undeclared_8bit_headers,
}


def normal_mail(sender: str, subject: str, *, name: str = "Normal Customer", body: str = "Where is my order?",
                message_id: str | None = None, extra: dict[str, str] | None = None) -> bytes:
    lines = [f"From: {name} <{sender}>" if name else f"From: {sender}", f"To: {SUPPORT}", f"Subject: {subject}",
             f"Date: {format_datetime(datetime.now().astimezone())}",
             f"Message-ID: {message_id or make_msgid(domain=sender.rpartition('@')[2])}", "MIME-Version: 1.0",
             *(f"{k}: {v}" for k, v in (extra or {}).items()),
             "Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


# --- configurations ------------------------------------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def _section(name: str, values: dict[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())


def write_instance(directory: Path, mailenv: Any, *, user: str = "support", address: str = SUPPORT,
                   imap: dict[str, Any] | None = None, smtp: dict[str, Any] | None = None,
                   support: dict[str, Any] | None = None, extra: str = "") -> Path:
    """An inboxd.toml in ``directory`` reading Dovecot user ``user`` and answering as ``address``.

    ``imap``/``smtp``/``support`` override or add settings of their section; ``extra`` is appended
    as is (whole sections). The database is ``directory/inboxd.db``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    box = mailenv.dovecot.imap_config(user)
    text = _section("imap", {"host": box["host"], "port": box["port"], "tls": "none", "username": user,
                             "password": box["password"], "poll_interval": 1, **(imap or {})})
    text += _section("smtp", {**mailenv.smtp.smtp_config(), "timeout": 5, "retry_delay": 1, **(smtp or {})})
    text += _section("support", {"address": address, "name": f"Support {user}", "timezone": "Asia/Taipei",
                                 "first_response": "4h", **(support or {})})
    text += _section("storage", {"database": "inboxd.db"}) + extra
    path = directory / "inboxd.toml"
    path.write_text(text, encoding="utf-8")
    return path


AGENTS_TOML = """\
[[agent]]
name = "Alice Agent"
email = "agent@example.com"
languages = ["en", "zh-Hant", "zh-Hans"]
timezone = "UTC"
days = ["mon-sun"]
hours = ["00:00-24:00"]

[[team]]
name = "support"
members = ["agent@example.com"]
lead = "agent@example.com"
strategy = "round_robin"
"""


def with_agent(directory: Path) -> str:
    """Files for one agent on shift around the clock; returns the config lines that use them."""
    rules = directory / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "routing.toml").write_text('[[route]]\nname = "Everyone"\nteam = "support"\n', encoding="utf-8")
    (directory / "agents.toml").write_text(AGENTS_TOML, encoding="utf-8")
    return f'\n[classify]\nrules_dir = "{rules}"\n'


# --- inboxd as a process -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def inboxd(config: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Ran:
    """``python -m inboxd --config CONFIG ARGS`` in the project folder; stdout and stderr kept whole."""
    done = subprocess.run([sys.executable, "-m", "inboxd", "--config", str(config), *args], cwd=MAIN,
                          capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return Ran(done.returncode, done.stdout, done.stderr)


class Mailbox:
    """One IMAP login kept open, with MULTIAPPEND for floods (Dovecot.append logs in per message)."""

    def __init__(self, dovecot: Any, user: str) -> None:
        self.client = IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=30)
        self.client.login(user, dovecot.password(user))

    def append(self, raw: bytes) -> None:
        self.client.append("INBOX", raw)

    def append_many(self, raws: list[bytes], per_command: int = 100) -> None:
        for start in range(0, len(raws), per_command):
            self.client.multiappend("INBOX", raws[start:start + per_command])

    def count(self) -> int:
        return int(self.client.select_folder("INBOX", readonly=True)[b"EXISTS"])

    def close(self) -> None:
        try:
            self.client.logout()
        except Exception:  # noqa: BLE001 - already gone
            self.client.shutdown()

    def __enter__(self) -> Mailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- TLS -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """PEM files: a self-signed certificate, and a private CA with two certificates it signed."""

    self_signed: tuple[Path, Path]  # (cert, key) for 127.0.0.1/localhost, signed by nobody trusted
    ca: Path  # the private CA's certificate (trusted only where SSL_CERT_FILE points at it)
    good: tuple[Path, Path]  # signed by the CA, for 127.0.0.1 and localhost
    wrong_name: tuple[Path, Path]  # signed by the CA, for mail.elsewhere.example only


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(directory: Path) -> Certs:
    """Generate the certificates with the openssl command line (EC keys: fast)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    d = directory
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", str(d / "self.key"), "-out", str(d / "self.pem"), "-days", "2",
             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost")
    _openssl("req", "-x509", *ec, "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"), "-days", "2",
             "-subj", "/CN=inboxd chaos test CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    for name, san in (("good", "IP:127.0.0.1,DNS:localhost"), ("wrong", "DNS:mail.elsewhere.example")):
        _openssl("req", *ec, "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"),
                 "-subj", f"/CN={name}")
        (d / f"{name}.ext").write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n")
        _openssl("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.pem"), "-CAkey",
                 str(d / "ca.key"), "-CAcreateserial", "-out", str(d / f"{name}.pem"), "-days", "2",
                 "-extfile", str(d / f"{name}.ext"))
    return Certs((d / "self.pem", d / "self.key"), d / "ca.pem", (d / "good.pem", d / "good.key"),
                 (d / "wrong.pem", d / "wrong.key"))


class TlsProxy:
    """Implicit TLS on a loopback port, forwarded in plain text to a test server (Dovecot, the sink).

    ``sessions`` counts clients that completed the TLS handshake (accepted our certificate).
    """

    def __init__(self, backend: tuple[str, int], cert: tuple[Path, Path]) -> None:
        self.backend = backend
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(str(cert[0]), str(cert[1]))
        self.sessions = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy", daemon=True)
        self._server: asyncio.base_events.Server | None = None

    def __enter__(self) -> TlsProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, LOOPBACK, 0, ssl=self.context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        try:
            back_reader, back_writer = await asyncio.open_connection(*self.backend)
        except OSError:
            writer.close()
            return

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                pass
            finally:
                sink.close()

        await asyncio.gather(pipe(reader, back_writer), pipe(back_reader, writer), return_exceptions=True)


class AuthSink:
    """A second front door to the SMTP sink that requires AUTH with one username and password.

    Plain text on loopback (``auth_require_tls=False``), so inboxd's SMTP password is really used.
    ``attempts`` records every (username, password-was-right) pair tried.
    """

    def __init__(self, sink: Any, username: str, password: str) -> None:
        self.sink, self.username, self.password = sink, username, password
        self.attempts: list[tuple[str, bool]] = []
        self.port = free_port()
        self._controller = Controller(sink, hostname=LOOPBACK, port=self.port, authenticator=self._check,
                                      auth_require_tls=False, auth_required=True)

    def _check(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = login == self.username and password == self.password
        self.attempts.append((login, ok))
        return AuthResult(success=ok, handled=False)

    def config(self) -> dict[str, Any]:
        return {"host": LOOPBACK, "port": self.port, "tls": "none"}

    def __enter__(self) -> AuthSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()
