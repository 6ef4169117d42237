"""Evaluate the trained model on a labelled test set (default: the held-out set).

    python -m faqbot.tools.evaluate [--nlu tests/nlu_heldout.yml] [--model models/....tar.gz]
    python -m faqbot.tools.evaluate --config experiments/words_only.yml   # try a pipeline variant

Besides plain intent accuracy (what ``rasa test nlu`` reports without the fallback) it
reports what the customer experiences, using the same decision rules as the actions:
the right answer at once, the right answer among the "Meinten Sie …?" buttons, a wrong
answer (the costly case), or an offer of the support team.

``--config`` trains the project's data in a temporary directory and takes either a full
Rasa config or an experiment file that names only what differs from its base config::

    # Variant of config.yml: character n-grams of length 1-4 instead of 2-5.
    variant_of: config.yml            # base config, relative to the project directory
    pipeline:                         # or policies:
      - match: {name: CountVectorsFeaturizer, analyzer: char_wb}
        set: {min_ngram: 1, max_ngram: 4}    # change or add keys of that component
      - match: {name: FallbackClassifier}
        remove: true                         # or drop the component

``match`` must pick exactly one component: its name plus, where the name is not unique,
keys that tell it apart (a key missing from the base counts with Rasa's default value, so
``analyzer: word`` finds the words featurizer). Otherwise evaluate stops with an error.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import functools
import json
import logging
import sys
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faqbot.core.clarify import CLARIFY_MIN_CONFIDENCE, clarify_candidates
from faqbot.core.intents import NLU_FALLBACK, OUT_OF_SCOPE, classifier_guess, faq_id_for
from faqbot.core.paths import PROJECT_DIR

DEFAULT_TEST_SET = PROJECT_DIR / "tests" / "nlu_heldout.yml"
# The bar for what customers experience on the held-out set (README, "Quality and speed"):
# measure -> (at least / at most, value).
TARGETS = {
    "faq_answered_right": (">=", 0.95),
    "faq_wrong_answer": ("<=", 0.01),
    "faq_resolved": (">=", 0.99),
    "other_got_faq_answer": ("<=", 0.02),
}
VARIANT_KEY = "variant_of"
SECTIONS = ("pipeline", "policies")


@dataclass
class Evaluation:
    examples: int = 0
    intent_accuracy: float = 0.0  # top intent of the classifier, fallback ignored
    accuracy_with_fallback: float = 0.0  # nlu_fallback counts as wrong (rasa test nlu)
    faq_examples: int = 0
    faq_answered_right: float = 0.0  # answered at once with the right FAQ
    faq_right_via_buttons: float = 0.0  # unsure, right FAQ among the buttons
    faq_wrong_answer: float = 0.0  # answered at once with another FAQ
    faq_no_answer: float = 0.0  # support team offered instead
    other_examples: int = 0
    other_got_faq_answer: float = 0.0  # out_of_scope/small talk answered with an FAQ
    confusions: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self, confusions: bool = True) -> dict[str, Any]:
        figures = {**asdict(self), "faq_resolved": self.faq_resolved}
        return figures if confusions else {k: v for k, v in figures.items() if k != "confusions"}

    @property
    def faq_resolved(self) -> float:
        """FAQ phrasings answered right at once or through the buttons."""
        return self.faq_answered_right + self.faq_right_via_buttons

    def meets(self, measure: str) -> bool:
        how, bar = TARGETS[measure]
        value = round(getattr(self, measure), 6)
        return value >= bar if how == ">=" else value <= bar

    def summary(self) -> str:
        pct = lambda value: f"{100 * value:5.1f} %"  # noqa: E731

        def line(label: str, measure: str) -> str:
            text = f"{label:42}{pct(getattr(self, measure))}"
            if measure in TARGETS:
                how, bar = TARGETS[measure]
                text += f"   Ziel {'≥' if how == '>=' else '≤'} {100 * bar:g} % {'✔' if self.meets(measure) else '✘'}"
            return text

        return "\n".join(
            [
                f"Beispiele: {self.examples} ({self.faq_examples} FAQ, {self.other_examples} andere)",
                line("Intent-Genauigkeit (bester Intent):", "intent_accuracy"),
                line("Genauigkeit mit Fallback als Fehler:", "accuracy_with_fallback"),
                line("FAQ sofort richtig beantwortet:", "faq_answered_right"),
                line("FAQ richtig über „Meinten Sie …?“:", "faq_right_via_buttons"),
                line("FAQ sofort oder über die Knöpfe richtig:", "faq_resolved"),
                line("FAQ falsch beantwortet:", "faq_wrong_answer"),
                line("FAQ an den Support angeboten:", "faq_no_answer"),
                line("Nicht-FAQ mit FAQ-Antwort beantwortet:", "other_got_faq_answer"),
            ]
        )


def read_examples(path: Path) -> list[tuple[str, str]]:
    from rasa.shared.nlu.training_data.loading import load_data

    data = load_data(str(path))
    return [(message.get("text"), message.get("intent")) for message in data.intent_examples]


def classify(model: Path, texts: list[str]) -> list[dict]:
    from rasa.core.agent import Agent
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    # No per-message debug lines; warn_only_once=False: Rasa's "once" filter for every
    # UserWarning would otherwise go in front of the known-warnings filters.
    configure_logging_and_warnings(logging.WARNING, warn_only_once=False)
    configure_structlog(logging.WARNING)
    agent = Agent.load(str(model))

    async def parse_all() -> list[dict]:
        return [await agent.parse_message(text) for text in texts]

    return asyncio.run(parse_all())


def best_intent(parse: dict) -> str | None:
    """The classifier's best intent with the fallback ignored: what the phrasings teach it."""
    return classifier_guess(parse.get("intent_ranking") or []).get("name")


