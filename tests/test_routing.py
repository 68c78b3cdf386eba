"""Routing without mail servers: agents.toml and routing.toml validation, the strategies,
route semantics, hot reload of the routing files, and ``inboxd rules check|test``."""

from __future__ import annotations

import os
import shutil
import textwrap
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import Settings, load_settings
from inboxd.routing.agents import Agent, Directory, Team, choose, load_directory
from inboxd.routing.assign import Routing, decide
from inboxd.routing.route import RouteContext, load_routes, route
from inboxd.sla.businesstime import BusinessCalendar
from inboxd.tomlfile import FileProblems

from helpers import MINIMAL_CONFIG

FIXTURES = Path(__file__).parent / "fixtures" / "routing"
TAIPEI = ZoneInfo("Asia/Taipei")
TUESDAY_10 = datetime(2026, 11, 24, 10, 0, tzinfo=TAIPEI)  # Mon 21:00 in New York
TUESDAY_16 = datetime(2026, 11, 24, 16, 0, tzinfo=TAIPEI)  # Tue 03:00 in New York
TUESDAY_23 = datetime(2026, 11, 24, 23, 0, tzinfo=TAIPEI)  # Tue 10:00 in New York
POLICIES = {"standard", "vip"}


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based number of the ``nth`` line of ``text`` containing ``needle``."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= nth, f"{needle!r} not in the text"
    return hits[nth - 1]


def problems_of(call: Any) -> list[str]:
    with pytest.raises(FileProblems) as info:
        call()
    return info.value.problems


# --- agents.toml ----------------------------------------------------------------------------

AGENTS = (FIXTURES / "agents.toml").read_text(encoding="utf-8")
ROUTES = (FIXTURES / "routing.toml").read_text(encoding="utf-8")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def fixture_directory(tmp_path: Path) -> Directory:
    return load_directory(write(tmp_path / "agents.toml", AGENTS), "Asia/Taipei")


def test_directory_resolves_names_and_defaults(tmp_path: Path) -> None:
    d = fixture_directory(tmp_path)
    assert list(d.agents) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert d.teams["general"].members == ("alice@example.com", "bob@example.com", "carol@example.com")
    assert d.teams["general"].lead == "alice@example.com" and d.teams["general"].strategy == "round_robin"
    assert d.teams["billing"].members == ("alice@example.com", "bob@example.com")
    assert d.teams["billing"].lead == "bob@example.com"
    bob, carol = d.agents["bob@example.com"], d.agents["carol@example.com"]
    assert bob.away_until == date(2026, 11, 30) and bob.max_open == 0
    assert carol.calendar.tz == "America/New_York" and carol.max_open == 5
    assert d.find("ALICE") is d.agents["alice@example.com"] and d.find("Bob@Example.com") is bob
    assert d.find("nobody") is None


def test_agent_defaults_and_team_membership_from_agent(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        [[agent]]
        name = "Dan"
        email = "Dan@Example.com"
        teams = ["night"]

        [[team]]
        name = "night"
        """)
    d = load_directory(write(tmp_path / "agents.toml", text), "Europe/London")
    dan = d.agents["dan@example.com"]  # emails are kept lower-case
    assert dan.calendar.tz == "Europe/London" and dan.languages == () and dan.away_until is None
    assert d.teams["night"].members == ("dan@example.com",)  # listing a team makes one a member
    assert d.teams["night"].strategy == "least_open" and d.teams["night"].lead is None
    assert dan.calendar.is_open(datetime(2026, 11, 24, 9, 30, tzinfo=ZoneInfo("Europe/London")))
    assert not dan.calendar.is_open(datetime(2026, 11, 28, 10, 0, tzinfo=ZoneInfo("Europe/London")))  # Saturday


def test_missing_agents_file_is_an_empty_directory(tmp_path: Path) -> None:
    assert load_directory(tmp_path / "none.toml", "UTC") == Directory({}, {})


BUG_HOURS_LINE = ("BUG: agents._agent maps a BusinessCalendar.simple ValueError to the 'hours' line only when the "
                  "message contains the word 'hours'; parse_hours/_parse_days messages ('is not a time range', "
                  "'ends before it starts', 'is not a day of the week') point at the timezone line instead")

AGENT_ERRORS = [
    # (replace this, with this, the line that holds this, message fragment)
    ('languages = ["en"]\n', 'languages = ["en"]\nemial = "bob@example.com"\n', "emial",
     "unknown setting 'emial' for an agent"),
    ('email = "bob@example.com"', 'email = "bob-at-example.com"', "bob-at-example",
     'agent Bob needs an email = "name@example.com"'),
    ('languages = ["en"]', 'languages = ["en", "fr"]', '"fr"', "unknown language 'fr'; use en, zh-Hant"),
    ('timezone = "America/New_York"', 'timezone = "America/Gotham"', "Gotham", "unknown time zone 'America/Gotham'"),
    ('max_open = 5', 'max_open = 5\nhours = []', "hours = []", "no opening hours given"),
    pytest.param('max_open = 5', 'max_open = 5\nhours = ["9-18"]', '"9-18"', "'9-18' is not a time range", id="hours-not-a-range"),
    pytest.param('max_open = 5', 'max_open = 5\nhours = ["18:00-09:00"]', "18:00-09:00", "ends before it starts", id="hours-backwards"),
    pytest.param('max_open = 5', 'max_open = 5\ndays = ["mon-fry"]', "mon-fry", "'fry' is not a day of the week", id="days-misspelled"),
    ("away_until = 2026-11-30", 'away_until = "end of November"', "away_until",
     "away_until must be a date like 2026-12-01, not 'end of November'"),
    ("away_until = 2026-11-30", 'away_until = "2026-02-30"', "away_until", "away_until must be a date"),
    ("max_open = 5", "max_open = -1", "max_open", "max_open must be a whole number"),
    ("max_open = 5", "max_open = true", "max_open", "max_open must be a whole number"),
    ('languages = ["en"]', 'languages = "en"', 'languages = "en"', "'languages' must be a list of texts"),
    ('members = ["Alice", "bob@example.com", "Carol"]', 'members = ["Alice", "Zed"]', '"Zed"',
     "unknown agent 'Zed' in team general"),
    ('lead = "bob@example.com"', 'lead = "boss@example.com"', "boss@",
     "unknown agent 'boss@example.com' as lead of team billing"),
    ('strategy = "least_open"', 'strategy = "random"', '"random"',
     "unknown strategy 'random'; use round_robin, least_open, sticky"),
    ('name = "billing"', 'name = "billing"\ncolour = "green"', "colour", "unknown setting 'colour' for a team"),
    ('name = "billing"', 'name = "billing team"', '"billing team"', "every team needs a name"),
    ('timezone = "America/New_York"', 'timezone = "America/New_York"\nteams = ["sales"]', '"sales"',
     "unknown team 'sales'"),
    ('[[team]]\nname = "general"', '[[teams]]\nname = "general"', "[[teams]]", "unknown entry 'teams'"),
    ('email = "carol@example.com"', 'email = "ALICE@example.com"', "ALICE@", "alice@example.com is listed twice"),
]


@pytest.mark.parametrize("old, new, where, message", AGENT_ERRORS)
def test_agents_file_errors_name_file_and_line(tmp_path: Path, old: str, new: str, where: str,
                                               message: str) -> None:
    assert old in AGENTS
    text = AGENTS.replace(old, new, 1)
    path = write(tmp_path / "agents.toml", text)
    problems = problems_of(lambda: load_directory(path, "Asia/Taipei"))
    expected = f"{path}:{line_of(text, where)}: "
    assert any(p.startswith(expected) and message in p for p in problems), (expected, message, problems)


def test_agents_file_reports_every_problem(tmp_path: Path) -> None:
    text = AGENTS.replace('languages = ["en"]', 'languages = ["fr"]').replace('timezone = "America/New_York"',
                                                                          'timezone = "Nowhere/Land"')
    path = write(tmp_path / "agents.toml", text)
    problems = problems_of(lambda: load_directory(path, "Asia/Taipei"))
    fr = line_of(text, '"fr"')
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{path}:{fr}", f"{path}:{line_of(text, 'Nowhere')}",
        # both teams name Bob, who was rejected: each team reports it at its own members line
        f"{path}:{line_of(text, 'members =', 1)}", f"{path}:{line_of(text, 'members =', 2)}"]
    assert "unknown agent 'bob@example.com' in team general" in problems[2]
    assert "unknown agent 'Bob' in team billing" in problems[3]


def test_agents_file_not_toml(tmp_path: Path) -> None:
    path = write(tmp_path / "agents.toml", '[[agent]]\nname = "Alice\n')
    [problem] = problems_of(lambda: load_directory(path, "UTC"))
    assert problem.startswith(f"{path}:2: not valid TOML")


def test_unknown_team_after_a_rejected_agent_points_at_its_own_line(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        [[agent]]
        name = "Broken"
        email = "broken"

        [[agent]]
        name = "Alice"
        email = "alice@example.com"
        teams = ["sales"]
        """)
    path = write(tmp_path / "agents.toml", text)
    problems = problems_of(lambda: load_directory(path, "UTC"))
    assert f"{path}:3: agent Broken needs an email" in problems[0]
    assert problems[1] == f"{path}:8: unknown team 'sales'"


