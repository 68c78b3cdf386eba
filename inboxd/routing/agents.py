"""The agent directory and the assignment strategies.

Agents and teams are described in ``agents.toml`` (``[[agent]]`` and ``[[team]]``
tables). A strategy picks one member of a team, skipping anyone away, off shift
in their own time zone, or at their maximum of open tickets, and always says why
each member was or was not chosen, so ``inboxd rules test`` can explain it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from inboxd.errors import FileProblems
from inboxd.sla.businesstime import BusinessCalendar
from inboxd.tomlfile import locate, read_toml, top_level_line

STRATEGIES = ("round_robin", "least_open", "sticky")
LANGUAGES = ("en", "zh-Hant", "zh-Hans", "other")
AGENT_KEYS = {"name", "email", "teams", "languages", "timezone", "days", "hours", "away_until", "max_open"}
TEAM_KEYS = {"name", "members", "lead", "strategy"}


@dataclass(frozen=True)
class Agent:
    name: str
    email: str
    teams: tuple[str, ...]
    languages: tuple[str, ...]
    calendar: BusinessCalendar  # the agent's own shift, in their own time zone
    away_until: date | None  # last day away (inclusive)
    max_open: int  # 0 means no limit

    def unavailable(self, at: datetime, open_tickets: int) -> str | None:
        """Why this agent cannot take a ticket at ``at``, or None when they can."""
        local = at.astimezone(ZoneInfo(self.calendar.tz))
        if self.away_until is not None and local.date() <= self.away_until:
            return f"away until {self.away_until.isoformat()}"
        if not self.calendar.is_open(at):
            return f"off shift ({local:%a %H:%M} {self.calendar.tz})"
        if self.max_open and open_tickets >= self.max_open:
            return f"full ({open_tickets} open tickets, maximum {self.max_open})"
        return None


@dataclass(frozen=True)
class Team:
    name: str
    members: tuple[str, ...]  # agent emails, in the order written
    lead: str | None
    strategy: str


@dataclass(frozen=True)
class Directory:
    agents: dict[str, Agent]  # by email
    teams: dict[str, Team]

    def find(self, name_or_email: str) -> Agent | None:
        """An agent by email or by (case-insensitive) name."""
        key = name_or_email.strip().lower()
        return self.agents.get(key) or next((a for a in self.agents.values() if a.name.lower() == key), None)


class AssignmentHistory(Protocol):
    """What strategies need to know about past assignments; the Store provides it."""

    def open_tickets(self, email: str) -> int: ...

    def last_assignee(self, team: str) -> str | None: ...

    def last_owner_of(self, customer: str) -> str | None: ...


@dataclass(frozen=True)
class Choice:
    owner: str | None
    reason: str
    considered: tuple[tuple[str, str], ...]  # (agent email, why chosen or skipped)


def choose(team: Team, directory: Directory, *, strategy: str, at: datetime, customer: str, language: str,
           history: AssignmentHistory) -> Choice:
    """Pick an owner in ``team`` by ``strategy``; owner None leaves the ticket on the team queue."""
    available: list[Agent] = []
    considered: list[tuple[str, str]] = []
    for email in team.members:
        agent = directory.agents[email]
        why = agent.unavailable(at, history.open_tickets(email))
        considered.append((email, why or "available"))
        if why is None:
            available.append(agent)
    if not available:
        return Choice(None, f"nobody in team {team.name} is available", tuple(considered))
    speakers = [a for a in available if language in a.languages]
    pool = speakers or available
    note = "" if speakers or not any(a.languages for a in available) else f"; nobody available speaks {language}"
    if strategy == "sticky":
        previous = history.last_owner_of(customer)
        if previous is not None and previous in {a.email for a in pool}:
            return Choice(previous, f"sticky: {previous} handled {customer} before{note}", tuple(considered))
        strategy, note = "least_open", f"{note}; no earlier agent available for {customer}, so least open"
    if strategy == "round_robin":
        order = [a.email for a in pool]
        last = history.last_assignee(team.name)
        members = list(team.members)
        start = members.index(last) + 1 if last in members else 0
        rotation = members[start:] + members[:start]
        owner = next(e for e in rotation if e in order)
        return Choice(owner, f"round robin after {last or 'nobody yet'}{note}", tuple(considered))
    counts = {a.email: history.open_tickets(a.email) for a in pool}
    owner = min(pool, key=lambda a: (counts[a.email], team.members.index(a.email))).email
    return Choice(owner, f"least open ({counts[owner]} open tickets){note}", tuple(considered))


# --- loading ------------------------------------------------------------------------------


def _list_of_text(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def load_directory(path: Path, default_tz: str) -> Directory:
    """Read ``agents.toml``; FileProblems lists every mistake as ``file:line: message``."""
    if not path.exists():
        return Directory({}, {})
    data, text = read_toml(path)
    problems: list[str] = []
    for key in data:
        if key not in ("agent", "team"):
            problems.append(f"{path}:{top_level_line(text, key)}: unknown entry '{key}'; this file holds "
                            "[[agent]] and [[team]] tables")
    agents: dict[str, Agent] = {}
    position: dict[str, int] = {}  # email -> index of its [[agent]] table, for error lines
    for i, spec in enumerate(data.get("agent", [])):
        try:
            agent = _agent(path, text, i, spec, default_tz)
            if agent.email in agents:
                raise FileProblems([f"{locate(path, text, 'agent', i, 'email')}: {agent.email} is listed twice"])
            agents[agent.email] = agent
            position[agent.email] = i
        except FileProblems as exc:
            problems.extend(exc.problems)
    teams: dict[str, Team] = {}
    directory = Directory(agents, teams)
    for i, spec in enumerate(data.get("team", [])):
        try:
            team = _team(path, text, i, spec, directory)
            teams[team.name] = team
        except FileProblems as exc:
            problems.extend(exc.problems)
    for agent in agents.values():
        for name in agent.teams:
            if name not in teams:
                problems.append(f"{locate(path, text, 'agent', position[agent.email], 'teams')}: "
                                f"unknown team '{name}'")
    if problems:
        raise FileProblems(problems)
    for agent in agents.values():  # an agent listing a team is a member of it
        for name in agent.teams:
            team = teams[name]
            if agent.email not in team.members:
                teams[name] = Team(team.name, (*team.members, agent.email), team.lead, team.strategy)
    return Directory(agents, teams)


def _agent(path: Path, text: str, i: int, spec: dict[str, Any], default_tz: str) -> Agent:
    def fail(key: str | None, message: str) -> FileProblems:
        return FileProblems([f"{locate(path, text, 'agent', i, key)}: {message}"])

    for key in spec:
        if key not in AGENT_KEYS:
            raise fail(key, f"unknown setting '{key}' for an agent; settings: {', '.join(sorted(AGENT_KEYS))}")
    name, email = spec.get("name"), spec.get("email")
    if not isinstance(name, str) or not name.strip():
        raise fail(None, "every agent needs a name = \"...\"")
    if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
        raise fail("email", f"agent {name} needs an email = \"name@example.com\"")
    for key in ("teams", "languages", "days", "hours"):
        if key in spec and not _list_of_text(spec[key]):
            raise fail(key, f"'{key}' must be a list of texts in [brackets]")
    bad = [lang for lang in spec.get("languages", []) if lang not in LANGUAGES]
    if bad:
        raise fail("languages", f"unknown language '{bad[0]}'; use {', '.join(LANGUAGES)}")
    tz, days = spec.get("timezone", default_tz), spec.get("days", ["mon-fri"])
    hours = spec.get("hours", ["09:00-18:00"])
    for key, kwargs in (("timezone", {}), ("days", {"days": days}), ("hours", {"hours": hours})):
        try:  # one setting at a time, so the message points at its own line
            BusinessCalendar.simple(tz, **kwargs)
        except ValueError as exc:
            raise fail(key, str(exc)) from None
    calendar = BusinessCalendar.simple(tz, days=days, hours=hours)
    away = spec.get("away_until")
    if away is not None and not isinstance(away, date):
        try:
            away = date.fromisoformat(str(away))
        except ValueError:
            raise fail("away_until", f"away_until must be a date like 2026-12-01, not {away!r}") from None
    max_open = spec.get("max_open", 0)
    if isinstance(max_open, bool) or not isinstance(max_open, int) or max_open < 0:
        raise fail("max_open", "max_open must be a whole number (0 for no limit)")
    return Agent(name.strip(), email.lower(), tuple(spec.get("teams", [])), tuple(spec.get("languages", [])),
                 calendar, away, max_open)


def _team(path: Path, text: str, i: int, spec: dict[str, Any], directory: Directory) -> Team:
    def fail(key: str | None, message: str) -> FileProblems:
        return FileProblems([f"{locate(path, text, 'team', i, key)}: {message}"])

    for key in spec:
        if key not in TEAM_KEYS:
            raise fail(key, f"unknown setting '{key}' for a team; settings: {', '.join(sorted(TEAM_KEYS))}")
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[\w-]+", name):
        raise fail("name", "every team needs a name = \"...\" (letters, digits, - and _)")
    if "members" in spec and not _list_of_text(spec["members"]):
        raise fail("members", "members must be a list of agent names or emails")
    members: list[str] = []
    for member in spec.get("members", []):
        agent = directory.find(member)
        if agent is None:
            raise fail("members", f"unknown agent '{member}' in team {name}")
        members.append(agent.email)
    lead = spec.get("lead")
    lead_agent = directory.find(lead) if isinstance(lead, str) else None
    if lead is not None and lead_agent is None:
        raise fail("lead", f"unknown agent '{lead}' as lead of team {name}")
    strategy = spec.get("strategy", "least_open")
    if strategy not in STRATEGIES:
        raise fail("strategy", f"unknown strategy '{strategy}'; use {', '.join(STRATEGIES)}")
    return Team(name, tuple(members), lead_agent.email if lead_agent else None, strategy)
