"""Agent replies, unit level: commands, identity (reply token, Authentication-Results) and quote stripping."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from inboxd.reply.notify import parse_reply_address, reply_address, reply_token
from inboxd.routing.agents import Agent, Directory
from inboxd.sla.businesstime import BusinessCalendar
from inboxd.stages.agent_reply import attachments_of
from inboxd.triage.commands import Command, parse_commands
from inboxd.triage.identity import AgentMail, Forged, identify
from inboxd.triage.parse import parse_message
from inboxd.triage.quotes import reply_text
from inboxd.triage.rules import CATEGORIES, PRIORITIES

SUPPORT = "support@example.com"
SECRET = "test-secret"
AGENT, AGENT2 = "agent@example.com", "agent2@example.com"
TRUSTED = frozenset({"mx.example.com"})


def _agent(name: str, email: str) -> Agent:
    return Agent(name, email, ("support",), ("en",), BusinessCalendar.simple("Asia/Taipei"), None, 0)


DIRECTORY = Directory({AGENT: _agent("Alice Agent", AGENT), AGENT2: _agent("Bob Agent", AGENT2)}, {})


# --- commands -------------------------------------------------------------------------------


def cmds(text: str) -> list[tuple[str, str]]:
    return [(c.name, c.argument) for c in parse_commands(text, DIRECTORY).commands]


@pytest.mark.parametrize("line, expected", [
    ("#close", ("close", "")),
    ("#resolve", ("close", "")),
    ("#resolved", ("close", "")),
    ("#closed", ("close", "")),
    ("#pending", ("pending", "")),
    ("#open", ("open", "")),
    ("#reopen", ("open", "")),
    ("#note", ("note", "")),
    ("#CLOSE", ("close", "")),
    ("  #Pending  ", ("pending", "")),
    ("#assign Bob Agent", ("assign", "Bob Agent")),
    ("#assign bob agent", ("assign", "bob agent")),
    ("#assign agent2@example.com", ("assign", "agent2@example.com")),
    ("#tag vip", ("tag", "vip")),
    ("#tag follow-up_2", ("tag", "follow-up_2")),
    ("#untag vip", ("untag", "vip")),
    ("#category refund", ("category", "refund")),
    ("#priority urgent", ("priority", "urgent")),
])
def test_each_command_is_recognised(line: str, expected: tuple[str, str]) -> None:
    parsed = parse_commands(f"{line}\nThe answer.", DIRECTORY)
    assert parsed.errors == ()
    assert cmds(f"{line}\nThe answer.") == [expected]
    assert parsed.text == "The answer."


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_is_accepted(category: str) -> None:
    assert cmds(f"#category {category}") == [("category", category)]


@pytest.mark.parametrize("priority", PRIORITIES)
def test_every_priority_is_accepted(priority: str) -> None:
    assert cmds(f"#priority {priority}") == [("priority", priority)]


def test_commands_come_first_and_the_first_other_line_starts_the_answer() -> None:
    text = "\n\n#tag vip\n\n#priority high\nHello Chen,\n#close\nyour refund is on its way.\n"
    parsed = parse_commands(text, DIRECTORY)
    assert parsed.commands == (Command("tag", "vip"), Command("priority", "high"))
    assert parsed.text == "Hello Chen,\n#close\nyour refund is on its way."  # a later "#" line is answer text
    assert parsed.errors == () and not parsed.is_note


def test_commands_only_leave_no_text() -> None:
    parsed = parse_commands("#close\n#tag done\n\n", DIRECTORY)
    assert [c.name for c in parsed.commands] == ["close", "tag"] and parsed.text == "" and parsed.errors == ()


def test_note_marks_the_whole_reply_internal() -> None:
    parsed = parse_commands("#note\n#pending\nCustomer is a reseller, check the contract.", DIRECTORY)
    assert parsed.is_note and [c.name for c in parsed.commands] == ["note", "pending"]
    assert parsed.text == "Customer is a reseller, check the contract."


def test_a_number_sign_not_followed_by_a_word_is_text() -> None:
    parsed = parse_commands("#1 thing to know: it shipped.", DIRECTORY)
    assert parsed.commands == () and parsed.errors == () and parsed.text == "#1 thing to know: it shipped."


@pytest.mark.parametrize("line, problem", [
    ("#frobnicate", "unknown command"),
    ("#priority sky", "unknown priority"),
    ("#priority", "unknown priority"),
    ("#priority URGENT", "unknown priority"),  # arguments are exact, lower case
    ("#category refunds", "unknown category"),
    ("#category", "unknown category"),
    ("#assign", "say who"),
    ("#assign Nobody Here", "no agent called 'Nobody Here'"),
    ("#tag", "needs one word"),
    ("#tag two words", "needs one word"),
    ("#untag a,b", "needs one word"),
    ("#close now", "#close takes nothing after it"),
    ("#pending please", "#pending takes nothing after it"),
    ("#note to self", "#note takes nothing after it"),
    ("#close.", "#close takes nothing after it"),
])
def test_bad_commands_are_reported_with_the_line(line: str, problem: str) -> None:
    parsed = parse_commands(f"{line}\nHello there.", DIRECTORY)
    [error] = parsed.errors
    assert error.startswith(f"'{line.strip()}': ") and problem in error
    assert parsed.text == "Hello there."


def test_every_bad_command_is_reported_and_good_ones_are_still_parsed() -> None:
    parsed = parse_commands("#close\n#frobnicate\n#priority sky\nHi", DIRECTORY)
    assert len(parsed.errors) == 2 and "#frobnicate" in parsed.errors[0] and "#priority sky" in parsed.errors[1]
    assert parsed.commands == (Command("close"),)


# --- reply addresses and tokens -------------------------------------------------------------


def test_reply_address_round_trips() -> None:
    token = reply_token(SECRET, "SUP-12", AGENT)
    address = reply_address(SUPPORT, "SUP-12", token)
    assert address == f"support+SUP-12.{token}@example.com"
    assert parse_reply_address(address, SUPPORT) == ("SUP-12", token)
    assert parse_reply_address(address.upper(), SUPPORT) == ("SUP-12", token)  # mail servers may change case
    assert parse_reply_address(address.lower(), SUPPORT) == ("SUP-12", token)


@pytest.mark.parametrize("address", [
    SUPPORT, "support+SUP-12@example.com", "support+SUP-12.abc@other.example", "help+SUP-12.abc@example.com",
    "support+SUP-12.abc@example.com.evil", "support+SUP-12.abc189@example.com",  # 1, 8, 9 are not base32
])
def test_other_addresses_are_not_reply_addresses(address: str) -> None:
    assert parse_reply_address(address, SUPPORT) is None


def test_tokens_differ_by_ticket_agent_and_secret_but_not_by_case() -> None:
    token = reply_token(SECRET, "SUP-1", AGENT)
    assert len(token) == 10
    assert token == reply_token(SECRET, "SUP-1", AGENT.upper())
    assert len({token, reply_token(SECRET, "SUP-2", AGENT), reply_token(SECRET, "SUP-1", AGENT2),
                reply_token("other-secret", "SUP-1", AGENT)}) == 4


# --- identity -------------------------------------------------------------------------------


def raw_mail(*, sender: str = AGENT, to: str = SUPPORT, cc: str | None = None,
             headers: list[tuple[str, str]] | None = None) -> bytes:
    """An agent-looking mail; header values with CRLF go in as written (folded, as a server adds them)."""
    msg = EmailMessage()
    folded = b""
    msg["From"] = f"Someone <{sender}>"
    msg["To"] = to
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = "Re: [SUP-1] Order 1042"
    msg["Message-ID"] = "<reply-1@example.com>"
    for key, value in headers or []:
        if "\r\n" in value:
            folded += f"{key}: {value}\r\n".encode()
        else:
            msg[key] = value
    msg.set_content("Your parcel left the warehouse today.\n")
    return folded + msg.as_bytes()


def who(raw: bytes, trusted: frozenset[str] = TRUSTED) -> AgentMail | Forged | None:
    return identify(parse_message(raw), DIRECTORY, secret=SECRET, support_address=SUPPORT, trusted_servers=trusted)


def token_address(ticket: str = "SUP-1", agent: str = AGENT) -> str:
    return reply_address(SUPPORT, ticket, reply_token(SECRET, ticket, agent))


def test_token_in_to_proves_the_agent_and_names_the_ticket() -> None:
    found = who(raw_mail(to=f"Example Support <{token_address()}>"))
    assert isinstance(found, AgentMail)
    assert (found.agent.email, found.ticket_id, found.proof) == (AGENT, "SUP-1", "token")


@pytest.mark.parametrize("where", ["cc", "Delivered-To", "X-Original-To", "Envelope-To"])
def test_token_is_found_in_cc_and_delivery_headers(where: str) -> None:
    address = token_address("SUP-7")
    if where == "cc":
        raw = raw_mail(cc=address)
    else:
        raw = raw_mail(headers=[(where, f"<{address}>")])
    found = who(raw)
    assert isinstance(found, AgentMail) and found.ticket_id == "SUP-7"


def test_token_survives_a_server_that_changes_the_case_of_the_address() -> None:
    found = who(raw_mail(to=token_address().upper()))
    assert isinstance(found, AgentMail) and found.ticket_id == "SUP-1"


def test_agent_from_without_token_or_authentication_is_forged() -> None:
    found = who(raw_mail())
    assert found == Forged(AGENT, "no reply token and no trusted authentication")


def test_token_of_another_agent_is_forged() -> None:
    found = who(raw_mail(sender=AGENT2, to=token_address(agent=AGENT)))
    assert isinstance(found, Forged) and found.claimed == AGENT2 and "another agent" in found.reason


@pytest.mark.parametrize("address", [
    token_address("SUP-2"),  # the agent's token for SUP-2, with SUP-1 written in the address
    f"support+SUP-1.{reply_token('other-secret', 'SUP-1', AGENT)}@example.com",
    "support+SUP-1.aaaaaaaaaa@example.com",
])
def test_a_token_that_does_not_match_is_forged(address: str) -> None:
    if address == token_address("SUP-2"):
        address = address.replace("SUP-2", "SUP-1")
    assert isinstance(who(raw_mail(to=address)), Forged)


def test_a_customer_is_neither_agent_nor_forged_even_with_a_token() -> None:
    assert who(raw_mail(sender="customer@example.com", to=token_address())) is None
    assert who(raw_mail(sender="customer@example.com",
                        headers=[("Authentication-Results", "mx.example.com; dkim=pass header.d=example.com")])) is None


@pytest.mark.parametrize("value, proof", [
    ("mx.example.com; dkim=pass header.d=example.com", "dkim"),
    ("mx.example.com; dmarc=pass header.from=example.com", "dmarc"),
    ("MX.Example.COM; DKIM=Pass header.d=Example.COM", "dkim"),
    ("mx.example.com 1; dkim=pass header.d=example.com", "dkim"),  # with a version
    (("mx.example.com (Postfix);\r\n\tdkim=pass (2048-bit key) header.d=example.com "
      "header.i=@example.com header.s=s1 header.b=abcd"), "dkim"),
    ("mx.example.com; spf=pass smtp.mailfrom=example.com;\r\n dkim=pass header.d=\"example.com\"", "dkim"),
    ("mx.example.com; dkim=fail header.d=example.com; dmarc=pass (p=reject) header.from=example.com", "dmarc"),
    ("mx.example.com; dkim=pass header.d=evil.example; dkim=pass header.d=example.com", "dkim"),
])
def test_trusted_authentication_results_prove_the_agent(value: str, proof: str) -> None:
    found = who(raw_mail(headers=[("Authentication-Results", value)]))
    assert isinstance(found, AgentMail) and found.proof == proof and found.ticket_id is None


@pytest.mark.parametrize("value", [
    "mx.evil.example; dkim=pass header.d=example.com",  # anyone can write the header: untrusted authserv-id
    "evil; mx.example.com; dkim=pass header.d=example.com",
    "mx.example.com.evil.example; dkim=pass header.d=example.com",
    "mx.example.com; dkim=fail header.d=example.com",
    "mx.example.com; dkim=neutral header.d=example.com",
    "mx.example.com; dkim=passed header.d=example.com",
    "mx.example.com; dkim=pass header.d=evil.example",
    "mx.example.com; dkim=pass header.d=example.com.evil.example",
    "mx.example.com; dkim=pass header.d=notexample.com",
    "mx.example.com; dkim=pass header.d=mail.example.com",
    "mx.example.com; dkim=pass; header.d=example.com",  # the domain belongs to another result
    "mx.example.com; dmarc=pass header.from=evil.example",
    "mx.example.com; spf=pass smtp.mailfrom=example.com",  # SPF says nothing about the From line
    "mx.example.com; dkim-atps=pass header.d=example.com",
    "mx.example.com; none",
    "mx.example.com dkim=pass header.d=example.com",  # no ";": no results at all
])
def test_untrusted_or_failing_authentication_results_do_not(value: str) -> None:
    assert isinstance(who(raw_mail(headers=[("Authentication-Results", value)])), Forged)


def test_opendkim_comment_with_a_semicolon_still_proves_the_agent() -> None:
    value = ("mx.example.com; dkim=pass (2048-bit key; unprotected) header.d=example.com "
             "header.i=@example.com header.b=\"aBcD1234\"; dkim-atps=neutral")
    found = who(raw_mail(headers=[("Authentication-Results", value)]))
    assert isinstance(found, AgentMail) and found.proof == "dkim"


def test_a_trusted_pass_counts_only_from_a_trusted_server_among_several_headers() -> None:
    headers = [("Authentication-Results", "mx.example.com; dkim=fail header.d=example.com"),
               ("Authentication-Results", "relay.evil.example; dkim=pass header.d=example.com")]
    assert isinstance(who(raw_mail(headers=headers)), Forged)
    headers.append(("Authentication-Results", "mx.example.com; dmarc=pass header.from=example.com"))
    found = who(raw_mail(headers=headers))
    assert isinstance(found, AgentMail) and found.proof == "dmarc"


def test_without_trusted_servers_authentication_results_never_count() -> None:
    raw = raw_mail(headers=[("Authentication-Results", "mx.example.com; dkim=pass header.d=example.com")])
    assert isinstance(who(raw, trusted=frozenset()), Forged)


def test_a_token_wins_over_authentication_and_names_the_ticket() -> None:
    raw = raw_mail(to=token_address("SUP-3"),
                   headers=[("Authentication-Results", "mx.example.com; dkim=pass header.d=example.com")])
    found = who(raw)
    assert isinstance(found, AgentMail) and (found.proof, found.ticket_id) == ("token", "SUP-3")


def test_wrong_agent_token_is_still_accepted_with_trusted_authentication() -> None:
    # Authentication proves the sender; the misdirected token only loses its ticket.
    raw = raw_mail(sender=AGENT2, to=token_address(agent=AGENT),
                   headers=[("Authentication-Results", "mx.example.com; dkim=pass header.d=example.com")])
    found = who(raw)
    assert isinstance(found, AgentMail) and found.agent.email == AGENT2 and found.ticket_id is None


# --- quotes and signatures ------------------------------------------------------------------

NOTIFICATION_QUOTE = """\
> Ticket SUP-1 is assigned to you (new ticket).
> Reply to this mail to answer the customer; your reply is sent from the support address.
>
> Customer:  Chen Mei <customer@example.com>
> Category:  shipping
> Priority:  normal
> Tags:      -
>
> ----- Chen Mei wrote (2026-11-24T02:00 UTC) -----
>
> My order has not arrived yet."""

ANSWER = "Hello Chen,\n\nyour parcel left our warehouse today.\n\nBest regards"


@pytest.mark.parametrize("attribution", [
    "On Tue, Nov 24, 2026 at 10:00 AM Example Support <support@example.com> wrote:",
    "On 24 Nov 2026, at 10:00, Example Support <support@example.com> wrote:",
    "On Tue, Nov 24, 2026 at 10:00 AM Example Support <\nsupport@example.com> wrote:",  # wrapped by the client
    "於 2026年11月24日 週二 上午10:00，Example Support <support@example.com> 寫道：",
    "於 2026年11月24日 週二 上午10:00 Example Support <\nsupport@example.com> 寫道：",
    "Example Support <support@example.com> 於 2026年11月24日 週二 上午10:00 寫道：",
    "在 2026年11月24日 10:00，Example Support <support@example.com> 写道：",
    "2026年11月24日 上午10:00 Example Support 来信：",
    "Le mar. 24 nov. 2026 à 10:00, Example Support <support@example.com> a écrit :",
    "El mar, 24 nov 2026 a las 10:00, Example Support (<support@example.com>) escribió:",
    "-----Original Message-----",
    "-------- Forwarded Message --------",
    "-------- 原始郵件 --------",
])
def test_answer_above_an_attribution_and_quote_is_kept_alone(attribution: str) -> None:
    assert reply_text(f"{ANSWER}\n\n{attribution}\n{NOTIFICATION_QUOTE}\n") == ANSWER


def test_signature_is_cut_before_the_quote() -> None:
    text = f"{ANSWER}\n\n-- \nAlice Agent\nExample Ltd.\n\nOn Tue, Nov 24, 2026 Example Support wrote:\n" \
           f"{NOTIFICATION_QUOTE}\n"
    assert reply_text(text) == ANSWER
    assert reply_text(f"{ANSWER}\r\n-- \r\nAlice\r\n") == ANSWER
    assert reply_text(f"{ANSWER}\n--\nAlice\n") == ANSWER  # a client that trimmed the trailing space


@pytest.mark.parametrize("footer", ["Sent from my iPhone", "Get Outlook for iOS", "從我的 iPhone 傳送", "发自我的iPhone"])
def test_mobile_footers_end_the_reply(footer: str) -> None:
    assert reply_text(f"{ANSWER}\n\n{footer}\n\n> On 24 Nov 2026 Example Support wrote:\n{NOTIFICATION_QUOTE}") \
        == ANSWER


OUTLOOK_BLOCK = """\
From: Example Support <support@example.com>
Sent: Tuesday, November 24, 2026 10:00 AM
To: Alice Agent <agent@example.com>
Subject: [SUP-1] Order 1042