# --- strategies -----------------------------------------------------------------------------


class FakeHistory:
    """Assignment history for ``choose``: open counts, the last assignee per team, past owners."""

    def __init__(self, open_counts: dict[str, int] | None = None, last: dict[str, str] | None = None,
                 owners: dict[str, str] | None = None) -> None:
        self.open, self.last, self.owners = open_counts or {}, last or {}, owners or {}

    def open_tickets(self, email: str) -> int:
        return self.open.get(email, 0)

    def last_assignee(self, team: str) -> str | None:
        return self.last.get(team)

    def last_owner_of(self, customer: str) -> str | None:
        return self.owners.get(customer)


def agent(user: str, *, tz: str = "Asia/Taipei", languages: tuple[str, ...] = ("en",), away: date | None = None,
          max_open: int = 0, days: tuple[str, ...] = ("mon-fri",), hours: tuple[str, ...] = ("09:00-18:00",)) -> Agent:
    return Agent(user.title(), f"{user}@example.com", ("t",), languages,
                 BusinessCalendar.simple(tz, days=list(days), hours=list(hours)), away, max_open)


def team_of(*agents: Agent, strategy: str = "least_open") -> tuple[Team, Directory]:
    team = Team("t", tuple(a.email for a in agents), None, strategy)
    return team, Directory({a.email: a for a in agents}, {"t": team})


def pick(agents: tuple[Agent, ...], strategy: str, history: FakeHistory | None = None, *, at: datetime = TUESDAY_10,
         customer: str = "customer@example.com", language: str = "en") -> Any:
    team, directory = team_of(*agents, strategy=strategy)
    return choose(team, directory, strategy=strategy, at=at, customer=customer, language=language,
                  history=history or FakeHistory())


A, B, C = agent("a"), agent("b"), agent("c")
E = {x: f"{x}@example.com" for x in "abc"}


def test_round_robin_rotates_in_member_order() -> None:
    owners = []
    last: dict[str, str] = {}
    for _ in range(5):
        choice = pick((A, B, C), "round_robin", FakeHistory(last=dict(last)))
        owners.append(choice.owner)
        last["t"] = choice.owner
    assert owners == [E["a"], E["b"], E["c"], E["a"], E["b"]]
    assert pick((A, B, C), "round_robin").reason == "round robin after nobody yet"
    assert pick((A, B, C), "round_robin", FakeHistory(last={"t": E["b"]})).reason == f"round robin after {E['b']}"


def test_round_robin_skips_unavailable_members() -> None:
    away_b = agent("b", away=date(2026, 11, 24))
    choice = pick((A, away_b, C), "round_robin", FakeHistory(last={"t": E["a"]}))
    assert choice.owner == E["c"]
    assert dict(choice.considered)[E["b"]] == "away until 2026-11-24"
    # wraps around past the end of the list, skipping a full member
    full_a = agent("a", max_open=1)
    choice = pick((full_a, B, C), "round_robin", FakeHistory({E["a"]: 1}, last={"t": E["c"]}))
    assert choice.owner == E["b"] and dict(choice.considered)[E["a"]] == "full (1 open tickets, maximum 1)"
    # the last assignee left the team: start from the top
    assert pick((A, B, C), "round_robin", FakeHistory(last={"t": "gone@example.com"})).owner == E["a"]


