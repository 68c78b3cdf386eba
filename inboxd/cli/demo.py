"""``inboxd demo``: the whole pipeline on a bundled sample mailbox, no server needed.

The sample mail shipped with inboxd (``data/demo/mailbox``: several languages and
charsets, an auto-reply, a bounce, a broken message) is read by a directory-backed
mail source with the same interface as IMAP, and acknowledgements are delivered over
real SMTP to an aiosmtpd server running inside this process. The clock is fixed
at Tue 24 Nov 2026, 11:05 Taipei time so the output is the same on every run.
A demo that creates no ticket fails (exit code 1): it is also the quickest check
that an installation is complete.
"""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import json
import shutil
import socket
import tempfile
import time
import unicodedata
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click
from aiosmtpd.controller import Controller

from inboxd.config import load_settings
from inboxd.daemon import Daemon
from inboxd.mail.fetch import Fetched
from inboxd.resources import DEMO, RULES
from inboxd.store import views
from inboxd.store.sqlite import Store
from inboxd.triage.train import bundled_examples, save, train

DEMO_MAILBOX = DEMO / "mailbox"
DEMO_ROUTING = DEMO / "routing.toml"
DEMO_AGENTS = DEMO / "agents.toml"
DEMO_NOW = datetime(2026, 11, 24, 11, 5, tzinfo=ZoneInfo("Asia/Taipei"))
DEMO_CONFIG = """\
# Written by `inboxd demo`: the sample mailbox is read from {mailbox}
[imap]
host = "demo.invalid"          # not contacted: the demo reads a folder of .eml files
username = "support"
password = "demo"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
tls = "none"

[support]
address = "support@acme.example"
name = "Acme Support"
timezone = "Asia/Taipei"
first_response = "4h"
business_days = ["mon", "tue", "wed", "thu", "fri"]
business_hours = ["09:00-12:30", "13:30-18:00"]
holidays = ["2026-12-25", "2027-01-01"]

[storage]
database = "inboxd-demo.db"

[classify]
rules_dir = "rules"
model = "model.joblib"

[routing]
agents = "{agents}"
"""


class DirectoryMailbox:
    """A read-only folder of ``.eml`` files behaving like an IMAP folder (UIDs in name order)."""

    uidvalidity = 1

    def __init__(self, folder: Path) -> None:
        self.files = sorted(folder.glob("*.eml"))
        self.keywords: dict[int, set[str]] = {}

    def connect(self) -> None:
        return None

    def close(self) -> None:
        return None

    def new_messages(self, after_uid: int) -> list[tuple[int, int]]:
        return [(uid, f.stat().st_size) for uid, f in enumerate(self.files, start=1) if uid > after_uid]

    def fetch(self, uids: Sequence[int], max_size: int, sizes: dict[int, int]) -> dict[int, Fetched]:
        return {uid: Fetched(self.files[uid - 1].read_bytes(), sizes[uid]) for uid in uids}

    def add_keywords(self, uids: Sequence[int], keywords: Sequence[str]) -> None:
        for uid in uids:
            self.keywords.setdefault(uid, set()).update(keywords)

    def wait(self, timeout: float, interrupted: Callable[[], bool]) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not interrupted():
            time.sleep(0.1)


