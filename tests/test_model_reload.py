"""A model file replaced by `inboxd train` is used without a restart (issue 11, item 7)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from inboxd.store.sqlite import Store
from inboxd.triage.classify import Classifier
from inboxd.triage.train import Example, TrainedModel, save, train

from helpers import mail, settings_for


def tiny_model(word: str) -> TrainedModel:
    return train([Example(f"refund my money {word} {i}", "refund") for i in range(12)]
                 + [Example(f"where is my parcel {word} {i}", "shipping") for i in range(12)])


def test_a_replaced_model_file_is_loaded_and_a_broken_one_keeps_the_current(tmp_path: Path) -> None:
    path = tmp_path / "model.joblib"
    first, second = tiny_model("one"), tiny_model("two")
    save(first, path)
    classifier = Classifier(rules_dir=None, model_path=path, min_confidence=0.3)
    assert classifier.model is not None and classifier.model.version == first.version
    assert not classifier.reload_model_if_changed()  # unchanged
    time.sleep(0.01)
    save(second, path)
    assert classifier.reload_model_if_changed() and classifier.model.version == second.version
    path.write_bytes(b"not a model")
    assert not classifier.reload_model_if_changed()
    assert classifier.model.version == second.version  # the broken file changed nothing
    path.unlink()
    assert not classifier.reload_model_if_changed() and classifier.model.version == second.version


def test_a_running_daemon_classifies_with_the_new_model_file(tmp_path: Path, mailenv: Any) -> None:
    settings = settings_for(tmp_path, mailenv, extra='\n[logging]\nformat = "json"\n')
    first, second = tiny_model("one"), tiny_model("two")
    save(first, settings.classify.model)
    log = tmp_path / "daemon.log"
    daemon = subprocess.Popen([sys.executable, "-m", "inboxd", "--config", str(settings.path), "run"],
                              stdout=subprocess.DEVNULL, stderr=open(log, "wb"))

    def versions() -> list[str | None]:
        if not settings.database.exists():
            return []
        store = Store(settings.database)
        try:
            rows = store.query("SELECT classification FROM messages WHERE direction='in' ORDER BY id")
        finally:
            store.close()
        return [json.loads(r["classification"])["model_version"] for r in rows]

    def wait(predicate: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    try:
        mailenv.dovecot.append("support", mail(sender="a@example.net", subject="Please refund my money"))
        wait(lambda: len(versions()) == 1, "the first mail")
        save(second, settings.classify.model)  # what `inboxd train` does: an atomic replace
        wait(lambda: second.version in log.read_text(), "the new model to be loaded")
        mailenv.dovecot.append("support", mail(sender="b@example.net", subject="Where is my parcel?"))
        wait(lambda: len(versions()) == 2, "the second mail")
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert versions() == [first.version, second.version]