def test_least_open_picks_fewest_then_member_order() -> None:
    choice = pick((A, B, C), "least_open", FakeHistory({E["a"]: 3, E["b"]: 1, E["c"]: 2}))
    assert choice.owner == E["b"] and choice.reason == "least open (1 open tickets)"
    assert pick((A, B, C), "least_open", FakeHistory({E["a"]: 2, E["b"]: 1, E["c"]: 1})).owner == E["b"]
    assert pick((C, B, A), "least_open", FakeHistory({E["a"]: 1, E["b"]: 1, E["c"]: 1})).owner == E["c"]
    assert [c for c, _ in pick((A, B, C), "least_open").considered] == [E["a"], E["b"], E["c"]]


def test_sticky_returns_the_previous_owner_even_with_more_open_tickets() -> None:
    history = FakeHistory({E["a"]: 0, E["b"]: 4}, owners={"customer@example.com": E["b"]})
    choice = pick((A, B), "sticky", history)
    assert choice.owner == E["b"]
    assert choice.reason == f"sticky: {E['b']} handled customer@example.com before"
    # another customer: least open
    assert pick((A, B), "sticky", history, customer="customer2@example.com").owner == E["a"]


@pytest.mark.parametrize("unavailable_b, at, why", [
    (agent("b", away=date(2026, 11, 24)), TUESDAY_10, "away until 2026-11-24"),
    (agent("b", tz="America/New_York"), TUESDAY_16, "off shift (Tue 03:00 America/New_York)"),
    (agent("b", max_open=4), TUESDAY_10, "full (4 open tickets, maximum 4)"),
], ids=["away", "off-shift", "full"])
def test_sticky_falls_back_to_least_open(unavailable_b: Agent, at: datetime, why: str) -> None:
    history = FakeHistory({E["a"]: 2, E["b"]: 4, E["c"]: 1}, owners={"customer@example.com": E["b"]})
    choice = pick((A, unavailable_b, C), "sticky", history, at=at)
    assert choice.owner == E["c"]
    assert dict(choice.considered)[E["b"]] == why
    assert "no earlier agent available for customer@example.com, so least open" in choice.reason
    assert choice.reason.startswith("least open (1 open tickets)")


def test_sticky_previous_owner_no_longer_in_team() -> None:
    history = FakeHistory(owners={"customer@example.com": "left@example.com"})
    assert pick((A, B), "sticky", history).owner == E["a"]


def test_away_is_inclusive_of_the_last_day_in_the_agents_zone() -> None:
    away = agent("a", away=date(2026, 11, 24), days=("mon-sun",), hours=("00:00-24:00",))
    assert away.unavailable(datetime(2026, 11, 24, 23, 59, tzinfo=TAIPEI), 0) == "away until 2026-11-24"
    assert away.unavailable(datetime(2026, 11, 25, 0, 0, tzinfo=TAIPEI), 0) is None
    # 2026-11-25 00:30 in Taipei is still the 24th in New York
    ny = agent("a", tz="America/New_York", away=date(2026, 11, 24), days=("mon-sun",), hours=("00:00-24:00",))
    assert ny.unavailable(datetime(2026, 11, 25, 0, 30, tzinfo=TAIPEI), 0) == "away until 2026-11-24"
    assert ny.unavailable(datetime(2026, 11, 25, 14, 0, tzinfo=TAIPEI), 0) is None  # 01:00 on the 25th there


def test_off_shift_is_judged_in_the_agents_own_time_zone() -> None:
    taipei, ny = agent("a"), agent("b", tz="America/New_York")
    # 16:00 in Taipei is 03:00 in New York
    assert taipei.unavailable(TUESDAY_16, 0) is None
    assert ny.unavailable(TUESDAY_16, 0) == "off shift (Tue 03:00 America/New_York)"
    choice = pick((ny, taipei), "least_open", at=TUESDAY_16)
    assert choice.owner == taipei.email
    # 23:00 in Taipei is 10:00 in New York: now the other way round
    assert taipei.unavailable(TUESDAY_23, 0) == "off shift (Tue 23:00 Asia/Taipei)"
    assert ny.unavailable(TUESDAY_23, 0) is None
    assert pick((taipei, ny), "least_open", at=TUESDAY_23).owner == ny.email
    # the closing time itself is off shift
    assert taipei.unavailable(datetime(2026, 11, 24, 18, 0, tzinfo=TAIPEI), 0) == "off shift (Tue 18:00 Asia/Taipei)"


def test_full_means_max_open_reached_and_zero_is_no_limit() -> None:
    assert agent("a", max_open=3).unavailable(TUESDAY_10, 2) is None
    assert agent("a", max_open=3).unavailable(TUESDAY_10, 3) == "full (3 open tickets, maximum 3)"
    assert agent("a", max_open=0).unavailable(TUESDAY_10, 500) is None
    choice = pick((agent("a", max_open=2), B), "least_open", FakeHistory({E["a"]: 2, E["b"]: 7}))
    assert choice.owner == E["b"] and dict(choice.considered)[E["a"]] == "full (2 open tickets, maximum 2)"


def test_away_wins_over_off_shift_in_the_reason() -> None:
    a = agent("a", away=date(2026, 12, 1))
    assert a.unavailable(TUESDAY_23, 0) == "away until 2026-12-01"


def test_language_speakers_first_else_anyone_with_a_note() -> None:
    en, hant, hans = agent("a"), agent("b", languages=("zh-Hant", "en")), agent("c", languages=("zh-Hans",))
    history = FakeHistory({E["a"]: 0, E["b"]: 5, E["c"]: 9})
    choice = pick((en, hant, hans), "least_open", history, language="zh-Hant")
    assert choice.owner == E["b"] and "nobody available speaks" not in choice.reason
    assert pick((en, hant, hans), "round_robin", history, language="zh-Hans").owner == E["c"]
    # the only zh-Hant speaker is away: anyone else, and the reason says so
    away_hant = agent("b", languages=("zh-Hant",), away=date(2026, 12, 31))
    choice = pick((en, away_hant, hans), "least_open", history, language="zh-Hant")
    assert choice.owner == E["a"]
    assert choice.reason == "least open (0 open tickets); nobody available speaks zh-Hant"
    # sticky keeps a previous owner who speaks the language, and ignores one who does not
    sticky = FakeHistory({E["a"]: 0, E["b"]: 5, E["c"]: 9}, owners={"customer@example.com": E["c"]})
    assert pick((en, hant, hans), "sticky", sticky, language="zh-Hans").owner == E["c"]
    assert pick((en, hant, hans), "sticky", sticky, language="en").owner == E["a"]


