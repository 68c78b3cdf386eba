#!/usr/bin/env python3
"""Generate the demo mailbox used by ``inboxd demo``.

Writes one raw RFC 5322 message per file into ``data/demo/mailbox/`` (or the
directory given with ``--out``), named ``NN-short-description.eml`` in arrival
order. The messages are the kind of mail a shared support address really gets:
ordinary customer requests in English, Traditional and Simplified Chinese in
legacy charsets (Big5, GBK, GB2312 that is really GB18030), Japanese
ISO-2022-JP, a follow-up that threads by its ``[SUP-1]`` subject tag, a
stranger who copied that tag, auto-replies, a bounce, a newsletter, a message
with attachments and one malformed message that should be quarantined.

The output is deterministic: dates, Message-IDs and MIME boundaries are fixed,
attachments are built byte by byte, and nothing depends on the clock, the
locale or random numbers, so running the script again reproduces the committed
files exactly (``tests/test_templates.py`` checks this). Only the standard
library is used; messages are built with ``email.message.Message`` and the
``compat32`` policy, which keeps pre-encoded headers such as
``=?big5?B?...?=`` exactly as written instead of re-encoding them as UTF-8.

Usage::

    python data/demo/make_mailbox.py            # rewrite data/demo/mailbox/
    python data/demo/make_mailbox.py --out DIR  # write somewhere else

Existing ``NN-*.eml`` files in the output directory are removed first, so a
renamed or dropped message does not linger.
"""

from __future__ import annotations

import argparse
import base64
import quopri
import struct
import zlib
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import Message
from email.utils import format_datetime
from pathlib import Path

SUPPORT = "Acme Support <support@acme.example>"
SUPPORT_ADDR = "support@acme.example"
TZ = timezone(timedelta(hours=8))  # all demo mail arrives on Tue 24 Nov 2026, Taipei/Shanghai time
# max_line_length=0: the generator writes header values as given; fold() below does the folding the way
# mail clients do (never leaving the first line empty, as compat32's own folding would).
POLICY = policy.compat32.clone(linesep="\n", max_line_length=0)
OUT_DEFAULT = Path(__file__).resolve().parent / "mailbox"


# --------------------------------------------------------------------------- helpers


def date(hour: int, minute: int, second: int = 0) -> str:
    """RFC 5322 date on the demo day, e.g. 'Tue, 24 Nov 2026 08:03:12 +0800'."""
    return format_datetime(datetime(2026, 11, 24, hour, minute, second, tzinfo=TZ))


def encoded_word(text: str, charset: str) -> str:
    """RFC 2047 'B' encoded word(s) for ``text`` in ``charset``.

    Long text is split into several encoded words (separated by a space, which
    the header decoder drops between encoded words) so that none is longer than
    66 characters and "Subject: " plus the first word fits in 78 columns; splits
    are made between characters, never inside one.
    """
    words: list[str] = []
    chunk = ""
    for ch in text:
        trial = chunk + ch
        if len(f"=?{charset}?B?{base64.b64encode(trial.encode(charset)).decode()}?=") > 66 and chunk:
            words.append(chunk)
            chunk = ch
        else:
            chunk = trial
    if chunk:
        words.append(chunk)
    return " ".join(f"=?{charset}?B?{base64.b64encode(w.encode(charset)).decode()}?=" for w in words)


def mailbox(name: str, addr: str, charset: str | None = None) -> str:
    """An address with display name; non-ASCII names are encoded in ``charset``."""
    if charset:
        return f"{encoded_word(name, charset)} <{addr}>"
    return f"{name} <{addr}>"


def new_message(*, from_: str | None, subject: str, when: str, message_id: str, to: str = SUPPORT) -> Message:
    """A top-level message with the usual headers in the usual order."""
    msg = Message(policy=POLICY)
    if from_ is not None:
        msg["From"] = from_
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = when
    msg["Message-ID"] = message_id
    msg["MIME-Version"] = "1.0"
    return msg


def set_text(part: Message, text: str, subtype: str = "plain", charset: str = "utf-8", cte: str = "base64") -> Message:
    """Make ``part`` a text/<subtype> body encoded in ``charset`` with transfer encoding ``cte``."""
    return set_text_bytes(part, text.encode(charset), subtype, charset, cte)


