"""`tickets list` and `tickets show` a lead can work from (issue 11, item 3), against the real Dovecot."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner
from test_routing_e2e import AGENT, AGENT2, LEAD, routed_settings

from inboxd.cli.main import main
from inboxd.config import Settings

from helpers import mail, run_once

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))  # first answers due at 14:00


def tickets(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(main, ["--config", str(settings.path), "tickets", *args])
    assert result.exit_code == 0, result.output
    return result.output


def ids(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()[1:] if line.startswith("SUP-")]


def made(tmp_path: Path, mailenv: Any) -> Settings:
    settings = routed_settings(tmp_path, mailenv)
    for n, subject in enumerate(["Where is my parcel?", "Refund for order 7", "Thanks, all good now"]):
        mailenv.dovecot.append("support", mail(sender=f"c{n}@example.net", subject=subject))
    assert run_once(settings, TUESDAY_10)
    tickets(settings, "assign", "SUP-1", AGENT, "--as", LEAD)
    tickets(settings, "assign", "SUP-2", AGENT2, "--as", LEAD)
    tickets(settings, "tag", "SUP-2", "refund-request")
    tickets(settings, "resolve", "SUP-3", "--as", AGENT)
    return settings


def test_the_default_view_is_the_open_work_with_owner_team_age_and_next_due(tmp_path: Path, mailenv: Any) -> None:
    settings = made(tmp_path, mailenv)
    out = tickets(settings, "list")
    header = out.splitlines()[0].split()
    assert header[:6] == ["TICKET", "STATUS", "PRIORITY", "OWNER", "TEAM", "AGE"] and "DUE" in header
    assert ids(out) == ["SUP-2", "SUP-1"]  # new tickets are open work; the resolved one is not shown
    [row] = [line for line in out.splitlines() if line.startswith("SUP-1 ")]
    assert AGENT in row and "support" in row and "first_response" in row
    assert "OVERDUE" in row  # due 2026-11-24 14:00, long past
    data = json.loads(tickets(settings, "list", "--json"))
    assert {(r["ticket_id"], r["owner"], r["team"], r["next_due_clock"]) for r in data} == {
        ("SUP-1", AGENT, "support", "first_response"), ("SUP-2", AGENT2, "support", "first_response")}


def test_filters(tmp_path: Path, mailenv: Any) -> None:
    settings = made(tmp_path, mailenv)
    assert ids(tickets(settings, "list", "--status", "resolved")) == ["SUP-3"]
    assert ids(tickets(settings, "list", "--status", "new", "--status", "resolved")) == ["SUP-3", "SUP-2", "SUP-1"]
    assert ids(tickets(settings, "list", "--all")) == ["SUP-3", "SUP-2", "SUP-1"]
    assert ids(tickets(settings, "list", "--owner", AGENT2)) == ["SUP-2"]
    assert ids(tickets(settings, "list", "--owner", "none")) == []
    assert ids(tickets(settings, "list", "--tag", "refund-request")) == ["SUP-2"]
    assert ids(tickets(settings, "list", "--team", "support")) == ["SUP-2", "SUP-1"]
    assert ids(tickets(settings, "list", "--team", "billing")) == []
    assert ids(tickets(settings, "list", "--overdue")) == ["SUP-2", "SUP-1"]
    assert ids(tickets(settings, "list", "--mailbox", "INBOX")) == ["SUP-2", "SUP-1"]
    assert ids(tickets(settings, "list", "--mailbox", "billing@elsewhere")) == []


def test_show_names_the_owner_team_and_who_did_what(tmp_path: Path, mailenv: Any) -> None:
    settings = made(tmp_path, mailenv)
    out = tickets(settings, "show", "SUP-2")
    assert f"Owner: {AGENT2}   Team: support" in out
    assert f"assigned to {AGENT2} by {LEAD}" in out
    out = tickets(settings, "show", "SUP-3")
    assert f"status resolved (was new) by {AGENT}" in out
