"""Reply templates (reply_templates/<lang>/ack.*.j2), the logged fallbacks when a team's copy is broken, and the
demo mailbox (data/demo/mailbox/*.eml)."""

from __future__ import annotations

import email
import email.policy
import logging
import re
import runpy
import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from jinja2 import Environment, FileSystemLoader, StrictUndefined, UndefinedError, meta, select_autoescape

from inboxd.reply.render import Renderer

ROOT = Path(__file__).parents[1]
TEMPLATES = ROOT / "reply_templates"
DEMO = ROOT / "data" / "demo"
MAILBOX = DEMO / "mailbox"

LANGS = ("en", "zh-Hant", "zh-Hans")
KINDS = ("subject", "txt", "html")

# The variables the daemon passes, and nothing else.
DOCUMENTED = {
    "ticket_id",
    "subject",
    "customer_name",
    "support_name",
    "support_address",
    "due_text",
    "target_text",
    "excerpt",
}

SCRIPT = "<script>alert(1)</script>"

SAMPLES = {
    "en": {
        "subject": "Order #A-20417 hasn't arrived",
        "customer_name": "Emily Carter",
        "due_text": "Tue 24 Nov, 12:03 Taipei time",
        "target_text": "4 business hours",
        "excerpt": f"Hi,\n\nmy order never arrived.\n{SCRIPT}",
    },
    "zh-Hant": {
        "subject": "退款問題（訂單編號 TW-58213）",
        "customer_name": "陳怡君",
        "due_text": "11月24日（週二）12:24（台北時間）",
        "target_text": "4 個工作小時",
        "excerpt": f"您好：\n\n請問退款進度如何？\n{SCRIPT}",
    },
    "zh-Hans": {
        "subject": "咨询11月账单金额和增值税发票",
        "customer_name": "刘建国",
        "due_text": "11月24日（周二）12:37（上海时间）",
        "target_text": "4 个工作小时",
        "excerpt": f"您好！\n\n请帮忙核对一下账单。\n{SCRIPT}",
    },
}

GENERIC_GREETING = {"en": "Hello,", "zh-Hant": "您好：", "zh-Hans": "您好！"}
NO_SUBJECT = {"en": "(no subject)", "zh-Hant": "（無主旨）", "zh-Hans": "（无主题）"}
# Words that must appear in the body, in each language's own regional wording.
WORDING = {
    "en": ("Ticket number", "reply to this email", "automatic message"),
    "zh-Hant": ("工單編號", "回覆", "自動"),
    "zh-Hans": ("工单编号", "回复", "自动"),
}
# Characters that would betray the other script (a mechanical conversion gone wrong).
FOREIGN_SCRIPT = {
    "zh-Hant": set("们单复这认统发邮题号预计务内来时联谢会于请为们后对"),
    "zh-Hans": set("們單覆這認統發郵題號預計務內來時聯謝會於請為後對週"),
}


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html", "html.j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def context(lang: str, **overrides: str) -> dict[str, str]:
    ctx = {
        "ticket_id": "SUP-12",
        "support_name": "Acme Support",
        "support_address": "support@acme.example",
        **SAMPLES[lang],
    }
    ctx.update(overrides)
    assert set(ctx) == DOCUMENTED
    return ctx


def render(env: Environment, lang: str, kind: str, **overrides: str) -> str:
    return env.get_template(f"{lang}/ack.{kind}.j2").render(**context(lang, **overrides))


# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize("lang", LANGS)
def test_every_language_has_all_templates(lang: str) -> None:
    names = sorted(p.name for p in (TEMPLATES / lang).iterdir())
    assert names == ["ack.html.j2", "ack.subject.j2", "ack.txt.j2"]


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_templates_use_only_documented_variables(env: Environment, lang: str, kind: str) -> None:
    source = (TEMPLATES / lang / f"ack.{kind}.j2").read_text(encoding="utf-8")
    used = meta.find_undeclared_variables(env.parse(source))
    assert used <= DOCUMENTED, used - DOCUMENTED
    assert {"ticket_id", "subject"} <= used


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_a_missing_variable_fails_loudly(env: Environment, lang: str, kind: str) -> None:
    source = (TEMPLATES / lang / f"ack.{kind}.j2").read_text(encoding="utf-8")
    for name in sorted(meta.find_undeclared_variables(env.parse(source))):
        ctx = context(lang)
        del ctx[name]
        with pytest.raises(UndefinedError):
            env.get_template(f"{lang}/ack.{kind}.j2").render(**ctx)


