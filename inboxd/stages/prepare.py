"""Parsing on the second core: the worker's next batch is parsed in another process meanwhile.

Parsing is CPU-bound pure Python (bytes in, ``ParsedMessage`` out) and the worker's thread
holds the GIL while it writes tickets, so a second thread would not help. One helper
process (forkserver: started clean, without the daemon's threads or its model) parses
batch k+1 while the worker handles batch k. Small batches, a new mail or two, are parsed
in the worker itself: no round trip for them. The helper holds nothing that must not be
lost: if it dies (a mail that crashes the parser, the OOM killer), it is replaced and the
batch is parsed in the worker, where the poison-mail limit applies as usual.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from inboxd.log import log
from inboxd.model import ParsedMessage
from inboxd.triage.parse import parse_message

logger = logging.getLogger("inboxd.pipeline")
MIN_BATCH = 20  # below this, parsing here is cheaper than the round trip


def parse_batch(raws: list[bytes]) -> list[ParsedMessage]:
    """Runs in the helper process: parse_message never raises, so neither does this."""
    return [parse_message(raw) for raw in raws]


class Preparer:
    """A pool of ``processes`` helper processes (0: parse everything in the worker's thread)."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = (1 if (os.cpu_count() or 1) > 1 else 0) if processes is None else processes
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, ids: list[int], raws: list[bytes]) -> Ahead | None:
        """Start parsing these stored mails elsewhere; None when they are better parsed here."""
        if self.processes < 1 or len(raws) < MIN_BATCH:
            return None
        try:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["inboxd.stages.prepare"])  # not the daemon's __main__
                self._pool = ProcessPoolExecutor(self.processes, mp_context=context)
            return Ahead(ids, self._pool.submit(parse_batch, raws))
        except (BrokenProcessPool, OSError, RuntimeError) as exc:  # could not start: parse here
            self._broken(exc)
            return None

    def collect(self, ahead: Ahead | None) -> dict[int, ParsedMessage]:
        """What the helper parsed (raw id -> message); empty if it failed, and the worker parses them."""
        if ahead is None:
            return {}
        try:
            return dict(zip(ahead.ids, ahead.future.result(), strict=True))
        except (BrokenProcessPool, OSError, RuntimeError) as exc:
            self._broken(exc)
            return {}

    def _broken(self, exc: BaseException) -> None:
        log(logger, logging.WARNING, "parse_helper_failed", error=f"{type(exc).__name__}: {exc}",
            note="parsing in the worker; a new helper is started for the next batch")
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class Ahead:
    """A batch being parsed in the helper: the raw ids, in order, and the future of their results."""

    def __init__(self, ids: list[int], future: Future[list[ParsedMessage]]) -> None:
        self.ids, self.future = ids, future
