"""``inboxd rules``: check, test and replay triage and routing rules before they go live.

``check`` validates every file an admin edits (rules/*.toml, rules/routing.toml,
agents.toml). ``test`` explains, step by step, what would happen to one saved
mail. ``replay`` runs a draft rule folder over the mail already stored and shows
what would have been different, so an edit can be tried safely before saving.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from inboxd.app import classifier_for
from inboxd.cli.triage import config_or_defaults, print_classification
from inboxd.config import RoutingSettings, Settings
from inboxd.log import setup_logging
from inboxd.model import ParsedMessage
from inboxd.routing.assign import Assignment, Routing, decide
from inboxd.routing.route import RouteContext
from inboxd.store import views
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classification, Classifier
from inboxd.triage.language import detect_language
from inboxd.triage.parse import parse_message
from inboxd.triage.rules import facts_from


class _NoHistory:
    """Assignment history when there is no database yet: nobody has tickets."""

    def open_tickets(self, email: str) -> int:
        return 0

    def last_assignee(self, team: str) -> str | None:
        return None

    def last_owner_of(self, customer: str) -> str | None:
        return None


def _with_rules(settings: Settings, rules_dir: Path | None) -> Settings:
    """The settings with a draft rules folder (its routing.toml, and its agents.toml if it has one)."""
    if rules_dir is None:
        return settings
    agents = rules_dir / "agents.toml" if (rules_dir / "agents.toml").exists() else settings.routing.agents_file
    return replace(settings, classify=replace(settings.classify, rules_dir=rules_dir),
                   routing=RoutingSettings(agents, rules_dir / "routing.toml", settings.routing.reply_secret))


def _load(settings: Settings) -> tuple[Classifier, Routing]:
    """Classifier and routing for a command; any file problem is printed and exits with code 2."""
    setup_logging("critical")
    classifier, routing = classifier_for(settings.classify), Routing(settings)
    problems = list(dict.fromkeys(classifier.rule_errors + routing.errors))  # routing.toml is read by both
    if problems:
        for problem in problems:
            click.echo(problem, err=True)
        sys.exit(2)
    return classifier, routing


@click.group()
def rules() -> None:
    """Check and try out triage rules, routes and the agent list."""


RULES_OPTION = click.option("--rules", "rules_dir", type=click.Path(path_type=Path, file_okay=False),
                            help="A rules folder to use instead of [classify] rules_dir (e.g. a draft copy).")


@rules.command("check")
@RULES_OPTION
@click.pass_context
def rules_check(ctx: click.Context, rules_dir: Path | None) -> None:
    """Check rules/*.toml, rules/routing.toml and agents.toml; exit code 2 with file:line for each problem."""
    _, settings = config_or_defaults(ctx)
    settings = _with_rules(settings, rules_dir)
    if not settings.classify.rules_dir.is_dir():
        click.echo(f"{settings.classify.rules_dir}: no such folder", err=True)
        sys.exit(2)
    classifier, routing = _load(settings)
    click.echo(f"{len(classifier.ruleset.rules)} triage rules, {len(routing.routes)} routes, "
               f"{len(routing.directory.agents)} agents in {len(routing.directory.teams)} teams: OK")


def _classify(classifier: Classifier, parsed: ParsedMessage, mailbox: tuple[str, ...]) -> Classification:
    language = detect_language(f"{parsed.subject}\n{parsed.text}", parsed.charset_used)
    facts = facts_from(from_addr=parsed.from_addr, to=parsed.to, cc=parsed.cc, subject=parsed.subject,
                       body=parsed.text, language=language, mailbox=mailbox,
                       attachments=[(a.filename, a.content_type) for a in parsed.attachments], headers=parsed.headers)
    return classifier.classify(subject=parsed.subject, body=parsed.text, facts=facts, sender=parsed.from_addr,
                               language=language)


def _context(settings: Settings, parsed: ParsedMessage, c: Classification, at: datetime,
             mailbox: tuple[str, ...]) -> RouteContext:
    return RouteContext(category=c.category, tags=c.tags, priority=c.priority, language=c.language,
                        sender=parsed.from_addr or "", subject=parsed.subject, body=parsed.text, mailbox=mailbox,
                        at=at, business_hours=settings.support.calendar.is_open(at))


def _parse_at(text: str | None, tz: str) -> datetime:
    if text is None:
        return utcnow()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"'{text}' is not a date and time like 2026-11-24T10:00") from None
    return at if at.tzinfo else at.replace(tzinfo=ZoneInfo(tz))


@rules.command("test")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--at", "at_text", metavar="DATETIME",
              help="Pretend the mail arrives at this time, e.g. 2026-11-24T20:30 (team time zone if none given).")
@RULES_OPTION
@click.pass_context
def rules_test(ctx: click.Context, file: Path, at_text: str | None, rules_dir: Path | None) -> None:
    """Explain what would happen to a saved mail: its classification, each route, and the owner."""
    configured, settings = config_or_defaults(ctx)
    settings = _with_rules(settings, rules_dir)
    classifier, routing = _load(settings)
    at = _parse_at(at_text, settings.support.timezone)
    parsed = parse_message(file.read_bytes())
    mailbox = (settings.imap.account, settings.imap.folder)
    verdict = _classify(classifier, parsed, mailbox)
    print_classification(f"{file} (from {parsed.from_addr}, subject {parsed.subject!r})", verdict)
    store = Store(settings.database) if configured and settings.database.exists() else None
    assignment = decide(routing, _context(settings, parsed, verdict, at, mailbox), store or _NoHistory())
    local = at.astimezone(ZoneInfo(settings.support.timezone))
    click.echo(f"\nRouting at {local:%a %d %b %Y %H:%M} ({settings.support.timezone}):")
    if not assignment.decision.trace:
        click.echo(f"  no routes ({settings.routing.routes_file} is missing)")
    for name, source, matched, reasons in assignment.decision.trace:
        click.echo(f"  {'MATCHED    ' if matched else 'not matched'}  {name}  [{source}]")
        for reason in reasons:
            click.echo(f"                 - {reason}")
    click.echo(f"\nTeam:   {assignment.team or '-'}\nSLA:    {assignment.sla}\n"
               f"Owner:  {assignment.owner or '(none: stays on the team queue)'}  ({assignment.reason})")
    if assignment.choice:
        for email, why in assignment.choice.considered:
            click.echo(f"          {email}: {why}")
    if assignment.watchers:
        click.echo(f"Watchers (cc): {', '.join(assignment.watchers)}")


def _parse_since(text: str) -> timedelta:
    m = re.fullmatch(r"\s*(\d+)\s*([dhw])\s*", text)
    if not m:
        raise click.BadParameter(f"'{text}' is not a period like 30d, 12h or 2w")
    unit = {"d": "days", "h": "hours", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


@rules.command("replay")
@click.option("--since", default="30d", show_default=True, help="How far back: e.g. 30d, 12h, 2w.")
@RULES_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_replay(ctx: click.Context, since: str, rules_dir: Path | None, as_json: bool) -> None:
    """Run draft rules over stored mail and show, ticket by ticket, what would change."""
    configured, current = config_or_defaults(ctx)
    if not configured or not current.database.exists():
        click.echo("replay needs the configuration file and the database of a running inboxd", err=True)
        sys.exit(2)
    settings = _with_rules(current, rules_dir)
    classifier, routing = _load(settings)
    store = Store(settings.database)
    tickets = views.replay_tickets(store, utcnow() - _parse_since(since))
    changes: list[dict[str, Any]] = []
    for replay in tickets:
        t, parsed, mailbox = replay.ticket, parse_message(replay.raw), replay.mailbox
        verdict = _classify(classifier, parsed, mailbox)
        at = datetime.fromisoformat(t.created_at)
        history = views.HistoryBefore(store, t)
        new: Assignment = decide(routing, _context(settings, parsed, verdict, at, mailbox), history)
        before = {"team": t.team, "owner": t.owner, "sla": t.sla_policy, "category": t.category,
                  "tags": sorted(set(store.tags(t.ticket_id)) - {"auto-reply"})}
        after = {"team": new.team, "owner": new.owner, "sla": new.sla, "category": verdict.category,
                 "tags": sorted(set(verdict.tags) - {"auto-reply"})}
        diff = {k: [before[k], after[k]] for k in before if before[k] != after[k]}
        if diff:
            changes.append({"ticket": t.ticket_id, "subject": t.subject, "changes": diff,
                            "routes": new.decision.matched})
    if as_json:
        click.echo(json.dumps({"tickets": len(tickets), "changed": changes}, ensure_ascii=False, indent=2))
        return
    for change in changes:
        click.echo(f"{change['ticket']}  {change['subject'][:60]}")
        for key, (old, now) in change["changes"].items():
            click.echo(f"    {key:<9} {_show(old)}  ->  {_show(now)}")
    counts: dict[str, int] = {}
    for change in changes:
        for key in change["changes"]:
            counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{key} {n}" for key, n in sorted(counts.items())) or "nothing"
    click.echo(f"\n{len(tickets)} tickets since {since} replayed; {len(changes)} would change ({summary}).")


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return "-" if value is None else str(value)
