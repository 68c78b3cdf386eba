"""Agent replies end to end: an agent answers the notification from their own mail client, the answer
reaches the customer from the support address. Real Dovecot in, real SMTP out, mailboxes read back."""

from __future__ import annotations

import html
import json
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from inboxd.config import Settings, load_settings
from inboxd.reply.notify import reply_address, reply_token
from inboxd.store.sqlite import Store

from helpers import CUSTOMER, SUPPORT, mail, parse, run_once, tickets, write_config

pytestmark = pytest.mark.integration

TAIPEI = ZoneInfo("Asia/Taipei")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TAIPEI)
SECRET = "test-secret"
AGENT, AGENT2, LEAD, MANAGER = (f"{u}@example.com" for u in ("agent", "agent2", "lead", "manager"))
CUSTOMER2 = "customer2@example.com"
ORIGINAL_ID = "<order-1042@example.com>"
SUBJECT = "Order 1042 never arrived"
CUSTOMER_BODY = "My order 1042 has not arrived yet. Please help."
ANSWER = "Hello Chen,\n\nyour parcel left our warehouse today; tracking number TW123456.\n\nBest regards"

AGENTS = f"""\
[[agent]]
name = "Alice Agent"
email = "{AGENT}"

[[agent]]
name = "Bob Agent"
email = "{AGENT2}"

[[agent]]
name = "Lena Lead"
email = "{LEAD}"

[[team]]
name = "support"
members = ["{AGENT}", "{AGENT2}"]
lead = "{LEAD}"
strategy = "least_open"
"""

ROUTES = '[[route]]\nname = "Everyone"\nteam = "support"\n'
ROUTES_WITH_WATCHER = f'[[route]]\nname = "Everyone"\nteam = "support"\ncc = ["{MANAGER}"]\n'


# --- set-up and mail helpers ----------------------------------------------------------------


def agent_settings(tmp_path: Path, mailenv: Any, *, routes: str = ROUTES, trusted: tuple[str, ...] = (),
                   sent_folder: bool = False, sla: str = "") -> Settings:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "routing.toml").write_text(routes, encoding="utf-8")
    (tmp_path / "agents.toml").write_text(AGENTS, encoding="utf-8")
    extra = f"""
[classify]
rules_dir = "{rules}"

[routing]
agents = "{tmp_path / 'agents.toml'}"
reply_secret = "{SECRET}"
trusted_auth_servers = {json.dumps(list(trusted))}
{sla}"""
    imap = ""
    if sent_folder:
        imap = 'sent_folder = "Sent"'
        with mailenv.dovecot.client("support") as client:
            client.create_folder("Sent")
    return load_settings(write_config(tmp_path, mailenv, imap=imap, extra=extra))


def inbox(mailenv: Any, user: str) -> list[EmailMessage]:
    return [parse(raw) for raw in mailenv.dovecot.messages(user)]  # type: ignore[misc]


def text_of(msg: EmailMessage) -> str:
    return msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def answers(mailenv: Any, user: str = "customer") -> list[EmailMessage]:
    """What a customer received apart from the automatic acknowledgement."""
    return [m for m in inbox(mailenv, user) if m["Auto-Submitted"] is None]


def notifications(mailenv: Any, user: str = "agent") -> list[EmailMessage]:
    return [m for m in inbox(mailenv, user) if m["Reply-To"] is not None]


def start_ticket(settings: Settings, mailenv: Any, *, cc: str | None = None) -> EmailMessage:
    """The customer writes; returns the owner's (agent@) notification for SUP-1."""
    mailenv.dovecot.append("support", mail(subject=SUBJECT, body=CUSTOMER_BODY, message_id=ORIGINAL_ID, cc=cc))
    assert run_once(settings, TUESDAY_10)
    [ticket] = tickets(settings)
    assert (ticket["ticket_id"], ticket["owner"], ticket["status"]) == ("SUP-1", AGENT, "new")
    [note] = notifications(mailenv, "agent")
    return note


