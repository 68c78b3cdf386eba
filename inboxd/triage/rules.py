"""Triage rules: admin-written TOML in ``rules/*.toml``, checked strictly, explained always.

A rule is a ``[[rule]]`` table with a ``name``, a ``when`` block of conditions and a
``then`` block of actions::

    [[rule]]
    name = "Refund requests"
    when.subject.contains = ["refund", "退款", "退货"]
    when.not.from.domain = "partner.example"
    then.category = "refund"
    then.tags = ["refund"]

Conditions in one ``when`` block must all hold; ``any = [{...}, {...}]`` needs one
of several blocks, ``all = [...]`` all of them, ``not = {...}`` negates a block. A
field test is a text or a list of texts (any of them matches, case-insensitive
substring), or a table of operators: ``contains``, ``word`` (whole word),
``regex``, ``is`` (the whole value), ``domain`` (for address fields).

Every problem (unknown field, misspelled operator, bad regex, unknown category)
is reported as ``file:line: message``. Files that fail keep the daemon on the
last good rule set: a typo must never take triage down.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inboxd.errors import FileProblems, RuleError
from inboxd.tomlfile import locate, read_toml, top_level_line

CATEGORIES = ("account", "billing", "refund", "shipping", "technical", "product", "complaint",
              "feedback", "spam")
PRIORITIES = ("low", "normal", "high", "urgent")
TEXT_FIELDS = ("from", "to", "cc", "subject", "body", "language", "attachment_type", "attachment_name",
               "mailbox")
ADDRESS_FIELDS = ("from", "to", "cc")
OPERATORS = ("contains", "word", "regex", "is", "domain")
ACTIONS = {"tags": list, "category": str, "priority": str, "spam": bool, "acknowledge": bool, "stop": bool}



def _negated(test: Callable[[MailFacts], bool]) -> Callable[[MailFacts], bool]:
    return lambda facts: not test(facts)

@dataclass(frozen=True)
class MailFacts:
    """What rules can look at, flattened to text (lists hold every value of a field)."""

    fields: dict[str, tuple[str, ...]]
    headers: dict[str, tuple[str, ...]]


Test = Callable[[MailFacts], bool]


@dataclass(frozen=True)
class Rule:
    name: str
    source: str  # "file:line" of the [[rule]] header, for explanations
    test: Test
    actions: dict[str, Any]


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    sha256: str = ""
    files: tuple[str, ...] = ()


@dataclass
class RuleOutcome:
    """The rules' combined verdict, and which rules fired (for ``classify`` and the event log)."""

    tags: list[str] = field(default_factory=list)
    category: str | None = None
    priority: str | None = None
    spam: bool = False
    acknowledge: bool = True
    fired: list[str] = field(default_factory=list)


# --- compiling ------------------------------------------------------------------------


