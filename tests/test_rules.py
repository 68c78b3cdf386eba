"""Triage rules: every condition and operator, the actions, exact ``file:line`` errors,
the shipped rules, ``inboxd rules check`` and hot reload in the classifier."""

from __future__ import annotations

import os
import re
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.triage.classify import Classifier
from inboxd.triage.rules import (
    CATEGORIES,
    MailFacts,
    RuleError,
    RuleSet,
    apply_rules,
    compile_file,
    facts_from,
    load_rules,
)

from helpers import MINIMAL_CONFIG

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "rules"


def facts(**kw: Any) -> MailFacts:
    base: dict[str, Any] = dict(from_addr="mei@customer.example", to=["support@example.com"], cc=[],
                                subject="", body="", language="en", attachments=[], mailbox=["INBOX"],
                                headers=[])
    base.update(kw)
    return facts_from(**base)


def write(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_of(directory: Path) -> list[str]:
    with pytest.raises(RuleError) as info:
        load_rules(directory)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def one_rule(tmp_path: Path, when: str) -> RuleSet:
    write(tmp_path, "10-test.toml", f'[[rule]]\nname = "r"\n{when}\nthen.tags = ["hit"]\n')
    return load_rules(tmp_path)


def fires(ruleset: RuleSet, **kw: Any) -> bool:
    return apply_rules(ruleset, facts(**kw)).fired == ["r"]


# --- conditions and operators -------------------------------------------------------------

CONDITION_CASES = [
    # (when line, facts, expected) -- each field, matching and not matching
    ('when.from = "customer.example"', {}, True),
    ('when.from = "customer.example"', {"from_addr": "a@other.example"}, False),
    ('when.from = "customer.example"', {"from_addr": None}, False),
    ('when.to = "sales@"', {"to": ["support@example.com", "sales@example.com"]}, True),
    ('when.to = "sales@"', {"to": ["support@example.com"]}, False),
    ('when.cc.is = "boss@example.com"', {"cc": ["Boss@Example.com"]}, True),
    ('when.cc.is = "boss@example.com"', {"cc": []}, False),
    ('when.subject = "refund"', {"subject": "REFUND please"}, True),
    ('when.subject = "refund"', {"subject": "hello"}, False),
    ('when.body = "money back"', {"body": "I want my Money Back now"}, True),
    ('when.body = "money back"', {"body": "I want my money"}, False),
    ('when.language = "zh-Hant"', {"language": "zh-Hant"}, True),
    ('when.language = "zh-Hant"', {"language": "zh-Hans"}, False),
    ('when.language = "zh"', {"language": "zh-Hant"}, False),  # language defaults to `is`
    ('when.attachment_type = "pdf"', {"attachments": [("a.pdf", "application/pdf")]}, True),
    ('when.attachment_type = "pdf"', {"attachments": [("a.png", "image/png")]}, False),
    ('when.attachment_type = "pdf"', {"attachments": []}, False),
    ("when.attachment_name.regex = '\\.(exe|scr)$'",
     {"attachments": [("notes.txt", "text/plain"), ("Invoice.EXE", "application/octet-stream")]}, True),
    ("when.attachment_name.regex = '\\.(exe|scr)$'", {"attachments": [("invoice.exe.pdf", "application/pdf")]},
     False),
    ("when.attachment_name.regex = '\\.(exe|scr)$'", {"attachments": [(None, "application/octet-stream")]},
     False),
    ('when.mailbox = "Sales"', {"mailbox": ["INBOX", "sales"]}, True),  # `is` by default, any case
    ('when.mailbox = "Sales"', {"mailbox": ["Sales-Archive"]}, False),
    ('when.header."X-Priority" = "1"', {"headers": [("X-Priority", "1 (Highest)")]}, True),
    ('when.header."X-Priority" = "1"', {"headers": [("x-priority", "1")]}, True),  # header names: any case
    ('when.header."X-Priority" = "1"', {"headers": [("X-Priority", "3 (Normal)")]}, False),
    ('when.header."X-Priority" = "1"', {"headers": []}, False),
    ("when.header.\"X-Mailer\".regex = '^outlook'", {"headers": [("X-Mailer", "Outlook 16.0")]}, True),
    ("when.header.\"X-Mailer\".regex = '^outlook'", {"headers": [("X-Mailer", "Apple Mail (Outlook?)")]},
     False),
    # operators
    ('when.subject.contains = "bill"', {"subject": "Billing question"}, True),
    ('when.subject.contains = "bill"', {"subject": "invoice"}, False),
    ('when.subject.word = "bill"', {"subject": "my Bill is wrong!"}, True),
    ('when.subject.word = "bill"', {"subject": "billing question"}, False),
    ('when.subject.word = "bill"', {"subject": "e-bill"}, True),
    ('when.subject.word = "small claims"', {"subject": "going to small claims court"}, True),
    ('when.subject.word = "發票"', {"subject": "請開立發票給我"}, True),  # CJK: no word boundaries
    ('when.subject.word = "發票"', {"subject": "請給我收據"}, False),
    ('when.subject.word = "发票"', {"subject": "发票抬头写错了"}, True),
    ("when.subject.regex = 'order\\s*#?\\d{5}'", {"subject": "Where is ORDER #12345?"}, True),
    ("when.subject.regex = 'order\\s*#?\\d{5}'", {"subject": "order soon"}, False),
    ('when.subject.is = "help"', {"subject": "  Help "}, True),
    ('when.subject.is = "help"', {"subject": "help me"}, False),
    ('when.from.domain = "example.com"', {"from_addr": "a@example.com"}, True),
    ('when.from.domain = "example.com"', {"from_addr": "a@mail.Example.com"}, True),  # subdomains count
    ('when.from.domain = "@example.com"', {"from_addr": "a@example.com"}, True),
    ('when.from.domain = "example.com"', {"from_addr": "a@badexample.com"}, False),
    ('when.from.domain = "example.com"', {"from_addr": "a@example.com.evil.test"}, False),
    ('when.to.domain = "example.com"', {"to": ["x@other.test", "support@example.com"]}, True),
    ('when.cc.domain = "example.com"', {"cc": ["x@other.test"]}, False),
    # a list means any of them
    ('when.body = ["退款", "refund"]', {"body": "我要退款"}, True),
    ('when.body = ["退款", "refund"]', {"body": "Refund me"}, True),
    ('when.body = ["退款", "refund"]', {"body": "退货"}, False),
    ('when.subject.word = ["invoice", "receipt"]', {"subject": "Receipt needed"}, True),
    ('when.subject.is = ["hi", "hello"]', {"subject": "hello"}, True),
    ('when.from.domain = ["a.test", "b.test"]', {"from_addr": "x@b.test"}, True),
    ('when.from.domain = ["a.test", "b.test"]', {"from_addr": "x@c.test"}, False),
    # several operators on one field: all must hold (on the same value)
    ('when.subject = { contains = "refund", word = "order" }', {"subject": "refund for order 7"}, True),
    ('when.subject = { contains = "refund", word = "order" }', {"subject": "refund for orders"}, False),
]


@pytest.mark.parametrize("when, kw, expected", CONDITION_CASES)
def test_condition(tmp_path: Path, when: str, kw: dict[str, Any], expected: bool) -> None:
    assert fires(one_rule(tmp_path, when), **kw) is expected


LOGIC_CASES = [
    ('when.any = [{ subject = "refund" }, { body = "money back" }]', {"subject": "Refund"}, True),
    ('when.any = [{ subject = "refund" }, { body = "money back" }]', {"body": "my money back"}, True),
    ('when.any = [{ subject = "refund" }, { body = "money back" }]', {"subject": "hi", "body": "hi"}, False),
    ('when.all = [{ subject = "refund" }, { from.domain = "vip.test" }]',
     {"subject": "refund", "from_addr": "a@vip.test"}, True),
    ('when.all = [{ subject = "refund" }, { from.domain = "vip.test" }]', {"subject": "refund"}, False),
    ('when.not = { from.domain = "partner.test" }', {"from_addr": "a@customer.test"}, True),
    ('when.not = { from.domain = "partner.test" }', {"from_addr": "a@partner.test"}, False),
    # several conditions in one `when` must all hold
    ('when.subject = "refund"\nwhen.not.from.domain = "partner.test"', {"subject": "refund"}, True),
    ('when.subject = "refund"\nwhen.not.from.domain = "partner.test"',
     {"subject": "refund", "from_addr": "a@partner.test"}, False),
    ('when.subject = "refund"\nwhen.not.from.domain = "partner.test"', {"subject": "hello"}, False),
    ('when.subject = "refund"\nwhen.body = "order"', {"subject": "refund", "body": "no number"}, False),
    # nesting
    ('when.any = [{ not = { language = "en" } }, { subject = "urgent" }]', {"language": "zh-Hant"}, True),
    ('when.any = [{ not = { language = "en" } }, { subject = "urgent" }]', {"subject": "Urgent!"}, True),
    ('when.any = [{ not = { language = "en" } }, { subject = "urgent" }]', {"subject": "hello"}, False),
    ('when.all = [{ any = [{ subject = "a1" }, { subject = "b2" }] }, { not = { body = "x9" } }]',
     {"subject": "b2"}, True),
    ('when.all = [{ any = [{ subject = "a1" }, { subject = "b2" }] }, { not = { body = "x9" } }]',
     {"subject": "b2", "body": "x9"}, False),
]


@pytest.mark.parametrize("when, kw, expected", LOGIC_CASES)
def test_any_all_not(tmp_path: Path, when: str, kw: dict[str, Any], expected: bool) -> None:
    assert fires(one_rule(tmp_path, when), **kw) is expected


def test_word_with_non_ascii_value_is_case_insensitive(tmp_path: Path) -> None:
    rs = one_rule(tmp_path, 'when.subject.word = ["Müller", "發票PDF"]')
    assert fires(rs, subject="Herr MÜLLER schreibt")
    assert fires(rs, subject="請寄發票pdf給我")


# --- actions ------------------------------------------------------------------------------

ACTION_RULES = """\
[[rule]]
name = "first"
when.subject = "order"
then.tags = ["orders", "shop"]
then.category = "shipping"
then.priority = "low"

[[rule]]
name = "never"
when.subject = "zzz-never"
then.tags = ["never"]
then.category = "spam"

[[rule]]
name = "second"
when.body = "refund"
then.tags = ["shop", "refund", "orders"]
then.category = "refund"
then.priority = "high"

[[rule]]
name = "spammy"
when.body = "backlinks"
then.spam = true
then.acknowledge = false
then.stop = true

[[rule]]
name = "after stop"
when.body = "refund"
then.tags = ["late"]
then.category = "billing"
"""


def test_actions_combine_in_order(tmp_path: Path) -> None:
    write(tmp_path, "10-actions.toml", ACTION_RULES)
    rs = load_rules(tmp_path)
    assert [r.name for r in rs.rules] == ["first", "never", "second", "spammy", "after stop"]
    assert rs.rules[0].source == f"{tmp_path / '10-actions.toml'}:1"
    assert rs.rules[2].source == f"{tmp_path / '10-actions.toml'}:14"

    out = apply_rules(rs, facts(subject="my order", body="refund please"))
    assert out.fired == ["first", "second", "after stop"]
    assert out.tags == ["orders", "shop", "refund", "late"]  # accumulated, no duplicates, first-seen order
    assert out.category == "billing"  # last wins
    assert out.priority == "high"  # last one that set it
    assert out.spam is False and out.acknowledge is True

    out = apply_rules(rs, facts(subject="my order", body="refund, and buy backlinks"))
    assert out.fired == ["first", "second", "spammy"]  # stop = true: "after stop" never runs
    assert out.tags == ["orders", "shop", "refund"]
    assert out.category == "refund" and out.priority == "high"
    assert out.spam is True and out.acknowledge is False

    out = apply_rules(rs, facts(subject="hello", body="hello"))
    assert out.fired == [] and out.tags == [] and out.category is None and out.priority is None
    assert out.spam is False and out.acknowledge is True


def test_files_load_in_name_order_and_fingerprint(tmp_path: Path) -> None:
    write(tmp_path, "20-b.toml", '[[rule]]\nname = "b"\nwhen.subject = "x"\nthen.category = "billing"\n')
    write(tmp_path, "10-a.toml", '[[rule]]\nname = "a"\nwhen.subject = "x"\nthen.category = "refund"\n')
    write(tmp_path, "notes.txt", "not a rule file [[")
    rs = load_rules(tmp_path)
    assert [Path(f).name for f in rs.files] == ["10-a.toml", "20-b.toml"]
    out = apply_rules(rs, facts(subject="x"))
    assert out.fired == ["a", "b"] and out.category == "billing"
    before = rs.sha256
    assert load_rules(tmp_path).sha256 == before  # stable
    write(tmp_path, "20-b.toml", '[[rule]]\nname = "b"\nwhen.subject = "y"\nthen.category = "billing"\n')
    assert load_rules(tmp_path).sha256 != before
    assert load_rules(tmp_path / "empty-does-not-exist").rules == ()


def test_route_tables_are_allowed_and_empty_file_is_fine(tmp_path: Path) -> None:
    write(tmp_path, "00-empty.toml", "# nothing here yet\n")
    write(tmp_path, "10-route.toml", '[[route]]\nname = "later"\n')
    assert load_rules(tmp_path).rules == ()


# --- errors: file:line: message -------------------------------------------------------------

PREFIX = """\
# rules for the tests
[[rule]]
name = "fine"
when.subject = "hello"
then.tags = ["hello"]

[[rule]]
"""  # the broken rule's header is line 7; its lines below start at line 8

ERROR_CASES = [
    # (lines of the second rule, expected line, fragments of the message)
    ('name = "b"\nwhen.subjet = "refund"\nthen.tags = ["x"]', 9, ["unknown condition 'subjet'", "subject"]),
    ('name = "b"\nwhen.subject.containz = "refund"\nthen.tags = ["x"]', 9,
     ["unknown test 'containz' for 'subject'", "contains, word, regex, is, domain"]),
    ('name = "b"\nwhen.subject = "x"\nthen.colour = "red"', 10, ["unknown action 'colour'", "tags"]),
    ('name = "b"\nwhen.subject = "x"\nthen.category = "refunds"', 10,
     ["unknown category 'refunds'", ", ".join(CATEGORIES)]),
    ('name = "b"\nwhen.subject = "x"\nthen.priority = "asap"', 10,
     ["unknown priority 'asap'", "low, normal, high, urgent"]),
    ("name = \"b\"\nwhen.subject.regex = '(unclosed'\nthen.tags = [\"x\"]", 9,
     ["regular expression is not valid", "missing )"]),
    ('when.subject = "x"\nthen.tags = ["x"]', 7, ["needs a name"]),
    ('name = "  "\nwhen.subject = "x"\nthen.tags = ["x"]', 7, ["needs a name"]),
    ('name = "b"\nwhen.subject = "x"', 7, ["needs a 'then' block"]),
    ('name = "b"\nthen.tags = ["x"]', 7, ["'when' must be a table of conditions"]),
    ('name = "b"\nwhen.any = { subject = "x" }\nthen.tags = ["x"]', 9, ["'any' must be a list"]),
    ('name = "b"\nwhen.all = []\nthen.tags = ["x"]', 9, ["'all' must be a list"]),
    ('name = "b"\nwhen.not = "x"\nthen.tags = ["x"]', 9, ["'not' must be a table of conditions"]),
    ('name = "b"\nwhen.subject = "x"\nthen.tags = ["two words"]', 10, ["tags are single words"]),
    ('name = "b"\nwhen.subject = "x"\nthen.tags = "refund"', 10, ["'then.tags' must be list"]),
    ('name = "b"\nwhen.subject = "x"\nthen.spam = "yes"', 10, ["'then.spam' must be bool"]),
    ('name = "b"\nwhen.subject = "x"\nthen.category = 3', 10, ["'then.category' must be a text"]),
    ('name = "b"\nwhen.subject.domain = "example.com"\nthen.tags = ["x"]', 9,
     ["'domain' only works on from, to, cc"]),
    ('name = "b"\nwhen.header = "X-Spam"\nthen.tags = ["x"]', 9, ['when.header."X-Priority"']),
    ('name = "b"\nwhen.subject.regex = 5\nthen.tags = ["x"]', 9, ["'subject.regex' needs a text"]),
    ('name = "b"\npriority = "high"\nwhen.subject = "x"\nthen.tags = ["x"]', 9,
     ["unknown key 'priority' in a rule", "name, when and then"]),
]


@pytest.mark.parametrize("lines, line, fragments", ERROR_CASES)
def test_error_names_file_and_line(tmp_path: Path, lines: str, line: int, fragments: list[str]) -> None:
    path = write(tmp_path, "10-bad.toml", PREFIX + lines + "\n")
    problems = problems_of(tmp_path)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{path}:{line}: "), problems[0]
    for fragment in fragments:
        assert fragment in problems[0]


def test_broken_toml_reports_the_parser_line(tmp_path: Path) -> None:
    path = write(tmp_path, "10-bad.toml", PREFIX + 'name = "b"\nwhen.subject = "unterminated\nthen.tags = ["x"]\n')
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:9: not valid TOML: ")
    path.write_text('[[rule]]\nname = "a"\nname = "b"\n', encoding="utf-8")
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:3: not valid TOML: ")


def test_toml_error_at_end_of_document_is_not_line_1(tmp_path: Path) -> None:
    path = write(tmp_path, "10-bad.toml", PREFIX + 'name = "b"\nthen.tags = ["x"]\nwhen.subject = ["a",\n')
    [problem] = problems_of(tmp_path)
    assert "not valid TOML" in problem
    assert not problem.startswith(f"{path}:1: ")


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "10-latin1.toml"
    path.write_bytes(b'# caf\xe9\n[[rule]]\n')
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:1: cannot read the file")


def test_unknown_top_level_key_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "10-bad.toml", PREFIX + 'name = "b"\nwhen.subject = "x"\nthen.tags = ["x"]\n\n'
                                                     '[[rules]]\nname = "typo"\n')
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:")
    assert "unknown top-level entry 'rules'" in problem and "[[rule]]" in problem


