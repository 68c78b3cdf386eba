"""The user-facing documentation keeps up with the code: every command has help text and is
in the README, and every setting is in config.example.toml."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from inboxd.cli.main import main
from inboxd.config import SCHEMA

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
EXAMPLE = (ROOT / "config.example.toml").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "inboxd") -> list[tuple[str, click.Command]]:
    found = []
    for name, command in group.commands.items():
        found.append((f"{prefix} {name}", command))
        if isinstance(command, click.Group):
            found.extend(commands(command, f"{prefix} {name}"))
    return found


@pytest.mark.parametrize("name, command", commands(main), ids=lambda v: v if isinstance(v, str) else "")
def test_command_has_help_and_is_documented(name: str, command: click.Command) -> None:
    assert command.help, f"{name} has no help text"
    assert f"`{name}" in README, f"{name} is not in the README"


@pytest.mark.parametrize("section, key", [(s, k) for s, keys in SCHEMA.items() for k in keys])
def test_setting_is_in_config_example(section: str, key: str) -> None:
    if SCHEMA[section][key].kind is dict:  # a family of tables, e.g. [sla.policies.NAME]
        assert f"[{section}.{key}." in EXAMPLE
        return
    match = re.search(rf"^\[{re.escape(section)}\]\s*$(.*?)(?=^\[(?!{re.escape(section)}\.)|\Z)", EXAMPLE,
                      re.M | re.S)
    assert match, f"[{section}] missing from config.example.toml"
    assert re.search(rf"^#?\s*{re.escape(key)}\s*=", match.group(1), re.M), \
        f"[{section}] {key} is not documented in config.example.toml"
