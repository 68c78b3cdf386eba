"""The text of SLA alerts: what is due or overdue, and the ticket at a glance.

Alerts go to the team (owner, lead, manager), not to customers, so they are in
English like the other internal mails; the wording lives here, beside the other
texts inboxd writes, rather than in the SLA watch that decides when to send.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inboxd.store.tickets import TicketRow

LABELS = {"first_response": "first response", "next_response": "next response", "resolution": "resolution"}


def sla_alert(ticket: TicketRow, *, clock: str, level: str, policy: str, due_text: str,
              minutes_left: float) -> tuple[str, str]:
    """(subject, body) of the alert for ``level`` ("warn-75", "breach", "escalate-1"...) of one clock."""
    what = LABELS[clock]
    headline = {"warn": f"{what} due {due_text} ({_minutes(minutes_left)} of working time left)",
                "breach": f"{what} is overdue: it was due {due_text}",
                "escalate": f"{what} overdue since {due_text}, not yet handled"}[level.split("-")[0]]
    subject = f"[{ticket.ticket_id}] SLA {level.replace('-', ' ')}: {headline}"
    body = "\n".join([headline[:1].upper() + headline[1:] + ".", "",
                      f"Ticket:    {ticket.ticket_id}  {ticket.subject}",
                      f"Customer:  {ticket.requester}", f"Priority:  {ticket.priority}",
                      f"Owner:     {ticket.owner or '(nobody: on the team queue)'}",
                      f"Team:      {ticket.team or '-'}", f"Policy:    {policy}", ""])
    return subject, body


def _minutes(value: float) -> str:
    total = max(0, int(round(value)))
    return f"{total // 60}h {total % 60:02d}m" if total >= 60 else f"{total}m"
