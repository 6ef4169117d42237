#!/usr/bin/env bash
# Prints the path of a Python 3.10 interpreter (Rasa 3.6 runs on 3.8-3.10 only).
# Order: $PYTHON310, python3.10 on PATH (pyenv honours .python-version), pyenv's versions.
set -u
is_310() { [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }
candidates=("${PYTHON310:-}" "$(command -v python3.10 2>/dev/null)")
pyenv_root=$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")
for dir in "$pyenv_root"/versions/3.10*/bin; do candidates+=("$dir/python3.10"); done
candidates+=(/usr/bin/python3.10 /usr/local/bin/python3.10)
for python in "${candidates[@]}"; do
  if [ -n "$python" ] && is_310 "$python"; then echo "$python"; exit 0; fi
done
cat >&2 <<'MSG'
FEHLER: Kein Python 3.10 gefunden. Rasa 3.6 läuft nur mit Python 3.8 bis 3.10.
So installieren Sie es:
  - mit pyenv:   pyenv install 3.10.13   (die Datei .python-version wählt es dann aus)
  - mit Debian:  apt-get install python3.10 python3.10-venv (wo verfügbar)
Oder geben Sie den Pfad an:  make install PYTHON310=/pfad/zu/python3.10
MSG
exit 1