class _Compiler:
    def __init__(self, path: Path, text: str, index: int) -> None:
        self.path, self.text, self.index = path, text, index

    def where(self, key: str | None = None) -> str:
        return locate(self.path, self.text, "rule", self.index, key)

    def fail(self, key: str | None, message: str) -> RuleError:
        return RuleError([f"{self.where(key)}: {message}"])

    def block(self, spec: Any, context: str) -> Test:
        if not isinstance(spec, dict) or not spec:
            raise self.fail(context, f"'{context}' must be a table of conditions, e.g. when.subject = \"refund\"")
        tests: list[Test] = []
        problems: list[str] = []  # every mistake of the block, not just the first
        for key, value in spec.items():
            try:
                tests.extend(self._condition(key, value))
            except RuleError as exc:
                problems.extend(exc.problems)
        if problems:
            raise RuleError(problems)
        return lambda f: all(t(f) for t in tests)

    def _condition(self, key: str, value: Any) -> list[Test]:
        """The tests of one condition of a block (``any``/``all``/``not`` nest blocks)."""
        tests: list[Test] = []
        if key in ("any", "all"):
            if not isinstance(value, list) or not value:
                raise self.fail(key, f"'{key}' must be a list of condition tables: {key} = [{{...}}, {{...}}]")
            parts = [self.block(v, key) for v in value]
            tests.append((lambda ps: lambda f: any(p(f) for p in ps))(parts) if key == "any"
                         else (lambda ps: lambda f: all(p(f) for p in ps))(parts))
        elif key == "not":
            inner = self.block(value, "not")
            tests.append(_negated(inner))
        elif key == "header":
            if not isinstance(value, dict) or not value:
                raise self.fail(key, 'header conditions look like: when.header."X-Priority" = "1"')
            for name, test in value.items():
                tests.append(self.field_test(name, test, header=True))
        elif key in TEXT_FIELDS:
            tests.append(self.field_test(key, value))
        else:
            raise self.fail(key, f"unknown condition '{key}'; conditions are: "
                                 + ", ".join([*TEXT_FIELDS, "header", "any", "all", "not"]))
        return tests

    def field_test(self, name: str, spec: Any, header: bool = False) -> Test:
        ops = spec if isinstance(spec, dict) else {"is" if name in ("language", "mailbox") else "contains": spec}
        if not ops:
            raise self.fail(name, f"no test given for '{name}'")
        checks: list[Callable[[str], bool]] = []
        for op, value in ops.items():
            where = f"{name}.{op}"
            if op not in OPERATORS:
                raise self.fail(where, f"unknown test '{op}' for '{name}'; tests are: {', '.join(OPERATORS)}")
            if op == "domain" and (header or name not in ADDRESS_FIELDS):
                raise self.fail(where, f"'domain' only works on {', '.join(ADDRESS_FIELDS)}")
            values = value if isinstance(value, list) else [value]
            if not values or not all(isinstance(v, str) and v for v in values):
                raise self.fail(where, f"'{name}.{op}' needs a text or a list of texts")
            try:
                checks.append(text_matcher(op, values))
            except re.error as exc:
                raise self.fail(where, f"the regular expression is not valid: {exc}") from None
        key = name.lower()

        def test(facts: MailFacts) -> bool:
            pool = facts.headers.get(key, ()) if header else facts.fields.get(key, ())
            return any(all(check(v) for check in checks) for v in pool)

        return test

    def actions(self, spec: Any) -> dict[str, Any]:
        if not isinstance(spec, dict) or not spec:
            raise self.fail("then", "a rule needs a 'then' block, e.g. then.tags = [\"refund\"]")
        problems: list[str] = []

        def wrong(key: str, message: str) -> None:
            problems.extend(self.fail(key, message).problems)

        for key, value in spec.items():
            if key not in ACTIONS:
                wrong(key, f"unknown action '{key}'; actions are: {', '.join(ACTIONS)}")
            elif not isinstance(value, ACTIONS[key]):
                wrong(key, f"'then.{key}' must be {ACTIONS[key].__name__.replace('str', 'a text')}")
        if isinstance(spec.get("category"), str) and spec["category"] not in CATEGORIES:
            wrong("category", f"unknown category '{spec['category']}'; categories are: " + ", ".join(CATEGORIES))
        if isinstance(spec.get("priority"), str) and spec["priority"] not in PRIORITIES:
            wrong("priority", f"unknown priority '{spec['priority']}'; use {', '.join(PRIORITIES)}")
        tags = spec.get("tags", [])
        if isinstance(tags, list) and not all(isinstance(t, str) and re.fullmatch(r"[\w-]+", t) for t in tags):
            wrong("tags", "tags are single words (letters, digits, - and _)")
        if problems:
            raise RuleError(problems)
        return dict(spec)


def text_matcher(op: str, values: list[str]) -> Callable[[str], bool]:
    """A case-insensitive test of a text against any of ``values`` (re.error on a bad regex)."""
    lowered = [v.lower() for v in values]
    if op == "contains":
        return lambda text: any(v in text.lower() for v in lowered)
    if op == "is":
        return lambda text: text.strip().lower() in lowered
    if op == "domain":
        return lambda text: any(text.lower().endswith(("@" + v.lstrip("@"), "." + v.lstrip("@"))) for v in lowered)
    if op == "word":  # \b does not separate CJK characters: those fall back to substrings
        patterns = [re.compile(rf"(?<!\w){re.escape(v)}(?!\w)", re.I) if v.isascii() else None for v in values]
        return lambda text: any(p.search(text) if p else v in text.lower() for p, v in zip(patterns, lowered))
    compiled = [re.compile(v, re.I) for v in values]
    return lambda text: any(p.search(text) for p in compiled)


