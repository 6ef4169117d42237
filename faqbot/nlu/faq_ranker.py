"""A second opinion on DIET's intent ranking, from the FAQ knowledge itself.

Three things DIET cannot do on its own (README, "Quality and speed", where each was measured):

* **Words only the answer contains.** Customers ask from the answer's side (PEPPOL,
  Kundenportal, Checkout). A linear classifier over word and character n-gram TF-IDF is
  trained on the phrasings *plus* each FAQ's question and answer sentences; its
  probabilities are averaged with DIET's (``weight`` is its share).
* **Near misses.** „kann ich mit bitcoin bezahlen“ is close to the payment FAQ, but
  Bitcoin occurs only in out-of-scope examples, in no FAQ's phrasings, question or answer.
  For a message with such a word, ``near_miss_share`` of the best FAQ's confidence goes to
  ``out_of_scope``: the bot asks „Meinten Sie …?“ (with „Keine davon“) instead of answering.
  Not when DIET and the knowledge classifier are both sure of the FAQ
  (``near_miss_overruled_at``): both learnt the near misses of the training data, and a
  word from the long list of out-of-scope examples („angezeigt“, „gerade“) then says
  little (cross-validation: more questions answered at once, no more wrong answers).
* **Small talk outside its place.** „wie kann ich meine bestellung abbrechen“ must not be
  the form's „abbrechen“, „gibts was günstiger für gründer“ not a greeting. When the best
  intent is a small-talk intent (``small_talk_intents``), the knowledge classifier alone
  does not think so, and the message has words of the FAQ knowledge that small talk never
  uses, the small-talk intents are taken out of the ranking: the message is read as a
  question, and FallbackClassifier (after this component) decides between answer,
  „Meinten Sie …?“ and the offer of the support team.
  A pure „nein“ or „hallo“ keeps its intent.

Text processing is this component's own (a regular-expression tokenizer and the word forms
of ``faqbot.nlu.word_forms``), so that the FAQ texts, which are not Rasa messages, are read
exactly like the customer's message.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.shared.nlu.constants import INTENT, INTENT_RANKING_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData
from rasa.shared.utils.io import dump_obj_as_json_to_file, read_json_file
from scipy.sparse import csr_matrix, hstack

from faqbot.core import knowledge
from faqbot.core.intents import OUT_OF_SCOPE, faq_id_for
from faqbot.nlu.word_forms import MIN_PART_LENGTH, lemma, load_dictionary, word_forms

WORD = re.compile(r"[^\W\d_]+", re.UNICODE)
SENTENCE_END = re.compile(r"(?<=[.!?;])\s+")
WORD_FEATURES = {"analyzer": str.split, "sublinear_tf": True}
CHAR_NGRAMS = {"analyzer": "char_wb", "ngram_range": (2, 5), "sublinear_tf": True, "lowercase": True}
RANKING_LENGTH = 10
# Content words: at least this long, and not a function word (spaCy's German stop words).
MIN_CONTENT_LENGTH = 3
# A customer's word counts as a knowledge word if it shares this many first letters with
# one („günstiger“/„günstig“, „rechnungen“/„rechnung“): inflection the lemmatizer misses.
SHARED_PREFIX = 6


def word_text(text: str, known: Collection[str] = ()) -> str:
    """``text`` as lowercase word forms (parts of compounds of ``known`` words included)."""
    return " ".join(form for word in WORD.findall(text) for form in word_forms(word, known))


def words(text: str, known: Collection[str] = ()) -> list[str]:
    return word_text(text, known).split()


def knowledge_texts(path: Path) -> dict[str, list[str]]:
    """Per FAQ intent: its question and each sentence of its answer."""
    return {
        entry.intent: [entry.question, *[s for s in SENTENCE_END.split(entry.answer) if s.strip()]]
        for entry in knowledge.load(path).values()
    }


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER], is_trainable=True)
class FaqKnowledgeRanker(GraphComponent, IntentClassifier):
    @classmethod
    def required_components(cls) -> list[type]:
        return []

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            "knowledge_file": "data/faq.yml",
            "weight": 0.7,  # the knowledge classifier's share; DIET's is the rest
            "use_answers": True,
            "regularisation": 50.0,  # LogisticRegression's C
            "near_miss_share": 0.5,
            "near_miss_overruled_at": 0.85,  # both classifiers at least this sure: no near miss
            "small_talk_intents": ["greet", "goodbye", "thank", "affirm", "deny", "back_to_bot", "bot_challenge"],
        }

    def __init__(self, config: dict[str, Any], model_storage: ModelStorage, resource: Resource) -> None:
        self.config = config
        self._model_storage = model_storage
        self._resource = resource
        self.small_talk = set(config["small_talk_intents"])
        self.classifier = None  # until trained or loaded

    def _fit(self, texts: list[str], labels: list[str]) -> None:
        """The classifier over word and character n-grams, and the vocabularies of the checks."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        # The words compounds are split into: those of the training texts and the FAQ.
        self.known = {lemma(word) for text in texts for word in WORD.findall(text) if len(word) >= MIN_PART_LENGTH}
        self.words_tfidf = TfidfVectorizer(**WORD_FEATURES)
        self.chars_tfidf = TfidfVectorizer(**CHAR_NGRAMS)
        features = hstack(
            [self.words_tfidf.fit_transform(map(self.word_text, texts)), self.chars_tfidf.fit_transform(texts)]
        )
        # liblinear (one-vs-rest): 2 s on the project's data; the multinomial lbfgs took 15 s
        # and answered fewer questions at once (README, "Quality and speed").
        self.classifier = LogisticRegression(
            C=self.config["regularisation"], solver="liblinear", class_weight="balanced"
        )
        self.classifier.fit(features.tocsr(), labels)

        by_intent: dict[str, set[str]] = {}
        for text, label in zip(texts, labels, strict=True):
            by_intent.setdefault(label, set()).update(self.words(text))
        faq_words = set().union(*(found for label, found in by_intent.items() if faq_id_for(label)))
        self.small_talk_words = set().union(*(by_intent.get(label, set()) for label in self.small_talk))
        self.knowledge_words = {
            word for word in faq_words - self.small_talk_words if len(word) >= MIN_CONTENT_LENGTH
        } - stop_words()
        # Words (and prefixes, for inflection) only out-of-scope examples use: near misses.
        self.out_of_scope_words = with_prefixes(by_intent.get(OUT_OF_SCOPE, set())) - with_prefixes(faq_words)
        self._prepare()

    def _prepare(self) -> None:
        load_dictionary()
        self.word_rows, self.char_rows = TfidfRows.of(self.words_tfidf), TfidfRows.of(self.chars_tfidf)
        self.knowledge_prefixes = with_prefixes(self.knowledge_words) - self.knowledge_words

    def word_text(self, text: str) -> str:
        return word_text(text, self.known)

    def words(self, text: str) -> list[str]:
        return words(text, self.known)

    def _features(self, texts: list[str]) -> csr_matrix:
        """The two vectorizers' ``transform``, side by side, without sklearn's per-call
        overhead (2.7 → 0.6 ms per message; the same figures: tests/test_nlu_components.py)."""
        offset = len(self.word_rows.idf)
        indptr, indices, values = [0], [np.empty(0, dtype=np.int64)], [np.empty(0)]
        for text in texts:
            word_columns, word_values = self.word_rows.row(self.word_text(text))
            char_columns, char_values = self.char_rows.row(text)
            indices += [word_columns, char_columns + offset]
            values += [word_values, char_values]
            indptr.append(indptr[-1] + len(word_columns) + len(char_columns))
        shape = (len(texts), offset + len(self.char_rows.idf))
        return csr_matrix((np.concatenate(values), np.concatenate(indices), indptr), shape=shape)

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> FaqKnowledgeRanker:
        return cls(config, model_storage, resource)

    def train(self, training_data: TrainingData) -> Resource:
        examples = [(example.get(TEXT), example.get(INTENT)) for example in training_data.intent_examples]
        # Only FAQs with phrasings: another would be a class DIET does not know (a part of
        # the data, as in cross-validation, trains on some FAQs only).
        trained = {label for _, label in examples}
        faq_texts = {
            intent: texts
            for intent, texts in knowledge_texts(Path(self.config["knowledge_file"])).items()
            if intent in trained
        }
        # Customers often write ae/oe/ue or leave the dots off: teach both spellings.
        examples += [(variant, label) for text, label in examples for variant in umlaut_variants(text)]
        if self.config["use_answers"]:
            examples += [(sentence, intent) for intent, sentences in faq_texts.items() for sentence in sentences]
        self._fit([text for text, _ in examples], [label for _, label in examples])
        self.persist()
        return self._resource

    def persist(self) -> None:
        """Vocabularies as JSON, weights as numpy arrays: nothing pickled in the model."""
        with self._model_storage.write_to(self._resource) as directory:
            dump_obj_as_json_to_file(
                directory / "faq_ranker.json",
                {
                    "classes": [str(name) for name in self.classifier.classes_],
                    "words_vocabulary": {k: int(v) for k, v in self.words_tfidf.vocabulary_.items()},
                    "chars_vocabulary": {k: int(v) for k, v in self.chars_tfidf.vocabulary_.items()},
                    "small_talk_words": sorted(self.small_talk_words),
                    "knowledge_words": sorted(self.knowledge_words),
                    "out_of_scope_words": sorted(self.out_of_scope_words),
                    "known": sorted(self.known),
                },
            )
            np.savez(
                directory / "faq_ranker.npz",
                words_idf=self.words_tfidf.idf_,
                chars_idf=self.chars_tfidf.idf_,
                coef=self.classifier.coef_,
                intercept=self.classifier.intercept_,
            )

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> FaqKnowledgeRanker:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        component = cls(config, model_storage, resource)
        with model_storage.read_from(resource) as directory:
            stored = read_json_file(directory / "faq_ranker.json")
            with np.load(directory / "faq_ranker.npz", allow_pickle=False) as arrays:
                weights = {name: arrays[name] for name in arrays.files}
        component.words_tfidf = fitted(
            TfidfVectorizer(**WORD_FEATURES), stored["words_vocabulary"], weights["words_idf"]
        )
        component.chars_tfidf = fitted(TfidfVectorizer(**CHAR_NGRAMS), stored["chars_vocabulary"], weights["chars_idf"])
        component.classifier = LogisticRegression(solver="liblinear")
        component.classifier.coef_, component.classifier.intercept_ = weights["coef"], weights["intercept"]
        component.classifier.classes_ = np.array(stored["classes"])
        component.small_talk_words = set(stored["small_talk_words"])
        component.knowledge_words = set(stored["knowledge_words"])
        component.out_of_scope_words = set(stored["out_of_scope_words"])
        component.known = set(stored["known"])
        component._prepare()
        return component

    def process(self, messages: list[Message]) -> list[Message]:
        if self.classifier is None or not messages:
            return messages
        probabilities = self.classifier.predict_proba(self._features([m.get(TEXT) or "" for m in messages]))
        for message, row in zip(messages, probabilities, strict=True):
            self._rerank(message, dict(zip(self.classifier.classes_, row, strict=True)))
        return messages

    def _rerank(self, message: Message, knowledge_view: dict[str, float]) -> None:
        weight = self.config["weight"]
        diet = {item["name"]: item["confidence"] for item in message.get(INTENT_RANKING_KEY) or []}
        combined = {
            name: (1 - weight) * diet.get(name, 0.0) + weight * knowledge_view.get(name, 0.0)
            for name in set(diet) | set(knowledge_view)
        }
        best = max(combined, key=combined.get)
        knowledge_best = max(knowledge_view, key=knowledge_view.get)
        if (
            best in self.small_talk
            and knowledge_best not in self.small_talk  # „danke für die info“ stays thanks
            and self.has_knowledge_words(message.get(TEXT) or "")
        ):
            rest = {name: value for name, value in combined.items() if name not in self.small_talk}
            total = sum(rest.values()) or 1.0
            combined = {name: value / total for name, value in rest.items()}
        best = max(combined, key=combined.get)
        both_sure = min(diet.get(best, 0.0), knowledge_view.get(best, 0.0)) >= self.config["near_miss_overruled_at"]
        if faq_id_for(best) and not both_sure and self.near_miss_words(message.get(TEXT) or ""):
            moved = combined[best] * self.config["near_miss_share"]
            combined[best] -= moved
            combined[OUT_OF_SCOPE] = combined.get(OUT_OF_SCOPE, 0.0) + moved
        ranking = sorted(
            ({"name": name, "confidence": float(value)} for name, value in combined.items()),
            key=lambda item: item["confidence"],
            reverse=True,
        )[:RANKING_LENGTH]
        message.set(INTENT, ranking[0], add_to_output=True)
        message.set(INTENT_RANKING_KEY, ranking, add_to_output=True)

    def near_miss_words(self, text: str) -> list[str]:
        """Words of the message that out-of-scope examples use and no FAQ text does."""
        return [
            word
            for word in self.words(text)
            if len(word) > MIN_CONTENT_LENGTH
            and word not in stop_words()
            and (word in self.out_of_scope_words or word[:SHARED_PREFIX] in self.out_of_scope_words)
        ]

    def has_knowledge_words(self, text: str) -> bool:
        """Does the message contain words of the FAQ knowledge that small talk never uses?"""
        for word in self.words(text):
            if len(word) < MIN_CONTENT_LENGTH or word in self.small_talk_words or word in stop_words():
                continue
            if word in self.knowledge_words or word[:SHARED_PREFIX] in self.knowledge_prefixes:
                return True
        return False


