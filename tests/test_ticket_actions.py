"""Acting on a ticket without a notification (issue 11, item 2), against the real Dovecot and SMTP sink.

`inboxd tickets resolve|close|reopen|pending|spam|assign|tag|untag|priority|category|note` have the
effects of the mail commands; resolved tickets close after `close_after`; a reply to a closed
ticket starts a new one that follows it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from click.testing import CliRunner, Result
from test_routing_e2e import AGENT, AGENT2, LEAD, inbox, routed_settings, text_of

from inboxd.cli.main import main
from inboxd.config import Settings
from inboxd.store.sqlite import Store

from helpers import CUSTOMER, mail, run_once

TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


def cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(settings.path), "tickets", *args])


def query(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql, params)
    finally:
        store.close()


def ticket(settings: Settings, ticket_id: str = "SUP-1") -> dict[str, Any]:
    return query(settings, "SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,))[0]


def events(settings: Settings, ticket_id: str = "SUP-1") -> list[tuple[str, str, dict[str, Any]]]:
    return [(r["kind"], r["actor"], json.loads(r["detail"])) for r in
            query(settings, "SELECT kind, actor, detail FROM events WHERE ticket_id=? ORDER BY id", (ticket_id,))]


def running(settings: Settings) -> list[str]:
    return [r["kind"] for r in query(settings, "SELECT kind FROM sla_timers WHERE ticket_id='SUP-1' AND "
                                               "state='running' ORDER BY id")]


def test_every_action_from_the_command_line_has_the_mail_commands_effects(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    mailenv.dovecot.append("support", mail(sender="seo@agency.example", subject="Cheap backlinks"))
    assert run_once(settings, TUESDAY_10)
    clocks = running(settings)
    assert ticket(settings)["owner"] == AGENT and "first_response" in clocks

    result = cli(settings, "assign", "SUP-1", "Agent Two", "--as", LEAD)
    assert result.exit_code == 0 and "SUP-1: assigned to agent2@example.com" in result.output, result.output
    assert run_once(settings, TUESDAY_10 + timedelta(minutes=1))  # the daemon sends what was queued
    [note] = [m for m in inbox(mailenv, "agent2") if "[SUP-1]" in m["Subject"]]
    assert "assigned by Lena Lead" in text_of(note)
    assert ("assigned", LEAD, {"owner": AGENT2, "reason": f"assigned by {LEAD} from the command line"}) \
        in events(settings)

    assert cli(settings, "pending", "SUP-1", "--as", AGENT2).exit_code == 0
    assert ticket(settings)["status"] == "pending" and running(settings) == []  # paused
    assert cli(settings, "reopen", "SUP-1", "--as", AGENT2).exit_code == 0
    assert ticket(settings)["status"] == "open" and running(settings) == clocks  # resumed

    assert cli(settings, "tag", "SUP-1", "vip-customer").exit_code == 0
    assert cli(settings, "priority", "SUP-1", "high").exit_code == 0
    assert cli(settings, "category", "SUP-1", "shipping", "--as", AGENT2).exit_code == 0
    tags = [r["tag"] for r in query(settings, "SELECT tag FROM ticket_tags WHERE ticket_id='SUP-1'")]
    assert "vip-customer" in tags and "needs-triage" not in tags
    assert (ticket(settings)["priority"], ticket(settings)["category"]) == ("high", "shipping")
    [correction] = query(settings, "SELECT new_value, actor FROM corrections WHERE field='category'")
    assert correction == {"new_value": "shipping", "actor": AGENT2}  # the model learns from it
    assert cli(settings, "untag", "SUP-1", "vip-customer").exit_code == 0
    assert "vip-customer" not in [r["tag"] for r in query(settings, "SELECT tag FROM ticket_tags")]

    result = cli(settings, "note", "SUP-1", "Called the customer: parcel is at the depot.", "--as", LEAD)
    assert result.exit_code == 0 and "copied to agent2@example.com" in result.output, result.output
    [internal] = query(settings, "SELECT direction, body FROM messages WHERE kind='note'")
    assert internal == {"direction": "internal", "body": "Called the customer: parcel is at the depot."}

    assert cli(settings, "resolve", "SUP-1", "--as", AGENT2).exit_code == 0
    assert ticket(settings)["status"] == "resolved" and running(settings) == []

    result = cli(settings, "spam", "SUP-2")
    assert result.exit_code == 0, result.output
    spam = ticket(settings, "SUP-2")
    assert (spam["status"], spam["category"], spam["spam"]) == ("closed", "spam", 1)

    assert run_once(settings, TUESDAY_10 + timedelta(minutes=2))
    customer_mail = [m for m in inbox(mailenv, "customer") if m["Auto-Submitted"] is None]
    assert customer_mail == []  # none of this reached the customer


def test_unknown_tickets_and_agents_are_refused_with_the_list(tmp_path: Path, mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    assert run_once(settings, TUESDAY_10)
    result = cli(settings, "resolve", "SUP-1", "SUP-99")
    assert result.exit_code == 1 and "No ticket SUP-99." in result.output
    assert ticket(settings)["status"] == "resolved"  # the ticket that exists was resolved
    result = cli(settings, "assign", "SUP-1", "nobody")
    assert result.exit_code == 2 and AGENT in result.output and AGENT2 in result.output


def test_a_resolved_ticket_closes_after_close_after_and_a_reply_then_starts_a_new_one(tmp_path: Path,
                                                                                      mailenv: Any) -> None:
    settings = routed_settings(tmp_path, mailenv)
    mailenv.dovecot.append("support", mail(subject="Where is my parcel?"))
    assert run_once(settings, TUESDAY_10)
    store = Store(settings.database)
    try:
        from inboxd.model import TicketStatus
        from inboxd.routing.assign import Routing
        from inboxd.stages.actions import TicketActions

        TicketActions(settings, store, Routing(settings)).set_status("SUP-1", TicketStatus.RESOLVED, AGENT,
                                                                     TUESDAY_10 + timedelta(hours=1))
    finally:
        store.close()
    assert run_once(settings, TUESDAY_10 + timedelta(days=6))
    assert ticket(settings)["status"] == "resolved"  # not yet: close_after is 7 days
    assert run_once(settings, TUESDAY_10 + timedelta(days=8))
    assert ticket(settings)["status"] == "closed"
    assert ("status_closed", "inboxd") in [(k, a) for k, a, _ in events(settings)]

    mailenv.dovecot.append("support", mail(subject="Re: [SUP-1] Where is my parcel?", body="It came back!"))
    assert run_once(settings, TUESDAY_10 + timedelta(days=9))
    second = ticket(settings, "SUP-2")
    assert (second["requester"], second["follow_up_of"], second["status"]) == (CUSTOMER, "SUP-1", "new")
    assert ticket(settings)["status"] == "closed"
