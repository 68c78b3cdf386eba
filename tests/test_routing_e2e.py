"""Routing end to end: real Dovecot in, real SMTP out, the agents' and the customer's mailboxes read back."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import Settings, load_settings
from inboxd.reply.notify import parse_reply_address, reply_token
from inboxd.store.sqlite import Store

from helpers import CUSTOMER, SUPPORT, mail, parse, run_once, tickets, write_config

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "routing"
TAIPEI = ZoneInfo("Asia/Taipei")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TAIPEI)  # 4 business hours later: 14:00
SECRET = "test-secret"
AGENT, AGENT2, LEAD, MANAGER = (f"{u}@example.com" for u in ("agent", "agent2", "lead", "manager"))

ROUTES = """\
[[route]]
name = "Billing watchers"
when.category = "billing"
cc = ["manager@example.com"]
continue = true

[[route]]
name = "Everyone"
team = "support"
"""


def agents_toml(*, support: tuple[str, ...] = (AGENT, AGENT2), billing: tuple[str, ...] = (AGENT2,),
                strategy: str = "least_open", away: str | None = None, always_on: bool = False) -> str:
    def agent(name: str, email: str) -> str:
        lines = [f'[[agent]]\nname = "{name}"\nemail = "{email}"\nlanguages = ["en"]']
        if away and email != LEAD:
            lines.append(f"away_until = {away}")
        if always_on:
            lines.append('days = ["mon-sun"]\nhours = ["00:00-24:00"]')
        return "\n".join(lines) + "\n"

    def team(name: str, members: tuple[str, ...]) -> str:
        return (f'[[team]]\nname = "{name}"\nmembers = {json.dumps(list(members))}\nlead = "{LEAD}"\n'
                f'strategy = "{strategy}"\n')

    return "\n".join([agent("Agent One", AGENT), agent("Agent Two", AGENT2), agent("Lena Lead", LEAD),
                      team("support", support), team("billing", billing)])


def routed_settings(tmp_path: Path, mailenv: Any, *, agents: str | None = None, routes: str = ROUTES) -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copy(FIXTURES / "10-triage.toml", rules / "10-triage.toml")
    (rules / "routing.toml").write_text(routes, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(agents or agents_toml(), encoding="utf-8")
    extra = f"""
[classify]
rules_dir = "rules"

