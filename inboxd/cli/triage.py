"""Commands for triage: ``classify``, ``train`` and ``eval``.

They work without a mail server, and without a configuration file too (then
``./rules`` and ``./data/model.joblib`` are used), so a team lead can try a rule
or a model on saved mail before the daemon runs it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import click

from inboxd.app import classifier_for
from inboxd.config import (
    ClassifySettings,
    ConfigError,
    Settings,
    load_settings,
    offline_settings,
)
from inboxd.errors import BadInput
from inboxd.log import setup_logging
from inboxd.store.sqlite import Store
from inboxd.triage.classify import NEEDS_TRIAGE, Classification, Classifier
from inboxd.triage.language import detect_language
from inboxd.triage.parse import parse_message
from inboxd.triage.rules import facts_from
from inboxd.triage.train import (
    BUNDLED_TRAINING,
    Example,
    ModelError,
    evaluate,
    example_text,
    load,
    read_examples,
    save,
    train,
)

BATCH = 2000


def config_or_defaults(ctx: click.Context) -> tuple[bool, Settings]:
    """(True, the configuration) or, when no file was asked for and ./inboxd.toml is absent,
    (False, defaults relative to the current folder: ./rules, ./agents.toml, ./data/model.joblib)."""
    path = ctx.obj["config"]
    source = ctx.find_root().get_parameter_source("config")
    if not path.exists() and source is click.core.ParameterSource.DEFAULT:
        return False, offline_settings(Path.cwd())
    try:
        return True, load_settings(path, secrets=False)
    except ConfigError as exc:
        click.echo(f"Configuration error: {exc}", err=True)
        sys.exit(2)


def _config(ctx: click.Context) -> tuple[Settings | None, ClassifySettings]:
    configured, settings = config_or_defaults(ctx)
    return (settings if configured else None), settings.classify


def _classifier(ctx: click.Context, rules: Path | None = None) -> Classifier:
    _, c = _config(ctx)
    setup_logging("error")
    classifier = classifier_for(c, rules)
    if classifier.rule_errors:
        for problem in classifier.rule_errors:
            click.echo(problem, err=True)
        sys.exit(2)
    if classifier.model is None:
        click.echo(f"Note: no model at {c.model}; classifying with rules only (run `inboxd train`).", err=True)
    return classifier


def _explain(c: Classification) -> dict[str, Any]:
    data = asdict(c)
    data["tags"] = list(c.tags)
    return data


def print_classification(name: str, c: Classification) -> None:
    category = c.category or f"(none: tagged {NEEDS_TRIAGE})"
    how = {"rule": "set by a rule", "model": f"model, confidence {c.confidence:.2f}" if c.confidence else "model",
           "none": "model not confident enough" if c.model_guess else "no rule and no model"}[c.source]
    click.echo(f"{name}\n  category:  {category} ({how})")
    if c.model_guess and c.source != "model":
        click.echo(f"  model:     {c.model_guess[0]} ({c.model_guess[1]:.2f})")
    click.echo(f"  priority:  {c.priority}" + (f"  ({'; '.join(c.signals)})" if c.signals else ""))
    click.echo(f"  tags:      {', '.join(c.tags) or '-'}")
    click.echo(f"  language:  {c.language}   spam: {'yes' if c.spam else 'no'}   "
               f"acknowledge: {'yes' if c.acknowledge else 'no'}")
    click.echo(f"  rules:     {', '.join(c.rules_fired) or 'none fired'}")


@click.command()
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--jsonl", type=click.File("r", encoding="utf-8"),
              help="Classify one JSON object per line ({subject, body, from}); '-' reads standard input.")
@click.option("--rules", "rules_dir", type=click.Path(path_type=Path, file_okay=False), help="Use these rules.")
@click.pass_context
def classify(ctx: click.Context, files: tuple[Path, ...], as_json: bool, jsonl: IO[str] | None,
             rules_dir: Path | None) -> None:
    """Show how saved emails (.eml files) would be classified, and which rules fired."""
    classifier = _classifier(ctx, rules_dir)
    if jsonl is not None:
        _classify_jsonl(classifier, jsonl)
        return
    if not files:
        raise click.UsageError("give one or more .eml files, or --jsonl PATH")
    results = []
    for path in files:
        parsed = parse_message(path.read_bytes())
        language = detect_language(f"{parsed.subject}\n{parsed.text}", parsed.charset_used)
        facts = facts_from(from_addr=parsed.from_addr, to=parsed.to, cc=parsed.cc, subject=parsed.subject,
                           body=parsed.text, language=language, mailbox=(),
                           attachments=[(a.filename, a.content_type) for a in parsed.attachments],
                           headers=parsed.headers)
        c = classifier.classify(subject=parsed.subject, body=parsed.text, facts=facts, sender=parsed.from_addr,
                                language=language)
        results.append({"file": str(path), **_explain(c)})
        if not as_json:
            print_classification(str(path), c)
    if as_json:
        click.echo(json.dumps(results if len(results) > 1 else results[0], ensure_ascii=False, indent=2))


def _classify_jsonl(classifier: Classifier, source: IO[str]) -> None:
    """Stream in, stream out, in batches: tens of thousands of lines stay fast and small."""
    out = sys.stdout
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if not batch:
            return
        texts = [example_text(str(i.get("subject", "")), str(i.get("body", ""))) for i in batch]
        for item, guess in zip(batch, classifier.guesses(texts)):
            if "error" in item:
                out.write(json.dumps({"error": item["error"]}, ensure_ascii=False) + "\n")
                continue
            subject, body, sender = str(item.get("subject", "")), str(item.get("body", "")), item.get("from")
            language = detect_language(f"{subject}\n{body}")
            facts = facts_from(from_addr=sender, to=(), cc=(), subject=subject, body=body, language=language,
                               mailbox=(), attachments=(), headers=())
            c = classifier.decide(subject=subject, body=body, facts=facts, sender=sender, language=language,
                                  guess=guess)
            out.write(json.dumps({k: v for k, v in _explain(c).items() if k != "signals"},
                                 ensure_ascii=False) + "\n")
        batch.clear()

    for number, line in enumerate(source, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise BadInput("not a JSON object")
        except ValueError as exc:
            item = {"error": f"line {number}: {exc}"}
        batch.append(item)
        if len(batch) >= BATCH:
            flush()
    flush()


@click.command("train")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, path_type=Path),
              help=f"Training files (.jsonl or .csv) or folders; default: {BUNDLED_TRAINING}.")
@click.option("--output", type=click.Path(path_type=Path), help="Model file (default: [classify] model).")
@click.pass_context
def train_command(ctx: click.Context, data: tuple[Path, ...], output: Path | None) -> None:
    """Build the category model from the training data and the team's corrections."""
    settings, c = _config(ctx)
    examples: list[Example] = []
    for source in data or (BUNDLED_TRAINING,):
        files = sorted([*source.glob("*.jsonl"), *source.glob("*.csv")]) if source.is_dir() else [source]
        for path in files:
            try:
                examples.extend(read_examples(path))
            except ValueError as exc:
                click.echo(str(exc), err=True)
                sys.exit(2)
    corrections = _corrections(settings)
    click.echo(f"Training on {len(examples)} examples and {len(corrections)} corrections...")
    try:
        model = train(examples + corrections, corrections=len(corrections))
    except ValueError as exc:
        click.echo(f"Cannot train: {exc}", err=True)
        sys.exit(2)
    target = output or c.model
    save(model, target)
    held = model.metrics["held_out"]
    click.echo(f"Model {model.version} written to {target}")
    click.echo(f"Held-out evaluation ({held['n']} examples): accuracy {held['accuracy']}, "
               f"macro-F1 {held['macro_f1']}")