def set_text_bytes(part: Message, data: bytes, subtype: str, declared: str, cte: str) -> Message:
    """Like :func:`set_text` for bytes already encoded; ``declared`` is the charset the header claims."""
    data = data.replace(b"\r\n", b"\n")
    if cte == "base64":
        payload = base64.encodebytes(data).decode("ascii")
    elif cte == "quoted-printable":
        payload = quopri.encodestring(data).decode("ascii")
    elif cte == "8bit":
        payload = data.decode("ascii", "surrogateescape")  # BytesGenerator writes these bytes back verbatim
    elif cte == "7bit":
        payload = data.decode("ascii")
    else:  # pragma: no cover - programming error
        raise ValueError(cte)
    del part["Content-Type"], part["Content-Transfer-Encoding"]
    part["Content-Type"] = f'text/{subtype}; charset="{declared}"'
    part["Content-Transfer-Encoding"] = cte
    part.set_payload(payload)
    return part


def text_part(text: str, subtype: str = "plain", charset: str = "utf-8", cte: str = "base64") -> Message:
    return set_text(Message(policy=POLICY), text, subtype, charset, cte)


def multipart(msg: Message, subtype: str, boundary: str, parts: list[Message], **params: str) -> Message:
    del msg["Content-Type"]
    msg["Content-Type"] = f"multipart/{subtype}"
    for key, value in params.items():
        msg.set_param(key.replace("_", "-"), value)
    msg.set_param("boundary", boundary)
    msg.set_payload(parts)
    return msg


def binary_part(data: bytes, content_type: str, filename: str) -> Message:
    """An attachment; a non-ASCII ``filename`` is written as an RFC 2231 ``filename*=utf-8''...``."""
    part = Message(policy=POLICY)
    part["Content-Type"] = content_type
    name: str | tuple[str, str, str] = filename if filename.isascii() else ("utf-8", "", filename)
    part.set_param("name", name)
    part["Content-Disposition"] = "attachment"
    part.set_param("filename", name, header="Content-Disposition")
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


def fold(name: str, value: str, limit: int = 78) -> str:
    """Fold a header value at spaces so lines stay within ``limit`` where possible.

    A single token longer than the limit (a long Message-ID, say) stays whole
    on its line; the first token always stays on the header's own line.
    """
    if "\n" in value or len(name) + 2 + len(value) <= limit:
        return value
    lines: list[str] = []
    line = ""
    width = len(name) + 2
    for token in value.split(" "):
        if line and width + len(line) + 1 + len(token) > limit:
            lines.append(line)
            line, width = token, 1
        else:
            line = f"{line} {token}" if line else token
    lines.append(line)
    return "\n ".join(lines)


def to_bytes(msg: Message) -> bytes:
    """Serialize ``msg`` after folding every header of every part."""
    for part in msg.walk():
        items = part.items()
        for key in dict.fromkeys(key for key, _ in items):
            del part[key]
        for key, value in items:
            part[key] = fold(key, value) if isinstance(value, str) else value
    return msg.as_bytes(policy=POLICY)


def tiny_pdf(lines: list[str]) -> bytes:
    """A small but well-formed one-page PDF (uncompressed, correct xref) showing ``lines``."""
    stream = "BT /F1 11 Tf 56 780 Td 15 TL\n" + "".join(
        "(" + line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") '\n" for line in lines
    ) + "ET\n"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        "/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}endstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("ascii")
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode("ascii")
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode("ascii")
    return bytes(out)


def tiny_png(width: int = 32, height: int = 24) -> bytes:
    """A small valid PNG: a pale blue 'water tank' with a dark diagonal crack.

    Compressed with zlib level 0 (stored blocks) so the bytes do not depend on
    the zlib implementation.
    """
    rows = bytearray()
    for y in range(height):
        rows.append(0)  # filter type: None
        for x in range(width):
            if 4 <= y <= 20 and x in (y + 4, y + 5):
                rows += bytes((40, 40, 48))  # the crack
            elif 3 <= x <= 28 and 2 <= y <= 21:
                rows += bytes((190, 220, 240))  # the tank
            else:
                rows += bytes((245, 245, 245))  # background

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(rows), 0)) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- the messages
# Each function returns the raw bytes of one message. Ticket numbers mentioned
# below (SUP-1, SUP-2) are the ones `inboxd demo` assigns when it processes the
# files in order on an empty database.


