"""The processing pipeline for stored mail: parse → thread → ticket → acknowledge.

Fetch has already put the raw bytes in the database. Here each waiting message is
turned into ticket changes and queued mail in ONE transaction, so a crash at any
point leaves either nothing (the message is processed again on restart) or
everything (and the outbox sends what was queued). A message that cannot be
processed is quarantined with its error; it stays stored and visible.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from inboxd.sla import clocks as sla
from inboxd.reply.acknowledge import build_ack, expected_reply, reply_language
from inboxd.routing.assign import (
    Routing,
    apply_assignment,
    decide,
    first_response_target,
    notify_owner,
)
from inboxd.sla.businesstime import Duration
from inboxd.triage.classify import Classification, Classifier
from inboxd.config import Settings
from inboxd.triage.identity import AgentMail, Forged, identify
from inboxd.triage.language import detect_language
from inboxd.log import log
from inboxd.triage.loops import no_ack_reason
from inboxd.model import Attachment, ParsedMessage
from inboxd.triage.mood import raise_to
from inboxd.reply.notify import parse_reply_address
from inboxd.triage.parse import parse_message
from inboxd.triage.quotes import reply_text
from inboxd.stages.agent_reply import AgentReplies, record_answer
from inboxd.reply.render import Renderer
from inboxd.routing.route import RouteContext
from inboxd.triage.rules import facts_from
from inboxd.store.sqlite import RawRow, Store, iso, utcnow
from inboxd.triage.thread import find_ticket, subject_tags
from inboxd.triage.train import example_text

logger = logging.getLogger("inboxd.pipeline")


class Pipeline:
    def __init__(self, settings: Settings, store: Store, renderer: Renderer, classifier: Classifier,
                 routing: Routing, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.store = store
        self.renderer = renderer
        self.classifier = classifier
        self.routing = routing
        self.clock = clock
        self.agent_replies = AgentReplies(settings, store, routing)
        self._parsed: dict[int, ParsedMessage] = {}
        self._guesses: dict[int, tuple[str, float] | None] = {}

    def process_pending(self, on_batch: Callable[[], None] = lambda: None) -> int:
        """Process every stored message still waiting; returns how many were handled.

        ``on_batch`` runs after each batch so the sender can start on a long backlog early.
        """
        done = last_id = 0
        while rows := self.store.pending_raw(after_id=last_id):
            self._prepare(rows)
            for row in rows:
                self.process(row)
                last_id = row.id
                done += 1
            on_batch()
        return done

    def _prepare(self, rows: list[RawRow]) -> None:
        """Parse a batch and ask the model about all of it at once (one call costs ~1.5 ms, a
        batched text ~0.2 ms); ``process`` picks the results up."""
        self._parsed = {row.id: self._parse(row) for row in rows}
        texts = [example_text(p.subject, p.text) for p in self._parsed.values()]
        self._guesses = dict(zip(self._parsed, self.classifier.guesses(texts)))

    def process(self, row: RawRow) -> None:
        now = self.clock()
        try:
            parsed = self._parsed.pop(row.id, None) or self._parse(row)
            outcome = self._apply(row, parsed, now)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):  # another process holds the database: next round
                log(logger, logging.WARNING, "message_retry", raw_id=row.id, uid=row.uid, error=repr(exc))
                return  # (not counted: a healthy message must never be quarantined for a lock)
            logger.exception("message_failed", extra={"fields": {"raw_id": row.id, "uid": row.uid}})
            self._quarantine(row, f"database error: {exc}", now)
        except Exception as exc:  # the one catch-all: a bad message must not stop the queue
            logger.exception("message_failed", extra={"fields": {"raw_id": row.id, "uid": row.uid}})
            self._quarantine(row, f"{type(exc).__name__}: {exc}", now)
        else:
            if outcome is not None:
                log(logger, logging.INFO, "message_processed", raw_id=row.id, uid=row.uid, **outcome)

    def _parse(self, row: RawRow) -> ParsedMessage:
        parsed = parse_message(row.raw)
        if row.truncated:
            omitted = tuple(Attachment(a.get("filename"), a.get("content_type", "application/octet-stream"),
                                       int(a.get("size", 0)), omitted=True) for a in row.omitted_attachments)
            parsed = replace(parsed, truncated=True, attachments=omitted or parsed.attachments)
        return parsed

    def _quarantine(self, row: RawRow, reason: str, now: datetime) -> None:
        self.store.finish_raw(row.id, "quarantined", error=reason, now=now)
        log(logger, logging.WARNING, "message_quarantined", raw_id=row.id, uid=row.uid, reason=reason)

    def _apply(self, row: RawRow, parsed: ParsedMessage, now: datetime) -> dict[str, object] | None:
        if parsed.from_addr is None:
            self._quarantine(row, "no usable sender address (From header missing or unreadable)", now)
            return None
        store, support = self.store, self.settings.support
        if row.folder == self.settings.imap.sent_folder and row.folder:
            return self._sent_copy(row, parsed, now)
        who = identify(parsed, self.routing.directory, secret=self.secret(), support_address=support.address,
                       trusted_servers=self.settings.routing.trusted_auth_servers)
        if isinstance(who, AgentMail):
            return self.agent_replies.handle(row, parsed, who, now)
        if isinstance(who, Forged):
            log(logger, logging.WARNING, "forged_agent_mail", raw_id=row.id, claimed=who.claimed, reason=who.reason)
        with store.tx():
            duplicate = self._duplicate_of(row, parsed)
            if duplicate is not None:
                store.finish_raw(row.id, "duplicate", ticket_id=duplicate, now=now)
                return {"action": "duplicate", "ticket": duplicate, "message_id": parsed.message_id}
            language = detect_language(f"{parsed.subject}\n{parsed.text}", parsed.charset_used)
            match = find_ticket(parsed, store, support.ticket_prefix)
            verdict, reason = self._classify(row, parsed, language, match.ticket_id)
            if match.ticket_id is None:
                ticket_id = store.create_ticket(
                    support.ticket_prefix, subject=parsed.subject, requester=parsed.from_addr,
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
                due = sla.start(store, self.settings, ticket_id, "first_response", now) or \
                    expected_reply(support, now, target)  # the promise in the acknowledgement is the SLA clock
                sla.start(store, self.settings, ticket_id, "resolution", now)
                store.update_ticket(ticket_id, now, first_response_due=iso(due))
                action = "created"
            else:
                ticket_id = match.ticket_id
                self._follow_up(ticket_id, parsed, match.reason, verdict, now)
                action = "joined"
            if action == "created" or reason is None:  # an auto-reply must not retag the customer's ticket
                store.add_tags(ticket_id, verdict.tags)
            if isinstance(who, Forged):
                store.add_tags(ticket_id, ["suspicious"])
                store.log_event(ticket_id, "suspicious_sender", now, claimed=who.claimed, reason=who.reason)
            store.log_event(ticket_id, "classified", now, **_explain(verdict))
            for address in (*parsed.to, *parsed.cc):
                if self._customer_side(address):
                    store.add_participant(ticket_id, address, "cc")
            message_row = store.add_message(
                ticket_id, direction="in", kind="customer", now=now, raw_id=row.id,
                message_id=parsed.message_id, in_reply_to=parsed.in_reply_to, references=parsed.references,
                from_addr=parsed.from_addr, from_name=parsed.from_name, to_addrs=parsed.to,
                cc_addrs=parsed.cc, subject=parsed.subject, body=parsed.text,
                attachments=[a.__dict__ for a in parsed.attachments], language=language,
                charset_declared=parsed.charset_declared, charset_used=parsed.charset_used,
                charset_guessed=int(parsed.charset_guessed), defects=parsed.defects, no_ack_reason=reason,
                classification=json.dumps(_explain(verdict), ensure_ascii=False))
            ack = "not needed (follow-up)"
            if action == "created":
                ack = self._acknowledge(ticket_id, parsed, language, reason, due, target, now)
            notified = "no (machine-sent or spam)"
            if reason is None or not (verdict.spam or "auto-reply" in verdict.tags):
                why = "new ticket" if action == "created" else "the customer wrote again"
                notified = notify_owner(store, self.settings, self.routing, ticket_id, why=why, now=now,
                                        message_id=message_row)
            store.finish_raw(row.id, "processed", ticket_id=ticket_id, now=now)
        return {"action": action, "ticket": ticket_id, "from": parsed.from_addr, "language": language,
                "charset": parsed.charset_used, "category": verdict.category, "priority": verdict.priority,
                "ack": ack, "notified": notified, "thread": match.reason}

    def _context(self, row: RawRow, parsed: ParsedMessage, verdict: Classification, now: datetime) -> RouteContext:
        return RouteContext(category=verdict.category, tags=verdict.tags, priority=verdict.priority,
                            language=verdict.language, sender=parsed.from_addr or "", subject=parsed.subject,
                            body=parsed.text, mailbox=(row.account, row.folder), at=now,
                            business_hours=self.settings.support.calendar.is_open(now))

    def _classify(self, row: RawRow, parsed: ParsedMessage, language: str,
                  ticket_id: str | None) -> tuple[Classification, str | None]:
        """The classification, and why the mail must get no acknowledgement (None if it may)."""
        facts = facts_from(from_addr=parsed.from_addr, to=parsed.to, cc=parsed.cc, subject=parsed.subject,
                           body=parsed.text, language=language, mailbox=(row.account, row.folder),
                           attachments=[(a.filename, a.content_type) for a in parsed.attachments],
                           headers=parsed.headers)
        unanswered = 1 + (self._unanswered(ticket_id) if ticket_id else 0)
        if row.id in self._guesses:
            verdict = self.classifier.decide(subject=parsed.subject, body=parsed.text, facts=facts,
                                             sender=parsed.from_addr, language=language, unanswered=unanswered,
                                             guess=self._guesses.pop(row.id))
        else:
            verdict = self.classifier.classify(subject=parsed.subject, body=parsed.text, facts=facts,
                                               sender=parsed.from_addr, language=language, unanswered=unanswered)
        reason = no_ack_reason(parsed, self.settings.support.own_addresses)
        if reason is not None:  # machine-sent mail: its wording says nothing about urgency
            tags = tuple(t for t in verdict.tags if t not in ("urgent", "angry")) + ("auto-reply",)
            return replace(verdict, priority="low", tags=tags), reason
        if not verdict.acknowledge:
            reason = "classified as spam" if verdict.spam else \
                f"turned off by rule: {', '.join(verdict.rules_fired)}"
        return verdict, reason

    def _unanswered(self, ticket_id: str) -> int:
        """Customer mails on the ticket since the team last wrote (acknowledgements do not count)."""
        rows = self.store.query(
            "SELECT COUNT(*) n FROM messages WHERE ticket_id=? AND direction='in' AND id > COALESCE("
            "(SELECT MAX(id) FROM messages WHERE ticket_id=? AND direction='out' AND kind!='ack'), 0)",
            (ticket_id, ticket_id))
        return int(rows[0]["n"])

    def _customer_side(self, address: str) -> bool:
        """Whether a copied address may receive answers: not us, not an agent, not a reply token."""
        support = self.settings.support
        return (address not in support.own_addresses and address not in self.routing.directory.agents
                and parse_reply_address(address, support.address) is None)

    def secret(self) -> str:
        return self.settings.routing.reply_secret or self.store.secret("reply_token")

    def _sent_copy(self, row: RawRow, parsed: ParsedMessage, now: datetime) -> dict[str, object] | None:
        """An answer written from the shared account itself: record it on its ticket, never send it again."""
        store = self.store
        with store.tx():
            ours = parsed.message_id and store.query("SELECT 1 FROM outbox WHERE message_id=?", (parsed.message_id,))
            ticket_id = None
            if not ours:
                refs = [*parsed.in_reply_to, *parsed.references]
                found = [t for t, _ in store.tickets_for_message_ids(refs)]
                found += [t for t in subject_tags(parsed.subject, self.settings.support.ticket_prefix) if store.ticket(t)]
                ticket_id = found[0] if found else None
            if ticket_id is not None:  # a forward to a colleague is not an answer to the customer
                ticket = store.ticket(ticket_id)
                customers = {a for a, role in store.participants(ticket_id).items() if role in ("requester", "cc")}
                if ticket is None or not customers & {*parsed.to, *parsed.cc}:
                    ticket_id = None
            if ticket_id is None or (parsed.message_id and store.tickets_for_message_ids([parsed.message_id])):
                store.finish_raw(row.id, "processed", ticket_id=ticket_id, now=now,
                                 error="sent by inboxd" if ours else "not about a ticket, or already recorded")
                return None
            store.add_message(ticket_id, direction="out", kind="sent_folder", now=now, raw_id=row.id,
                              message_id=parsed.message_id, from_addr=parsed.from_addr, from_name=parsed.from_name,
                              to_addrs=parsed.to, cc_addrs=parsed.cc, subject=parsed.subject,
                              body=reply_text(parsed.text))
            record_answer(store, self.settings, ticket_id, parsed.from_addr or "shared mailbox", now, status_set=False)
            store.finish_raw(row.id, "processed", ticket_id=ticket_id, now=now)
        return {"action": "sent_folder_answer", "ticket": ticket_id}

    def _duplicate_of(self, row: RawRow, parsed: ParsedMessage) -> str | None:
        """The ticket that already holds this very mail (same Message-ID and sender, or same bytes)."""
        assert parsed.from_addr is not None
        if parsed.message_id:
            found = self.store.inbound_duplicate(parsed.message_id, parsed.from_addr)
            if found:
                return found
        rows = self.store.query("SELECT ticket_id FROM raw_messages WHERE sha256 = (SELECT sha256 FROM "
                                "raw_messages WHERE id=?) AND id!=? AND ticket_id IS NOT NULL LIMIT 1",
                                (row.id, row.id))
        return rows[0]["ticket_id"] if rows else None

    def _follow_up(self, ticket_id: str, parsed: ParsedMessage, reason: str, verdict: Classification,
                   now: datetime) -> None:
        """A customer wrote again: a resolved or pending ticket needs attention again, maybe sooner."""
        ticket = self.store.ticket(ticket_id)
        assert ticket is not None
        status = ticket["status"]
        priority = raise_to(ticket["priority"], verdict.priority)
        if priority != ticket["priority"]:
            self.store.update_ticket(ticket_id, now, priority=priority)
            self.store.log_event(ticket_id, "priority_raised", now, old=ticket["priority"], new=priority,
                                 signals=list(verdict.signals))
        if status in ("resolved", "pending"):
            self.store.log_event(ticket_id, "reopened" if status == "resolved" else "customer_replied", now,
                                 actor=parsed.from_addr or "", previous_status=status)
        sla.customer_wrote(self.store, self.settings, ticket_id, now)
        self.store.update_ticket(ticket_id, now)
        self.store.log_event(ticket_id, "message_added", now, actor=parsed.from_addr or "", reason=reason)

    def _acknowledge(self, ticket_id: str, parsed: ParsedMessage, language: str, reason: str | None,
                     due: datetime, target: Duration, now: datetime) -> str:
        """Queue the acknowledgement unless loop protection or the hourly limit says no."""
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
                      recipients=list(mail.recipients), raw=mail.raw, now=now)
        store.add_message(ticket_id, direction="out", kind="ack", now=now, message_id=mail.message_id,
                          in_reply_to=[parsed.message_id] if parsed.message_id else [],
                          from_addr=support.address, from_name=support.name, to_addrs=mail.recipients,
                          subject=mail.subject, body=mail.text, language=lang)
        store.log_event(ticket_id, "ack_queued", now, message_id=mail.message_id, due=iso(due), language=lang)
        return "queued"


def _explain(c: Classification) -> dict[str, object]:
    """The classification as stored on the message and in the event log: what, and why."""
    return {"category": c.category, "confidence": c.confidence, "source": c.source, "priority": c.priority,
            "tags": list(c.tags), "spam": c.spam, "language": c.language, "rules_fired": list(c.rules_fired),
            "signals": list(c.signals), "model_version": c.model_version,
            "model_guess": list(c.model_guess) if c.model_guess else None}