class _Capture:
    """aiosmtpd handler keeping every accepted mail in memory."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(bytes(envelope.original_content or envelope.content))
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_demo(keep: Path | None = None) -> None:
    """Run the pipeline on the sample mailbox and print what happened; ClickException if nothing was ticketed."""
    mailbox = DirectoryMailbox(DEMO_MAILBOX)
    if not mailbox.files:
        raise click.ClickException(f"The demo found no sample mails in {DEMO_MAILBOX}: this copy of inboxd is "
                                   "incomplete. Reinstall it (e.g. pipx reinstall inboxd) and try again.")
    workdir = keep or Path(tempfile.mkdtemp(prefix="inboxd-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    capture = _Capture()
    controller = Controller(capture, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        config = workdir / "inboxd.toml"
        config.write_text(DEMO_CONFIG.format(mailbox=DEMO_MAILBOX, smtp_port=controller.port, agents=DEMO_AGENTS),
                          encoding="utf-8")
        rules = workdir / "rules"
        rules.mkdir(exist_ok=True)
        for path in RULES.glob("*.toml"):  # the shipped triage rules, with the demo's routes
            shutil.copy(DEMO_ROUTING if path.name == "routing.toml" else path, rules / path.name)
        (workdir / "inboxd-demo.db").unlink(missing_ok=True)
        settings = load_settings(config)
        examples = bundled_examples()
        if examples:
            click.echo(f"Training the category model on {len(examples)} bundled examples...")
            save(train(examples), settings.classify.model)
        daemon = Daemon(settings, source=mailbox, clock=lambda: DEMO_NOW)
        asyncio.run(daemon.run_once())
        tickets = _report(Store(settings.database), len(mailbox.files), capture.messages,
                          settings.database if keep else None)
        if not tickets:
            raise click.ClickException(f"The demo read {len(mailbox.files)} sample mails but created no ticket "
                                       "from them; the lines above say why.")
    finally:
        controller.stop()
        if keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


def _report(store: Store, mails: int, sent: list[bytes], database: Path | None) -> int:
    """Print the tickets, the deliveries and one acknowledgement; return the number of tickets."""
    click.secho(f"inboxd demo: {mails} sample mails from {DEMO_MAILBOX}", bold=True)
    click.echo(f"(clock fixed at {DEMO_NOW:%a %d %b %Y %H:%M} Taipei time)\n")
    click.secho("Tickets", bold=True)
    tickets = views.demo_tickets(store)
    for t in tickets:
        messages = views.inbound_count(store, t["ticket_id"])
        ack = views.ack_events(store, t["ticket_id"])
        note = "ack queued" if ack and ack[0]["kind"] == "ack_queued" else \
            f"no ack: {json.loads(ack[0]['detail']).get('reason')}" if ack else ""
        tags = ",".join(store.tags(t["ticket_id"]))
        click.echo(f"  {t['ticket_id']:<7} {t['language']:<8} {messages} msg  {t['requester'][:26]:<26} "
                   f"{_cut(t['subject'], 34)}  {t['category'] or '?':<9} {t['priority']:<6} {tags}")
        click.echo(f"  {'':<7} {note}; team {t['team'] or '-'}, owner {t['owner'] or '- (on the team queue)'}")
    status = store.status()
    kinds = views.outbox_counts(store)
    click.echo(f"\nQuarantined (stored, not ticketed): {status['messages_quarantined']}   "
               f"Outbox: {status['outbox_pending']} pending, {status['outbox_failed']} failed")
    click.echo(f"Delivered over SMTP: {len(sent)} mails: {kinds.get('ack', 0)} acknowledgements to customers, "
               f"{kinds.get('notification', 0)} notifications to agents, "
               f"{kinds.get('queue_alert', 0)} alerts to team leads")
    for row in views.quarantined(store):
        click.echo(f"  quarantined uid {row['uid']}: {row['error']}")
    acks = [m for m in (email.message_from_bytes(raw, policy=email.policy.default) for raw in sent)
            if m["Auto-Submitted"] == "auto-replied"]
    if acks:  # show one in Traditional Chinese when there is one: it shows the localized due time
        msg = next((m for m in acks if "工單" in _plain(m)), acks[0])
        click.secho("\nOne acknowledgement as the customer receives it", bold=True)
        for header in ("From", "To", "Subject", "In-Reply-To", "Auto-Submitted"):
            click.echo(f"{header}: {msg[header]}")
        click.echo("\n" + _plain(msg))
    if database is not None:
        click.echo(f"Database of this run: {database} (look inside: inboxd --config "
                   f"{database.parent / 'inboxd.toml'} tickets list)")
    else:
        click.echo("Keep this run's database and look inside with: inboxd demo --keep FOLDER")
    return len(tickets)


def _plain(msg: email.message.EmailMessage) -> str:
    body = msg.get_body(("plain",))
    return str(body.get_content()) if body is not None else ""


def _cut(text: str, width: int) -> str:
    """Cut and pad to a display width, counting CJK characters as two columns."""
    out, used = "", 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        if used + w > width:
            break
        out, used = out + ch, used + w
    return out + " " * (width - used)
