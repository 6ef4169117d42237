"""Add a customer phrasing to an intent of the NLU training data, safely.

``add_phrasing("erhalte_rechnung", "wo ist meine rechnung")`` inserts one line into the
intent's ``examples: |`` block in ``data/nlu/faq.yml`` (FAQ questions) or
``data/nlu/general.yml`` (out_of_scope, small talk). The file is edited as text, so its
comments and formatting stay as they are; afterwards Rasa's own loader must read it,
else the original is restored. Refusals raise ``PhrasingRefused`` with a German reason.

Every phrasing is masked first (``faqbot.core.masking``: e-mail, phone, IBAN, card numbers,
dates), whichever way it comes, from the review queue or the command line: the training
data are in git. ``add_phrasing_as_written`` says what was written and whether masking
changed it. ``remove_phrasing`` takes one out again (an erasure request).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from faqbot.core.intents import INTENT_PREFIX, faq_id_for
from faqbot.core.knowledge import KnowledgeError, load
from faqbot.core.masking import MARKERS, mask
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.text import one_line

MAX_LENGTH = 500
# Test sets the bot must never be trained on (tests/test_data.py checks this): a phrasing
# from them in the training data would make the evaluation look better than the bot is.
TEST_SETS = ("tests/nlu_heldout.yml", "tests/e2e_paraphrases.yml")
_INTENT_LINE = re.compile(r"^(\s*)- intent:\s*(\S+)\s*$")


class PhrasingRefused(Exception):
    """The phrasing was not added; the message says why (in German, for the trainer)."""


class AlreadyPresent(PhrasingRefused):
    """The intent already has this phrasing: nothing to do, nothing wrong."""


@dataclass(frozen=True)
class Added:
    intent: str  # the intent's name
    phrasing: str  # the example exactly as written to data/nlu
    masked: bool  # masking changed the text: the trainer should know


def normalise(text: str) -> str:
    """The comparison form of tests/test_data.py: case, spaces and punctuation do not count."""
    return re.sub(r"[^\w]+", " ", text.lower()).strip()


def clean(text: str) -> str:
    """One line without list dash or control characters, so the YAML block stays intact."""
    return re.sub(r"^[-\s]+", "", one_line(text)).strip()


# Rasa reads "[text](entity)", "[text]{…}" and "[text][…]" as entity markup: a marker
# right before a bracket gets a space, so that it stays text.
_MARKER_BEFORE_BRACKET = re.compile("(" + "|".join(re.escape(marker) for marker in MARKERS) + r")(?=[(\[{])")


def prepare(text: str) -> str:
    """The phrasing as it would be written: cleaned, personal data masked."""
    return _MARKER_BEFORE_BRACKET.sub(r"\1 ", clean(mask(clean(text))))


def masking_notice(text: str, phrasing: str) -> str:
    """What to tell the trainer when masking changed the phrasing (Sie-form), else ""."""
    if phrasing == clean(text):
        return ""
    return (
        "Hinweis: Die Formulierung enthielt personenbezogene Daten (etwa eine E-Mail-Adresse, eine Telefon- "
        f"oder Kartennummer oder ein Datum); gespeichert wurde sie maskiert: „{phrasing}“. Bitte prüfen Sie, "
        "ob sie so noch sinnvoll ist."
    )


def nlu_files(project: Path) -> list[Path]:
    return sorted((project / "data" / "nlu").glob("*.yml"))


def read_examples(path: Path) -> dict[str, list[str]]:
    examples: dict[str, list[str]] = {}
    for block in YAML(typ="safe").load(path.read_text(encoding="utf-8")).get("nlu") or []:
        if "intent" in block:
            examples.setdefault(block["intent"], []).extend(
                line.strip()[2:].strip()
                for line in str(block.get("examples") or "").splitlines()
                if line.strip().startswith("- ")
            )
    return examples


# A phrasing whose every word is used by at least this many FAQ questions' examples names
# nothing that tells them apart („ich habe eine frage zur rechnung“).
VAGUE_SPREAD = 3


def vagueness_notice(phrasing: str, project: Path = PROJECT_DIR) -> str:
    """What to tell the trainer when a phrasing is too vague to teach the bot anything, else ""."""
    faq_examples = {
        intent: examples
        for path in nlu_files(project)
        for intent, examples in read_examples(path).items()
        if faq_id_for(intent)
    }
    spread: dict[str, set[str]] = {}
    for intent, examples in faq_examples.items():
        for example in examples:
            for word in _words(example):
                spread.setdefault(word, set()).add(intent)
    words = _words(_without_markers(phrasing))
    if not words or any(len(spread.get(word, ())) < VAGUE_SPREAD for word in words):
        return ""
    return (
        f"Hinweis: Die Formulierung ist sehr allgemein: Jedes ihrer Wörter kommt bei mindestens {VAGUE_SPREAD} "
        "FAQ-Fragen vor. Solche Sätze können den Bot bei anderen Fragen verwirren; besser ist eine Formulierung, "
        "die sagt, worum es genau geht (z. B. „Rechnung per Post statt per E-Mail“). Mit `undo` nehmen Sie sie "
        "wieder heraus."
    )


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w{2,}", text.lower()))


def resolve_intent(name: str, project: Path = PROJECT_DIR) -> tuple[str, Path]:
    """The intent name and its file for an FAQ id, an FAQ intent or another intent."""
    name = name.strip()
    owners = {intent: path for path in nlu_files(project) for intent in read_examples(path)}
    for candidate in (name, INTENT_PREFIX + name):
        if candidate in owners:
            return candidate, owners[candidate]
    known = sorted({faq_id_for(intent) or intent for intent in owners})
    close = difflib.get_close_matches(faq_id_for(name) or name, known, n=3, cutoff=0.5)
    hint = f" Meinten Sie: {', '.join(close)}?" if close else " `faqs` listet alle FAQ-IDs."
    raise PhrasingRefused(f"Unbekannte FAQ bzw. unbekannter Intent „{name}“.{hint}")


def _describe(intent: str, project: Path) -> str:
    faq_id = faq_id_for(intent)
    if faq_id:
        try:
            return f"der FAQ „{load(project / 'data' / 'faq.yml')[faq_id].question}“ ({faq_id})"
        except (KnowledgeError, KeyError):
            return f"der FAQ {faq_id}"
    return f"dem Intent {intent}"


def check(intent: str, text: str, project: Path = PROJECT_DIR) -> str:
    """The cleaned and masked phrasing if it may be added to ``intent`` (which need not exist yet)."""
    cleaned = prepare(text)
    if not cleaned:
        raise PhrasingRefused("Die Formulierung ist leer.")
    if not normalise(_without_markers(cleaned)):
        raise PhrasingRefused(
            f"Die Formulierung besteht nur aus personenbezogenen Daten (maskiert: „{cleaned}“); "
            "daraus lernt der Bot nichts."
        )
    if len(cleaned) > MAX_LENGTH:
        raise PhrasingRefused(f"Die Formulierung ist zu lang ({len(cleaned)} Zeichen, höchstens {MAX_LENGTH}).")
    key = normalise(cleaned)
    if not key:
        raise PhrasingRefused("Die Formulierung enthält keine Wörter.")
    for path in nlu_files(project):
        for other, examples in read_examples(path).items():
            match = next((example for example in examples if normalise(example) == key), None)
            if match is None:
                continue
            if other == intent:
                raise AlreadyPresent(f"Diese Formulierung gibt es bei {_describe(intent, project)} schon: „{match}“.")
            raise PhrasingRefused(
                f"Diese Formulierung gehört schon zu {_describe(other, project)}: „{match}“. "
                "Eine Formulierung darf nur zu einer Frage gehören."
            )
    for test_set in TEST_SETS:
        path = project / test_set
        if path.exists() and any(
            normalise(example) == key for examples in read_examples(path).values() for example in examples
        ):
            raise PhrasingRefused(
                f"Diese Formulierung steht im Testsatz {test_set}, mit dem die Qualität "
                "des Bots gemessen wird. Trainiert man darauf, wäre die Auswertung geschönt."
            )
    return cleaned


def _without_markers(text: str) -> str:
    for marker in MARKERS:
        text = text.replace(marker, " ")
    return text


def _example_lines(lines: list[str], intent: str) -> list[int] | None:
    """The numbers of the lines ``- …`` of the intent's examples; None if the intent is not in these lines."""
    start = next(
        (
            number
            for number, line in enumerate(lines)
            if (match := _INTENT_LINE.match(line)) and match.group(2) == intent
        ),
        None,
    )
    if start is None:
        return None
    block_indent = len(_INTENT_LINE.match(lines[start]).group(1))
    examples = []
    for number in range(start + 1, len(lines)):
        line = lines[number]
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if stripped and indent <= block_indent:
            break  # the next intent block or the end of the list
        if stripped.startswith("- ") and indent > block_indent + 2:
            examples.append(number)
    return examples


