#!/usr/bin/env python
"""The SLA watch over a large backlog of new clocks: time and memory of ``Watch.check``.

    .venv/bin/python bench/bench_sla_watch.py --tickets 1000 10000 100000
    .venv/bin/python bench/bench_sla_watch.py --tickets 10000 --root /tmp/inboxd-old   # another checkout

For each N, a fresh database gets N new tickets (mixed priorities, owner and team set) whose
first-response and resolution clocks were started during the hour before the check, as
``run --once`` leaves them after draining a backlog, with the example configuration's
``[sla]`` (warnings at 75 % and 90 %, two escalation steps, targets per priority) and
``[support]`` hours (lunch break, a holiday). Then a child process in the measured checkout
(it imports no model, no scikit-learn) builds a ``Watch`` and times the first ``check``
(every clock's alert times are placed) and a second one 30 s later (nothing to place), while
a second thread with its own connection keeps writing small transactions and records how
long each waited for the write lock. Memory: VmHWM (peak RSS since exec) before and after the
checks, and, in a second child on a copy of the same database, the ``tracemalloc`` peak of
the first check (slower: not a timing). Results are printed and written to
``bench/results/sla-watch-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 11, 0, tzinfo=ZoneInfo("Asia/Taipei"))  # a Tuesday, in opening hours
PRIORITIES = (("normal", 70), ("high", 15), ("low", 10), ("urgent", 5))

CONFIG = """\
[imap]
host = "imap.example.com"
username = "support"

[smtp]
host = "smtp.example.com"

[support]
address = "support@example.com"
timezone = "Asia/Taipei"
business_days = ["mon", "tue", "wed", "thu", "fri"]
business_hours = ["09:00-12:30", "13:30-18:00"]
holidays = ["2026-12-25", "2027-01-01"]

[storage]
database = "watch.db"

[routing]
agents = "agents.toml"

[sla]
default_policy = "standard"
warn_at = [0.75, 0.9]
escalation = [{ after = "30m", to = "lead" }, { after = "2h", to = "manager" }]
manager = "support-manager@example.com"

[sla.policies.standard]
calendar = "support"
first_response = { urgent = "1h", high = "2h", normal = "4h", low = "1d" }
next_response = { urgent = "2h", high = "4h", normal = "1d", low = "2d" }
resolution = { urgent = "1d", high = "2d", normal = "5d", low = "10d" }
"""

AGENTS = """\
[[agent]]
name = "Alice Agent"
email = "agent@example.com"
hours = ["09:00-18:00"]

[[agent]]
name = "Lena Lead"
email = "lead@example.com"
hours = ["09:00-18:00"]