def test_agents_without_languages_get_no_language_note() -> None:
    plain = agent("a", languages=())
    assert pick((plain,), "least_open", language="zh-Hans").reason == "least open (0 open tickets)"


def test_nobody_available_leaves_the_owner_empty() -> None:
    choice = pick((agent("a", away=date(2026, 12, 1)), agent("b", tz="America/New_York")), "round_robin",
                  at=TUESDAY_16)
    assert choice.owner is None and choice.reason == "nobody in team t is available"
    assert choice.considered == ((E["a"], "away until 2026-12-01"), (E["b"], "off shift (Tue 03:00 America/New_York)"))
    for strategy in ("least_open", "sticky"):
        assert pick((agent("a", max_open=1),), strategy, FakeHistory({E["a"]: 1})).owner is None
    empty, directory = Team("empty", (), None, "least_open"), Directory({}, {})
    choice = choose(empty, directory, strategy="least_open", at=TUESDAY_10, customer="x@example.com",
                    language="en", history=FakeHistory())
    assert choice.owner is None and choice.considered == ()


# --- routing.toml ---------------------------------------------------------------------------


def ctx(*, category: str | None = "shipping", tags: tuple[str, ...] = (), priority: str = "normal",
        language: str = "en", sender: str = "customer@example.com", subject: str = "Where is my parcel?",
        body: str = "It has not arrived.", at: datetime = TUESDAY_10, business_hours: bool = True) -> RouteContext:
    return RouteContext(category=category, tags=tags, priority=priority, language=language, sender=sender,
                        subject=subject, body=body, mailbox=("support@imap.example.com", "INBOX"), at=at,
                        business_hours=business_hours)


def routes_from(tmp_path: Path, text: str, directory: Directory | None = None) -> Any:
    path = write(tmp_path / "rules" / "routing.toml", text)
    return load_routes(path, directory or fixture_directory(tmp_path), POLICIES)


def test_fixture_routes_load(tmp_path: Path) -> None:
    routes = routes_from(tmp_path, ROUTES)
    assert [r.name for r in routes] == ["VIP watchers", "Billing", "Everything else"]
    path = tmp_path / "rules" / "routing.toml"
    assert [r.source for r in routes] == [f"{path}:{line_of(ROUTES, '[[route]]', n)}" for n in (1, 2, 3)]
    vip = routes[0]
    assert vip.cc == ("manager@example.com",) and vip.sla == "vip" and vip.cont and vip.team is None


def test_first_match_wins_and_the_trace_lists_every_route_tried(tmp_path: Path) -> None:
    routes = routes_from(tmp_path, ROUTES)
    d = route(routes, ctx(category="billing"))
    assert (d.team, d.matched, d.cc, d.sla) == ("billing", ["Billing"], [], None)
    assert [(name, ok) for name, _, ok, _ in d.trace] == [("VIP watchers", False), ("Billing", True)]
    assert d.trace[0][3] == ["sender is not VIP"]
    assert d.trace[1][3] == ["category billing is one of billing, refund"]
    d = route(routes, ctx(category="shipping"))
    assert d.team == "general" and d.matched == ["Everything else"]
    assert d.trace[1][3] == ["category shipping is not one of billing, refund"]
    assert d.trace[2][2] and d.trace[2][3] == ["no conditions: catches everything"]


def test_default_route_catches_unclassified_mail(tmp_path: Path) -> None:
    d = route(routes_from(tmp_path, ROUTES), ctx(category=None, tags=("needs-triage",)))
    assert d.team == "general" and d.trace[1][3] == ["category none is not one of billing, refund"]


def test_continue_accumulates_cc_and_a_later_route_sets_the_team(tmp_path: Path) -> None:
    text = ROUTES.replace('name = "Billing"', 'name = "Billing"\ncc = ["lead@example.com", "manager@example.com"]')
    d = route(routes_from(tmp_path, text), ctx(category="refund", tags=("vip",)))
    assert d.matched == ["VIP watchers", "Billing"]
    assert d.team == "billing" and d.sla == "vip"
    assert d.cc == ["manager@example.com", "lead@example.com"]  # no duplicates, in order
    assert d.trace[0][3] == ["sender is VIP"]
    # a VIP mail about something else: watchers from the first route, team from the default
    d = route(routes_from(tmp_path, ROUTES), ctx(category="shipping", tags=("vip",)))
    assert d.matched == ["VIP watchers", "Everything else"] and d.team == "general" and d.cc == ["manager@example.com"]


def test_continue_chain_keeps_going_and_later_values_override(tmp_path: Path) -> None:
    text = textwrap.dedent("""\
        [[route]]
        name = "urgent"
        when.priority = ["high", "urgent"]
        team = "general"
        strategy = "least_open"
        continue = true

        [[route]]
        name = "chinese"
        when.language = ["zh-Hant", "zh-Hans"]
        team = "billing"
        owner = "Alice"
        continue = true

        [[route]]
        name = "default"
        sla = "standard"
        """)
    routes = routes_from(tmp_path, text)
    d = route(routes, ctx(priority="urgent", language="zh-Hant"))
    assert d.matched == ["urgent", "chinese", "default"]
    assert (d.team, d.owner, d.strategy, d.sla) == ("billing", "alice@example.com", "least_open", "standard")
    d = route(routes, ctx(priority="high", language="en"))
    assert (d.team, d.owner, d.sla) == ("general", None, "standard")


def one_route(when: str) -> str:
    return f'[[route]]\nname = "r"\n{when}\nteam = "billing"\n\n[[route]]\nname = "default"\nteam = "general"\n'


