#!/usr/bin/env python
"""Run ``python -m inboxd ARGS`` under cProfile in *every* thread and save the combined stats.

    .venv/bin/python bench/profile_once.py OUT.prof --config X run --once

``inboxd run --once`` does its IMAP, SQLite and pipeline work in ``asyncio.to_thread`` workers,
which the plain ``python -m cProfile`` (main thread only) would show as time spent waiting
in the event loop. Here each new thread gets its own ``cProfile.Profile`` (installed by
``threading.setprofile`` on the thread's first event) and the main thread one too; at exit the
profiles are merged with ``pstats.Stats.add``. Times are wall-clock per thread, so a worker
that waits for work shows that wait under ``queue``/``threading`` functions: read the
cumulative time of inboxd's own functions, not the grand total. Used by ``bench_pipeline.py
--profile``.
"""

from __future__ import annotations

import cProfile
import pstats
import runpy
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    out, args = Path(sys.argv[1]), sys.argv[2:]
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_in_thread(*_: object) -> None:
        sys.setprofile(None)  # replace this bootstrap hook with a real profiler for the thread
        profile = cProfile.Profile()
        with lock:
            profiles.append(profile)
        profile.enable()

    threading.setprofile(start_in_thread)
    main_profile = cProfile.Profile()
    profiles.append(main_profile)
    sys.argv = ["inboxd", *args]
    sys.path.insert(0, str(ROOT))
    code: object = 0
    main_profile.enable()
    try:
        runpy.run_module("inboxd", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code
    finally:
        main_profile.disable()
        threading.setprofile(None)
    with lock:
        for profile in profiles:  # worker threads are idle (or gone) by now
            profile.disable()
        stats = pstats.Stats(profiles[0])
        for profile in profiles[1:]:
            try:
                stats.add(profile)
            except TypeError:  # a thread that never recorded anything
                pass
    stats.dump_stats(str(out))
    sys.exit(code if isinstance(code, int) else 1)


if __name__ == "__main__":
    main()