def agent_reply(note: EmailMessage, answer: str = ANSWER, *, sender: str = AGENT, name: str = "Alice Agent",
                to: str | None = None, signature: bool = True,
                attachment: tuple[str, bytes] | None = None) -> bytes:
    """What the agent's mail client sends when they answer the notification: the answer on top, the
    signature, then the quoted notification."""
    quoted = "\n".join(f"> {line}".rstrip() for line in text_of(note).splitlines())
    body = answer + "\n\n" + ("-- \nAlice\n\n" if signature else "") + \
        f"On Tue, Nov 24, 2026 at 10:00 AM Example Support <{SUPPORT}> wrote:\n\n{quoted}\n"
    msg = EmailMessage()
    msg["From"] = f"{name} <{sender}>"
    msg["To"] = to or str(note["Reply-To"])
    msg["Subject"] = f"Re: {note['Subject']}"
    msg["Date"] = format_datetime(TUESDAY_10)
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = note["Message-ID"]
    msg["References"] = note["Message-ID"]
    msg.set_content(body)
    if attachment:
        msg.add_attachment(attachment[1], maintype="application", subtype="pdf", filename=attachment[0])
    return msg.as_bytes()


def answer_ticket(settings: Settings, mailenv: Any, raw: bytes) -> None:
    mailenv.dovecot.append("support", raw)
    assert run_once(settings, TUESDAY_10)


