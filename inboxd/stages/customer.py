"""Customer mail: a new ticket, or a follow-up on one, with its acknowledgement and notification.

Everything one customer mail changes (the ticket, its clocks, tags, participants,
the message, the queued acknowledgement and notification, and the raw mail's
state) is written in ONE transaction, so a crash leaves all of it or none of it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from inboxd.config import Settings
from inboxd.log import log
from inboxd.model import ParsedMessage, RawState, TicketStatus
from inboxd.reply.acknowledge import build_ack, expected_reply, reply_language
from inboxd.reply.notify import parse_reply_address
from inboxd.reply.render import Renderer
from inboxd.routing.assign import Routing, apply_assignment, decide, first_response_target, notify_owner
from inboxd.routing.route import RouteContext
from inboxd.sla import clocks
from inboxd.sla.businesstime import Duration
from inboxd.store.base import iso
from inboxd.store.ledger import RawRow
from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classification, Classifier, Guess
from inboxd.triage.identity import Forged
from inboxd.triage.language import detect_language
from inboxd.triage.loops import AUTO_REPLY, BOUNCE, Bounce, bounce_report, machine_mail, no_ack_reason
from inboxd.triage.mood import raise_to
from inboxd.triage.rules import facts_from
from inboxd.triage.thread import ThreadMatch, find_ticket

logger = logging.getLogger("inboxd.pipeline")


class CustomerMail:
    def __init__(self, settings: Settings, store: Store, renderer: Renderer, classifier: Classifier,
                 routing: Routing) -> None:
        self.settings, self.store, self.renderer = settings, store, renderer
        self.classifier, self.routing = classifier, routing

    def handle(self, row: RawRow, parsed: ParsedMessage, who: Forged | None, guess: Guess | None,
               now: datetime) -> dict[str, object]:
        store = self.store
        assert parsed.from_addr is not None
        if isinstance(who, Forged):
            log(logger, logging.WARNING, "forged_agent_mail", raw_id=row.id, claimed=who.claimed, reason=who.reason)
        with store.tx():
            duplicate = self._duplicate_of(row, parsed)
            if duplicate is not None:
                store.finish_raw(row.id, RawState.DUPLICATE, ticket_id=duplicate, now=now)
                return {"action": "duplicate", "ticket": duplicate, "message_id": parsed.message_id}
            language = detect_language(f"{parsed.subject}\n{parsed.text}", parsed.charset_used)
            machine = machine_mail(parsed)
            bounce = bounce_report(row.raw) if machine and machine[0] == BOUNCE else None
            match = self._machine_match(parsed, bounce) if machine else \
                find_ticket(parsed, store, self.settings.support.ticket_prefix)
            verdict, reason = self._classify(row, parsed, language, match.ticket_id, guess, machine)
            created = match.ticket_id is None
            if created and machine is None and verdict.spam:  # withheld from acknowledgement: no work either
                machine = ("spam", reason or "classified as spam")
            promise, why = None, "new ticket"
            if created and machine:
                ticket_id = self._machine_ticket(parsed, language, verdict, machine, match, now)
            elif created:
                ticket_id, promise = self._new_ticket(row, parsed, language, verdict, reason, match, now)
            else:
                ticket_id = str(match.ticket_id)
                if machine:  # on the thread, but it reopens nothing and starts no clock
                    store.update_ticket(ticket_id, now)
                    store.log_event(ticket_id, "machine_mail_added", now, actor=parsed.from_addr or "",
                                    machine=machine[0], reason=machine[1], bounce=bounce.reason if bounce else None)
                else:
                    why = self._follow_up(ticket_id, parsed, match.reason, verdict, now)
            if created or reason is None:  # an auto-reply must not retag the customer's ticket
                store.add_tags(ticket_id, verdict.tags)
            if isinstance(who, Forged):
                store.add_tags(ticket_id, ["suspicious"])
                store.log_event(ticket_id, "suspicious_sender", now, claimed=who.claimed, reason=who.reason)
            store.log_event(ticket_id, "classified", now, **_explain(verdict))
            for address in (*parsed.to, *parsed.cc):
                if self._customer_side(address):
                    store.add_participant(ticket_id, address, "cc")
            message_row = self._record(ticket_id, row, parsed, language, verdict, reason, now)
            ack = "not needed (follow-up)"
            if promise is not None:
                unproven = f"from an agent's address without proof ({who.reason})" if isinstance(who, Forged) else None
                ack = self._acknowledge(ticket_id, parsed, language, reason or unproven, *promise, now,
                                        urgent=row.fresh)
            elif created and reason is not None:
                store.log_event(ticket_id, "ack_suppressed", now, reason=reason)
                ack = f"suppressed: {reason}"
            notified = "no (machine-sent or spam)"
            if bounce is not None and not created:  # one of our mails to this customer came back
                notified = notify_owner(store, self.settings, self.routing, ticket_id, now=now, message_id=message_row,
                                        why=f"the customer's address bounced: {bounce.reason}")
            elif machine is None and (reason is None or not verdict.spam):
                notified = notify_owner(store, self.settings, self.routing, ticket_id, now=now, message_id=message_row,
                                        why=why)
            store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now)
        return {"action": "created" if created else "joined", "ticket": ticket_id, "from": parsed.from_addr,
                "language": language, "charset": parsed.charset_used, "category": verdict.category,
                "priority": verdict.priority, "ack": ack, "notified": notified, "thread": match.reason}

    def _new_ticket(self, row: RawRow, parsed: ParsedMessage, language: str, verdict: Classification,
                    reason: str | None, match: ThreadMatch, now: datetime) -> tuple[str, tuple[datetime, Duration]]:
        """Create, route and assign the ticket and start its clocks; returns it and (due, target) to promise."""
        store, support = self.store, self.settings.support
        assert parsed.from_addr is not None
        ticket_id = store.create_ticket(support.ticket_prefix, subject=parsed.subject, requester=parsed.from_addr,
                                        requester_name=parsed.from_name, language=language, now=now,
                                        follow_up_of=match.follow_up_of)
        store.log_event(ticket_id, "created", now, actor=parsed.from_addr, reason=match.reason,
                        follow_up_of=match.follow_up_of)
        store.update_ticket(ticket_id, now, category=verdict.category, confidence=verdict.confidence,
                            priority=verdict.priority, spam=int(verdict.spam))
        assignment = decide(self.routing, self._context(row, parsed, verdict, now), store)
        if reason is not None and "auto-reply" in verdict.tags:
            assignment = replace(assignment, owner=None, reason="machine-sent mail stays on the team queue")
        apply_assignment(store, ticket_id, assignment, now)
        target = first_response_target(self.settings, assignment.sla, verdict.priority)
        due = clocks.start(store, self.settings, ticket_id, "first_response", now) or \
            expected_reply(support, now, target)  # the promise in the acknowledgement is the SLA clock
        clocks.start(store, self.settings, ticket_id, "resolution", now)
        store.update_ticket(ticket_id, now, first_response_due=iso(due))
        return ticket_id, (due, target)

    def _machine_match(self, parsed: ParsedMessage, bounce: Bounce | None) -> ThreadMatch:
        """Machine mail joins the ticket it is about (a closed one too: it must not start a new
        ticket); a bounce is about the mail of ours that its report returns."""
        store, prefix = self.store, self.settings.support.ticket_prefix
        if bounce is not None and bounce.original_message_id:
            for ticket_id, direction in store.tickets_for_message_ids([bounce.original_message_id]):
                if direction == "out":
                    return ThreadMatch(ticket_id, f"a bounce of our mail {bounce.original_message_id}")
        match = find_ticket(parsed, store, prefix)
        if match.ticket_id is None and match.follow_up_of is not None:
            return ThreadMatch(match.follow_up_of, f"machine mail about the closed ticket {match.follow_up_of}")
        return match

    def _machine_ticket(self, parsed: ParsedMessage, language: str, verdict: Classification,
                        machine: tuple[str, str], match: ThreadMatch, now: datetime) -> str:
        """Machine mail about no ticket, or spam: kept on record as a ticket closed on arrival, on
        nobody's queue, with no clock and no alert (``inboxd tickets list --status closed`` lists it;
        an agent can reopen a mistake)."""
        store = self.store
        assert parsed.from_addr is not None
        ticket_id = store.create_ticket(self.settings.support.ticket_prefix, subject=parsed.subject,
                                        requester=parsed.from_addr, requester_name=parsed.from_name,
                                        language=language, now=now)
        store.log_event(ticket_id, "created", now, actor=parsed.from_addr, reason=match.reason)
        store.update_ticket(ticket_id, now, category=verdict.category, confidence=verdict.confidence,
                            priority=verdict.priority, spam=int(verdict.spam), status=TicketStatus.CLOSED)
        store.log_event(ticket_id, "closed_on_arrival", now, machine=machine[0], reason=machine[1],
                        note="machine mail and spam create no work")
        if machine[0] == "spam":
            store.add_tags(ticket_id, ["spam"])
        return ticket_id

    def _context(self, row: RawRow, parsed: ParsedMessage, verdict: Classification, now: datetime) -> RouteContext:
        return RouteContext(category=verdict.category, tags=verdict.tags, priority=verdict.priority,
                            language=verdict.language, sender=parsed.from_addr or "", subject=parsed.subject,
                            body=parsed.text, mailbox=(row.account, row.folder), at=now,
                            business_hours=self.settings.support.calendar.is_open(now))

    def _classify(self, row: RawRow, parsed: ParsedMessage, language: str, ticket_id: str | None,
                  guess: Guess | None, machine: tuple[str, str] | None) -> tuple[Classification, str | None]:
        """The classification, and why the mail must get no acknowledgement (None if it may)."""
        facts = facts_from(from_addr=parsed.from_addr, to=parsed.to, cc=parsed.cc, subject=parsed.subject,
                           body=parsed.text, language=language, mailbox=(row.account, row.folder),
                           attachments=[(a.filename, a.content_type) for a in parsed.attachments],
                           headers=parsed.headers)
        unanswered = 1 + (self.store.unanswered(ticket_id) if ticket_id else 0)
        verdict = self.classifier.decide(subject=parsed.subject, body=parsed.text, facts=facts,
                                         sender=parsed.from_addr, language=language, unanswered=unanswered,
                                         guess=guess)
        reason = no_ack_reason(parsed, self.settings.support.own_addresses)
        if reason is not None:  # machine-sent mail: its wording says nothing about urgency
            kind = (machine[0],) if machine and machine[0] != AUTO_REPLY else ()
            tags = tuple(t for t in verdict.tags if t not in ("urgent", "angry")) + ("auto-reply", *kind)
            return replace(verdict, priority="low", tags=tags), reason
        if not verdict.acknowledge:
            reason = "classified as spam" if verdict.spam else \
                f"turned off by rule: {', '.join(verdict.rules_fired)}"
        return verdict, reason

    def _customer_side(self, address: str) -> bool:
        """Whether a copied address may receive answers: not us, not an agent, not a reply token."""
        support = self.settings.support
        return (address not in support.own_addresses and address not in self.routing.directory.agents
                and parse_reply_address(address, support.address) is None)

    def _duplicate_of(self, row: RawRow, parsed: ParsedMessage) -> str | None:
        """The ticket that already holds this very mail (same Message-ID and sender, or same bytes)."""
        assert parsed.from_addr is not None
        if parsed.message_id:
            found = self.store.inbound_duplicate(parsed.message_id, parsed.from_addr)
            if found:
                return found
        return self.store.ticket_with_same_bytes(row.id)

    def _follow_up(self, ticket_id: str, parsed: ParsedMessage, reason: str, verdict: Classification,
                   now: datetime) -> str:
        """A customer wrote again: a resolved or pending ticket needs attention again, maybe sooner.
        Returns why the owner is told, saying when the mail reopened the ticket."""
        store = self.store
        ticket = store.ticket(ticket_id)
        assert ticket is not None
        status = ticket.status
        priority = raise_to(ticket.priority, verdict.priority)
        if priority != ticket.priority:
            store.update_ticket(ticket_id, now, priority=priority)
            store.log_event(ticket_id, "priority_raised", now, old=ticket.priority, new=priority,
                            signals=list(verdict.signals))
        if status in (TicketStatus.RESOLVED, TicketStatus.PENDING):
            store.log_event(ticket_id, "reopened" if status == TicketStatus.RESOLVED else "customer_replied", now,
                            actor=parsed.from_addr or "", previous_status=status)
        clocks.customer_wrote(store, self.settings, ticket_id, now)
        store.update_ticket(ticket_id, now)
        store.log_event(ticket_id, "message_added", now, actor=parsed.from_addr or "", reason=reason)
        if status == TicketStatus.RESOLVED:
            return "the customer wrote again and so reopened the ticket, which was resolved"
        if status == TicketStatus.PENDING:
            return "the customer wrote again; the ticket was waiting on them (pending) and is open again"
        return "the customer wrote again"

    def _record(self, ticket_id: str, row: RawRow, parsed: ParsedMessage, language: str, verdict: Classification,
                reason: str | None, now: datetime) -> int:
        """The customer's message on the ticket, with how it was decoded and classified."""
        return self.store.add_message(
            ticket_id, direction="in", kind="customer", now=now, raw_id=row.id,
            message_id=parsed.message_id, in_reply_to=parsed.in_reply_to, references=parsed.references,
            from_addr=parsed.from_addr, from_name=parsed.from_name, to_addrs=parsed.to,
            cc_addrs=parsed.cc, subject=parsed.subject, body=parsed.text,
            attachments=[a.__dict__ for a in parsed.attachments], language=language,
            charset_declared=parsed.charset_declared, charset_used=parsed.charset_used,
            charset_guessed=int(parsed.charset_guessed), defects=parsed.defects, no_ack_reason=reason,
            classification=json.dumps(_explain(verdict), ensure_ascii=False))

    def _acknowledge(self, ticket_id: str, parsed: ParsedMessage, language: str, reason: str | None,
                     due: datetime, target: Duration, now: datetime, *, urgent: bool) -> str:
        """Queue the acknowledgement unless loop protection or the hourly limit says no (``urgent``: the
        mail just arrived, so its acknowledgement goes out ahead of a backlog's)."""
        store, support = self.store, self.settings.support
        assert parsed.from_addr is not None
        if reason is None and store.acks_sent_to(parsed.from_addr, now - timedelta(hours=1)) >= \
                support.ack_limit_per_hour:
            reason = f"more than {support.ack_limit_per_hour} acknowledgements to this sender in an hour"
        if reason is not None:
            store.log_event(ticket_id, "ack_suppressed", now, reason=reason)
            return f"suppressed: {reason}"
        lang = reply_language(language, support.default_language)
        mail = build_ack(ticket_id=ticket_id, parsed=parsed, language=lang, support=support,
                         renderer=self.renderer, due=due, target=target, now=now)
        store.enqueue(ticket_id=ticket_id, kind="ack", message_id=mail.message_id, mail_from=mail.mail_from,
                      recipients=list(mail.recipients), raw=mail.raw, now=now, urgent=urgent)
        store.add_message(ticket_id, direction="out", kind="ack", now=now, message_id=mail.message_id,
                          in_reply_to=[parsed.message_id] if parsed.message_id else [],
                          from_addr=support.address, from_name=support.name, to_addrs=mail.recipients,
                          subject=mail.subject, body=mail.text, language=lang)
        store.log_event(ticket_id, "ack_queued", now, message_id=mail.message_id, due=iso(due), language=lang)
        return "queued"


def _explain(c: Classification) -> dict[str, Any]:
    """The classification as stored on the message and in the event log: what, and why."""
    return {"category": c.category, "confidence": c.confidence, "source": c.source, "priority": c.priority,
            "tags": list(c.tags), "spam": c.spam, "language": c.language, "rules_fired": list(c.rules_fired),
            "signals": list(c.signals), "model_version": c.model_version,
            "model_guess": list(c.model_guess) if c.model_guess else None}
