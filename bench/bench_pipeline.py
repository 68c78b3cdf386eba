#!/usr/bin/env python
"""End-to-end benchmark of inboxd against a real Dovecot and an SMTP sink.

Run from the project root:

    .venv/bin/python bench/bench_pipeline.py [--messages 1000] [--latency-samples 100]

One run measures, on the same servers:

0. the model: ``inboxd train`` (bundled training data) into the temporary config's
   ``[classify] model`` path, as a deployment would before ``inboxd run``, so every phase
   below classifies with it (``--model PATH`` uses an existing file instead, ``--no-model``
   measures rules only).
1. backlog drain with ``inboxd run --once`` (subprocess): N mixed mails waiting in the
   ``support`` INBOX, timed from spawn until every expected acknowledgement reached the
   sink; peak RSS of the child (``os.wait4``). If one ``--once`` does not deliver every
   acknowledgement it is run again, back to back, and the runs are reported.
2. the same backlog drained by the daemon (``inboxd run``) on a fresh database.
3. a baseline: a subprocess that only does raw IMAP ``BODY.PEEK[]`` fetches of the same
   mail (imapclient) and sends one small ack-sized mail per expected acknowledgement
   over one aiosmtplib connection to the same sink.
4. delivery-to-acknowledgement latency with IDLE: the daemon from (2) keeps running; one
   mail at a time is APPENDed and the time until the sink accepts its acknowledgement is
   recorded.
5. Dovecot's own IDLE notification delay (APPEND -> EXISTS at a plain imapclient IDLE
   session), the floor under (4).
6. with ``--profile``: one more ``run --once`` on a fresh database under py-spy (or cProfile
   in every thread, bench/profile_once.py): where the time per mail goes. Not a timing.

Order of a run: train, baseline, --once, daemon drain, latency, IDLE floor, profile.
See bench/README.md.

Results are printed and written to ``bench/results/<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT / "tests"))

PYTHON = sys.executable
SUPPORT = "support@example.com"
SENDER_DOMAIN = "example.net"  # not example.com users: the sink only records, no Dovecot delivery


# --------------------------------------------------------------------------------------
# the corpus
# --------------------------------------------------------------------------------------

@dataclass
class Corpus:
    raws: list[bytes] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    ack_recipients: list[str] = field(default_factory=list)  # one per expected acknowledgement
    tickets: int = 0

    @property
    def expected_acks(self) -> int:
        return len(self.ack_recipients)

    def kind_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for k in self.kinds:
            out[k] = out.get(k, 0) + 1
        return dict(sorted(out.items()))


def _encoded_word(charset: str, text: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _raw_charset_mail(sender: str, name: str, charset: str, subject: str, body: str, msgid: str,
                      date: str) -> bytes:
    head = (f"From: {name} <{sender}>\r\nTo: {SUPPORT}\r\nSubject: {_encoded_word(charset, subject)}\r\n"
            f"Date: {date}\r\nMessage-ID: {msgid}\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: text/plain; charset={charset}\r\n")
    if charset.lower() == "iso-2022-jp":
        head += "Content-Transfer-Encoding: 7bit\r\n"
    else:
        head += "Content-Transfer-Encoding: 8bit\r\n"
    return head.encode("ascii") + b"\r\n" + body.replace("\n", "\r\n").encode(charset) + b"\r\n"


_EN_SUBJECTS = ["Order {n} never arrived", "Refund for invoice {n}", "Cannot log in to my account",
                "Wrong size delivered (order {n})", "Question about shipping to Kaohsiung"]
_EN_BODY = ("Hello,\n\nI ordered item {n} two weeks ago and it has not arrived yet. The tracking page "
            "has not changed since last Monday. Could you please check what happened and tell me "
            "when I can expect it? I need it before the end of the month.\n\nThank you,\n{name}\n")
_BIG5 = [("退款問題 {n}", "您好，我上週訂購的商品有瑕疵，想申請退款，請問需要寄回嗎？訂單編號 {n}。謝謝。"),
         ("帳號無法登入", "您好，我的帳號從昨天開始就無法登入，系統顯示密碼錯誤，但我確定密碼是對的。請協助處理，謝謝。")]
_GBK = [("发票问题 {n}", "您好，请问我的发票什么时候可以开出来？订单号 {n}，谢谢。"),
        ("物流查询", "您好，我的包裹已经五天没有更新物流信息了，请帮我查一下，谢谢。")]
_JP = [("注文について {n}", "注文した商品がまだ届いていません。注文番号は {n} です。確認をお願いします。")]


def build_corpus(n: int, seed: int = 1) -> Corpus:
    """N mails, every sender distinct except follow-ups, which come from their ticket's requester.

    Ticket numbers are predicted: mail is processed in UID order and every mail except a
    follow-up creates the next ticket (auto-replies create one too, closed on arrival, with no
    ack); follow-ups continue the tickets of people, not of auto-replies.
    """
    rng = random.Random(seed)
    slots = (["en"] * 33 + ["html"] * 15 + ["big5"] * 14 + ["gbk"] * 14 + ["jp"] * 8 + ["attach"] * 2
             + ["auto"] * 6 + ["followup"] * 8)
    assert len(slots) == 100
    rng.shuffle(slots)
    corpus = Corpus()
    created: list[tuple[int, str, str, str]] = []  # (ticket number, sender, subject, message-id)
    attachment = rng.randbytes(200 * 1024)
    date = format_datetime(datetime.now().astimezone())
    for i in range(n):
        kind = slots[i % 100]
        if kind == "followup" and not created:
            kind = "en"
        sender = f"cust{i:05d}@{SENDER_DOMAIN}"
        name = f"Customer {i}"
        msgid = f"<bench-{i}-{rng.getrandbits(32):08x}@{SENDER_DOMAIN}>"
        subject = ""
        if kind in ("en", "attach", "auto", "html"):
            msg = EmailMessage()
            msg["From"] = f"{name} <{sender}>"
            msg["To"] = SUPPORT
            msg["Date"] = date
            msg["Message-ID"] = msgid
            subject = rng.choice(_EN_SUBJECTS).format(n=1000 + i)
            body = _EN_BODY.format(n=1000 + i, name=name)
            if kind == "auto":
                variant = i % 3
                if variant == 0:
                    msg["Auto-Submitted"] = "auto-replied"
                    subject = f"Re: {subject}"
                elif variant == 1:
                    subject = "Out of Office: back on Monday"
                else:
                    msg["X-Autoreply"] = "yes"
                    subject = f"Automatic reply: {subject}"
                body = "I am out of the office until Monday and will answer your mail then.\n"
            msg["Subject"] = subject
            if kind == "html":
                html = ("<html><body><p>Hello,</p><p>" + body.replace("\n\n", "</p><p>").replace("\n", "<br>")
                        + "</p><table><tr><td>Order</td><td>" + str(1000 + i) + "</td></tr></table></body></html>")
                msg.set_content(html, subtype="html")
            else:
                msg.set_content(body)
            if kind == "attach":
                msg.add_attachment(attachment, maintype="application", subtype="pdf", filename=f"invoice-{i}.pdf")
            raw = msg.as_bytes()
        elif kind == "followup":
            number, sender, orig_subject, orig_msgid = rng.choice(created)
            msg = EmailMessage()
            msg["From"] = f"Returning <{sender}>"
            msg["To"] = SUPPORT
            msg["Date"] = date
            msg["Message-ID"] = msgid
            if i % 2:
                msg["Subject"] = f"Re: [SUP-{number}] {orig_subject}"
            else:  # threads by References to the customer's own first mail, no tag
                msg["Subject"] = f"Re: {orig_subject}"
                msg["In-Reply-To"] = orig_msgid
                msg["References"] = orig_msgid
            msg.set_content(f"Any news about this? (follow-up {i})\n")
            raw = msg.as_bytes()
        else:
            charset, texts = {"big5": ("big5", _BIG5), "gbk": ("gbk", _GBK), "jp": ("iso-2022-jp", _JP)}[kind]
            subj_t, body_t = rng.choice(texts)
            subject, body = subj_t.format(n=1000 + i), body_t.format(n=1000 + i)
            raw = _raw_charset_mail(sender, name, charset, subject, body, msgid, date)
        corpus.raws.append(raw)
        corpus.kinds.append(kind)
        if kind != "followup":
            corpus.tickets += 1
            if kind != "auto":  # a follow-up continues a person's ticket (an auto-reply's is closed on arrival)
                created.append((corpus.tickets, sender, subject, msgid))
                corpus.ack_recipients.append(sender)
    return corpus


# --------------------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------------------

def make_sink_class() -> type:
    from mailservers import SmtpSink

    class TimedSink(SmtpSink):  # type: ignore[misc,valid-type]
        """The test SMTP sink, plus the monotonic time each message was accepted."""

        def __init__(self, dovecot: Any) -> None:
            super().__init__(dovecot)
            self.times: list[float] = []
            self.by_rcpt: dict[str, float] = {}
            self._lock = threading.Lock()

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            result = await super().handle_DATA(server, session, envelope)
            if result.startswith("250"):
                now = time.monotonic()
                with self._lock:
                    self.times.append(now)
                    for rcpt in envelope.rcpt_tos:
                        self.by_rcpt[rcpt.lower()] = now
            return result

        def clear(self) -> None:
            with self._lock:
                super().clear()
                self.times.clear()
                self.by_rcpt.clear()

        def count(self) -> int:
            return len(self.messages)

    return TimedSink


def write_config(directory: Path, dovecot: Any, sink: Any, db_name: str, poll_interval: float,
                 ack_limit: int, model: Path, user: str = "support") -> Path:
    box, smtp = dovecot.imap_config(user), sink.smtp_config()
    text = f"""\
