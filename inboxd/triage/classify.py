"""Classify: what a mail is about, how urgent it is, and whether it is spam.

Rules run first and win: a rule that sets the category decides it. Otherwise the
model predicts, and below ``min_confidence`` the ticket is tagged
``needs-triage`` instead of guessed. Priority and mood come from ``mood``. The
model and the rules can be swapped while the daemon runs (retraining, rule
edits), so the classifier holds them behind one lock-free reference each.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from inboxd.errors import ModelError
from inboxd.log import log
from inboxd.tomlfile import LastGood
from inboxd.triage.mood import assess
from inboxd.triage.rules import MailFacts, RuleSet, apply_rules, load_rules
from inboxd.triage.train import TrainedModel, example_text, load

logger = logging.getLogger("inboxd.classify")
NEEDS_TRIAGE = "needs-triage"
SPAM_CONFIDENCE = 0.9
Guess = tuple[str, float]  # the model's category and its probability


@dataclass(frozen=True)
class Classification:
    category: str | None
    confidence: float | None
    source: str  # "rule", "model", or "none" (no rule and no confident model)
    priority: str
    tags: tuple[str, ...]
    spam: bool
    acknowledge: bool
    language: str
    rules_fired: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()
    model_version: str | None = None
    model_guess: tuple[str, float] | None = field(default=None)  # what the model said, even if not used


class Classifier:
    """Rules + model + mood; ``reload_rules`` and ``swap_model`` replace parts atomically."""

    def __init__(self, *, rules_dir: Path | None, model_path: Path | None, min_confidence: float,
                 vip: frozenset[str] = frozenset()) -> None:
        self.rules_dir, self.model_path = rules_dir, model_path
        self.min_confidence, self.vip = min_confidence, vip
        self.model: TrainedModel | None = None
        self._stamp: tuple[int, int] | None = None  # the model file's (mtime, size) when last read
        self._rules: LastGood[RuleSet] = LastGood(
            "rules", lambda: sorted(rules_dir.glob("*.toml")) if rules_dir and rules_dir.is_dir() else [],
            lambda: load_rules(rules_dir) if rules_dir is not None else RuleSet(), RuleSet())
        self.reload_model()

    def reload_model(self) -> None:
        """Load the model file; without one, classification runs on rules alone (with a warning)."""
        if self.model_path is None:
            return
        self._stamp = self._model_stamp()
        try:
            self.model = load(self.model_path)
            log(logger, logging.INFO, "model_loaded", version=self.model.version, path=str(self.model_path))
        except ModelError as exc:
            self.model = None
            log(logger, logging.WARNING, "model_unavailable", error=str(exc), note="classifying with rules only")

    def swap_model(self, model: TrainedModel) -> None:
        self.model = model

    def reload_model_if_changed(self) -> bool:
        """Take a model file that `inboxd train` replaced, without a restart. A file that cannot be
        loaded keeps the model in use (logged); True when the model was replaced."""
        stamp = self._model_stamp()
        if self.model_path is None or stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            model = load(self.model_path)
        except ModelError as exc:
            log(logger, logging.WARNING, "model_reload_failed", error=str(exc),
                note="classifying with the model in use" if self.model else "classifying with rules only")
            return False
        if self.model is not None and model.version == self.model.version:  # e.g. our own retrain saved it
            return False
        self.model = model
        log(logger, logging.INFO, "model_loaded", version=model.version, path=str(self.model_path),
            note="the model file was replaced")
        return True

    def _model_stamp(self) -> tuple[int, int] | None:
        try:
            stat = self.model_path.stat() if self.model_path is not None else None
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size) if stat else None

    @property
    def ruleset(self) -> RuleSet:
        return self._rules.value

    @property
    def rule_errors(self) -> list[str]:
        return self._rules.errors

    def reload_rules(self) -> bool:
        """Load the rule files again; on any error keep the last good set. True when replaced."""
        return self._rules.reload()

    def reload_rules_if_changed(self) -> bool:
        return self._rules.reload_if_changed()

    def guesses(self, texts: list[str]) -> list[Guess | None]:
        """The model's (category, probability) for many texts at once: batching is much faster.

        Raises ModelError whatever goes wrong inside the model, so callers can fall back.
        """
        model = self.model
        if model is None or not texts:
            return [None] * len(texts)
        try:
            return list(model.predict(texts))
        except Exception as exc:  # scikit-learn fed with customer text can fail in many ways: all are the model's
            raise ModelError(f"the model failed ({type(exc).__name__}: {exc})") from exc

    def classify(self, *, subject: str, body: str, facts: MailFacts, sender: str | None, language: str,
                 unanswered: int = 1) -> Classification:
        guess = self.guesses([example_text(subject, body)])[0]
        return self.decide(subject=subject, body=body, facts=facts, sender=sender, language=language,
                           unanswered=unanswered, guess=guess)

    def decide(self, *, subject: str, body: str, facts: MailFacts, sender: str | None, language: str,
               guess: tuple[str, float] | None, unanswered: int = 1) -> Classification:
        """Combine rules, the model's ``guess`` (from ``guesses``) and mood into one verdict."""
        outcome = apply_rules(self.ruleset, facts)
        mood = assess(subject, body, sender=sender, vip=self.vip, unanswered=unanswered)
        model = self.model
        tags = list(outcome.tags)
        if outcome.category is not None:
            category, confidence, source = outcome.category, None, "rule"
        elif guess is not None and guess[1] >= self.min_confidence:
            category, confidence, source = guess[0], round(guess[1], 4), "model"
        else:
            category, confidence, source = None, round(guess[1], 4) if guess is not None else None, "none"
            if NEEDS_TRIAGE not in tags:
                tags.append(NEEDS_TRIAGE)
        tags.extend(t for t in mood.tags if t not in tags)
        priority = outcome.priority or mood.priority  # an admin's rule overrides the heuristics
        # Only a rule, or a very confident model, may withhold a customer's acknowledgement: on
        # real tickets the model takes some formal, link-heavy mail for spam (see bench/README.md).
        spam = outcome.spam or (category == "spam" and (source == "rule" or (confidence or 0) >= SPAM_CONFIDENCE))
        if category == "spam" and not spam:
            tags.append("possible-spam")
        return Classification(
            category=category, confidence=confidence, source=source, priority=priority, tags=tuple(tags),
            spam=spam, acknowledge=outcome.acknowledge and not spam, language=language,
            rules_fired=tuple(outcome.fired), signals=mood.signals,
            model_version=model.version if model is not None else None,
            model_guess=(guess[0], round(guess[1], 4)) if guess is not None else None)