Ticket SUP-1 is assigned to you (new ticket).
Category:  shipping
Priority:  normal"""


def test_outlook_from_sent_block_is_cut() -> None:
    assert reply_text(f"{ANSWER}\n\n{OUTLOOK_BLOCK}\n") == ANSWER
    assert reply_text(f"{ANSWER}\n\n________________________________\n{OUTLOOK_BLOCK}\n") == ANSWER
    # Outlook on the web and Apple Mail order the fields differently
    assert reply_text(f"{ANSWER}\n\nFrom: Example Support <support@example.com>\nDate: Tuesday, 24 November 2026"
                      f"\nTo: agent@example.com\nSubject: [SUP-1] Order\n\nCategory:  shipping\n") == ANSWER


def test_chinese_outlook_header_block_is_cut() -> None:
    block = ("寄件者: Example Support <support@example.com>\n寄件日期: 2026年11月24日 上午 10:00\n"
             "收件者: Alice Agent <agent@example.com>\n主旨: [SUP-1] 訂單 1042\n\n分類: shipping")
    assert reply_text(f"您好，包裹今天已寄出。\n\n{block}\n") == "您好，包裹今天已寄出。"
    block = "发件人: Example Support <support@example.com>\n发送时间: 2026年11月24日 10:00\n收件人: Alice"
    assert reply_text(f"您好，包裹今天已寄出。\n\n{block}\n") == "您好，包裹今天已寄出。"


def test_a_from_line_without_the_rest_of_a_header_block_is_kept() -> None:
    text = "The invoice shows:\nFrom: Example Ltd, Taipei\nTotal: 1200 TWD"
    assert reply_text(text) == text


def test_inboxd_notification_marker_ends_the_reply_even_unquoted() -> None:
    text = f"{ANSWER}\n\n----- Chen Mei wrote (2026-11-24T02:00 UTC) -----\n\nMy order has not arrived yet.\n"
    assert reply_text(text) == ANSWER


def test_reply_below_the_quote_keeps_the_unquoted_lines() -> None:
    text = f"On Tue, Nov 24, 2026 Example Support wrote:\n{NOTIFICATION_QUOTE}\n\n{ANSWER}\n\n-- \nAlice\n"
    assert reply_text(text) == ANSWER


def test_commands_above_the_quote_survive_and_a_quote_alone_gives_nothing() -> None:
    assert reply_text(f"#close\n\nOn Tue, Nov 24, 2026 Example Support wrote:\n{NOTIFICATION_QUOTE}") == "#close"
    assert reply_text(NOTIFICATION_QUOTE) == ""
    assert reply_text("") == ""


def test_a_short_inline_quote_inside_the_answer_is_kept() -> None:
    text = "Hello,\n> my order has not arrived\nIt left today.\nTracking: 123.\nIt arrives Friday.\nRegards"
    assert reply_text(text) == text


@pytest.mark.parametrize("attribution", [
    "On Tue, Nov 24, 2026 at 10:00 AM Example Support <support@example.com> wrote:",
    "於 2026年11月24日 週二 上午10:00，Example Support <support@example.com> 寫道：",
])
def test_answer_directly_above_an_attribution_and_a_marked_quote(attribution: str) -> None:
    assert reply_text(f"Thanks, it shipped.\n{attribution}\n{NOTIFICATION_QUOTE}") == "Thanks, it shipped."


@pytest.mark.parametrize("attribution", [
    "On Tue, Nov 24, 2026 at 10:00 AM Example Support <support@example.com> wrote:",
    "Example Support <support@example.com> 於 2026年11月24日 週二 上午10:00寫道：",
])
def test_answer_directly_above_an_attribution_and_an_unmarked_quote(attribution: str) -> None:
    unmarked = NOTIFICATION_QUOTE.replace("> ", "").replace(">\n", "\n")
    assert reply_text(f"Thanks, it shipped.\n{attribution}\n{unmarked}") == "Thanks, it shipped."


def test_interleaved_reply_keeps_the_last_answer() -> None:
    text = "Hi,\n> where is my order?\nIt shipped on Monday.\n> and the refund?\nRefunded yesterday."
    assert "Refunded yesterday." in reply_text(text)


def test_german_attribution_is_cut() -> None:
    text = f"{ANSWER}\n\nAm Di., 24. Nov. 2026 um 10:00 Uhr schrieb Example Support <support@example.com>:\n" \
           f"{NOTIFICATION_QUOTE}\n"
    assert reply_text(text) == ANSWER


# --- attachments ----------------------------------------------------------------------------


def test_attachments_of_keeps_named_files_only() -> None:
    msg = EmailMessage()
    msg["From"] = AGENT
    msg.set_content("text")
    msg.add_alternative("<p>text</p>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 label", maintype="application", subtype="pdf", filename="label.pdf")
    inner = EmailMessage()
    inner["Subject"] = "forwarded"
    inner.set_content("inner")
    msg.add_attachment(inner, filename="fwd.eml")
    msg.add_attachment("收據".encode(), maintype="text", subtype="plain", filename="收據.txt")
    files = attachments_of(msg.as_bytes())
    assert [(f.filename, f.content_type, f.data) for f in files] == [
        ("label.pdf", "application/pdf", b"%PDF-1.4 label"), ("收據.txt", "text/plain", "收據".encode())]


TALON = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "talon-replies"


@pytest.mark.corpus
@pytest.mark.skipif(not TALON.is_dir(), reason="../shared/corpus is not present")
@pytest.mark.parametrize("name", sorted(p.name for p in TALON.glob("*.eml")) if TALON.is_dir() else [])
def test_replies_from_real_mail_clients_keep_only_the_answer(name: str) -> None:
    """Each client's reply in talon's fixtures says 'Hello' above (or below) the quote."""
    from inboxd.triage.parse import parse_message

    assert reply_text(parse_message((TALON / name).read_bytes()).text) == "Hello"
