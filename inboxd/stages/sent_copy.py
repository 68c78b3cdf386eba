"""A copy in the Sent folder: an answer written from the shared account itself.

It is recorded on its ticket (so the clocks stop and the report counts it) and is
never sent again; inboxd's own mail and forwards to colleagues are left alone.
"""

from __future__ import annotations

from datetime import datetime

from inboxd.config import Settings
from inboxd.model import ParsedMessage, RawState
from inboxd.stages.agent_reply import record_answer
from inboxd.store.ledger import RawRow
from inboxd.store.sqlite import Store
from inboxd.triage.quotes import reply_text
from inboxd.triage.thread import subject_tags


class SentCopies:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings, self.store = settings, store

    def handle(self, row: RawRow, parsed: ParsedMessage, now: datetime) -> dict[str, object] | None:
        store = self.store
        with store.tx():
            ours = bool(parsed.message_id) and store.is_outgoing(parsed.message_id or "")
            ticket_id = None if ours else self._ticket_of(parsed)
            if ticket_id is None or (parsed.message_id and store.tickets_for_message_ids([parsed.message_id])):
                store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now,
                                 error="sent by inboxd" if ours else "not about a ticket, or already recorded")
                return None
            store.add_message(ticket_id, direction="out", kind="sent_folder", now=now, raw_id=row.id,
                              message_id=parsed.message_id, from_addr=parsed.from_addr, from_name=parsed.from_name,
                              to_addrs=parsed.to, cc_addrs=parsed.cc, subject=parsed.subject,
                              body=reply_text(parsed.text))
            record_answer(store, self.settings, ticket_id, parsed.from_addr or "shared mailbox", now, status_set=False)
            store.finish_raw(row.id, RawState.PROCESSED, ticket_id=ticket_id, now=now)
        return {"action": "sent_folder_answer", "ticket": ticket_id}

    def _ticket_of(self, parsed: ParsedMessage) -> str | None:
        """The ticket this answers, if it went to one of the ticket's customers (not a forward to a colleague)."""
        store = self.store
        refs = [*parsed.in_reply_to, *parsed.references]
        found = [t for t, _ in store.tickets_for_message_ids(refs)]
        found += [t for t in subject_tags(parsed.subject, self.settings.support.ticket_prefix) if store.ticket(t)]
        if not found:
            return None
        customers = {a for a, role in store.participants(found[0]).items() if role in ("requester", "cc")}
        return found[0] if customers & {*parsed.to, *parsed.cc} else None