[routing]
agents = "agents.toml"
reply_secret = "{SECRET}"
"""
    return load_settings(write_config(tmp_path, mailenv, extra=extra))


def inbox(mailenv: Any, user: str) -> list[EmailMessage]:
    return [parse(raw) for raw in mailenv.dovecot.messages(user)]  # type: ignore[misc]


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def assigned_events(settings: Settings) -> dict[str, dict[str, Any]]:
    store = Store(settings.database)
    try:
        rows = store.query("SELECT ticket_id, detail FROM events WHERE kind='assigned' ORDER BY id")
        return {r["ticket_id"]: json.loads(r["detail"]) for r in rows}
    finally:
        store.close()


INVOICE_BODY = "Hello, the VAT number on invoice 2041 is not ours. Please send a corrected one."


def test_owner_notification_has_subject_tag_reply_to_and_details(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Invoice 2041 is wrong", body=INVOICE_BODY,
                                           message_id="<inv-2041@example.com>"))
    assert run_once(settings, TUESDAY_10)

    [ticket] = tickets(settings)
    assert (ticket["ticket_id"], ticket["team"], ticket["owner"]) == ("SUP-1", "support", AGENT)
    [note] = inbox(mailenv, "agent")
    assert note["Subject"] == "[SUP-1] Invoice 2041 is wrong"
    token = reply_token(SECRET, "SUP-1", AGENT)
    assert note["Reply-To"] == f"support+SUP-1.{token}@example.com"
    assert parse_reply_address(note["Reply-To"].addresses[0].addr_spec, SUPPORT) == ("SUP-1", token)
    assert note["From"].addresses[0].addr_spec == SUPPORT
    assert [a.addr_spec for a in note["To"].addresses] == [AGENT]
    assert [a.addr_spec for a in note["Cc"].addresses] == [MANAGER]  # the watcher from the billing route
    assert note["X-Inboxd-Ticket"] == "SUP-1" and note["Auto-Submitted"] == "auto-generated"
    body = text_of(note)
    assert "Ticket SUP-1 is assigned to you (new ticket)." in body
    assert f"Customer:  Chen Mei <{CUSTOMER}>" in body
    assert "Category:  billing" in body and "Priority:  normal" in body and "Language:  en" in body
    assert "Tags:      invoice" in body and "Team:      support" in body
    assert "Reply due: Tue 24 Nov, 14:00 Taipei time" in body
    assert INVOICE_BODY in body

    # the watcher gets the same mail; nobody else on the team does
    [copy] = inbox(mailenv, "manager")
    assert copy["Message-ID"] == note["Message-ID"]
    assert inbox(mailenv, "agent2") == [] and inbox(mailenv, "lead") == []
    [sent] = [c for c in mailenv.smtp.messages if c.message["Message-ID"] == note["Message-ID"]]
    assert sent.rcpt_tos == [AGENT, MANAGER] and sent.mail_from == SUPPORT

    # the customer gets the acknowledgement only, and it names no agent
    [ack] = mailenv.dovecot.messages("customer")
    assert parse(ack)["Auto-Submitted"] == "auto-replied" and "[SUP-1]" in parse(ack)["Subject"]
    for secret_bit in (AGENT.encode(), MANAGER.encode(), b"support+SUP-1", token.encode()):
        assert secret_bit not in ack
    assert [c.rcpt_tos for c in mailenv.smtp.messages if CUSTOMER in c.rcpt_tos] == [[CUSTOMER]]

    event = assigned_events(settings)["SUP-1"]
    assert event["routes"] == ["Billing watchers", "Everyone"] and event["owner"] == AGENT
    assert event["reason"] == "least open (0 open tickets)"
    assert event["considered"] == [[AGENT, "available"], [AGENT2, "available"]]


def test_follow_up_from_the_customer_notifies_the_owner_again(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Invoice 2041 is wrong", body=INVOICE_BODY))
    run_once(settings, TUESDAY_10)
    mailenv.dovecot.append("support", mail(subject="Re: [SUP-1] Invoice 2041 is wrong",
                                           body="Any news about the corrected invoice?"))
    run_once(settings, TUESDAY_10 + timedelta(hours=2))

    assert len(tickets(settings)) == 1
    first, second = inbox(mailenv, "agent")
    assert second["Subject"] == "[SUP-1] Invoice 2041 is wrong"
    assert second["Reply-To"] == first["Reply-To"]  # same ticket, same agent: same token
    assert second["Message-ID"] != first["Message-ID"]
    body = text_of(second)
    assert "Ticket SUP-1 is assigned to you (the customer wrote again)." in body
    assert "Any news about the corrected invoice?" in body and INVOICE_BODY not in body
    assert len(inbox(mailenv, "manager")) == 2  # the watcher stays on the ticket
    assert len(mailenv.dovecot.messages("customer")) == 1  # no second acknowledgement, no notification
    assert inbox(mailenv, "agent2") == []


def test_everyone_away_leaves_the_ticket_on_the_queue_and_alerts_the_lead(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv, agents=agents_toml(away="2026-12-01"))
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?", body="It has not arrived."))
    run_once(settings, TUESDAY_10)

    [ticket] = tickets(settings)
    assert (ticket["team"], ticket["owner"], ticket["status"]) == ("support", None, "new")
    [alert] = inbox(mailenv, "lead")
    assert alert["Subject"] == "[SUP-1] Unassigned: Where is my parcel?"
    assert alert["Reply-To"] is None
    body = text_of(alert)
    assert "Ticket SUP-1 is waiting on the support queue: nobody could take it." in body
    assert f"  {AGENT}: away until 2026-12-01" in body and f"  {AGENT2}: away until 2026-12-01" in body
    assert f"Customer: {CUSTOMER}" in body
    assert inbox(mailenv, "agent") == [] and inbox(mailenv, "agent2") == []
    [ack] = mailenv.dovecot.messages("customer")
    assert b"lead@example.com" not in ack and b"Unassigned" not in ack
    event = assigned_events(settings)["SUP-1"]
    assert event["owner"] is None and event["reason"] == "nobody in team support is available"


def test_sticky_customer_keeps_their_agent(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv, agents=agents_toml(strategy="sticky"))
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    mailenv.dovecot.append("support", mail(subject="Also: change my address"))  # a new ticket, same customer
    mailenv.dovecot.append("support", mail(sender="customer2@example.com", subject="Broken lamp"))
    run_once(settings, TUESDAY_10)

    assert [(t["ticket_id"], t["owner"]) for t in tickets(settings)] == [
        ("SUP-1", AGENT), ("SUP-2", AGENT), ("SUP-3", AGENT2)]
    events = assigned_events(settings)
    # SUP-2: AGENT had 1 open ticket and AGENT2 none, so least open would have chosen AGENT2
    assert events["SUP-2"]["reason"] == f"sticky: {AGENT} handled {CUSTOMER} before"
    assert events["SUP-3"]["reason"].startswith("least open (0 open tickets)")
    assert "no earlier agent available for customer2@example.com" in events["SUP-3"]["reason"]
    assert [m["Subject"] for m in inbox(mailenv, "agent")] == ["[SUP-1] Where is my parcel?",
                                                              "[SUP-2] Also: change my address"]
    assert [m["Subject"] for m in inbox(mailenv, "agent2")] == ["[SUP-3] Broken lamp"]


# --- inboxd rules replay over what the daemon stored ---------------------------------------------

DRAFT_ROUTES = """\
[[route]]
name = "Billing team"
when.category = "billing"
team = "billing"

