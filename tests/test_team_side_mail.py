"""Issue 11, items 5 and 6, end to end against the real Dovecot and SMTP server: mail from the team
side (a watcher answering a notification, an agent correcting a rejected draft) is never customer
mail, and the notifications of a ticket thread and say which answer is due now."""

from __future__ import annotations

from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from test_agent_replies_e2e import (
    AGENT,
    ANSWER,
    MANAGER,
    ORIGINAL_ID,
    ROUTES_WITH_WATCHER,
    SECRET,
    TUESDAY_10,
    agent_reply,
    agent_settings,
    answer_ticket,
    answers,
    event_kinds,
    inbox,
    query,
    start_ticket,
    text_of,
    ticket,
)

from inboxd.reply.notify import reply_address, reply_token
from inboxd.sla.businesstime import format_due

from helpers import CUSTOMER, SUPPORT, mail, run_once, tickets

pytestmark = pytest.mark.integration
SLA = '\n[sla.policies.standard]\nfirst_response = "4h"\nnext_response = "2h"\nresolution = "2d"\n'


def internal_ids(settings: Any) -> set[str]:
    return {r["message_id"] for r in query(settings, "SELECT message_id FROM outbox WHERE kind NOT IN "
                                                     "('ack', 'reply')")}


def references_of(msg: EmailMessage) -> list[str]:
    return str(msg["References"] or "").split()


# --- 5. watchers and rejected commands ------------------------------------------------------


def test_a_watchers_reply_is_an_internal_comment_and_the_answer_threads_on_the_customer(
        tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, routes=ROUTES_WITH_WATCHER)
    note = start_ticket(settings, mailenv)
    [watcher_copy] = inbox(mailenv, "manager")
    clocks_before = query(settings, "SELECT kind, state FROM sla_timers ORDER BY id")

    # the manager (a watcher, not an agent) answers the notification from their mail client
    remark = "This customer ordered twice before; please check the first parcel too."
    answer_ticket(settings, mailenv, agent_reply(watcher_copy, remark, sender=MANAGER, name="Mia Manager"))

    [row] = query(settings, "SELECT * FROM messages WHERE from_addr=?", (MANAGER,))
    assert (row["kind"], row["direction"], row["ticket_id"]) == ("note", "internal", "SUP-1")
    assert remark in row["body"] and "wrote:" not in row["body"]  # the quoted notification is not kept
    assert query(settings, "SELECT * FROM messages WHERE kind='customer' AND from_addr<>?", (CUSTOMER,)) == []
    assert len(tickets(settings)) == 1 and "team_comment" in event_kinds(settings)
    assert query(settings, "SELECT kind, state FROM sla_timers ORDER BY id") == clocks_before  # no clock moved
    assert ticket(settings)["status"] == "new"
    # the owner is told of a note, not that "the customer wrote again"; the watcher gets no acknowledgement
    [_, told] = inbox(mailenv, "agent")
    assert told["Subject"] == "[SUP-1] Note from Mia Manager" and remark in text_of(told)
    assert "wrote again" not in text_of(told)
    assert len(inbox(mailenv, "manager")) == 1
    assert answers(mailenv) == []

    answer_ticket(settings, mailenv, agent_reply(note))  # Alice's real answer
    [answer] = answers(mailenv)
    assert answer["In-Reply-To"] == ORIGINAL_ID  # threads on the customer's own mail
    assert not set(references_of(answer)) & internal_ids(settings)
    assert row["message_id"] not in str(answer["References"])


