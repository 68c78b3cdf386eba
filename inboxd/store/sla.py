"""SLA clocks and their alerts in the database: ``sla_timers``, ``sla_alerts`` and the placement digest.

The clock rules live in ``inboxd.sla``; this is only how their state is kept.
Rows come back as dicts so the store does not depend on the SLA package.
Each write joins the caller's ``tx()`` when there is one, so a clock change and
the event or mail that goes with it still commit together.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from inboxd.store.base import iso

if TYPE_CHECKING:
    from inboxd.store.sqlite import Store

NEVER = "9999-12-31T00:00:00+00:00"  # next_alert_at of a clock whose alerts have all gone out
LEVELS_DIGEST_KEY = "sla_levels"


class SlaRepository:
    """The SQL of the SLA clocks, on one ``Store`` (and so one thread's connection)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def timers(self, ticket_id: str, states: tuple[str, ...]) -> list[dict[str, Any]]:
        """A ticket's clocks in the given states, oldest first (the order they were started)."""
        marks = ",".join("?" * len(states))
        return self.store.query(f"SELECT * FROM sla_timers WHERE ticket_id=? AND state IN ({marks}) ORDER BY id",
                                (ticket_id, *states))

    def start_timer(self, ticket_id: str, kind: str, *, policy: str, calendar: str, started_at: datetime,
                    due_at: datetime, total_minutes: float) -> None:
        """A running clock; policy and calendar are kept by name so later edits don't move a started clock."""
        with self.store.tx():
            self.store.conn.execute(
                "INSERT INTO sla_timers (ticket_id, kind, policy, calendar, state, started_at, due_at, "
                "total_minutes) VALUES (?,?,?,?,'running',?,?,?)",
                (ticket_id, kind, policy, calendar, iso(started_at), iso(due_at), total_minutes))

    def stop_timer(self, timer_id: int, stopped_at: datetime, *, met: bool) -> None:
        """Stop a clock for good, remembering whether its target was kept (for reports)."""
        with self.store.tx():
            self.store.conn.execute("UPDATE sla_timers SET state='stopped', stopped_at=?, met=? WHERE id=?",
                                    (iso(stopped_at), int(met), timer_id))

    def pause_timer(self, timer_id: int, remaining_minutes: float) -> None:
        """Pause a clock, keeping the business minutes it had left to compute a new due time on resume."""
        with self.store.tx():
            self.store.conn.execute("UPDATE sla_timers SET state='paused', remaining_minutes=? WHERE id=?",
                                    (remaining_minutes, timer_id))

    def resume_timer(self, timer_id: int, due_at: datetime) -> None:
        """Run a paused clock again with its new due time; the watch places its alerts anew."""
        with self.store.tx():
            self.store.conn.execute("UPDATE sla_timers SET state='running', remaining_minutes=NULL, due_at=?, "
                                    "next_alert_at=NULL WHERE id=?", (iso(due_at), timer_id))

    def running_with_alert_due(self, now: datetime, *, after: tuple[str, int] = ("", 0),
                               limit: int = 100) -> list[dict[str, Any]]:
        """Running clocks with an alert due by ``now`` or not yet placed, soonest due first, a page at a time.

        Only these are worth checking: placing alert times costs calendar arithmetic. Paged
        after the ``(due_at, id)`` of the previous page's last row, the order of the
        ``(state, due_at)`` index, so a backlog of new clocks is held one page at a time and
        each page is one range scan of that index.
        """
        return self.store.query("SELECT * FROM sla_timers WHERE state='running' AND (next_alert_at IS NULL OR "
                                "next_alert_at<=?) AND (due_at, id)>(?, ?) ORDER BY due_at, id LIMIT ?",
                                (iso(now), *after, limit))

    def levels_done(self, timer_ids: list[int]) -> dict[int, set[str]]:
        """Alert levels already recorded for each of these clocks, sent or superseded: each fires at most once."""
        done: dict[int, set[str]] = {timer_id: set() for timer_id in timer_ids}
        marks = ",".join("?" * len(timer_ids))
        for row in self.store.query(f"SELECT timer_id, level FROM sla_alerts WHERE timer_id IN ({marks})",
                                    tuple(timer_ids)):
            done[row["timer_id"]].add(row["level"])
        return done

    def set_next_alert(self, timer_id: int, at: datetime | None) -> None:
        """When the clock's next alert is due; None once every level has gone out, so the watch skips it."""
        with self.store.tx():
            self.store.conn.execute("UPDATE sla_timers SET next_alert_at=? WHERE id=?",
                                    (iso(at) if at is not None else NEVER, timer_id))

    def record_superseded(self, ticket_id: str, timer_id: int, level: str, now: datetime) -> None:
        """A level that passed while inboxd was down and was outranked by a later one: kept, never sent."""
        with self.store.tx():
            self.store.conn.execute("INSERT OR IGNORE INTO sla_alerts (ticket_id, timer_id, level, at, recipients, "
                                    "sent) VALUES (?,?,?,?,'[]',0)", (ticket_id, timer_id, level, iso(now)))

    def record_sent(self, ticket_id: str, timer_id: int, level: str, now: datetime, recipients: list[str]) -> None:
        """A level that was queued. A plain INSERT: firing a level twice raises and undoes the mail queued with it."""
        with self.store.tx():
            self.store.conn.execute("INSERT INTO sla_alerts (ticket_id, timer_id, level, at, recipients, sent) "
                                    "VALUES (?,?,?,?,?,1)", (ticket_id, timer_id, level, iso(now),
                                                             json.dumps(recipients)))

    def told_of_breach(self, timer_id: int) -> set[str]:
        """Everyone already alerted of this clock's breach (by the breach or an escalation level)."""
        rows = self.store.query("SELECT recipients FROM sla_alerts WHERE timer_id=? AND sent=1 AND "
                                "(level='breach' OR level LIKE 'escalate-%')", (timer_id,))
        return {address for r in rows for address in json.loads(r["recipients"])}

    def forget_placements_unless(self, digest: str) -> None:
        """Unplace every running clock's next alert unless it was placed with the settings that give ``digest``.

        Placed alert times depend on the warning, escalation and calendar settings of their day.
        """
        with self.store.tx():
            rows = self.store.query("SELECT value FROM meta WHERE key=?", (LEVELS_DIGEST_KEY,))
            if rows and rows[0]["value"] == digest:
                return
            self.store.conn.execute("UPDATE sla_timers SET next_alert_at=NULL WHERE state='running'")
            self.store.conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) "
                                    "DO UPDATE SET value=excluded.value", (LEVELS_DIGEST_KEY, digest))
