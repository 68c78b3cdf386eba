"""Route: which team and owner a ticket goes to, by the admin's ``rules/routing.toml``.

Routes are tried in order. The first one whose conditions all hold decides,
unless it says ``continue = true``: then its actions apply (watchers add up, a
later route may set the team) and the next routes are tried too. The last route
must have no conditions: it catches everything else. Every route records why
it matched or not, which is what ``inboxd rules test`` prints.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from inboxd.errors import FileProblems
from inboxd.routing.agents import STRATEGIES, Directory
from inboxd.tomlfile import locate, read_toml, top_level_line
from inboxd.triage.rules import CATEGORIES, PRIORITIES, text_matcher

ROUTE_KEYS = {"name", "when", "team", "owner", "strategy", "cc", "sla", "continue"}
LIST_CONDITIONS = ("category", "tags", "priority", "language", "sender", "domain", "mailbox")
CONDITIONS = (*LIST_CONDITIONS, "vip", "subject", "body", "hours")


@dataclass(frozen=True)
class RouteContext:
    """The facts a route can test: the classification, the sender, the mail and the time."""

    category: str | None
    tags: tuple[str, ...]
    priority: str
    language: str
    sender: str
    subject: str
    body: str
    mailbox: tuple[str, ...]
    at: datetime
    business_hours: bool  # inside the team's business hours at ``at``


Check = Callable[[RouteContext], tuple[bool, str]]


@dataclass(frozen=True)
class Route:
    name: str
    source: str  # file:line
    checks: tuple[Check, ...]
    team: str | None = None
    owner: str | None = None
    strategy: str | None = None
    cc: tuple[str, ...] = ()
    sla: str | None = None
    cont: bool = False


@dataclass
class RouteDecision:
    team: str | None = None
    owner: str | None = None
    strategy: str | None = None
    cc: list[str] = field(default_factory=list)
    sla: str | None = None
    matched: list[str] = field(default_factory=list)
    trace: list[tuple[str, str, bool, list[str]]] = field(default_factory=list)  # name, source, matched, why


def route(routes: tuple[Route, ...], ctx: RouteContext) -> RouteDecision:
    decision = RouteDecision()
    for r in routes:
        results = [check(ctx) for check in r.checks]
        ok = all(result for result, _ in results)
        reasons = [why for _, why in results] or ["no conditions: catches everything"]
        decision.trace.append((r.name, r.source, ok, reasons))
        if not ok:
            continue
        decision.matched.append(r.name)
        decision.team = r.team or decision.team
        decision.owner = r.owner or decision.owner
        decision.strategy = r.strategy or decision.strategy
        decision.sla = r.sla or decision.sla
        decision.cc.extend(c for c in r.cc if c not in decision.cc)
        if not r.cont:
            break
    return decision


# --- compiling ----------------------------------------------------------------------------


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _list_check(key: str, wanted: list[str]) -> Check:
    lowered = [w.lower().lstrip("@") if key == "domain" else w.lower() for w in wanted]
    shown = wanted[0] if len(wanted) == 1 else f"one of {', '.join(wanted)}"

    def get(ctx: RouteContext) -> tuple[str, ...]:
        if key == "tags":
            return ctx.tags
        if key == "mailbox":
            return ctx.mailbox
        if key == "domain":
            return (ctx.sender.rpartition("@")[2],)
        value = getattr(ctx, key)
        return (value or "none",)

    def check(ctx: RouteContext) -> tuple[bool, str]:
        have = get(ctx)
        if key == "domain":
            ok = any(have[0].lower() == w or have[0].lower().endswith("." + w) for w in lowered)
        else:
            ok = any(h.lower() in lowered for h in have)
        shown_have = ", ".join(have) if have else "none"
        return ok, f"{key} {shown_have} {'is' if ok else 'is not'} {shown}"

    return check


def _text_check(key: str, spec: Any, fail: Callable[[str, str], FileProblems]) -> Check:
    ops = spec if isinstance(spec, dict) else {"contains": spec}
    tests = []
    for op, value in ops.items():
        if op not in ("contains", "word", "regex"):
            raise fail(f"{key}.{op}", f"unknown test '{op}' for {key}; use contains, word or regex")
        values = _values(value)
        if not values or not all(isinstance(v, str) and v for v in values):
            raise fail(f"{key}.{op}", f"'{key}.{op}' needs a text or a list of texts")
        try:
            tests.append((op, values, text_matcher(op, values)))
        except re.error as exc:
            raise fail(f"{key}.{op}", f"the regular expression is not valid: {exc}") from None

    def check(ctx: RouteContext) -> tuple[bool, str]:
        text = getattr(ctx, key)
        for op, values, test in tests:
            if not test(text):
                return False, f"{key} does not {op} {values if len(values) > 1 else values[0]!r}"
        return True, f"{key} matches {', '.join(f'{op} {v!r}' for op, v, _ in tests)}"

    return check


def _compile(path: Path, text: str, i: int, spec: Any, directory: Directory, policies: set[str]) -> Route:
    def fail(key: str | None, message: str) -> FileProblems:
        return FileProblems([f"{locate(path, text, 'route', i, key)}: {message}"])

    if not isinstance(spec, dict):
        raise fail(None, "each route must be a [[route]] table")
    for key in spec:
        if key not in ROUTE_KEYS:
            raise fail(key, f"unknown key '{key}' in a route; keys: {', '.join(sorted(ROUTE_KEYS))}")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip():
        raise fail(None, "every route needs a name = \"...\"")
    when = spec.get("when", {})
    if not isinstance(when, dict):
        raise fail("when", "'when' must be a table of conditions, e.g. when.category = \"billing\"")
    checks: list[Check] = []
    for key, value in when.items():
        if key in LIST_CONDITIONS:
            values = _values(value)
            if not values or not all(isinstance(v, str) and v for v in values):
                raise fail(key, f"when.{key} must be a text or a list of texts")
            allowed = {"category": (*CATEGORIES, "none"), "priority": PRIORITIES,
                       "language": ("en", "zh-Hant", "zh-Hans", "other")}.get(key)
            bad = [v for v in values if allowed and v not in allowed]
            if bad:
                raise fail(key, f"unknown {key} '{bad[0]}'; use {', '.join(allowed or ())}")
            checks.append(_list_check(key, values))
        elif key == "vip":
            if not isinstance(value, bool):
                raise fail(key, "when.vip must be true or false")
            checks.append(partial(_vip_check, value))
        elif key in ("subject", "body"):
            checks.append(_text_check(key, value, fail))
        elif key == "hours":
            if value not in ("business", "outside"):
                raise fail(key, "when.hours must be \"business\" or \"outside\"")
            checks.append(partial(_hours_check, value))
        else:
            raise fail(key, f"unknown condition '{key}'; conditions: {', '.join(CONDITIONS)}")
    team, owner, strategy, sla = (spec.get(k) for k in ("team", "owner", "strategy", "sla"))
    if team is not None and team not in directory.teams:
        raise fail("team", f"unknown team '{team}'" + (f"; teams: {', '.join(directory.teams)}"
                                                         if directory.teams else " (agents.toml defines none)"))
    owner_agent = directory.find(owner) if isinstance(owner, str) else None
    if owner is not None and owner_agent is None:
        raise fail("owner", f"unknown agent '{owner}'")
    if strategy is not None and strategy not in STRATEGIES:
        raise fail("strategy", f"unknown strategy '{strategy}'; use {', '.join(STRATEGIES)}")
    if sla is not None and sla not in policies:
        raise fail("sla", f"unknown SLA policy '{sla}'; policies: {', '.join(sorted(policies))}")
    cc = _values(spec.get("cc", []))
    if not all(isinstance(c, str) and re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", c) for c in cc):
        raise fail("cc", "cc must be a list of email addresses")
    cont = spec.get("continue", False)
    if not isinstance(cont, bool):
        raise fail("continue", "continue must be true or false")
    if not any((team, owner, sla, cc)):
        raise fail(None, f"route '{name}' does nothing: give it a team, owner, cc or sla")
    return Route(name.strip(), locate(path, text, "route", i), tuple(checks), team,
                 owner_agent.email if owner_agent else None, strategy, tuple(c.lower() for c in cc), sla, cont)


def load_routes(path: Path, directory: Directory, policies: set[str]) -> tuple[Route, ...]:
    """Compile ``routing.toml``; FileProblems lists every mistake as ``file:line: message``."""
    if not path.exists():
        return ()
    data, text = read_toml(path)
    problems = [f"{path}:{top_level_line(text, key)}: unknown entry '{key}'; this file holds [[route]] tables"
                for key in data if key != "route"]
    routes: list[Route] = []
    for i, spec in enumerate(data.get("route", [])):
        try:
            routes.append(_compile(path, text, i, spec, directory, policies))
        except FileProblems as exc:
            problems.extend(exc.problems)
    if routes and not problems and routes[-1].checks:
        problems.append(f"{routes[-1].source}: the last route must have no conditions, so that it catches "
                        "every ticket the others do not (a default route)")
    if problems:
        raise FileProblems(problems)
    return tuple(routes)


def _vip_check(want: bool, ctx: RouteContext) -> tuple[bool, str]:
    return ("vip" in ctx.tags) == want, f"sender {'is' if 'vip' in ctx.tags else 'is not'} VIP"


def _hours_check(want: str, ctx: RouteContext) -> tuple[bool, str]:
    return ctx.business_hours == (want == "business"), \
        f"{'inside' if ctx.business_hours else 'outside'} business hours"
