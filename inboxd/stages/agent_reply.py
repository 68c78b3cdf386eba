"""Relay: an agent's reply, received by mail, becomes the support team's answer.

The agent answers the notification from their own mail client. What they wrote
(quotes and signature removed, commands applied) is sent to the customer and the
customer's cc from the support address, threaded under the customer's latest
mail. Nothing else is sent: not the notification, not internal notes, not tags
or priority, not other agents' addresses.
"""

from __future__ import annotations

import email
import email.policy
import logging
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, make_msgid

from inboxd.config import Settings
from inboxd.log import log
from inboxd.mail.compose import address, compose
from inboxd.model import OutgoingMail, ParsedMessage, RawState, TicketStatus
from inboxd.reply.notify import internal_mail, parse_reply_address, reply_address, reply_token
from inboxd.reply.render import one_line
from inboxd.routing.agents import Agent
from inboxd.routing.assign import Routing
from inboxd.sla import clocks as sla
from inboxd.stages.actions import TicketActions
from inboxd.store.base import iso
from inboxd.store.ledger import RawRow
from inboxd.store.messages import agent_mail_stored, reply_anchor
from inboxd.store.sqlite import Store
from inboxd.store.tickets import TicketRow
from inboxd.triage.commands import HELP, Command, parse_commands
from inboxd.triage.identity import AgentMail, Forged
from inboxd.triage.quotes import reply_text
from inboxd.triage.thread import subject_tags

logger = logging.getLogger("inboxd.relay")
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
STATUS_COMMANDS = {"close": TicketStatus.RESOLVED, "pending": TicketStatus.PENDING, "open": TicketStatus.OPEN}


@dataclass(frozen=True)
class FileAttachment:
    filename: str
    content_type: str
    data: bytes


def attachments_of(raw: bytes) -> list[FileAttachment]:
    """Files the agent attached (parts with a file name), up to a total size limit."""
    found: list[FileAttachment] = []
    total = 0
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    for part in msg.walk():
        name = part.get_filename()
        if part.is_multipart() or not name or part.get_content_type() == "message/rfc822":
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        total += len(data)
        if total > MAX_ATTACHMENT_BYTES:
            break
        found.append(FileAttachment(name, part.get_content_type(), data))
    return found


def build_reply(*, settings: Settings, agent: Agent, ticket: TicketRow, text: str, to: list[str],
                cc: list[str], in_reply_to: str | None, references: list[str], files: list[FileAttachment],
                now: datetime) -> OutgoingMail:
    support = settings.support
    ticket_id = ticket.ticket_id
    subject = ticket.subject if f"[{ticket_id}]" in ticket.subject else f"[{ticket_id}] {ticket.subject}"
    subject = one_line(subject if subject.lower().startswith("re:") else f"Re: {subject}")
    message_id = make_msgid(idstring=f"reply.{ticket_id}", domain=support.address.rpartition("@")[2])
    def named(addrs: list[str]) -> str:  # the customer keeps the name they write under
        return ", ".join(address(ticket.requester_name, a) if a == ticket.requester else address("", a) for a in addrs)

    headers = [("From", address(f"{agent.name} ({support.name})", support.address)), ("To", named(to))]
    headers += [("Cc", named(cc))] if cc else []
    headers += [("Subject", subject), ("Date", format_datetime(now)), ("Message-ID", message_id)]
    if in_reply_to:
        headers += [("In-Reply-To", in_reply_to), ("References", " ".join([*references[-9:], in_reply_to]))]
    raw = compose(headers, f"{text.rstrip()}\n", attachments=[(f.filename, f.content_type, f.data) for f in files])
    return OutgoingMail(message_id, support.address, tuple(dict.fromkeys(to + cc)), subject, text, raw)