def test_an_answer_never_references_internal_mail_the_customer_quoted(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    # the customer's follow-up names a notification in References (it was forwarded to them, say)
    follow_up = mail(subject="Re: Order 1042 never arrived", body="Any news?", message_id="<news@example.com>",
                     in_reply_to=ORIGINAL_ID, date=TUESDAY_10)
    follow_up = follow_up.replace(f"References: {ORIGINAL_ID}".encode(),
                                  f"References: {note['Message-ID']} {ORIGINAL_ID}".encode())
    answer_ticket(settings, mailenv, follow_up)
    answer_ticket(settings, mailenv, agent_reply(note))

    [answer] = answers(mailenv)
    assert answer["In-Reply-To"] == "<news@example.com>"
    assert references_of(answer) == [ORIGINAL_ID, "<news@example.com>"]


def test_a_rejected_draft_comes_back_with_a_token_and_the_corrected_reply_is_relayed(
        tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, f"#priorty high\n\n{ANSWER}"))  # a typo
    assert answers(mailenv) == []

    [notice] = [m for m in inbox(mailenv, "agent") if "check your commands" in m["Subject"]]
    assert notice["Reply-To"] == reply_address(SUPPORT, "SUP-1", reply_token(SECRET, "SUP-1", AGENT))
    body = text_of(notice)
    assert "----- your draft, as you wrote it -----\n#priorty high\n\nHello Chen," in body  # nothing lost
    assert "tracking number TW123456" in body
    assert notice["In-Reply-To"] == note["Message-ID"]  # threads with the ticket's notification

    # the agent answers the notice with the corrected text (the notice is quoted below it)
    answer_ticket(settings, mailenv, agent_reply(notice, f"#priority high\n\n{ANSWER}"))

    [answer] = answers(mailenv)
    assert "tracking number TW123456" in text_of(answer) and "#priority" not in text_of(answer)
    assert ticket(settings)["priority"] == "high"
    assert len(tickets(settings)) == 1  # no ticket from the agent's own mail
    assert len(inbox(mailenv, "customer")) == 2  # the acknowledgement and the answer, nothing else
    assert [m for m in inbox(mailenv, "agent") if m["Auto-Submitted"] is None] == []  # no ack to the agent


def test_agent_mail_that_fails_the_proof_gets_no_acknowledgement(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    msg = mail(sender=AGENT, name="Alice Agent", subject="Re: the refund we talked about",
               body="Here is the corrected text for the customer.", date=TUESDAY_10)
    answer_ticket(settings, mailenv, msg)

    [row] = tickets(settings)
    assert "suspicious_sender" in event_kinds(settings, row["ticket_id"])
    assert "ack_suppressed" in event_kinds(settings, row["ticket_id"])
    assert query(settings, "SELECT * FROM outbox WHERE kind='ack'") == []
    assert {m["X-Inboxd-Ticket"] for m in inbox(mailenv, "agent")} <= {row["ticket_id"]}  # a notification at most
    assert not [m for m in inbox(mailenv, "agent") if m["Reply-To"] is None]


# --- 6. notifications that stay true --------------------------------------------------------


def test_notifications_of_a_ticket_thread_and_show_the_running_clock(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, sla=SLA)
    first = start_ticket(settings, mailenv)
    assert first["In-Reply-To"] is None
    [frt] = query(settings, "SELECT due_at FROM sla_timers WHERE kind='first_response'")
    first_due = format_due(datetime.fromisoformat(frt["due_at"]), settings.support.timezone, "en")
    assert f"Reply due: {first_due} (first response)" in text_of(first)

    answer_ticket(settings, mailenv, agent_reply(first))  # first response given
    later = TUESDAY_10 + timedelta(hours=1)
    mailenv.dovecot.append("support", mail(subject="Re: Order 1042 never arrived", body="It is still not here.",
                                           in_reply_to=ORIGINAL_ID, date=later))
    assert run_once(settings, later)

    [_, second] = [m for m in inbox(mailenv, "agent") if "[SUP-1]" in m["Subject"]]
    assert second["In-Reply-To"] == first["Message-ID"] and first["Message-ID"] in references_of(second)
    [nrt] = query(settings, "SELECT due_at FROM sla_timers WHERE kind='next_response'")
    next_due = format_due(datetime.fromisoformat(nrt["due_at"]), settings.support.timezone, "en")
    assert f"Reply due: {next_due} (next response)" in text_of(second)
    assert first_due not in text_of(second)


def test_a_notification_says_the_customer_reopened_a_resolved_ticket(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, sla=SLA)
    first = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(first, f"#close\n{ANSWER}"))
    assert ticket(settings)["status"] == "resolved"

    answer_ticket(settings, mailenv, mail(subject="Re: Order 1042 never arrived", body="The parcel is empty!",
                                          in_reply_to=ORIGINAL_ID, date=TUESDAY_10))
    [_, second] = [m for m in inbox(mailenv, "agent") if "[SUP-1]" in m["Subject"]]
    body = text_of(second)
    assert "reopened the ticket, which was resolved" in body and "Status:    open" in body
    assert "(next response)" in body
    assert second["In-Reply-To"] == first["Message-ID"]
