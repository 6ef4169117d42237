"""Auswertungsbericht für Trainer: Wie gut erkennt der Bot die FAQ-Fragen, und was hat sich geändert?

Der Bericht (HTML) prüft das aktuelle Modell auf den Testdaten (tests/nlu_heldout.yml, nie
trainiert) und, per Kreuzvalidierung, auf den eigenen Trainingsdaten: Die Formulierungen
werden in N Teile geteilt, N Modelle werden mit je N-1 Teilen trainiert und am übrigen
Teil geprüft. Der Bericht zeigt je FAQ-Frage Präzision, Trefferquote und F1, die
Verwechslungsmatrix als Bild, die am häufigsten verwechselten Fragen mit Beispielen und
die Veränderung gegenüber dem vorherigen Lauf (besser/schlechter).

Dauer auf einem Rechner mit 2 Kernen: ohne Kreuzvalidierung etwa 1 Minute (plus etwa
1 Minute Training, falls sich die Daten seit dem letzten Training geändert haben); die
Kreuzvalidierung trainiert zusätzlich ein Modell je Teil, etwa 1 Minute je Teil
(Standard: 3 Teile, also etwa 3–4 Minuten mehr).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from faqbot.core import knowledge, spacy_model, trainer_journal
from faqbot.core.intents import GENERAL_INTENTS, faq_id_for
from faqbot.core.paths import PROJECT_DIR
from faqbot.tools.evaluate import DEFAULT_TEST_SET, Evaluation, best_intent, classify, read_examples, score

DEFAULT_OUT_DIR = PROJECT_DIR / "results" / "bericht"
DEFAULT_TRAINING_DATA = PROJECT_DIR / "data" / "nlu"
REPORT_FILE = "bericht.html"
HISTORY_FILE = "verlauf.json"  # figures of every run, so the next run can compare
NO_INTENT = "(keiner)"
# F1 changes smaller than this are rounding noise, not "besser"/"schlechter".
TOLERANCE = 0.01
# Fewer messages of an FAQ coming out differently than this are noise of retraining.
NOISE_MESSAGES = 2
# The held-out source: its messages' recognised intents are kept, for „Jetzt anders erkannt“.
HELD_OUT = "testdaten"
TOP_PAIRS = 10
# Every FAQ question has at least 12 phrasings (tests/test_data.py); more folds would leave
# some intents out of some folds, and each fold costs a minute of training.
MAX_FOLDS = 10
EXAMPLES_PER_PAIR = 3
WEAK_F1 = 0.8  # rows below this are highlighted
# What the trainer reads for intents that are not FAQ questions.
INTENT_NAMES = {**GENERAL_INTENTS, NO_INTENT: "nichts erkannt"}


@dataclass
class Source:
    """Labelled messages and the model's parses: the test set, or all folds of the cross-validation."""

    key: str
    title: str
    examples: list[tuple[str, str]]
    parses: list[dict]
    note: str  # what the trainer should know about these figures

    @cached_property
    def evaluation(self) -> Evaluation:
        return score(self.examples, self.parses)

    @cached_property
    def pairs(self) -> list[tuple[str, str, str]]:
        """(text, expected intent, best intent) for every message."""
        return [
            (text, expected, best_intent(parse) or NO_INTENT)
            for (text, expected), parse in zip(self.examples, self.parses, strict=True)
        ]


# --- Running the evaluations ------------------------------------------------------------


def held_out(model: Path, test_set: Path) -> Source:
    examples = read_examples(test_set)
    return Source(
        "testdaten",
        "Testdaten",
        examples,
        classify(model, [text for text, _ in examples]),
        "Nachrichten, mit denen der Bot nie trainiert wurde: So erlebt ihn ein Kunde.",
    )


