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
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import cached_property
from html import escape
from pathlib import Path

from faqbot.core import knowledge, spacy_model
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
TOP_PAIRS = 10
# Every FAQ question has at least 12 phrasings (tests/test_data.py); more folds would leave
# some intents out of some folds, and each fold costs a minute of training.
MAX_FOLDS = 10
EXAMPLES_PER_PAIR = 3
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
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
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


def figures(evaluation: Evaluation) -> dict[str, float]:
    return {key: value for key, value in asdict(evaluation).items() if key != "confusions"}


def verdict(before: float | None, after: float) -> str:
    if before is None:
        return "neu"
    if after - before > TOLERANCE:
        return "besser"
    if before - after > TOLERANCE:
        return "schlechter"
    return "unverändert"


# --- History ----------------------------------------------------------------------------


def load_history(out_dir: Path) -> list[dict]:
    path = out_dir / HISTORY_FILE
    return json.loads(path.read_text(encoding="utf-8"))["laeufe"] if path.exists() else []


def save_history(out_dir: Path, runs: list[dict]) -> None:
    (out_dir / HISTORY_FILE).write_text(json.dumps({"laeufe": runs}, ensure_ascii=False, indent=1), encoding="utf-8")


# --- HTML -------------------------------------------------------------------------------


def number(value: float) -> str:
    return f"{value:.2f}".replace(".", ",")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %".replace(".", ",")


def question(intent: str, questions: dict[str, str]) -> str:
    return questions.get(intent) or INTENT_NAMES.get(intent, intent)


