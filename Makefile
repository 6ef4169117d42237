# German FAQ bot on Rasa 3.6. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
export PYTHONDONTWRITEBYTECODE := 1
export TF_CPP_MIN_LOG_LEVEL := 2
# Rasa telemetry off (usage data and crash reports to Rasa's servers; no network at run time).
export RASA_TELEMETRY_ENABLED ?= false

help:  ## Diese Übersicht
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml requirements.lock scripts/find-python310.sh
	@python=$$(scripts/find-python310.sh) || exit 1; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))'; then \
	  echo "Virtuelle Umgebung $(VENV) mit $$python"; rm -rf $(VENV); "$$python" -m venv $(VENV) || exit 1; fi
	$(PY) -m pip install --quiet --upgrade 'pip==24.0' 'setuptools==70.3.0' 'wheel==0.45.1'
	$(PY) -m pip install --quiet -c requirements.lock -e '.[dev]'
	$(PY) -m faqbot.tools.spacy_model ensure
	@# Plain `rasa test` looks for test_*.yml stories in the whole project, .venv included,
	@# and would run the sample stories of `rasa init` against this bot.
	rm -f $(VENV)/lib/python3.10/site-packages/rasa/cli/initial_project/tests/test_stories.yml
	@touch $@

# The chat widget's library (socket.io-client) and axe-core for the accessibility tests, from npm:
# served by the help-centre page, no CDN at run time.
web/node_modules/.installed: web/package.json web/package-lock.json
	@command -v npm >/dev/null || { echo "npm fehlt: bitte Node.js mit npm installieren (Debian: apt-get install nodejs npm)." >&2; exit 1; }
	cd web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed web/node_modules/.installed  ## Python 3.10 finden, .venv anlegen, Pakete, spaCy-Modell und Chat-Widget installieren

# Debian's Chromium for the browser tests (Playwright drives it; its own browser download
# does not work here).
browser:  ## Chromium für die Browser-Tests installieren (apt, braucht root)
	@if command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium fehlt für die Browser-Tests: bitte 'sudo apt-get install chromium' ausführen." >&2; exit 1; fi

# PostgreSQL, Redis and nginx for `make cluster` and the tests, docker-compose to check the
# compose file: Debian's packages, started by us on loopback (never as services of the host).
components:  ## PostgreSQL, Redis, nginx und docker-compose installieren (apt, braucht root)
	@bash scripts/install-components.sh

spacy-official: install  ## Das offizielle de_core_news_sm nachinstallieren (braucht Netz)
	$(PY) -m faqbot.tools.spacy_model official

train: install  ## Modell trainieren, falls Daten oder Konfiguration sich geändert haben
	$(PY) -m faqbot.tools.train

validate: install  ## rasa data validate
	$(BIN)/rasa data validate --fail-on-warnings

run: train  ## Action-Server (5055), Rasa-Server (5005), NLU-Server (5006) und Hilfe-Center mit Chat-Widget (8080) starten
	$(PY) -m faqbot.server.serve

cluster: train components  ## Mehrere Instanzen wie in Produktion: PostgreSQL, Redis, nginx (:8000), zwei Rasa-Instanzen
	$(PY) -m faqbot.cluster.run

lint: install  ## Ruff: Fehler- und Stilprüfung, Formatierung prüfen (ändert nichts)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## Ruff: Code formatieren und einfache Funde beheben
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# On both cores (pytest-xdist): the unit tests are independent of each other.
test-unit: install components  ## Schnelle Tests ohne trainiertes Modell und Browser (unter einer Minute)
	$(PY) -m pytest -m unit -n 2 $(PYTEST_ARGS)

# Fast checks first: a lint error or a failing unit test stops before training and Chromium.
test: install lint test-unit train browser components  ## Alle Tests: Ruff, schnelle Tests, dann Training, Chromium und der Rest
	$(PY) -m pytest -m "not unit" $(PYTEST_ARGS)

bench: train  ## Benchmark: Trainingszeit, Modellgröße, Latenz, Durchsatz, Speicher, Genauigkeit
	$(PY) -m faqbot.tools.bench

bench-cluster: train components  ## Benchmark: make run gegen make cluster (zwei Instanzen) im selben Lauf
	$(PY) -m faqbot.tools.bench --cluster

import-faq: install  ## FAQ-Seite neu einlesen: make import-faq PAGE=data/faq_seite.txt
	$(PY) -m faqbot.tools.importer $(or $(PAGE),data/faq_seite.txt)

trainer: install  ## Trainer-Werkzeug: make trainer ARGS='add-phrasing 16 "geht apple pay"' (Schritte: make trainer ARGS=--help)
	$(PY) -m faqbot.tools.trainer $(or $(ARGS),--help)

inbox: install  ## Posteingang der Trainer im Browser: http://127.0.0.1:5007/ (FAQBOT_TRAINER_TOKEN setzen)
	$(PY) -m faqbot.tools.trainer_inbox

datenschutz: install  ## Auskunft, Löschung, Aufbewahrung: make datenschutz ARGS="auskunft --email kunde@example.org"
	$(PY) -m faqbot.tools.datenschutz $(or $(ARGS),--help)

clean:  ## Modelle, Laufzeitdaten und Ergebnisse löschen (nicht .venv)
	rm -rf models results .pytest_cache
	find var -mindepth 1 ! -name .gitkeep -delete

.PHONY: help install browser components spacy-official train validate run cluster lint format test-unit test bench bench-cluster import-faq trainer inbox datenschutz clean
