"""The one TLS policy for every mail server connection (IMAP and SMTP)."""

from __future__ import annotations

import ssl


def client_context(verify: bool) -> ssl.SSLContext:
    """The system's trusted certificates; with ``verify`` off (test servers only), none are checked."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
