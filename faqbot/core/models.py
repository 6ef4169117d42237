"""Which trained model belongs to the project's current data: models are named after a hash
of everything that shapes them, so an unchanged project reuses its model
(``faqbot.tools.train`` trains; the servers and tools look the model up here).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from faqbot.core import spacy_model
from faqbot.core.paths import PROJECT_DIR

MODELS_DIR = PROJECT_DIR / "models"
# Files under data/ that do not shape the model. Paths, not names. data/faq.yml does: the
# action server reads the answers from it at run time (a corrected answer is sent at once),
# and the NLU's FaqKnowledgeRanker learns the words of its questions and answers.
NOT_TRAINING_DATA = {Path("data/faq_seite.txt")}


# The project's own NLU components (config.yml names them): their code shapes the model
# too. The installed code, also for a copy of the project's data (the trainers' tests).
NLU_COMPONENTS = PROJECT_DIR / "faqbot" / "nlu"


def training_inputs(project: Path = PROJECT_DIR) -> list[Path]:
    data = sorted(p for p in (project / "data").rglob("*.yml") if p.relative_to(project) not in NOT_TRAINING_DATA)
    return [project / "config.yml", project / "domain.yml", *data]


def model_hash(project: Path = PROJECT_DIR) -> str:
    digest = hashlib.sha256()
    for path in training_inputs(project):
        digest.update(str(path.relative_to(project)).encode())
        digest.update(path.read_bytes())
    for path in sorted(NLU_COMPONENTS.glob("*.py")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(f"{spacy_model.MODEL}=={spacy_model.installed_version()}".encode())
    return digest.hexdigest()[:16]


def model_path(project: Path = PROJECT_DIR, models_dir: Path = MODELS_DIR) -> Path:
    return models_dir / f"faq-bot-{model_hash(project)}.tar.gz"


def newest_model(models_dir: Path = MODELS_DIR) -> Path | None:
    """The model trained (or reused) last, as `rasa shell` and `rasa test` pick it."""
    models = list(models_dir.glob("faq-bot-*.tar.gz"))
    return max(models, key=lambda model: model.stat().st_mtime) if models else None
