"""SLA alerts end to end: a customer mail in the real Dovecot starts the clocks, inboxd runs at fixed instants
(``run_once`` with a controlled clock, a new Daemon each time, as after a restart), and the warnings, breach and
escalations are read back from the agent's, the lead's and the manager's mailboxes; the webhook is a real local
HTTP server."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import Settings, load_settings
from inboxd.store.sqlite import Store

from helpers import SUPPORT, mail, parse, run_once, tickets, write_config

pytestmark = pytest.mark.integration

TAIPEI = ZoneInfo("Asia/Taipei")
SECRET = "sla-secret"
AGENT, LEAD, MANAGER = "agent@example.com", "lead@example.com", "manager@example.com"
ORIGINAL_ID = "<order-1042@example.com>"
SUBJECT = "Order 1042 never arrived"


def tp(*args: int) -> datetime:
    """A Taipei wall-clock time on the test's days: tp(24, 13, 36) is Tue 24 Nov 2026 13:36."""
    day, hour, *rest = args
    return datetime(2026, 11, day, hour, *rest, tzinfo=TAIPEI)  # type: ignore[arg-type,misc]


ROUTES = '[[route]]\nname = "Everyone"\nteam = "support"\nsla = "standard"\n'


def agents(agent_hours: str) -> str:
    return f"""\
[[agent]]
name = "Alice Agent"
email = "{AGENT}"
timezone = "Asia/Taipei"
hours = ["{agent_hours}"]

[[agent]]
name = "Lena Lead"
email = "{LEAD}"
timezone = "Asia/Taipei"
hours = ["09:00-18:00"]

[[team]]
name = "support"
members = ["{AGENT}"]
lead = "{LEAD}"
"""


