"""Train the Rasa model only when its inputs changed.

    python -m faqbot.tools.train            # prints the model path; trains if needed
    python -m faqbot.tools.train --force    # train even if a model for these inputs exists

A model is named after a hash of everything that shapes it: config.yml, domain.yml,
the training data (NLU and rules), the FAQ knowledge in data/faq.yml (the NLU learns the
words of its questions and answers) and the installed spaCy model. An unchanged project reuses
its model in ~0 s, so ``make run`` and ``make test`` stay fast the second time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from faqbot.core import spacy_model
from faqbot.core.models import MODELS_DIR, model_path
from faqbot.core.paths import PROJECT_DIR

KEEP_MODELS = 5


def train(force: bool = False, project: Path = PROJECT_DIR, models_dir: Path = MODELS_DIR) -> Path:
    """The model for the project's current data; trains only if there is none yet.
    ``models_dir`` lets a copy of the project (tests) keep its models apart."""
    target = model_path(project, models_dir)
    if target.exists() and not force:
        os.utime(target)  # newest model = the one `rasa shell` / `rasa test` pick up
        print(f"Modell aktuell, kein Training nötig: {target.name}", file=sys.stderr)
        return target
    if spacy_model.is_standin():
        print(spacy_model.warning_banner(), file=sys.stderr)
    print(f"Trainiere {target.name} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "faqbot.tools.rasa_cli",  # `rasa train`, without telemetry and known warnings
            "train",
            "--fixed-model-name",
            target.name[: -len(".tar.gz")],
            "--out",
            str(models_dir),
            "--config",
            "config.yml",
            "--domain",
            "domain.yml",
            "--data",
            "data",
            "--force",
        ],
        cwd=project,
        check=True,
        stdout=sys.stderr,
    )
    print(f"Training: {time.monotonic() - started:.0f} s", file=sys.stderr)
    remove_old_models(models_dir)
    return target


def remove_old_models(models_dir: Path = MODELS_DIR, keep: int = KEEP_MODELS) -> None:
    """Each data change adds a model of ~25 MB; keep the newest few (a switch back to
    earlier data then needs no retraining) and delete the rest."""
    models = sorted(models_dir.glob("faq-bot-*.tar.gz"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in models[keep:]:
        old.unlink(missing_ok=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.tools.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--force", action="store_true", help="auch ohne Änderung trainieren")
    args = parser.parse_args()
    print(train(force=args.force).relative_to(PROJECT_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main())