[imap]
host = "{box['host']}"
port = {box['port']}
tls = "none"
username = "{box['username']}"
password = "{box['password']}"
poll_interval = {poll_interval}

[smtp]
host = "{smtp['host']}"
port = {smtp['port']}
tls = "none"
timeout = 30
retry_delay = 1

[support]
address = "{SUPPORT}"
name = "Example Support"
timezone = "Asia/Taipei"
first_response = "4h"
business_days = ["mon", "tue", "wed", "thu", "fri"]
business_hours = ["09:00-12:30", "13:30-18:00"]
holidays = ["2026-12-25"]
ack_limit_per_hour = {ack_limit}

[storage]
database = "{db_name}"

[classify]
rules_dir = "{ROOT / 'rules'}"
model = "{model}"

[logging]
level = "info"
format = "json"
"""
    path = directory / f"{Path(db_name).stem}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def append_all(dovecot: Any, raws: list[bytes], user: str = "support") -> list[int]:
    """APPEND every mail over one IMAP session; returns their UIDs."""
    uids = []
    with dovecot.client(user) as imap:
        for raw in raws:
            response = imap.append("INBOX", raw)
            match = re.search(rb"APPENDUID \d+ (\d+)", response)
            uids.append(int(match.group(1)) if match else -1)
    return uids


# --------------------------------------------------------------------------------------
# child processes
# --------------------------------------------------------------------------------------

class Child:
    """A subprocess whose own peak RSS is read with os.wait4 when it exits."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str] | None = None,
                 stdout_path: Path | None = None) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self._out = open(stdout_path, "wb") if stdout_path else subprocess.DEVNULL
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._log, env=env)
        self.ended: float | None = None
        self.returncode: int | None = None
        self.maxrss_kb: int | None = None
        self.rss_samples_kb: list[int] = []
        self.rss_sample_times: list[float] = []  # wall clock of each sample, to place it in a stage

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return None
        self._reaped(status, usage)
        return self.returncode

    def _reaped(self, status: int, usage: Any) -> None:
        self.ended = time.monotonic()
        self.ended_wall = time.time()
        self.returncode = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.returncode  # keep Popen from waiting again
        self.maxrss_kb = usage.ru_maxrss  # kilobytes on Linux
        self._close_files()

    def sample_rss(self) -> None:
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.rss_samples_kb.append(int(line.split()[1]))
                        self.rss_sample_times.append(time.time())
                        return
        except OSError:
            pass

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.proc.args} still running after {timeout} s")
            self.sample_rss()
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.wait(timeout)
            except TimeoutError:
                self.proc.kill()
                return self.wait(10)
        assert self.returncode is not None
        return self.returncode

    def _close_files(self) -> None:
        self._log.close()
        if hasattr(self._out, "close"):
            self._out.close()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def inboxd_args(config: Path, *extra: str) -> list[str]:
    return [PYTHON, "-m", "inboxd", "--config", str(config), "run", *extra]


def log_events(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return out


def event_span(events: list[dict[str, Any]], name: str) -> tuple[str, str, int] | None:
    times = [e["time"] for e in events if e.get("event") == name]
    return (times[0], times[-1], len(times)) if times else None


def stage_peak_rss(bounds: list[tuple[str, float, float]], child: Child) -> dict[str, float]:
    """Highest sampled VmRSS (MB, every ~10 ms) within each stage: where the peak RSS is reached,
    and whether a stage's memory grows with the backlog."""
    out: dict[str, float] = {}
    for name, start, end in bounds:
        inside = [kb for t, kb in zip(child.rss_sample_times, child.rss_samples_kb) if start <= t <= end]
        if inside:
            out[name] = round(max(inside) / 1024, 1)
    return out


def stage_bounds(events: list[dict[str, Any]], started_wall: float,
                 ended_wall: float) -> list[tuple[str, float, float]]:
    """(name, start, end) of the stages of one `run --once` from its log (wall clock, ms resolution),
    in the order inboxd does them: start-up (interpreter, imports, configuration, rules), model load (scikit-learn import +
    joblib), IMAP connect + fetch + store of the whole backlog, processing, the SLA watch check
    (inboxd.sla.watch, no log line of its own) and SMTP connect, sending the whole outbox, then marking the fetched mail with IMAP keywords and logging out, exit."""
    def stamp(e: dict[str, Any]) -> float:
        return datetime.fromisoformat(e["time"]).timestamp()

    def first(name: str) -> float | None:
        return next((stamp(e) for e in events if e.get("event") == name), None)

    def last(name: str) -> float | None:
        found = [e for e in events if e.get("event") == name]
        return stamp(found[-1]) if found else None

    points = [("spawn", started_wall), ("log_start", min((stamp(e) for e in events), default=None)),
              ("model_loaded", first("model_loaded")),
              ("first_processed", first("message_processed")), ("last_processed", last("message_processed")),
              ("first_sent", first("mail_sent")), ("last_sent", last("mail_sent")),
              ("done", first("run_once_done")), ("exit", ended_wall)]
    names = {("spawn", "log_start"): "startup", ("log_start", "model_loaded"): "model_load",
             ("model_loaded", "first_processed"): "fetch_and_store",
             ("log_start", "first_processed"): "fetch_and_store",
             ("first_processed", "last_processed"): "processing", ("last_processed", "first_sent"): "sla_watch_and_smtp_connect",
             ("first_sent", "last_sent"): "sending", ("last_sent", "done"): "mark_keywords",
             ("last_processed", "done"): "mark_keywords", ("done", "exit"): "exit"}
    known = [(n, t) for n, t in points if t is not None]
    return [(names.get((a, b), f"{a}_to_{b}"), ta, tb) for (a, ta), (b, tb) in zip(known, known[1:])]


def per_mail_trend(events: list[dict[str, Any]]) -> tuple[float, float] | None:
    """Mean milliseconds between consecutive processed mails in the first and the last tenth of
    the backlog: growth means per-mail work that depends on how much is already stored."""
    ts = [datetime.fromisoformat(e["time"]).timestamp() for e in events if e.get("event") == "message_processed"]
    gaps = [(b - a) * 1000 for a, b in zip(ts, ts[1:])]
    tenth = len(gaps) // 10
    if tenth < 5:
        return None
    return round(statistics.fmean(gaps[:tenth]), 2), round(statistics.fmean(gaps[-tenth:]), 2)


def git_state() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": run("git", "rev-parse", "--short", "HEAD").strip(),
            "modified_in_inboxd": [line[3:] for line in run("git", "status", "--porcelain", "inboxd").splitlines()
                                   if line.strip()]}