def fold_splits(intents: list[str], folds: int, seed: int = 42) -> list[tuple[list[int], list[int]]]:
    """Indices (train, test) per fold; every intent is spread evenly over the folds."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(list(train), list(test)) for train, test in splitter.split(intents, intents)]


def cross_validate(training_data: Path, folds: int, config: Path = PROJECT_DIR / "config.yml") -> Source:
    """Train one model per fold with the project's config and parse the fold it did not see."""
    from rasa.model_training import train_nlu
    from rasa.shared.nlu.training_data.loading import load_data
    from rasa.shared.nlu.training_data.training_data import TrainingData

    messages = load_data(str(training_data)).intent_examples
    examples, parses = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number, (train, test) in enumerate(fold_splits([m.get("intent") for m in messages], folds), 1):
            print(
                f"Kreuzvalidierung Teil {number}/{folds}: Training mit {len(train)} Formulierungen, "
                f"Prüfung mit {len(test)} …",
                flush=True,
            )
            started = time.monotonic()
            fold_data = Path(tmp, f"teil-{number}.yml")  # intents only: the data has no entities or synonyms
            fold_data.write_text(
                TrainingData(training_examples=[messages[i] for i in train]).nlu_as_yaml(), encoding="utf-8"
            )
            model = train_nlu(str(config), str(fold_data), str(Path(tmp, "modelle")), fixed_model_name=f"teil-{number}")
            fold_examples = [(messages[i].get("text"), messages[i].get("intent")) for i in test]
            examples += fold_examples
            parses += classify(Path(model), [text for text, _ in fold_examples])
            print(f"Kreuzvalidierung Teil {number}/{folds}: fertig nach {time.monotonic() - started:.0f} s", flush=True)
    return Source(
        "kreuzvalidierung",
        f"Kreuzvalidierung ({folds} Teile)",
        examples,
        parses,
        f"Die Formulierungen der Trainingsdaten wurden in {folds} Teile geteilt; jeder Teil wurde von "
        "einem Modell geprüft, das nur mit den anderen Teilen trainiert wurde. Weil diese Modelle weniger "
        "Formulierungen kennen, liegen die Zahlen unter denen der Testdaten. Aussagekräftig sind die "
        "Veränderung gegenüber dem vorherigen Lauf und die Verwechslungen.",
    )


# --- Figures ----------------------------------------------------------------------------


def ordered_labels(intents) -> list[str]:
    """FAQ intents in the order of the FAQ page, then the others alphabetically."""
    page = [entry.intent for entry in knowledge.load().values()]
    present = set(intents)
    return [i for i in page if i in present] + sorted(present - set(page))


def per_intent(source: Source) -> dict[str, dict[str, float]]:
    from sklearn.metrics import precision_recall_fscore_support

    _, expected, best = zip(*source.pairs, strict=True)
    labels = ordered_labels(expected)
    precision, recall, f1, support = precision_recall_fscore_support(expected, best, labels=labels, zero_division=0)
    return {
        label: {"praezision": float(p), "trefferquote": float(r), "f1": float(f), "anzahl": int(s)}
        for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
    }


def confused_pairs(source: Source, top: int = TOP_PAIRS) -> list[tuple[tuple[str, str], int, list]]:
    """The pairs of intents mixed up most often (either way round), with example messages."""
    examples = defaultdict(list)
    for text, expected, best in source.pairs:
        if expected != best:
            examples[tuple(sorted((expected, best)))].append((text, expected, best))
    ranked = sorted(examples.items(), key=lambda item: -len(item[1]))[:top]
    return [(pair, len(found), found[:EXAMPLES_PER_PAIR]) for pair, found in ranked]


def short(intent: str) -> str:
    return faq_id_for(intent) or intent


