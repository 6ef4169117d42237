"""The trainers' tools: phrasings are refused with a reason or added cleanly, the review
walks the queue from stdin, and a message the bot got wrong is right after a retrain."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import free_port

from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import (
    AlreadyPresent,
    PhrasingRefused,
    add_phrasing,
    add_phrasing_as_written,
    read_examples,
)
from faqbot.core.review_store import ReviewStore
from faqbot.tools import train
from faqbot.tools import trainer as trainer_cli
from faqbot.tools.evaluate import classify
from faqbot.tools.importer import slugify

# Found by classifying candidate phrasings with the current model: it calls this
# out_of_scope with high confidence, and no phrasing like it is in the training data.
MISSED = "sind meine sachen weg wenn euer rechner kaputt geht"
MISSED_FAQ = "stellen_systemverfuegbarkeit_backups_sicher"


def copy_project(target: Path) -> Path:
    """What training and the phrasing checks read: config, domain, data, the test sets."""
    for name in ("config.yml", "domain.yml"):
        shutil.copy(PROJECT_DIR / name, target / name)
    shutil.copytree(PROJECT_DIR / "data", target / "data")
    (target / "tests").mkdir()
    for name in ("nlu_heldout.yml", "e2e_paraphrases.yml"):
        shutil.copy(PROJECT_DIR / "tests" / name, target / "tests" / name)
    return target


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


def trainer(
    project: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "faqbot.tools.trainer", "--projekt", str(project), *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def refusal(project: Path, faq: str, text: str) -> str:
    with pytest.raises(PhrasingRefused) as refused:
        add_phrasing(faq, text, project)
    return str(refused.value)


def test_refusals_say_why_and_change_nothing(project):
    before = {path: path.read_text(encoding="utf-8") for path in (project / "data" / "nlu").glob("*.yml")}
    assert "leer" in refusal(project, "erhalte_rechnung", "  \n ")
    assert "zu lang" in refusal(project, "erhalte_rechnung", "rechnung " * 60)
    with pytest.raises(AlreadyPresent, match="schon"):
        add_phrasing("faq_erhalte_rechnung", "  wie ERHALTE ich eine  rechnung ", project)
    other = refusal(project, "erhalte_rechnung", "DSGVO")
    assert "gehen_daten" in other and "„Wie gehen Sie mit meinen Daten um?“" in other
    assert "nlu_heldout.yml" in refusal(project, "compliance_standards_erfuellen", "dsgvo konform")
    unknown = refusal(project, "erhalte_rechung", "wo ist meine rechnung")
    assert "Unbekannte FAQ" in unknown and "erhalte_rechnung" in unknown
    assert before == {path: path.read_text(encoding="utf-8") for path in before}


def test_an_accepted_phrasing_is_exactly_one_added_line(project):
    nlu = project / "data" / "nlu" / "faq.yml"
    before = nlu.read_text(encoding="utf-8").splitlines()
    assert (
        add_phrasing("erhalte_rechnung", "- wo kann ich\n die rechnung runterladen", project) == "faq_erhalte_rechnung"
    )
    changes = [
        line for line in difflib.ndiff(before, nlu.read_text(encoding="utf-8").splitlines()) if line[:1] in "+-?"
    ]
    assert changes == ["+       - wo kann ich die rechnung runterladen"]
    assert "wo kann ich die rechnung runterladen" in read_examples(nlu)["faq_erhalte_rechnung"]


def test_out_of_scope_phrasings_go_to_general_yml(project):
    add_phrasing("out_of_scope", "verkauft ihr auch pferde", project)
    assert "verkauft ihr auch pferde" in read_examples(project / "data" / "nlu" / "general.yml")["out_of_scope"]


def test_add_phrasing_command_reports_the_refusal(project):
    result = trainer(project, "add-phrasing", "erhalte_rechnung", "dsgvo")
    assert result.returncode == 1 and "Nicht hinzugefügt" in result.stderr and "gehen_daten" in result.stderr
    result = trainer(project, "add-phrasing", "erhalte_rechnung", "wo kann ich die rechnung runterladen")
    assert result.returncode == 0 and "faq_erhalte_rechnung" in result.stdout


def test_phrasings_are_masked_before_they_reach_the_training_data(project):
    nlu = project / "data" / "nlu" / "faq.yml"
    added = add_phrasing_as_written(
        "erhalte_rechnung", "rechnung bitte an max(at)example.org, karte 4111 1111 1111 1111(visa)", project
    )
    written = "rechnung bitte an [E-MAIL], karte [KARTE] (visa)"  # no Rasa entity markup either
    assert added == type(added)("faq_erhalte_rechnung", written, True)
    assert written in read_examples(nlu)["faq_erhalte_rechnung"]
    assert "example.org" not in nlu.read_text(encoding="utf-8") and "4111" not in nlu.read_text(encoding="utf-8")
    plain = add_phrasing_as_written("erhalte_rechnung", "rechnung als pdf bitte", project)
    assert (plain.phrasing, plain.masked) == ("rechnung als pdf bitte", False)
    # Nothing left to learn from: refused.
    assert "nur aus personenbezogenen Daten" in refusal(project, "out_of_scope", "0171 1234567, max@example.org")


def test_add_phrasing_command_says_when_it_masked(project):
    result = trainer(project, "add-phrasing", "erhalte_rechnung", "rechnung für geb. 01.02.1990 an 0171 1234567")
    assert result.returncode == 0, result.stderr
    assert "maskiert: „rechnung für geb. [DATUM] an [TELEFON]“" in result.stdout and "prüfen Sie" in result.stdout
    assert "1234567" not in (project / "data" / "nlu" / "faq.yml").read_text(encoding="utf-8")
    plain = trainer(project, "add-phrasing", "erhalte_rechnung", "wo kann ich die rechnung runterladen")
    assert plain.returncode == 0 and "maskiert" not in plain.stdout


def test_review_masks_what_an_old_entry_still_holds_and_records_the_phrasing(project, tmp_path):
    path = tmp_path / "review.db"
    ReviewStore(path).close()
    with sqlite3.connect(path) as connection:  # as written before cards and dates were masked
        connection.execute(
            "INSERT INTO review (created, sender, text, kind, ranking) VALUES (?, ?, ?, ?, ?)",
            ("2024-05-01T10:00:00+00:00", "abc", "rechnung für karte 4111111111111111 bitte", "fallback", "[]"),
        )
    result = trainer(project, "review", "--datei", str(path), stdin="erhalte_rechnung\n")
    assert result.returncode == 0, result.stderr
    assert "maskiert: „rechnung für karte [KARTE] bitte“" in result.stdout
    examples = read_examples(project / "data" / "nlu" / "faq.yml")["faq_erhalte_rechnung"]
    assert "rechnung für karte [KARTE] bitte" in examples
    store = ReviewStore(path)
    [entry] = store.entries(status=None)
    assert (entry.status, entry.assigned_to, entry.added_phrasing) == (
        "assigned",
        "faq_erhalte_rechnung",
        "rechnung für karte [KARTE] bitte",
    )
    store.close()


def test_a_phrasing_the_queue_cannot_record_is_not_kept(project, tmp_path):
    """Else an erasure request could not find it: the review leaves the training data as it was."""
    path = tmp_path / "review.db"
    store = ReviewStore(path)
    store.record("wo finde ich die rechnung vom letzten monat bitte", "a", "fallback")
    store.close()
    before = (project / "data" / "nlu" / "faq.yml").read_text(encoding="utf-8")
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")  # another trainer writing, for longer than the store waits
    try:
        result = trainer(project, "review", "--datei", str(path), stdin="erhalte_rechnung\nq\n")
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert result.returncode == 0, result.stderr
    assert "Review-Warteschlange ist gerade nicht beschreibbar" in result.stdout
    assert (project / "data" / "nlu" / "faq.yml").read_text(encoding="utf-8") == before
    store = ReviewStore(path)
    assert [(entry.status, entry.added_phrasing) for entry in store.entries(status=None)] == [("open", None)]
    store.close()


OLD_REVIEW_SCHEMA = """
CREATE TABLE review (
    id INTEGER PRIMARY KEY, created TEXT NOT NULL, sender TEXT NOT NULL, text TEXT NOT NULL, intent TEXT,
    confidence REAL, ranking TEXT NOT NULL DEFAULT '[]', kind TEXT NOT NULL, outcome TEXT,
    status TEXT NOT NULL DEFAULT 'open', assigned_to TEXT
);
CREATE INDEX review_status ON review (status);
INSERT INTO review (created, sender, text, kind, status, assigned_to)
    VALUES ('2024-05-01T10:00:00+00:00', '0123456789abcdef', 'karte 4111111111111111, geb. 1.2.1990', 'fallback',
            'assigned', 'faq_erhalte_rechnung');