@pytest.mark.parametrize("lang", LANGS)
def test_subject_is_one_line_with_tag_and_original_subject(env: Environment, lang: str) -> None:
    subject = render(env, lang, "subject")
    assert "\n" not in subject and "\r" not in subject
    assert subject.startswith("[SUP-12] ")
    assert subject.endswith(SAMPLES[lang]["subject"])
    assert subject == subject.strip()
    assert "&#39;" not in subject and "&amp;" not in subject  # plain text, not HTML-escaped


@pytest.mark.parametrize("lang", LANGS)
def test_subject_cannot_be_split_by_newlines_in_the_customer_subject(env: Environment, lang: str) -> None:
    subject = render(env, lang, "subject", subject="Help\r\nBcc: victim@example.com\n")
    assert "\n" not in subject and "\r" not in subject
    assert subject.endswith("Help Bcc: victim@example.com")


@pytest.mark.parametrize("lang", LANGS)
def test_text_body(env: Environment, lang: str) -> None:
    body = render(env, lang, "txt")
    ctx = context(lang)
    for value in ("ticket_id", "due_text", "target_text", "support_name", "support_address", "customer_name"):
        assert ctx[value] in body, value
    assert "[SUP-12]" in body  # how to keep replies on the same ticket
    assert ctx["subject"] in body
    for word in WORDING[lang]:
        assert word in body
    # The excerpt is quoted line by line, and left alone: this is text/plain.
    assert f"> {SCRIPT}" in body
    assert "&lt;" not in body
    assert body.endswith("\n") and not body.endswith("\n\n")
    assert not body.startswith("\n")
    assert "\n\n\n" not in body
    assert all(line == line.rstrip() for line in body.splitlines())


@pytest.mark.parametrize("lang", LANGS)
def test_html_body(env: Environment, lang: str) -> None:
    html = render(env, lang, "html")
    ctx = context(lang)
    assert "SUP-12" in html
    assert ctx["due_text"] in html
    assert ctx["target_text"] in html
    assert ctx["customer_name"] in html
    assert "[SUP-12]" in html
    for word in WORDING[lang]:
        assert word in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html.lower()
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<html lang="{ {"en": "en", "zh-Hant": "zh-Hant-TW", "zh-Hans": "zh-Hans-CN"}[lang]}">' in html


@pytest.mark.parametrize("lang", LANGS)
def test_html_escapes_every_customer_supplied_value(env: Environment, lang: str) -> None:
    html = render(
        env, lang, "html",
        subject='<img src=x onerror="alert(2)">',
        customer_name="<b>Mallory</b> & Co",
        excerpt='"quoted" <iframe src=//evil.example>',
    )
    assert "<img" not in html and "<iframe" not in html and "<b>Mallory" not in html
    assert "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "&lt;b&gt;Mallory&lt;/b&gt; &amp; Co" in html
    assert "&#34;quoted&#34; &lt;iframe src=//evil.example&gt;" in html


@pytest.mark.parametrize("lang", LANGS)
def test_html_is_self_contained_with_inline_css(env: Environment, lang: str) -> None:
    html = render(env, lang, "html").lower()
    assert "<style" not in html and "<link" not in html and "<img" not in html
    assert "@import" not in html and "url(" not in html and "@font-face" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert 'name="viewport"' in html
    assert "max-width:600px" in html


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("kind", KINDS)
def test_empty_subject_name_and_excerpt_render(env: Environment, lang: str, kind: str) -> None:
    out = render(env, lang, kind, subject="", customer_name="", excerpt="")
    assert "SUP-12" in out
    assert NO_SUBJECT[lang] in out
    if kind == "subject":
        assert out == f"[SUP-12] {out.split(' ', 1)[1]}" and "\n" not in out
        return
    assert SAMPLES[lang]["customer_name"] not in out
    assert GENERIC_GREETING[lang] in out
    assert context(lang)["due_text"] in out
    if kind == "txt":
        assert out.startswith(GENERIC_GREETING[lang] + "\n")
        assert "\n>" not in out
        assert "\n\n\n" not in out
    else:
        assert "<blockquote" not in out


@pytest.mark.parametrize("lang", LANGS)
def test_whitespace_only_subject_counts_as_empty(env: Environment, lang: str) -> None:
    assert render(env, lang, "subject", subject="  \t ").endswith(NO_SUBJECT[lang])