def confusion_png(source: Source, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    _, expected, best = zip(*source.pairs, strict=True)
    labels = ordered_labels(set(expected) | set(best))
    counts = confusion_matrix(expected, best, labels=labels)
    # Colour by the share of each row, so a rare intent's mix-ups show as clearly as a common one's.
    shares = counts / counts.sum(axis=1, keepdims=True).clip(min=1)
    size = max(6.0, 0.32 * len(labels) + 3)  # inches at 100 dpi: room for 30+ labels
    figure, axes = plt.subplots(figsize=(size, size))
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    names = [short(label) for label in labels]
    axes.set_xticks(range(len(labels)), names, rotation=90, fontsize=8)
    axes.set_yticks(range(len(labels)), names, fontsize=8)
    axes.set_xlabel("erkannt als")
    axes.set_ylabel("richtige Frage")
    axes.set_title(f"Verwechslungsmatrix – {source.title}")
    for row in range(len(labels)):
        for column in range(len(labels)):
            if counts[row, column]:
                axes.text(
                    column,
                    row,
                    str(counts[row, column]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if shares[row, column] > 0.5 else "black",
                )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# verlauf.json names the figures of faqbot.tools.evaluate.Evaluation in German. Files written
# before used the field names and sklearn's per-intent names: load_history renames those.
METRIC_KEYS = {
    "examples": "nachrichten",
    "intent_accuracy": "intent_genauigkeit",
    "accuracy_with_fallback": "genauigkeit_rueckfrage_als_fehler",
    "faq_examples": "faq_nachrichten",
    "faq_answered_right": "faq_sofort_richtig",
    "faq_right_via_buttons": "faq_richtig_ueber_rueckfrage",
    "faq_wrong_answer": "faq_falsche_antwort",
    "faq_no_answer": "faq_support_angeboten",
    "other_examples": "andere_nachrichten",
    "other_got_faq_answer": "andere_mit_faq_antwort",
}
OLD_INTENT_KEYS = {"precision": "praezision", "recall": "trefferquote", "support": "anzahl"}


def figures(evaluation: Evaluation) -> dict[str, float]:
    return {METRIC_KEYS[key]: value for key, value in asdict(evaluation).items() if key != "confusions"}


def _counts(row: dict) -> tuple[int, int, int]:
    """(right, wrongly this FAQ, missed) messages of one FAQ's row."""
    right = round(row.get("trefferquote", 0) * row.get("anzahl", 0))
    wrongly = round(right / row["praezision"] - right) if row.get("praezision") else 0
    return right, wrongly, row.get("anzahl", 0) - right


def verdict(before: dict | None, after: dict) -> str:
    """„besser“/„schlechter“ only beyond noise: the F1 moved and at least NOISE_MESSAGES
    messages of this FAQ came out differently (a retrained model shifts a message here and there)."""
    if before is None or "f1" not in before:
        return "neu"
    (right, wrongly, missed), (right_before, wrongly_before, missed_before) = _counts(after), _counts(before)
    # A message now right is one right more and one missed less: it counts once.
    moved = max(abs(right - right_before), abs(missed - missed_before)) + abs(wrongly - wrongly_before)
    if abs(after["f1"] - before["f1"]) <= TOLERANCE or moved < NOISE_MESSAGES:
        return "unverändert"
    return "besser" if after["f1"] > before["f1"] else "schlechter"


def recognised_differently(source: Source, before: dict[str, str] | None) -> dict[str, Any]:
    """„Jetzt anders erkannt“: the messages (in both runs) whose best intent changed, counted."""
    rows = []
    for text, expected, best in source.pairs:
        old = (before or {}).get(text)
        if old is None or old == best:
            continue
        what = "jetzt richtig" if best == expected else "jetzt falsch" if old == expected else "anders falsch"
        rows.append({"text": text, "before": short(old), "now": short(best), "expected": short(expected), "what": what})
    rows.sort(key=lambda row: (["jetzt falsch", "anders falsch", "jetzt richtig"].index(row["what"]), row["text"]))
    return {"compared": before is not None, "rows": rows, "tally": Counter(row["what"] for row in rows)}


# --- History ----------------------------------------------------------------------------


def load_history(out_dir: Path) -> list[dict]:
    path = out_dir / HISTORY_FILE
    runs = json.loads(path.read_text(encoding="utf-8"))["laeufe"] if path.exists() else []
    for run in runs:  # German keys also for runs written before they were German
        for source in run["quellen"].values():
            source["kennzahlen"] = {METRIC_KEYS.get(key, key): value for key, value in source["kennzahlen"].items()}
            source["je_intent"] = {
                intent: {OLD_INTENT_KEYS.get(key, key): value for key, value in values.items()}
                for intent, values in source["je_intent"].items()
            }
    return runs


def save_history(out_dir: Path, runs: list[dict]) -> None:
    (out_dir / HISTORY_FILE).write_text(json.dumps({"laeufe": runs}, ensure_ascii=False, indent=1), encoding="utf-8")


# --- HTML -------------------------------------------------------------------------------


def number(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}".replace(".", ",")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %".replace(".", ",")


TEMPLATES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),  # the report quotes customers' messages
    undefined=StrictUndefined,  # a misspelt name stops the report instead of leaving a gap
    trim_blocks=True,
    lstrip_blocks=True,
)
TEMPLATES.filters.update(zahl=number, prozent=percent)

Describe = Callable[[str], dict[str, str]]  # intent -> {"id": FAQ ID, "question": what the trainer reads}