"""


def test_an_old_queue_gets_the_new_column_and_its_texts_masked_again(tmp_path):
    path = tmp_path / "review.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(OLD_REVIEW_SCHEMA)
    store = ReviewStore(path)
    [entry] = store.entries(status=None)
    assert entry.text == "karte [KARTE], geb. [DATUM]"
    assert (entry.sender, entry.assigned_to, entry.added_phrasing) == (
        "0123456789abcdef",  # old hashes stay as they are
        "faq_erhalte_rechnung",
        None,
    )
    store.set_added_phrasing(entry.id, "faq_erhalte_rechnung", "karte [KARTE]")
    store.close()
    again = ReviewStore(path)  # opened again: nothing more to do
    assert again.entries(status=None)[0].added_phrasing == "karte [KARTE]"
    again.close()


def test_add_faq_creates_answer_intent_rule_and_domain_entry(project):
    result = trainer(
        project,
        "add-faq",
        "--kategorie",
        "Allgemeine Fragen",
        "--frage",
        "Haben Sie einen Newsletter?",
        "--antwort",
        "Ja, Sie können ihn in Ihrem Kundenkonto abonnieren.",
        "--formulierung",
        "newsletter abonnieren",
        "--formulierung",
        "gibt es einen newsletter",
        "--formulierung",
        "wie bekomme ich eure news per mail",
    )
    assert result.returncode == 0, result.stderr
    assert "mindestens 12" in result.stdout
    faq_id = slugify("Haben Sie einen Newsletter?")
    assert f"Neue FAQ {faq_id} angelegt" in result.stdout
    assert load(project / "data" / "faq.yml")[faq_id].answer.startswith("Ja, Sie können")
    examples = read_examples(project / "data" / "nlu" / "faq.yml")[f"faq_{faq_id}"]
    assert examples == [
        "Haben Sie einen Newsletter?",
        "newsletter abonnieren",
        "gibt es einen newsletter",
        "wie bekomme ich eure news per mail",
    ]
    assert f"intent: faq_{faq_id}" in (project / "data" / "rules" / "faq.yml").read_text(encoding="utf-8")
    assert f"- faq_{faq_id}" in (project / "domain.yml").read_text(encoding="utf-8")
    too_few = trainer(
        project,
        "add-faq",
        "--kategorie",
        "X",
        "--frage",
        "Gibt es Gutscheine?",
        "--antwort",
        "Nein.",
        "--formulierung",
        "gutschein",
    )
    assert too_few.returncode == 1 and "mindestens 3" in too_few.stderr


def test_review_from_stdin(project, tmp_path):
    store = ReviewStore(tmp_path / "review.db")
    picked = store.record(
        "wo finde ich die rechnung vom letzten monat bitte",
        "a",
        "clarification",
        "nlu_fallback",
        0.6,
        [{"name": "nlu_fallback", "confidence": 0.6}, {"name": "faq_erhalte_rechnung", "confidence": 0.5}],
        outcome="faq:erhalte_rechnung",
    )
    offtopic = store.record(
        "kann man bei euch ein pferd mieten",
        "b",
        "out_of_scope",
        "out_of_scope",
        0.9,
        [{"name": "out_of_scope", "confidence": 0.9}],
    )
    new = store.record(
        "ich wünsche mir eine dunkle ansicht",
        "c",
        "fallback",
        "nlu_fallback",
        0.6,
        [{"name": "nlu_fallback", "confidence": 0.6}, {"name": "faq_technischen_voraussetzungen", "confidence": 0.3}],
    )
    refused = store.record(
        "dsgvo",
        "d",
        "low_confidence",
        "faq_compliance_standards_erfuellen",
        0.7,
        [{"name": "faq_compliance_standards_erfuellen", "confidence": 0.7}],
    )
    untouched = store.record(
        "noch eine frage zu backups",
        "e",
        "fallback",
        "nlu_fallback",
        0.6,
        [{"name": "faq_stellen_systemverfuegbarkeit_backups_sicher", "confidence": 0.4}],
    )
    # The order is by kind (the costly misses first), then grouped by guess: the two fallbacks,
    # the clarification, out_of_scope, low confidence. "was?" is no answer; s skips the
    # backups question; Enter takes the button the customer picked; 7 = erhalte_rechnung is
    # refused for "dsgvo" (it belongs to another FAQ); then stdin ends.
    result = trainer(project, "review", "--datei", str(tmp_path / "review.db"), stdin="was?\nn\ns\n\no\n7\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("dunkle ansicht") < out.index("backups") < out.index("letzten monat") < out.index("pferd")
    assert "Vorschlag (vom Kunden gewählt): erhalte_rechnung" in out
    assert "Bitte eine FAQ-Nummer" in out
    assert "Nicht übernommen" in out and "Wie gehen Sie mit meinen Daten um?" in out
    status = {entry.id: (entry.status, entry.assigned_to) for entry in store.entries(status=None)}
    assert status == {
        picked: ("assigned", "faq_erhalte_rechnung"),
        offtopic: ("out_of_scope", "out_of_scope"),
        new: ("new_question", None),
        refused: ("open", None),
        untouched: ("skipped", None),
    }
    # What was written to the training data from which message (for an erasure request).
    assert {entry.id: entry.added_phrasing for entry in store.entries(status=None)} == {
        picked: "wo finde ich die rechnung vom letzten monat bitte",
        offtopic: "kann man bei euch ein pferd mieten",
        new: None,
        refused: None,
        untouched: None,
    }
    faq = read_examples(project / "data" / "nlu" / "faq.yml")
    assert "wo finde ich die rechnung vom letzten monat bitte" in faq["faq_erhalte_rechnung"]
    assert "dsgvo" not in faq["faq_erhalte_rechnung"]
    assert (
        "kann man bei euch ein pferd mieten" in read_examples(project / "data" / "nlu" / "general.yml")["out_of_scope"]
    )
    again = trainer(project, "review", "--datei", str(tmp_path / "review.db"), "--hoechstens", "1", stdin="q\n")
    assert again.returncode == 0 and "dsgvo" in again.stdout and "backups" not in again.stdout
    unsure = trainer(project, "review", "--datei", str(tmp_path / "review.db"), "--art", "low_confidence", stdin="q\n")
    assert unsure.returncode == 0 and "dsgvo" in unsure.stdout and "pferd" not in unsure.stdout
    store.close()


def test_train_retrains_only_when_the_data_changed(model_path, project):
    result = trainer(project, "train")  # the copy's data are the project's: its model exists
    assert result.returncode == 0 and "kein Training nötig" in result.stdout and model_path.name in result.stdout
    add_phrasing("erhalte_rechnung", "wo kann ich die rechnung runterladen", project)
    assert train.model_path(project) != model_path  # a new phrasing means a new model


@pytest.mark.training
def test_a_missed_message_is_answered_right_after_adding_it_and_retraining(model_path, tmp_path, capfd):
    before = classify(model_path, [MISSED])[0]
    assert before["intent"]["name"] != f"faq_{MISSED_FAQ}", "the current model already knows it: pick another"
    project = copy_project(tmp_path)
    add_phrasing(MISSED_FAQ, MISSED, project)  # only this message, no variants
    retrained = train.train(project=project, models_dir=tmp_path / "models")
    training_output = capfd.readouterr().err  # Rasa's training, in its own process
    assert "Training:" in training_output
    # Third-party warnings are filtered (Rasa's own UserWarnings about the data may stay).
    warnings = re.findall(r"^\S+:\d+: (\w+Warning): (.*)", training_output, re.MULTILINE)
    assert [warning for warning in warnings if warning[0] != "UserWarning"] == []
    assert retrained.parent == tmp_path / "models" and retrained.name != model_path.name  # new data, new model
    after = classify(retrained, [MISSED])[0]
    assert after["intent"]["name"] == f"faq_{MISSED_FAQ}", after["intent_ranking"][:3]


def test_only_the_newest_models_are_kept(tmp_path):
    for age in range(train.KEEP_MODELS + 2):
        model = tmp_path / f"faq-bot-{age:016x}.tar.gz"
        model.write_bytes(b"model")
        os.utime(model, (1_000_000 - age, 1_000_000 - age))  # age 0 is the newest
    (tmp_path / "anderes.tar.gz").write_bytes(b"not ours")
    train.remove_old_models(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["anderes.tar.gz"] + [
        f"faq-bot-{age:016x}.tar.gz" for age in range(train.KEEP_MODELS)
    ]


def test_review_of_the_last_days_only(project, tmp_path):
    store = ReviewStore(tmp_path / "review.db")
    store.record(
        "eine alte frage von vor einem monat",
        "a",
        "fallback",
        "nlu_fallback",
        0.5,
        [],
        created=(datetime.now(timezone.utc) - timedelta(days=30)).isoformat(timespec="seconds"),
    )
    store.record("eine frage von gestern", "b", "fallback", "nlu_fallback", 0.5, [])
    result = trainer(project, "review", "--datei", str(tmp_path / "review.db"), "--tage", "7", stdin="q\n")
    assert result.returncode == 0, result.stderr
    assert "1 offene Nachrichten" in result.stdout and "gestern" in result.stdout
    assert "vor einem monat" not in result.stdout
    store.close()


def test_import_step_maps_its_german_flags_to_the_importer(project):
    """The page without its first question: --probelauf reports, --fehlende-entfernen removes it."""
    page = project / "data" / "faq_seite.txt"
    lines = page.read_text(encoding="utf-8").splitlines()
    first = lines.index("Wie erstelle ich ein Kundenkonto?")
    assert lines[first + 1] == "Antwort anzeigen"
    page.write_text("\n".join(lines[:first] + lines[first + 3 :]) + "\n", encoding="utf-8")
    files = [project / "data" / "faq.yml", project / "data" / "nlu" / "faq.yml", project / "domain.yml"]
    before = [path.read_text(encoding="utf-8") for path in files]

    kept = trainer(project, "import", str(page), "--probelauf")
    assert kept.returncode == 0, kept.stderr
    assert "fehlt:     erstelle_kundenkonto – behalten (mit --fehlende-entfernen löschen)" in kept.stdout
    dry = trainer(project, "import", str(page), "--fehlende-entfernen", "--probelauf")
    assert dry.returncode == 0 and "fehlt:     erstelle_kundenkonto – entfernt" in dry.stdout
    assert [path.read_text(encoding="utf-8") for path in files] == before

    removed = trainer(project, "import", str(page), "--fehlende-entfernen")
    assert removed.returncode == 0, removed.stderr
    assert "erstelle_kundenkonto" not in load(project / "data" / "faq.yml")
    assert "faq_erstelle_kundenkonto" not in read_examples(project / "data" / "nlu" / "faq.yml")


@pytest.mark.parametrize(
    "step, english",
    [
        (["review"], ["--limit", "1"]),
        (["review"], ["--kind", "fallback"]),
        (["review"], ["--db", "x.db"]),
        (["train"], ["--force"]),
        (["import", "seite.txt"], ["--remove-missing"]),
        (["import", "seite.txt"], ["--dry-run"]),
        (["evaluate"], ["--folds", "2"]),
        (["evaluate"], ["--out", "x"]),
    ],
)
def test_english_flags_are_refused(step, english, capsys):
    with pytest.raises(SystemExit) as refused:
        trainer_cli.main([*step, *english])
    assert refused.value.code == 2
    assert english[0] in capsys.readouterr().err


# Issue 16: the command line mended.
def test_add_phrasing_takes_faq_numbers_and_unquoted_words_and_warns_when_vague(project):
    numbered = list(load(project / "data" / "faq.yml"))
    number = numbered.index("zahlungsmethoden_akzeptieren") + 1
    # `make trainer ARGS="add-phrasing … "geht apple pay""` loses the inner quotes: the words still make one phrasing.
    added = trainer(project, "add-phrasing", str(number), "geht", "apple", "pay", "mit", "dem", "handy")
    assert added.returncode == 0, added.stderr
    assert "Hinzugefügt zu faq_zahlungsmethoden_akzeptieren: „geht apple pay mit dem handy“" in added.stdout
    assert "sehr allgemein" not in added.stdout
    examples = read_examples(project / "data" / "nlu" / "faq.yml")["faq_zahlungsmethoden_akzeptieren"]
    assert "geht apple pay mit dem handy" in examples
    vague = trainer(project, "add-phrasing", "erhalte_rechnung", "ich habe eine frage zur rechnung")
    assert vague.returncode == 0 and "Die Formulierung ist sehr allgemein" in vague.stdout
    unknown = trainer(project, "add-phrasing", str(len(numbered) + 1), "geht apple pay")
    assert unknown.returncode == 1 and "Unbekannte FAQ" in unknown.stderr


def test_add_phrasing_says_where_the_running_bot_sends_it_against_a_wrong_faq_number(project, bot):
    nlu = {"FAQBOT_NLU_URL": bot.servers.nlu_url, "FAQBOT_NLU_TOKEN": bot.servers.env["FAQBOT_NLU_TOKEN"]}
    text = "rechnung herunterladen wo geht das nochmal"
    wrong = trainer(project, "add-phrasing", "zahlungsmethoden_akzeptieren", text, env=nlu)
    assert wrong.returncode == 0, wrong.stderr
    invoice = load(project / "data" / "faq.yml")["erhalte_rechnung"].question
    assert f"Zur Kontrolle: Der Bot schickt „{text}“ bisher zu „{invoice}“ (erhalte_rechnung), mit" in wrong.stdout
    assert trainer(project, "undo").returncode == 0
    right = trainer(project, "add-phrasing", "erhalte_rechnung", text, env=nlu)
    assert right.returncode == 0 and "Zur Kontrolle" not in right.stdout and "Nicht nachgesehen" not in right.stdout


def test_add_phrasing_without_a_running_bot_says_it_did_not_look(project):
    url = f"http://127.0.0.1:{free_port()}"
    added = trainer(
        project, "add-phrasing", "erhalte_rechnung", "rechnung nochmal schicken bitte", env={"FAQBOT_NLU_URL": url}
    )
    assert added.returncode == 0 and f"kein laufender Bot unter {url}" in added.stdout
    quiet = trainer(project, "add-phrasing", "--nicht-pruefen", "erhalte_rechnung", "rechnung erneut senden bitte")
    assert quiet.returncode == 0 and "nachgesehen" not in quiet.stdout


def test_list_shows_the_changes_since_the_last_training_and_undo_takes_them_back(project, tmp_path):
    assert "Keine Änderungen" in trainer(project, "list").stdout
    trainer(project, "add-phrasing", "erhalte_rechnung", "rechnung als pdf herunterladen geht wo")
    trainer(project, "add-phrasing", "zahlungsmethoden_akzeptieren", "zahlt man bei euch auch mit klarna")
    listed = trainer(project, "list").stdout
    assert "Ihre Änderungen bisher:" in listed  # no model trained in this project yet
    assert "hinzugefügt zu faq_erhalte_rechnung: „rechnung als pdf herunterladen geht wo“" in listed
    assert "hinzugefügt zu faq_zahlungsmethoden_akzeptieren: „zahlt man bei euch auch mit klarna“" in listed
    undone = trainer(project, "undo")  # the last one
    assert undone.returncode == 0 and "Entfernt aus faq_zahlungsmethoden_akzeptieren" in undone.stdout
    examples = read_examples(project / "data" / "nlu" / "faq.yml")
    assert "zahlt man bei euch auch mit klarna" not in examples["faq_zahlungsmethoden_akzeptieren"]
    assert "rechnung als pdf herunterladen geht wo" in examples["faq_erhalte_rechnung"]
    assert "entfernt aus faq_zahlungsmethoden_akzeptieren" in trainer(project, "list").stdout
    undone = trainer(project, "undo", "1")
    assert undone.returncode == 0 and "Entfernt aus faq_erhalte_rechnung" in undone.stdout
    assert (
        "rechnung als pdf herunterladen geht wo"
        not in read_examples(project / "data" / "nlu" / "faq.yml")["faq_erhalte_rechnung"]
    )
    again = trainer(project, "undo", "1")  # nothing left to take back
    assert again.returncode == 1 and "nicht (mehr) in den Trainingsdaten" in again.stderr
    # After a training only the changes since then are listed.
    (project / "models").mkdir()
    (project / "models" / "faq-bot-0.tar.gz").write_bytes(b"")
    assert "Keine Änderungen seit dem letzten Training" in trainer(project, "list").stdout
    journal = (project / "var" / "trainer" / "aenderungen.jsonl").read_text(encoding="utf-8")
    assert "klarna" not in journal and "pdf" not in journal  # hashes only, no phrasing text


def test_undo_of_a_reviewed_message_opens_it_again_and_new_questions_can_be_listed(project, tmp_path):
    store = ReviewStore(tmp_path / "review.db")
    missed = store.record(
        "kommt die rechnung auch mit der post zu mir", "a", "contradicted", "faq_erhalte_rechnung", 0.96, [], "said_no"
    )
    wish = store.record("ich wünsche mir eine dunkle ansicht", "b", "fallback", "nlu_fallback", 0.6, [])
    store.close()
    queue = str(tmp_path / "review.db")
    reviewed = trainer(project, "review", "--datei", queue, stdin="erhalte_rechnung\nn\n")
    assert reviewed.returncode == 0, reviewed.stderr
    listed = trainer(project, "list", "--neue-fragen", "--datei", queue).stdout
    assert f"#{wish}" in listed and "„ich wünsche mir eine dunkle ansicht“" in listed
    assert f"(review #{missed})" in trainer(project, "list").stdout
    undone = trainer(project, "undo", "--datei", queue)
    assert undone.returncode == 0 and f"Die Nachricht #{missed} ist wieder offen" in undone.stdout
    store = ReviewStore(tmp_path / "review.db")
    assert [entry.id for entry in store.entries(status="open")] == [missed]
    store.close()
