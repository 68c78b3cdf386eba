"""Compose: the one place outgoing mail is turned into bytes.

Every header value passes through ``one_line`` here, so nothing a customer
wrote (a subject, a display name) can ever start a new header line, whichever
module built the mail. The classic ``email.mime`` classes are used because they
are about three times faster than ``EmailMessage`` with the SMTP policy, which
matters when a backlog of a thousand acknowledgements is drained. Header values are
encoded (and folded, when long) once, here; the generator then writes them as they are
(``_AsEncoded``) instead of folding each again, which also keeps a short Subject or a
Message-ID on its own header line.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.header import Header
from email.mime.application import MIMEApplication
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import Compat32
from email.utils import formataddr

from inboxd.reply.render import one_line

ADDRESS_HEADERS = frozenset({"from", "to", "cc", "reply-to"})


def address(name: str, addr: str) -> str:
    """An address header value; the display name is RFC 2047-encoded when it is not ASCII.

    An international address (``jdöe@mächine.example``, RFC 6531) stays UTF-8 as RFC 6532 has
    it: such mail can only be sent to a server that offers SMTPUTF8 (``mail/smtp.py``).
    """
    name, addr = one_line(name), one_line(addr)
    if addr.isascii():
        return formataddr((name, addr), charset="utf-8")
    return f"{formataddr((name, 'x@x'), charset='utf-8')[:-len('<x@x>')]}<{addr}>" if name else addr


def _header(name: str, value: str) -> str:
    """One line; non-ASCII, or a word too long to fold (a pasted URL), as RFC 2047 encoded words."""
    value = one_line(value)
    if value.isascii() and all(len(word) <= 76 for word in value.split()):
        return value
    return Header(value, "utf-8", header_name=name).encode(maxlinelen=78)


class _AsEncoded(Compat32):
    """Write an ASCII header value that fits in 78 columns, or is one word, as given: compose() already
    encoded it.

    Folding each value again cost a third of compose(), and moved a short Subject or Message-ID
    to a continuation line of its own ("Subject:" followed by a line break).
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        if name.lower() in ADDRESS_HEADERS and isinstance(value, str) and not value.isascii():
            return f"{name}: {value}{self.linesep}".encode()  # an international address (see address())
        lines = value.split("\n") if isinstance(value, str) and value.isascii() and "\r" not in value else []
        too_long = lines and len(name) + 2 + max(map(len, lines)) > 78
        if not lines or (too_long and " " in value.strip()):  # a long References list: fold it
            return super().fold_binary(name, value)  # (one long word, e.g. a Message-ID, cannot fold: as is)
        folded = self.linesep.join(lines)  # continuation lines of an encoded value start with a space
        return f"{name}: {folded}{self.linesep}".encode("ascii")


_POLICY = _AsEncoded()


def compose(headers: Sequence[tuple[str, str]], text: str, html: str | None = None,
            attachments: Iterable[tuple[str, str, bytes]] = ()) -> bytes:
    """A UTF-8 mail: text, an optional HTML alternative, optional (filename, type, data) files.

    Address header values must already be formatted (``address``); other values are
    encoded here.
    """
    body: MIMEBase = MIMEText(text, "plain", "utf-8")
    if html is not None:
        alternative = MIMEMultipart("alternative")
        alternative.attach(body)
        alternative.attach(MIMEText(html, "html", "utf-8"))
        body = alternative
    files = list(attachments)
    if files:
        mixed = MIMEMultipart("mixed")
        mixed.attach(body)
        for filename, content_type, data in files:
            maintype, _, subtype = content_type.partition("/")
            part = MIMEApplication(data, _subtype=subtype or "octet-stream")
            if maintype != "application":
                part.replace_header("Content-Type", f"{maintype}/{subtype or 'octet-stream'}")
            part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", one_line(filename)))
            mixed.attach(part)
        body = mixed
    for name, value in headers:
        body[name] = one_line(value) if name.lower() in ADDRESS_HEADERS else _header(name, value)
    return body.as_bytes(policy=_POLICY)