def evaluate(model: Path, test_set: Path = DEFAULT_TEST_SET, clarify_min: float = CLARIFY_MIN_CONFIDENCE) -> Evaluation:
    examples = read_examples(test_set)
    return score(examples, classify(model, [text for text, _ in examples]), clarify_min)


def score(
    examples: list[tuple[str, str]], parses: list[dict], clarify_min: float = CLARIFY_MIN_CONFIDENCE
) -> Evaluation:
    """The figures for labelled examples and their parses (from one model or several, as in cross-validation)."""
    result, counts = Evaluation(examples=len(examples)), Counter()
    for (text, expected), parse in zip(examples, parses, strict=True):
        best = best_intent(parse)
        predicted = parse["intent"]["name"]
        counts["top_right"] += best == expected
        counts["final_right"] += predicted == expected
        if best != expected:
            result.confusions.append((text, expected, best))
        if faq_id_for(expected):
            counts["faq"] += 1
            if predicted in (NLU_FALLBACK, OUT_OF_SCOPE):
                options = [item["name"] for item in clarify_candidates(parse, clarify_min)]
                counts["faq_buttons" if expected in options else "faq_none"] += 1
            elif predicted == expected:
                counts["faq_right"] += 1
            elif faq_id_for(predicted):
                counts["faq_wrong"] += 1
            else:
                counts["faq_none"] += 1
        else:
            counts["other"] += 1
            counts["other_faq"] += bool(faq_id_for(predicted))
    share = lambda key, total: counts[key] / total if total else 0.0  # noqa: E731
    result.intent_accuracy = share("top_right", len(examples))
    result.accuracy_with_fallback = share("final_right", len(examples))
    result.faq_examples, result.other_examples = counts["faq"], counts["other"]
    result.faq_answered_right = share("faq_right", counts["faq"])
    result.faq_right_via_buttons = share("faq_buttons", counts["faq"])
    result.faq_wrong_answer = share("faq_wrong", counts["faq"])
    result.faq_no_answer = share("faq_none", counts["faq"])
    result.other_got_faq_answer = share("other_faq", counts["other"])
    return result


class VariantError(ValueError):
    """An experiment file that does not fit its base config."""


