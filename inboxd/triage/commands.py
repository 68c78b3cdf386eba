"""Commands: the short lines an agent writes at the top of a reply to drive the ticket.

    #close / #resolve        the ticket is resolved
    #pending                 waiting on the customer
    #open                    open again
    #assign NAME-OR-EMAIL    give it to another agent (they are notified)
    #tag WORD / #untag WORD
    #category NAME
    #priority low|normal|high|urgent
    #note                    the whole reply is an internal note, never sent to the customer

Commands come first, one per line; the first other line starts the answer. One
unknown or malformed command stops everything: the agent gets an explanation
and nothing is sent to the customer, because a typo must never turn a private
remark into a customer mail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from inboxd.routing.agents import Directory
from inboxd.triage.rules import CATEGORIES, PRIORITIES

HELP = """Commands go at the top of your reply, one per line:
  #close (or #resolve)    mark the ticket resolved
  #pending                waiting on the customer
  #open                   open it again
  #assign NAME-OR-EMAIL   give it to another agent
  #tag WORD, #untag WORD  add or remove a tag
  #category NAME          one of: """ + ", ".join(CATEGORIES) + """
  #priority LEVEL         one of: """ + ", ".join(PRIORITIES) + """
  #note                   the reply is an internal note for the team, not sent to the customer
Everything after the commands is sent to the customer (unless #note is given)."""


@dataclass(frozen=True)
class Command:
    name: str
    argument: str = ""


@dataclass(frozen=True)
class Parsed:
    commands: tuple[Command, ...]
    text: str  # what remains for the customer (or the note)
    errors: tuple[str, ...]

    @property
    def is_note(self) -> bool:
        return any(c.name == "note" for c in self.commands)


_LINE = re.compile(r"^#([A-Za-z]+)\b\s*(.*)$")
_ALIASES = {"resolve": "close", "resolved": "close", "closed": "close", "reopen": "open"}


def parse_commands(text: str, directory: Directory) -> Parsed:
    lines = text.split("\n")
    commands: list[Command] = []
    errors: list[str] = []
    body_start = len(lines)
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            continue
        m = _LINE.match(line)
        if m is None:
            body_start = index
            break
        name = _ALIASES.get(m.group(1).lower(), m.group(1).lower())
        argument = m.group(2).strip()
        problem = _check(name, argument, directory)
        if problem:
            errors.append(f"'{line}': {problem}")
        else:
            commands.append(Command(name, argument))
    return Parsed(tuple(commands), "\n".join(lines[body_start:]).strip(), tuple(errors))


def _check(name: str, argument: str, directory: Directory) -> str | None:
    if name in ("close", "pending", "open", "note"):
        return None if not argument else f"#{name} takes nothing after it"
    if name == "assign":
        if not argument:
            return "say who: #assign NAME-OR-EMAIL"
        return None if directory.find(argument) else f"no agent called '{argument}'"
    if name in ("tag", "untag"):
        return None if re.fullmatch(r"[\w-]+", argument) else f"#{name} needs one word, e.g. #{name} refund"
    if name == "category":
        return None if argument in CATEGORIES else f"unknown category; use one of {', '.join(CATEGORIES)}"
    if name == "priority":
        return None if argument in PRIORITIES else f"unknown priority; use one of {', '.join(PRIORITIES)}"
    return "unknown command"