def sla_settings(tmp_path: Path, mailenv: Any, *, agent_hours: str = "09:00-18:00", webhook: str = "") -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "routing.toml").write_text(ROUTES, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(agents(agent_hours), encoding="utf-8")
    extra = f"""
[classify]
rules_dir = "{rules}"

[routing]
agents = "{tmp_path / 'agents.toml'}"
reply_secret = "{SECRET}"

[sla]
warn_at = [0.75, 0.9]
escalation = [{{ after = "30m", to = "lead" }}, {{ after = "1h", to = "manager" }}]
manager = "{MANAGER}"
check_seconds = 3600
webhook_url = "{webhook}"

[sla.policies.standard]
first_response = "4h"
next_response = "2h"
resolution = "2d"
"""
    return load_settings(write_config(tmp_path, mailenv, extra=extra))


# --- mailboxes ----------------------------------------------------------------------------------


def inbox(mailenv: Any, user: str) -> list[EmailMessage]:
    return [parse(raw) for raw in mailenv.dovecot.messages(user)]  # type: ignore[misc]


def sla_subjects(mailenv: Any, user: str) -> list[str]:
    """The SLA alerts in a mailbox, in arrival order, as 'warn 75', 'breach', 'escalate 1', ..."""
    found = []
    for msg in inbox(mailenv, user):
        subject = str(msg["Subject"])
        if " SLA " in subject:
            assert subject.startswith("[SUP-1] SLA ") and msg["Auto-Submitted"] == "auto-generated", subject
            found.append(subject.removeprefix("[SUP-1] SLA ").split(":")[0])
    return found


def alerts_everywhere(mailenv: Any) -> dict[str, list[str]]:
    return {user: sla_subjects(mailenv, user) for user in ("agent", "lead", "manager", "customer")}


def start_ticket(settings: Settings, mailenv: Any) -> EmailMessage:
    """The customer writes on Tue 24 Nov 10:00; returns the agent's notification."""
    mailenv.dovecot.append("support", mail(subject=SUBJECT, body="My order 1042 has not arrived yet. Please help.",
                                           message_id=ORIGINAL_ID))
    assert run_once(settings, tp(24, 10))
    [ticket] = tickets(settings)
    assert (ticket["ticket_id"], ticket["owner"], ticket["sla_policy"]) == ("SUP-1", AGENT, "standard")
    assert datetime.fromisoformat(ticket["first_response_due"]) == tp(24, 14)
    [note] = [m for m in inbox(mailenv, "agent") if m["Reply-To"] is not None]
    return note


def agent_reply(note: EmailMessage, text: str, when: datetime) -> bytes:
    """The agent answers the notification from their mail client (to its Reply-To, notification quoted)."""
    body = note.get_body(("plain",))
    assert body is not None
    quoted = "\n".join(f"> {line}".rstrip() for line in body.get_content().splitlines())
    msg = EmailMessage()
    msg["From"] = f"Alice Agent <{AGENT}>"
    msg["To"] = str(note["Reply-To"])
    msg["Subject"] = f"Re: {note['Subject']}"
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = note["Message-ID"]
    msg["References"] = note["Message-ID"]
    msg.set_content(f"{text}\n\nOn Tue, Nov 24, 2026 at 10:00 AM Example Support <{SUPPORT}> wrote:\n\n{quoted}\n")
    return msg.as_bytes()


def customer_writes_again(settings: Settings, mailenv: Any, when: datetime, body: str) -> None:
    mailenv.dovecot.append("support", mail(subject=f"Re: {SUBJECT}", body=body, in_reply_to=ORIGINAL_ID, date=when))
    assert run_once(settings, when)
    assert len(tickets(settings)) == 1


def query(settings: Settings, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql, args)
    finally:
        store.close()


def sla_show(settings: Settings, monkeypatch: pytest.MonkeyPatch, now: datetime) -> dict[str, Any]:
    monkeypatch.setattr("inboxd.cli.sla.utcnow", lambda: now)
    result = CliRunner().invoke(main, ["--config", str(settings.path), "sla", "show", "SUP-1", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def run_twice(settings: Settings, now: datetime) -> None:
    """Run, then run again at the same instant, as if inboxd were restarted right away."""
    assert run_once(settings, now)
    assert run_once(settings, now)


# --- 1. warnings before the deadline, the breach at it, escalations after -------------------------


def test_warnings_breach_and_escalations_arrive_once_each(tmp_path: Path, mailenv: Any) -> None:
    settings = sla_settings(tmp_path, mailenv)
    start_ticket(settings, mailenv)
    # 90% of 4h is used at 13:36.
    steps = [
        (tp(24, 12, 59), {}),
        (tp(24, 13), {"agent": ["warn 75"]}),
        (tp(24, 13, 35), {}),
        (tp(24, 13, 36, 1), {"agent": ["warn 90"]}),
        (tp(24, 13, 59), {}),
        (tp(24, 14), {"agent": ["breach"]}),
        (tp(24, 14, 30), {"lead": ["escalate 1"]}),
        (tp(24, 15), {"manager": ["escalate 2"]}),
    ]
    expected: dict[str, list[str]] = {"agent": [], "lead": [], "manager": [], "customer": []}
    for now, new in steps:
        run_twice(settings, now)
        for user, subjects in new.items():
            expected[user] += subjects
        assert alerts_everywhere(mailenv) == expected, now

    breach = next(m for m in inbox(mailenv, "agent") if " SLA breach" in str(m["Subject"]))
    assert str(breach["Subject"]) == "[SUP-1] SLA breach: first response is overdue: it was due Tue 24 Nov, " \
                                     "14:00 Taipei time"
    assert SUBJECT in breach.get_content() and "Policy:    standard" in breach.get_content()
    rows = query(settings, "SELECT level, sent, recipients FROM sla_alerts ORDER BY id")
    assert [(r["level"], r["sent"], json.loads(r["recipients"])) for r in rows] == [
        ("warn-75", 1, [AGENT]), ("warn-90", 1, [AGENT]), ("breach", 1, [AGENT]), ("escalate-1", 1, [LEAD]),
        ("escalate-2", 1, [MANAGER])]
    assert query(settings, "SELECT COUNT(*) n FROM outbox WHERE kind='sla_alert' AND state='sent'")[0]["n"] == 5


# --- 2. downtime: one alert for the levels that passed, the others superseded ------------------------


def test_after_downtime_only_the_breach_is_sent_and_sla_show_tells(tmp_path: Path, mailenv: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sla_settings(tmp_path, mailenv)
    start_ticket(settings, mailenv)
    run_twice(settings, tp(24, 14, 5))  # inboxd was down from 10:00 to 14:05

    assert alerts_everywhere(mailenv) == {"agent": ["breach"], "lead": [], "manager": [], "customer": []}
    shown = sla_show(settings, monkeypatch, tp(24, 14, 5))
    assert [(a["level"], a["sent"]) for a in shown["alerts"]] == [("warn-75", 0), ("warn-90", 0), ("breach", 1)]
    first = shown["clocks"][0]
    assert (first["timer"], first["state"], first["level"], first["business_minutes_left"]) == \
        ("first_response", "running", "breach", -5.0)

    run_twice(settings, tp(24, 15, 10))  # down again past both escalations: both are sent
    assert alerts_everywhere(mailenv) == {"agent": ["breach"], "lead": ["escalate 1"], "manager": ["escalate 2"],
                                          "customer": []}


# --- 3. pending pauses the clock; the customer's answer resumes it ----------------------------------


def test_pending_pauses_the_clock_and_the_customer_reply_resumes_it(tmp_path: Path, mailenv: Any,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sla_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    mailenv.dovecot.append("support", agent_reply(note, "#pending", tp(24, 11)))  # commands only: no answer
    assert run_once(settings, tp(24, 11))
    [ticket] = tickets(settings)
    assert ticket["status"] == "pending" and ticket["first_response_at"] is None
    paused = sla_show(settings, monkeypatch, tp(24, 11))["clocks"][0]
    assert (paused["state"], paused["business_minutes_left"]) == ("paused", 180.0)

    for now in (tp(24, 13), tp(24, 14, 30), tp(24, 15, 59)):  # the old due time passes while paused
        assert run_once(settings, now)
    assert alerts_everywhere(mailenv)["agent"] == []

    customer_writes_again(settings, mailenv, tp(24, 16), "Here is my address: 1 Main Street.")
    assert tickets(settings)[0]["status"] == "open"
    resumed = sla_show(settings, monkeypatch, tp(24, 16))["clocks"][0]
    # 3h were left: 16:00-18:00 today, 09:00-10:00 tomorrow
    assert resumed["state"] == "running" and datetime.fromisoformat(resumed["due_at"]) == tp(25, 10)
    assert alerts_everywhere(mailenv)["agent"] == []

    assert run_once(settings, tp(24, 17, 59))
    assert alerts_everywhere(mailenv)["agent"] == []
    assert run_once(settings, tp(24, 18))  # 75% of the 4h is used at today's closing time
    assert run_once(settings, tp(25, 9, 36, 1))
    assert alerts_everywhere(mailenv)["agent"] == ["warn 75", "warn 90"]
    assert run_once(settings, tp(25, 9, 59))
    assert alerts_everywhere(mailenv)["agent"] == ["warn 75", "warn 90"]
    run_twice(settings, tp(25, 10))
    assert alerts_everywhere(mailenv) == {"agent": ["warn 75", "warn 90", "breach"], "lead": [], "manager": [],
                                          "customer": []}
    breach = next(m for m in inbox(mailenv, "agent") if " SLA breach" in str(m["Subject"]))
    assert "it was due Wed 25 Nov, 10:00 Taipei time" in str(breach["Subject"])


# --- 4. an answer stops the first-response clock; a new customer mail starts next response ------------


def test_an_answer_stops_first_response_and_next_response_alerts_on_its_own(tmp_path: Path, mailenv: Any) -> None:
    settings = sla_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    mailenv.dovecot.append("support", agent_reply(note, "Hello Chen,\n\nyour parcel left today.\n\nBest regards",
                                                  tp(24, 11)))
    assert run_once(settings, tp(24, 11))
    [ticket] = tickets(settings)
    assert ticket["status"] == "open" and ticket["first_response_at"] is not None
    assert len([m for m in inbox(mailenv, "customer") if m["Auto-Submitted"] is None]) == 1  # the answer arrived

    for now in (tp(24, 13), tp(24, 14, 30)):
        assert run_once(settings, now)
    assert alerts_everywhere(mailenv)["agent"] == []  # first response was met: no warning, no breach

    customer_writes_again(settings, mailenv, tp(24, 15), "It has still not arrived, where is it?")
    [nxt] = query(settings, "SELECT * FROM sla_timers WHERE kind='next_response'")
    assert datetime.fromisoformat(nxt["due_at"]) == tp(24, 17)  # 2 business hours
    assert run_once(settings, tp(24, 16, 29))
    assert alerts_everywhere(mailenv)["agent"] == []
    assert run_once(settings, tp(24, 16, 30))
    run_twice(settings, tp(24, 17))
    assert alerts_everywhere(mailenv) == {"agent": ["warn 75", "breach"], "lead": [], "manager": [], "customer": []}
    assert all("next response" in str(m["Subject"]) for m in inbox(mailenv, "agent") if " SLA " in str(m["Subject"]))
    kinds = {r["kind"] for r in query(settings, "SELECT t.kind FROM sla_alerts a JOIN sla_timers t ON t.id=a.timer_id")}
    assert kinds == {"next_response"}
    [fr] = query(settings, "SELECT * FROM sla_timers WHERE kind='first_response'")
    assert fr["state"] == "stopped" and "sla_met" in {r["kind"] for r in query(settings, "SELECT kind FROM events")}


# --- 5. an owner off shift: the lead on shift gets the warning -------------------------------------


def test_warning_for_an_owner_off_shift_goes_to_the_lead(tmp_path: Path, mailenv: Any) -> None:
    settings = sla_settings(tmp_path, mailenv, agent_hours="09:00-12:00")
    start_ticket(settings, mailenv)  # at 10:00 the agent is on shift and gets the ticket
    run_twice(settings, tp(24, 13))
    assert alerts_everywhere(mailenv) == {"agent": [], "lead": ["warn 75"], "manager": [], "customer": []}
    [row] = query(settings, "SELECT recipients FROM sla_alerts")
    assert json.loads(row["recipients"]) == [LEAD]


# --- 6. the webhook ----------------------------------------------------------------------------


class Hook:
    """A local HTTP endpoint that records each POST and answers with the next of ``statuses`` (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.posts: list[bytes] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                hook.posts.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(statuses.pop(0) if statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sla"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def test_breach_is_posted_to_the_webhook(tmp_path: Path, mailenv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name)  # the POST goes to 127.0.0.1 directly
    hook = Hook([500])  # the first attempt fails: retried on the next run
    try:
        settings = sla_settings(tmp_path, mailenv, webhook=hook.url)
        start_ticket(settings, mailenv)
        assert hook.posts == []  # nothing is due yet
        assert run_once(settings, tp(24, 14))
        [row] = query(settings, "SELECT * FROM outbox WHERE kind='webhook'")
        assert row["state"] == "pending" and row["last_error"] == "webhook answered HTTP 500"
        run_twice(settings, tp(24, 14, 1))
        assert len(hook.posts) == 2 and hook.posts[0] == hook.posts[1]  # retried once, then delivered
        payload = json.loads(hook.posts[0])
        assert "[SUP-1]" in payload["text"] and "breach" in payload["text"]
        assert (payload["ticket"], payload["level"], payload["owner"]) == ("SUP-1", "breach", AGENT)
        [row] = query(settings, "SELECT * FROM outbox WHERE kind='webhook'")
        assert row["state"] == "sent"
        assert alerts_everywhere(mailenv)["agent"] == ["breach"]  # the mail went too
    finally:
        hook.close()


# --- the bug that stops every alert ------------------------------------------------------------------


def test_the_warning_arrives_without_a_crash(tmp_path: Path, mailenv: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = sla_settings(tmp_path, mailenv)
    start_ticket(settings, mailenv)
    assert run_once(settings, tp(24, 13))
    assert alerts_everywhere(mailenv)["agent"] == ["warn 75"]
