"""The daemon: fetch, process and send running side by side until told to stop.

Three workers share nothing but the database:
- the fetch thread owns the IMAP connection (imapclient is synchronous) and
  stores new mail, then waits in IDLE;
- the processing task runs the pipeline on stored mail, in a worker thread;
- the sending task delivers the outbox with aiosmtplib.
Each wakes the next through an event, and each also wakes on a timer, so a lost
wake-up only delays work. SIGTERM/SIGINT stop claiming new work; what was in
flight is safe because every step is committed before the next begins.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from inboxd.app import App
from inboxd.config import Settings
from inboxd.errors import AlreadyRunning, describe
from inboxd.log import log
from inboxd.mail.fetch import MailSource
from inboxd.sla.watch import Watch
from inboxd.stages.lifecycle import close_resolved
from inboxd.store.base import utcnow
from inboxd.triage.train import Example, bundled_examples, retrain, save

logger = logging.getLogger("inboxd.daemon")
RESCAN_SECONDS = 30.0
RULES_CHECK_SECONDS = 3.0
ERROR_PAUSE_SECONDS = 5.0
SWITCH_INTERVAL = 0.001


@contextmanager
def exclusive(database: Path) -> Iterator[None]:
    """Hold ``<database>.lock`` for as long as the daemon runs (released by the OS on a crash)."""
    database.parent.mkdir(parents=True, exist_ok=True)
    lock_path = database.with_name(database.name + ".lock")
    handle: IO[str] = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "unknown"
            raise AlreadyRunning(f"another inboxd (process {owner}) is already running on {database}; "
                                 "stop it first, or give this one its own [storage] database") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


class Daemon:
    def __init__(self, settings: Settings, *, source: MailSource | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.settings = settings
        self.app = app = App(settings, clock)
        self.sources = [(source, settings.imap.folder)] if source is not None else app.sources()
        self.clock = clock
        self.classifier, self.routing = app.classifier, app.routing
        self.stop_event = threading.Event()
        for server, conf in (("imap", settings.imap), ("smtp", settings.smtp)):
            if conf.tls != "none" and not conf.verify_tls:
                log(logger, logging.WARNING, "tls_verification_off", server=server, host=conf.host,
                    note="certificates are not checked: anyone on the network path could read the mail and "
                         "the password; set verify_tls = true unless this is a test server")

    async def run_once(self) -> bool:
        """Fetch what is waiting, process it, send everything queued; False if the mailbox failed."""
        with exclusive(self.settings.database):
            return await self._once()

    async def _once(self) -> bool:
        app = self.app
        store = app.store()
        mailbox_ok = True
        connected = []
        for source, folder in self.sources:
            fetcher = app.fetcher(source, folder, store)
            try:
                await asyncio.to_thread(source.connect)
                connected.append(fetcher)
                await asyncio.to_thread(fetcher.sync)
            except Exception as exc:  # report, and still process and send what is already stored
                mailbox_ok = False
                error = describe(exc)
                store.record_fetch_error(self.settings.imap.account, folder, error)
                log(logger, logging.ERROR, "mailbox_failed", folder=folder, error=error)
        worker = app.worker(store)
        await asyncio.to_thread(worker.warm_up)
        try:
            await asyncio.to_thread(worker.process_pending)
        finally:
            worker.close()
        await asyncio.to_thread(app.watch(store).check, self.clock())
        await asyncio.to_thread(close_resolved, self.settings, store, self.clock())
        sender = app.sender(store)
        report = await sender.send_due(ignore_backoff=True)
        while not await sender.record_accepted():  # exiting now would send those mails again next time
            await asyncio.sleep(1)
        for fetcher in connected:
            try:
                await asyncio.to_thread(fetcher.mark_processed)
            except Exception as exc:  # keywords are set again next time
                log(logger, logging.WARNING, "marking_failed", folder=fetcher.folder, error=str(exc))
            finally:
                await asyncio.to_thread(fetcher.source.close)
        log(logger, logging.INFO, "run_once_done", sent=report.sent, retrying=report.retrying,
            failed=report.failed)
        store.close()
        return mailbox_ok

    def stop(self) -> None:
        self.stop_event.set()

    def retrain(self) -> bool:
        """Retrain when enough new corrections exist; swap the model in only if it is not worse."""
        c = self.settings.classify
        store = self.app.store()
        try:
            corrections = [Example(text, label) for text, label in store.category_corrections()]
        finally:
            store.close()
        current = self.classifier.model
        if len(corrections) - (current.corrections if current else 0) < c.retrain_after:
            return False
        result = retrain(current, bundled_examples(), corrections)
        if result.model is None:
            log(logger, logging.INFO, "retrain_rejected", new_macro_f1=result.new_score,
                current_macro_f1=result.old_score, held_out=result.held_out)
            return False
        save(result.model, c.model)
        self.classifier.swap_model(result.model)
        log(logger, logging.INFO, "model_swapped", version=result.model.version, corrections=len(corrections),
            new_macro_f1=result.new_score, previous_macro_f1=result.old_score, held_out=result.held_out)
        return True

    def _scheduler(self, watch: Watch, send_wake: asyncio.Event) -> AsyncIOScheduler:
        """Periodic jobs: pick up edited rules and a replaced model file within seconds, retrain from
        corrections, watch the SLA clocks."""
        scheduler = AsyncIOScheduler(job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60})
        scheduler.add_job(self.classifier.reload_rules_if_changed, "interval", seconds=RULES_CHECK_SECONDS,
                          id="reload_rules")
        scheduler.add_job(self.routing.reload_if_changed, "interval", seconds=RULES_CHECK_SECONDS,
                          id="reload_routing")
        scheduler.add_job(self.classifier.reload_model_if_changed, "interval", seconds=RULES_CHECK_SECONDS,
                          id="reload_model")

        async def retrain_job() -> None:
            try:
                await asyncio.to_thread(self.retrain)
            except Exception:  # a failed retrain keeps the current model; the daemon goes on
                logger.exception("retrain_failed")

        scheduler.add_job(retrain_job, "interval", minutes=self.settings.classify.retrain_check_minutes,
                          id="retrain")

        async def sla_job() -> None:
            try:
                if await asyncio.to_thread(watch.check, self.clock()):
                    send_wake.set()
                await asyncio.to_thread(close_resolved, self.settings, watch.store, self.clock())
            except Exception:  # the clocks are in the database; the next check catches up
                logger.exception("sla_check_failed")

        # the first check runs at once, so alerts that fell due while inboxd was stopped go out on start
        scheduler.add_job(sla_job, "interval", seconds=self.settings.sla.check_seconds, id="sla",
                          next_run_time=datetime.now(UTC))
        return scheduler

    async def run_forever(self) -> None:
        with exclusive(self.settings.database):
            await self._forever()

    async def _forever(self) -> None:
        # The threads hand the GIL on every 1 ms instead of 5 ms: a thread woken by the network
        # (new mail in IDLE, an SMTP answer) then waits less behind the worker's parsing.
        sys.setswitchinterval(SWITCH_INTERVAL)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        process_wake, send_wake = asyncio.Event(), asyncio.Event()
        process_wake.set()  # mail stored before a restart is processed at once, not at the next new mail
        send_wake.set()  # and what was queued goes out
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop)
        self.stop_event.clear()

        def on_stored() -> None:
            loop.call_soon_threadsafe(process_wake.set)

        def on_batch() -> None:
            loop.call_soon_threadsafe(send_wake.set)

        app = self.app
        fetch_stores = [app.store() for _ in self.sources]
        flag_wakes = [threading.Event() for _ in self.sources]  # one each: a thread clears only its own
        threads = [threading.Thread(target=app.fetcher(source, folder, fetch_store, on_stored).run,
                                    name=f"inboxd-fetch-{folder}", daemon=True,
                                    args=(self.stop_event, wake, self.settings.imap.poll_interval))
                   for (source, folder), fetch_store, wake in zip(self.sources, fetch_stores, flag_wakes)]
        process_store, send_store = app.store(), app.store()
        worker = app.worker(process_store)
        sender = app.sender(send_store)
        log(logger, logging.INFO, "daemon_started", database=str(self.settings.database),
            mailbox=f"{self.settings.imap.account}/{self.settings.imap.folder}")

        async def processing() -> None:
            await asyncio.to_thread(worker.warm_up)
            while not stop.is_set():
                await _wait(process_wake, RESCAN_SECONDS)
                process_wake.clear()
                try:
                    if await asyncio.to_thread(worker.process_pending, on_batch):
                        for wake in flag_wakes:
                            wake.set()
                        send_wake.set()
                except Exception:  # e.g. the database is unavailable: log, wait, try again
                    logger.exception("processing_failed")
                    await _wait(asyncio.Event(), ERROR_PAUSE_SECONDS)

        async def sending() -> None:
            while not stop.is_set():
                timeout = RESCAN_SECONDS
                try:
                    await sender.send_due()
                    next_due = await asyncio.to_thread(send_store.next_outbox_time)
                    if next_due is not None:
                        timeout = max(0.05, min(RESCAN_SECONDS, (next_due - self.clock()).total_seconds()))
                except Exception:  # the outbox stays in the database; try again after a pause
                    logger.exception("sending_failed")
                    timeout = ERROR_PAUSE_SECONDS
                await _wait(send_wake, timeout)
                send_wake.clear()

        async def watch_stop() -> None:
            await asyncio.to_thread(self.stop_event.wait)
            stop.set()
            process_wake.set()
            send_wake.set()

        for thread in threads:
            thread.start()
        watch_store = app.store()
        scheduler = self._scheduler(app.watch(watch_store), send_wake)
        scheduler.start()
        tasks = [asyncio.create_task(t()) for t in (processing, sending)]
        try:
            await watch_stop()
            await asyncio.wait(tasks, timeout=30)
        finally:
            scheduler.shutdown(wait=False)
            self.stop_event.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for thread in threads:
                await asyncio.to_thread(thread.join, 10)
            worker.close()
            for store in (*fetch_stores, process_store, send_store, watch_store):
                store.close()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            log(logger, logging.INFO, "daemon_stopped")


async def _wait(event: asyncio.Event, timeout: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        pass
