"""Render reply templates from ``reply_templates/<language>/``.

Templates are files a team may edit, so a broken one must not stop
acknowledgements: any rendering error is logged and a safe built-in text is used
instead. HTML templates are autoescaped, so customer text (subject, excerpt)
can never inject markup; subjects are forced onto one line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from inboxd.log import log

logger = logging.getLogger("inboxd.render")

BUNDLED_TEMPLATES = Path(__file__).resolve().parents[2] / "reply_templates"

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
        for lang in dict.fromkeys([language, "en"]):
            try:
                subject = self.env.get_template(f"{lang}/{name}.subject.j2").render(context)
                text = self.env.get_template(f"{lang}/{name}.txt.j2").render(context)
            except jinja2.TemplateNotFound:
                continue
            except Exception as exc:  # a team-edited template: any error must fall back
                log(logger, logging.ERROR, "template_failed", template=f"{lang}/{name}", error=repr(exc))
                break
            try:
                html: str | None = self.env.get_template(f"{lang}/{name}.html.j2").render(context)
            except jinja2.TemplateNotFound:
                html = None
            except Exception as exc:  # the HTML part of a team-edited template: the text part still goes out
                log(logger, logging.ERROR, "template_failed", template=f"{lang}/{name}.html", error=repr(exc))
                html = None
            return Rendered(one_line(subject), text, html)
        safe = {k: one_line(str(v)) for k, v in context.items()}
        return Rendered(one_line(_FALLBACK_SUBJECT.format(**safe)), _FALLBACK_TEXT.format(**safe), None)