UMLAUTS = (
    str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"}),
    str.maketrans({"ä": "a", "ö": "o", "ü": "u", "ß": "s", "Ä": "A", "Ö": "O", "Ü": "U"}),
)


def umlaut_variants(text: str) -> list[str]:
    """``text`` as customers type it without umlauts (ae/oe/ue and plain vowels)."""
    return [variant for table in UMLAUTS if (variant := text.translate(table)) != text]


class TfidfRows(NamedTuple):
    """A fitted TfidfVectorizer's analyzer, vocabulary and idf weights, read once (sklearn
    1.1 rebuilds ``idf_`` from a sparse matrix on every access), for one text at a time."""

    analyze: Callable[[str], list[str]]
    vocabulary: dict[str, int]
    idf: np.ndarray

    @classmethod
    def of(cls, vectorizer: Any) -> TfidfRows:
        return cls(vectorizer.build_analyzer(), vectorizer.vocabulary_, vectorizer.idf_)

    def row(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Columns and values of ``transform([text])``: the analyzer's n-grams in the
        vocabulary, sublinear term frequency times idf, L2-normalised (WORD_FEATURES, CHAR_NGRAMS)."""
        counts = Counter(column for gram in self.analyze(text) if (column := self.vocabulary.get(gram)) is not None)
        columns = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        values = (1.0 + np.log(np.fromiter(counts.values(), dtype=float, count=len(counts)))) * self.idf[columns]
        norm = np.linalg.norm(values)
        return columns, values / norm if norm else values


def fitted(vectorizer: Any, vocabulary: dict[str, int], idf: np.ndarray) -> Any:
    """``vectorizer`` as after ``fit``: with its stored vocabulary and idf weights."""
    vectorizer.vocabulary_, vectorizer.idf_ = vocabulary, idf
    return vectorizer


def with_prefixes(found: set[str]) -> set[str]:
    """``found`` plus the first SHARED_PREFIX letters of each longer word."""
    return set(found) | {word[:SHARED_PREFIX] for word in found if len(word) > SHARED_PREFIX}


def stop_words() -> frozenset[str]:
    from spacy.lang.de.stop_words import STOP_WORDS

    return STOP_WORDS