SUMMARY_ROWS = [
    ("intent_accuracy", "Intent-Genauigkeit (bester Intent)"),
    ("accuracy_with_fallback", "Genauigkeit, Rückfrage als Fehler gezählt"),
    ("faq_answered_right", "FAQ-Nachrichten sofort richtig beantwortet"),
    ("faq_right_via_buttons", "… richtig über „Meinten Sie …?“"),
    ("faq_wrong_answer", "… mit einer falschen FAQ-Antwort beantwortet"),
    ("faq_no_answer", "… Support-Team angeboten statt einer Antwort"),
    ("other_got_faq_answer", "Andere Nachrichten (Smalltalk, fremde Themen) mit FAQ-Antwort"),
]

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f3f7; }
td.zahl { text-align: right; font-variant-numeric: tabular-nums; }
small { color: #555; }
.besser { color: #1a7f37; font-weight: bold; }
.schlechter { color: #c62828; font-weight: bold; }
.schwach { background: #fff4e5; }
.warnung { background: #fff4e5; border: 1px solid #f0a000; padding: 0.5em 1em; }
.hinweis { color: #444; }
img { max-width: 100%; border: 1px solid #ccc; }
"""


def render_summary(sources: list[Source], previous: dict | None) -> str:
    head = "".join(f"<th>{escape(s.title)}</th>" + ("<th>vorher</th>" if previous else "") for s in sources)
    rows = []
    for key, label in SUMMARY_ROWS:
        cells = ""
        for source in sources:
            cells += f'<td class="zahl">{percent(figures(source.evaluation)[key])}</td>'
            if previous:
                before = previous["quellen"].get(source.key, {}).get("kennzahlen", {}).get(key)
                cells += f'<td class="zahl">{percent(before)}</td>'
        rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    counts = "".join(
        f"<li>{escape(s.title)}: {s.evaluation.examples} Nachrichten, davon "
        f"{s.evaluation.faq_examples} zu FAQ-Fragen</li>"
        for s in sources
    )
    return (
        f"<h2 id='zusammenfassung'>Zusammenfassung</h2><ul>{counts}</ul>"
        f"<table><tr><th>Kennzahl</th>{head}</tr>{''.join(rows)}</table>"
        "<p class='hinweis'>„Intent-Genauigkeit“: Anteil der Nachrichten, deren Frage der Bot als "
        "wahrscheinlichste erkennt. Die übrigen Zeilen zeigen, was Kunden erleben: Bei einer unsicheren "
        "Erkennung fragt der Bot „Meinten Sie …?“, ohne passende Frage bietet er das Support-Team an. "
        "Eine falsche Antwort ist der teuerste Fehler.</p>"
    )


def render_changes(
    sources: list[Source], metrics: dict[str, dict], previous: dict | None, questions: dict[str, str]
) -> str:
    out = "<h2 id='veraenderung'>Veränderung gegenüber dem vorherigen Lauf</h2>"
    if not previous:
        return out + "<p>Kein vorheriger Lauf: Dies ist die erste Auswertung in diesem Ordner.</p>"
    out += f"<p>Vorheriger Lauf: {escape(previous['zeit'])}, Modell {escape(previous['modell'])}.</p>"
    for source in sources:
        before = previous["quellen"].get(source.key)
        if not before:
            out += f"<p>{escape(source.title)}: im vorherigen Lauf nicht ausgewertet.</p>"
            continue
        if before.get("datei") != metrics[source.key]["datei"]:
            out += (
                f"<p class='warnung'>{escape(source.title)}: Der vorherige Lauf verwendete andere Daten "
                f"({escape(str(before.get('datei')))}); die Zahlen sind nur bedingt vergleichbar.</p>"
            )
        rows, tally = [], Counter()
        for intent, now in metrics[source.key]["je_intent"].items():
            old = before["je_intent"].get(intent, {}).get("f1")
            change = verdict(old, now["f1"])
            tally[change] += 1
            if change != "unverändert":
                rows.append((change, intent, old, now["f1"]))
        order = {"schlechter": 0, "besser": 1, "neu": 2}
        rows.sort(key=lambda row: (order[row[0]], row[1]))
        out += (
            f"<h3>{escape(source.title)}</h3><p>{tally['besser']} besser, {tally['schlechter']} schlechter, "
            f"{tally['unverändert']} unverändert" + (f", {tally['neu']} neu" if tally["neu"] else "") + ".</p>"
        )
        if rows:
            out += "<table><tr><th>FAQ-Frage</th><th>F1 vorher → nachher</th><th>Veränderung</th></tr>"
            for change, intent, old, new in rows:
                out += (
                    f"<tr><td>{escape(short(intent))}<br><small>{escape(question(intent, questions))}</small>"
                    f"</td><td class='zahl'>{'–' if old is None else number(old)} → {number(new)}</td>"
                    f"<td class='{change}'>{change}</td></tr>"
                )
            out += "</table>"
    return out + (
        "<p class='hinweis'>„schlechter“ heißt: Diese Frage wird jetzt seltener richtig erkannt, oder "
        "andere Nachrichten werden fälschlich ihr zugeordnet. Prüfen Sie die zuletzt hinzugefügten "
        "Formulierungen dieser Frage und der Fragen, mit denen sie verwechselt wird (siehe unten).</p>"
    )


def render_source(source: Source, metrics: dict, previous: dict | None, image: str, questions: dict[str, str]) -> str:
    before = (previous or {}).get("quellen", {}).get(source.key, {}).get("je_intent", {})
    rows = []
    for intent, m in metrics["je_intent"].items():
        old = before.get(intent, {}).get("f1")
        change = ""
        if previous:
            word = verdict(old, m["f1"])
            change = (
                f"<td class='zahl'>{'–' if old is None else number(old)} → {number(m['f1'])} "
                f"<span class='{word}'>{word}</span></td>"
            )
        weak = " class='schwach'" if m["f1"] < 0.8 else ""
        rows.append(
            f"<tr{weak}><td>{escape(short(intent))}<br><small>{escape(question(intent, questions))}"
            f"</small></td><td class='zahl'>{number(m['precision'])}</td><td class='zahl'>"
            f"{number(m['recall'])}</td><td class='zahl'>{number(m['f1'])}</td>"
            f"<td class='zahl'>{m['support']}</td>{change}</tr>"
        )
    pairs = []
    for (first, second), count, found in confused_pairs(source):
        examples = "".join(
            f"<li>„{escape(text)}“ <small>(richtig: {escape(short(expected))}, erkannt: "
            f"{escape(short(best))})</small></li>"
            for text, expected, best in found
        )
        pairs.append(
            f"<tr><td>{escape(short(first))}<br><small>{escape(question(first, questions))}</small></td>"
            f"<td>{escape(short(second))}<br><small>{escape(question(second, questions))}</small></td>"
            f"<td class='zahl'>{count}</td><td><ul>{examples}</ul></td></tr>"
        )
    pair_table = (
        (
            "<table><tr><th>Frage A</th><th>Frage B</th><th>Verwechslungen</th><th>Beispiele</th></tr>"
            + "".join(pairs)
            + "</table>"
        )
        if pairs
        else "<p>Keine Verwechslungen.</p>"
    )
    return (
        f"<h2 id='{source.key}'>{escape(source.title)}</h2><p class='hinweis'>{escape(source.note)}</p>"
        f"<h3>Ergebnisse je FAQ-Frage</h3>"
        "<p class='hinweis'><b>Präzision</b>: Wenn der Bot diese Frage erkennt, wie oft stimmt das? "
        "<b>Trefferquote</b>: Von den Nachrichten zu dieser Frage, wie viele erkennt er? <b>F1</b>: beides "
        "zusammen (1,00 = perfekt). <b>Anzahl</b>: Nachrichten zu dieser Frage. Zeilen mit F1 unter 0,80 sind "
        "hervorgehoben.</p>"
        f"<table class='je-faq'><tr><th>FAQ-Frage</th><th>Präzision</th><th>Trefferquote</th><th>F1</th>"
        f"<th>Anzahl</th>{'<th>F1 vorher → nachher</th>' if previous else ''}</tr>{''.join(rows)}</table>"
        f"<h3>Verwechslungsmatrix</h3><p class='hinweis'>Zeilen: die richtige Frage; Spalten: was der Bot "
        "erkannt hat. Zahlen auf der Diagonale sind richtig erkannt, alle anderen sind Verwechslungen.</p>"
        f"<img src='{escape(image)}' alt='Verwechslungsmatrix {escape(source.title)}'>"
        f"<h3>Am häufigsten verwechselte Fragen</h3>{pair_table}"
    )


def render(
    sources: list[Source], metrics: dict[str, dict], run: dict, previous: dict | None, images: dict[str, str]
) -> str:
    questions = {entry.intent: entry.question for entry in knowledge.load().values()}
    standin = (
        "<p class='warnung'>Achtung: Das spaCy-Modell ist der Offline-Ersatz, nicht das offizielle "
        "de_core_news_sm. Mit dem offiziellen Modell können die Zahlen abweichen.</p>"
        if spacy_model.is_standin()
        else ""
    )
    head = [
        ("Erstellt", run["zeit"]),
        ("Modell", f"{run['modell']} (trainiert {run['modell_trainiert']})"),
        ("spaCy-Modell", run["spacy"]),
    ]
    head += [(s.title, metrics[s.key]["datei"]) for s in sources]
    head.append(("Vorheriger Lauf", previous["zeit"] if previous else "kein vorheriger Lauf"))
    head_rows = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in head)
    body = (
        render_summary(sources, previous)
        + render_changes(sources, metrics, previous, questions)
        + "".join(render_source(s, metrics[s.key], previous, images[s.key], questions) for s in sources)
    )
    return (
        f"<!DOCTYPE html><html lang='de'><head><meta charset='utf-8'>"
        f"<title>Auswertungsbericht FAQ-Bot</title><style>{STYLE}</style></head><body>"
        f"<h1>Auswertungsbericht FAQ-Bot</h1>{standin}<table>{head_rows}</table>{body}</body></html>"
    )


# --- Command line -----------------------------------------------------------------------


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(PROJECT_DIR)) if path.is_relative_to(PROJECT_DIR) else str(path)


def write_report(
    sources: list[Source], model: Path, out_dir: Path, files: dict[str, Path]
) -> tuple[Path, dict, dict | None]:
    from rasa.engine.storage.local_model_storage import LocalModelStorage

    out_dir.mkdir(parents=True, exist_ok=True)
    runs = load_history(out_dir)
    previous = runs[-1] if runs else None
    trained = LocalModelStorage.metadata_from_archive(model).trained_at
    run = {
        "zeit": datetime.now().strftime("%d.%m.%Y %H:%M:%S"),
        "modell": model.name,
        "modell_trainiert": trained.strftime("%d.%m.%Y %H:%M"),
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
        images[source.key] = f"verwechslungsmatrix_{source.key}.png"
        confusion_png(source, out_dir / images[source.key])
    report = out_dir / REPORT_FILE
    report.write_text(render(sources, run["quellen"], run, previous, images), encoding="utf-8")
    save_history(out_dir, runs + [run])
    return report, run, previous


def terminal_summary(sources: list[Source], run: dict, previous: dict | None) -> str:
    lines = []
    for source in sources:
        now = run["quellen"][source.key]
        e = now["kennzahlen"]
        before = (previous or {}).get("quellen", {}).get(source.key)
        was = f" (vorher {percent(before['kennzahlen']['intent_accuracy'])})" if before else ""
        lines.append(
            f"{source.title}: Intent-Genauigkeit {percent(e['intent_accuracy'])}{was}; FAQ sofort "
            f"richtig {percent(e['faq_answered_right'])}, über „Meinten Sie …?“ "
            f"{percent(e['faq_right_via_buttons'])}, falsch {percent(e['faq_wrong_answer'])}, "
            f"Support angeboten {percent(e['faq_no_answer'])}"
        )
        if before:
            changes = defaultdict(list)
            for intent, m in now["je_intent"].items():
                changes[verdict(before["je_intent"].get(intent, {}).get("f1"), m["f1"])].append(short(intent))
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
        "--folds",
        type=int,
        default=3,
        metavar="N",
        help="Anzahl der Teile der Kreuzvalidierung (Standard: 3; je Teil etwa 1 Minute Training)",
    )
    parser.add_argument(
        "--ohne-kreuzvalidierung", action="store_true", help="nur die Testdaten auswerten (schnell, etwa 1 Minute)"
    )
    parser.add_argument(
        "--out",
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
    args = parser.parse_args(argv)
    if not 2 <= args.folds <= MAX_FOLDS:
        parser.error(f"--folds: 2 bis {MAX_FOLDS} Teile")
    for path in (args.testdaten, args.modell) + (() if args.ohne_kreuzvalidierung else (args.trainingsdaten,)):
        if path is not None and not path.exists():
            parser.error(f"{path} gibt es nicht")

    model = args.modell or train.train()
    print(f"Werte {relative(model)} auf {relative(args.testdaten)} aus …", flush=True)
    sources, files = [held_out(model, args.testdaten)], {"testdaten": args.testdaten}
    if not args.ohne_kreuzvalidierung:
        sources.append(cross_validate(args.trainingsdaten, args.folds))
        files["kreuzvalidierung"] = args.trainingsdaten
    report, run, previous = write_report(sources, model, args.out, files)
    print(f"\nBericht: {report}")
    print(terminal_summary(sources, run, previous))
    return 0


if __name__ == "__main__":
    sys.exit(main())