def m01_order_not_arrived() -> bytes:
    """English, text/plain UTF-8 (quoted-printable, as Gmail sends it)."""
    msg = new_message(
        from_="Emily Carter <emily.carter@example.com>",
        subject="Order #A-20417 hasn't arrived",
        when=date(8, 3, 12),
        message_id="<CAF3kXt1f9w2QmD4rT7yZ0pLq8VbN2sE@mail.example.com>",
    )
    set_text(msg, """\
Hi,

I ordered a pair of Acme Trailrunner wireless headphones (order #A-20417) on
12 November and paid for standard shipping. The confirmation email said it
would arrive within 5–7 business days, but nothing has come yet, and the
tracking page has said "Label created" since 13 November.

Could you check what happened to the parcel? If it's lost, I'd prefer a
replacement rather than a refund, as it's meant to be a birthday present on
1 December.

Delivery address:
Emily Carter
Flat 4, 27 Marlowe Road
Springfield SP1 4XE

Thanks,
Emily
""", cte="quoted-printable")
    return to_bytes(msg)


def m02_password_reset_html() -> bytes:
    """English, HTML only: multipart/alternative whose only part is text/html (with a table)."""
    msg = new_message(
        from_="Daniel Okafor <daniel.okafor@northwind.example>",
        subject="Can't log in - password reset link says expired",
        when=date(8, 11, 40),
        message_id="<DB9PR07MB8842A1C3F0E9D2B7@DB9PR07MB8842.eurprd07.prod.northwind.example>",
    )
    html = """\
<html>
<head>
<meta http-equiv="Content-Type" content="text/html; charset=utf-8">
</head>
<body>
<div style="font-family: Calibri, Arial, sans-serif; font-size: 11pt; color: #000000">
<p>Hello Acme team,</p>
<p>Since this morning I can't sign in to the customer portal. I requested a password reset three times,
but every link I click says <b>&quot;This link has expired&quot;</b>, even when I open it within a minute of receiving it.</p>
<p>Details:</p>
<table border="1" cellpadding="4" cellspacing="0" style="border-collapse: collapse; font-size: 10pt">
<tr><th align="left">Account e-mail</th><td>daniel.okafor@northwind.example</td></tr>
<tr><th align="left">Customer number</th><td>NW-100482</td></tr>
<tr><th align="left">Browser</th><td>Firefox 144 on Windows 11</td></tr>
<tr><th align="left">Reset e-mails received</th><td>07:41, 07:48 and 07:55 (UTC+8)</td></tr>
<tr><th align="left">Error shown</th><td>This link has expired. Please request a new one.</td></tr>
</table>
<p>I need to download our October invoices today for month-end closing, so I would appreciate a quick look.</p>
<p>Best regards,<br>
Daniel Okafor<br>
IT Coordinator | Northwind Logistics</p>
</div>
</body>
</html>
"""
    multipart(msg, "alternative", "_000_DB9PR07MB8842A1C3F0E9D2B7_", [text_part(html, "html", "utf-8", "quoted-printable")])
    return to_bytes(msg)


