"""Wiring: the one place that builds inboxd's parts from the settings.

The daemon and the commands ask this module for a classifier, a worker, a sender,
a fetcher..., so what depends on what is written once. A second store backend or a
new kind of mailbox changes this file, not the stages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from inboxd.config import ClassifySettings, Settings
from inboxd.mail.fetch import Fetcher, ImapSource, MailSource
from inboxd.mail.send import Sender
from inboxd.reply.render import BUNDLED_TEMPLATES, Renderer
from inboxd.routing.assign import Routing
from inboxd.sla.watch import Watch
from inboxd.stages.worker import Worker
from inboxd.store.base import utcnow
from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classifier


def classifier_for(c: ClassifySettings, rules_dir: Path | None = None) -> Classifier:
    """The rules and the saved model of ``[classify]`` (``rules_dir`` to try other rules)."""
    return Classifier(rules_dir=rules_dir or c.rules_dir, model_path=c.model, min_confidence=c.min_confidence,
                      vip=c.vip)


class App:
    """The long-lived parts (templates, classifier, routing) and factories for the per-thread ones."""

    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utcnow) -> None:
        self.settings, self.clock = settings, clock
        self.renderer = Renderer(settings.templates or BUNDLED_TEMPLATES)
        self.classifier = classifier_for(settings.classify)
        self.routing = Routing(settings)

    def sources(self) -> list[tuple[MailSource, str]]:
        """One IMAP source per watched folder: the inbox, and the Sent folder when configured."""
        imap = self.settings.imap
        folders = [imap.folder] + ([imap.sent_folder] if imap.sent_folder else [])
        return [(ImapSource(imap, folder), folder) for folder in folders]

    def store(self) -> Store:
        """A new connection: each thread of the daemon has its own."""
        return Store(self.settings.database)

    def fetcher(self, source: MailSource, folder: str, store: Store,
                on_stored: Callable[[], None] = lambda: None) -> Fetcher:
        imap = self.settings.imap
        return Fetcher(source, store, account=imap.account, folder=folder, max_size=imap.max_message_size,
                       clock=self.clock, on_stored=on_stored)

    def worker(self, store: Store) -> Worker:
        return Worker(self.settings, store, self.renderer, self.classifier, self.routing, self.clock,
                      processes=None)  # a parsing helper process when the machine has a second core

    def sender(self, store: Store) -> Sender:
        return Sender(self.settings.smtp, store, self.clock)

    def watch(self, store: Store) -> Watch:
        return Watch(self.settings, store, self.routing)
