"""The spaCy model named in config.yml is installed and labelled for what it is."""

from __future__ import annotations

import subprocess
import sys

import spacy

from faqbot.core import spacy_model
from faqbot.core.paths import PROJECT_DIR


def test_config_names_the_installed_german_model():
    assert "model: de_core_news_sm" in (PROJECT_DIR / "config.yml").read_text(encoding="utf-8")
    nlp = spacy.load(spacy_model.MODEL)
    assert nlp.lang == "de"
    assert nlp.meta["version"] == spacy_model.installed_version()


def test_a_stand_in_never_passes_for_the_official_model():
    nlp = spacy.load(spacy_model.MODEL)
    status = subprocess.run(
        [sys.executable, "-m", "faqbot.tools.spacy_model", "status"], capture_output=True, text=True, cwd=PROJECT_DIR
    )
    assert status.returncode == 0
    if spacy_model.is_standin():
        assert nlp.meta["version"].endswith("+offline")
        assert "OFFLINE STAND-IN" in nlp.meta["description"]
        assert "OFFLINE-ERSATZ" in status.stdout and "ACHTUNG" in status.stdout
        assert nlp.pipe_names == ["lemmatizer"]
        assert nlp("Rechnungen")[0].lemma_ == "Rechnung"  # the lookup lemmatizer works
    else:
        assert "offizielles spaCy-Modell" in status.stdout and "ACHTUNG" not in status.stdout
        assert {"tagger", "parser"} & set(nlp.pipe_names)