@pytest.mark.parametrize("when, context, matched, reason", [
    ('when.hours = "business"', {"business_hours": True}, True, "inside business hours"),
    ('when.hours = "business"', {"business_hours": False}, False, "outside business hours"),
    ('when.hours = "outside"', {"business_hours": False}, True, "outside business hours"),
    ("when.vip = true", {"tags": ("vip", "urgent")}, True, "sender is VIP"),
    ("when.vip = false", {"tags": ("vip",)}, False, "sender is VIP"),
    ("when.vip = false", {"tags": ()}, True, "sender is not VIP"),
    ('when.domain = "acme.com"', {"sender": "it@acme.com"}, True, "domain acme.com is acme.com"),
    ('when.domain = "acme.com"', {"sender": "it@mail.ACME.com"}, True, "domain mail.ACME.com is acme.com"),
    ('when.domain = "acme.com"', {"sender": "it@notacme.com"}, False, "domain notacme.com is not acme.com"),
    ('when.domain = ["acme.com", "example.org"]', {"sender": "x@example.org"}, True,
     "domain example.org is one of acme.com, example.org"),
    ('when.sender = "CEO@acme.com"', {"sender": "ceo@acme.com"}, True, "sender ceo@acme.com is CEO@acme.com"),
    ('when.tags = ["invoice", "legal"]', {"tags": ("urgent", "legal")}, True,
     "tags urgent, legal is one of invoice, legal"),
    ('when.tags = "invoice"', {"tags": ()}, False, "tags none is not invoice"),
    ('when.priority = "urgent"', {"priority": "high"}, False, "priority high is not urgent"),
    ('when.language = "zh-Hant"', {"language": "zh-Hant"}, True, "language zh-Hant is zh-Hant"),
    ('when.category = "none"', {"category": None}, True, "category none is none"),
    ('when.mailbox = "INBOX"', {}, True, "mailbox support@imap.example.com, INBOX is INBOX"),
    ('when.subject.regex = "order #?[0-9]{4}"', {"subject": "Order #1042 late"}, True,
     "subject matches regex ['order #?[0-9]{4}']"),
    ('when.subject.regex = "^re:"', {"subject": "Where is it"}, False, "subject does not regex '^re:'"),
    ('when.subject = "parcel"', {"subject": "My PARCEL"}, True, "subject matches contains ['parcel']"),
    ('when.body.word = ["lawyer", "court"]', {"body": "my lawyers will call"}, False,
     "body does not word ['lawyer', 'court']"),
    ('when.body.word = ["lawyer", "court"]', {"body": "see you in court."}, True,
     "body matches word ['lawyer', 'court']"),
])
def test_conditions(tmp_path: Path, when: str, context: dict[str, Any], matched: bool, reason: str) -> None:
    d = route(routes_from(tmp_path, one_route(when)), ctx(**context))
    name, _, ok, reasons = d.trace[0]
    assert (name, ok) == ("r", matched)
    assert reason in reasons, reasons
    assert d.team == ("billing" if matched else "general")


def test_all_conditions_must_hold_and_each_gives_a_reason(tmp_path: Path) -> None:
    text = one_route('when.category = "billing"\nwhen.priority = ["high", "urgent"]\nwhen.hours = "outside"')
    routes = routes_from(tmp_path, text)
    d = route(routes, ctx(category="billing", priority="high", business_hours=True))
    assert d.trace[0][2] is False and d.team == "general"
    assert d.trace[0][3] == ["category billing is billing", "priority high is one of high, urgent",
                             "inside business hours"]
    assert route(routes, ctx(category="billing", priority="urgent", business_hours=False)).team == "billing"


ROUTE_ERRORS = [
    # (replace this, with this, the line that holds this, message fragment)
    ('team = "billing"', 'tem = "billing"', "tem =", "unknown key 'tem' in a route"),
    ('when.category = ["billing", "refund"]', 'when.categroy = ["billing", "refund"]', "categroy",
     "unknown condition 'categroy'"),
    ('when.category = ["billing", "refund"]', 'when.category = ["billing", "refunds"]', "refunds",
     "unknown category 'refunds'; use account, billing"),
    ('when.category = ["billing", "refund"]', 'when.priority = "asap"', "asap", "unknown priority 'asap'"),
    ('when.category = ["billing", "refund"]', 'when.language = "zh-TW"', "zh-TW", "unknown language 'zh-TW'"),
    ('when.category = ["billing", "refund"]', "when.category = []", "when.category",
     "when.category must be a text or a list of texts"),
    ('team = "billing"', 'team = "sales"', '"sales"', "unknown team 'sales'; teams: general, billing"),
    ('team = "billing"', 'team = "billing"\nowner = "Zed"', "Zed", "unknown agent 'Zed'"),
    ('sla = "vip"', 'sla = "gold"', "gold", "unknown SLA policy 'gold'; policies: standard, vip"),
    ('team = "billing"', 'team = "billing"\nstrategy = "fifo"', "fifo", "unknown strategy 'fifo'"),
    ('when.category = ["billing", "refund"]', "when.subject.regex = '(unclosed'", "unclosed",
     "the regular expression is not valid"),
    ('when.category = ["billing", "refund"]', 'when.subject.startswith = "Re"', "startswith",
     "unknown test 'startswith' for subject"),
    ("when.vip = true", 'when.vip = "yes"', "when.vip", "when.vip must be true or false"),
    ("when.vip = true", 'when.hours = "night"', "night", 'when.hours must be "business" or "outside"'),
    ('cc = ["manager@example.com"]', 'cc = ["manager"]', '"manager"', "cc must be a list of email addresses"),
    ("continue = true", 'continue = "yes"', "continue", "continue must be true or false"),
    ('cc = ["manager@example.com"]\nsla = "vip"\n', "", "VIP watchers",
     "route 'VIP watchers' does nothing: give it a team, owner, cc or sla"),
    ('name = "Billing"\n', "", "when.category", 'every route needs a name = "..."'),
    ('when.category = ["billing", "refund"]', 'when = "billing"', 'when = "billing"', "'when' must be a table"),
    ('name = "Everything else"', 'name = "Everything else"\nwhen.hours = "business"', 'when.hours = "business"',
     "the last route must have no conditions"),
    ("[[route]]\nname = \"VIP watchers\"", "[routes]\nx = 1\n\n[[route]]\nname = \"VIP watchers\"", "[routes]",
     "unknown entry 'routes'; this file holds [[route]] tables"),
    ("continue = true", "continue = true\n[[route]", "[[route]\n", "not valid TOML"),
]