def resolve_config(path: Path) -> dict[str, Any]:
    """The full Rasa config of ``path``: a full config as it is, an experiment file applied to its base."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or VARIANT_KEY not in data:
        return data
    base = PROJECT_DIR / str(data[VARIANT_KEY])
    if not base.is_file():
        raise VariantError(f"{path.name}: Basis-Konfiguration {base} ({VARIANT_KEY}) nicht gefunden.")
    return apply_variant(yaml.safe_load(base.read_text(encoding="utf-8")), data, path.name)


def apply_variant(base: dict[str, Any], variant: dict[str, Any], source: str = "Variante") -> dict[str, Any]:
    """``base`` with the ``set``/``remove`` changes of an experiment file, each on exactly one component."""
    config = copy.deepcopy(base)
    unknown = sorted(set(variant) - {VARIANT_KEY, *SECTIONS})
    if unknown:
        raise VariantError(f"{source}: unbekannte Schlüssel {unknown}; erlaubt sind {VARIANT_KEY}, pipeline, policies.")
    for section in SECTIONS:
        for change in variant.get(section) or []:
            selector = change.get("match") if isinstance(change, dict) else None
            valid = (
                isinstance(selector, dict)
                and "name" in selector
                and set(change) <= {"match", "set", "remove"}
                and (isinstance(change.get("set"), dict) != (change.get("remove") is True))
            )
            if not valid:
                raise VariantError(
                    f"{source}: Jeder Eintrag unter {section} braucht `match` mit `name` und entweder "
                    f"`set: {{...}}` oder `remove: true`, nicht {change!r}."
                )
            found = [index for index, item in enumerate(config.get(section) or []) if _matches(item, selector)]
            if len(found) != 1:
                how_many = "keine Komponente" if not found else f"{len(found)} Komponenten"
                raise VariantError(
                    f"{source}: `match: {_flow(selector)}` passt auf {how_many} unter {section}; "
                    f"es muss genau eine sein (bei gleichem Namen einen unterscheidenden Schlüssel angeben)."
                )
            if change.get("remove"):
                del config[section][found[0]]
                continue
            known = _rasa_defaults(selector["name"])  # a misspelt key would be ignored by Rasa
            unknown = sorted(set(change["set"]) - set(known)) if known else []
            if unknown:
                raise VariantError(f"{source}: {selector['name']} kennt die Schlüssel {unknown} nicht.")
            config[section][found[0]].update(change["set"])
    return config


def _matches(component: dict[str, Any], selector: dict[str, Any]) -> bool:
    if component.get("name") != selector["name"]:
        return False
    if not selector.keys() <= component.keys():  # compare keys the base leaves out with Rasa's defaults
        component = {**_rasa_defaults(component["name"]), **component}
    return all(key in component and component[key] == value for key, value in selector.items())


@functools.cache
def _rasa_defaults(name: str) -> dict[str, Any]:
    from rasa.engine.recipes.default_components import DEFAULT_COMPONENTS

    classes = {component.__name__: component for component in DEFAULT_COMPONENTS}
    return classes[name].get_default_config() if name in classes else {}


def _flow(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, default_flow_style=True, sort_keys=False, allow_unicode=True).strip()


def train_variant(config: Path, out_dir: Path) -> Path:
    """Train the project's data with another config, for comparing pipelines."""
    import subprocess

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rasa",
            "train",
            "--config",
            str(config),
            "--out",
            str(out_dir),
            "--fixed-model-name",
            "variant",
            "--force",
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if done.returncode:  # show why; Rasa's output is hidden otherwise
        sys.stderr.write(done.stderr[-4000:])
        raise SystemExit(f"rasa train mit {config} ist fehlgeschlagen (Exit-Code {done.returncode}).")
    return out_dir / "variant.tar.gz"


def main(argv: list[str] | None = None) -> int:
    from faqbot.tools import train

    parser = argparse.ArgumentParser(
        prog="python -m faqbot.tools.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nlu", type=Path, default=DEFAULT_TEST_SET, help="Testdaten (Rasa-NLU-YAML)")
    parser.add_argument("--model", type=Path, help="Modell (Standard: das aktuelle)")
    parser.add_argument(
        "--config",
        type=Path,
        help="statt eines Modells: mit dieser Konfiguration trainieren (vollständig oder experiments/*.yml)",
    )
    parser.add_argument("--json", type=Path, help="Ergebnis zusätzlich als JSON schreiben")
    parser.add_argument("--errors", action="store_true", help="Verwechslungen auflisten")
    parser.add_argument(
        "--clarify-min",
        type=float,
        default=CLARIFY_MIN_CONFIDENCE,
        help="Mindest-Konfidenz für „Meinten Sie …?“-Knöpfe (Standard: %(default)s, wie im Bot)",
    )
    args = parser.parse_args(argv)
    if args.config:
        import tempfile

        try:
            config = resolve_config(args.config)
        except (OSError, VariantError) as error:
            parser.error(str(error))
        with tempfile.TemporaryDirectory() as out_dir:
            config_file = Path(out_dir) / "config.yml"  # what rasa train reads: the full config
            config_file.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
            result = evaluate(train_variant(config_file, Path(out_dir)), args.nlu, args.clarify_min)
    else:
        result = evaluate(args.model or train.train(), args.nlu, args.clarify_min)
    print(result.summary())
    if args.errors:
        for text, expected, best in result.confusions:
            print(f"  {expected:45} -> {best or '-':45} {text}")
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