class AgentReplies:
    """Handles a mail proven to come from an agent: commands, notes and relayed answers."""

    def __init__(self, settings: Settings, store: Store, routing: Routing) -> None:
        self.settings, self.store, self.routing = settings, store, routing
        self.actions = TicketActions(settings, store, routing)

    def _ticket_for(self, parsed: ParsedMessage, who: AgentMail) -> str | None:
        if who.ticket_id:
            return who.ticket_id if self.store.ticket(who.ticket_id) else None
        refs = [*parsed.in_reply_to, *parsed.references]
        for ticket_id, _ in self.store.tickets_for_message_ids(refs):
            return ticket_id
        for ticket_id in subject_tags(parsed.subject, self.settings.support.ticket_prefix):
            if self.store.ticket(ticket_id):
                return ticket_id
        return None

    def _tell_agent(self, agent: Agent, ticket_id: str, subject: str, text: str, now: datetime) -> None:
        """A notice to the agent about their mail; on a ticket it carries a fresh reply token, so the
        agent's corrected reply to it is proven theirs like a reply to the notification."""
        support = self.settings.support
        reply_to = None
        if ticket_id:
            secret = self.settings.routing.reply_secret or self.store.secret("reply_token")
            reply_to = reply_address(support.address, ticket_id, reply_token(secret, ticket_id, agent.email))
        mail = internal_mail(support, to=[agent.email], subject=subject, body=text, ticket_id=ticket_id, now=now,
                             kind="notice", reply_to=reply_to,
                             thread=self.store.internal_thread(ticket_id) if ticket_id else ())
        self.store.enqueue(ticket_id=ticket_id, kind="agent_notice", message_id=mail.message_id,
                           mail_from=mail.mail_from, recipients=list(mail.recipients), raw=mail.raw, now=now)

    def handle(self, row: RawRow, parsed: ParsedMessage, who: AgentMail, now: datetime) -> dict[str, object]:
        store, agent = self.store, who.agent
        with store.tx():
            if parsed.message_id and agent_mail_stored(store, parsed.message_id, agent.email):
                store.finish_raw(row.id, RawState.DUPLICATE, now=now)  # e.g. sent to both Reply-To and support@
                return {"action": "duplicate_agent_mail", "agent": agent.email}
            ticket_id = self._ticket_for(parsed, who)
            if ticket_id is None:
                self._tell_agent(agent, "", f"Not delivered: {parsed.subject}",
                                 "inboxd could not tell which ticket your mail answers, so it was not sent to "
                                 "anyone. Reply to the ticket's notification, or keep [SUP-n] in the subject.\n",
                                 now)
                store.finish_raw(row.id, RawState.PROCESSED, now=now, error="agent mail without a ticket")
                return {"action": "agent_mail_without_ticket", "agent": agent.email}
            parsed_commands = parse_commands(reply_text(parsed.text), self.routing.directory)
            store.add_message(ticket_id, direction="in", kind="agent", now=now, raw_id=row.id,
                              message_id=parsed.message_id, from_addr=agent.email, from_name=agent.name,
                              to_addrs=parsed.to, cc_addrs=parsed.cc, subject=parsed.subject, body=parsed.text,
                              attachments=[a.__dict__ for a in parsed.attachments])
            if parsed_commands.errors:
                problems = "\n".join(f"  {e}" for e in parsed_commands.errors)
                draft = reply_text(parsed.text).strip()
                self._tell_agent(agent, ticket_id, f"[{ticket_id}] Not sent: please check your commands",
                                 f"Nothing was sent to the customer and nothing was changed, because:\n{problems}"
                                 "\n\nReply to this mail with the corrected text: it is handled like a reply to the"
                                 " ticket's notification.\n\n"
                                 f"----- your draft, as you wrote it -----\n{draft}\n----- end of draft -----"
                                 f"\n\n{HELP}\n", now)
                store.log_event(ticket_id, "agent_commands_rejected", now, actor=agent.email,
                                errors=list(parsed_commands.errors))
                store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now)
                return {"action": "commands_rejected", "ticket": ticket_id, "agent": agent.email}
            for command in parsed_commands.commands:
                self._apply(ticket_id, command, agent, now)
            if any(c.name == "assign" for c in parsed_commands.commands):  # after all: it shows every change
                self.actions.notify_assigned(ticket_id, agent.name, now)
            if parsed_commands.is_note:
                outcome = self._note(ticket_id, parsed_commands.text, agent, now)
            elif parsed_commands.text:
                outcome = self._relay(ticket_id, parsed_commands.text, agent, row, parsed_commands.commands, now)
            else:
                outcome = "commands only: nothing sent to the customer"
            store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now)
        return {"action": "agent_reply", "ticket": ticket_id, "agent": agent.email, "proof": who.proof,
                "commands": " ".join(f"#{c.name}" for c in parsed_commands.commands) or "-", "result": outcome}

    def from_team_side(self, ticket_id: str, parsed: ParsedMessage) -> bool:
        """Whether a mail that answers this ticket's notification (``token_ticket``) is the team's:
        anyone but the customer and the people they copied, who never get a notification."""
        ticket = self.store.ticket(ticket_id)
        if ticket is None or parsed.from_addr is None:
            return False
        customers = {ticket.requester} | {a for a, role in self.store.participants(ticket_id).items() if role == "cc"}
        return parsed.from_addr not in customers

    def comment(self, row: RawRow, parsed: ParsedMessage, ticket_id: str, who: Forged | None,
                now: datetime) -> dict[str, object]:
        """A reply to a notification from someone on the team who is not its proven agent (a watcher,
        a lead in cc, a colleague): an internal note for the owner. It is never sent to the customer,
        runs no command and starts no clock; ``Forged``: an agent's address with another's token."""
        store = self.store
        sender = parsed.from_addr or ""
        with store.tx():
            if parsed.message_id and agent_mail_stored(store, parsed.message_id, sender, "note"):
                store.finish_raw(row.id, RawState.DUPLICATE, ticket_id=ticket_id, now=now)
                return {"action": "duplicate_team_comment", "ticket": ticket_id, "from": sender}
            text = reply_text(parsed.text).strip()
            store.log_event(ticket_id, "team_comment", now, actor=sender,
                            reason=who.reason if who else "answered a notification of the ticket")
            outcome = self.actions.note(ticket_id, text, sender, parsed.from_name or sender, now,
                                                parsed.message_id) if text \
                else "empty: nothing stored"
            store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now)
        return {"action": "team_comment", "ticket": ticket_id, "from": sender, "result": outcome}

    def _apply(self, ticket_id: str, command: Command, agent: Agent, now: datetime) -> None:
        actions = self.actions
        if command.name in STATUS_COMMANDS:
            actions.set_status(ticket_id, STATUS_COMMANDS[command.name], agent.email, now)
        elif command.name == "assign":
            target = self.routing.directory.find(command.argument)
            assert target is not None  # parse_commands checked it
            actions.assign(ticket_id, target.email, agent.email, agent.name, now, how="#assign", notify=False)
        elif command.name in ("tag", "untag"):
            actions.tag(ticket_id, command.argument, agent.email, now, remove=command.name == "untag")
        elif command.name == "category":
            actions.category(ticket_id, command.argument, agent.email, now)
        elif command.name == "priority":
            actions.priority(ticket_id, command.argument, agent.email, now)

    def _note(self, ticket_id: str, text: str, agent: Agent, now: datetime) -> str:
        return self.actions.note(ticket_id, text, agent.email, agent.name, now)

    def _relay(self, ticket_id: str, text: str, agent: Agent, row: RawRow, commands: tuple[Command, ...],
               now: datetime) -> str:
        store, support = self.store, self.settings.support
        ticket = store.ticket(ticket_id)
        assert ticket is not None
        internal = {agent.email, *self.routing.directory.agents, *support.own_addresses}
        people = store.participants(ticket_id)
        to = [ticket.requester]
        cc = [a for a, role in people.items() if role == "cc" and a not in internal and a not in to
              and parse_reply_address(a, support.address) is None]
        in_reply_to, references = reply_anchor(store, ticket_id) or (None, [])
        mail = build_reply(settings=self.settings, agent=agent, ticket=ticket, text=text, to=to, cc=cc,
                           in_reply_to=in_reply_to, references=references, files=attachments_of(row.raw), now=now)
        store.enqueue(ticket_id=ticket_id, kind="reply", message_id=mail.message_id, mail_from=mail.mail_from,
                      recipients=list(mail.recipients), raw=mail.raw, now=now)
        store.add_message(ticket_id, direction="out", kind="reply", now=now, message_id=mail.message_id,
                          in_reply_to=[in_reply_to] if in_reply_to else [], from_addr=support.address,
                          from_name=agent.name, to_addrs=to, cc_addrs=cc, subject=mail.subject, body=text)
        record_answer(store, self.settings, ticket_id, agent.email, now,
                      status_set=any(c.name in STATUS_COMMANDS for c in commands))
        log(logger, logging.INFO, "reply_relayed", ticket=ticket_id, agent=agent.email, recipients=len(mail.recipients))
        return f"sent to {', '.join(mail.recipients)}"


def record_answer(store: Store, settings: Settings, ticket_id: str, agent: str, now: datetime, *,
                  status_set: bool) -> None:
    """The team answered: the response clocks stop; a new ticket becomes open."""
    ticket = store.ticket(ticket_id)
    assert ticket is not None
    if not ticket.first_response_at:
        store.update_ticket(ticket_id, now, first_response_at=iso(now))
    sla.team_answered(store, ticket_id, now)
    if not status_set and ticket.status == TicketStatus.NEW:
        sla.change_status(store, settings, ticket_id, TicketStatus.OPEN, now, actor=agent)
    store.log_event(ticket_id, "answered", now, actor=agent, first=not ticket.first_response_at)