def m03_refund_big5() -> bytes:
    """Traditional Chinese (Taiwan) in Big5: 8bit Big5 body, =?big5?B?...?= subject and name."""
    msg = new_message(
        from_=mailbox("陳怡君", "yijun.chen@example.tw", "big5"),
        subject=encoded_word("退款問題（訂單編號 TW-58213）", "big5"),
        when=date(8, 24, 5),
        message_id="<000001db3e2a$5c7e1f40$157a5dc0$@example.tw>",
    )
    msg["X-Mailer"] = "Microsoft Outlook 16.0"
    msg["Content-Language"] = "zh-tw"
    set_text(msg, """\
您好：

我在 11 月 15 日於貴公司官網訂購了一台「Acme 無線吸塵器 V8」（訂單編號 TW-58213），當天以信用卡付款 NT$8,990。

因為收到後發現規格和我需要的不同，我在 11 月 18 日已經透過網站申請退貨，物流也在 11 月 19 日到府收回商品，退貨單號是 RT-20261119-0457。

但是到今天為止，信用卡帳單上都還沒有看到退款，也沒有收到任何退款通知。想請問目前退款的處理進度如何？大概還需要幾個工作天才會退回信用卡？

如果需要提供其他資料，麻煩再跟我說，謝謝！

陳怡君
""", charset="big5", cte="8bit")
    return to_bytes(msg)


def m04_invoice_gbk() -> bytes:
    """Simplified Chinese (mainland) in GBK: base64 GBK body (the company name has 昇, which
    GB2312 lacks), =?gbk?B?...?= subject and name."""
    msg = new_message(
        from_=mailbox("刘建国", "liu.jianguo@example.cn", "gbk"),
        subject=encoded_word("咨询11月账单金额和增值税发票", "gbk"),
        when=date(8, 37, 51),
        message_id="<202611240837514129837@example.cn>",
    )
    msg["X-Mailer"] = "Foxmail 7.2.25.228[cn]"
    set_text(msg, """\
您好！

我是上海昇远信息技术有限公司的财务刘建国，我们的客户编号是 CN-300871。

有两个问题想咨询一下：

1. 本月（11月）的账单金额是 12,680.00 元，比上个月多了 3,200 元左右，但我们的套餐和用户数都没有变化。能否帮忙核对一下多出来的是哪些费用？

2. 10月份的增值税专用发票我们还没有收到。开票信息如下：
   公司名称：上海昇远信息技术有限公司
   纳税人识别号：91310115MA1K00000X
   地址、电话：上海市浦东新区张江路 88 号 5 楼，021-5000 0000
   开户行及账号：招商银行上海张江支行 1219 0000 0000 001

麻烦尽快开具，我们月底前需要入账。

如需我们提供其他材料，请随时联系。谢谢！

刘建国
财务部 | 上海昇远信息技术有限公司
""", charset="gbk", cte="base64")
    return to_bytes(msg)


def m05_gb2312_really_gb18030() -> bytes:
    """Simplified Chinese declared gb2312, but the bytes are GB18030.

    The name 陶镕 and 龚䶮 contain 镕 (GBK, not GB2312) and 䶮 (GB18030 only, not
    even GBK), both in the body and in the From display name, so only a
    gb18030 decode gets every character right. The subject itself is pure GB2312.
    """
    gb2312_label = "gb2312"
    name = "陶镕"
    name_word = f"=?{gb2312_label}?B?{base64.b64encode(name.encode('gb18030')).decode()}?="
    msg = new_message(
        from_=f"{name_word} <tao.rong@example.cn>",
        subject=encoded_word("收件人姓名显示成问号", gb2312_label),
        when=date(8, 52, 30),
        message_id="<tencent_5F0A9C27E3B14D8A6C2E7F11@qq.example.cn>",
    )
    msg["X-Mailer"] = "Foxmail 7.2.19.158[cn]"
    body = """\
你好，

我是你们的老客户陶镕，账号是 tao.rong@example.cn。

最近发现你们系统里我的名字显示不正常：订单确认邮件和发货单上，“镕”字都变成了“?”，快递员打电话来核对收件人时还以为我填错了。我们公司财务的同事龚䶮（“䶮”读 yǎn）在你们那里的账户也有同样的问题，她的名字直接显示成“龚?”，发票抬头上也是这样。

能不能麻烦技术人员看一下，是不是系统不支持生僻字？我们希望至少发票和发货单上的姓名能正确显示。

谢谢！

陶镕
"""
    set_text_bytes(msg, body.encode("gb18030"), "plain", gb2312_label, "base64")
    return to_bytes(msg)


