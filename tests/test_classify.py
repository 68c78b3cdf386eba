"""The category model, the classifier (rules + model + mood), corrections and retraining,
and the triage commands ``train``, ``classify`` and ``eval``."""

from __future__ import annotations

import json
import pickle
import shutil
import textwrap
from collections import Counter
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import joblib
import pytest
from click.testing import CliRunner

from inboxd.cli.main import main
from inboxd.config import load_settings
from inboxd.daemon import Daemon
from inboxd.store.sqlite import Store
from inboxd.triage.classify import NEEDS_TRIAGE, SPAM_CONFIDENCE, Classifier
from inboxd.triage.language import detect_language
from inboxd.triage.mood import assess
from inboxd.triage.rules import CATEGORIES, facts_from
from inboxd.triage.train import (
    Example,
    ModelError,
    TrainedModel,
    evaluate,
    example_text,
    held_out,
    is_held_out,
    load,
    read_examples,
    retrain,
    save,
    train,
)

from helpers import MINIMAL_CONFIG

ROOT = Path(__file__).resolve().parents[1]
SMALL = Path(__file__).resolve().parent / "fixtures" / "training" / "small.jsonl"
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

# Clear new mail the model has not seen, per language: (text, category, language)
PROBES = [
    ("My password reset link does not work and I cannot log in to my account", "account", "en"),
    ("我的帳號登入不了，密碼重設信沒有收到", "account", "zh-Hant"),
    ("账号登录不了，密码重置邮件收不到", "account", "zh-Hans"),
    ("I was charged twice on my credit card for the subscription", "billing", "en"),
    ("信用卡被重複扣款，帳單金額有問題", "billing", "zh-Hant"),
    ("信用卡被重复扣款，账单有问题", "billing", "zh-Hans"),
    ("Please refund my order, I returned it", "refund", "en"),
    ("我要申請退款，商品已經寄回", "refund", "zh-Hant"),
    ("我要申请退款，商品已经寄回", "refund", "zh-Hans"),
    ("My parcel has not arrived and the tracking number has no update", "shipping", "en"),
    ("包裹還沒送到，物流追蹤沒有更新", "shipping", "zh-Hant"),
    ("快递还没送到，物流单号没有更新", "shipping", "zh-Hans"),
    ("The app keeps crashing with an error after the update", "technical", "en"),
    ("App 更新後一直閃退出現錯誤", "technical", "zh-Hant"),
    ("App 更新后一直闪退报错", "technical", "zh-Hans"),
    ("Does this jacket come in a bigger size? What material?", "product", "en"),
    ("請問這個商品有其他尺寸嗎？什麼時候補貨？", "product", "zh-Hant"),
    ("I want to complain about your rude customer service", "complaint", "en"),
    ("我要投訴客服態度很差", "complaint", "zh-Hant"),
    ("我要投诉客服态度很差", "complaint", "zh-Hans"),
    ("Thanks, your team was really helpful, great service", "feedback", "en"),
    ("謝謝你們，客服很親切", "feedback", "zh-Hant"),
    ("Cheap SEO services and backlinks to rank your site on Google", "spam", "en"),
    ("恭喜中獎，點擊連結領取免費 iPhone", "spam", "zh-Hant"),
    ("恭喜中奖，点击链接领取免费 iPhone", "spam", "zh-Hans"),
]


def facts(subject: str = "", body: str = "", sender: str | None = "mei@customer.example",
          language: str = "en") -> Any:
    return facts_from(from_addr=sender, to=["support@example.com"], cc=[], subject=subject, body=body,
                      language=language, attachments=[], mailbox=["INBOX"], headers=[])


def run(c: Classifier, subject: str, body: str = "", *, sender: str | None = "mei@customer.example",
        unanswered: int = 1) -> Any:
    return c.classify(subject=subject, body=body, facts=facts(subject, body, sender), sender=sender,
                      language=detect_language(f"{subject}\n{body}"), unanswered=unanswered)