SUMMARY_ROWS = [
    ("intent_genauigkeit", "Intent-Genauigkeit (bester Intent)"),
    ("genauigkeit_rueckfrage_als_fehler", "Genauigkeit, Rückfrage als Fehler gezählt"),
    ("faq_sofort_richtig", "FAQ-Nachrichten sofort richtig beantwortet"),
    ("faq_richtig_ueber_rueckfrage", "… richtig über „Meinten Sie …?“"),
    ("faq_falsche_antwort", "… mit einer falschen FAQ-Antwort beantwortet"),
    ("faq_support_angeboten", "… Support-Team angeboten statt einer Antwort"),
    ("andere_mit_faq_antwort", "Andere Nachrichten (Smalltalk, fremde Themen) mit FAQ-Antwort"),
]


def summary(sources: list[Source], previous: dict | None) -> list[tuple[str, list[float | None]]]:
    """(label, figure per source, each followed by the previous run's when there is one)."""
    rows = []
    for key, label in SUMMARY_ROWS:
        values = []
        for source in sources:
            values.append(figures(source.evaluation)[key])
            if previous:
                values.append(previous["quellen"].get(source.key, {}).get("kennzahlen", {}).get(key))
        rows.append((label, values))
    return rows


def changes(sources: list[Source], metrics: dict[str, dict], previous: dict, intent: Describe) -> list[dict]:
    """Per source: the F1 of which FAQ questions got better or worse since the previous run."""
    result = []
    for source in sources:
        before = previous["quellen"].get(source.key)
        change = {"title": source.title, "compared": bool(before), "other_data": None, "tally": Counter(), "rows": []}
        result.append(change)
        if not before:
            continue
        if before.get("datei") != metrics[source.key]["datei"]:
            change["other_data"] = str(before.get("datei"))
        rows = []
        for name, now in metrics[source.key]["je_intent"].items():
            old = before["je_intent"].get(name)
            word = verdict(old, now)
            change["tally"][word] += 1
            if word != "unverändert":
                rows.append((word, name, (old or {}).get("f1"), now["f1"]))
        order = {"schlechter": 0, "besser": 1, "neu": 2}
        rows.sort(key=lambda row: (order[row[0]], row[1]))
        change["rows"] = [{"verdict": w, "intent": intent(n), "before": o, "now": f} for w, n, o, f in rows]
    return result


def source_section(
    source: Source, metrics: dict, previous: dict | None, image: str, intent: Describe, faq_intents: list[str]
) -> dict:
    """The figures per FAQ question and the confusions of one source; an FAQ question without
    messages in the source (a new one) is listed too, highlighted."""
    before = (previous or {}).get("quellen", {}).get(source.key, {}).get("je_intent", {})
    rows = []
    for name, m in metrics["je_intent"].items():
        old = before.get(name)
        rows.append(
            {
                "intent": intent(name),
                "precision": m["praezision"],
                "recall": m["trefferquote"],
                "f1": m["f1"],
                "support": m["anzahl"],
                "weak": m["f1"] < WEAK_F1,
                "before": (old or {}).get("f1"),
                "verdict": verdict(old, m),
            }
        )
    rows += [
        {
            "intent": intent(name),
            "precision": None,
            "recall": None,
            "f1": None,
            "support": 0,
            "weak": True,
            "before": None,
            "verdict": "keine Nachrichten",
        }
        for name in faq_intents
        if name not in metrics["je_intent"]
    ]
    pairs = [
        {
            "first": intent(first),
            "second": intent(second),
            "count": count,
            "examples": [(text, short(expected), short(best)) for text, expected, best in found],
        }
        for (first, second), count, found in confused_pairs(source)
    ]
    return {
        "key": source.key,
        "title": source.title,
        "note": source.note,
        "messages": source.evaluation.examples,
        "faq_messages": source.evaluation.faq_examples,
        "rows": rows,
        "image": image,
        "pairs": pairs,
    }


def trainer_changes(previous: dict | None, project: Path = PROJECT_DIR) -> list[dict[str, str]]:
    """„Ihre Änderungen“: the phrasings trainers added or removed since the previous run's
    model was trained (all of them without a previous run), as the report starts with them.
    (A baseline is recorded when the next training starts, after the changes it brings.)"""
    if previous is None:
        since = None
    elif "modell_trainiert_utc" in previous:
        since = datetime.fromisoformat(previous["modell_trainiert_utc"])
    else:  # runs recorded before the training time was kept
        since = datetime.strptime(previous["zeit"], "%d.%m.%Y %H:%M:%S").astimezone()
    return [
        {
            "what": "hinzugefügt" if described.change.action == "added" else "entfernt",
            "intent": described.intent,
            "phrasing": described.phrasing or "(nicht mehr in den Trainingsdaten)",
            "source": described.change.source,
        }
        for described in trainer_journal.described_changes(project, since)
    ]