def test_unknown_top_level_key_has_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "10-bad.toml", PREFIX + 'name = "b"\nwhen.subject = "x"\nthen.tags = ["x"]\n\n'
                                                     '[[rules]]\nname = "typo"\n')
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:12: ")


def test_error_in_second_use_of_an_operator_points_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "10-bad.toml", """\
        [[rule]]
        name = "two regexes"
        when.subject.regex = 'fine'
        when.body.regex = '(unclosed'
        then.tags = ["x"]
        """)
    [problem] = problems_of(tmp_path)
    assert problem.startswith(f"{path}:4: ")


def test_errors_in_sub_table_layout(tmp_path: Path) -> None:
    path = write(tmp_path, "10-sub.toml", """\
        # rules written with sub-tables
        [[rule]]
        name = "first"
        [rule.when]
        subject.contains = "hi"
        [rule.then]
        tags = ["hi"]

        [[rule]]
        name = "second"
        [rule.when]
        from.domain = "example.com"
        subjet = "typo"
        [rule.then]
        tags = ["x"]

        [[rule]]
        name = "third"
        [rule.when]
        subject = "x"
        [rule.then]
        tags = ["x"]
        category = "bogus"

        [[rule]]
        name = "fourth"
        [rule.when.subject]
        containz = "x"
        [rule.then]
        tags = ["x"]
        """)
    problems = problems_of(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:13", f"{path}:23", f"{path}:28"]
    assert "unknown condition 'subjet'" in problems[0]
    assert "unknown category 'bogus'" in problems[1]
    assert "unknown test 'containz'" in problems[2]
    # and the same layout without mistakes works
    path.write_text(path.read_text().replace('subjet = "typo"', 'subject = "typo"')
                    .replace('"bogus"', '"product"').replace("containz", "contains"), encoding="utf-8")
    rs = load_rules(tmp_path)
    assert [r.name for r in rs.rules] == ["first", "second", "third", "fourth"]
    assert apply_rules(rs, facts(subject="typo x", from_addr="a@example.com")).fired == ["second", "third",
                                                                                        "fourth"]


def test_errors_in_inline_tables_and_multiline_any(tmp_path: Path) -> None:
    path = write(tmp_path, "10-inline.toml", """\
        [[rule]]
        name = "inline"
        when = { subject = { containz = "x" } }
        then = { tags = ["x"] }

        [[rule]]
        name = "inline 2"
        when = { subject = "x" }
        then = { tags = ["x"], priority = "asap" }

        [[rule]]
        name = "multi-line any"
        when.any = [
            { subject.word = ["hacked"] },
            { bdy.contains = ["x"] },
        ]
        then.tags = ["security"]
        """)
    problems = problems_of(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{path}:3", f"{path}:9", f"{path}:15"]
    assert "containz" in problems[0] and "asap" in problems[1] and "unknown condition 'bdy'" in problems[2]


def test_all_errors_of_all_files_are_reported(tmp_path: Path) -> None:
    a = write(tmp_path, "10-a.toml", '[[rule]]\nname = "a"\nwhen.subjet = "x"\nthen.tags = ["x"]\n\n'
                                     '[[rule]]\nname = "a2"\nwhen.subject = "x"\nthen.category = "nope"\n')
    write(tmp_path, "20-good.toml", '[[rule]]\nname = "good"\nwhen.subject = "x"\nthen.tags = ["x"]\n')
    c = write(tmp_path, "30-c.toml", '[[rule]]\nname = "c"\nwhen.subject = "x\nthen.tags = ["x"]\n')
    d = write(tmp_path, "40-d.toml", '\n\n[[rule]]\nname = "d"\nwhen.body.regex = "["\nthen.tags = ["x"]\n')
    problems = problems_of(tmp_path)
    assert [p.split(": ", 1)[0] for p in problems] == [f"{a}:3", f"{a}:9", f"{c}:3",
                                                       f"{d}:5"]
    assert "not valid TOML" in problems[2]
    with pytest.raises(RuleError) as info:
        compile_file(a)
    assert len(info.value.problems) == 2


# --- the shipped rules ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped() -> RuleSet:
    return load_rules(SHIPPED)


def test_shipped_rules_load(shipped: RuleSet) -> None:
    assert len(shipped.rules) >= 4
    assert all(r.source.startswith(str(SHIPPED / "10-triage.toml") + ":") for r in shipped.rules)


@pytest.mark.parametrize("kw", [
    {"subject": "My account was hacked"},
    {"subject": "Unauthorized login", "body": "Someone changed my password"},
    {"subject": "help", "body": "I think my account was compromised yesterday"},
    {"subject": "帳號問題", "body": "我的帳號被盜了，有人盜用我的信用卡", "language": "zh-Hant"},
    {"subject": "账号问题", "body": "我的账号被盗了，还有异地登录提醒", "language": "zh-Hans"},
])
def test_shipped_security_rule(shipped: RuleSet, kw: dict[str, Any]) -> None:
    out = apply_rules(shipped, facts(**kw))
    assert out.category == "account" and out.priority == "urgent" and "security" in out.tags
    assert out.fired[0] == "Security: account may be compromised"


@pytest.mark.parametrize("subject", ["請開立發票", "发票抬头错了", "Invoice for order 1234", "Need a receipt",
                                     "統編要改"])
def test_shipped_invoice_rule(shipped: RuleSet, subject: str) -> None:
    out = apply_rules(shipped, facts(subject=subject))
    assert out.tags == ["invoice"] and out.category is None and out.fired == ["Invoices and receipts"]


def test_shipped_spam_and_legal_rules(shipped: RuleSet) -> None:
    out = apply_rules(shipped, facts(subject="Partnership", body="We sell high quality backlinks and guest post "
                                                                  "packages to rank your site."))
    assert out.spam is True and out.category == "spam" and out.acknowledge is False
    out = apply_rules(shipped, facts(subject="合作", body="提供高權重外鏈"))
    assert out.spam is True and out.acknowledge is False
    out = apply_rules(shipped, facts(subject="Refund", body="I will talk to my lawyer about this."))
    assert out.priority == "urgent" and out.tags == ["legal"] and out.category is None and out.spam is False
    out = apply_rules(shipped, facts(subject="退款", body="再不處理我就去消保會申訴"))
    assert "legal" in out.tags


@pytest.mark.parametrize("kw", [
    {"subject": "Where is my order?", "body": "It has not arrived yet."},
    {"subject": "Invoices", "body": "Do you send invoices by email?"},  # `word`: "invoices" is not "invoice"
    {"subject": "請問尺寸", "body": "這件外套有大一號的嗎？"},
])
def test_shipped_rules_leave_ordinary_mail_alone(shipped: RuleSet, kw: dict[str, Any]) -> None:
    out = apply_rules(shipped, facts(**kw))
    assert out.fired == [] and out.category is None and out.spam is False and out.acknowledge is True


# --- inboxd rules check ---------------------------------------------------------------------


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """A CLI runner in an empty folder: no ./inboxd.toml, so the built-in defaults apply."""
    monkeypatch.delenv("INBOXD_CONFIG", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return CliRunner()


def test_rules_check_ok(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["rules", "check", "--rules", str(SHIPPED)])
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("OK")
    assert re.match(rf"{len(load_rules(SHIPPED).rules)} (triage )?rules", result.stdout), result.stdout
    # without --rules and without a config file: ./rules
    write(Path.cwd() / "rules", "10-x.toml", '[[rule]]\nname = "x"\nwhen.subject = "x"\nthen.tags = ["x"]\n')
    result = runner.invoke(main, ["rules", "check"])
    assert result.exit_code == 0, result.output
    assert re.match(r"1 (triage )?rules\b", result.stdout) and result.stdout.rstrip().endswith("OK")


def test_rules_check_reports_problems(runner: CliRunner, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    a = write(rules, "10-a.toml", PREFIX + 'name = "b"\nwhen.subjet = "x"\nthen.tags = ["x"]\n')
    b = write(rules, "20-b.toml", '[[rule]]\nname = "c"\nwhen.subject = "x"\nthen.priority = "asap"\n')
    result = runner.invoke(main, ["rules", "check", "--rules", str(rules)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"{a}:9: unknown condition 'subjet'")
    assert lines[1].startswith(f"{b}:4: unknown priority 'asap'")
    assert "OK" not in result.stdout


def test_rules_check_missing_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["rules", "check", "--rules", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "no such folder" in result.stderr
    result = runner.invoke(main, ["rules", "check"])  # ./rules does not exist either
    assert result.exit_code == 2 and "no such folder" in result.stderr


def test_rules_check_uses_config_rules_dir(runner: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(MINIMAL_CONFIG + '\n[classify]\nrules_dir = "my-rules"\n', encoding="utf-8")
    write(tmp_path / "my-rules", "10.toml", '[[rule]]\nname = "x"\nwhen.subjet = "x"\nthen.tags = ["x"]\n')
    result = runner.invoke(main, ["--config", str(config), "rules", "check"])
    assert result.exit_code == 2 and f"{tmp_path / 'my-rules' / '10.toml'}:3: " in result.stderr


# --- hot reload in the classifier -----------------------------------------------------------


def bump(path: Path, text: str) -> None:
    """Rewrite and move the mtime forward, so the change is seen even within one clock tick."""
    before = path.stat().st_mtime if path.exists() else time.time()
    path.write_text(text, encoding="utf-8")
    os.utime(path, (before + 5, before + 5))


def test_classifier_hot_reload_keeps_last_good_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    path = write(rules, "10-a.toml", '[[rule]]\nname = "v1"\nwhen.subject = "refund"\nthen.category = "refund"\n')
    c = Classifier(rules_dir=rules, model_path=None, min_confidence=0.5)
    assert [r.name for r in c.ruleset.rules] == ["v1"] and c.rule_errors == []
    assert c.reload_rules_if_changed() is False  # nothing changed

    def verdict(subject: str) -> tuple[str | None, tuple[str, ...]]:
        r = c.classify(subject=subject, body="", facts=facts(subject=subject), sender="a@b.test", language="en")
        return r.category, r.rules_fired

    assert verdict("refund") == ("refund", ("v1",))

    bump(path, '[[rule]]\nname = "v2"\nwhen.subject = "refund"\nthen.category = "billing"\n')
    assert c.reload_rules_if_changed() is True
    assert verdict("refund") == ("billing", ("v2",))

    good = c.ruleset
    bump(path, '[[rule]]\nname = "v3"\nwhen.subjet = "refund"\nthen.category = "billing"\n')
    assert c.reload_rules_if_changed() is False
    assert c.ruleset is good  # the previous set stays in force
    assert c.rule_errors and c.rule_errors[0].startswith(f"{path}:3: unknown condition 'subjet'")
    assert verdict("refund") == ("billing", ("v2",))
    assert c.reload_rules_if_changed() is False  # the broken file is not re-read until it changes again

    # a second, broken file added next to a fixed one: still the last good set
    bump(path, '[[rule]]\nname = "v4"\nwhen.subject = "refund"\nthen.category = "shipping"\n')
    other = rules / "20-b.toml"
    bump(other, "[[rule]\n")
    assert c.reload_rules_if_changed() is False and c.ruleset is good
    assert c.rule_errors[0].startswith(f"{other}:1: not valid TOML")

    bump(other, '[[rule]]\nname = "b"\nwhen.subject = "refund"\nthen.tags = ["money"]\n')
    assert c.reload_rules_if_changed() is True
    assert c.rule_errors == []
    assert verdict("refund") == ("shipping", ("v4", "b"))

    other.unlink()  # deleting a file is a change too
    assert c.reload_rules_if_changed() is True
    assert verdict("refund") == ("shipping", ("v4",))


def test_classifier_starts_with_broken_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    write(rules, "10-a.toml", '[[rule]]\nname = "x"\nwhen.subject = "x"\nthen.category = "nope"\n')
    c = Classifier(rules_dir=rules, model_path=None, min_confidence=0.5)
    assert c.ruleset.rules == () and c.rule_errors[0].startswith(f"{rules / '10-a.toml'}:4: ")
    r = c.classify(subject="x", body="", facts=facts(subject="x"), sender=None, language="en")
    assert r.category is None and "needs-triage" in r.tags and r.source == "none"


def test_every_mistake_of_a_rule_is_reported_not_just_its_first(tmp_path: Path) -> None:
    write(tmp_path, "10-x.toml", '[[rule]]\nname = "one"\nwhen.subject_contains = ["a"]\n'
                                        'when.body.regexp = "b"\nthen.tags = ["x"]\nthen.bogus = 1\n\n'
                                        '[[rule]]\nname = "two"\nwhen.nonsense = ["b"]\nthen.priority = "extreme"\n'
                                        'then.category = "nope"\n')
    problems = problems_of(tmp_path)
    assert sorted(int(p.split(": ", 1)[0].rsplit(":", 1)[1]) for p in problems) == [3, 4, 6, 10, 11, 12]
    text = "\n".join(problems)
    assert all(word in text for word in ("subject_contains", "regexp", "bogus", "nonsense", "extreme", "nope"))
