"""Configuration errors name the file, the line and the key, and exit with code 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import ConfigError, load_settings
from inboxd.resources import CONFIG_EXAMPLE, TEMPLATES

from helpers import MINIMAL_CONFIG

ROOT = Path(__file__).resolve().parents[1]

MINIMAL = MINIMAL_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inboxd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(tmp_path: Path, text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    return info.value


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path, MINIMAL))
    assert s.imap.port == 993 and s.imap.tls == "ssl" and s.imap.folder == "INBOX"
    assert s.imap.max_message_size == 25 * 1024 * 1024
    assert s.support.ticket_prefix == "SUP" and s.support.default_language == "en"
    assert s.database == tmp_path / "data" / "inboxd.db"
    assert "imap-secret" not in repr(s.imap)


def test_example_config_is_valid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INBOXD_IMAP_PASSWORD", "x")
    monkeypatch.setenv("INBOXD_SMTP_PASSWORD", "y")
    s = load_settings(ROOT / "config.example.toml")
    assert s.imap.password == "x" and s.smtp.password == "y"


def test_unknown_key_names_line_and_key(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace('folder', 'x').replace(
        'username = "support"', 'username = "support"\nfoldr = "INBOX"'))
    assert err.line == 4 and "foldr" in err.message and "[imap]" in err.message


def test_wrong_type_names_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace('host = "smtp.example.com"',
                                             'host = "smtp.example.com"\nport = "587"'))
    assert err.line == 8 and "port" in err.message and "whole number" in err.message
    assert str(err).startswith(f"{tmp_path / 'inboxd.toml'}:8: ")


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "ack_limit_per_hour = true\n")
    assert err.line == 12 and "ack_limit_per_hour" in err.message


def test_bad_choice_and_bad_value(tmp_path: Path) -> None:
    assert "tls" in error_of(tmp_path, MINIMAL.replace('password = "imap-secret"',
                                                        'password = "p"\ntls = "yes"')).message
    err = error_of(tmp_path, MINIMAL + 'first_response = "4x"\n')
    assert err.line == 12 and "first_response" in err.message
    err = error_of(tmp_path, MINIMAL + 'holidays = ["2026-13-45"]\n')
    assert err.line == 12 and "holidays" in err.message
    err = error_of(tmp_path, MINIMAL.replace("Asia/Taipei", "Mars/Olympus"))
    assert err.line == 11 and "timezone" in err.message


def test_missing_required_key_and_section(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace('host = "smtp.example.com"\n', ""))
    assert "[smtp] host is required" in err.message and err.line == 6
    err = error_of(tmp_path, MINIMAL.split("[support]")[0])
    assert "[support]" in err.message


def test_unknown_section(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + "\n[smpt]\nhost = 'x'\n")
    assert err.line == 13 and "unknown section [smpt]" in err.message


def test_broken_toml_gives_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL.replace('username = "support"', 'username = "support'))
    assert err.line == 3 and "not valid TOML" in err.message


def test_password_env_must_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    err = error_of(tmp_path, MINIMAL.replace('password = "imap-secret"', 'password_env = "NO_SUCH_VAR"'))
    assert err.line == 4 and "NO_SUCH_VAR" in err.message


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    runner = CliRunner()
    good = write(tmp_path, MINIMAL)
    result = runner.invoke(main, ["--config", str(good), "check-config"])
    assert result.exit_code == 0 and "OK" in result.output
    result = runner.invoke(main, ["--config", str(tmp_path / "missing.toml"), "check-config"])
    assert result.exit_code == 2 and "missing.toml" in result.output and "not found" in result.output
    write(tmp_path, MINIMAL + "colour = 'blue'\n")
    result = runner.invoke(main, ["--config", str(good), "check-config"])
    assert result.exit_code == 2 and "inboxd.toml:12:" in result.output and "colour" in result.output


def test_config_from_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INBOXD_CONFIG", str(write(tmp_path, MINIMAL)))
    result = CliRunner().invoke(main, ["check-config"])
    assert result.exit_code == 0, result.output


def test_missing_templates_folder_is_a_configuration_error(tmp_path: Path) -> None:
    err = error_of(tmp_path, MINIMAL + '\n[templates]\ndirectory = "my-templates"\n')
    assert err.line == 14 and str(tmp_path / "my-templates") in err.message and "does not exist" in err.message


def test_incomplete_templates_folder_names_the_missing_file(tmp_path: Path) -> None:
    templates = tmp_path / "my-templates"
    shutil.copytree(TEMPLATES, templates)
    (templates / "zh-Hans" / "ack.html.j2").unlink()
    config = write(tmp_path, MINIMAL + '\n[templates]\ndirectory = "my-templates"\n')
    result = CliRunner().invoke(main, ["--config", str(config), "check-config"])
    assert result.exit_code == 2, result.output
    assert "inboxd.toml:14:" in result.output and "lacks zh-Hans/ack.html.j2;" in result.output
    (templates / "zh-Hans" / "ack.html.j2").write_text("<p>{{ ticket_id }}</p>", encoding="utf-8")
    assert load_settings(config).templates == templates


def test_missing_config_file_points_at_the_shipped_example(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "inboxd.toml")
    assert str(CONFIG_EXAMPLE) in info.value.message and CONFIG_EXAMPLE.is_file()
