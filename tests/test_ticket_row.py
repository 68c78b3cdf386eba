"""The typed ticket row: one field per column of ``tickets``, and the read-only mapping side kept
for templates, JSON output and callers that still index by column name."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from inboxd.model import TicketStatus
from inboxd.store.sqlite import Store
from inboxd.store.tickets import TicketRow

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=ZoneInfo("Asia/Taipei"))


@pytest.fixture
def store() -> Store:
    s = Store(":memory:")
    ticket_id = s.create_ticket("SUP", subject="Where is my order?", requester="amy@example.com",
                                requester_name="Amy", language="en", now=NOW)
    s.update_ticket(ticket_id, NOW, category="shipping", confidence=0.75, spam=1, owner="bo@example.com")
    return s


def test_fields_are_the_columns_in_table_order(store: Store) -> None:
    columns = [r["name"] for r in store.query("PRAGMA table_info(tickets)")]
    assert [f.name for f in dataclasses.fields(TicketRow)] == columns
    assert list(store.ticket("SUP-1").keys()) == columns  # type: ignore[union-attr]


def test_typed_values(store: Store) -> None:
    ticket = store.ticket("SUP-1")
    assert ticket is not None
    assert ticket.status is TicketStatus.NEW and ticket.spam is True and ticket.confidence == 0.75
    assert (ticket.id, ticket.ticket_id, ticket.owner, ticket.team) == (1, "SUP-1", "bo@example.com", None)
    assert ticket.created_at == "2026-11-24T02:00:00.000000+00:00"  # the stored text, as before
    with pytest.raises(dataclasses.FrozenInstanceError):
        ticket.owner = "eve@example.com"  # type: ignore[misc]
    assert store.ticket("SUP-404") is None


def test_as_dict_prints_as_the_stored_row_did(store: Store) -> None:
    [raw] = store.query("SELECT * FROM tickets WHERE ticket_id='SUP-1'")
    ticket = store.ticket("SUP-1")
    assert ticket is not None
    before = json.dumps({**raw, "spam": bool(raw["spam"])}, indent=2, ensure_ascii=False)
    assert json.dumps(ticket.as_dict(), indent=2, ensure_ascii=False) == before
    assert type(ticket.as_dict()["status"]) is str


def test_mapping_side_reads_the_fields(store: Store) -> None:
    ticket = store.ticket("SUP-1")
    assert ticket is not None
    assert ticket["status"] == "new" and ticket["owner"] == ticket.owner
    assert "owner" in ticket and "raw" not in ticket
    assert dict(ticket) == ticket.as_dict()
    with pytest.raises(KeyError):
        ticket["raw"]
    with pytest.raises(KeyError):
        ticket["__class__"]
