#!/usr/bin/env python
"""Classification benchmark: quality on public corpora, and speed.

Run from the project root:

    .venv/bin/python bench/bench_classify.py [--model PATH] [--corpus DIR]

1. Model: trains the default model exactly as ``inboxd train`` does without a database
   (``train(bundled_examples())``, i.e. every ``data/training/*.jsonl`` present now) unless
   ``--model`` is given; reports its own held-out accuracy / macro-F1 and the training time.
2. Quality on the corpora in ``../shared/corpus`` (labels mapped with ``bench/label_maps.py``;
   unmapped labels dropped and counted): accuracy and macro-F1 over the categories present in
   the truth, top confusions; plus the full rules + model + ``min_confidence`` path (how many
   mails get a category automatically, and how many of those are right). sms-spam-en is scored
   as a spam detector; zh-cn-waimai-reviews as a complaint-signal check. A missing corpus
   folder is skipped with a message.
3. Speed: ``Classifier.classify`` one message at a time (p50/p99), ``inboxd classify --jsonl``
   as a subprocess on 20,000 lines (lines/s), ``load()`` time (median of 5) and file size.

Prints a summary and writes ``bench/results/classify-<timestamp>.json`` (git-ignored).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(BENCH))

import sklearn
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

from inboxd.cli.triage import BATCH
from inboxd.config import offline_settings
from inboxd.triage.classify import Classifier
from inboxd.triage.language import detect_language
from inboxd.triage.rules import facts_from
from inboxd.triage.train import (
    BUNDLED_TRAINING,
    TrainedModel,
    bundled_examples,
    example_text,
    load,
    save,
    train,
)

import label_maps

Row = tuple[str, str, str]  # (subject, body, truth label)


# ---------------------------------------------------------------- corpus readers

def _cap(rows: list[Row], cap: int, seed: int) -> list[Row]:
    """At most ``cap`` rows, stratified by label (each label keeps its share), fixed seed."""
    if len(rows) <= cap:
        return rows
    rng = random.Random(seed)
    by_label: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_label[row[2]].append(row)
    out: list[Row] = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        out.extend(group[:max(1, round(cap * len(group) / len(rows)))])
    rng.shuffle(out)
    return out[:cap]


def read_banking77(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    rows, dropped = [], Counter()
    for name in ("train.csv", "test.csv"):  # neither was seen by inboxd's model
        with open(folder / name, encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                category = label_maps.BANKING77.get(r["category"])
                if category is None:
                    dropped[r["category"]] += 1
                else:
                    rows.append(("", r["text"], category))
    return rows, {"dropped": sum(dropped.values()), "dropped_labels": len(dropped),
                  "mapped_labels": len(label_maps.BANKING77)}


def read_tickets(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    rows, dropped, seen, languages = [], Counter(), set(), Counter()
    non_english = duplicates = 0
    for path in sorted(folder.glob("*.csv")):
        with open(path, encoding="utf-8", newline="") as f:
            for r in csv.DictReader(f):
                language = (r.get("language") or "").strip()
                languages[language] += 1
                if language != "en" and not language.startswith("zh"):  # English rows (and Chinese, if any)
                    non_english += 1
                    continue
                key = (r["subject"], r["body"])
                if key in seen:  # the files overlap
                    duplicates += 1
                    continue
                seen.add(key)
                body = (r["body"] or "").replace("\\n", "\n")  # the data holds literal "\n"
                category = label_maps.TICKETS.get(r["queue"])
                if category is None:
                    dropped[r["queue"]] += 1
                else:
                    rows.append((r["subject"] or "", body, category))
    return rows, {"dropped": sum(dropped.values()), "dropped_by_label": dict(dropped),
                  "non_english_rows_skipped": non_english, "duplicates_skipped": duplicates,
                  "languages": dict(languages), "zh_rows": sum(v for k, v in languages.items() if k.startswith("zh"))}


def read_cathay(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    data = json.loads((folder / "training_data.json").read_text(encoding="utf-8"))
    examples = data["rasa_nlu_data"]["common_examples"]
    intents: dict[str, set[str]] = defaultdict(set)
    for e in examples:
        intents[e["text"].strip()].add(e["intent"])
    rows, dropped, conflicting = [], Counter(), 0
    for text, its in intents.items():
        mapped = {label_maps.CATHAY.get(i) for i in its}
        if len(its) > 1 and len(mapped) > 1:  # listed under intents that disagree
            conflicting += 1
            continue
        category = mapped.pop()
        if category is None:
            dropped[min(its)] += 1
        else:
            rows.append(("", text, category))
    return rows, {"raw_rows": len(examples), "unique_texts": len(intents), "conflicting_texts_dropped": conflicting,
                  "dropped": sum(dropped.values()) + conflicting, "dropped_unmapped": sum(dropped.values())}


def read_sms(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    rows = []
    with open(folder / "SMSSpamCollection", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            rows.append(("", r["msg"], label_maps.SMS[r["type"].strip()]))
    return rows, {"dropped": 0}


def read_waimai(folder: Path) -> tuple[list[Row], dict[str, Any]]:
    rows = []
    with open(folder / "waimai_10k.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            rows.append(("", r["review"], label_maps.WAIMAI[r["label"].strip()]))
    return rows, {"dropped": 0}


DATASETS = [  # (name, folder, reader, kind)
    ("banking77-en", "banking77-en", read_banking77, "categories"),
    ("tickets-multilang", "tickets-multilang", read_tickets, "categories"),
    ("zh-tw-cathay-bank-intents", "zh-tw-cathay-bank-intents", read_cathay, "categories"),
    ("sms-spam-en", "sms-spam-en", read_sms, "spam"),
    ("zh-cn-waimai-reviews", "zh-cn-waimai-reviews", read_waimai, "complaint-signal"),
]


# ---------------------------------------------------------------- scoring

def full_path(classifier: Classifier, rows: list[Row], guesses: list[tuple[str, float]]) -> list[Any]:
    """Rules + model guess + mood for each row, exactly as ``inboxd classify --jsonl`` decides."""
    out = []
    for (subject, body, _), guess in zip(rows, guesses):
        language = detect_language(f"{subject}\n{body}")
        facts = facts_from(from_addr=None, to=(), cc=(), subject=subject, body=body, language=language,
                           mailbox=(), attachments=(), headers=())
        out.append(classifier.decide(subject=subject, body=body, facts=facts, sender=None, language=language,
                                     guess=guess))
    return out


def score_categories(rows: list[Row], predicted: list[str], decided: list[Any]) -> dict[str, Any]:
    truth = [r[2] for r in rows]
    present = sorted(set(truth))
    per_class = f1_score(truth, predicted, labels=present, average=None, zero_division=0)
    confusions = Counter((t, p) for t, p in zip(truth, predicted) if t != p)
    support = Counter(truth)
    assigned = [(t, c.category) for t, c in zip(truth, decided) if c.category is not None]
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=present, average="macro", zero_division=0)), 4),
        "labels_present": present,
        "support": dict(sorted(support.items())),
        "per_class_f1": {label: round(float(f), 4) for label, f in zip(present, per_class)},
        "predicted_distribution": dict(Counter(predicted).most_common()),
        "top_confusions": [{"true": t, "predicted": p, "n": n, "share_of_true": round(n / support[t], 3)}
                           for (t, p), n in confusions.most_common(6)],
        "full_path": {
            "source": dict(Counter(c.source for c in decided)),
            "auto_assigned_share": round(len(assigned) / len(rows), 4),
            "accuracy_of_auto_assigned": round(sum(t == c for t, c in assigned) / len(assigned), 4) if assigned else None,
        },
    }


def score_spam(rows: list[Row], predicted: list[str], decided: list[Any]) -> dict[str, Any]:
    truth = [r[2] == "spam" for r in rows]

    def prf(pred: list[bool]) -> dict[str, Any]:
        p, r, f, _ = precision_recall_fscore_support(truth, pred, average="binary", pos_label=True, zero_division=0)
        return {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                "flagged": sum(pred)}
    ham_predictions = Counter(p for t, p in zip(truth, predicted) if not t)
    return {"spam": sum(truth), "ham": len(truth) - sum(truth),
            "model": prf([p == "spam" for p in predicted]),  # the model's top category is spam
            "full_path": prf([c.spam for c in decided]),  # Classification.spam: rules, or confident model
            "ham_predicted_as": dict(ham_predictions.most_common())}


def score_complaint(rows: list[Row], predicted: list[str], decided: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for polarity in ("negative", "positive"):
        idx = [i for i, r in enumerate(rows) if r[2] == polarity]
        n = len(idx) or 1
        out[polarity] = {
            "n": len(idx),
            "angry_tag": round(sum("angry" in decided[i].tags for i in idx) / n, 4),
            "model_complaint": round(sum(predicted[i] == "complaint" for i in idx) / n, 4),
            "category_complaint": round(sum(decided[i].category == "complaint" for i in idx) / n, 4),
            "priority_high_or_urgent": round(sum(decided[i].priority in ("high", "urgent") for i in idx) / n, 4),
            "model_top": dict(Counter(predicted[i] for i in idx).most_common(4)),
        }
    return out


# ---------------------------------------------------------------- speed

def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))]


def latency(classifier: Classifier, messages: list[tuple[str, str]]) -> dict[str, Any]:
    """One message at a time: ``classify`` alone, and language detection + facts + classify."""
    for subject, body in messages[:50]:  # warm-up, not recorded
        classifier.classify(subject=subject, body=body, facts=facts_from(
            from_addr=None, to=(), cc=(), subject=subject, body=body, language="en", mailbox=(), attachments=(),
            headers=()), sender=None, language="en")
    only, total = [], []
    clock = time.perf_counter
    for i, (subject, body) in enumerate(messages):
        sender = f"customer{i}@example.com"
        t0 = clock()
        language = detect_language(f"{subject}\n{body}")
        facts = facts_from(from_addr=sender, to=("support@example.com",), cc=(), subject=subject, body=body,
                           language=language, mailbox=("INBOX",), attachments=(), headers=())
        t1 = clock()
        classifier.classify(subject=subject, body=body, facts=facts, sender=sender, language=language)
        t2 = clock()
        only.append((t2 - t1) * 1000)
        total.append((t2 - t0) * 1000)

    def stats(v: list[float]) -> dict[str, float]:
        return {"p50_ms": round(percentile(v, 50), 3), "p90_ms": round(percentile(v, 90), 3),
                "p99_ms": round(percentile(v, 99), 3), "max_ms": round(max(v), 3),
                "mean_ms": round(statistics.fmean(v), 3)}
    return {"messages": len(messages), "classify": stats(only), "with_language_and_facts": stats(total)}


def cli_throughput(model_path: Path, lines: list[dict[str, str]], workdir: Path) -> dict[str, Any]:
    """``python -m inboxd classify --jsonl FILE --rules ROOT/rules`` in a folder without inboxd.toml, so
    the offline defaults apply and ./data/model.joblib (our model) is used. Spawn to exit."""
    (workdir / "data").mkdir(exist_ok=True)
    target = workdir / "data" / "model.joblib"
    if not target.exists():
        target.symlink_to(model_path.resolve())

    def run(items: list[dict[str, str]], name: str) -> tuple[float, int, int, int, str]:
        source = workdir / f"{name}.jsonl"
        source.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
        out = workdir / f"{name}.out"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(out, "wb") as stdout:
            t0 = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "inboxd", "classify", "--jsonl", str(source),
                                   "--rules", str(ROOT / "rules")], cwd=workdir, stdout=stdout,
                                  stderr=subprocess.PIPE, env=env, check=False)
            elapsed = time.perf_counter() - t0
        results = out.read_text(encoding="utf-8").splitlines()
        errors = sum(r.startswith('{"error"') for r in results)
        return elapsed, len(results), errors, done.returncode, done.stderr.decode(errors="replace")[-300:]

    # The input is timed exactly as given (20,000 lines by default, a multiple of the CLI's batch of
    # BATCH lines: an older inboxd crashed on an empty final batch; a failure here is an error).
    startup, _, _, rc1, err1 = run(lines[:1], "one-line")
    elapsed, n_out, errors, rc, err = run(lines, "bulk")
    if rc != 0 or rc1 != 0:
        raise RuntimeError(f"inboxd classify --jsonl exited {rc or rc1}: {err or err1}")
    if n_out != len(lines):
        raise RuntimeError(f"inboxd classify --jsonl wrote {n_out} lines for {len(lines)}")
    with open(workdir / "bulk.out", encoding="utf-8") as f:
        head = [json.loads(next(f)) for _ in range(min(50, n_out))]
    if not any(h.get("model_version") for h in head):
        raise RuntimeError("inboxd classify --jsonl ran without the model")
    return {"lines": len(lines), "multiple_of_batch": len(lines) % BATCH == 0, "batch": BATCH,
            "output_lines": n_out, "error_lines": errors,
            "seconds": round(elapsed, 3), "lines_per_s": round(len(lines) / elapsed, 1),
            "one_line_run_seconds": round(startup, 3),
            "lines_per_s_excluding_startup": round(len(lines) / max(elapsed - startup, 1e-9), 1)}


def load_time(model: TrainedModel, path: Path) -> dict[str, Any]:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        load(path)
        times.append(time.perf_counter() - t0)
    return {"median_s": round(statistics.median(times), 4), "all_s": [round(t, 4) for t in times],
            "file_bytes": path.stat().st_size, "file_mb": round(path.stat().st_size / 1e6, 2)}


# ---------------------------------------------------------------- reporting

def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=False).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "inboxd", "data/training", "rules"],
                                    cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip())
    except OSError:
        commit, dirty = "?", False
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "sklearn": sklearn.__version__, "loadavg_at_start": os.getloadavg()[0], "git_commit": commit,
            "uncommitted_changes_in_inboxd_data_rules": dirty}


def print_summary(report: dict[str, Any]) -> None:
    m = report["model"]
    held = m["held_out"]
    print("\n=== inboxd classification benchmark ===")
    mc = report["machine"]
    print(f"machine: {mc['nproc']} CPU {mc['cpu']}, Python {mc['python']}, scikit-learn {mc['sklearn']}, "
          f"commit {mc['git_commit']}")
    print(f"model {m['version']} ({m['source']}): trained on {m['train_examples']} examples"
          + (f" from {', '.join(m['training_files'])}" if m["training_files"] else "")
          + (f" in {m['train_seconds']:.1f} s" if m.get("train_seconds") is not None else ""))
    print(f"  own held-out set: n={held['n']}  accuracy {held['accuracy']}  macro-F1 {held['macro_f1']}")
    print(f"  min_confidence (config default) {report['min_confidence']}")
    print()
    print(f"{'dataset':<27} {'used':>5} {'dropped':>7} {'acc':>6} {'macroF1':>7}  "
          f"{'auto%':>5} {'acc(auto)':>9}  top confusions (true>pred n)")
    for name, d in report["datasets"].items():
        if d.get("skipped"):
            print(f"{name:<27} skipped: {d['skipped']}")
            continue
        if d["kind"] == "categories":
            s = d["scores"]
            top = ", ".join(f"{c['true']}>{c['predicted']} {c['n']}" for c in s["top_confusions"][:3])
            fp = s["full_path"]
            print(f"{name:<27} {d['used']:>5} {d['dropped']:>7} {s['accuracy']:>6.3f} {s['macro_f1']:>7.3f}  "
                  f"{fp['auto_assigned_share'] * 100:>5.1f} {fp['accuracy_of_auto_assigned'] or 0:>9.3f}  {top}")
        elif d["kind"] == "spam":
            s = d["scores"]
            mm, fp = s["model"], s["full_path"]
            print(f"{name:<27} {d['used']:>5} {d['dropped']:>7}  spam detector: model P {mm['precision']:.3f} "
                  f"R {mm['recall']:.3f} F1 {mm['f1']:.3f} | full path P {fp['precision']:.3f} "
                  f"R {fp['recall']:.3f} F1 {fp['f1']:.3f}  ({s['spam']} spam / {s['ham']} ham)")
        else:
            s = d["scores"]
            neg, pos = s["negative"], s["positive"]
            print(f"{name:<27} {d['used']:>5} {d['dropped']:>7}  complaint signal (negative vs positive): "
                  f"angry {neg['angry_tag']:.1%} vs {pos['angry_tag']:.1%}, model complaint "
                  f"{neg['model_complaint']:.1%} vs {pos['model_complaint']:.1%}, high/urgent "
                  f"{neg['priority_high_or_urgent']:.1%} vs {pos['priority_high_or_urgent']:.1%}")
    sp = report["speed"]
    lat = sp["latency"]
    print()
    print(f"latency, one message at a time ({lat['messages']} msgs): classify() p50 {lat['classify']['p50_ms']:.2f} ms "
          f"p99 {lat['classify']['p99_ms']:.2f} ms; with language + facts p50 "
          f"{lat['with_language_and_facts']['p50_ms']:.2f} ms p99 {lat['with_language_and_facts']['p99_ms']:.2f} ms "
          f"(target < 5 ms)")
    cli = sp["cli_jsonl"]
    if cli.get("error"):
        print(f"inboxd classify --jsonl: failed: {cli['error']}")
    else:
        print(f"inboxd classify --jsonl: {cli['lines']} lines in {cli['seconds']:.2f} s = {cli['lines_per_s']:.0f} lines/s "
              f"(1-line run {cli['one_line_run_seconds']:.2f} s; excluding that {cli['lines_per_s_excluding_startup']:.0f} lines/s)")
    ld = sp["load"]
    print(f"model load(): median {ld['median_s'] * 1000:.0f} ms of 5; file {ld['file_mb']} MB")


# ---------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="Evaluate this saved model instead of training the default one.")
    parser.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus", help="Corpus folder.")
    parser.add_argument("--cap", type=int, default=3000, help="At most this many rows per dataset (default 3000).")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--latency-messages", type=int, default=3000)
    parser.add_argument("--jsonl-lines", type=int, default=20000)
    parser.add_argument("--out", type=Path, help="JSON output (default bench/results/classify-<timestamp>.json).")
    args = parser.parse_args()

    started = datetime.now()
    report: dict[str, Any] = {"started": started.isoformat(timespec="seconds"), "machine": machine_info(),
                              "args": {k: str(v) for k, v in vars(args).items()}}
    workdir = Path(tempfile.mkdtemp(prefix="inboxd-bench-classify-"))

    # 1. the model
    training_files = sorted(p.name for p in BUNDLED_TRAINING.glob("*.jsonl"))
    if args.model:
        model = load(args.model)
        model_path, train_seconds, source = args.model, None, f"loaded from {args.model}"
    else:
        examples = bundled_examples()
        t0 = time.perf_counter()
        model = train(examples)
        train_seconds = time.perf_counter() - t0
        model_path, source = workdir / "model.joblib", "train(bundled_examples())"
        save(model, model_path)
        print(f"trained on {len(examples)} examples from {', '.join(training_files)} in {train_seconds:.1f} s",
              flush=True)
    held = model.metrics.get("held_out", {})
    report["model"] = {"version": model.version, "source": source, "training_files": training_files if not args.model
                       else [], "train_seconds": train_seconds, "train_examples": model.examples,
                       "held_out": {k: held.get(k) for k in ("n", "accuracy", "macro_f1", "per_class_f1")}}

    min_confidence = offline_settings(workdir).classify.min_confidence
    report["min_confidence"] = min_confidence
    classifier = Classifier(rules_dir=ROOT / "rules", model_path=None, min_confidence=min_confidence)
    classifier.swap_model(model)

    # 2. quality
    report["datasets"] = {}
    pools: dict[str, list[Row]] = {}
    for name, folder_name, reader, kind in DATASETS:
        folder = args.corpus / folder_name
        if not folder.is_dir():
            print(f"skip {name}: {folder} not found", flush=True)
            report["datasets"][name] = {"kind": kind, "skipped": f"{folder} not found"}
            continue
        t0 = time.perf_counter()
        rows, info = reader(folder)
        pools[name] = rows
        used = _cap(rows, args.cap, args.seed)
        texts = [example_text(s, b) for s, b, _ in used]
        guesses = model.predict(texts)
        predicted = [g[0] for g in guesses]
        decided = full_path(classifier, used, guesses)
        scorer = {"categories": score_categories, "spam": score_spam, "complaint-signal": score_complaint}[kind]
        report["datasets"][name] = {"kind": kind, "available_after_mapping": len(rows), "used": len(used),
                                    "capped": len(rows) - len(used), **info,
                                    "scores": scorer(used, predicted, decided),
                                    "seconds": round(time.perf_counter() - t0, 2)}
        print(f"{name}: {len(used)} rows scored ({info['dropped']} dropped by the mapping)", flush=True)

    # 3. speed: messages from every corpus that is present, round-robin, so languages mix
    rng = random.Random(args.seed)
    mixed: list[tuple[str, str]] = []
    sources = [[(s, b) for s, b, _ in rows] for rows in pools.values() if rows]
    for pool in sources:
        rng.shuffle(pool)
    i = 0
    while sources and len(mixed) < max(args.latency_messages, args.jsonl_lines):
        pool = sources[i % len(sources)]
        mixed.append(pool[(i // len(sources)) % len(pool)])
        i += 1
    if not mixed:  # no corpus at all: the bundled training mail stands in
        mixed = [(e.text, "") for e in bundled_examples()] or [("Hello", "where is my order?")]
        mixed = (mixed * (max(args.latency_messages, args.jsonl_lines) // len(mixed) + 1))
    speed: dict[str, Any] = {"latency": latency(classifier, mixed[:args.latency_messages])}
    print("latency measured", flush=True)
    lines = [{"subject": s, "body": b, "from": f"customer{n}@example.com"}
             for n, (s, b) in enumerate(mixed[:args.jsonl_lines])]
    try:
        speed["cli_jsonl"] = cli_throughput(model_path, lines, workdir)
    except (RuntimeError, OSError) as exc:
        speed["cli_jsonl"] = {"error": str(exc)}
    print("inboxd classify --jsonl timed", flush=True)
    speed["load"] = load_time(model, model_path)
    report["speed"] = speed
    report["finished"] = datetime.now().isoformat(timespec="seconds")

    print_summary(report)
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"classify-{started:%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"\nwritten to {out}")
    shutil.rmtree(workdir)  # our own temporary folder (the model symlink is removed, not followed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