def db_summary(db: Path) -> dict[str, Any]:
    import sqlite3
    conn = sqlite3.connect(str(db))
    try:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "raw_messages": one("SELECT COUNT(*) FROM raw_messages"),
            "quarantined": one("SELECT COUNT(*) FROM raw_messages WHERE state='quarantined'"),
            "tickets": one("SELECT COUNT(*) FROM tickets"),
            "outbox_sent": one("SELECT COUNT(*) FROM outbox WHERE state='sent'"),
            "outbox_pending": one("SELECT COUNT(*) FROM outbox WHERE state='pending'"),
            "outbox_failed": one("SELECT COUNT(*) FROM outbox WHERE state='failed'"),
            "acks_suppressed": one("SELECT COUNT(*) FROM events WHERE kind='ack_suppressed'"),
        }
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# the baseline child: raw IMAP fetch + raw SMTP send, nothing else
# --------------------------------------------------------------------------------------

def baseline_child(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    t_start = time.monotonic()
    import aiosmtplib
    from imapclient import IMAPClient

    t_imported = time.monotonic()
    imap = IMAPClient(spec["imap_host"], port=spec["imap_port"], ssl=False, timeout=60)
    imap.login(spec["imap_user"], spec["imap_password"])
    imap.select_folder("INBOX", readonly=True)
    uids = sorted(imap.search("ALL"))
    fetched = 0
    nbytes = 0
    batch = spec["batch"]
    for i in range(0, len(uids), batch):
        for _uid, data in imap.fetch(uids[i:i + batch], ["BODY.PEEK[]"]).items():
            fetched += 1
            nbytes += len(data[b"BODY[]"])
    imap.logout()
    t_fetched = time.monotonic()

    # One prebuilt acknowledgement-sized mail (inboxd's text+HTML acks average ~8.6 KB, measured at the sink);
    # only the recipient and the ticket number change: no MIME building in the loop.
    head = ("From: Example Support <" + SUPPORT + ">\r\nTo: {rcpt}\r\nSubject: [SUP-{n}] We received your request\r\n"
            "Message-ID: <ack.SUP-{n}.bench@example.com>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
            "Hello,\r\n\r\nYour request has been registered as ticket SUP-{n}.\r\n\r\n")
    line = "This is an automatic message; please keep the ticket number in the subject.\r\n"
    body = line * max(1, (spec["ack_bytes"] - len(head)) // len(line))

    async def send_all() -> int:
        smtp = aiosmtplib.SMTP(hostname=spec["smtp_host"], port=spec["smtp_port"], timeout=30)
        await smtp.connect()
        sent = 0
        for n, rcpt in enumerate(spec["recipients"], 1):
            await smtp.sendmail(SUPPORT, [rcpt], (head.format(rcpt=rcpt, n=n) + body).encode())
            sent += 1
        await smtp.quit()
        return sent

    sent = asyncio.run(send_all())
    t_done = time.monotonic()
    print(json.dumps({"fetched": fetched, "bytes": nbytes, "sent": sent,
                      "import_s": t_imported - t_start, "fetch_s": t_fetched - t_imported,
                      "send_s": t_done - t_fetched, "total_in_process_s": t_done - t_start}))


# --------------------------------------------------------------------------------------
# the phases
# --------------------------------------------------------------------------------------

def wait_until(predicate: Any, timeout: float, interval: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def phase_train(work: Path, dovecot: Any, sink: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``inboxd --config train.toml train``: the bundled training data into the config's model path.

    train.toml is a config like the others (its database does not exist, so there are no
    corrections); the model it writes is the one every later phase's config names."""
    model = work / "model.joblib"
    config = write_config(work, dovecot, sink, "train.db", args.poll_interval, args.ack_limit, model)
    t0 = time.monotonic()
    done = subprocess.run([PYTHON, "-m", "inboxd", "--config", str(config), "train"], cwd=ROOT,
                          capture_output=True, text=True, timeout=args.timeout)
    seconds = time.monotonic() - t0
    if done.returncode != 0 or not model.exists():
        raise RuntimeError(f"inboxd train exited {done.returncode}:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
    return {"path": str(model), "seconds": seconds, "file_mb": model.stat().st_size / 1e6,
            "output": done.stdout.strip().splitlines()}


def phase_once(work: Path, dovecot: Any, sink: Any, corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    """`inboxd run --once` until the outbox is empty, back to back; the sink must hold every ack."""
    config = write_config(work, dovecot, sink, "once.db", args.poll_interval, args.ack_limit,
                          args.model)
    sink.clear()
    runs: list[dict[str, Any]] = []
    for run in range(1, args.once_max_runs + 1):
        child = Child(inboxd_args(config, "--once"), work / f"once-{run}.log")
        code = child.wait(args.timeout)
        events = log_events(child.log_text())
        db = db_summary(work / "once.db")
        info = {"run": run, "exit_code": code, "seconds": child.ended - child.started,  # type: ignore[operator]
                "maxrss_mb": (child.maxrss_kb or 0) / 1024, "acks_in_sink_after": sink.count(),
                "processed": sum(1 for e in events if e.get("event") == "message_processed"),
                "sent": sum(1 for e in events if e.get("event") == "mail_sent"),
                "outbox_pending_after": db["outbox_pending"]}
        if run == 1:
            bounds = stage_bounds(events, child.started_wall, child.ended_wall)
            info["stage_seconds"] = {name: round(end - start, 3) for name, start, end in bounds}
            info["stage_peak_rss_mb"] = stage_peak_rss(bounds, child)
            info["processing_ms_per_mail_first_last_tenth"] = per_mail_trend(events)
            info["model"] = next((e["event"] for e in events if e.get("event") in ("model_loaded", "model_unavailable")),
                                 None)
        runs.append(info)
        if code != 0:
            raise RuntimeError(f"inboxd run --once exited {code}:\n{child.log_text()[-3000:]}")
        if run == 1 and args.use_model and info["model"] != "model_loaded":
            raise RuntimeError(f"inboxd run --once did not load the model {args.model}: {info['model']}")
        if db["outbox_pending"] == 0 or info["sent"] == 0:
            break
    db = db_summary(work / "once.db")
    total_runs_s = sum(r["seconds"] for r in runs)
    sizes = [len(m.data) for m in sink.messages]
    return {
        "runs": runs,
        "runs_needed": len(runs),
        "complete": db["outbox_pending"] == 0 and sink.count() == db["outbox_sent"],
        "acks_planned": corpus.expected_acks,
        "acks_queued_by_inboxd": db["outbox_sent"] + db["outbox_pending"] + db["outbox_failed"],
        "acks_delivered": sink.count(),
        "first_run_seconds": runs[0]["seconds"],
        "first_run_acks": runs[0]["acks_in_sink_after"],
        "total_seconds": total_runs_s,
        "messages_per_second": len(corpus.raws) / total_runs_s,
        "first_run_messages_per_second": len(corpus.raws) / runs[0]["seconds"],
        "peak_rss_mb": max(r["maxrss_mb"] for r in runs),
        "ack_bytes_mean": statistics.fmean(sizes) if sizes else None,
        "db": db,
    }


def phase_profile(work: Path, dovecot: Any, sink: Any, args: argparse.Namespace) -> dict[str, Any]:
    """One more `inboxd run --once` on a fresh database (the same mailbox, so the same backlog plus
    any latency probes), under a profiler; not a timing.

    py-spy (sampling, every thread, only samples of threads on the CPU, 250/s): CPU ms per mail
    for each point of PROFILE_POINTS (samples whose stack contains it), little distortion.
    cprofile (bench/profile_once.py, every thread): call counts and cumulative wall time, but
    Python-heavy code runs several times slower under it, so read its shares, not its times."""
    config = write_config(work, dovecot, sink, "profile.db", args.poll_interval, args.ack_limit, args.model)
    sink.clear()
    once = [PYTHON, "-m", "inboxd", "--config", str(config), "run", "--once"]
    if args.profile == "py-spy":
        out = work / "once.pyspy"
        cmd = [pyspy_binary() or "py-spy", "record", "-o", str(out),
               "-f", "raw", "--function", "--full-filenames", "-r", str(PYSPY_RATE), "--", *once]
    else:
        out = work / "once.prof"
        cmd = [PYTHON, str(BENCH / "profile_once.py"), str(out), *once[3:]]
    child = Child(cmd, work / "profile.log")
    code = child.wait(args.timeout * 3)
    if code != 0 or not out.exists():
        raise RuntimeError(f"profiled inboxd run --once exited {code}:\n{child.log_text()[-3000:]}")
    events = log_events(child.log_text())
    processed = sum(1 for e in events if e.get("event") == "message_processed")
    summary = pyspy_summary(out, processed) if args.profile == "py-spy" else cprofile_summary(out, processed)
    RESULTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(out, RESULTS / f"profile-{datetime.now():%Y%m%d-%H%M%S}{out.suffix}")
    return {"profiler": args.profile, "seconds": child.ended - child.started,  # type: ignore[operator]
            "processed": processed, "sent": sum(1 for e in events if e.get("event") == "mail_sent"), **summary}


PYSPY_RATE = 250


def pyspy_binary() -> str | None:
    beside = Path(PYTHON).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")

# Where the time of one `run --once` goes: (label, file suffix, function name); "*" = any function
# of that file. They nest (classify is inside process), so they are not to be summed.
PROFILE_POINTS: list[tuple[str, str, str, tuple[str, str] | None]] = [
    ("imports (all)", "importlib._bootstrap>", "_find_and_load", None),
    ("model load (joblib)", "inboxd/triage/train.py", "load", None),
    ("IMAP connect + fetch + store (Fetcher.sync)", "inboxd/mail/fetch.py", "sync", None),
    ("  IMAP FETCH (ImapSource.fetch)", "inboxd/mail/fetch.py", "fetch", None),
    ("processing (Worker._handle)", "inboxd/stages/worker.py", "_handle", None),
    ("  parse_message", "inboxd/triage/parse.py", "parse_message", None),
    ("  identify (agent or customer)", "inboxd/triage/identity.py", "identify", None),
    ("  detect_language", "inboxd/triage/language.py", "detect_language", None),
    ("  find_ticket", "inboxd/triage/thread.py", "find_ticket", None),
    ("  CustomerMail._classify", "inboxd/stages/customer.py", "_classify", None),
    ("    TrainedModel.predict", "inboxd/triage/train.py", "predict", None),
    ("  routing (assign.decide)", "inboxd/routing/assign.py", "decide", None),
    ("  CustomerMail._acknowledge", "inboxd/stages/customer.py", "_acknowledge", None),
    ("    build_ack", "inboxd/reply/acknowledge.py", "build_ack", None),
    ("      Renderer.render (templates)", "inboxd/reply/render.py", "render", None),
    ("      compose (MIME)", "inboxd/mail/compose.py", "compose", None),
    ("  notify_owner", "inboxd/routing/assign.py", "notify_owner", None),
    ("  Store methods (SQLite) while processing", "inboxd/store/sqlite.py", "*", ("inboxd/stages/worker.py", "_handle")),
    ("SLA watch (Watch.check)", "inboxd/sla/watch.py", "check", None),
    ("sending (Sender.send_due)", "inboxd/mail/send.py", "send_due", None),
    ("  aiosmtplib sendmail", "aiosmtplib/smtp.py", "sendmail", None),
    ("  Store.mark_sent", "inboxd/store/sqlite.py", "mark_sent", None),
    ("IMAP keywords (Fetcher.mark_processed)", "inboxd/mail/fetch.py", "mark_processed", None),
    ("all Store methods (SQLite), anywhere", "inboxd/store/sqlite.py", "*", None),
    ("all JSON log lines (log)", "inboxd/log.py", "*", None),
]


def _frame_matches(name: str, filename: str, suffix: str, wanted: str) -> bool:
    return filename.endswith(suffix) and (wanted == "*" or name == wanted or name.endswith("." + wanted))


def pyspy_summary(path: Path, processed: int) -> dict[str, Any]:
    """Aggregate py-spy's raw (collapsed) stacks: 'frame;frame;... count', frame = 'name (file:line)'."""
    frame_re = re.compile(r"^(.*) \((.*):\d+\)$")
    hits = [0] * len(PROFILE_POINTS)
    leaves: dict[str, int] = {}
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [(m.group(1), m.group(2)) if (m := frame_re.match(f)) else (f, "") for f in stack.split(";")]
        for i, (_label, suffix, wanted, within) in enumerate(PROFILE_POINTS):
            if within and not any(_frame_matches(name, filename, *within) for name, filename in frames):
                continue
            if any(_frame_matches(name, filename, suffix, wanted) for name, filename in frames):
                hits[i] += n
        name, filename = frames[-1]
        key = f"{name} ({_short(filename)})"
        leaves[key] = leaves.get(key, 0) + n
    per = max(processed, 1)
    ms = 1000 / PYSPY_RATE
    return {"cpu_seconds_sampled": round(total * ms / 1000, 3),
            "points": [{"what": label, "samples": h, "share": round(h / max(total, 1), 4),
                        "ms_per_mail": round(h * ms / per, 3)} for (label, *_), h in zip(PROFILE_POINTS, hits)],
            "top_self": [{"function": k, "samples": v, "share": round(v / max(total, 1), 4),
                          "ms_per_mail": round(v * ms / per, 3)}
                         for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:25]]}


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/lib/python3", "/work/main/"):
        if marker in filename:
            return filename.split(marker, 1)[1].lstrip("0123456789./")
    return filename


def cprofile_summary(stats_path: Path, processed: int) -> dict[str, Any]:
    import pstats
    stats = pstats.Stats(str(stats_path)).stats  # type: ignore[attr-defined]
    per = max(processed, 1)
    points = []
    for label, suffix, wanted, _within in PROFILE_POINTS:
        if wanted == "*":  # cumulative times of nested functions of one file cannot be added up
            continue
        found = [v for (f, _line, fn), v in stats.items() if _frame_matches(fn, f, suffix, wanted)]
        cum = sum(v[3] for v in found)
        points.append({"what": label, "calls": sum(v[1] for v in found), "seconds": round(cum, 3),
                       "ms_per_mail": round(cum * 1000 / per, 3)})
    idle = ("acquire", "wait", "select", "poll", "_worker", "get")
    own = sorted(((v[2], f, fn, v[1]) for (f, _line, fn), v in stats.items()), reverse=True)
    return {"points": points,
            "top_self": [{"function": f"{fn} ({_short(f)})", "calls": calls, "self_seconds": round(t, 3),
                          "ms_per_mail": round(t * 1000 / per, 3)}
                         for t, f, fn, calls in own if not any(w in fn for w in idle)][:25]}


def phase_baseline(work: Path, dovecot: Any, sink: Any, corpus: Corpus, args: argparse.Namespace) -> dict[str, Any]:
    box, smtp = dovecot.imap_config("support"), sink.smtp_config()
    spec = {"imap_host": box["host"], "imap_port": box["port"], "imap_user": box["username"],
            "imap_password": box["password"], "smtp_host": smtp["host"], "smtp_port": smtp["port"],
            "recipients": corpus.ack_recipients, "batch": args.baseline_batch,
            "ack_bytes": args.baseline_ack_bytes}
    spec_path = work / "baseline.json"
    spec_path.write_text(json.dumps(spec))
    sink.clear()
    child = Child([PYTHON, str(Path(__file__).resolve()), "--baseline-child", str(spec_path)],
                  work / "baseline.log", stdout_path=work / "baseline.out")
    code = child.wait(args.timeout)
    if code != 0:
        raise RuntimeError(f"baseline exited {code}:\n{child.log_text()[-3000:]}")
    inner = json.loads((work / "baseline.out").read_text().strip().splitlines()[-1])
    if inner["fetched"] != len(corpus.raws) or sink.count() != corpus.expected_acks:
        raise RuntimeError(f"baseline fetched {inner['fetched']}/{len(corpus.raws)}, "
                           f"sink has {sink.count()}/{corpus.expected_acks}")
    seconds = child.ended - child.started  # type: ignore[operator]
    return {"seconds": seconds, "messages_per_second": len(corpus.raws) / seconds,
            "maxrss_mb": (child.maxrss_kb or 0) / 1024, "inner": inner}


def phase_daemon(work: Path, dovecot: Any, sink: Any, corpus: Corpus, args: argparse.Namespace,
                 state: dict[str, Any]) -> dict[str, Any]:
    """Drain the same backlog with `inboxd run` on a fresh database; leaves the daemon running.

    Done when every mail is processed, the outbox is empty and the sink holds what was sent
    (normally exactly the planned acknowledgements)."""
    db_path = work / "daemon.db"
    config = write_config(work, dovecot, sink, db_path.name, args.poll_interval, args.ack_limit,
                          args.model)
    sink.clear()
    child = Child(inboxd_args(config), work / "daemon.log")
    state["daemon"] = child
    last_check = [0.0]

    def drained() -> bool:
        if child.poll() is not None:
            return True
        if sink.count() >= corpus.expected_acks:
            return True
        if time.monotonic() - last_check[0] < 0.25 or not db_path.exists():
            return False
        last_check[0] = time.monotonic()
        try:
            db = db_summary(db_path)
        except Exception:  # not created yet, or busy
            return False
        return (db["raw_messages"] >= len(corpus.raws) and db["outbox_pending"] == 0
                and sink.count() >= db["outbox_sent"]
                and _nothing_waiting(db_path))

    ok = wait_until(drained, args.timeout, interval=0.005)
    if child.poll() is not None:
        raise RuntimeError(f"inboxd run exited {child.returncode}:\n{child.log_text()[-3000:]}")
    if not ok:
        raise RuntimeError(f"daemon delivered {sink.count()}/{corpus.expected_acks} acks in {args.timeout} s")
    delivered = sink.count()
    if delivered == 0:
        raise RuntimeError("the daemon processed the backlog but sent no acknowledgement")
    seconds = sink.times[delivered - 1] - child.started
    first_ack = sink.times[0] - child.started
    child.sample_rss()
    time.sleep(1.0)  # anything unexpected still coming?
    events = log_events(child.log_text())
    return {"seconds": seconds, "messages_per_second": len(corpus.raws) / seconds,
            "first_ack_after_s": first_ack, "acks_delivered": delivered, "acks_after_1s_more": sink.count(),
            "rss_after_drain_mb": (child.rss_samples_kb[-1] if child.rss_samples_kb else 0) / 1024,
            "log_spans": {name: event_span(events, name) for name in ("mailbox_connected", "message_processed",
                                                                      "mail_sent")}}


def _nothing_waiting(db: Path) -> bool:
    import sqlite3
    conn = sqlite3.connect(str(db))
    try:
        return conn.execute("SELECT COUNT(*) FROM raw_messages WHERE state='received'").fetchone()[0] == 0
    finally:
        conn.close()


def latency_mail(i: int) -> tuple[str, bytes]:
    sender = f"lat{i:04d}@{SENDER_DOMAIN}"
    msg = EmailMessage()
    msg["From"] = f"Latency {i} <{sender}>"
    msg["To"] = SUPPORT
    msg["Subject"] = f"Latency probe {i}: my parcel is late"
    msg["Date"] = format_datetime(datetime.now().astimezone())
    msg["Message-ID"] = f"<lat-{i}-{os.getpid()}-{time.time_ns()}@{SENDER_DOMAIN}>"
    msg.set_content("Hello, my parcel is late. Please tell me where it is. Thank you.\n")
    return sender, msg.as_bytes()


def phase_latency(work: Path, dovecot: Any, sink: Any, args: argparse.Namespace,
                  state: dict[str, Any]) -> dict[str, Any]:
    child: Child = state["daemon"]
    sink.clear()
    samples: list[float] = []
    probes: dict[str, tuple[float, float, float]] = {}  # sender -> (t0 wall, t0 monotonic, t1 monotonic)
    missed = 0
    rng = random.Random(7)
    with dovecot.client("support") as imap:

        for i in range(-1, args.latency_samples):  # -1: warm-up, proves the daemon is in IDLE
            sender, raw = latency_mail(i + 1)
            t0_wall, t0 = time.time(), time.monotonic()
            imap.append("INBOX", raw)
            got = wait_until(lambda: sender in sink.by_rcpt or child.poll() is not None, args.sample_timeout)
            if child.poll() is not None:
                raise RuntimeError(f"inboxd run exited {child.returncode}:\n{child.log_text()[-3000:]}")
            if not got:
                missed += 1
                continue
            if i >= 0:
                samples.append((sink.by_rcpt[sender] - t0) * 1000)
                probes[sender] = (t0_wall, t0, sink.by_rcpt[sender])
            child.sample_rss()
            time.sleep(args.pause + rng.uniform(0, args.pause))
    if not samples:
        raise RuntimeError("no latency sample was acknowledged")
    # A missed sample (no acknowledgement within --sample-timeout) counts as that timeout, so the
    # percentiles it reaches are lower bounds ("missed_counted_as_ms").
    timeout_ms = args.sample_timeout * 1000
    ordered = sorted(samples + [timeout_ms] * missed)

    def pct(p: float) -> float:  # nearest-rank percentile
        k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[k]

    # Where the time goes, from the daemon's own log (wall clock, millisecond resolution):
    # APPEND -> message_processed (IDLE notification + fetch + store + pipeline) and
    # message_processed -> accepted by the sink (outbox wake-up + SMTP).
    to_processed, to_sent = [], []
    for event in log_events(child.log_text()):
        probe = probes.get(str(event.get("from", ""))) if event.get("event") == "message_processed" else None
        if probe is None:
            continue
        t0_wall, t0, t1 = probe
        processed = datetime.fromisoformat(event["time"]).timestamp()
        to_processed.append((processed - t0_wall) * 1000)
        to_sent.append((t0_wall + (t1 - t0) - processed) * 1000)
    breakdown = {}
    if to_processed:
        breakdown = {"append_to_processed_p50_ms": statistics.median(to_processed),
                     "processed_to_ack_received_p50_ms": statistics.median(to_sent)}
    return {"samples": len(samples), "missed": missed, "p50_ms": pct(50), "p90_ms": pct(90),
            "p99_ms": pct(99), "max_ms": ordered[-1], "min_ms": ordered[0],
            "mean_ms": statistics.fmean(ordered), "missed_counted_as_ms": timeout_ms, **breakdown, "all_ms": [round(s, 2) for s in samples]}


BUSY_USER = "customer2"  # its own mailbox, so the backlog of the other phases is not in the way


def phase_busy(work: Path, dovecot: Any, sink: Any, args: argparse.Namespace) -> dict[str, Any]:
    """A new customer while a large backlog drains: ``--busy-backlog`` mails wait in a mailbox of
    their own; the daemon starts on a fresh database; once its first acknowledgement is out,
    ``--busy-samples`` single mails are APPENDed one at a time (each after the previous one's
    ack), and APPEND -> ack is timed as in the latency phase. The drain of the backlog itself
    (spawn -> last backlog ack) is reported as well."""
    corpus = build_corpus(args.busy_backlog, seed=2)
    t = time.monotonic()
    append_all(dovecot, corpus.raws, user=BUSY_USER)
    appended = time.monotonic() - t
    print(f"  appended {len(corpus.raws)} mails in {appended:.1f} s", flush=True)
    config = write_config(work, dovecot, sink, "busy.db", args.poll_interval, args.ack_limit, args.model,
                          user=BUSY_USER)
    sink.clear()
    child = Child(inboxd_args(config), work / "busy.log")
    samples: list[dict[str, float]] = []
    rng = random.Random(11)
    try:
        if not wait_until(lambda: sink.count() > 0 or child.poll() is not None, args.timeout, 0.01):
            raise RuntimeError("the daemon sent no acknowledgement")
        with dovecot.client(BUSY_USER) as imap:
            for i in range(args.busy_samples):
                sender, raw = latency_mail(5000 + i)
                t0 = time.monotonic()
                imap.append("INBOX", raw)
                if not wait_until(lambda: sender in sink.by_rcpt or child.poll() is not None, args.sample_timeout):
                    samples.append({"ms": args.sample_timeout * 1000, "backlog_acks_so_far": sink.count(),
                                    "missed": 1})
                    continue
                if child.poll() is not None:
                    raise RuntimeError(f"inboxd run exited {child.returncode}:\n{child.log_text()[-3000:]}")
                samples.append({"ms": (sink.by_rcpt[sender] - t0) * 1000, "backlog_acks_so_far": sink.count(),
                                "missed": 0})
                child.sample_rss()
                time.sleep(args.pause + rng.uniform(0, args.pause))
        expected = corpus.expected_acks + len(samples)
        if not wait_until(lambda: sink.count() >= expected or child.poll() is not None, args.timeout, 0.05):
            raise RuntimeError(f"backlog not drained: {sink.count()}/{expected} acks after {args.timeout} s")
        drained = sink.times[-1] - child.started
        child.sample_rss()
    finally:
        child.stop()
    during = [s["ms"] for s in samples if s["backlog_acks_so_far"] < expected]
    ordered = sorted(during)

    def pct(p: float) -> float:
        k = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[k]

    return {"backlog": len(corpus.raws), "backlog_acks": corpus.expected_acks, "append_seconds": appended,
            "samples": len(samples), "samples_during_drain": len(during),
            "missed": sum(int(s["missed"]) for s in samples),
            "p50_ms": pct(50) if during else None, "p99_ms": pct(99) if during else None,
            "max_ms": ordered[-1] if during else None,
            "drain_seconds": drained, "drain_messages_per_second": (len(corpus.raws) + len(samples)) / drained,
            "maxrss_mb": (child.maxrss_kb or 0) / 1024, "all": samples}


def phase_idle_floor(dovecot: Any, samples: int) -> dict[str, Any]:
    """How long Dovecot itself takes to tell an IDLE client about an APPEND (no inboxd involved)."""
    raw = latency_mail(0)[1]
    out: list[float] = []
    with dovecot.client("other") as idler, dovecot.client("other") as appender:
        appender.append("INBOX", raw)
        idler.select_folder("INBOX")
        for _ in range(samples):
            idler.idle()
            time.sleep(0.05)
            t0 = time.monotonic()
            appender.append("INBOX", raw)
            deadline = t0 + 5
            while time.monotonic() < deadline:
                responses = idler.idle_check(timeout=max(0.01, deadline - time.monotonic()))
                if any(len(r) > 1 and r[1] == b"EXISTS" for r in responses):
                    out.append((time.monotonic() - t0) * 1000)
                    break
            idler.idle_done()
    if not out:
        return {"samples": 0}
    return {"samples": len(out), "p50_ms": statistics.median(out), "max_ms": max(out), "min_ms": min(out)}


def machine_info() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except (OSError, IndexError):
        pass
    dovecot = subprocess.run(["/usr/sbin/dovecot", "--version"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "cpu": cpu, "loadavg_at_start": _loadavg(), "mem_total": mem, "python": platform.python_version(),
            "platform": platform.platform(), "dovecot": dovecot}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return ""


def print_summary(result: dict[str, Any]) -> None:
    once, base, daemon, lat = (result.get(k) for k in ("once", "baseline", "daemon", "latency"))
    n = result["messages"]
    rows: list[tuple[str, str, str]] = []
    if once:
        note = "" if once["runs_needed"] == 1 else f"  ({once['runs_needed']} runs needed!)"
        if not once["complete"]:
            note += "  INCOMPLETE: not every ack was delivered"
        rows.append(("inboxd run --once: drain", f"{once['messages_per_second']:.1f} msg/s",
                     f"{once['total_seconds']:.2f} s for {n} mails, {once['acks_delivered']}/"
                     f"{once['acks_queued_by_inboxd']} acks{note}"))
        if once["runs_needed"] > 1:
            rows.append(("  first --once run only", f"{once['first_run_messages_per_second']:.1f} msg/s",
                         f"{once['first_run_seconds']:.2f} s, delivered {once['first_run_acks']}/"
                         f"{once['acks_queued_by_inboxd']} acks"))
        rows.append(("inboxd run --once: peak RSS", f"{once['peak_rss_mb']:.0f} MB", "ru_maxrss via os.wait4"))
        if once.get("ack_bytes_mean"):
            rows.append(("  acknowledgement size (mean)", f"{once['ack_bytes_mean'] / 1000:.1f} KB",
                         f"as received by the sink; the baseline sends {result['options']['baseline_ack_bytes']} bytes"))
    if once and once["runs"][0].get("stage_seconds"):
        st = once["runs"][0]["stage_seconds"]
        rows.append(("  first run stages (s)", "", ", ".join(f"{k} {v:.2f}" for k, v in st.items())))
        peaks = once["runs"][0].get("stage_peak_rss_mb")
        if peaks:
            rows.append(("  peak RSS per stage (MB)", "", ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())))
        trend = once["runs"][0].get("processing_ms_per_mail_first_last_tenth")
        if trend:
            rows.append(("  processing per mail", f"{trend[0]:.1f} -> {trend[1]:.1f} ms",
                         "first tenth -> last tenth of the backlog"))
    if daemon:
        rows.append(("inboxd run (daemon): drain", f"{daemon['messages_per_second']:.1f} msg/s",
                     f"{daemon['seconds']:.2f} s from spawn to last ack; first ack after "
                     f"{daemon['first_ack_after_s']:.2f} s"))
    if base:
        rows.append(("baseline (imapclient+aiosmtplib)", f"{base['messages_per_second']:.1f} msg/s",
                     f"{base['seconds']:.2f} s (fetch {base['inner']['fetch_s']:.2f} s, "
                     f"send {base['inner']['send_s']:.2f} s)"))
    if once and base:
        ratio = result["ratio_once_vs_baseline"]
        rows.append(("ratio --once / baseline", f"{ratio:.2f}", "target >= 0.5 " + ("OK" if ratio >= 0.5 else "MISSED")))
    if daemon and base:
        rows.append(("ratio daemon / baseline", f"{result['ratio_daemon_vs_baseline']:.2f}", ""))
    if lat:
        def ms(key: str) -> str:
            value = lat[key]
            return f">={value:.0f}" if lat["missed"] and value >= lat.get("missed_counted_as_ms", math.inf) else f"{value:.0f}"
        rows.append(("latency p50 / p90", f"{ms('p50_ms')} / {ms('p90_ms')} ms",
                     f"{lat['samples']} samples, {lat['missed']} missed (counted as the sample timeout)"))
        rows.append(("latency p99 / max", f"{ms('p99_ms')} / {ms('max_ms')} ms",
                     "target p99 < 1000 ms " + ("OK" if lat["p99_ms"] < 1000 else "MISSED")))
    if lat and "append_to_processed_p50_ms" in lat:
        rows.append(("  p50 APPEND -> processed", f"{lat['append_to_processed_p50_ms']:.0f} ms",
                     "IDLE notification + fetch + store + pipeline (daemon log)"))
        rows.append(("  p50 processed -> ack at sink", f"{lat['processed_to_ack_received_p50_ms']:.0f} ms",
                     "outbox wake-up + SMTP"))
    floor = result.get("idle_floor")
    if floor and floor.get("samples"):
        rows.append(("Dovecot IDLE floor p50 / max", f"{floor['p50_ms']:.0f} / {floor['max_ms']:.0f} ms",
                     "APPEND -> EXISTS seen by a plain imapclient IDLE session"))
    busy = result.get("busy")
    if busy:
        rows.append((f"new mail while {busy['backlog']} drain: p50 / p99",
                     f"{busy['p50_ms']:.0f} / {busy['p99_ms']:.0f} ms" if busy["p50_ms"] is not None else "n/a",
                     f"{busy['samples_during_drain']} of {busy['samples']} samples during the drain, "
                     f"{busy['missed']} missed; max {busy['max_ms'] or 0:.0f} ms"))
        rows.append((f"  drain of those {busy['backlog']}", f"{busy['drain_messages_per_second']:.1f} msg/s",
                     f"{busy['drain_seconds']:.1f} s spawn -> last ack, peak RSS {busy['maxrss_mb']:.0f} MB"))
    if result.get("daemon_shutdown"):
        sd = result["daemon_shutdown"]
        rows.append(("daemon SIGTERM -> exit", f"{sd['seconds']:.2f} s",
                     f"exit {sd['exit_code']}, peak RSS {sd['maxrss_mb']:.0f} MB"))
    prof = result.get("profile")
    if prof:
        unit = "CPU ms/mail" if prof["profiler"] == "py-spy" else "ms/mail (cProfile, inflated)"
        rows.append((f"profile ({prof['profiler']})", unit, f"{prof['processed']} mails, not a timing"))
        for point in prof["points"]:
            rows.append((f"  {point['what']}", f"{point['ms_per_mail']:.2f}", ""))
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print()
    m = result["machine"]
    print(f"inboxd pipeline benchmark — {n} mails ({result['expected_acks']} acks expected), "
          f"{m['nproc']} CPU {m['cpu']}, Python {m['python']}, Dovecot {m['dovecot']}")
    git = result.get("git", {})
    model = (once or {}).get("runs", [{}])[0].get("model")
    print(f"inboxd {git.get('commit', '?')}" + (f" + uncommitted changes in {len(git['modified_in_inboxd'])} file(s)"
                                                 if git.get("modified_in_inboxd") else "")
          + (f"; classifier: {model}" if model else ""))
    m_info = result.get("model") or {}
    if m_info:
        print(f"model: {m_info.get('source')}" + (f", trained in {m_info['seconds']:.1f} s" if "seconds" in m_info else "")
              + (f", {m_info['file_mb']:.1f} MB" if "file_mb" in m_info else ""))
    print(f"load average at start / end: {m.get('loadavg_at_start')} / {result.get('loadavg_at_end')} "
          "(the figures assume an otherwise idle machine)")
    print("-" * (w1 + w2 + 50))
    for a, b, c in rows:
        print(f"{a:<{w1}}  {b:>{w2}}  {c}")
    print("-" * (w1 + w2 + 50))
    for warning in result.get("warnings", []):
        print(f"WARNING: {warning}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1000, help="backlog size (default 1000)")
    parser.add_argument("--latency-samples", type=int, default=100, help="IDLE latency samples (default 100)")
    parser.add_argument("--pause", type=float, default=0.1,
                        help="pause between latency samples, seconds (plus up to the same again at random)")
    parser.add_argument("--poll-interval", type=float, default=60,
                        help="[imap] poll_interval written to the config (the IDLE restart period), default 60")
    parser.add_argument("--ack-limit", type=int, default=100000, help="[support] ack_limit_per_hour")
    parser.add_argument("--once-max-runs", type=int, default=40,
                        help="how many back-to-back `run --once` to allow until every ack is delivered")
    parser.add_argument("--baseline-batch", type=int, default=100, help="UIDs per FETCH in the baseline")
    parser.add_argument("--baseline-ack-bytes", type=int, default=8600,
                        help="size of each baseline acknowledgement (inboxd's average is about 8.6 KB)")
    parser.add_argument("--timeout", type=float, default=300, help="limit for each drain, seconds")
    parser.add_argument("--sample-timeout", type=float, default=10, help="limit for one latency sample, seconds")
    parser.add_argument("--idle-floor-samples", type=int, default=20,
                        help="samples of Dovecot's own IDLE notification delay (0: skip)")
    parser.add_argument("--model", type=Path,
                        help="[classify] model file for inboxd (default: train one with `inboxd train` first)")
    parser.add_argument("--no-model", action="store_true", help="rules only: no model file at all")
    parser.add_argument("--skip", action="append", default=[], choices=["once", "daemon", "baseline", "latency"],
                        help="leave a phase out (repeatable)")
    parser.add_argument("--profile", nargs="?", const="py-spy", choices=["py-spy", "cprofile"],
                        help="finally profile one more `run --once` on a fresh database, with py-spy (default; "
                             "`pip install py-spy`) or cProfile in every thread")
    parser.add_argument("--busy-backlog", type=int, default=0,
                        help="also time single new mails while a backlog of this many drains (e.g. 10000; 0: skip)")
    parser.add_argument("--busy-samples", type=int, default=30, help="new mails timed during that drain")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (databases, logs)")
    parser.add_argument("--baseline-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_child:
        baseline_child(args.baseline_child)
        return 0
    if args.model and args.no_model:
        parser.error("--model and --no-model exclude each other")
    if args.model and not args.model.is_file():
        parser.error(f"--model {args.model}: no such file")
    args.use_model = not args.no_model
    if args.profile == "py-spy" and not pyspy_binary():
        parser.error("--profile needs py-spy (`.venv/bin/pip install py-spy`), or use --profile cprofile")

    from mailservers import DOVECOT_BINARY, Dovecot

    if not DOVECOT_BINARY.exists():
        print(f"{DOVECOT_BINARY} is missing: run scripts/test once (it installs Dovecot)", file=sys.stderr)
        return 2
    TimedSink = make_sink_class()
    work = Path(tempfile.mkdtemp(prefix="inboxd-bench-"))
    state: dict[str, Any] = {}
    result: dict[str, Any] = {"started": datetime.now().astimezone().isoformat(timespec="seconds"),
                              "messages": args.messages, "machine": machine_info(), "git": git_state(),
                              "options": {k: v for k, v in vars(args).items() if k != "baseline_child"},
                              "warnings": []}
    dovecot = Dovecot()
    sink = None
    code = 0
    try:
        dovecot.start()
        sink = TimedSink(dovecot)
        sink.start()
        corpus = build_corpus(args.messages)
        result["expected_acks"] = corpus.expected_acks
        result["expected_tickets"] = corpus.tickets
        result["corpus"] = {"kinds": corpus.kind_counts(), "bytes": sum(map(len, corpus.raws))}
        print(f"work dir {work}; Dovecot on {dovecot.port}, SMTP sink on {sink.port}", flush=True)
        t = time.monotonic()
        append_all(dovecot, corpus.raws)
        result["append_seconds"] = time.monotonic() - t
        print(f"appended {len(corpus.raws)} mails ({result['corpus']['bytes'] / 1e6:.1f} MB) in "
              f"{result['append_seconds']:.1f} s: {corpus.kind_counts()}", flush=True)

        if args.no_model:
            args.model = work / "no-model.joblib"  # never created: inboxd classifies with rules only
            result["model"] = {"source": "none (rules only)"}
        elif args.model:
            args.model = args.model.resolve()
            result["model"] = {"source": str(args.model), "file_mb": args.model.stat().st_size / 1e6}
        else:
            print("inboxd train into the benchmark's model path ...", flush=True)
            result["model"] = {"source": "inboxd train (bundled training data)",
                               **phase_train(work, dovecot, sink, args)}
            args.model = Path(result["model"]["path"])
            print(f"  {' / '.join(result['model']['output'][-2:])} ({result['model']['seconds']:.1f} s)", flush=True)

        if "baseline" not in args.skip:
            print("baseline: raw IMAP fetch + raw SMTP send ...", flush=True)
            result["baseline"] = phase_baseline(work, dovecot, sink, corpus, args)
        if "once" not in args.skip:
            print("inboxd run --once ...", flush=True)
            result["once"] = once = phase_once(work, dovecot, sink, corpus, args)
            if once["runs_needed"] > 1:
                result["warnings"].append(
                    f"one `inboxd run --once` delivered only {once['first_run_acks']} of "
                    f"{once['acks_queued_by_inboxd']} acknowledgements; {once['runs_needed']} back-to-back runs "
                    "were needed")
            db = once["db"]
            queued = db["outbox_sent"] + db["outbox_pending"] + db["outbox_failed"]
            if db["tickets"] != corpus.tickets or db["quarantined"] or queued != corpus.expected_acks:
                result["warnings"].append(f"--once database differs from the corpus plan: {db} "
                                          f"(planned {corpus.tickets} tickets, {corpus.expected_acks} acks)")
            if not once["complete"]:
                result["warnings"].append("--once did not deliver every queued acknowledgement")
            size = once.get("ack_bytes_mean")
            if size and abs(size - args.baseline_ack_bytes) > 0.2 * size:
                result["warnings"].append(f"inboxd's acknowledgements average {size:.0f} bytes; the baseline sends "
                                          f"{args.baseline_ack_bytes} (--baseline-ack-bytes)")
        if "daemon" not in args.skip or "latency" not in args.skip:
            if "daemon" not in args.skip:
                print("inboxd run (daemon) draining the same backlog on a fresh database ...", flush=True)
                result["daemon"] = phase_daemon(work, dovecot, sink, corpus, args, state)
            else:
                config = write_config(work, dovecot, sink, "latency.db", args.poll_interval, args.ack_limit,
                          args.model)
                state["daemon"] = Child(inboxd_args(config), work / "daemon.log")
                if not wait_until(lambda: '"mailbox_connected"' in state["daemon"].log_text(), 30, 0.05):
                    raise RuntimeError("daemon did not connect")
            if "latency" not in args.skip:
                print(f"latency: {args.latency_samples} single mails through IDLE ...", flush=True)
                result["latency"] = phase_latency(work, dovecot, sink, args, state)
            child: Child = state.pop("daemon")
            t = time.monotonic()
            exit_code = child.stop()
            result["daemon_shutdown"] = {"seconds": time.monotonic() - t, "exit_code": exit_code,
                                         "maxrss_mb": (child.maxrss_kb or 0) / 1024}
            if "daemon" in result:
                result["daemon"]["db"] = db_summary(work / "daemon.db")
        if "latency" not in args.skip and args.idle_floor_samples:
            print("Dovecot IDLE notification floor (plain imapclient) ...", flush=True)
            result["idle_floor"] = phase_idle_floor(dovecot, args.idle_floor_samples)
        if args.busy_backlog:
            print(f"a new customer while {args.busy_backlog} mails drain ({args.busy_samples} samples) ...",
                  flush=True)
            result["busy"] = phase_busy(work, dovecot, sink, args)
        if args.profile:
            print(f"profiling one more inboxd run --once ({args.profile}) ...", flush=True)
            result["profile"] = phase_profile(work, dovecot, sink, args)
        if "once" in result and "baseline" in result:
            result["ratio_once_vs_baseline"] = (result["once"]["messages_per_second"]
                                                / result["baseline"]["messages_per_second"])
        if "daemon" in result and "baseline" in result:
            result["ratio_daemon_vs_baseline"] = (result["daemon"]["messages_per_second"]
                                                  / result["baseline"]["messages_per_second"])
    except BaseException as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        print(f"benchmark failed: {result['error']}", file=sys.stderr)
        code = 1
        if isinstance(exc, KeyboardInterrupt):
            code = 130
    finally:
        daemon = state.pop("daemon", None)
        if daemon is not None:
            daemon.stop()
        if sink is not None:
            sink.stop()
        dovecot.close()
        if args.keep or code:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    result["loadavg_at_end"] = _loadavg()
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str))
    if "error" not in result or any(k in result for k in ("once", "baseline")):
        try:
            print_summary(result)
        except Exception as exc:  # a partial result must still be saved and reported
            print(f"(summary incomplete: {exc})")
    print(f"results: {out.relative_to(ROOT)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