def m06_iso2022jp_technical() -> bytes:
    """Japanese in ISO-2022-JP (7bit): a language inboxd does not reply in, so it uses the default."""
    msg = new_message(
        from_=mailbox("佐藤 健一", "k.sato@tokyo-trading.example", "iso-2022-jp"),
        subject=encoded_word("CSVインポート時にエラー500が発生します", "iso-2022-jp"),
        when=date(9, 5, 17),
        message_id="<20261124100517.8F3C.A2E4B7D1@tokyo-trading.example>",
    )
    msg["X-Mailer"] = "Becky! ver. 2.81.05"
    set_text(msg, """\
Acme サポート ご担当者様

いつもお世話になっております。
東京トレーディング株式会社の佐藤です。

本日朝から、管理画面で商品データのCSVファイルを
インポートしようとすると「エラー500：内部サーバーエラー」と
表示され、処理が途中で止まってしまいます。

・ファイル：products_2026-11.csv（約3,200行、UTF-8）
・ブラウザ：Google Chrome 最新版（Windows 11）
・先週までは同じ手順で問題なく取り込めていました。

10行程度の小さいファイルでは成功するため、件数が多い場合のみ
失敗しているようです。
お手数ですが、原因をご確認いただけますでしょうか。

よろしくお願いいたします。

佐藤 健一
東京トレーディング株式会社　情報システム部
""", charset="iso-2022-jp", cte="7bit")
    return to_bytes(msg)


def m07_followup_sup1() -> bytes:
    """Customer 1 replies to the acknowledgement.

    The acknowledgement's real Message-ID is not known when this file is made,
    so In-Reply-To/References point at a placeholder; the message threads into
    SUP-1 through the [SUP-1] subject tag and the matching sender address.
    """
    msg = new_message(
        from_="Emily Carter <emily.carter@example.com>",
        subject="Re: [SUP-1] We received your request: Order #A-20417 hasn't arrived",
        when=date(9, 18, 44),
        message_id="<CAF3kXt2aR8nW5cJ0hYpE6uGz1TqM9dK@mail.example.com>",
    )
    msg["In-Reply-To"] = "<ack-demo@acme.example>"
    msg["References"] = "<ack-demo@acme.example>"
    set_text(msg, """\
Hi again,

Quick update: the tracking page changed this morning to "Delivered – left at
front door", but there was nothing at my door, and my neighbours and the
building manager haven't seen it either.

Could you please open a claim with the courier? The tracking number is
ACM-TRK-8840-2291.

Thanks,
Emily

On Tue, 24 Nov 2026 at 08:03, Acme Support <support@acme.example> wrote:
> Hello Emily Carter,
>
> Thank you for contacting Acme Support. We have received your message and
> opened ticket SUP-1 for it.
>
> If you have anything to add, simply reply to this email and keep "[SUP-1]"
> in the subject line. Your reply will be added to the same ticket, so there
> is no need to open a new request.
>
> Kind regards,
> Acme Support
""", cte="quoted-printable")
    return to_bytes(msg)


def m08_stranger_copied_tag() -> bytes:
    """Someone else reuses [SUP-1] in the subject: different sender, so a new ticket."""
    msg = new_message(
        from_="Marco Rossi <marco@rossi-design.example>",
        subject="[SUP-1] My order is missing too",
        when=date(9, 31, 2),
        message_id="<7b1f0c2e-4d8a-4e3b-9a51-2c6f8e0d4b17@rossi-design.example>",
    )
    set_text(msg, """\
Hello,

A friend forwarded me your reply about ticket SUP-1 because we both ordered
on the same day, so I'm using the same reference in the hope it's quicker.

My order #A-20533 (two Trailrunner charging cases) was also supposed to
arrive last week, and the tracking hasn't moved since 14 November.
Could you look into it?

Name on the order: Marco Rossi
Delivery postcode: 20121

Thank you,
Marco Rossi
""", charset="us-ascii", cte="7bit")
    return to_bytes(msg)


