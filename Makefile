# German FAQ bot on Rasa 3.6. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL := 2

help:  ## Diese Übersicht
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock scripts/find-python310.sh
	@python=$$(scripts/find-python310.sh) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "Virtuelle Umgebung $(VENV) mit $$python"; rm -rf $(VENV); "$$python" -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --upgrade 'pip==24.0' 'setuptools==70.3.0' 'wheel==0.45.1'
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(PY) -m faqbot.spacy_model ensure
	@# Plain `rasa test` looks for test_*.yml stories in the whole project, .venv included,
	@# and would run the sample stories of `rasa init` against this bot.
	rm -f $(VENV)/lib/python3.10/site-packages/rasa/cli/initial_project/tests/test_stories.yml
	@touch $@

install: $(VENV)/.installed  ## Python 3.10 finden, .venv anlegen, Pakete + spaCy-Modell installieren

spacy-official: install  ## Das offizielle de_core_news_sm nachinstallieren (braucht Netz)
	$(PY) -m faqbot.spacy_model official

train: install  ## Modell trainieren, falls Daten oder Konfiguration sich geändert haben
	$(PY) -m faqbot.train

validate: install  ## rasa data validate
	$(BIN)/rasa data validate --fail-on-warnings

run: train  ## Action-Server (5055) und Rasa-Server (5005) starten; Strg-C beendet beide
	$(PY) -m faqbot.serve

test: train  ## Alle Tests (pytest), richtet vorher alles Fehlende ein
	$(PY) -m pytest $(PYTEST_ARGS)

bench: train  ## Benchmark: Trainingszeit, Modellgröße, Latenz, Durchsatz, Speicher, Genauigkeit
	$(PY) -m faqbot.bench

import-faq: install  ## FAQ-Seite neu einlesen: make import-faq PAGE=data/faq_seite.txt
	$(PY) -m faqbot.importer $(or $(PAGE),data/faq_seite.txt)

clean:  ## Modelle, Laufzeitdaten und Ergebnisse löschen (nicht .venv)
	rm -rf models var results .pytest_cache

.PHONY: help install spacy-official train validate run test bench import-faq clean
