"""The project's NLU components (faqbot/nlu/), trained on a small FAQ in a temporary
model storage: German word forms, the knowledge classifier, small talk outside its
place and the near-miss check."""

from __future__ import annotations

import textwrap
import time

import numpy as np
import pytest
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from scipy.sparse import hstack

from faqbot.nlu.faq_ranker import FaqKnowledgeRanker, umlaut_variants
from faqbot.nlu.word_forms import word_forms

FAQ = textwrap.dedent(
    """\
    faqs:
      - id: erhalte_rechnung
        category: Abrechnung
        question: Wie erhalte ich eine Rechnung?
        answer: Rechnungen kommen per E-Mail und liegen im Kundenportal. Geschäftskunden können PEPPOL vereinbaren.
      - id: zahlungsmethoden_akzeptieren
        category: Abrechnung
        question: Welche Zahlungsmethoden akzeptieren Sie?
        answer: Wir akzeptieren Kreditkarte, SEPA-Lastschrift und PayPal.
      - id: storniere_aendere_bestellung
        category: Bestellung
        question: Wie storniere oder ändere ich eine Bestellung?
        answer: Bestellungen können Sie bis zur Bereitstellung im Kundenportal stornieren oder ändern.
    """
)
EXAMPLES = {
    "faq_erhalte_rechnung": ["wo bekomme ich meine rechnung", "rechnung herunterladen", "rechnung als pdf"],
    "faq_zahlungsmethoden_akzeptieren": ["wie kann ich bezahlen", "nehmt ihr paypal", "mit karte zahlen"],
    "faq_storniere_aendere_bestellung": ["bestellung stornieren", "auftrag ändern", "kann ich meine bestellung ändern"],
    "greet": ["hallo", "guten tag", "moin"],
    "deny": ["nein", "nein danke", "abbrechen", "bitte abbrechen"],
    "out_of_scope": ["kann ich mit bitcoin zahlen", "wie ist das wetter", "habt ihr jobs"],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Loads the ranker trained once on the small FAQ, with config changes if given."""
    folder = tmp_path_factory.mktemp("ranker")
    (folder / "faq.yml").write_text(FAQ, encoding="utf-8")
    config = {**FaqKnowledgeRanker.get_default_config(), "knowledge_file": str(folder / "faq.yml")}
    (folder / "storage").mkdir()
    storage = LocalModelStorage(folder / "storage")
    resource = Resource("ranker")
    context = ExecutionContext(GraphSchema({}), "test")
    component = FaqKnowledgeRanker.create(config, storage, resource, context)
    data = TrainingData(
        [Message(data={TEXT: text, INTENT: intent}) for intent, texts in EXAMPLES.items() for text in texts]
    )
    component.train(data)

    # What the servers run: the component as loaded from the model, not the one trained.
    def load(**changes):
        return FaqKnowledgeRanker.load({**config, **changes}, storage, resource, context)

    load.component = component  # as trained
    return load


@pytest.fixture(scope="module")
def ranker(trained):
    return trained()


def parse(ranker: FaqKnowledgeRanker, text: str, diet: dict[str, float]) -> Message:
    """``text`` after DIET said ``diet`` (its ranking) and after the ranker."""
    ranking = [{"name": name, "confidence": value} for name, value in sorted(diet.items(), key=lambda x: -x[1])]
    message = Message(data={TEXT: text, INTENT: ranking[0], INTENT_RANKING_KEY: ranking})
    return ranker.process([message])[0]


def test_word_forms_are_lowercase_lemmas_with_the_parts_of_unknown_compounds():
    known = {"rechnung", "adresse", "kunde", "konto", "rechnungsadresse"}
    assert word_forms("Rechnungen") == word_forms("rechnungen") == ["rechnung"]  # lowercase, as customers type
    assert word_forms("Lieferadresse", known) == ["lieferadresse"]  # „liefer“ unknown: no split
    assert word_forms("Rechnungsadresse", known - {"rechnungsadresse"}) == ["rechnungsadresse", "rechnung", "adresse"]
    assert word_forms("Kundenkonto", known) == ["kundenkonto", "kunde", "konto"]  # linking „n“
    assert word_forms("Rechnungsadresse", known) == ["rechnungsadresse"]  # known as a whole
    assert word_forms("günstiger", known) == ["günstig"]


def test_a_huge_word_costs_nothing():
    # A 60 000-letter „word“ (the REST body allows 64 KB) took seconds to split and lemmatize.
    word = "rechnungsadresse" * 4000
    started = time.perf_counter()
    assert word_forms(word, {"rechnung", "adresse"}) == [word]
    assert time.perf_counter() - started < 0.05


def test_umlaut_variants_are_taught():
    assert umlaut_variants("Kündigung für Bestellung") == ["Kuendigung fuer Bestellung", "Kundigung fur Bestellung"]
    assert umlaut_variants("Rechnung") == []


def test_a_word_only_the_answer_contains_finds_its_faq(ranker):
    # DIET, trained on the phrasings only, has no idea; PEPPOL is only in the answer.
    message = parse(ranker, "geht peppol", {"faq_zahlungsmethoden_akzeptieren": 0.4, "faq_erhalte_rechnung": 0.3})
    assert message.get(INTENT)["name"] == "faq_erhalte_rechnung"


@pytest.mark.parametrize(
    "text, small_talk, faq",
    [
        ("wie kann ich meine bestellung abbrechen", "deny", "faq_storniere_aendere_bestellung"),
        ("hallo, nehmt ihr paypal", "greet", "faq_zahlungsmethoden_akzeptieren"),
    ],
)
def test_small_talk_with_faq_words_is_read_as_the_question(trained, text, small_talk, faq):
    # DIET alone (weight 0): only taking small talk out of the ranking can find the FAQ.
    message = parse(trained(weight=0.0), text, {small_talk: 0.95, faq: 0.03, "out_of_scope": 0.02})
    names = [item["name"] for item in message.get(INTENT_RANKING_KEY)]
    assert message.get(INTENT)["name"] == faq
    assert small_talk not in names


@pytest.mark.parametrize("text, small_talk", [("nein", "deny"), ("abbrechen", "deny"), ("Hallo!", "greet")])
def test_pure_small_talk_keeps_its_intent(trained, text, small_talk):
    message = parse(trained(weight=0.0), text, {small_talk: 0.95, "faq_storniere_aendere_bestellung": 0.05})
    assert message.get(INTENT)["name"] == small_talk


def test_a_near_miss_is_not_answered_confidently(trained):
    diet_only = trained(weight=0.0)  # DIET sure of the payment FAQ: only the check can object
    diet = {"faq_zahlungsmethoden_akzeptieren": 0.97, "out_of_scope": 0.03}
    assert diet_only.near_miss_words("zahlt man auch mit bitcoin") == ["bitcoin"]  # „zahlen“: FAQ words too
    ranking = {
        item["name"]: item["confidence"]
        for item in parse(diet_only, "zahlt man auch mit bitcoin", diet).get(INTENT_RANKING_KEY)
    }
    # Half the FAQ's confidence went to out_of_scope: too close for FallbackClassifier's 0.1.
    assert abs(ranking["faq_zahlungsmethoden_akzeptieren"] - ranking["out_of_scope"]) < 0.1
    plain = parse(diet_only, "zahlt man auch mit paypal", diet)
    assert plain.get(INTENT) == {"name": "faq_zahlungsmethoden_akzeptieren", "confidence": 0.97}


def test_a_near_miss_word_does_not_overrule_two_sure_classifiers(ranker):
    # Both classifiers learnt the near misses of the training data; when both are sure of
    # the FAQ, a word of the out-of-scope examples says little (cross-validation, README).
    text = "zahlt man auch mit bitcoin"
    message = Message(
        data={TEXT: text, INTENT_RANKING_KEY: [{"name": "faq_zahlungsmethoden_akzeptieren", "confidence": 0.9}]}
    )
    ranker._rerank(message, {"faq_zahlungsmethoden_akzeptieren": 0.88, "out_of_scope": 0.12})
    assert message.get(INTENT)["name"] == "faq_zahlungsmethoden_akzeptieren"
    assert message.get(INTENT)["confidence"] > 0.85
    unsure = Message(
        data={TEXT: text, INTENT_RANKING_KEY: [{"name": "faq_zahlungsmethoden_akzeptieren", "confidence": 0.9}]}
    )
    ranker._rerank(unsure, {"faq_zahlungsmethoden_akzeptieren": 0.8, "out_of_scope": 0.2})
    ranking = {item["name"]: item["confidence"] for item in unsure.get(INTENT_RANKING_KEY)}
    assert ranking["faq_zahlungsmethoden_akzeptieren"] < 0.5 < ranking["out_of_scope"]  # half of it moved


@pytest.mark.parametrize("loaded", [False, True])
def test_the_features_are_those_of_sklearns_transform(trained, tmp_path, loaded):
    texts = ["Wo bekomme ich meine Rechnungen?", "geht peppol", "", "!!!", "Kündigung für Bestellung, bitte"]
    texts.append("rechnungsadresse " * 50)  # a word many times: sublinear term frequency
    component = trained() if loaded else trained.component
    expected = hstack(
        [component.words_tfidf.transform(map(component.word_text, texts)), component.chars_tfidf.transform(texts)]
    )
    features = component._features(texts)
    assert features.shape == expected.shape
    assert np.allclose(features.toarray(), expected.toarray())


def test_a_faq_without_phrasings_is_left_out(tmp_path):
    """A part of the data (cross-validation) has phrasings of some FAQs only."""
    (tmp_path / "faq.yml").write_text(FAQ, encoding="utf-8")
    (tmp_path / "s").mkdir()
    config = {**FaqKnowledgeRanker.get_default_config(), "knowledge_file": str(tmp_path / "faq.yml")}
    component = FaqKnowledgeRanker.create(
        config, LocalModelStorage(tmp_path / "s"), Resource("r"), ExecutionContext(GraphSchema({}), "t")
    )
    data = TrainingData(
        [
            Message(data={TEXT: text, INTENT: intent})
            for intent, text in [("faq_erhalte_rechnung", "rechnung"), ("greet", "hallo"), ("out_of_scope", "wetter")]
        ]
    )
    component.train(data)
    assert set(component.classifier.classes_) == {"faq_erhalte_rechnung", "greet", "out_of_scope"}
