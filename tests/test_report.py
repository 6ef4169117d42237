"""The trainers' evaluation report (faqbot.report), run for real on the trained model."""

from __future__ import annotations

import json
import re
import struct
from collections import Counter
from dataclasses import fields
from pathlib import Path

import pytest

from faqbot.core.paths import PROJECT_DIR
from faqbot.tools import report
from faqbot.tools.evaluate import DEFAULT_TEST_SET, Evaluation, read_examples

# FAQ questions the trained model gets right on all their held-out phrasings, so that
# relabelling some of them changes the figures in a known direction.
STABLE = [
    "faq_zahlungsmethoden_akzeptieren",
    "faq_erreiche_kundenservice",
    "faq_flexibel_vertraege_laufzeiten",
    "faq_rabatte_non_profit_organisationen",
]
SCRIPT = '<script>alert("hallo")</script> kann ich mit paypal zahlen'


def write_test_set(path: Path, examples) -> Path:
    by_intent = {}
    for text, intent in examples:
        by_intent.setdefault(intent, []).append(text)
    lines = ['version: "3.1"', "nlu:"]
    for intent, texts in by_intent.items():
        lines += [f"  - intent: {intent}", "    examples: |", *(f"      - {text}" for text in texts)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def rows_of(html: str, section_id: str):
    """The table rows of one report section, as HTML strings."""
    section = html.split(f"id='{section_id}'", 1)[1].split("<h2", 1)[0]
    return section.split("<tr")[2:]


@pytest.fixture(scope="module")
def two_runs(model_path: Path, tmp_path_factory):
    """Run 1: two phrasings of STABLE[1] labelled as STABLE[0]; run 2: labels right, but two of
    STABLE[3] labelled as STABLE[2]. So STABLE[0] gets better and STABLE[2] worse."""
    tmp = tmp_path_factory.mktemp("bericht")
    held_out = [(t, i) for t, i in read_examples(DEFAULT_TEST_SET) if i in STABLE]
    second, fourth = ([t for t, i in held_out if i == STABLE[n]][:2] for n in (1, 3))
    first_set = [(t, STABLE[0] if t in second else i) for t, i in held_out]
    first_set.append((SCRIPT, STABLE[3]))  # a paypal question is never the non-profit discount
    second_set = [(t, STABLE[2] if t in fourth else i) for t, i in held_out]
    out = tmp / "bericht"
    outputs = []
    for number, examples in enumerate([first_set, second_set], 1):
        test_set = write_test_set(tmp / f"test{number}.yml", examples)
        assert (
            report.main(
                [
                    "--ohne-kreuzvalidierung",
                    "--modell",
                    str(model_path),
                    "--testdaten",
                    str(test_set),
                    "--ordner",
                    str(out),
                ]
            )
            == 0
        )
        outputs.append((out / report.REPORT_FILE).read_text(encoding="utf-8"))
    return out, outputs


def test_report_has_per_faq_table_matrix_image_and_no_previous_run(two_runs):
    out, (first, _) = two_runs
    table = rows_of(first, "testdaten")
    for intent in STABLE:
        assert any(f">{intent[len('faq_') :]}<br>" in row for row in table), intent
    assert "Präzision" in first and "Trefferquote" in first and "Anzahl" in first
    # An FAQ question without messages in these test data (as a new one would be) is listed too.
    [missing] = [row for row in table if ">erhalte_rechnung<br>" in row]
    assert missing.startswith(" class='schwach'>") and "<td class='zahl'>0</td>" in missing
    assert "kein vorheriger lauf" in first.lower()
    assert "OFFLINE" in first or "offizielles spaCy-Modell" in first  # which spaCy model made the figures
    images = re.findall(r"<img src='([^']+)'", first)
    assert images == ["verwechslungsmatrix_testdaten.png"]
    png = (out / images[0]).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])  # IHDR
    assert width >= 600 and height >= 600


