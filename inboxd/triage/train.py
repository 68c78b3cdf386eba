"""Train, evaluate, save and load the category model.

The model is word n-grams plus character n-grams (TF-IDF) into a logistic
regression, whose probabilities serve as confidence: character n-grams read Chinese
without a word segmenter, word n-grams carry English. Examples are split into
training and held-out sets by a hash of their text, so the same example always
lands on the same side: a retrained model and the current one are compared on
exactly the same held-out mail.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from inboxd.errors import BadInput, ModelError
from inboxd.resources import TRAINING as BUNDLED_TRAINING  # under this name for the callers that import it here
from inboxd.triage.rules import CATEGORIES

# scikit-learn and joblib are imported inside the functions that use them: importing them
# costs about a second and 90 MB, which `inboxd run --once` without a model should not pay.

MODEL_FORMAT = 1
MAX_TEXT = 4000


@dataclass(frozen=True)
class Example:
    text: str
    label: str


@dataclass
class TrainedModel:
    version: str
    created_at: str
    labels: list[str]
    metrics: dict[str, Any]
    pipeline: Any = field(repr=False)
    examples: int = 0
    corrections: int = 0

    def predict(self, texts: list[str]) -> list[tuple[str, float]]:
        """(label, probability) of the most likely category for each text."""
        probabilities = self.pipeline.predict_proba([t[:MAX_TEXT] for t in texts])
        classes = self.pipeline.classes_
        return [(str(classes[row.argmax()]), float(row.max())) for row in probabilities]


def example_text(subject: str, body: str) -> str:
    return f"{subject}\n{body}"[:MAX_TEXT]


def is_held_out(text: str) -> bool:
    """One example in five is kept for evaluation, chosen by a stable hash of its text."""
    return hashlib.sha1(text.encode("utf-8")).digest()[0] % 5 == 0


def build_pipeline() -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion, Pipeline

    features = FeatureUnion([
        ("words", TfidfVectorizer(analyzer="word", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z0-9']+\b",
                                  ngram_range=(1, 2), sublinear_tf=True, lowercase=True)),
        ("chars", TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3), sublinear_tf=True, lowercase=True,
                                  max_features=300_000)),
    ])
    # Logistic regression measured better than a calibrated LinearSVC on held-out mail (macro-F1
    # 0.83 vs 0.78) and about 2.7x faster per message; see bench/README.md.
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=3000)
    return Pipeline([("features", features), ("model", model)])


def evaluate(model: Any, examples: list[Example]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class F1 and the confusion matrix of a TrainedModel or sklearn pipeline."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    if not examples:
        return {"n": 0, "accuracy": None, "macro_f1": None, "per_class_f1": {}, "labels": [], "confusion": []}
    texts = [e.text for e in examples]
    truth = [e.label for e in examples]
    if isinstance(model, TrainedModel):
        predicted = [label for label, _ in model.predict(texts)]
    else:
        predicted = list(model.predict(texts))
    labels = sorted(set(truth) | set(predicted))
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0)
    return {
        "n": len(examples),
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=sorted(set(truth)), average="macro",
                                         zero_division=0)), 4),
        "per_class_f1": {label: round(float(f), 4) for label, f in zip(labels, per_class)},
        "labels": labels,
        "confusion": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }


def train(examples: list[Example], corrections: int = 0) -> TrainedModel:
    """Fit on the training side of ``examples`` and measure on the held-out side."""
    unknown = {e.label for e in examples} - set(CATEGORIES)
    if unknown:
        raise BadInput(f"unknown categories in the training data: {', '.join(sorted(unknown))}")
    train_set = [e for e in examples if not is_held_out(e.text)]
    test_set = [e for e in examples if is_held_out(e.text)]
    counts = {label: sum(e.label == label for e in train_set) for label in {e.label for e in train_set}}
    if len(counts) < 2:
        raise BadInput("training needs examples of at least two categories")
    pipeline = build_pipeline()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on tiny sets is not actionable here
        pipeline.fit([e.text for e in train_set], [e.label for e in train_set])
    created = datetime.now(UTC)
    digest = hashlib.sha256("\n".join(f"{e.label}\t{e.text}" for e in examples).encode()).hexdigest()[:8]
    model = TrainedModel(version=f"{created:%Y%m%d-%H%M%S}-{digest}", created_at=created.isoformat(),
                         labels=sorted(counts), metrics={}, pipeline=pipeline,
                         examples=len(train_set), corrections=corrections)
    from sklearn import __version__ as sklearn_version

    model.metrics = {"held_out": evaluate(model, test_set), "train_examples": len(train_set),
                     "sklearn": sklearn_version}
    return model


def held_out(examples: list[Example]) -> list[Example]:
    return [e for e in examples if is_held_out(e.text)]


def save(model: TrainedModel, path: Path) -> None:
    """Write atomically: a crash mid-write never leaves a half model behind."""
    import joblib

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": MODEL_FORMAT, "version": model.version, "created_at": model.created_at,
               "labels": model.labels, "metrics": model.metrics, "pipeline": model.pipeline,
               "examples": model.examples, "corrections": model.corrections}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model-", suffix=".tmp")
    os.close(fd)
    try:
        joblib.dump(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    path.with_suffix(".json").write_text(json.dumps(
        {k: v for k, v in payload.items() if k != "pipeline"}, indent=2, ensure_ascii=False), encoding="utf-8")


def load(path: Path) -> TrainedModel:
    """Load a model written by ``save``; ModelError says what is wrong in plain words."""
    if not path.exists():
        raise ModelError(f"no model file at {path} (run `inboxd train`)")
    import joblib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn version notes; the format check below decides
            payload = joblib.load(path)
    except Exception as exc:  # a corrupt or foreign file can fail in many ways inside unpickling
        raise ModelError(f"the model file {path} cannot be read ({type(exc).__name__}): run `inboxd train`") \
            from None
    needed = ("version", "created_at", "labels", "metrics", "pipeline")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or not all(k in payload for k in needed):
        raise ModelError(f"the model file {path} is not an inboxd model of this version: run `inboxd train`")
    return TrainedModel(version=payload["version"], created_at=payload["created_at"], labels=payload["labels"],
                        metrics=payload["metrics"], pipeline=payload["pipeline"],
                        examples=payload.get("examples", 0), corrections=payload.get("corrections", 0))


def read_examples(path: Path) -> list[Example]:
    """Labeled examples from JSONL (subject/body or text, and label) or CSV (text,label)."""
    raw = path.read_text(encoding="utf-8-sig")
    out: list[Example] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(raw))
        fields = {f.lower(): f for f in reader.fieldnames or []}
        text_key = fields.get("text") or fields.get("body") or fields.get("msg")
        label_key = fields.get("label") or fields.get("category") or fields.get("type")
        if not text_key or not label_key:
            raise BadInput(f"{path}: a CSV needs the columns text and label")
        for row in reader:
            out.append(Example(example_text(row.get(fields.get("subject", ""), "") or "", row[text_key] or ""),
                               (row[label_key] or "").strip()))
        return out
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not valid JSON: {exc}") from None
        if not isinstance(item, dict):
            raise BadInput(f"{path}:{number}: each line must be a JSON object with text (or subject/body) and label")
        text = item.get("text") if "text" in item else example_text(item.get("subject", ""), item.get("body", ""))
        out.append(Example(str(text), str(item.get("label", "")).strip()))
    return out


def bundled_examples(directory: Path = BUNDLED_TRAINING) -> list[Example]:
    return [e for path in sorted(directory.glob("*.jsonl")) for e in read_examples(path)]


@dataclass(frozen=True)
class RetrainResult:
    model: TrainedModel | None  # the new model when it should replace the current one
    new_score: float | None
    old_score: float | None
    held_out: int


def retrain(current: TrainedModel | None, base: list[Example], corrections: list[Example]) -> RetrainResult:
    """Train on the base data plus the team's corrections; keep the result only if it is not worse.

    Both models are scored (macro-F1) on the same held-out examples, which include the
    held-out share of the corrections, so the comparison measures what the team taught.
    """
    examples = base + corrections
    candidate = train(examples, corrections=len(corrections))
    holdout = held_out(examples)
    new_score = evaluate(candidate, holdout)["macro_f1"]
    old_score = evaluate(current, holdout)["macro_f1"] if current is not None else None
    better = old_score is None or (new_score is not None and new_score >= old_score)
    return RetrainResult(candidate if better else None, new_score, old_score, len(holdout))
