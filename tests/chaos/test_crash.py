"""Crash consistency: inboxd is killed with SIGKILL at random moments while it drains a busy mailbox.

500 customer mails (new tickets from distinct customers, follow-ups carrying [SUP-n], auto-replies,
HTML-only mail, Big5 and GBK mail) and a handful of agent replies to their notifications arrive
while the daemon is killed and restarted at least 20 times, 0.05 to 1.5 s after each start. Then
it runs until everything is processed and sent, and what came out is compared with what went in:

- every INBOX message is stored exactly once and processed; no customer mail is duplicated;
- every new ticket that should be acknowledged got exactly one acknowledgement (one Message-ID),
  every relayed agent reply reached the customer exactly once, auto-replies and follow-ups got none;
- the only tolerated repeats are raw copies of the same Message-ID (a kill between the SMTP
  server's 250 and inboxd's commit, the documented at-least-once window), at most one per kill.

The figures are printed (use ``-s``) and written to ``crash.json`` in the test's tmp dir.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from chaoskit import (
    AGENT,
    AGENT2,
    MAILBOX_CUSTOMERS,
    Expected,
    Mailbox,
    agent_reply,
    chinese_mail,
    customer_mail,
    deliveries,
    env_seed,
    header,
    notifications,
    parse,
    query,
    write_report,
)

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

TOTAL = 500
MIN_KILLS = 20
MAX_KILLS = 60
FEED_SECONDS = 25.0  # the 500 mails arrive over this long, while the killing goes on
AGENT_REPLIES = 8
NEW_ONLY_FIRST = 120  # follow-ups need tickets to follow up on

BIG5 = ("退款問題", "您好，我上週訂購的商品有瑕疵，想申請退款，謝謝。")
GBK = ("发票问题", "您好，请问我的发票什么时候可以开出来？谢谢。")
AUTO_REPLIES = (
    ({"Auto-Submitted": "auto-replied"}, "Re: your message"),
    ({"X-Autoreply": "yes"}, "Thanks for your mail"),
    ({}, "Out of Office: back on Monday"),
    ({}, "自動回覆：目前無法回信"),
)


class Feeder(threading.Thread):
    """Delivers the mail stream into the support INBOX, as the MTA would, at a steady pace."""

    def __init__(self, mailenv: Any, database: Path, rng: random.Random) -> None:
        super().__init__(name="chaos-feeder", daemon=True)
        self.mailenv, self.database, self.rng = mailenv, database, rng
        self.expected = Expected()
        self.subjects: dict[str, tuple[str, str]] = {}  # acked Message-ID -> (sender, subject)
        self.replied: set[str] = set()
        self.error: BaseException | None = None
        self.kinds: Counter[str] = Counter()

    def plan(self) -> list[str]:
        new = ["plain"] * 290 + ["mailbox"] * 20 + ["html"] * 40 + ["big5"] * 40 + ["gbk"] * 40 + ["auto"] * 30
        self.rng.shuffle(new)
        head, tail = new[:NEW_ONLY_FIRST], new[NEW_ONLY_FIRST:] + ["followup"] * 40
        self.rng.shuffle(tail)
        assert len(head) + len(tail) == TOTAL
        return head + tail

    def run(self) -> None:
        box = Mailbox(self.mailenv.dovecot, "support")
        try:
            start = time.monotonic()
            reply_points = {TOTAL * 2 // 5: AGENT_REPLIES // 2, TOTAL * 3 // 4: AGENT_REPLIES - AGENT_REPLIES // 2}
            for n, kind in enumerate(self.plan()):
                if n in reply_points:
                    self.agent_replies(box, reply_points[n])
                _, raw = self.compose(n, kind)
                box.append(raw)
                self.expected.appended += 1
                self.kinds[kind] += 1
                ahead = start + FEED_SECONDS * (n + 1) / TOTAL - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            missing = AGENT_REPLIES - len(self.expected.agent_replies)
            if missing:  # the daemon was too busy being killed to notify anyone yet: answer late
                self.agent_replies(box, missing, patience=60)
        except BaseException as exc:  # reported by the test, not lost in a thread
            self.error = exc
        finally:
            box.close()

    def compose(self, n: int, kind: str) -> tuple[str, bytes]:
        e = self.expected
        if kind == "followup":
            original, ticket = self.ticket_to_follow_up()
            sender, subject = self.subjects[original]
            mid, raw = customer_mail(sender=sender, subject=f"Re: [{ticket}] {subject}",
                                     body=f"Any news on this? (follow-up {n})",
                                     in_reply_to=original if n % 2 else None)
            e.not_acked[mid] = sender
            e.follow_ups[mid] = ticket
            return mid, raw
        sender = f"cust{n:04d}@customers.example.org"
        if kind == "mailbox":  # a customer with a real Dovecot mailbox, read back at the end
            sender = f"{MAILBOX_CUSTOMERS[n % len(MAILBOX_CUSTOMERS)]}@example.com"
        if kind == "auto":
            headers, subject = AUTO_REPLIES[n % len(AUTO_REPLIES)]
            mid, raw = customer_mail(sender=f"robot{n:04d}@autoreply.example.net", subject=subject,
                                     body="I am away and will read your message when I am back.", headers=headers)
            e.not_acked[mid] = f"robot{n:04d}@autoreply.example.net"
            return mid, raw
        if kind in ("big5", "gbk"):
            title, body = BIG5 if kind == "big5" else GBK
            subject = f"{title} {n}"
            mid, raw = chinese_mail(sender=sender, charset=kind, subject=subject, body=body)
        else:
            subject = f"Order {1000 + n} has not arrived"
            mid, raw = customer_mail(sender=sender, name=f"Customer {n}", subject=subject, html=kind == "html",
                                     body=f"Hello, my order {1000 + n} has not arrived yet. Could you check?")
        e.acked[mid] = sender
        self.subjects[mid] = (sender, subject)
        return mid, raw

    def ticket_to_follow_up(self, patience: float = 60) -> tuple[str, str]:
        """An acknowledged customer mail the daemon has already ticketed, and its ticket."""
        deadline = time.monotonic() + patience
        while True:
            rows = query(self.database, "SELECT message_id, ticket_id FROM messages WHERE direction='in' "
                                        "AND kind='customer' AND message_id IS NOT NULL")
            known = sorted((r["message_id"], r["ticket_id"]) for r in rows if r["message_id"] in self.subjects)
            if known:
                return self.rng.choice(known)
            if time.monotonic() > deadline:
                raise AssertionError("no ticket to follow up on: the daemon never got to process anything")
            time.sleep(0.2)

    def agent_replies(self, box: Mailbox, count: int, patience: float = 0) -> None:
        """Agents answer notifications of tickets opened by acknowledged customer mail."""
        acked_tickets = {r["ticket_id"] for r in query(
            self.database, "SELECT message_id, ticket_id FROM messages WHERE direction='in' AND kind='customer'")
            if r["message_id"] in self.expected.acked}
        deadline = time.monotonic() + patience
        while count > 0:
            for user, address, name in (("agent", AGENT, "Alice Agent"), ("agent2", AGENT2, "Bob Agent")):
                for note in notifications(self.mailenv.dovecot, user):
                    ticket = header(note, "X-Inboxd-Ticket")
                    if count <= 0 or ticket in self.replied or ticket not in acked_tickets:
                        continue
                    mid, raw = agent_reply(note, agent=address, name=name,
                                           answer=f"Hello, about {ticket}: your parcel left our warehouse today.")
                    box.append(raw)
                    self.expected.appended += 1
                    self.expected.agent_replies[mid] = ticket
                    self.replied.add(ticket)
                    count -= 1
            if count <= 0 or time.monotonic() >= deadline:
                return
            time.sleep(0.5)
            acked_tickets |= {r["ticket_id"] for r in query(
                self.database, "SELECT message_id, ticket_id FROM messages WHERE direction='in' AND kind='customer'")
                if r["message_id"] in self.expected.acked}


def test_sigkill_at_random_moments_loses_nothing_and_acknowledges_once(chaos: Any, mailenv: Any,
                                                                          tmp_path: Path) -> None:
    started = time.monotonic()
    seed = env_seed(int(time.time()))
    rng = random.Random(seed)
    print(f"\n[crash] seed {seed} (INBOXD_CHAOS_SEED={seed} replays the kill times)")
    feeder = Feeder(mailenv, chaos.database, random.Random(seed + 1))
    kills: list[float] = []
    feeder.start()
    while (feeder.is_alive() or len(kills) < MIN_KILLS) and len(kills) < MAX_KILLS:
        chaos.daemon.start()
        delay = rng.uniform(0.05, 1.5)
        time.sleep(delay)
        assert chaos.daemon.running, f"inboxd exited by itself before kill {len(kills) + 1}:\n{chaos.daemon.log_tail()}"
        chaos.daemon.kill()
        kills.append(delay)
        assert feeder.error is None, f"the mail stream failed: {feeder.error!r}"
    chaos_seconds = time.monotonic() - started
    chaos.daemon.start()  # and now let it finish
    chaos.daemon.wait_started()  # a clean stop below means a stop of a running daemon
    feeder.join(timeout=90)
    assert not feeder.is_alive() and feeder.error is None, f"the mail stream failed: {feeder.error!r}"
    chaos.wait_drained(timeout=90)
    assert chaos.daemon.stop() == 0, chaos.daemon.log_tail()

    e, db = feeder.expected, chaos.database
    inbox_count = chaos.inbox.count()

    # --- 1. every INBOX message stored exactly once, and processed ---------------------------------
    assert inbox_count == e.appended == TOTAL + len(e.agent_replies)
    raw = query(db, "SELECT uidvalidity, uid, state, error FROM raw_messages")
    assert len(raw) == inbox_count
    assert len({(r["uidvalidity"], r["uid"]) for r in raw}) == inbox_count
    states = Counter(r["state"] for r in raw)
    assert states == {"processed": inbox_count}, (states, [r for r in raw if r["state"] != "processed"][:5])
    inbound = query(db, "SELECT message_id, ticket_id FROM messages WHERE direction='in' AND kind='customer'")
    per_id = Counter(r["message_id"] for r in inbound)
    assert {m: n for m, n in per_id.items() if n > 1} == {}, "a customer mail was stored twice"
    assert set(per_id) == e.customer_ids
    ticket_of = {r["message_id"]: r["ticket_id"] for r in inbound}
    agent_in = Counter(r["message_id"] for r in query(db, "SELECT message_id FROM messages WHERE kind='agent'"))
    assert agent_in == Counter(set(e.agent_replies)), "an agent reply was lost or stored twice"

    # --- 2. threading: a ticket per new mail, follow-ups joined theirs ------------------------------
    new_mail = set(e.acked) | (set(e.not_acked) - set(e.follow_ups))
    assert len({ticket_of[m] for m in new_mail}) == len(new_mail), "two new mails share a ticket"
    wrong = {m: (ticket_of[m], t) for m, t in e.follow_ups.items() if ticket_of[m] != t}
    assert wrong == {}, f"follow-ups that did not join their ticket: {wrong}"
    tickets = query(db, "SELECT t.ticket_id, (SELECT direction || '/' || kind FROM messages m WHERE "
                        "m.ticket_id=t.ticket_id ORDER BY id LIMIT 1) AS first FROM tickets t")
    assert len(tickets) == len(new_mail)
    assert [t for t in tickets if t["first"] != "in/customer"] == [], "a ticket without its first message"

    # --- 3. the outbox: everything sent, nothing failed, one ack per acknowledged ticket ----------------
    outbox = query(db, "SELECT kind, ticket_id, state, message_id, recipients FROM outbox")
    assert Counter(r["state"] for r in outbox) == {"sent": len(outbox)}
    ack_rows = Counter(r["ticket_id"] for r in outbox if r["kind"] == "ack")
    acked_tickets = {ticket_of[m] for m in e.acked}
    assert ack_rows == Counter(acked_tickets), "an acknowledgement was queued twice, or not at all"
    reply_rows = Counter(r["ticket_id"] for r in outbox if r["kind"] == "reply")
    assert reply_rows == Counter(set(e.agent_replies.values())), "a relay was queued twice, or not at all"

    # --- 4. what the customers received --------------------------------------------------------------
    out = deliveries(mailenv.smtp, db)
    assert out.unknown == [], "the SMTP server received mail inboxd never queued"
    bad = {t: sorted(out.by_kind_ticket.get(("ack", t), ())) for t in acked_tickets
           if len(out.by_kind_ticket.get(("ack", t), ())) != 1}
    assert bad == {}, f"tickets without exactly one acknowledgement Message-ID: {bad}"
    for mid, customer in e.acked.items():
        [ack_id] = out.by_kind_ticket[("ack", ticket_of[mid])]
        assert out.recipients[ack_id] == {customer}
    not_acked = {ticket_of[m] for m in set(e.not_acked) - set(e.follow_ups)}
    assert [t for t in not_acked if ("ack", t) in out.by_kind_ticket] == [], "an auto-reply was acknowledged"
    bad = {t: sorted(out.by_kind_ticket.get(("reply", t), ())) for t in set(e.agent_replies.values())
           if len(out.by_kind_ticket.get(("reply", t), ())) != 1}
    assert bad == {}, f"relayed agent replies not delivered exactly once: {bad}"
    requester = {r["ticket_id"]: r["requester"] for r in query(db, "SELECT ticket_id, requester FROM tickets")}
    for ticket in e.agent_replies.values():
        [reply_id] = out.by_kind_ticket[("reply", ticket)]
        assert out.recipients[reply_id] == {requester[ticket]}

    # the customers with a real mailbox: read their acknowledgements back over IMAP
    mailbox_acks = 0
    for user in MAILBOX_CUSTOMERS:
        theirs = {ticket_of[m] for m, c in e.acked.items() if c == f"{user}@example.com"}
        received = [parse(r) for r in mailenv.dovecot.messages(user)]
        acks = [m for m in received if m["Auto-Submitted"] == "auto-replied"]
        by_ticket: dict[str, set[str]] = {}
        for m in acks:
            by_ticket.setdefault(header(m, "X-Inboxd-Ticket"), set()).add(header(m, "Message-ID"))
        assert {t: len(ids) for t, ids in by_ticket.items()} == {t: 1 for t in theirs}, user
        mailbox_acks += len(acks)

    # --- 5. the at-least-once window: raw copies beyond one per Message-ID --------------------------------
    ack_ids = {mid for (kind, _), ids in out.by_kind_ticket.items() if kind == "ack" for mid in ids}
    reply_ids = {mid for (kind, _), ids in out.by_kind_ticket.items() if kind == "reply" for mid in ids}
    dup_acks, dup_replies, dup_all = (out.extra_copies(ids=ack_ids), out.extra_copies(ids=reply_ids),
                                      out.extra_copies())
    # a repeat must come from a kill: the first copy's 250 was never recorded, so no Message-ID is
    # logged as sent twice (that would be a send recorded, then repeated anyway)
    logged = Counter(re.findall(r"mail_sent outbox_id=\d+ kind=\w+ ticket=\S* message_id=(<[^>]+>)",
                                chaos.daemon.log_text()))
    assert {m: n for m, n in logged.items() if n > 1} == {}

    figures = {
        "seed": seed,
        "kills_survived": len(kills),
        "kill_delays_s": [round(k, 3) for k in kills],
        "daemon_starts": chaos.daemon.starts,
        "messages_in_inbox": inbox_count,
        "customer_mails": len(e.customer_ids),
        "mail_kinds": dict(feeder.kinds),
        "agent_replies": len(e.agent_replies),
        "tickets": len(tickets),
        "acknowledged_tickets": len(acked_tickets),
        "unacknowledged_new_tickets (auto-replies)": len(not_acked),
        "follow_ups": len(e.follow_ups),
        "mails_accepted_by_smtp": sum(out.copies.values()),
        "distinct_message_ids_sent": len(out.copies),
        "duplicate_ack_copies (at-least-once window)": dup_acks,
        "duplicate_relay_copies (at-least-once window)": dup_replies,
        "duplicate_copies_all_kinds (incl. notifications)": dup_all,
        "acks_read_back_from_dovecot_mailboxes": mailbox_acks,
        "chaos_phase_s": round(chaos_seconds, 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    path = write_report(tmp_path, "crash", figures)
    print("[crash] " + "\n[crash] ".join(f"{k}: {v}" for k, v in figures.items() if k != "kill_delays_s"))
    print(f"[crash] figures written to {path}")
    assert len(kills) >= MIN_KILLS
    assert dup_all <= len(kills), f"{dup_all} repeated sends for {len(kills)} kills: more than the window explains"
    assert dup_acks + dup_replies <= len(kills)