def render(
    sources: list[Source],
    metrics: dict[str, dict],
    run: dict,
    previous: dict | None,
    images: dict[str, str],
    project: Path = PROJECT_DIR,
) -> str:
    questions = {entry.intent: entry.question for entry in knowledge.load(project / "data" / "faq.yml").values()}

    def intent(name: str) -> dict[str, str]:
        return {"id": short(name), "question": questions.get(name) or INTENT_NAMES.get(name, name)}

    head = [
        ("Erstellt", run["zeit"]),
        ("Modell", f"{run['modell']} (trainiert {run['modell_trainiert']})"),
        ("spaCy-Modell", run["spacy"]),
    ]
    head += [(s.title, metrics[s.key]["datei"]) for s in sources]
    before = f"{previous['zeit']} (Modell {previous['modell']})" if previous else "kein vorheriger Lauf"
    head.append(("Vorheriger Lauf", before))
    earlier = (previous or {}).get("quellen", {})
    return TEMPLATES.get_template("bericht.html").render(
        standin=spacy_model.is_standin(),
        head=head,
        previous=previous,
        your_changes=trainer_changes(previous, project),
        differently=[
            {"title": s.title, **recognised_differently(s, earlier.get(s.key, {}).get("erkannt"))}
            for s in sources
            if s.key == HELD_OUT
        ],
        summary=summary(sources, previous),
        changes=changes(sources, metrics, previous, intent) if previous else [],
        sources=[source_section(s, metrics[s.key], previous, images[s.key], intent, list(questions)) for s in sources],
        weak_f1=WEAK_F1,
    )


# --- Command line -----------------------------------------------------------------------


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


def write_report(
    sources: list[Source], model: Path, out_dir: Path, files: dict[str, Path], project: Path = PROJECT_DIR
) -> tuple[Path, dict, dict | None]:
    from rasa.engine.storage.local_model_storage import LocalModelStorage

    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_history(out_dir)
    previous = runs[-1] if runs else None
    trained = LocalModelStorage.metadata_from_archive(model).trained_at.replace(tzinfo=timezone.utc)  # Rasa: UTC
    run = {
        "zeit": datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
        "modell": model.name,
        "modell_trainiert": trained.astimezone().strftime("%d.%m.%Y %H:%M"),
        "modell_trainiert_utc": trained.isoformat(),
        "spacy": spacy_model.describe(),
        "quellen": {},
    }
    images = {}
    for source in sources:
        run["quellen"][source.key] = {
            "datei": relative(files[source.key]),
            "kennzahlen": figures(source.evaluation),
            "je_intent": per_intent(source),
        }
        if source.key == HELD_OUT:  # test-set texts, no customer's: kept to compare the next run
            run["quellen"][source.key]["erkannt"] = {text: best for text, _, best in source.pairs}
        images[source.key] = f"verwechslungsmatrix_{source.key}.png"
        confusion_png(source, out_dir / images[source.key])
    report = out_dir / REPORT_FILE
    report.write_text(render(sources, run["quellen"], run, previous, images, project), encoding="utf-8")
    save_history(out_dir, runs + [run])
    return report, run, previous


def needs_baseline(model: Path | None, out_dir: Path = DEFAULT_OUT_DIR) -> bool:
    runs = load_history(out_dir)
    return model is not None and model.exists() and not (runs and runs[-1]["modell"] == model.name)


def record_baseline(
    model: Path | None, out_dir: Path = DEFAULT_OUT_DIR, test_set: Path = DEFAULT_TEST_SET, project: Path = PROJECT_DIR
) -> bool:
    """Before every training: the current model's held-out figures become the run the next
    report compares with, unless the latest run already has them. True when recorded."""
    if not needs_baseline(model, out_dir):
        return False
    write_report([held_out(model, test_set)], model, out_dir, {"testdaten": test_set}, project)
    return True