@pytest.mark.parametrize("old, new, where, message", ROUTE_ERRORS)
def test_routing_file_errors_name_file_and_line(tmp_path: Path, old: str, new: str, where: str, message: str) -> None:
    assert old in ROUTES
    text = ROUTES.replace(old, new, 1)
    directory = fixture_directory(tmp_path)
    path = write(tmp_path / "rules" / "routing.toml", text)
    problems = problems_of(lambda: load_routes(path, directory, POLICIES))
    if where.endswith("\n"):  # a line written exactly like this
        line = text.splitlines().index(where.rstrip("\n")) + 1
    elif where == "VIP watchers" or where == "when.category" and "name" in message:
        line = line_of(text, "[[route]]", 1 if where == "VIP watchers" else 2)  # the route's header
    elif "last route" in message:
        line = line_of(text, "[[route]]", 3)
    else:
        line = line_of(text, where)
    expected = f"{path}:{line}: "
    assert any(p.startswith(expected) and message in p for p in problems), (expected, message, problems)


def test_routing_file_reports_every_problem(tmp_path: Path) -> None:
    text = ROUTES.replace('sla = "vip"', 'sla = "gold"').replace('team = "billing"', 'tem = "billing"').replace(
        'team = "general"', 'team = "sales"')
    path = write(tmp_path / "rules" / "routing.toml", text)
    problems = problems_of(lambda: load_routes(path, fixture_directory(tmp_path), POLICIES))
    assert [p.split(": ", 1)[0] for p in problems] == [
        f"{path}:{line_of(text, 'gold')}", f"{path}:{line_of(text, 'tem =')}", f"{path}:{line_of(text, 'sales')}"]


def test_a_broken_route_is_never_silently_dropped(tmp_path: Path) -> None:
    text = ROUTES.replace('when.category = ["billing", "refund"]', 'when.category = "billing"\nwhen.teir = "gold"')
    path = write(tmp_path / "rules" / "routing.toml", text)
    [problem] = problems_of(lambda: load_routes(path, fixture_directory(tmp_path), POLICIES))
    assert problem.startswith(f"{path}:{line_of(text, 'teir')}: unknown condition 'teir'")
    assert "category, tags, priority, language, sender, domain, mailbox, vip, subject, body, hours" in problem


def test_owner_by_name_and_team_checked_against_an_empty_directory(tmp_path: Path) -> None:
    routes = routes_from(tmp_path, '[[route]]\nname = "all"\nowner = "carol"\n')
    assert routes[0].owner == "carol@example.com"
    path = write(tmp_path / "rules" / "routing.toml", '[[route]]\nname = "all"\nteam = "general"\n')
    [problem] = problems_of(lambda: load_routes(path, Directory({}, {}), POLICIES))
    assert problem == f"{path}:3: unknown team 'general' (agents.toml defines none)"


def test_missing_routing_file_means_no_routes(tmp_path: Path) -> None:
    assert load_routes(tmp_path / "routing.toml", Directory({}, {}), POLICIES) == ()


# --- Routing: the files in force, hot reload ---------------------------------------------------

MINIMAL = MINIMAL_CONFIG


def make_config(tmp_path: Path, *, agents: str = AGENTS, routes: str = ROUTES) -> Path:
    """A config with rules/ (triage rule + routing.toml), agents.toml, a VIP domain and two SLA policies."""
    rules = tmp_path / "rules"
    write(rules / "10-triage.toml", (FIXTURES / "10-triage.toml").read_text(encoding="utf-8"))
    write(rules / "routing.toml", routes)
    write(tmp_path / "agents.toml", agents)
    return write(tmp_path / "inboxd.toml", MINIMAL + f"""
[storage]
database = "{tmp_path / 'inboxd.db'}"

[classify]
rules_dir = "{rules}"
model = "{tmp_path / 'no-model.joblib'}"
vip = ["bigcorp.example"]

[routing]
agents = "{tmp_path / 'agents.toml'}"
reply_secret = "test-secret"

[sla]
default_policy = "standard"

[sla.policies.standard]
first_response = "4h"

[sla.policies.vip]
first_response = {{ urgent = "30m", high = "1h", normal = "2h", low = "4h" }}
""")


def settings_at(tmp_path: Path, **kwargs: str) -> Settings:
    return load_settings(make_config(tmp_path, **kwargs))


def bump(path: Path, text: str) -> None:
    """Rewrite the file and move its mtime forward, so the edit is seen within one clock tick."""
    before = path.stat().st_mtime
    path.write_text(text, encoding="utf-8")
    os.utime(path, (before + 2, before + 2))


def test_routing_loads_both_files(tmp_path: Path) -> None:
    routing = Routing(settings_at(tmp_path))
    assert routing.errors == []
    assert [r.name for r in routing.routes] == ["VIP watchers", "Billing", "Everything else"]
    assert set(routing.directory.teams) == {"general", "billing"}
    assert routing.reload_if_changed() is False