def _insert_line(lines: list[str], intent: str, phrasing: str) -> list[str]:
    """The lines with ``- phrasing`` after the last example of the intent's block."""
    examples = _example_lines(lines, intent)
    if examples is None:
        raise PhrasingRefused(f"Intent {intent} nicht gefunden.")
    if not examples:
        raise PhrasingRefused(f"Intent {intent} hat keinen Beispielblock (examples: |).")
    last = examples[-1]
    indent = len(lines[last]) - len(lines[last].lstrip())
    return lines[: last + 1] + [" " * indent + f"- {phrasing}\n"] + lines[last + 1 :]


def _write_checked(path: Path, original: str, changed: str, check_loaded) -> None:
    """Write ``changed``; restore ``original`` unless Rasa's loader reads it and ``check_loaded`` agrees."""
    from rasa.shared.nlu.training_data.loading import load_data

    path.write_text(changed, encoding="utf-8")
    try:
        problem = check_loaded(load_data(str(path)))
        if problem:
            raise ValueError(problem)
    except Exception as error:
        path.write_text(original, encoding="utf-8")
        raise PhrasingRefused(
            f"Die Trainingsdaten wären danach nicht mehr lesbar ({error}); nichts wurde geändert."
        ) from error


def add_phrasing_as_written(intent: str, text: str, project: Path = PROJECT_DIR) -> Added:
    """Append the phrasing (masked) to the intent (FAQ id or intent name); says what was written."""
    intent, path = resolve_intent(intent, project)
    phrasing = check(intent, text, project)
    original = path.read_text(encoding="utf-8")

    def problem(loaded) -> str:
        # Rasa reads [..](..) as entity markup: the example must come back as it was written.
        if any(
            message.get("text") == phrasing and message.get("intent") == intent for message in loaded.intent_examples
        ):
            return ""
        return "Rasa liest die Formulierung anders, als sie geschrieben wurde"

    changed = "".join(_insert_line(original.splitlines(keepends=True), intent, phrasing))
    _write_checked(path, original, changed, problem)
    return Added(intent, phrasing, phrasing != clean(text))