def terminal_summary(sources: list[Source], run: dict, previous: dict | None) -> str:
    lines = []
    for source in sources:
        now = run["quellen"][source.key]
        e = now["kennzahlen"]
        before = (previous or {}).get("quellen", {}).get(source.key)
        was = f" (vorher {percent(before['kennzahlen']['intent_genauigkeit'])})" if before else ""
        lines.append(
            f"{source.title}: Intent-Genauigkeit {percent(e['intent_genauigkeit'])}{was}; FAQ sofort "
            f"richtig {percent(e['faq_sofort_richtig'])}, über „Meinten Sie …?“ "
            f"{percent(e['faq_richtig_ueber_rueckfrage'])}, falsch {percent(e['faq_falsche_antwort'])}, "
            f"Support angeboten {percent(e['faq_support_angeboten'])}"
        )
        if before:
            changes = defaultdict(list)
            for intent, m in now["je_intent"].items():
                changes[verdict(before["je_intent"].get(intent), m)].append(short(intent))
            worse = f" ({', '.join(changes['schlechter'])})" if changes["schlechter"] else ""
            lines.append(
                f"  je Frage: {len(changes['besser'])} besser, {len(changes['schlechter'])} "
                f"schlechter{worse}, {len(changes['unverändert'])} unverändert"
            )
    if not previous:
        lines.append("Kein vorheriger Lauf zum Vergleichen.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from faqbot.tools import train

    parser = argparse.ArgumentParser(
        prog="faqbot-trainer evaluate",
        description=__doc__,
        add_help=False,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser._optionals.title = "Optionen"
    parser.add_argument("-h", "--help", action="help", help="diese Hilfe zeigen")
    parser.add_argument(
        "--teile",
        type=int,
        default=3,
        metavar="N",
        help="Anzahl der Teile der Kreuzvalidierung (Standard: 3; je Teil etwa 1 Minute Training)",
    )
    parser.add_argument(
        "--ohne-kreuzvalidierung", action="store_true", help="nur die Testdaten auswerten (schnell, etwa 1 Minute)"
    )
    parser.add_argument(
        "--ordner",
        type=Path,
        default=DEFAULT_OUT_DIR,
        metavar="ORDNER",
        help=f"Ordner für Bericht und Verlauf (Standard: {relative(DEFAULT_OUT_DIR)})",
    )
    parser.add_argument(
        "--testdaten",
        type=Path,
        default=DEFAULT_TEST_SET,
        metavar="DATEI",
        help=f"Testdaten, nie trainiert (Standard: {relative(DEFAULT_TEST_SET)})",
    )
    parser.add_argument(
        "--trainingsdaten",
        type=Path,
        default=DEFAULT_TRAINING_DATA,
        metavar="PFAD",
        help=f"Formulierungen für die Kreuzvalidierung (Standard: {relative(DEFAULT_TRAINING_DATA)})",
    )
    parser.add_argument(
        "--modell",
        type=Path,
        metavar="DATEI",
        help="Modell (Standard: das aktuelle; wird trainiert, falls sich die Daten geändert haben)",
    )
    # For the inbox's „Neu trainieren“: the model before the training as the run to compare
    # with, the held-out figures for its check, and the copy of the project it works on.
    parser.add_argument("--grundlage", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--projekt", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args(argv)
    if rest:
        parser.error(f"unbekannte Argumente: {' '.join(rest)}")
    if not 2 <= args.teile <= MAX_FOLDS:
        parser.error(f"--teile: 2 bis {MAX_FOLDS} Teile")
    for path in (args.testdaten, args.modell) + (() if args.ohne_kreuzvalidierung else (args.trainingsdaten,)):
        if path is not None and not path.exists():
            parser.error(f"{path} gibt es nicht")

    from rasa.utils.common import update_tensorflow_log_level

    # What Rasa's own CLI does before TensorFlow is imported: no C++ log lines for trainers
    # ("TF-TRT Warning: Could not find TensorRT", CUDA, CPU instructions).
    update_tensorflow_log_level()
    if args.grundlage and record_baseline(args.grundlage, args.ordner, args.testdaten, args.projekt):
        print(f"Zahlen des bisherigen Modells {args.grundlage.name} zum Vergleich festgehalten.", flush=True)
    model = args.modell or train.train()
    print(f"Werte {relative(model)} auf {relative(args.testdaten)} aus …", flush=True)
    sources, files = [held_out(model, args.testdaten)], {"testdaten": args.testdaten}
    if not args.ohne_kreuzvalidierung:
        sources.append(cross_validate(args.trainingsdaten, args.teile))
        files["kreuzvalidierung"] = args.trainingsdaten
    report, run, previous = write_report(sources, model, args.ordner, files, args.projekt)
    if args.json:
        args.json.write_text(json.dumps(sources[0].evaluation.as_dict(), ensure_ascii=False), encoding="utf-8")
    print(f"\nBericht: {report}")
    print(terminal_summary(sources, run, previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