@pytest.mark.parametrize("lang", ("zh-Hant", "zh-Hans"))
@pytest.mark.parametrize("kind", KINDS)
def test_chinese_templates_stay_in_their_own_script(env: Environment, lang: str, kind: str) -> None:
    out = render(env, lang, kind)
    assert not FOREIGN_SCRIPT[lang] & set(out), FOREIGN_SCRIPT[lang] & set(out)


# --------------------------------------------------------------------------- fallbacks are logged


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def render_log() -> Iterator[list[logging.LogRecord]]:
    """The warnings of inboxd.render, whatever setup_logging() an earlier test left on the inboxd logger."""
    logger, handler = logging.getLogger("inboxd.render"), _Records()
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def team_templates(tmp_path: Path) -> Path:
    shutil.copytree(TEMPLATES, tmp_path / "templates")
    return tmp_path / "templates"


def test_missing_language_falls_back_to_english_and_says_so(team_templates: Path, render_log: list[Any]) -> None:
    shutil.rmtree(team_templates / "zh-Hant")
    out = Renderer(team_templates).render("ack", "zh-Hant", context("zh-Hant"))
    assert "Ticket number" in out.text and out.html
    [record] = render_log
    assert (record.levelno, record.getMessage()) == (logging.WARNING, "template_missing")
    assert record.fields["template"] == "zh-Hant/ack.subject.j2"


def test_template_missing_in_every_language_uses_the_built_in_text(team_templates: Path,
                                                                   render_log: list[Any]) -> None:
    for lang in LANGS:
        (team_templates / lang / "ack.txt.j2").unlink()
    out = Renderer(team_templates).render("ack", "zh-Hans", context("zh-Hans"))
    assert "registered as ticket SUP-12" in out.text and out.html is None
    *_, last = render_log
    assert (last.levelno, last.getMessage()) == (logging.ERROR, "template_not_found")
    assert last.fields["languages"] == "zh-Hans,en" and last.fields["using"] == "built-in text"


def test_broken_template_is_logged_with_its_line(team_templates: Path, render_log: list[Any]) -> None:
    (team_templates / "en" / "ack.txt.j2").write_text("Hello\n{% if %}\n", encoding="utf-8")
    out = Renderer(team_templates).render("ack", "en", context("en"))
    assert "registered as ticket SUP-12" in out.text
    [record] = render_log
    assert (record.levelno, record.getMessage()) == (logging.ERROR, "template_failed")
    assert record.fields["error"].startswith("line 2: ") and record.fields["using"] == "built-in text"


def test_missing_html_part_sends_text_only_and_says_so(team_templates: Path, render_log: list[Any]) -> None:
    (team_templates / "en" / "ack.html.j2").unlink()
    out = Renderer(team_templates).render("ack", "en", context("en"))
    assert "Ticket number" in out.text and out.html is None
    [record] = render_log
    assert record.getMessage() == "template_missing" and record.fields["using"] == "text only"


# --------------------------------------------------------------------------- demo mailbox


def eml_files() -> list[Path]:
    return sorted(MAILBOX.glob("*.eml"))


def parse(name_prefix: str) -> tuple[email.message.EmailMessage, bytes]:
    (path,) = [p for p in eml_files() if p.name.startswith(name_prefix)]
    raw = path.read_bytes()
    return email.message_from_bytes(raw, policy=email.policy.default), raw


def test_mailbox_files_are_numbered_in_arrival_order() -> None:
    names = [p.name for p in eml_files()]
    assert 12 <= len(names) <= 15
    for number, name in enumerate(names, start=1):
        assert re.fullmatch(rf"{number:02d}-[a-z0-9-]+\.eml", name), name


@pytest.mark.parametrize("path", eml_files(), ids=lambda p: p.name)
def test_every_demo_message_parses(path: Path) -> None:
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert msg["Message-ID"]
    assert str(msg["To"]).endswith("support@acme.example") or "support@acme.example" in str(msg["To"])
    date = msg["Date"].datetime
    assert date.utcoffset() == timedelta(hours=8)
    tz = timezone(timedelta(hours=8))
    assert datetime(2026, 11, 24, 8, 0, tzinfo=tz) <= date <= datetime(2026, 11, 24, 11, 0, tzinfo=tz)
    for part in msg.walk():  # every leaf is reachable and decodable
        if not part.is_multipart():
            part.get_payload(decode=True)


