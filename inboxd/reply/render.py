"""Render reply templates from ``<directory>/<language>/`` (default: the shipped ``reply_templates/``).

Templates are files a team may edit, so a broken or missing one must not stop
acknowledgements: every fallback (to English, to text only, to a safe built-in
text) is logged with its reason, so an admin learns why customers got a plainer
answer. HTML templates are autoescaped, so customer text (subject, excerpt)
can never inject markup; subjects are forced onto one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from inboxd.log import log
from inboxd.resources import TEMPLATES as BUNDLED_TEMPLATES  # under this name for the callers that import it here

logger = logging.getLogger("inboxd.render")

_FALLBACK_SUBJECT = "[{ticket_id}] We received your request / 已收到您的來信"
_FALLBACK_TEXT = (
    "Hello,\n\nThank you for contacting {support_name}. Your request has been registered as "
    "ticket {ticket_id}. We will answer by {due_text}.\nPlease keep [{ticket_id}] in the subject "
    "when you reply.\n\n您好，我們已收到您的來信，工單編號為 {ticket_id}。\n\n"
    "This is an automatic message.\n"
)


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def one_line(text: str) -> str:
    """Collapse CR/LF and other line breaks so a value can never start a new header."""
    return " ".join(text.split())


class Renderer:
    def __init__(self, directory: Path = BUNDLED_TEMPLATES) -> None:
        self.directory = directory
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            autoescape=jinja2.select_autoescape(["html", "html.j2"]),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(self, name: str, language: str, context: dict[str, Any]) -> Rendered:
        """Render ``name`` (e.g. ``ack``) in ``language``, falling back to English, then built-in."""
        languages = list(dict.fromkeys([language, "en"]))
        for lang in languages:
            try:
                subject = self.env.get_template(f"{lang}/{name}.subject.j2").render(context)
                text = self.env.get_template(f"{lang}/{name}.txt.j2").render(context)
            except jinja2.TemplateNotFound as exc:
                log(logger, logging.WARNING, "template_missing", template=exc.name, directory=str(self.directory),
                    using="en" if lang != "en" else "built-in text")
                continue
            except Exception as exc:  # a team-edited template: any error must fall back
                log(logger, logging.ERROR, "template_failed", template=f"{lang}/{name}", error=_reason(exc),
                    using="built-in text")
                break
            try:
                html: str | None = self.env.get_template(f"{lang}/{name}.html.j2").render(context)
            except jinja2.TemplateNotFound as exc:
                log(logger, logging.WARNING, "template_missing", template=exc.name, directory=str(self.directory),
                    using="text only")
                html = None
            except Exception as exc:  # the HTML part of a team-edited template: the text part still goes out
                log(logger, logging.ERROR, "template_failed", template=f"{lang}/{name}.html", error=_reason(exc),
                    using="text only")
                html = None
            return Rendered(one_line(subject), text, html)
        else:  # no language has this template
            log(logger, logging.ERROR, "template_not_found", template=name, languages=",".join(languages),
                directory=str(self.directory), using="built-in text")
        safe = {k: one_line(str(v)) for k, v in context.items()}
        return Rendered(one_line(_FALLBACK_SUBJECT.format(**safe)), _FALLBACK_TEXT.format(**safe), None)


def _reason(exc: Exception) -> str:
    """What is wrong with a template, in words an admin can act on (with the line for a syntax error)."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return f"line {exc.lineno}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