def m09_out_of_office() -> bytes:
    """Outlook out-of-office reply to the SUP-2 acknowledgement (Auto-Submitted: auto-replied)."""
    msg = new_message(
        from_="Daniel Okafor <daniel.okafor@northwind.example>",
        subject="Out of Office: [SUP-2] We received your request: Can't log in - password reset link says expired",
        when=date(9, 44, 26),
        message_id="<DB9PR07MB8842F7E10B3C9A55@DB9PR07MB8842.eurprd07.prod.northwind.example>",
    )
    msg["In-Reply-To"] = "<ack-demo-2@acme.example>"
    msg["Auto-Submitted"] = "auto-replied"
    msg["X-Auto-Response-Suppress"] = "All"
    set_text(msg, """\
Thank you for your message.

I am at a client site today (24 November) with limited access to e-mail and
will reply as soon as I can. For urgent IT matters, please contact the
Northwind service desk at it-help@northwind.example.

Kind regards,
Daniel Okafor
""", charset="us-ascii", cte="7bit")
    return to_bytes(msg)


def m10_chinese_out_of_office() -> bytes:
    """Traditional Chinese vacation auto-reply with only its subject to go by (no Auto-Submitted)."""
    msg = new_message(
        from_=mailbox("黃雅婷", "yating.huang@example.tw", "UTF-8"),
        subject=encoded_word("自動回覆：休假中", "UTF-8"),
        when=date(9, 58, 3),
        message_id="<TYZPR03MB71245C0E2D8A41F3@TYZPR03MB7124.apcprd03.prod.example.tw>",
    )
    set_text(msg, """\
您好：

感謝您的來信。我於 11 月 24 日至 11 月 27 日休假中，期間無法即時回覆郵件，將於 11 月 30 日（週一）回到辦公室後盡快處理。

如有急事，請聯絡同事王俊傑（junjie.wang@example.tw）。

謝謝！
黃雅婷
采風設計有限公司 業務部
""", charset="utf-8", cte="base64")
    return to_bytes(msg)