def query(settings: Settings, sql: str, args: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    store = Store(settings.database)
    try:
        return store.query(sql, args)
    finally:
        store.close()


def ticket(settings: Settings, ticket_id: str = "SUP-1") -> dict[str, Any]:
    [row] = query(settings, "SELECT * FROM tickets WHERE ticket_id=?", (ticket_id,))
    return row


def tags(settings: Settings, ticket_id: str = "SUP-1") -> list[str]:
    return [r["tag"] for r in query(settings, "SELECT tag FROM ticket_tags WHERE ticket_id=? ORDER BY tag",
                                    (ticket_id,))]


def event_kinds(settings: Settings, ticket_id: str = "SUP-1") -> list[str]:
    return [r["kind"] for r in query(settings, "SELECT kind FROM events WHERE ticket_id=? ORDER BY id", (ticket_id,))]


INTERNAL_BITS = (AGENT.encode(), AGENT2.encode(), LEAD.encode(), MANAGER.encode(), b"support+", b"Category:",
                 b"Priority:", b"Tags:", b"assigned to you")


def assert_nothing_internal(raw: bytes) -> None:
    for bit in INTERNAL_BITS:
        assert bit not in raw, bit


# --- 1. the answer reaches the customer -----------------------------------------------------


def test_agent_reply_is_relayed_and_threaded_in_the_customers_mailbox(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    assert note["Reply-To"] == f"support+SUP-1.{reply_token(SECRET, 'SUP-1', AGENT)}@example.com"

    answer_ticket(settings, mailenv, agent_reply(note))

    [raw] = [r for r in mailenv.dovecot.messages("customer") if parse(r)["Auto-Submitted"] is None]
    msg = parse(raw)
    [sender] = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Alice Agent (Example Support)", SUPPORT)
    assert "[SUP-1]" in msg["Subject"] and SUBJECT in msg["Subject"] and msg["Subject"].startswith("Re: ")
    assert msg["In-Reply-To"] == ORIGINAL_ID
    assert ORIGINAL_ID in msg["References"].split()
    assert [a.addr_spec for a in msg["To"].addresses] == [CUSTOMER] and msg["Cc"] is None
    assert msg["Auto-Submitted"] is None  # a person's answer, not an automatic reply
    assert text_of(msg).strip() == ANSWER  # no quoted notification, no signature
    assert b"Alice\n" not in raw.replace(b"\r\n", b"\n") and b"wrote:" not in raw
    assert_nothing_internal(raw)
    assert CUSTOMER_BODY.encode() not in raw

    [sent] = [c for c in mailenv.smtp.messages if c.message["Message-ID"] == msg["Message-ID"]]
    assert sent.rcpt_tos == [CUSTOMER] and sent.mail_from == SUPPORT

    t = ticket(settings)
    assert t["status"] == "open" and t["first_response_at"] is not None and t["owner"] == AGENT
    [out] = query(settings, "SELECT * FROM messages WHERE kind='reply'")
    assert out["message_id"] == msg["Message-ID"] and out["direction"] == "out" and out["body"] == ANSWER
    assert json.loads(out["in_reply_to"]) == [ORIGINAL_ID]
    [stored] = query(settings, "SELECT * FROM messages WHERE kind='agent'")
    assert stored["from_addr"] == AGENT and stored["direction"] == "in"
    assert "answered" in event_kinds(settings)
    # the agent gets nothing back (no explanation, no second notification)
    assert len(inbox(mailenv, "agent")) == 1


def test_attachment_added_by_the_agent_reaches_the_customer(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    pdf = b"%PDF-1.4\n% shipping label for order 1042\n" + bytes(range(256))

    answer_ticket(settings, mailenv, agent_reply(note, attachment=("label-1042.pdf", pdf)))

    [msg] = answers(mailenv)
    [part] = list(msg.iter_attachments())
    assert part.get_filename() == "label-1042.pdf" and part.get_content_type() == "application/pdf"
    assert part.get_content() == pdf
    assert text_of(msg).strip() == ANSWER


# --- 2. commands ----------------------------------------------------------------------------


@pytest.mark.parametrize("commands, field, value", [
    ("#close", "status", "resolved"),
    ("#resolve", "status", "resolved"),
    ("#pending", "status", "pending"),
    ("#priority urgent", "priority", "urgent"),
    ("#category refund", "category", "refund"),
])
def test_commands_only_reply_changes_the_ticket_and_sends_nothing(tmp_path: Path, mailenv: Any, commands: str,
                                                                  field: str, value: str) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    sent_before = len(mailenv.smtp.messages)

    answer_ticket(settings, mailenv, agent_reply(note, commands, signature=False))

    assert ticket(settings)[field] == value
    assert answers(mailenv) == []
    assert len(mailenv.smtp.messages) == sent_before  # nothing to anybody
    assert ticket(settings)["first_response_at"] is None  # no answer was sent
    if field == "category":
        [row] = query(settings, "SELECT * FROM corrections WHERE field='category'")
        assert (row["new_value"], row["actor"]) == ("refund", AGENT) and CUSTOMER_BODY in row["text"]


def test_open_reopens_a_resolved_ticket(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, "#close", signature=False))
    assert ticket(settings)["status"] == "resolved"
    answer_ticket(settings, mailenv, agent_reply(note, "#open", signature=False))
    assert ticket(settings)["status"] == "open"
    assert {"status_resolved", "status_open"} <= set(event_kinds(settings))
    assert answers(mailenv) == []


def test_tag_and_untag_are_applied_and_kept_as_corrections(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    before = set(tags(settings))  # what the classifier gave, e.g. needs-triage
    answer_ticket(settings, mailenv, agent_reply(note, "#tag reseller\n#tag lost-parcel", signature=False))
    assert set(tags(settings)) == before | {"lost-parcel", "reseller"}
    answer_ticket(settings, mailenv, agent_reply(note, "#untag reseller", signature=False))
    assert set(tags(settings)) == before | {"lost-parcel"}
    rows = query(settings, "SELECT field, old_value, new_value, actor FROM corrections ORDER BY id")
    assert [(r["field"], r["old_value"], r["new_value"], r["actor"]) for r in rows] == [
        ("tag", None, "reseller", AGENT), ("tag", None, "lost-parcel", AGENT), ("tag", "reseller", None, AGENT)]
    assert answers(mailenv) == []


def test_commands_with_an_answer_apply_and_relay_only_the_answer(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, f"#pending\n#priority high\n#tag waiting\n\n{ANSWER}"))
    t = ticket(settings)
    assert (t["status"], t["priority"]) == ("pending", "high") and "waiting" in tags(settings)
    assert t["first_response_at"] is not None
    [msg] = answers(mailenv)
    assert text_of(msg).strip() == ANSWER
    assert b"#pending" not in mailenv.dovecot.messages("customer")[-1]


def test_assign_gives_the_ticket_to_another_agent_who_is_notified(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    assert notifications(mailenv, "agent2") == []

    answer_ticket(settings, mailenv, agent_reply(note, "#assign Bob Agent", signature=False))

    assert ticket(settings)["owner"] == AGENT2
    [bob] = notifications(mailenv, "agent2")
    assert "[SUP-1]" in bob["Subject"]
    assert bob["Reply-To"] == reply_address(SUPPORT, "SUP-1", reply_token(SECRET, "SUP-1", AGENT2))
    assert "assigned by Alice Agent" in text_of(bob)
    assert answers(mailenv) == []
    # Bob can now answer with his own token
    answer_ticket(settings, mailenv, agent_reply(bob, "Bob here: it ships today.", sender=AGENT2, name="Bob Agent"))
    [msg] = answers(mailenv)
    assert msg["From"].addresses[0].display_name == "Bob Agent (Example Support)"
    assert text_of(msg).strip() == "Bob here: it ships today."


def test_assign_notification_shows_the_customers_mail(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, "#assign Bob Agent", signature=False))
    [bob] = notifications(mailenv, "agent2")
    body = text_of(bob)  # it shows "----- Alice Agent wrote ... -----" and her "#assign Bob Agent" mail
    assert "\n----- Chen Mei wrote (" in body and "----- Alice Agent wrote" not in body and "#assign" not in body


@pytest.mark.parametrize("commands, problem", [
    ("#frobnicate", "unknown command"),
    ("#priority sky", "unknown priority"),
    ("#close\n#assign Nobody Here", "no agent called 'Nobody Here'"),
])
def test_bad_command_explains_to_the_agent_and_changes_nothing(tmp_path: Path, mailenv: Any, commands: str,
                                                               problem: str) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    before = ticket(settings)
    tags_before = tags(settings)

    answer_ticket(settings, mailenv, agent_reply(note, f"{commands}\n\n{ANSWER}"))

    assert answers(mailenv) == []  # a typo must never send anything to the customer
    [explanation] = [m for m in inbox(mailenv, "agent") if "check your commands" in m["Subject"]]
    assert "[SUP-1]" in explanation["Subject"]
    body = text_of(explanation)
    assert problem in body and "Nothing was sent to the customer" in body and "#priority LEVEL" in body
    after = ticket(settings)
    for field in ("status", "priority", "category", "owner", "first_response_at"):
        assert after[field] == before[field], field
    assert tags(settings) == tags_before
    assert query(settings, "SELECT * FROM corrections") == []
    assert "agent_commands_rejected" in event_kinds(settings)


# --- 3. internal notes ----------------------------------------------------------------------


def test_note_is_internal_and_copied_to_the_other_people_on_the_ticket(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, routes=ROUTES_WITH_WATCHER)
    note = start_ticket(settings, mailenv)
    assert len(inbox(mailenv, "manager")) == 1  # the watcher got the notification as cc
    customer_before = mailenv.dovecot.messages("customer")

    remark = "Customer is a reseller; check the contract before refunding."
    answer_ticket(settings, mailenv, agent_reply(note, f"#note\n{remark}"))

    assert mailenv.dovecot.messages("customer") == customer_before
    [stored] = query(settings, "SELECT * FROM messages WHERE kind='note'")
    assert (stored["direction"], stored["from_addr"], stored["body"]) == ("internal", AGENT, remark)
    [copy] = inbox(mailenv, "manager")[1:]
    assert copy["Subject"] == "[SUP-1] Note from Alice Agent" and remark in text_of(copy)
    assert len(inbox(mailenv, "agent")) == 1  # the writer gets no copy of their own note
    assert ticket(settings)["first_response_at"] is None  # a note is not an answer

    # Bob (not the owner) adds a note with his own token: the owner and the watcher get it
    bob_note = agent_reply(note, "#note\nI spoke to them by phone.", sender=AGENT2, name="Bob Agent",
                           to=reply_address(SUPPORT, "SUP-1", reply_token(SECRET, "SUP-1", AGENT2)))
    answer_ticket(settings, mailenv, bob_note)
    [to_owner] = inbox(mailenv, "agent")[1:]
    assert to_owner["Subject"] == "[SUP-1] Note from Bob Agent" and "I spoke to them by phone." in text_of(to_owner)
    assert len(inbox(mailenv, "manager")) == 3 and inbox(mailenv, "agent2") == []
    assert mailenv.dovecot.messages("customer") == customer_before


# --- 4-6. proof of identity -----------------------------------------------------------------


def test_agent_from_without_token_or_authentication_is_customer_mail(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    forged = agent_reply(note, f"#close\n\n{ANSWER}", to=SUPPORT)  # not the Reply-To: no token

    answer_ticket(settings, mailenv, forged)

    assert answers(mailenv) == []
    assert ticket(settings)["status"] != "resolved"  # the command was not executed
    assert query(settings, "SELECT * FROM messages WHERE kind IN ('agent', 'reply')") == []
    [row] = query(settings, "SELECT * FROM messages WHERE from_addr=?", (AGENT,))
    assert (row["kind"], row["ticket_id"]) == ("customer", "SUP-1")  # joined by its In-Reply-To, as customer mail
    assert "suspicious" in tags(settings)
    assert "suspicious_sender" in event_kinds(settings, row["ticket_id"])


def test_valid_token_from_the_wrong_agent_is_rejected(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    # Bob answers Alice's notification (forwarded to him, say): the token was made for Alice
    answer_ticket(settings, mailenv, agent_reply(note, f"#close\n\n{ANSWER}", sender=AGENT2, name="Bob Agent"))

    assert answers(mailenv) == []
    assert ticket(settings)["status"] != "resolved"
    [row] = query(settings, "SELECT * FROM messages WHERE from_addr=?", (AGENT2,))
    # the team side answering a notification is an internal comment for the owner, never customer mail
    assert (row["kind"], row["direction"], row["ticket_id"]) == ("note", "internal", "SUP-1")
    assert "team_comment" in event_kinds(settings)


@pytest.mark.parametrize("sender, name", [(AGENT2, "Bob Agent"),  # the wrong agent
                                          (MANAGER, "Mia Manager")])  # a watcher who is not an agent
def test_a_reply_address_never_becomes_a_customer_cc(tmp_path: Path, mailenv: Any, sender: str, name: str) -> None:
    settings = agent_settings(tmp_path, mailenv, routes=ROUTES_WITH_WATCHER)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, "Looks like a lost parcel to me.", sender=sender, name=name))
    answer_ticket(settings, mailenv, agent_reply(note))  # Alice's real answer

    [msg] = answers(mailenv)
    raw = mailenv.dovecot.messages("customer")[-1]
    assert msg["Cc"] is None  # it is support+sup-1.<Alice's token>@example.com
    assert b"support+" not in raw and reply_token(SECRET, "SUP-1", AGENT).encode() not in raw
    assert query(settings, "SELECT address FROM participants WHERE role='cc'") == []


def fresh_agent_mail(authentication: str) -> bytes:
    """A new mail (not a reply to the notification) from Alice, with [SUP-1] in the subject."""
    msg = EmailMessage()
    msg["Authentication-Results"] = authentication
    msg["From"] = f"Alice Agent <{AGENT}>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"[SUP-1] {SUBJECT}"
    msg["Date"] = format_datetime(TUESDAY_10)
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg.set_content(f"{ANSWER}\n\n-- \nAlice\n")
    return msg.as_bytes()


def test_trusted_dkim_pass_proves_the_agent_and_untrusted_does_not(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, trusted=("mx.example.com",))
    start_ticket(settings, mailenv)

    answer_ticket(settings, mailenv, fresh_agent_mail("mx.evil.example; dkim=pass header.d=example.com"))
    assert answers(mailenv) == []
    [row] = query(settings, "SELECT * FROM messages WHERE from_addr=?", (AGENT,))
    assert row["kind"] == "customer" and "suspicious" in tags(settings, row["ticket_id"])

    answer_ticket(settings, mailenv, fresh_agent_mail("mx.example.com; dkim=pass header.d=example.com"))
    [msg] = answers(mailenv)
    assert msg["In-Reply-To"] == ORIGINAL_ID and "[SUP-1]" in msg["Subject"]
    assert text_of(msg).strip() == ANSWER
    assert msg["From"].addresses[0].display_name == "Alice Agent (Example Support)"
    assert_nothing_internal(mailenv.dovecot.messages("customer")[-1])
    assert ticket(settings)["first_response_at"] is not None
    assert "suspicious" not in tags(settings, "SUP-1")


# --- 7. answers written from the shared account ---------------------------------------------


def test_sent_folder_answer_is_recorded_once_and_never_sent_again(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, sent_folder=True)
    start_ticket(settings, mailenv)
    [ack] = mailenv.dovecot.messages("customer")
    ack_id = parse(ack)["Message-ID"]
    assert query(settings, "SELECT 1 FROM outbox WHERE message_id=?", (ack_id,))
    sent_before = len(mailenv.smtp.messages)

    answer = mail(sender=SUPPORT, name="Example Support", to=CUSTOMER, subject=f"Re: [SUP-1] {SUBJECT}",
                  body="We found your parcel.\n\nOn Tue, Chen Mei wrote:\n> My order 1042 has not arrived yet.",
                  in_reply_to=ORIGINAL_ID, message_id="<answer-from-webmail@example.com>")
    mailenv.dovecot.append("support", answer, folder="Sent")
    mailenv.dovecot.append("support", ack, folder="Sent")  # the server kept a copy of inboxd's own mail
    assert run_once(settings, TUESDAY_10)

    [row] = query(settings, "SELECT * FROM messages WHERE kind='sent_folder'")
    assert (row["ticket_id"], row["direction"], row["message_id"]) == ("SUP-1", "out",
                                                                        "<answer-from-webmail@example.com>")
    assert row["body"] == "We found your parcel."
    assert query(settings, "SELECT * FROM messages WHERE message_id=?", (ack_id,))[0]["kind"] == "ack"
    assert len(query(settings, "SELECT * FROM messages WHERE message_id=?", (ack_id,))) == 1
    t = ticket(settings)
    assert t["first_response_at"] is not None and t["status"] == "open"
    assert len(mailenv.smtp.messages) == sent_before  # recorded, not sent again
    assert len(mailenv.dovecot.messages("customer")) == 1

    # the same answer again (a second copy, then a run with nothing new): still recorded once
    mailenv.dovecot.append("support", answer, folder="Sent")
    assert run_once(settings, TUESDAY_10)
    assert run_once(settings, TUESDAY_10)
    assert len(query(settings, "SELECT * FROM messages WHERE kind='sent_folder'")) == 1
    assert len(mailenv.smtp.messages) == sent_before
    assert len(tickets(settings)) == 1


# --- 8. the customer answers back -----------------------------------------------------------


def test_customer_reply_after_pending_reopens_and_notifies_the_owner(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, f"#pending\n{ANSWER}\nCould you confirm your address?"))
    assert ticket(settings)["status"] == "pending"
    [relayed] = answers(mailenv)

    reply = mail(subject=f"Re: {relayed['Subject']}", body="Yes, it is 1 Main Street.\n\n> Could you confirm",
                 in_reply_to=relayed["Message-ID"])
    answer_ticket(settings, mailenv, reply)

    assert len(tickets(settings)) == 1
    assert ticket(settings)["status"] == "open"
    assert "customer_replied" in event_kinds(settings)
    [first, second] = notifications(mailenv, "agent")
    assert "the customer wrote again" in text_of(second) and "1 Main Street" in text_of(second)
    assert second["Reply-To"] == first["Reply-To"]
    assert len(answers(mailenv)) == 1  # no new acknowledgement or answer to the customer


# --- 9. cc participants ---------------------------------------------------------------------


def test_cc_participants_receive_the_answer_without_agent_addresses(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv, cc=f"Wang Wei <{CUSTOMER2}>")

    answer_ticket(settings, mailenv, agent_reply(note))

    [to_customer] = answers(mailenv, "customer")
    [to_colleague] = answers(mailenv, "customer2")
    assert to_customer["Message-ID"] == to_colleague["Message-ID"]
    assert [a.addr_spec for a in to_customer["To"].addresses] == [CUSTOMER]
    assert [a.addr_spec for a in to_customer["Cc"].addresses] == [CUSTOMER2]
    assert text_of(to_colleague).strip() == ANSWER
    for user in ("customer", "customer2"):
        assert_nothing_internal(mailenv.dovecot.messages(user)[-1])
    [sent] = [c for c in mailenv.smtp.messages if c.message["Message-ID"] == to_customer["Message-ID"]]
    assert sorted(sent.rcpt_tos) == sorted([CUSTOMER, CUSTOMER2])


def test_a_second_copy_of_the_same_agent_reply_is_not_relayed_twice(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    raw = agent_reply(note)
    mailenv.dovecot.append("support", raw)  # delivered for the Reply-To address ...
    mailenv.dovecot.append("support", raw)  # ... and once more (e.g. also sent to support@, or a re-delivery)
    assert run_once(settings, TUESDAY_10)
    assert len(answers(mailenv)) == 1


def test_sent_folder_forward_to_a_colleague_is_not_an_answer(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv, sent_folder=True)
    start_ticket(settings, mailenv)
    forward = mail(sender=SUPPORT, name="Example Support", to=AGENT2, subject=f"Fwd: [SUP-1] {SUBJECT}",
                   body=f"Bob, can you look at this one?\n\n---------- Forwarded message ---------\n{CUSTOMER_BODY}",
                   in_reply_to=ORIGINAL_ID)
    mailenv.dovecot.append("support", forward, folder="Sent")
    assert run_once(settings, TUESDAY_10)
    assert ticket(settings)["first_response_at"] is None


@pytest.mark.parametrize("gap", ["<br>", pytest.param("", id="no-gap")])
def test_html_reply_quoting_the_notification_leaks_nothing(tmp_path: Path, mailenv: Any, gap: str) -> None:
    """An HTML-only reply as Gmail writes it: the quote is a blockquote, so its text has no '>' marks."""
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    quoted = "<br>".join(html.escape(line) for line in text_of(note).splitlines())
    msg = EmailMessage()
    msg["From"] = f"Alice Agent <{AGENT}>"
    msg["To"] = str(note["Reply-To"])
    msg["Subject"] = f"Re: {note['Subject']}"
    msg["Message-ID"] = make_msgid(domain="example.com")
    msg["In-Reply-To"] = note["Message-ID"]
    msg.set_content(f"<html><body><div>您好，包裹今天已寄出。</div>{gap}<div class=\"gmail_quote\"><div class=\"gmail_attr\">"
                    f"Example Support &lt;{SUPPORT}&gt; 於 2026年11月24日 週二 上午10:00寫道：<br></div>"
                    f"<blockquote class=\"gmail_quote\">{quoted}</blockquote></div></body></html>", subtype="html")
    answer_ticket(settings, mailenv, msg.as_bytes())

    [answer] = answers(mailenv)
    assert text_of(answer).strip() == "您好，包裹今天已寄出。"
    assert_nothing_internal(mailenv.dovecot.messages("customer")[-1])


def test_a_relayed_answer_keeps_the_customers_display_name(tmp_path: Path, mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note))
    [raw] = [r for r in mailenv.dovecot.messages("customer") if parse(r)["Auto-Submitted"] is None]
    [to] = parse(raw)["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Chen Mei", CUSTOMER)  # as the customer signed their mail


def test_the_assignment_notification_is_built_after_every_command_of_the_mail(tmp_path: Path,
                                                                              mailenv: Any) -> None:
    settings = agent_settings(tmp_path, mailenv)
    note = start_ticket(settings, mailenv)
    answer_ticket(settings, mailenv, agent_reply(note, "#assign Bob Agent\n#priority high", signature=False))
    [bob] = notifications(mailenv, "agent2")
    assert "Priority:  high" in text_of(bob)  # not the "normal" it had when #assign was read
