"""Tickets that move on by themselves: a resolved ticket nobody answers becomes closed.

``[support] close_after`` (default 7 days, plain calendar time) after it was resolved, a
ticket the customer has not answered is closed, so a later mail from them starts a new ticket
(linked to this one with ``follow_up_of``) instead of reopening a long-finished one.
"""

from __future__ import annotations

import logging
from datetime import datetime

from inboxd.config import Settings
from inboxd.log import log
from inboxd.model import TicketStatus
from inboxd.sla import clocks
from inboxd.store.sqlite import Store

logger = logging.getLogger("inboxd.lifecycle")


def close_resolved(settings: Settings, store: Store, now: datetime) -> int:
    """Close every resolved ticket left alone for ``close_after``; returns how many."""
    closed = 0
    while ticket_ids := store.resolved_before(now - settings.support.close_after):
        for ticket_id in ticket_ids:
            clocks.change_status(store, settings, ticket_id, TicketStatus.CLOSED, now, actor="inboxd")
            closed += 1
    if closed:
        log(logger, logging.INFO, "tickets_closed", count=closed,
            reason=f"resolved and not answered for {settings.support.close_after}")
    return closed