def test_second_run_shows_better_and_worse_per_faq(two_runs):
    out, (_, second) = two_runs
    changes = rows_of(second, "veraenderung")
    better = [row for row in changes if ">zahlungsmethoden_akzeptieren<" in row]
    worse = [row for row in changes if ">flexibel_vertraege_laufzeiten<" in row]
    assert better and "besser" in better[0] and "→" in better[0]
    assert worse and "schlechter" in worse[0]
    [missing] = [row for row in rows_of(second, "testdaten") if ">erhalte_rechnung<br>" in row]
    assert "keine Nachrichten" in missing
    assert "Keine Nachricht wird jetzt anders erkannt" in second  # the same model, the same texts
    history = json.loads((out / report.HISTORY_FILE).read_text(encoding="utf-8"))["laeufe"]
    assert len(history) == 2
    f1 = [run["quellen"]["testdaten"]["je_intent"][STABLE[0]]["f1"] for run in history]
    assert f1[0] < f1[1]  # run 2 labels STABLE[0] right: better than run 1


def test_message_texts_are_escaped(two_runs):
    _, (first, _) = two_runs
    assert "<script>" not in first
    assert "&lt;script&gt;alert(&#34;hallo&#34;)&lt;/script&gt; kann ich mit paypal zahlen" in first


# A run as the report wrote it before verlauf.json had German keys (from a real run of that
# version on the whole test set; only the F1 of STABLE[0] is lowered, so that the next run
# shows it as better).
OLD_RUN = {
    "zeit": "27.11.2026 05:10:36",
    "modell": "faq-bot-e6bc368481e99375.tar.gz",
    "modell_trainiert": "27.11.2026 04:50",
    "spacy": "de_core_news_sm 0.0.0+offline: OFFLINE-ERSATZ (nicht das offizielle Modell)",
    "quellen": {
        "testdaten": {
            "datei": "(set by the test)",
            "kennzahlen": {
                "examples": 199,
                "intent_accuracy": 0.9195979899497487,
                "accuracy_with_fallback": 0.8090452261306532,
                "faq_examples": 144,
                "faq_answered_right": 0.8125,
                "faq_right_via_buttons": 0.1388888888888889,
                "faq_wrong_answer": 0.0,
                "faq_no_answer": 0.04861111111111111,
                "other_examples": 55,
                "other_got_faq_answer": 0.0,
            },
            "je_intent": {
                STABLE[0]: {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 6},
                **{intent: {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 6} for intent in STABLE[1:]},
            },
        }
    },
}
GERMAN_INTENT_KEYS = {"praezision", "trefferquote", "f1", "anzahl"}


def test_every_figure_of_the_evaluation_has_a_german_name():
    assert set(report.METRIC_KEYS) == {field.name for field in fields(Evaluation)} - {"confusions"}
    assert len(set(report.METRIC_KEYS.values())) == len(report.METRIC_KEYS)


