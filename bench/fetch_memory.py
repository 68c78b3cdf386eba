#!/usr/bin/env python
"""Peak RSS of inboxd's IMAP side alone over a large backlog: ``Fetcher.sync``, then ``mark_processed``.

    .venv/bin/python bench/fetch_memory.py --messages 100000

A full ``run --once`` of 100,000 mails takes hours on the benchmark machine (processing,
the SLA watch, and Dovecot's own cost per new keyword, which grows with the keywords the
mailbox already has), so this measures the two stages in ``inboxd/mail/fetch.py`` by
themselves, in a child process that imports nothing else of inboxd's pipeline (no model,
no scikit-learn: the base RSS is about 40 MB, not 200). It appends the bench_pipeline
corpus to a private Dovecot, runs ``Fetcher.sync`` on a fresh database, marks every stored
mail processed in SQL *without* a ticket (so only ``$inboxd`` is stored: one STORE per page,
no per-ticket keywords), runs ``Fetcher.mark_processed`` and checks every mail got
``$inboxd``. ``--root DIR`` runs the child against another checkout (e.g. an older commit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def child(config: str) -> None:
    """In the checkout being measured: sync, mark, and report the peak RSS after each."""
    sys.path.insert(0, str(Path.cwd()))
    import inboxd
    from inboxd.config import load_settings
    from inboxd.mail.fetch import Fetcher, ImapSource
    from inboxd.store.sqlite import Store

    def peak_mb() -> float:
        """VmHWM: unlike ru_maxrss, which a child inherits from the (large) parent, it starts at exec."""
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024

    settings = load_settings(config)
    imap = settings.imap
    store = Store(settings.database)
    source = ImapSource(imap, imap.folder)
    fetcher = Fetcher(source, store, account=imap.account, folder=imap.folder, max_size=imap.max_message_size,
                      clock=lambda: datetime.now(UTC))
    out: dict[str, Any] = {"inboxd": inboxd.__file__, "rss_before_mb": peak_mb()}
    t = time.monotonic()
    source.connect()
    out["stored"] = fetcher.sync()
    out["sync_seconds"], out["rss_after_sync_mb"] = time.monotonic() - t, peak_mb()
    with store.tx():
        store.conn.execute("UPDATE raw_messages SET state='processed'")
    t = time.monotonic()
    out["marked"] = fetcher.mark_processed()
    out["mark_seconds"], out["rss_after_mark_mb"] = time.monotonic() - t, peak_mb()
    source.close()
    print(json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100000)
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose inboxd is measured")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_pipeline import append_all, build_corpus, make_sink_class, write_config

    from mailservers import Dovecot

    work = Path(tempfile.mkdtemp(prefix="inboxd-fetchmem-"))
    with Dovecot() as dovecot:
        sink = make_sink_class()(dovecot)  # only for the config's [smtp]; nothing is sent
        sink.start()
        corpus = build_corpus(args.messages)
        t = time.monotonic()
        append_all(dovecot, corpus.raws)
        print(f"appended {len(corpus.raws)} mails ({sum(map(len, corpus.raws)) / 1e6:.0f} MB) in "
              f"{time.monotonic() - t:.0f} s; load average {os.getloadavg()[0]:.2f}", flush=True)
        del corpus
        config = write_config(work, dovecot, sink, str(work / "fetch.db"), 60, 1, work / "no-model.joblib")
        done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", str(config)],
                              cwd=args.root.resolve(), capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        result = json.loads(done.stdout.strip().splitlines()[-1])
        with dovecot.client("support") as imap:  # one SEARCH: a FETCH of every UID would be too long a line
            imap.select_folder("INBOX", readonly=True)
            result["with_inboxd_keyword"] = len(imap.search(["KEYWORD", "$inboxd"]))
        sink.stop()
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), f"load average {os.getloadavg()[0]:.2f}")
    return 0 if result["with_inboxd_keyword"] == args.messages == result["marked"] else 1


if __name__ == "__main__":
    sys.exit(main())