def test_hot_reload_of_a_good_then_a_bad_routing_edit(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    routing = Routing(settings)
    path = settings.routing.routes_file
    assert decide(routing, ctx(category="shipping"), FakeHistory()).team == "general"

    bump(path, ROUTES.replace('name = "Everything else"\nteam = "general"',
                              'name = "Everything else"\nteam = "billing"'))
    assert routing.reload_if_changed() is True
    assert routing.errors == []
    assert decide(routing, ctx(category="shipping"), FakeHistory()).team == "billing"
    good = routing.routes

    broken = ROUTES.replace('team = "billing"', 'tem = "billing"')
    bump(path, broken)
    assert routing.reload_if_changed() is False
    assert routing.routes is good  # the last good routes stay in force
    assert routing.errors == [(f"{path}:{line_of(broken, 'tem =')}: unknown key 'tem' in a route; keys: "
                              "cc, continue, name, owner, sla, strategy, team, when")]
    assert decide(routing, ctx(category="shipping"), FakeHistory()).team == "billing"
    assert routing.reload_if_changed() is False and routing.errors  # not re-read until it changes again

    bump(path, ROUTES)  # fixed
    assert routing.reload_if_changed() is True and routing.errors == []
    assert decide(routing, ctx(category="shipping"), FakeHistory()).team == "general"


def test_hot_reload_of_a_good_then_a_bad_agents_edit(tmp_path: Path) -> None:
    settings = settings_at(tmp_path)
    routing = Routing(settings)
    path = settings.routing.agents_file
    history = FakeHistory()
    assert decide(routing, ctx(category="billing"), history).owner == "alice@example.com"

    bump(path, AGENTS.replace('languages = ["en", "zh-Hant"]',
                              'languages = ["en", "zh-Hant"]\naway_until = 2026-12-31'))
    assert routing.reload_if_changed() is True
    a = decide(routing, ctx(category="billing"), history)
    assert a.owner is None and a.reason == "nobody in team billing is available"
    assert a.choice is not None and dict(a.choice.considered) == {
        "alice@example.com": "away until 2026-12-31", "bob@example.com": "away until 2026-11-30"}
    directory = routing.directory

    broken = AGENTS.replace('timezone = "America/New_York"', 'timezone = "US/Gotham"')
    bump(path, broken)
    assert routing.reload_if_changed() is False
    assert routing.directory is directory
    assert routing.errors[0].startswith(f"{path}:{line_of(broken, 'Gotham')}: unknown time zone 'US/Gotham'")

    # an agents edit that breaks a route (the team a route names disappears) is refused too
    no_billing = AGENTS.split("[[team]]\nname = \"billing\"")[0]
    bump(path, no_billing)
    assert routing.reload_if_changed() is False and routing.directory is directory
    routes_file, line = settings.routing.routes_file, line_of(ROUTES, 'team = "billing"')
    assert routing.errors == [f"{routes_file}:{line}: unknown team 'billing'; teams: general"]


def test_routing_starts_with_broken_files_and_routes_nothing(tmp_path: Path) -> None:
    routing = Routing(settings_at(tmp_path, routes=ROUTES.replace('sla = "vip"', 'sla = "platinum"')))
    assert routing.routes == () and routing.errors[0].endswith("unknown SLA policy 'platinum'; policies: standard, vip")
    a = decide(routing, ctx(), FakeHistory())
    assert (a.team, a.owner, a.sla, a.reason) == (None, None, "standard", "no route gives a team or an owner")


def test_decide_fixed_owner_route_strategy_and_sla(tmp_path: Path) -> None:
    routes = textwrap.dedent("""\
        [[route]]
        name = "Legal goes to Carol"
        when.tags = "legal"
        owner = "Carol"
        sla = "vip"

        [[route]]
        name = "Billing by turns"
        when.category = "billing"
        team = "general"
        strategy = "round_robin"

        [[route]]
        name = "default"
        team = "general"
        strategy = "least_open"
        """)
    routing = Routing(settings_at(tmp_path, routes=routes))
    # a fixed owner is not checked for availability (Carol is off shift at 10:00 Taipei)
    a = decide(routing, ctx(tags=("legal",)), FakeHistory())
    assert (a.owner, a.team, a.sla, a.choice) == ("carol@example.com", None, "vip", None)
    assert a.reason == "fixed owner in route 'Legal goes to Carol'"
    history = FakeHistory({"alice@example.com": 9}, last={"general": "alice@example.com"})
    a = decide(routing, ctx(category="billing", at=TUESDAY_16), history)  # round robin after Alice: Bob is away
    assert a.owner == "alice@example.com" and a.sla == "standard"
    assert a.choice is not None and [c for c, _ in a.choice.considered] == [
        "alice@example.com", "bob@example.com", "carol@example.com"]
    a = decide(routing, ctx(category="shipping", at=TUESDAY_23), history)  # least open: only Carol is on shift
    assert a.owner == "carol@example.com" and a.reason == "least open (0 open tickets); nobody available speaks en"


# --- inboxd rules check / test ----------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("INBOXD_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    return CliRunner()


def rules_cli(runner: CliRunner, config: Path, *args: str) -> Any:
    return runner.invoke(main, ["--config", str(config), "rules", *args])


def test_rules_check_counts(runner: CliRunner, tmp_path: Path) -> None:
    result = rules_cli(runner, make_config(tmp_path), "check")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1 triage rules, 3 routes, 3 agents in 2 teams: OK"


def test_rules_check_broken_routing_file(runner: CliRunner, tmp_path: Path) -> None:
    broken = ROUTES.replace('when.category = ["billing", "refund"]', 'when.categroy = "billing"').replace(
        'sla = "vip"', 'sla = "gold"')
    config = make_config(tmp_path, routes=broken)
    result = rules_cli(runner, config, "check")
    assert result.exit_code == 2
    path = tmp_path / "rules" / "routing.toml"
    assert result.stderr.splitlines() == [
        f"{path}:{line_of(broken, 'gold')}: unknown SLA policy 'gold'; policies: standard, vip",
        (f"{path}:{line_of(broken, 'categroy')}: unknown condition 'categroy'; conditions: category, tags, "
        "priority, language, sender, domain, mailbox, vip, subject, body, hours")]
    assert "OK" not in result.stdout


def test_rules_check_broken_agents_file(runner: CliRunner, tmp_path: Path) -> None:
    broken = AGENTS.replace('lead = "Alice"', 'lead = "Alicia"')
    result = rules_cli(runner, make_config(tmp_path, agents=broken), "check")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'agents.toml'}:{line_of(broken, 'Alicia')}: unknown agent 'Alicia' as lead of team general"]