[[route]]
name = "Everyone"
team = "support"
"""


def replay(settings: Settings, *args: str) -> Any:
    result = CliRunner().invoke(main, ["--config", str(settings.path), "rules", "replay", *args])
    assert result.exit_code == 0, result.output
    return result


def processed_now(tmp_path: Path, mailenv: Any, agents: str) -> Settings:
    """Two tickets processed 'now' (so --since 30d holds them) by agents who are always on shift."""
    settings = routed_settings(tmp_path, mailenv, agents=agents)
    mailenv.dovecot.append("support", mail(subject="Invoice 2041 is wrong", body=INVOICE_BODY))
    mailenv.dovecot.append("support", mail(sender="customer2@example.com", subject="Where is my parcel?"))
    run_once(settings, datetime.now(UTC) - timedelta(minutes=1))
    return settings


def test_replay_shows_what_a_draft_would_change(tmp_path: Path, mailenv: Any) -> None:
    settings = processed_now(tmp_path, mailenv, agents_toml(support=(AGENT,), billing=(AGENT2,), always_on=True))
    assert [(t["team"], t["owner"]) for t in tickets(settings)] == [("support", AGENT), ("support", AGENT)]
    draft = tmp_path / "draft"
    shutil.copytree(tmp_path / "rules", draft)
    (draft / "routing.toml").write_text(DRAFT_ROUTES, encoding="utf-8")

    out = replay(settings, "--since", "30d", "--rules", str(draft)).stdout
    assert out.splitlines() == [
        "SUP-1  Invoice 2041 is wrong",
        "    team      support  ->  billing",
        f"    owner     {AGENT}  ->  {AGENT2}",
        "",
        "2 tickets since 30d replayed; 1 would change (owner 1, team 1).",
    ]
    data = json.loads(replay(settings, "--since", "30d", "--rules", str(draft), "--json").stdout)
    assert data == {"tickets": 2, "changed": [{
        "ticket": "SUP-1", "subject": "Invoice 2041 is wrong", "routes": ["Billing team"],
        "changes": {"team": ["support", "billing"], "owner": [AGENT, AGENT2]}}]}
    # the live rules change nothing; a short period holds no tickets
    assert replay(settings).stdout.strip() == "2 tickets since 30d replayed; 0 would change (nothing)."
    tickets_before = tickets(settings)
    assert replay(settings, "--since", "1h", "--rules", str(draft)).stdout.startswith("SUP-1")
    assert tickets(settings) == tickets_before  # a replay never changes the database


def test_replay_of_the_live_rules_reports_no_owner_changes(tmp_path: Path, mailenv: Any) -> None:
    settings = processed_now(tmp_path, mailenv, agents_toml(always_on=True))  # support: AGENT, AGENT2, least open
    assert [t["owner"] for t in tickets(settings)] == [AGENT, AGENT2]
    out = replay(settings).stdout
    assert out.strip() == "2 tickets since 30d replayed; 0 would change (nothing).", out


def test_replay_needs_a_database(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    result = CliRunner().invoke(main, ["--config", str(settings.path), "rules", "replay"])
    assert result.exit_code == 2 and "needs the configuration file and the database" in result.stderr


# --- hot reload in a running daemon --------------------------------------------------------------


class DaemonLog:
    """``inboxd run`` as a process, its log lines collected as they come.

    The daemon looks at the routing files every ``RULES_CHECK_SECONDS`` (3 s); the process
    here checks every 0.25 s so the test does not sit through two 3-second polls. Nothing
    else differs from ``python -m inboxd run``.
    """

    LAUNCH = ("import sys, inboxd.daemon; inboxd.daemon.RULES_CHECK_SECONDS = 0.25; "
              "from inboxd.cli.main import main; sys.argv[0] = 'inboxd'; main()")

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.LAUNCH, "--config", str(config), "run"],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append(raw.decode(errors="replace"))

    def count(self, event: str) -> int:
        return sum(f": {event}" in line for line in list(self.lines))

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=20)
        self.reader.join(5)
        return "".join(self.lines)


def test_running_daemon_picks_up_a_routing_edit_and_ignores_a_broken_one(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv, agents=agents_toml(always_on=True))
    routes = tmp_path / "rules" / "routing.toml"
    daemon = DaemonLog(settings.path)
    try:
        wait(lambda: daemon.count("routing_loaded") == 1, "the routing files loaded at start")
        # a good edit: everything to the billing team (AGENT2 only)
        edit(routes, DRAFT_ROUTES.replace('when.category = "billing"\n', ""))
        wait(lambda: daemon.count("routing_loaded") == 2, "the good edit to be loaded")
        mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
        # a broken edit: logged with its line and refused; the last good routes stay in force,
        # so the mail above goes to billing whether it is processed before or after this edit
        edit(routes, DRAFT_ROUTES.replace('team = "billing"', 'tem = "support"'))
        wait(lambda: daemon.count("routing_invalid"), "the broken edit to be refused")
        mailenv.dovecot.append("support", mail(sender="customer2@example.com", subject="Broken lamp"))
        wait(lambda: len(inbox(mailenv, "agent2")) == 2, "both notifications for the billing agent")
    finally:
        log = daemon.stop()
    assert [t["team"] for t in tickets(settings)] == ["billing", "billing"]
    assert inbox(mailenv, "agent") == []
    assert "unknown key 'tem' in a route" in log and f"{routes}:4:" in log
    assert daemon.count("routing_loaded") == 2 and daemon.count("routing_invalid") == 1  # not re-read while unchanged
    assert SECRET not in log


def edit(path: Path, text: str) -> None:
    before = path.stat().st_mtime
    path.write_text(text, encoding="utf-8")
    os.utime(path, (before + 2, before + 2))


def wait(predicate: Any, what: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
