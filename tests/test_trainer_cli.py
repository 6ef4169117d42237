"""Support staff see no warnings of third-party libraries: every step of faqbot-trainer,
run as they run it (the console script, in their environment)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from test_trainer import copy_project

from faqbot.core.paths import PROJECT_DIR

TRAINER = Path(sys.executable).with_name("faqbot-trainer")


def run(*args: str) -> subprocess.CompletedProcess:
    # A trainer's shell sets neither; either would hide what they would see.
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONWARNINGS", "TF_CPP_MIN_LOG_LEVEL")}
    return subprocess.run(
        [str(TRAINER), *args], capture_output=True, text=True, cwd=PROJECT_DIR, env=env, stdin=subprocess.DEVNULL
    )


def test_no_warning_lines_in_any_step(model_path: Path, tmp_path: Path):
    project = tmp_path / "projekt"
    project.mkdir()
    copy_project(project)
    steps = [
        (["--help"], "Schritte"),
        (["faqs"], "erhalte_rechnung"),
        (["review", "--datei", str(tmp_path / "leer.db")], "Keine offenen Nachrichten"),
        (["--projekt", str(project), "train"], "kein Training nötig"),
        (
            ["--projekt", str(project), "add-phrasing", "erhalte_rechnung", "wo kann ich die rechnung runterladen"],
            "Hinzugefügt zu faq_erhalte_rechnung",
        ),
        (
            ["evaluate", "--ohne-kreuzvalidierung", "--ordner", str(tmp_path / "bericht")],
            model_path.name,
        ),
    ]
    for args, done in steps:
        result = run(*args)
        assert result.returncode == 0 and done in result.stdout, (args, result.stdout, result.stderr)
        for name, output in (("stdout", result.stdout), ("stderr", result.stderr)):
            warnings = [line for line in output.splitlines() if "Warning:" in line]
            assert not warnings, (args, name, warnings)