def write_rules(directory: Path, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "10-test.toml").write_text(textwrap.dedent(text), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def examples() -> list[Example]:
    return read_examples(SMALL)


@pytest.fixture(scope="module")
def model(examples: list[Example]) -> TrainedModel:
    return train(examples)


@pytest.fixture(scope="module")
def model_file(model: TrainedModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.joblib"
    save(model, path)
    return path


# --- the training fixture and the model ----------------------------------------------------


def test_fixture_covers_every_category_in_three_languages(examples: list[Example]) -> None:
    counts = Counter(e.label for e in examples)
    assert set(counts) == set(CATEGORIES)
    assert all(10 <= n <= 14 for n in counts.values()), counts
    for category in CATEGORIES:
        langs = Counter(detect_language(e.text) for e in examples if e.label == category)
        assert {"en", "zh-Hant", "zh-Hans"} <= set(langs), (category, langs)
    assert len({e.text for e in examples}) == len(examples)  # no duplicates
    assert 0 < len(held_out(examples)) < len(examples) // 2


def test_model_predicts_clear_new_mail(model: TrainedModel) -> None:
    guesses = model.predict([text for text, _, _ in PROBES])
    right = [g[0] == label for g, (_, label, _) in zip(guesses, PROBES)]
    assert sum(right) / len(right) >= 0.8, [(t, g) for (t, _, _), g, ok in zip(PROBES, guesses, right) if not ok]
    for language in ("en", "zh-Hant", "zh-Hans"):
        mine = [ok for ok, (_, _, lang) in zip(right, PROBES) if lang == language]
        assert sum(mine) / len(mine) >= 0.7, language
    assert all(0.0 <= p <= 1.0 for _, p in guesses)
    assert all(label in CATEGORIES for label, _ in guesses)


def test_probabilities_and_metrics(model: TrainedModel, examples: list[Example]) -> None:
    probabilities = model.pipeline.predict_proba([t for t, _, _ in PROBES])
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    assert abs(probabilities.sum(axis=1) - 1).max() < 1e-6
    assert model.labels == sorted(CATEGORIES)
    held = model.metrics["held_out"]
    assert held["n"] == len(held_out(examples))
    assert 0.5 <= held["accuracy"] <= 1 and 0.4 <= held["macro_f1"] <= 1
    labels = held["labels"]
    assert len(held["confusion"]) == len(labels) and all(len(row) == len(labels) for row in held["confusion"])
    assert sum(map(sum, held["confusion"])) == held["n"]
    assert set(held["per_class_f1"]) == set(labels)
    assert model.metrics["train_examples"] == model.examples == len(examples) - held["n"]
    assert model.corrections == 0 and model.version and model.created_at


def test_evaluate_directly(model: TrainedModel, examples: list[Example]) -> None:
    assert evaluate(model, []) == {"n": 0, "accuracy": None, "macro_f1": None, "per_class_f1": {}, "labels": [],
                                   "confusion": []}
    train_side = [e for e in examples if not is_held_out(e.text)]
    metrics = evaluate(model, train_side)
    assert metrics["n"] == len(train_side) and metrics["accuracy"] >= 0.9  # it has seen these
    assert evaluate(model.pipeline, train_side)["accuracy"] == metrics["accuracy"]  # a bare pipeline works too


def test_train_rejects_bad_data_and_handles_tiny_sets() -> None:
    with pytest.raises(ValueError, match="unknown categories.*refunds"):
        train([Example("a", "refunds"), Example("b", "billing")])
    with pytest.raises(ValueError, match="at least two categories"):
        train([Example(f"refund please {i}", "refund") for i in range(10)])
    tiny = [Example(f"refund my money {i}", "refund") for i in range(4)] + \
           [Example(f"where is my parcel {i}", "shipping") for i in range(4)]
    m = train(tiny)  # too few to calibrate by cross-validation: logistic regression
    [(label, p)] = m.predict(["please refund my money"])
    assert label == "refund" and 0.5 < p <= 1


def test_example_text_and_held_out_are_stable() -> None:
    assert example_text("Subject", "Body") == "Subject\nBody"
    assert len(example_text("s", "x" * 10_000)) == 4000
    texts = [f"mail number {i}" for i in range(500)]
    share = sum(map(is_held_out, texts)) / len(texts)
    assert 0.1 < share < 0.3
    assert [is_held_out(t) for t in texts] == [is_held_out(t) for t in texts]


# --- reading training files ------------------------------------------------------------------


def test_read_examples_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text('{"subject": "Refund", "body": "money back", "label": " refund "}\n\n'
                     '{"text": "where is it", "label": "shipping"}\n{"body": "only a body"}\n', encoding="utf-8")
    assert read_examples(jsonl) == [Example("Refund\nmoney back", "refund"), Example("where is it", "shipping"),
                                    Example("\nonly a body", "")]
    csv = tmp_path / "x.csv"
    csv.write_text("\ufeffSubject,Text,Label\nHi,please refund,refund\n,包裹在哪,shipping\n", encoding="utf-8")
    assert read_examples(csv) == [Example("Hi\nplease refund", "refund"), Example("\n包裹在哪", "shipping")]
    other = tmp_path / "y.csv"
    other.write_text("body,category\nhello,feedback\n", encoding="utf-8")
    assert read_examples(other) == [Example("\nhello", "feedback")]
    (tmp_path / "bad.csv").write_text("message,kind\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="text and label"):
        read_examples(tmp_path / "bad.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "a", "label": "refund"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: not valid JSON"):
        read_examples(tmp_path / "bad.jsonl")


def test_read_examples_rejects_non_object_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text('{"text": "a", "label": "refund"}\n["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.jsonl:2"):
        read_examples(path)


# --- save and load -----------------------------------------------------------------------------


def test_save_load_round_trip(model: TrainedModel, model_file: Path) -> None:
    loaded = load(model_file)
    texts = [t for t, _, _ in PROBES]
    assert loaded.predict(texts) == model.predict(texts)
    assert (loaded.version, loaded.labels, loaded.metrics, loaded.examples, loaded.corrections) == \
           (model.version, model.labels, model.metrics, model.examples, model.corrections)
    sidecar = json.loads(model_file.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["version"] == model.version and sidecar["format"] == 1
    assert sidecar["metrics"]["held_out"]["macro_f1"] == model.metrics["held_out"]["macro_f1"]
    assert "pipeline" not in sidecar
    assert sorted(p.name for p in model_file.parent.iterdir()) == ["model.joblib", "model.json"]  # no temp files


def test_save_replaces_and_creates_folders(model: TrainedModel, tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "model.joblib"
    save(model, path)
    path.write_bytes(b"old junk")
    save(model, path)  # overwrites atomically
    assert load(path).version == model.version
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.joblib", "model.json"]


def corrupt_files(model_file: Path, directory: Path) -> dict[str, Path]:
    files = {}
    files["random"] = directory / "random.joblib"
    files["random"].write_bytes(bytes(range(256)) * 40)
    files["empty"] = directory / "empty.joblib"
    files["empty"].write_bytes(b"")
    data = model_file.read_bytes()
    files["truncated"] = directory / "truncated.joblib"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["list"] = directory / "list.joblib"
    joblib.dump(["not", "a", "model"], files["list"])
    files["old-format"] = directory / "old.joblib"
    with open(files["old-format"], "wb") as handle:
        pickle.dump({"format": 0, "version": "x"}, handle)
    files["text"] = directory / "text.joblib"
    files["text"].write_text("version = 1\n", encoding="utf-8")
    return files


def test_load_missing_or_corrupt_raises_model_error(model_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model file"):
        load(tmp_path / "missing.joblib")
    for name, path in corrupt_files(model_file, tmp_path).items():
        with pytest.raises(ModelError, match="inboxd train"):
            load(path)


def test_load_incomplete_payload_raises_model_error(tmp_path: Path) -> None:
    path = tmp_path / "partial.joblib"
    joblib.dump({"format": 1, "labels": ["refund"]}, path)
    with pytest.raises(ModelError):
        load(path)


def test_classifier_with_corrupt_model_falls_back_to_rules(model_file: Path, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", """\
        [[rule]]
        name = "refunds"
        when.subject = "refund"
        then.category = "refund"
        """)
    for name, path in [*corrupt_files(model_file, tmp_path).items(), ("missing", tmp_path / "none.joblib")]:
        c = Classifier(rules_dir=rules, model_path=path, min_confidence=0.5)
        assert c.model is None, name
        r = run(c, "Refund please", "I sent it back")
        assert (r.category, r.source, r.model_guess, r.model_version) == ("refund", "rule", None, None)
        r = run(c, "Where is my parcel", "no update")
        assert r.category is None and r.source == "none" and r.confidence is None
        assert NEEDS_TRIAGE in r.tags and r.acknowledge is True


# --- the classifier: rules first, then the model --------------------------------------------


def test_model_classifies_when_no_rule_fires(model_file: Path) -> None:
    c = Classifier(rules_dir=None, model_path=model_file, min_confidence=0.3)
    r = run(c, "Refund request", "Please refund my order, I returned it")
    assert r.category == "refund" and r.source == "model" and 0.3 <= r.confidence <= 1
    assert r.model_guess == ("refund", r.confidence) and r.model_version == c.model.version
    assert NEEDS_TRIAGE not in r.tags and r.rules_fired == ()
    texts = [example_text("Refund request", "Please refund my order, I returned it"), "包裹還沒送到，物流追蹤沒有更新"]
    assert c.guesses(texts) == [c.guesses([t])[0] for t in texts]  # batching changes nothing


def test_rule_category_wins_over_model(model_file: Path, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", """\
        [[rule]]
        name = "Angry refunds are complaints"
        when.body = "refund"
        then.category = "complaint"
        then.tags = ["escalate"]
        """)
    c = Classifier(rules_dir=rules, model_path=model_file, min_confidence=0.0)
    r = run(c, "Refund request", "Please refund my order, I returned it")
    assert (r.category, r.source, r.confidence) == ("complaint", "rule", None)
    assert r.model_guess is not None and r.model_guess[0] == "refund"  # still reported
    assert r.rules_fired == ("Angry refunds are complaints",) and r.tags[0] == "escalate"
    assert NEEDS_TRIAGE not in r.tags


def test_low_confidence_is_needs_triage(model_file: Path) -> None:
    c = Classifier(rules_dir=None, model_path=model_file, min_confidence=0.99)
    r = run(c, "Refund request", "Please refund my order, I returned it")
    assert r.category is None and r.source == "none" and NEEDS_TRIAGE in r.tags
    assert r.model_guess is not None and r.model_guess[0] == "refund" and r.model_guess[1] < 0.99
    assert r.confidence == r.model_guess[1]
    assert r.spam is False and r.acknowledge is True


def test_spam_category_suppresses_acknowledgement(model_file: Path, tmp_path: Path) -> None:
    c = Classifier(rules_dir=None, model_path=model_file, min_confidence=0.5)
    r = run(c, "恭喜您中獎了", "恭喜中獎，點擊連結領取免費 iPhone")
    assert r.category == "spam" and r.source == "model"
    if (r.confidence or 0) >= SPAM_CONFIDENCE:  # only a very confident model may withhold the acknowledgement
        assert r.spam is True and r.acknowledge is False
    else:
        assert r.spam is False and r.acknowledge is True and "possible-spam" in r.tags
    # and a rule that only sets spam = true without a category
    rules = write_rules(tmp_path / "rules", """\
        [[rule]]
        name = "crypto"
        when.body.word = "bitcoin"
        then.spam = true
        """)
    c = Classifier(rules_dir=rules, model_path=None, min_confidence=0.5)
    r = run(c, "Opportunity", "double your bitcoin")
    assert r.spam is True and r.acknowledge is False and r.category is None


def test_shipped_rules_with_the_model(model_file: Path) -> None:
    c = Classifier(rules_dir=ROOT / "rules", model_path=model_file, min_confidence=0.5)
    r = run(c, "My account was hacked", "Someone changed my password")
    assert (r.category, r.priority, r.source) == ("account", "urgent", "rule") and "security" in r.tags
    r = run(c, "Link building", "We sell backlinks for your site")
    assert r.category == "spam" and r.spam and not r.acknowledge
    r = run(c, "請開立發票", "我要申請退款，商品已經寄回，也請開發票")
    assert "invoice" in r.tags and r.rules_fired == ("Invoices and receipts",)


def test_needs_triage_tag_is_not_duplicated(tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "rules", """\
        [[rule]]
        name = "manual"
        when.subject = "contract"
        then.tags = ["needs-triage"]
        """)
    r = run(Classifier(rules_dir=rules, model_path=None, min_confidence=0.5), "contract question")
    assert r.tags.count(NEEDS_TRIAGE) == 1


# --- mood: priority and anger ----------------------------------------------------------------

NO_VIP: frozenset[str] = frozenset()


@pytest.mark.parametrize("subject, body", [
    ("URGENT: cannot pay", "please help"),
    ("help", "I need this fixed as soon as possible"),
    ("緊急：系統無法登入", "請協助"),
    ("紧急：系统无法登录", "请协助"),
    ("【急】訂單問題", ""),
])
def test_urgent_words(subject: str, body: str) -> None:
    m = assess(subject, body, sender="a@b.test", vip=NO_VIP)
    assert m.priority == "high" and m.tags == ("urgent",) and "urgency words" in m.signals


@pytest.mark.parametrize("subject, body, signal", [
    ("Complaint", "I will report this to consumer protection", "anger signal"),
    ("Order", "This is unacceptable", "anger signal"),
    ("訂單", "再不處理我就去消保會", "anger signal"),
    ("订单", "再不处理我就打12315", "anger signal"),
    ("订单", "我要投诉你们", "anger signal"),
    ("Order", "WHY HAS NOBODY ANSWERED MY EMAIL YET", "writing in capitals"),
    ("Order", "Where is my order!!!", "many exclamation marks"),
    ("訂單", "到底什麼時候出貨！！！", "many exclamation marks"),
])
def test_anger(subject: str, body: str, signal: str) -> None:
    m = assess(subject, body, sender="a@b.test", vip=NO_VIP)
    assert "angry" in m.tags and m.priority == "high"
    assert any(signal in s for s in m.signals), m.signals


@pytest.mark.parametrize("subject, body", [
    ("Question", "Could you tell me the opening hours? Thanks!"),
    ("Order ABC123", "I bought the NASA poster from the USA shop"),
    ("訂單", "請問什麼時候出貨？謝謝！"),
])
def test_calm_mail_is_normal(subject: str, body: str) -> None:
    m = assess(subject, body, sender="a@b.test", vip=NO_VIP)
    assert m.priority == "normal" and m.tags == () and m.signals == ()


@pytest.mark.parametrize("subject, body", [
    ("URGENT!!!", "This is unacceptable"),  # urgency + two anger signals
    ("緊急！！！", "我要去消保會投訴"),
    ("Order", "Unacceptable. I will call my lawyer and do a chargeback."),  # three anger signals
])
def test_combined_signals_are_urgent(subject: str, body: str) -> None:
    m = assess(subject, body, sender="a@b.test", vip=NO_VIP)
    assert m.priority == "urgent" and "angry" in m.tags


def test_unanswered_follow_ups_raise_priority() -> None:
    assert assess("Any update?", "", sender="a@b.test", vip=NO_VIP, unanswered=2).priority == "normal"
    m = assess("Any update?", "", sender="a@b.test", vip=NO_VIP, unanswered=3)
    assert m.priority == "high" and any("follow-up number 3" in s for s in m.signals)
    assert assess("URGENT!!!", "", sender="a@b.test", vip=NO_VIP, unanswered=4).priority == "urgent"


def test_vip_sender_and_domain() -> None:
    vip = frozenset({"ceo@bigcorp.example", "partner.example"})
    for sender in ("ceo@bigcorp.example", "CEO@BigCorp.example", "anyone@partner.example"):
        m = assess("Hello", "a question", sender=sender, vip=vip)
        assert m.tags == ("vip",) and m.priority == "high" and "VIP sender" in m.signals, sender
    for sender in ("cfo@bigcorp.example", "a@sub.partner.example.evil", None):
        assert assess("Hello", "a question", sender=sender, vip=vip).tags == ()
    m = assess("URGENT!!!", "This is unacceptable", sender="ceo@bigcorp.example", vip=vip)
    assert m.priority == "urgent" and set(m.tags) == {"urgent", "angry", "vip"}  # never lowered


def test_mood_in_classification(tmp_path: Path) -> None:
    c = Classifier(rules_dir=None, model_path=None, min_confidence=0.5,
                   vip=frozenset({"boss@bigcorp.example"}))
    r = run(c, "緊急", "請盡快處理", sender="boss@bigcorp.example")
    assert r.priority == "high" and r.tags == (NEEDS_TRIAGE, "urgent", "vip")
    assert "VIP sender" in r.signals
    r = run(c, "Any update?", "", unanswered=3)
    assert r.priority == "high" and "angry" in r.tags
    # an admin's rule priority overrides the heuristics, tags are kept
    rules = write_rules(tmp_path / "rules", """\
        [[rule]]
        name = "newsletters are low"
        when.from.domain = "news.example"
        then.priority = "low"
        """)
    c = Classifier(rules_dir=rules, model_path=None, min_confidence=0.5)
    r = run(c, "URGENT SALE!!!", "Act now", sender="deals@news.example")
    assert r.priority == "low" and "urgent" in r.tags


# --- corrections and retraining -------------------------------------------------------------


def add_ticket(store: Store, subject: str, body: str, when: datetime = NOW) -> str:
    ticket = store.create_ticket("SUP", subject=subject, requester="mei@customer.example", requester_name="Mei",
                                 language="en", now=when)
    store.add_message(ticket, direction="in", kind="customer", now=when, subject=subject, body=body,
                      from_addr="mei@customer.example")
    store.add_message(ticket, direction="out", kind="ack", now=when, subject=f"[{ticket}] {subject}",
                      body="We received your mail", from_addr="support@example.com")
    store.add_message(ticket, direction="in", kind="customer", now=when + timedelta(hours=1), subject="Re",
                      body="any news?", from_addr="mei@customer.example")
    return ticket


def test_corrections_are_recorded(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    try:
        t1 = add_ticket(store, "Refund please", "I sent the shoes back")
        t2 = add_ticket(store, "包裹在哪", "物流沒有更新")
        store.set_category(t1, "billing", "agent@example.com", NOW)
        store.set_category(t1, "refund", "lead@example.com", NOW + timedelta(minutes=5))
        store.set_category(t2, "shipping", "agent@example.com", NOW)
        store.tag(t1, "vip", "agent@example.com", NOW)
        store.tag(t1, "vip", "agent@example.com", NOW, remove=True)

        ticket = store.ticket(t1)
        assert ticket["category"] == "refund" and ticket["confidence"] is None
        assert store.tags(t1) == []
        rows = store.query("SELECT ticket_id, text, field, old_value, new_value, actor FROM corrections ORDER BY id")
        assert [(r["ticket_id"], r["field"], r["old_value"], r["new_value"], r["actor"]) for r in rows] == [
            (t1, "category", None, "billing", "agent@example.com"),
            (t1, "category", "billing", "refund", "lead@example.com"),
            (t2, "category", None, "shipping", "agent@example.com"),
            (t1, "tag", None, "vip", "agent@example.com"),
            (t1, "tag", "vip", None, "agent@example.com"),
        ]
        assert all(r["text"] == "Refund please\nI sent the shoes back" for r in rows if r["ticket_id"] == t1)
        events = store.query("SELECT kind, actor, detail FROM events WHERE ticket_id=? ORDER BY id", (t1,))
        assert [(e["kind"], e["actor"]) for e in events] == [
            ("category_changed", "agent@example.com"), ("category_changed", "lead@example.com"),
            ("tag_added", "agent@example.com"), ("tag_removed", "agent@example.com")]
        assert json.loads(events[1]["detail"]) == {"old": "billing", "new": "refund"}
        assert json.loads(events[2]["detail"]) == {"tag": "vip"}
        # the latest category per ticket, tags left out
        assert sorted(store.category_corrections()) == [("Refund please\nI sent the shoes back", "refund"),
                                                        ("包裹在哪\n物流沒有更新", "shipping")]
        store.tag(t2, "fragile", "agent@example.com", NOW)
        assert store.tags(t2) == ["fragile"] and len(store.category_corrections()) == 2
        with pytest.raises(KeyError):
            store.set_category("SUP-999", "refund", "agent@example.com", NOW)
        assert store.query("SELECT COUNT(*) n FROM corrections")[0]["n"] == 6  # nothing half-written
    finally:
        store.close()


def mislabeled_variants(examples: list[Example], per_example: int = 3) -> list[Example]:
    """Wrongly labeled near-copies of the held-out mail, themselves on the training side."""
    cats = sorted(CATEGORIES)
    out = []
    for e in held_out(examples):
        wrong = cats[(cats.index(e.label) + 1) % len(cats)]
        variants = [f"{e.text}\n(#{k})" for k in range(60)]
        out += [Example(t, wrong) for t in [v for v in variants if not is_held_out(v)][:per_example]]
    assert not any(is_held_out(e.text) for e in out)
    return out


def test_retrain_keeps_a_better_or_equal_model(model: TrainedModel, examples: list[Example]) -> None:
    corrections = [Example(t, label) for t, label, _ in PROBES]
    weak = train([Example(e.text, sorted(CATEGORIES)[(sorted(CATEGORIES).index(e.label) + 1) % 9]) if i % 2 else e
                  for i, e in enumerate(examples)])
    result = retrain(weak, examples, corrections)
    assert result.model is not None and result.model.corrections == len(corrections)
    assert result.new_score > result.old_score
    assert result.held_out == len(held_out(examples + corrections))
    # same training side (corrections that are held out themselves): equal scores, still taken
    same = [Example(e.text, e.label) for e in held_out(examples)[:4]]
    result = retrain(model, examples, same)
    assert result.model is not None and result.new_score == result.old_score
    # no current model: any candidate is taken
    result = retrain(None, examples, corrections[:2])
    assert result.model is not None and result.old_score is None


def test_retrain_rejects_a_worse_model(model: TrainedModel, examples: list[Example]) -> None:
    bad = mislabeled_variants(examples)
    result = retrain(model, examples, bad)
    assert result.model is None
    assert result.new_score < result.old_score == model.metrics["held_out"]["macro_f1"]
    assert result.held_out == len(held_out(examples))


# --- the daemon retrains from corrections ----------------------------------------------------


def daemon_settings(tmp_path: Path) -> Any:
    config = tmp_path / "inboxd.toml"
    config.write_text(MINIMAL_CONFIG + '\n[storage]\ndatabase = "data/inboxd.db"\n\n'
                      '[classify]\nmodel = "data/model.joblib"\nretrain_after = 2\n', encoding="utf-8")
    return load_settings(config)


def test_daemon_retrain_end_to_end(tmp_path: Path, model: TrainedModel, examples: list[Example],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inboxd.daemon.bundled_examples", lambda: list(examples))
    settings = daemon_settings(tmp_path)
    save(model, settings.classify.model)
    daemon = Daemon(settings)
    assert daemon.classifier.model is not None and daemon.classifier.model.version == model.version

    store = Store(settings.database)
    try:
        t1 = add_ticket(store, "Refund request", "Please refund my order, I returned it")
        assert daemon.retrain() is False  # no corrections yet
        store.set_category(t1, "refund", "agent@example.com", NOW)
        assert daemon.retrain() is False  # one is fewer than retrain_after = 2
        t2 = add_ticket(store, "包裹還沒送到", "物流追蹤沒有更新，包裹在哪裡")
        store.set_category(t2, "shipping", "agent@example.com", NOW)
    finally:
        store.close()

    assert daemon.retrain() is True
    new = daemon.classifier.model
    assert new is not None and new.version != model.version and new.corrections == 2
    on_disk = load(settings.classify.model)
    assert on_disk.version == new.version
    assert json.loads(settings.classify.model.with_suffix(".json").read_text())["version"] == new.version
    assert daemon.retrain() is False  # no new corrections since


def test_daemon_keeps_model_when_retrained_one_is_worse(tmp_path: Path, model: TrainedModel,
                                                        examples: list[Example],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inboxd.daemon.bundled_examples", lambda: list(examples))
    settings = daemon_settings(tmp_path)
    save(model, settings.classify.model)
    before = settings.classify.model.read_bytes()
    daemon = Daemon(settings)
    store = Store(settings.database)
    try:
        for e in mislabeled_variants(examples):
            subject, _, body = e.text.partition("\n")
            store.set_category(add_ticket(store, subject, body), e.label, "agent@example.com", NOW)
    finally:
        store.close()
    assert daemon.retrain() is False
    assert daemon.classifier.model.version == model.version
    assert settings.classify.model.read_bytes() == before


# --- the commands: train, classify, eval ------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    """Run in an empty folder without inboxd.toml: ./rules and ./data/model.joblib are the defaults."""
    monkeypatch.delenv("INBOXD_CONFIG", raising=False)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    return CliRunner()


def eml(path: Path, subject: str, body: str, sender: str = "mei@customer.example") -> Path:
    msg = EmailMessage()
    msg["From"] = f"Mei <{sender}>"
    msg["To"] = "support@example.com"
    msg["Subject"] = subject
    msg["Message-ID"] = "<m1@customer.example>"
    msg.set_content(body)
    path.write_bytes(msg.as_bytes())
    return path


def test_cli_train(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "out" / "model.joblib"
    result = cli.invoke(main, ["train", "--data", str(SMALL), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "Training on 108 examples and 0 corrections" in result.stdout
    assert f"written to {out}" in result.stdout
    assert "Held-out evaluation (" in result.stdout and "accuracy 0." in result.stdout and "macro-F1 0." in result.stdout
    assert load(out).metrics["held_out"]["n"] > 0 and out.with_suffix(".json").exists()
    # default output without a configuration file: ./data/model.joblib; a folder of .jsonl and .csv files
    data = tmp_path / "training"
    data.mkdir()
    shutil.copy(SMALL, data / "a.jsonl")
    (data / "b.csv").write_text("text,label\nPlease refund me,refund\n", encoding="utf-8")
    result = cli.invoke(main, ["train", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "Training on 109 examples" in result.stdout
    assert load(Path("data/model.joblib")).examples > 0


def test_cli_train_errors(cli: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": "refund"}\nnot json\n', encoding="utf-8")
    result = cli.invoke(main, ["train", "--data", str(bad)])
    assert result.exit_code == 2 and f"{bad}:2: not valid JSON" in result.stderr
    one = tmp_path / "one.jsonl"
    one.write_text('{"text": "a", "label": "refund"}\n{"text": "b", "label": "refundz"}\n', encoding="utf-8")
    result = cli.invoke(main, ["train", "--data", str(one)])
    assert result.exit_code == 2 and "Cannot train: unknown categories" in result.stderr
    assert not Path("data/model.joblib").exists()


def test_cli_train_uses_config_and_corrections(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(MINIMAL_CONFIG + '\n[classify]\nmodel = "models/m.joblib"\n', encoding="utf-8")
    settings = load_settings(config)
    store = Store(settings.database)
    try:
        store.set_category(add_ticket(store, "Refund", "money back please"), "refund", "agent", NOW)
    finally:
        store.close()
    result = cli.invoke(main, ["--config", str(config), "train", "--data", str(SMALL)])
    assert result.exit_code == 0, result.output
    assert "Training on 108 examples and 1 corrections" in result.stdout
    assert load(tmp_path / "models" / "m.joblib").corrections == 1


def test_cli_classify_eml_json(cli: CliRunner, tmp_path: Path, model_file: Path) -> None:
    Path("data").mkdir()
    shutil.copy(model_file, "data/model.joblib")
    refund = eml(tmp_path / "refund.eml", "Refund request", "Please refund my order, I returned it.")
    result = cli.invoke(main, ["classify", str(refund), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["file"] == str(refund)
    assert data["category"] == "refund" and data["source"] == "model" and 0 < data["confidence"] <= 1
    assert data["priority"] == "normal" and isinstance(data["tags"], list) and data["language"] == "en"
    assert data["rules_fired"] == [] and data["spam"] is False and data["acknowledge"] is True
    # with the shipped rules, several files: a list
    hacked = eml(tmp_path / "hacked.eml", "帳號被盜", "我的帳號被盜了，請馬上處理")
    result = cli.invoke(main, ["classify", str(refund), str(hacked), "--json", "--rules", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.stdout)
    assert first["category"] == "refund"
    assert second["category"] == "account" and second["source"] == "rule" and second["priority"] == "urgent"
    assert second["language"] == "zh-Hant" and "security" in second["tags"] and "urgent" in second["tags"]
    assert second["rules_fired"] == ["Security: account may be compromised"]
    assert second["model_guess"] is not None and second["confidence"] is None


def test_cli_classify_text_and_without_model(cli: CliRunner, tmp_path: Path) -> None:
    spam = eml(tmp_path / "spam.eml", "Grow your traffic", "We sell quality backlinks, cheap!")
    result = cli.invoke(main, ["classify", str(spam), "--rules", str(ROOT / "rules")])
    assert result.exit_code == 0, result.output
    assert "no model at" in result.stderr
    assert "category:  spam (set by a rule)" in result.stdout
    assert "acknowledge: no" in result.stdout and "SEO and link-building offers are spam" in result.stdout
    plain = eml(tmp_path / "plain.eml", "Hello", "A question about my parcel")
    result = cli.invoke(main, ["classify", str(plain)])
    assert result.exit_code == 0 and f"(none: tagged {NEEDS_TRIAGE})" in result.stdout
    assert "no rule and no model" in result.stdout
    broken = tmp_path / "broken-rules"
    write_rules(broken, '[[rule]]\nname = "x"\nwhen.subjet = "x"\nthen.tags = ["x"]\n')
    result = cli.invoke(main, ["classify", str(plain), "--rules", str(broken)])
    assert result.exit_code == 2 and f"{broken / '10-test.toml'}:3: unknown condition" in result.stderr
    result = cli.invoke(main, ["classify"])
    assert result.exit_code == 2 and "give one or more .eml files" in result.output


def test_cli_classify_jsonl_stdin(cli: CliRunner, tmp_path: Path, model_file: Path) -> None:
    Path("data").mkdir()
    shutil.copy(model_file, "data/model.joblib")
    lines = [
        json.dumps({"subject": "Refund request", "body": "Please refund my order, I returned it"}),
        json.dumps({"subject": "Offer", "body": "cheap backlinks for your site", "from": "seo@spam.test"}),
        '{"subject": "broken", ',
        json.dumps({"subject": "帳號被盜", "body": "我的帳號被盜了"}, ensure_ascii=False),
        json.dumps({"subject": "快递还没到", "body": "物流单号一直没有更新，包裹在哪里？"}, ensure_ascii=False),
    ]
    result = cli.invoke(main, ["classify", "--jsonl", "-", "--rules", str(ROOT / "rules")],
                        input="\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n")
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(out) == 5
    assert out[0]["category"] == "refund" and out[0]["source"] == "model"
    assert out[1]["category"] == "spam" and out[1]["acknowledge"] is False
    assert set(out[2]) == {"error"} and out[2]["error"].startswith("line 3:")
    assert out[3]["category"] == "account" and out[3]["language"] == "zh-Hant" and out[3]["source"] == "rule"
    assert out[4]["category"] == "shipping" and out[4]["language"] == "zh-Hans"
    assert "signals" not in out[0] and {"tags", "priority", "rules_fired", "confidence"} <= set(out[0])
    # from a file, with a JSON value that is not an object
    path = tmp_path / "in.jsonl"
    path.write_text('[1, 2]\n{"subject": "hi", "body": "thanks, great service"}\n', encoding="utf-8")
    result = cli.invoke(main, ["classify", "--jsonl", str(path)])
    assert result.exit_code == 0, result.output
    first, second = [json.loads(line) for line in result.stdout.splitlines()]
    assert first == {"error": "line 1: not a JSON object"} and "category" in second


@pytest.fixture
def labeled_files(tmp_path: Path) -> tuple[Path, Path]:
    csv = tmp_path / "labeled.csv"
    jsonl = tmp_path / "labeled.jsonl"
    rows = [(text, label) for text, label, _ in PROBES]
    csv.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows) + "no label here,\n",
                   encoding="utf-8")
    jsonl.write_text("".join(json.dumps({"subject": "", "body": t, "label": label}, ensure_ascii=False) + "\n"
                             for t, label in rows), encoding="utf-8")
    return csv, jsonl


def test_cli_eval(cli: CliRunner, tmp_path: Path, model_file: Path, labeled_files: tuple[Path, Path]) -> None:
    config = tmp_path / "inboxd.toml"
    config.write_text(MINIMAL_CONFIG + f'\n[classify]\nmodel = "{model_file}"\n', encoding="utf-8")
    for path in labeled_files:
        result = cli.invoke(main, ["--config", str(config), "eval", str(path)])
        assert result.exit_code == 0, result.output
        text = result.stdout
        assert f"{path}: {len(PROBES)} examples, model " in text  # the unlabeled CSV row is left out
        assert "accuracy 0." in text or "accuracy 1.0" in text
        assert "macro-F1 " in text and "confusion matrix (rows: true label, columns: predicted)" in text
        rows = [line for line in text.splitlines() if line.split() and line.split()[0] in CATEGORIES]
        assert len(rows) >= len({label for _, label, _ in PROBES})
    result = cli.invoke(main, ["--config", str(config), "eval", str(labeled_files[1]), "--json"])
    metrics = json.loads(result.stdout)
    assert metrics["n"] == len(PROBES) and metrics["accuracy"] >= 0.8 and len(metrics["confusion"]) >= 9


def test_cli_eval_without_model(cli: CliRunner, labeled_files: tuple[Path, Path]) -> None:
    result = cli.invoke(main, ["eval", str(labeled_files[0])])
    assert result.exit_code == 2 and "no model file" in result.stderr


def test_cli_eval_file_without_labels(cli: CliRunner, tmp_path: Path, model_file: Path) -> None:
    Path("data").mkdir()
    shutil.copy(model_file, "data/model.joblib")
    path = tmp_path / "unlabeled.csv"
    path.write_text("text,label\nhello,\n", encoding="utf-8")
    result = cli.invoke(main, ["eval", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 2


@pytest.mark.parametrize("confidence, withheld", [(0.6, False), (0.89, False), (0.95, True)])
def test_only_a_very_confident_spam_guess_withholds_the_acknowledgement(confidence: float, withheld: bool) -> None:
    c = Classifier(rules_dir=None, model_path=None, min_confidence=0.3)
    facts = facts_from(from_addr="a@b.example", to=(), cc=(), subject="Partnership", body="Visit our site",
                       language="en", attachments=(), mailbox=(), headers=())
    r = c.decide(subject="Partnership", body="Visit our site", facts=facts, sender="a@b.example", language="en",
                 guess=("spam", confidence))
    assert r.category == "spam" and r.spam is withheld and r.acknowledge is (not withheld)
    assert ("possible-spam" in r.tags) is (not withheld)