def test_a_history_with_english_keys_is_still_compared_and_rewritten_in_german(model_path, tmp_path, capsys):
    # the first six held-out phrasings of each question: the test set the old run in the history was measured on
    stable = [(t, i) for t, i in read_examples(DEFAULT_TEST_SET) if i in STABLE]
    first_six = [(t, i) for n, (t, i) in enumerate(stable) if sum(i == j for _, j in stable[:n]) < 6]
    test_set = write_test_set(tmp_path / "test.yml", first_six)
    out = tmp_path / "bericht"
    out.mkdir()
    old = json.loads(json.dumps(OLD_RUN))
    old["quellen"]["testdaten"]["datei"] = report.relative(test_set)
    (out / report.HISTORY_FILE).write_text(json.dumps({"laeufe": [old]}), encoding="utf-8")
    args = ["--ohne-kreuzvalidierung", "--modell", str(model_path), "--testdaten", str(test_set), "--ordner", str(out)]
    assert report.main(args) == 0

    assert "Intent-Genauigkeit 100,0 % (vorher 92,0 %)" in capsys.readouterr().out
    html = (out / report.REPORT_FILE).read_text(encoding="utf-8")
    assert "kein vorheriger lauf" not in html.lower() and "andere Daten" not in html
    summary = rows_of(html, "zusammenfassung")
    assert "<td class='zahl'>100,0 %</td><td class='zahl'>92,0 %</td>" in summary[0]
    changes = rows_of(html, "veraenderung")
    assert len(changes) == 1 and ">zahlungsmethoden_akzeptieren<" in changes[0]
    assert "0,50 → 1,00" in changes[0] and "besser" in changes[0]

    runs = json.loads((out / report.HISTORY_FILE).read_text(encoding="utf-8"))["laeufe"]
    assert len(runs) == 2
    for run in runs:
        source = run["quellen"]["testdaten"]
        assert set(source["kennzahlen"]) == set(report.METRIC_KEYS.values())
        assert all(set(figures) == GERMAN_INTENT_KEYS for figures in source["je_intent"].values())
    before = runs[0]["quellen"]["testdaten"]
    assert (
        before["kennzahlen"]["intent_genauigkeit"] == OLD_RUN["quellen"]["testdaten"]["kennzahlen"]["intent_accuracy"]
    )
    assert before["je_intent"][STABLE[0]] == {"praezision": 1.0, "trefferquote": 1 / 3, "f1": 0.5, "anzahl": 6}


def test_folds_split_every_intent_evenly_without_overlap():
    intents = ["a"] * 9 + ["b"] * 6 + ["c"] * 3
    splits = report.fold_splits(intents, 3)
    assert len(splits) == 3
    tested = [index for _, test in splits for index in test]
    assert sorted(tested) == list(range(len(intents)))  # every phrasing tested exactly once
    for train, test in splits:
        assert not set(train) & set(test)
        assert Counter(intents[i] for i in test) == {"a": 3, "b": 2, "c": 1}


