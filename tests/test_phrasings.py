"""faqbot.core.phrasings.remove_phrasing: an erasure request takes a phrasing out of the
training data again, exactly that line and nothing else."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
from test_trainer import copy_project

from faqbot.core.phrasings import add_phrasing_as_written, read_examples, remove_phrasing


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path)


def texts(project: Path) -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in sorted((project / "data" / "nlu").glob("*.yml"))}


def test_removing_an_added_phrasing_restores_the_file_exactly(project):
    before = texts(project)
    added = add_phrasing_as_written("erhalte_rechnung", "rechnung an max(at)example.org bitte", project)
    assert texts(project) != before
    assert remove_phrasing(added.intent, added.phrasing, project) is True
    assert texts(project) == before
    assert remove_phrasing(added.intent, added.phrasing, project) is False  # gone already


def test_only_that_line_of_that_intent_goes(project):
    nlu = project / "data" / "nlu" / "faq.yml"
    example = read_examples(nlu)["faq_erhalte_rechnung"][3]
    before = texts(project)
    assert remove_phrasing("faq_gehen_daten", example, project) is False  # belongs to another intent
    assert remove_phrasing("erhalte_rechnung", example.upper() + " bitte", project) is False  # not exactly it
    assert remove_phrasing("gibt_es_nicht", example, project) is False  # an FAQ removed since
    assert texts(project) == before
    assert remove_phrasing("erhalte_rechnung", example, project) is True  # an FAQ id works too
    after = nlu.read_text(encoding="utf-8").splitlines()
    changes = [line for line in difflib.ndiff(before[nlu].splitlines(), after) if line[:1] in "+-?"]
    assert changes == [f"-       - {example}"]
    assert example not in read_examples(nlu)["faq_erhalte_rechnung"]


def test_out_of_scope_phrasings_in_general_yml(project):
    general = project / "data" / "nlu" / "general.yml"
    added = add_phrasing_as_written("out_of_scope", "verkauft ihr auch pferde", project)
    assert remove_phrasing("out_of_scope", "verkauft ihr auch pferde", project) is True
    assert added.phrasing not in read_examples(general)["out_of_scope"]
