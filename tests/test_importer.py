"""The FAQ importer: text and HTML pages, and re-imports that keep the trainers' work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR
from faqbot.tools.importer import parse_html, parse_page, parse_text, run_import, slugify

SEED = PROJECT_DIR / "data" / "faq_seite.txt"


@pytest.fixture(scope="module")
def seed_entries():
    return parse_text(SEED.read_text(encoding="utf-8"))


def as_tuples(entries):
    return [(e.id, e.category, e.question, e.answer) for e in entries]


def test_text_page_gives_24_questions_in_4_categories(seed_entries):
    assert len(seed_entries) == 24
    assert [e.category for e in seed_entries].count("Allgemeine Fragen") == 6
    assert len({e.category for e in seed_entries}) == 4
    assert seed_entries[0].question == "Wie erstelle ich ein Kundenkonto?"
    assert seed_entries[-1].answer.endswith("an unseren Vertrieb oder die Rechtsabteilung.")
    assert all("Antwort anzeigen" not in e.answer and "Weitere Fragen" not in e.answer for e in seed_entries)


def test_ids_are_stable_slugs(seed_entries):
    assert slugify("Wie kann ich meine Zahlungsdaten ändern?") == "zahlungsdaten_aendern"
    assert len({e.id for e in seed_entries}) == 24
    assert as_tuples(seed_entries) == as_tuples(load().values())


def html_page(entries, style: str) -> str:
    parts = ["<html><body><h1>FAQ – Häufig gestellte Fragen</h1><p>Einleitung.</p>"]
    category = None
    for e in entries:
        if e.category != category:
            category = e.category
            parts.append(f"<h2>{category}</h2>")
        if style == "details":
            parts.append(f"<details><summary>{e.question}</summary><p>{e.answer}</p></details>")
        elif style == "dl":
            parts.append(f"<dl><dt>{e.question}</dt><dd>{e.answer}</dd></dl>")
        else:
            parts.append(f"<h3>{e.question}</h3><p>{e.answer}</p>")
    parts.append("<footer><p>Weitere Fragen? Schreiben Sie uns.</p></footer></body></html>")
    return "\n".join(parts)


@pytest.mark.parametrize("style", ["details", "dl", "heading"])
def test_html_page_gives_the_same_questions(seed_entries, style):
    assert as_tuples(parse_html(html_page(seed_entries, style))) == as_tuples(seed_entries)


def test_links_in_html_answers_stay_clickable():
    html = (
        "<h2>Allgemein</h2><details><summary>Wo finde ich die AGB?</summary>"
        '<p>Die AGB finden Sie <a href="https://example.com/agb">hier</a>.</p></details>'
    )
    [entry] = parse_html(html)
    assert entry.answer == "Die AGB finden Sie [hier](https://example.com/agb) ."


def copy_project(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT_DIR / "data", tmp_path / "data")
    shutil.copy(PROJECT_DIR / "domain.yml", tmp_path / "domain.yml")
    return tmp_path


def test_reimport_of_a_changed_page_keeps_phrasings_and_reports(tmp_path, seed_entries):
    project = copy_project(tmp_path)
    nlu_file = project / "data" / "nlu" / "faq.yml"
    nlu_before = nlu_file.read_text(encoding="utf-8")
    entries = parse_text(SEED.read_text(encoding="utf-8"))
    entries[1].answer = "Wir akzeptieren nur noch PayPal."  # changed answer
    entries[6].question = "Wie erhalte ich meine Rechnung?"  # reworded question
    removed = entries.pop(8)  # removed question
    page = project / "neu.html"
    page.write_text(
        html_page(entries, "details").replace(
            "<h2>Technik",
            "<details><summary>Gibt es eine Dark-Mode-Ansicht?</summary>"
            "<p>Ja, in den Einstellungen.</p></details><h2>Technik",
        ),
        encoding="utf-8",
    )

    report = run_import(page, project=project)

    assert report.added == ["dark_mode_ansicht"]
    assert set(report.changed) == {entries[1].id, entries[6].id}
    assert report.removed == [removed.id]
    knowledge = load(project / "data" / "faq.yml")
    assert knowledge[entries[1].id].answer == "Wir akzeptieren nur noch PayPal."
    assert knowledge[entries[6].id].question == "Wie erhalte ich meine Rechnung?"
    assert removed.id in knowledge  # not dropped silently
    nlu_after = nlu_file.read_text(encoding="utf-8")
    old_phrasings = [line for line in nlu_before.splitlines() if line.strip().startswith("- ")]
    assert all(line in nlu_after for line in old_phrasings)
    assert nlu_after.startswith(nlu_before.split("version:")[0])  # header comments kept
    assert "- Wie erhalte ich meine Rechnung?" in nlu_after
    assert "faq_dark_mode_ansicht" in nlu_after
    domain = YAML(typ="safe").load((project / "domain.yml").read_text(encoding="utf-8"))
    assert "faq_dark_mode_ansicht" in domain["intents"]
    assert "intent: faq_dark_mode_ansicht" in (project / "data/rules/faq.yml").read_text()

    report = run_import(page, project=project, remove_missing=True)
    assert report.removed == [removed.id] and not report.added
    assert removed.id not in load(project / "data" / "faq.yml")
    assert f"faq_{removed.id}" not in nlu_file.read_text(encoding="utf-8")
    assert f"faq_{removed.id}" not in (project / "domain.yml").read_text(encoding="utf-8")


def test_dry_run_writes_nothing(tmp_path):
    project = copy_project(tmp_path)
    before = (project / "data" / "faq.yml").read_text(encoding="utf-8")
    report = run_import(SEED, project=project, dry_run=True)
    assert len(report.unchanged) == 24 and not report.added
    assert (project / "data" / "faq.yml").read_text(encoding="utf-8") == before


def test_page_without_questions_is_refused(tmp_path):
    page = tmp_path / "leer.txt"
    page.write_text("Nur Text, keine Fragen.", encoding="utf-8")
    with pytest.raises(SystemExit):
        parse_page(page)
