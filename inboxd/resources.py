"""The files shipped with inboxd: reply templates, default rules, training data, the demo mailbox, example configs.

They are kept at the top of the repository (``reply_templates/``, ``rules/``, ``data/``, ``*.example.toml``),
where the team edits them, and ``inboxd/bundled/`` holds symbolic links to them. setuptools follows those
links, so the wheel and the sdist carry real copies, and an editable install reads the originals through
the same links. Every caller finds them here, with ``importlib.resources``, never relative to the source tree.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def bundled(*parts: str) -> Path:
    """A shipped file or folder, e.g. ``bundled("rules", "routing.toml")``."""
    root = files("inboxd") / "bundled"
    if not isinstance(root, Path):  # jinja2's loader and glob need real folders, not a file inside a zip
        raise RuntimeError(f"inboxd must be installed as files on disk, not imported from {root}")
    return root.joinpath(*parts)


TEMPLATES = bundled("reply_templates")  # <language>/ack.{subject,txt,html}.j2
RULES = bundled("rules")  # 10-triage.toml, routing.toml: the starting point of a rules folder
TRAINING = bundled("training")  # <language>.jsonl: the examples the category model is trained on
DEMO = bundled("demo")  # mailbox/*.eml, agents.toml, routing.toml: what `inboxd demo` runs on
CONFIG_EXAMPLE = bundled("config.example.toml")
AGENTS_EXAMPLE = bundled("agents.example.toml")