@pytest.mark.training
def test_cross_validation_trains_each_fold_and_tests_every_phrasing_once(model_path: Path, tmp_path: Path, capsys):
    """Two folds on a small part of the training data (two real trainings, about 1½ minutes)."""
    training = [(t, i) for t, i in read_examples(PROJECT_DIR / "data" / "nlu" / "faq.yml") if i in STABLE[:3]]
    subset = [(t, i) for n, (t, i) in enumerate(training) if sum(i == j for _, j in training[:n]) < 10]
    assert Counter(i for _, i in subset) == {intent: 10 for intent in STABLE[:3]}
    tiny = [(t, i) for t, i in read_examples(DEFAULT_TEST_SET) if i in STABLE[:3]]
    out = tmp_path / "bericht"
    assert (
        report.main(
            [
                "--teile",
                "2",
                "--modell",
                str(model_path),
                "--ordner",
                str(out),
                "--trainingsdaten",
                str(write_test_set(tmp_path / "teil.yml", subset)),
                "--testdaten",
                str(write_test_set(tmp_path / "test.yml", tiny)),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "Kreuzvalidierung Teil 2/2" in printed and f"Bericht: {out / report.REPORT_FILE}" in printed
    run = json.loads((out / report.HISTORY_FILE).read_text(encoding="utf-8"))["laeufe"][-1]
    folds = run["quellen"]["kreuzvalidierung"]
    assert folds["kennzahlen"]["nachrichten"] == 30
    assert {intent: m["anzahl"] for intent, m in folds["je_intent"].items()} == {i: 10 for i in STABLE[:3]}
    html = (out / report.REPORT_FILE).read_text(encoding="utf-8")
    assert "Kreuzvalidierung (2 Teile)" in html
    assert (out / "verwechslungsmatrix_kreuzvalidierung.png").read_bytes()[:4] == b"\x89PNG"


def test_the_report_starts_with_the_trainers_changes(tmp_path):
    from test_trainer import copy_project

    from faqbot.core import trainer_journal
    from faqbot.core.phrasings import add_phrasing_as_written, remove_phrasing

    project = copy_project(tmp_path)
    added = add_phrasing_as_written("erhalte_rechnung", "rechnung als pdf wo finde ich die", project)
    trainer_journal.record(project, "added", added.intent, added.phrasing, "review #7", 7)
    gone = add_phrasing_as_written("erhalte_rechnung", "rechnung per post bitte schicken", project)
    trainer_journal.record(project, "added", gone.intent, gone.phrasing, "add-phrasing")
    remove_phrasing(gone.intent, gone.phrasing, project)
    trainer_journal.record(project, "removed", gone.intent, gone.phrasing, "undo")
    rows = report.trainer_changes(None, project)
    assert [(row["what"], row["phrasing"], row["source"]) for row in rows] == [
        ("hinzugefügt", "rechnung als pdf wo finde ich die", "review #7"),
        ("hinzugefügt", "(nicht mehr in den Trainingsdaten)", "add-phrasing"),
        ("entfernt", "(nicht mehr in den Trainingsdaten)", "undo"),
    ]
    assert report.trainer_changes({"zeit": "31.12.2099 23:59:59"}, project) == []  # none since a later run
    # A baseline is recorded when the next training starts, after the changes: they count
    # from when its model was trained.
    baseline = {"zeit": "31.12.2099 23:59:59", "modell_trainiert_utc": "2000-01-01T00:00:00+00:00"}
    assert report.trainer_changes(baseline, project) == rows


def faq_row(right: int, count: int, wrongly: int = 0) -> dict:
    precision = right / (right + wrongly) if right + wrongly else 0.0
    recall = right / count
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"f1": f1, "praezision": precision, "trefferquote": recall, "anzahl": count}


def test_only_changes_beyond_noise_are_better_or_worse():
    assert report.verdict(None, faq_row(15, 15)) == "neu"
    assert report.verdict(faq_row(14, 15), faq_row(15, 15)) == "unverändert"  # one message: noise
    assert report.verdict(faq_row(13, 15), faq_row(15, 15)) == "besser"
    assert report.verdict(faq_row(15, 15), faq_row(15, 15, wrongly=1)) == "unverändert"
    assert report.verdict(faq_row(15, 15), faq_row(14, 15, wrongly=1)) == "schlechter"  # one missed, one wrongly


def test_messages_recognised_differently_are_counted():
    source = report.Source(
        "testdaten",
        "Testdaten",
        [("a", "faq_x"), ("b", "faq_x"), ("c", "faq_y"), ("d", "faq_y"), ("neu", "faq_y")],
        [
            {"intent_ranking": [{"name": name, "confidence": 0.9}]}
            for name in ("faq_x", "faq_y", "faq_y", "faq_z", "faq_y")
        ],
        "",
    )
    before = {"a": "faq_y", "b": "faq_x", "c": "faq_y", "d": "faq_x"}
    found = report.recognised_differently(source, before)
    assert [(row["text"], row["what"]) for row in found["rows"]] == [
        ("b", "jetzt falsch"),
        ("d", "anders falsch"),
        ("a", "jetzt richtig"),
    ]
    assert found["tally"] == {"jetzt richtig": 1, "jetzt falsch": 1, "anders falsch": 1}
    assert report.recognised_differently(source, None) == {"compared": False, "rows": [], "tally": {}}


def test_every_training_records_the_model_before_as_the_baseline(model_path, tmp_path):
    out = tmp_path / "bericht"
    assert report.needs_baseline(model_path, out) and not report.needs_baseline(None, out)
    assert report.record_baseline(model_path, out) is True
    assert [run["modell"] for run in report.load_history(out)] == [model_path.name]
    assert report.record_baseline(model_path, out) is False  # the latest run has its figures already
    assert not report.needs_baseline(model_path, out)