def _corrections(settings: Settings | None) -> list[Example]:
    if settings is None or not settings.database.exists():
        return []
    store = Store(settings.database)
    try:
        return [Example(text, label) for text, label in store.category_corrections()]
    finally:
        store.close()


@click.command("eval")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def eval_command(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Measure the classifier on a labeled file (CSV or JSONL with text and label)."""
    _, c = _config(ctx)
    try:
        examples = [e for e in read_examples(file) if e.label]
        model = load(c.model)
    except (ValueError, ModelError) as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    if not examples:
        click.echo(f"{file}: no labeled examples (each needs a text and a label)", err=True)
        sys.exit(2)
    metrics = evaluate(model, examples)
    if as_json:
        click.echo(json.dumps(metrics, ensure_ascii=False, indent=2))
        return
    click.echo(f"{file}: {metrics['n']} examples, model {model.version}")
    click.echo(f"accuracy {metrics['accuracy']}   macro-F1 {metrics['macro_f1']}\n")
    labels = metrics["labels"]
    width = max(len(label) for label in labels) + 1
    click.echo("confusion matrix (rows: true label, columns: predicted)")
    click.echo(" " * width + " ".join(f"{label[:6]:>6}" for label in labels) + "   F1")
    for label, row in zip(labels, metrics["confusion"]):
        click.echo(f"{label:<{width}}" + " ".join(f"{n:>6}" for n in row)
                   + f"   {metrics['per_class_f1'][label]:.2f}")