def compile_file(path: Path) -> list[Rule]:
    """Rules of one file, or RuleError listing every problem found in it."""
    try:
        data, text = read_toml(path)
    except FileProblems as exc:
        raise RuleError(exc.problems) from None
    problems: list[str] = []
    for key in data:
        if key not in ("rule", "route", "agent", "team"):  # routes and agents are read by their own modules
            problems.append(f"{path}:{top_level_line(text, key)}: unknown top-level entry '{key}'; "
                            "rule files hold [[rule]] tables")
    rules: list[Rule] = []
    for index, spec in enumerate(data.get("rule", [])):
        c = _Compiler(path, text, index)
        try:
            if not isinstance(spec, dict):
                raise c.fail(None, "each rule must be a [[rule]] table")
            unknown = set(spec) - {"name", "when", "then"}
            if unknown:
                raise c.fail(sorted(unknown)[0], f"unknown key '{sorted(unknown)[0]}' in a rule; "
                                                 "a rule has name, when and then")
            name = spec.get("name")
            if not isinstance(name, str) or not name.strip():
                raise c.fail(None, "every rule needs a name = \"...\"")
            when: Test | None = None
            then: dict[str, Any] | None = None
            try:  # the mistakes of both its when and its then
                when = c.block(spec.get("when"), "when")
            except RuleError as exc:
                problems.extend(exc.problems)
            try:
                then = c.actions(spec.get("then"))
            except RuleError as exc:
                problems.extend(exc.problems)
            if when is not None and then is not None:
                rules.append(Rule(name, c.where(), when, then))
        except RuleError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return rules


def rule_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.toml") if p.is_file())


def load_rules(directory: Path) -> RuleSet:
    """Every ``*.toml`` in ``directory`` in name order; RuleError lists all problems."""
    rules: list[Rule] = []
    problems: list[str] = []
    digest = hashlib.sha256()
    files = rule_files(directory)
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
        try:
            rules.extend(compile_file(path))
        except RuleError as exc:
            problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return RuleSet(tuple(rules), digest.hexdigest(), tuple(str(p) for p in files))


def apply_rules(ruleset: RuleSet, facts: MailFacts) -> RuleOutcome:
    """Run the rules in order; later rules add tags and may override earlier values."""
    out = RuleOutcome()
    for rule in ruleset.rules:
        if not rule.test(facts):
            continue
        out.fired.append(rule.name)
        a = rule.actions
        out.tags.extend(t for t in a.get("tags", []) if t not in out.tags)
        out.category = a.get("category", out.category)
        out.priority = a.get("priority", out.priority)
        out.spam = a.get("spam", out.spam)
        out.acknowledge = a.get("acknowledge", out.acknowledge)
        if a.get("stop"):
            break
    return out


def facts_from(*, from_addr: str | None, to: Iterable[str], cc: Iterable[str], subject: str, body: str,
               language: str, attachments: Iterable[tuple[str | None, str]], mailbox: Iterable[str],
               headers: Iterable[tuple[str, str]]) -> MailFacts:
    atts = list(attachments)
    header_map: dict[str, list[str]] = {}
    for name, value in headers:
        header_map.setdefault(name.lower(), []).append(value)
    return MailFacts(
        fields={"from": (from_addr or "",), "to": tuple(to), "cc": tuple(cc), "subject": (subject,),
                "body": (body,), "language": (language,), "mailbox": tuple(mailbox),
                "attachment_type": tuple(ctype for _, ctype in atts),
                "attachment_name": tuple(name or "" for name, _ in atts)},
        headers={k: tuple(v) for k, v in header_map.items()},
    )
