"""Read-only commands need no secrets; the commands that connect, and check-config, do (issue 11, item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.store.sqlite import Store

CONFIG = """\
[imap]
host = "imap.example.com"
username = "support"
password_env = "INBOXD_TEST_IMAP_PASSWORD"

[smtp]
host = "smtp.example.com"
password_env = "INBOXD_TEST_SMTP_PASSWORD"

[support]
address = "support@example.com"
timezone = "Asia/Taipei"

[classify]
rules_dir = "rules"

[routing]
reply_secret_env = "INBOXD_TEST_REPLY_SECRET"
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("INBOXD_TEST_IMAP_PASSWORD", "INBOXD_TEST_SMTP_PASSWORD", "INBOXD_TEST_REPLY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "rules").mkdir()
    path = tmp_path / "inboxd.toml"
    path.write_text(CONFIG, encoding="utf-8")
    Store(tmp_path / "data" / "inboxd.db").close()  # the database a running inboxd would have made
    eml = tmp_path / "question.eml"
    eml.write_bytes(b"From: amy@example.net\r\nSubject: Where is my order?\r\n\r\nIt has not arrived.\r\n")
    return path


@pytest.mark.parametrize("args", [["status"], ["tickets", "list"], ["sla", "at-risk"], ["rules", "check"],
                                  ["classify", "question.eml"]])
def test_read_only_commands_work_without_the_password_variables(config: Path, args: list[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config.parent)
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    assert "not set" not in result.output


@pytest.mark.parametrize("args", [["check-config"], ["run", "--once"]])
def test_check_config_and_run_name_the_missing_variable(config: Path, args: list[str]) -> None:
    result = CliRunner().invoke(main, ["--config", str(config), *args])
    assert result.exit_code == 2
    assert "INBOXD_TEST_IMAP_PASSWORD, which is not set" in result.output