def test_message_ids_are_unique_and_dates_ascend() -> None:
    msgs = [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in eml_files()]
    ids = [str(m["Message-ID"]).strip() for m in msgs]
    assert len(set(ids)) == len(ids)
    dates = [m["Date"].datetime for m in msgs]
    assert dates == sorted(dates)


def test_big5_message_decodes() -> None:
    msg, raw = parse("03-")
    assert b"Subject: =?big5?B?" in raw
    assert msg["Subject"] == "退款問題（訂單編號 TW-58213）"
    assert msg["From"].addresses[0].display_name == "陳怡君"
    assert msg.get_content_charset() == "big5"
    assert "退款" in msg.get_content()
    msg.get_payload(decode=True).decode("big5")  # strictly valid Big5


def test_gbk_message_decodes() -> None:
    msg, raw = parse("04-")
    assert b"Subject: =?gbk?B?" in raw
    assert msg["Subject"] == "咨询11月账单金额和增值税发票"
    assert msg["From"].addresses[0].display_name == "刘建国"
    assert msg.get_content_charset() == "gbk"
    assert "增值税专用发票" in msg.get_content()
    with pytest.raises(UnicodeDecodeError):
        msg.get_payload(decode=True).decode("gb2312")  # really needs GBK


def test_gb2312_label_needs_gb18030() -> None:
    msg, _ = parse("05-")
    assert msg.get_content_charset() == "gb2312"
    assert msg["Subject"] == "收件人姓名显示成问号"
    payload = msg.get_payload(decode=True)
    for codec in ("gb2312", "gbk"):
        with pytest.raises(UnicodeDecodeError):
            payload.decode(codec)
    text = payload.decode("gb18030")
    assert "陶镕" in text and "龚䶮" in text


def test_iso_2022_jp_message_decodes() -> None:
    msg, raw = parse("06-")
    assert b"=?iso-2022-jp?B?" in raw
    assert msg["Subject"] == "CSVインポート時にエラー500が発生します"
    assert msg.get_content_charset() == "iso-2022-jp"
    assert "お世話になっております" in msg.get_content()


def test_followup_threads_only_by_tag_and_sender() -> None:
    first, _ = parse("01-")
    followup, _ = parse("07-")
    assert "[SUP-1]" in followup["Subject"]
    assert followup["From"].addresses[0].addr_spec == first["From"].addresses[0].addr_spec
    original_id = str(first["Message-ID"]).strip()
    assert str(followup["In-Reply-To"]).strip() == "<ack-demo@acme.example>"
    assert original_id not in str(followup["References"])


def test_stranger_copies_the_tag_from_another_address() -> None:
    first, _ = parse("01-")
    stranger, _ = parse("08-")
    assert "[SUP-1]" in stranger["Subject"]
    assert stranger["From"].addresses[0].addr_spec != first["From"].addresses[0].addr_spec


def test_auto_replies_bounce_and_bulk_mail() -> None:
    ooo, _ = parse("09-")
    assert ooo["Auto-Submitted"] == "auto-replied" and ooo["Subject"].startswith("Out of Office:")
    zh_ooo, raw = parse("10-")
    assert zh_ooo["Subject"] == "自動回覆：休假中" and b"Subject: =?" in raw
    assert zh_ooo["Auto-Submitted"] is None
    bounce, _ = parse("11-")
    assert bounce["From"].addresses[0].addr_spec == "MAILER-DAEMON@mx.example"
    assert bounce.get_content_type() == "multipart/report"
    assert bounce.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in bounce.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers",
    ]
    newsletter, _ = parse("12-")
    assert newsletter["List-Id"] and newsletter["Precedence"] == "bulk"


def test_attachments_with_rfc2231_filename() -> None:
    msg, raw = parse("13-")
    assert b"filename*=utf-8''" in raw
    attachments = list(msg.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["發票_TW-60492.pdf", "IMG_4821.png"]
    pdf, png = (a.get_content() for a in attachments)
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert "水箱" in msg.get_body(("plain",)).get_content()


def test_malformed_message_is_malformed() -> None:
    msg, _ = parse("14-")
    assert msg["From"] is None
    assert msg.defects


def test_generator_reproduces_the_committed_mailbox() -> None:
    generator = runpy.run_path(str(DEMO / "make_mailbox.py"))  # a script, not a package; leaves no .pyc behind
    built = dict(generator["build_messages"]())
    committed = {p.name: p.read_bytes() for p in eml_files()}
    assert sorted(built) == sorted(committed)
    for name, data in built.items():
        assert data == committed[name], f"{name} is stale: run data/demo/make_mailbox.py"
