"""Webhooks (Slack-compatible JSON POST): HTTP answers mapped to inboxd's send errors."""

from __future__ import annotations

import urllib.error
import urllib.request

from inboxd.errors import SendPermanent, SendTransient


def post_json(url: str, body: bytes, timeout: float) -> None:
    """POST ``body``; returns on any 2xx, raises SendPermanent for 4xx (but 408/429), else SendTransient."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "inboxd"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (admin-set URL)
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
    except (OSError, ValueError) as exc:  # unreachable, timed out, or a URL urllib cannot use
        raise SendTransient(f"webhook {type(exc).__name__}: {exc}") from exc
    if 200 <= status < 300:
        return
    if 400 <= status < 500 and status not in (408, 429):
        raise SendPermanent(f"webhook refused: HTTP {status}")
    raise SendTransient(f"webhook answered HTTP {status}")