def m11_bounce() -> bytes:
    """A delivery status notification (RFC 3464) from MAILER-DAEMON about mail Acme sent earlier."""
    msg = Message(policy=POLICY)
    msg["Return-Path"] = "<>"
    msg["From"] = "Mail Delivery System <MAILER-DAEMON@mx.example>"
    msg["To"] = SUPPORT_ADDR
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg["Date"] = date(10, 7, 9)
    msg["Message-ID"] = "<20261124020709.3D1A21C0457@mx.example>"
    msg["MIME-Version"] = "1.0"

    notice = text_part("""\
This is the mail system at host mx.example.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients. It's attached below.

For further assistance, please send mail to postmaster.

If you do so, please include this problem report. You can
delete your own text from the attached returned message.

                   The mail system

<tom.becker@oldmail.example>: host mx1.oldmail.example[192.0.2.25] said: 550
    5.1.1 <tom.becker@oldmail.example>: Recipient address rejected: User
    unknown in virtual mailbox table (in reply to RCPT TO command)
""", charset="us-ascii", cte="7bit")
    notice["Content-Description"] = "Notification"

    per_message = Message(policy=POLICY)
    per_message["Reporting-MTA"] = "dns; mx.example"
    per_message["X-Postfix-Queue-ID"] = "3D1A21C0457"
    per_message["X-Postfix-Sender"] = "rfc822; support@acme.example"
    per_message["Arrival-Date"] = date(10, 7, 6)
    per_recipient = Message(policy=POLICY)
    per_recipient["Final-Recipient"] = "rfc822; tom.becker@oldmail.example"
    per_recipient["Original-Recipient"] = "rfc822;tom.becker@oldmail.example"
    per_recipient["Action"] = "failed"
    per_recipient["Status"] = "5.1.1"
    per_recipient["Remote-MTA"] = "dns; mx1.oldmail.example"
    per_recipient["Diagnostic-Code"] = (
        "smtp; 550 5.1.1 <tom.becker@oldmail.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    status = Message(policy=POLICY)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    status.set_payload([per_message, per_recipient])

    original = Message(policy=POLICY)
    original["Content-Description"] = "Undelivered Message Headers"
    original["Content-Type"] = "text/rfc822-headers"
    original.set_payload("""\
From: Acme Support <support@acme.example>
To: Tom Becker <tom.becker@oldmail.example>
Subject: Re: Warranty registration for serial AC-7731-K
Date: Tue, 24 Nov 2026 10:07:04 +0800
Message-ID: <reply-2b9e41@acme.example>
Auto-Submitted: no
MIME-Version: 1.0
Content-Type: text/plain; charset="utf-8"
""")

    multipart(msg, "report", "3D1A21C0457.1795975629/mx.example", [notice, status, original],
              report_type="delivery-status")
    msg.preamble = "This is a MIME-encapsulated message."
    return to_bytes(msg)


def m12_newsletter() -> bytes:
    """Bulk mail from a mailing list (List-Id, List-Unsubscribe, Precedence: bulk)."""
    msg = new_message(
        from_="CloudHost Weekly <newsletter@news.cloudhost.example>",
        subject="Your weekly infrastructure digest - 24 November 2026",
        when=date(10, 15, 0),
        message_id="<0100019b5e2c4a7f-weekly-2026-47@news.cloudhost.example>",
    )
    msg["List-Id"] = "CloudHost Weekly <weekly.news.cloudhost.example>"
    msg["List-Unsubscribe"] = (
        "<https://news.cloudhost.example/u/acme-support-7731>, "
        "<mailto:unsubscribe@news.cloudhost.example?subject=unsubscribe>"
    )
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["Precedence"] = "bulk"
    msg["X-Campaign"] = "weekly-2026-47"
    text = """\
CloudHost Weekly - 24 November 2026

* Scheduled maintenance: ap-east-1 storage nodes, Sun 29 Nov 02:00-04:00 UTC+8.
  No downtime is expected for replicated volumes.
* New: managed PostgreSQL 18 is now available in all regions.
* Tip of the week: rotate your API keys from the new Security page.

You are receiving this because support@acme.example subscribed to CloudHost Weekly.
Unsubscribe: https://news.cloudhost.example/u/acme-support-7731
"""
    html = """\
<html><body style="font-family: Arial, sans-serif; font-size: 14px; color: #222">
<h2 style="margin: 0 0 12px 0">CloudHost Weekly &middot; 24 November 2026</h2>
<ul>
<li><b>Scheduled maintenance:</b> ap-east-1 storage nodes, Sun 29 Nov 02:00&ndash;04:00 UTC+8. No downtime is expected for replicated volumes.</li>
<li><b>New:</b> managed PostgreSQL 18 is now available in all regions.</li>
<li><b>Tip of the week:</b> rotate your API keys from the new Security page.</li>
</ul>
<p style="font-size: 12px; color: #777">You are receiving this because support@acme.example subscribed to CloudHost Weekly.
<a href="https://news.cloudhost.example/u/acme-support-7731">Unsubscribe</a></p>
</body></html>
"""
    multipart(msg, "alternative", "b1_weekly_2026_47_2c4a7f", [
        text_part(text, "plain", "utf-8", "quoted-printable"),
        text_part(html, "html", "utf-8", "quoted-printable"),
    ])
    return to_bytes(msg)


def m13_attachments() -> bytes:
    """Traditional Chinese UTF-8 body with a PDF (RFC 2231 Chinese filename) and a PNG photo."""
    msg = new_message(
        from_=mailbox("林志豪", "chihhao.lin@example.tw", "UTF-8"),
        subject=encoded_word("咖啡機水箱破裂漏水，附上發票與照片", "UTF-8"),
        when=date(10, 29, 38),
        message_id="<CAGm8Rz0vB3xYq1pK7tL2wN5cE9hU4sA@mail.example.tw>",
    )
    body = text_part("""\
您好：

我在 11 月 20 日從官網訂購的「Acme 義式咖啡機 CM-300」（訂單編號 TW-60492）昨天送到了，但打開外箱後發現水箱底部有一道裂痕，加水後會一直漏水，完全無法使用。外箱看起來沒有明顯的撞擊痕跡，應該是出貨前就有問題。

附件是購買發票和水箱裂痕的照片，麻煩協助確認。請問可以直接換一台新的嗎？需要我先把機器寄回去，還是會安排物流到府收件？

謝謝您的協助！

林志豪
""", "plain", "utf-8", "base64")
    pdf = binary_part(tiny_pdf([
        "Acme Store Taiwan - Electronic Invoice",
        "Invoice no.: AB-12345678    Date: 2026-11-20",
        "Order no.: TW-60492",
        "Item: Acme Espresso Machine CM-300 x 1",
        "Amount: NT$ 12,900 (tax included)",
    ]), "application/pdf", "發票_TW-60492.pdf")
    photo = binary_part(tiny_png(), "image/png", "IMG_4821.png")
    multipart(msg, "mixed", "000000000000a1b2c3d4e5f60718", [body, pdf, photo])
    return to_bytes(msg)


def m14_malformed() -> bytes:
    """Garbage that should be quarantined: no From, a non-header line in the header
    block, raw 8-bit bytes in a header, broken encoded words, base64 on a multipart,
    and a boundary that never occurs in the body."""
    return (
        b"Received: from [203.0.113.77] (unknown [203.0.113.77])\n"
        b"\tby mx.acme.example with SMTP id 4F2aQ; " + date(10, 46, 5).encode() + b"\n"
        b"To: support@acme.example\n"
        b"Subject: =?utf-8?B?5L2g5aW9!!not-base64?= URGENT =?x-unknown-99?Q?caf=E9?= \xff\xfe\xa1\n"
        b"Date: " + date(10, 46, 2).encode() + b"\n"
        b"Message-ID: <20261124024602.GA7731@malformed.example>\n"
        b"X-Mailer: BulkBlaster 2.0 (unregistered)\n"
        b"MIME-Version: 1.0\n"
        b"Content-Type: multipart/mixed; boundary=\"=_boundary_A\n"
        b"Content-Transfer-Encoding: base64\n"
        b"this line is not a header at all\n"
        b"X-Spam-Score: \xc3\x28\xa0\xa1 ??????\n"
        b"From-: nobody\n"
        b"\n"
        b"--=_boundary_B\n"
        b"Content-Type: text/plain; charset=\"utf-8\"\n"
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
        b"SGVsbG8sIHdlIGhhdmUgYSBncmVhdCBvZmZlciBmb3IgeW91IQ==!!!@@@\n"
        b"--=_boundary_B\n"
        b"Content-Type: application/octet-stream; name=\"invoice.pdf.exe\"\n"
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
        b"TVqQAAMAAAAEAAAA//8AALgAAAAAAAAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n"
        b"\x8f\x9e\xad garbage \xbc\xcb\n"
    )


MESSAGES = [
    ("01-order-not-arrived.eml", m01_order_not_arrived),
    ("02-password-reset-html-only.eml", m02_password_reset_html),
    ("03-refund-big5.eml", m03_refund_big5),
    ("04-invoice-gbk.eml", m04_invoice_gbk),
    ("05-gb2312-label-gb18030-bytes.eml", m05_gb2312_really_gb18030),
    ("06-iso-2022-jp-technical.eml", m06_iso2022jp_technical),
    ("07-followup-sup1.eml", m07_followup_sup1),
    ("08-stranger-copied-tag.eml", m08_stranger_copied_tag),
    ("09-out-of-office.eml", m09_out_of_office),
    ("10-chinese-out-of-office.eml", m10_chinese_out_of_office),
    ("11-bounce.eml", m11_bounce),
    ("12-newsletter.eml", m12_newsletter),
    ("13-attachments-rfc2231-filename.eml", m13_attachments),
    ("14-malformed.eml", m14_malformed),
]


def build_messages() -> list[tuple[str, bytes]]:
    """All demo messages as (file name, raw bytes), in arrival order."""
    return [(name, make()) for name, make in MESSAGES]


def write_mailbox(out_dir: Path) -> list[Path]:
    """Write the demo messages into ``out_dir``, replacing any previous NN-*.eml files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("[0-9][0-9]-*.eml"):
        old.unlink()
    written = []
    for name, data in build_messages():
        path = out_dir / name
        path.write_bytes(data)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DEFAULT, help=f"output directory (default: {OUT_DEFAULT})")
    args = parser.parse_args(argv)
    for path in write_mailbox(args.out):
        print(f"{path.stat().st_size:7d}  {path}")


if __name__ == "__main__":
    main()