def test_rules_check_reports_a_broken_routing_toml_once(runner: CliRunner, tmp_path: Path) -> None:
    result = rules_cli(runner, make_config(tmp_path, routes=ROUTES + "[[route]\n"), "check")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_rules_check_with_a_draft_folder_holding_agents_toml(runner: CliRunner, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    draft = tmp_path / "draft"
    shutil.copytree(tmp_path / "rules", draft)
    write(draft / "agents.toml", AGENTS.replace("max_open = 5", "max_open = 6"))
    result = rules_cli(runner, config, "check", "--rules", str(draft))
    assert result.exit_code == 0, result.output
    assert "3 routes, 3 agents in 2 teams: OK" in result.stdout


def test_rules_check_draft_folder_without_agents_uses_the_configured_agents(runner: CliRunner,
                                                                            tmp_path: Path) -> None:
    config = make_config(tmp_path)
    draft = tmp_path / "draft"
    write(draft / "routing.toml", '[[route]]\nname = "all to billing"\nteam = "billing"\n')
    result = rules_cli(runner, config, "check", "--rules", str(draft))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "0 triage rules, 1 routes, 3 agents in 2 teams: OK"
    write(draft / "routing.toml", '[[route]]\nname = "all to sales"\nteam = "sales"\n')
    result = rules_cli(runner, config, "check", "--rules", str(draft))
    assert result.exit_code == 2 and f"{draft / 'routing.toml'}:3: unknown team 'sales'" in result.stderr


def test_rules_test_explains_routes_and_owner(runner: CliRunner, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    result = rules_cli(runner, config, "test", str(FIXTURES / "invoice.eml"), "--at", "2026-11-24T10:00")
    assert result.exit_code == 0, result.output
    out = result.stdout
    routing = tmp_path / "rules" / "routing.toml"
    # the classification
    assert "(from wang@bigcorp.example, subject 'Invoice 2041 has the wrong VAT number')" in out
    assert "category:  billing (set by a rule)" in out
    assert "priority:  high  (VIP sender)" in out and "tags:      invoice, vip" in out
    assert "language:  en" in out
    # each route, matched or not, with its reasons
    assert "Routing at Tue 24 Nov 2026 10:00 (Asia/Taipei):" in out
    assert f"MATCHED      VIP watchers  [{routing}:{line_of(ROUTES, '[[route]]', 1)}]" in out
    assert f"MATCHED      Billing  [{routing}:{line_of(ROUTES, '[[route]]', 2)}]" in out
    assert "- sender is VIP" in out and "- category billing is one of billing, refund" in out
    assert "Everything else" not in out  # never tried: Billing decided
    # where it goes, and who was considered
    assert "Team:   billing" in out and "SLA:    vip" in out
    assert "Owner:  alice@example.com  (least open (0 open tickets))" in out
    assert "alice@example.com: available" in out
    assert "bob@example.com: away until 2026-11-30" in out
    assert "Watchers (cc): manager@example.com" in out


def test_rules_test_not_matched_routes_and_round_robin(runner: CliRunner, tmp_path: Path) -> None:
    result = rules_cli(runner, make_config(tmp_path), "test", str(FIXTURES / "question.eml"),
                       "--at", "2026-11-24T10:00")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "not matched  VIP watchers" in out and "- sender is not VIP" in out
    assert "not matched  Billing" in out and "- category none is not one of billing, refund" in out
    assert "MATCHED      Everything else" in out and "- no conditions: catches everything" in out
    assert "Team:   general\nSLA:    standard\n" in out
    assert "Owner:  alice@example.com  (round robin after nobody yet)" in out
    assert "carol@example.com: off shift (Mon 21:00 America/New_York)" in out
    assert "Watchers" not in out


def test_rules_test_at_night_everybody_is_off_shift(runner: CliRunner, tmp_path: Path) -> None:
    result = rules_cli(runner, make_config(tmp_path), "test", str(FIXTURES / "invoice.eml"),
                       "--at", "2026-11-24T22:30")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Routing at Tue 24 Nov 2026 22:30 (Asia/Taipei):" in out
    assert "Owner:  (none: stays on the team queue)  (nobody in team billing is available)" in out
    assert "alice@example.com: off shift (Tue 22:30 Asia/Taipei)" in out
    assert "bob@example.com: away until 2026-11-30" in out
    # an explicit offset is honoured: 10:00 in New York is 23:00 in Taipei, when Carol works
    result = rules_cli(runner, make_config(tmp_path), "test", str(FIXTURES / "question.eml"),
                       "--at", "2026-11-24T10:00-05:00")
    assert "Routing at Tue 24 Nov 2026 23:00 (Asia/Taipei):" in result.stdout
    assert "Owner:  carol@example.com" in result.stdout


def test_rules_test_rejects_a_bad_time_and_broken_files(runner: CliRunner, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    result = rules_cli(runner, config, "test", str(FIXTURES / "question.eml"), "--at", "next tuesday")
    assert result.exit_code == 2 and "is not a date and time like 2026-11-24T10:00" in result.output
    broken = ROUTES.replace('sla = "vip"', 'sla = "gold"')
    write(tmp_path / "rules" / "routing.toml", broken)
    result = rules_cli(runner, config, "test", str(FIXTURES / "question.eml"))
    assert result.exit_code == 2
    assert f"routing.toml:{line_of(broken, 'gold')}: unknown SLA policy 'gold'" in result.stderr


def test_rules_test_with_a_draft_routing_folder(runner: CliRunner, tmp_path: Path) -> None:
    config = make_config(tmp_path)
    draft = tmp_path / "draft"
    shutil.copytree(tmp_path / "rules", draft)
    bump(draft / "routing.toml", ROUTES.replace('name = "Everything else"\nteam = "general"',
                                                'name = "Everything else"\nteam = "billing"'))
    result = rules_cli(runner, config, "test", str(FIXTURES / "question.eml"), "--at", "2026-11-24T10:00",
                       "--rules", str(draft))
    assert result.exit_code == 0, result.output
    assert f"[{draft / 'routing.toml'}:" in result.stdout and "Team:   billing" in result.stdout


def test_settings_fixture_is_isolated(tmp_path: Path) -> None:
    """The config used above resolves every path inside tmp_path (no shared ./rules or ./agents.toml)."""
    s = settings_at(tmp_path)
    assert s.routing.routes_file == tmp_path / "rules" / "routing.toml"
    assert s.routing.agents_file == tmp_path / "agents.toml" and s.routing.reply_secret == "test-secret"
    assert set(s.sla_policies) == POLICIES and s.database == tmp_path / "inboxd.db"


def test_domain_written_with_an_at_sign_matches_or_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path / "rules" / "routing.toml", one_route('when.domain = "@acme.com"'))
    try:
        routes = load_routes(path, fixture_directory(tmp_path), POLICIES)
    except FileProblems as exc:  # rejecting it with its line would do as well
        assert exc.problems[0].startswith(f"{path}:3: ")
        return
    assert route(routes, ctx(sender="it@acme.com")).team == "billing"