[[team]]
name = "support"
members = ["agent@example.com"]
lead = "lead@example.com"
"""


def vm(key: str) -> float:
    """VmHWM or VmRSS of this process in MB (VmHWM, unlike ru_maxrss, starts at exec)."""
    status = Path("/proc/self/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith(key + ":")).split()[1]) / 1024


def setup(config: str, tickets: int, seed: int) -> None:
    """N tickets with running first-response and resolution clocks, started in the hour before NOW."""
    sys.path.insert(0, str(ROOT))
    from inboxd.config import load_settings
    from inboxd.store.sqlite import Store

    settings = load_settings(config)
    store = Store(settings.database)
    policy = settings.sla_policies["standard"]
    calendar = settings.calendars[policy.calendar]
    rng = random.Random(seed)
    names, weights = zip(*PRIORITIES, strict=True)
    with store.tx():
        for n in range(tickets):
            started = NOW - timedelta(seconds=3600 * (tickets - n) / tickets)
            ticket_id = store.create_ticket("SUP", subject=f"Order {n} never arrived", requester=f"c{n}@example.net",
                                            requester_name="Chen Mei", language="en", now=started)
            priority = rng.choices(names, weights)[0]
            store.update_ticket(ticket_id, started, owner="agent@example.com", team="support", priority=priority,
                                sla_policy="standard")
            for kind in ("first_response", "resolution"):
                target = policy.target(kind, priority)
                assert target is not None
                due = calendar.add(started, target)
                store.sla.start_timer(ticket_id, kind, policy="standard", calendar=policy.calendar,
                                      started_at=started, due_at=due,
                                      total_minutes=calendar.business_minutes_between(started, due))
    store.close()


def child(config: str, trace: bool) -> None:
    """In the checkout being measured: the first check and a second one; peak memory; writer waits."""
    sys.path.insert(0, str(Path.cwd()))
    import tracemalloc

    import inboxd
    from inboxd.config import load_settings
    from inboxd.routing.assign import Routing
    from inboxd.sla.watch import Watch
    from inboxd.store.sqlite import Store

    settings = load_settings(config)
    store = Store(settings.database)
    routing = Routing(settings)
    out: dict[str, Any] = {"inboxd": inboxd.__file__, "rss_before_mb": vm("VmRSS"), "hwm_before_mb": vm("VmHWM")}
    running = store.query("SELECT count(*) AS n FROM sla_timers WHERE state='running'")[0]["n"]
    out["running_clocks"] = running
    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:  # another thread of the daemon that needs to write now and then
        other = Store(settings.database)
        while not stop.is_set():
            t = time.perf_counter()
            with other.tx():
                other.conn.execute("INSERT INTO meta (key, value) VALUES ('bench', ?) ON CONFLICT (key) "
                                   "DO UPDATE SET value=excluded.value", (str(t),))
            waits.append(time.perf_counter() - t)
            time.sleep(0.05)
        other.close()

    if trace:
        tracemalloc.start()
    thread = threading.Thread(target=writer, daemon=True)
    t = time.perf_counter()
    watch = Watch(settings, store, routing)
    thread.start()
    out["first_queued"] = watch.check(NOW)
    out["first_seconds"] = time.perf_counter() - t
    stop.set()
    thread.join()
    if trace:
        out["tracemalloc_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    out["hwm_after_first_mb"] = vm("VmHWM")
    out["writes_during_first"] = len(waits)
    out["writer_max_wait_ms"] = max(waits, default=0) * 1000
    t = time.perf_counter()
    out["second_queued"] = watch.check(NOW + timedelta(seconds=30))
    out["second_seconds"] = time.perf_counter() - t
    out["hwm_after_second_mb"] = vm("VmHWM")
    out["placed"] = store.query("SELECT count(*) AS n FROM sla_timers WHERE state='running' AND "
                                "next_alert_at IS NOT NULL")[0]["n"]
    store.close()
    print(json.dumps(out))


def run_child(root: Path, config: Path, trace: bool) -> dict[str, Any]:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", str(config)] + (["--trace"] if trace else [])
    env = {**os.environ, "PYTHONPATH": str(root)}  # the shared venv's editable install may point elsewhere
    done = subprocess.run(args, cwd=root, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr[-3000:])
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def git_commit(root: Path) -> str:
    done = subprocess.run(["git", "-C", str(root), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return done.stdout.strip() or "(not a git checkout)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout whose inboxd is measured")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--setup", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.trace)
        return 0
    if args.setup:
        setup(args.setup[0], int(args.setup[1]), args.seed)
        return 0
    root = args.root.resolve()
    results = []
    for tickets in args.tickets:
        work = Path(tempfile.mkdtemp(prefix="inboxd-slawatch-"))
        (work / "agents.toml").write_text(AGENTS, encoding="utf-8")
        config = work / "inboxd.toml"
        config.write_text(CONFIG, encoding="utf-8")
        t = time.monotonic()
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--setup", str(config), str(tickets),
                        "--seed", str(args.seed)], check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        setup_seconds = time.monotonic() - t
        if not args.no_trace:
            traced = work / "traced"
            traced.mkdir()
            shutil.copy(work / "watch.db", traced / "watch.db")
            shutil.copy(work / "agents.toml", traced / "agents.toml")
            shutil.copy(config, traced / "inboxd.toml")
        load = os.getloadavg()[0]
        result = {"tickets": tickets, "setup_seconds": round(setup_seconds, 1), "load_start": load,
                  **run_child(root, config, trace=False)}
        if not args.no_trace:
            result["tracemalloc_peak_mb"] = run_child(root, traced / "inboxd.toml", trace=True)["tracemalloc_peak_mb"]
        result["load_end"] = os.getloadavg()[0]
        result["commit"] = git_commit(root)
        results.append(result)
        print(json.dumps(result), flush=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'tickets':>8} {'clocks':>7} {'1st check':>10} {'2nd check':>10} {'VmHWM before/after':>20} "
          f"{'tracemalloc':>12} {'writer max wait':>16} load")
    for r in results:
        print(f"{r['tickets']:>8} {r['running_clocks']:>7} {r['first_seconds']:>9.2f}s {r['second_seconds']:>9.3f}s "
              f"{r['hwm_before_mb']:>9.1f}/{r['hwm_after_second_mb']:.1f} MB "
              f"{r.get('tracemalloc_peak_mb', float('nan')):>9.1f} MB {r['writer_max_wait_ms']:>13.1f} ms "
              f"{r['load_start']:.2f}/{r['load_end']:.2f}")
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"sla-watch-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"machine": {"nproc": os.cpu_count()}, "runs": results}, indent=2), encoding="utf-8")
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
