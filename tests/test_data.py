"""The training data, the FAQ knowledge and the domain agree with each other."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from faqbot.core.intents import GENERAL_INTENTS
from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR

MIN_EXAMPLES = 12


def read_nlu(path: Path) -> dict[str, list[str]]:
    examples: dict[str, list[str]] = defaultdict(list)
    for block in YAML(typ="safe").load(path.read_text(encoding="utf-8"))["nlu"]:
        if "intent" in block:
            examples[block["intent"]] += [
                line[2:].strip() for line in block["examples"].splitlines() if line.startswith("- ")
            ]
    return examples


def training_examples() -> dict[str, list[str]]:
    merged: dict[str, list[str]] = defaultdict(list)
    for path in sorted((PROJECT_DIR / "data" / "nlu").glob("*.yml")):
        for intent, examples in read_nlu(path).items():
            merged[intent] += examples
    return merged


def normalise(text: str) -> str:
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


@pytest.fixture(scope="module")
def knowledge():
    return load()


@pytest.fixture(scope="module")
def examples():
    return training_examples()


def test_knowledge_has_the_24_questions_of_the_page_verbatim(knowledge):
    page = (PROJECT_DIR / "data" / "faq_seite.txt").read_text(encoding="utf-8")
    assert len(knowledge) == 24
    assert len({entry.category for entry in knowledge.values()}) == 4
    for entry in knowledge.values():
        assert entry.question in page and entry.answer in page, entry.id
        assert len(entry.answer) > 80, entry.id


def test_every_faq_has_an_intent_and_every_faq_intent_an_answer(knowledge, examples):
    faq_intents = {intent for intent in examples if intent.startswith("faq_")}
    assert faq_intents == {entry.intent for entry in knowledge.values()}
    # Every other intent is a general one with a German label for the trainers (faqbot.core.intents).
    assert set(examples) - faq_intents == set(GENERAL_INTENTS)


def test_each_faq_intent_has_its_question_and_enough_phrasings(knowledge, examples):
    for entry in knowledge.values():
        phrasings = examples[entry.intent]
        assert entry.question in phrasings, entry.id
        assert len(set(map(normalise, phrasings))) >= MIN_EXAMPLES + 1, entry.id


def test_out_of_scope_is_broad(examples):
    assert len(examples["out_of_scope"]) >= 80


def test_no_example_belongs_to_two_intents(examples):
    owners = defaultdict(set)
    for intent, phrasings in examples.items():
        for text in phrasings:
            owners[normalise(text)].add(intent)
    clashes = {text: intents for text, intents in owners.items() if len(intents) > 1}
    assert not clashes


@pytest.mark.parametrize("test_file", ["nlu_heldout.yml", "e2e_paraphrases.yml"])
def test_test_phrasings_are_never_trained_on(examples, test_file):
    trained = {normalise(text) for phrasings in examples.values() for text in phrasings}
    test_set = read_nlu(PROJECT_DIR / "tests" / test_file)
    leaked = [text for phrasings in test_set.values() for text in phrasings if normalise(text) in trained]
    assert not leaked
    assert {intent for intent in test_set if intent.startswith("faq_")} == {
        intent for intent in examples if intent.startswith("faq_")
    }


def test_end_to_end_paraphrases_are_not_in_the_held_out_set():
    held_out = {normalise(t) for ts in read_nlu(PROJECT_DIR / "tests" / "nlu_heldout.yml").values() for t in ts}
    paraphrases = read_nlu(PROJECT_DIR / "tests" / "e2e_paraphrases.yml")
    assert not [t for ts in paraphrases.values() for t in ts if normalise(t) in held_out]


def test_domain_and_rules_cover_every_faq_intent(knowledge):
    domain = YAML(typ="safe").load((PROJECT_DIR / "domain.yml").read_text(encoding="utf-8"))
    rules = YAML(typ="safe").load((PROJECT_DIR / "data" / "rules" / "faq.yml").read_text(encoding="utf-8"))
    answered = {
        rule["steps"][0]["intent"] for rule in rules["rules"] if rule["steps"][1] == {"action": "action_answer_faq"}
    }
    for entry in knowledge.values():
        assert entry.intent in domain["intents"]
        assert entry.intent in answered


def test_rasa_data_validate_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate", "--fail-on-warnings"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
