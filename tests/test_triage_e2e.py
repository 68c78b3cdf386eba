"""Classification end to end: Big5 and GB2312 mail through the daemon, tags shown by the CLI."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.triage.train import bundled_examples, read_examples, save, train

from helpers import run_once, settings_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained once per module, on the shipped training data (or the small fixture set)."""
    examples = bundled_examples() or read_examples(ROOT / "tests" / "fixtures" / "training" / "small.jsonl")
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save(train(examples), path)
    return path


def raw(charset: str, subject: str, body: str, sender: str) -> bytes:
    encoded = base64.b64encode(subject.encode("gb18030" if charset == "gb2312" else charset)).decode()
    data = body.encode("gb18030" if charset == "gb2312" else charset)
    return (f"From: {sender}\r\nTo: support@example.com\r\nSubject: =?{charset}?B?{encoded}?=\r\n"
            f"Message-ID: <{charset}-triage@example.com>\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n").encode() \
        + data + b"\r\n"


def show(config: Path, ticket: str) -> dict:
    result = CliRunner().invoke(main, ["--config", str(config), "tickets", "show", ticket, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_big5_and_gb2312_mail_classified_and_tagged(tmp_path: Path, mailenv, model_path: Path) -> None:
    settings = settings_for(tmp_path, mailenv, extra=f'\n[classify]\nrules_dir = "{ROOT / "rules"}"\n'
                                                      f'model = "{model_path}"\n')
    mailenv.dovecot.append("support", raw(
        "big5", "緊急：發票統編開錯了", "您好，我上週的訂單發票統編開錯了，麻煩幫我重新開立電子發票，謝謝。",
        "customer@example.com"))
    mailenv.dovecot.append("support", raw(
        "gb2312", "发票抬头写错了，紧急", "您好，我的增值税发票抬头写错了，请尽快帮我重开，谢谢！",
        "customer2@example.com"))
    assert run_once(settings)

    big5 = show(settings.path, "SUP-1")
    assert big5["language"] == "zh-Hant" and big5["subject"] == "緊急：發票統編開錯了"
    assert "invoice" in big5["tags"] and "urgent" in big5["tags"]
    assert big5["priority"] in ("high", "urgent")
    gb = show(settings.path, "SUP-2")
    assert gb["language"] == "zh-Hans" and "增值税发票" in gb["messages"][0]["body"]
    assert "invoice" in gb["tags"] and "urgent" in gb["tags"]
    for ticket in (big5, gb):
        verdict = ticket["messages"][0]["classification"]
        assert "Invoices and receipts" in verdict["rules_fired"]
        assert verdict["model_version"] is not None
        assert ticket["category"] == "billing" or "needs-triage" in ticket["tags"]


def test_spam_rule_suppresses_acknowledgement(tmp_path: Path, mailenv, model_path: Path) -> None:
    settings = settings_for(tmp_path, mailenv, extra=f'\n[classify]\nrules_dir = "{ROOT / "rules"}"\n'
                                                      f'model = "{model_path}"\n')
    from helpers import mail

    mailenv.dovecot.append("support", mail(sender="seo@agency.example", subject="Grow your traffic",
                                           body="We sell high quality backlinks and guest post packages."))
    run_once(settings)
    shown = show(settings.path, "SUP-1")
    assert shown["spam"] is True and shown["category"] == "spam"
    assert mailenv.smtp.messages == []