def add_phrasing(intent: str, text: str, project: Path = PROJECT_DIR) -> str:
    """Append the phrasing (masked) to the intent (FAQ id or intent name); returns the intent name."""
    return add_phrasing_as_written(intent, text, project).intent


def remove_phrasing(intent: str, text: str, project: Path = PROJECT_DIR) -> bool:
    """Remove the example ``text`` (exactly as written) from the intent; whether it was there.

    ``intent`` is an intent name or FAQ id; an intent that no longer exists has nothing to
    remove. Only the example's line goes, the rest of the file stays as it is. Should Rasa
    no longer read the file afterwards, it is restored and ``PhrasingRefused`` raised.
    """
    text = text.strip()
    for path in nlu_files(project):
        original = path.read_text(encoding="utf-8")
        lines = original.splitlines(keepends=True)
        for name in (intent.strip(), INTENT_PREFIX + intent.strip()):
            examples = _example_lines(lines, name)
            if examples is None:
                continue
            matching = {number for number in examples if lines[number].strip()[2:].strip() == text}
            if not matching:
                return False

            def problem(loaded, name: str = name) -> str:
                if any(item.get("text") == text and item.get("intent") == name for item in loaded.intent_examples):
                    return "die Formulierung ist danach noch da"
                return ""

            kept = [line for number, line in enumerate(lines) if number not in matching]
            _write_checked(path, original, "".join(kept), problem)
            return True
    return False
