"""Import an FAQ page into the project's FAQ knowledge and training data.

    python -m faqbot.tools.importer data/faq_seite.txt          # text form, as in the seed
    python -m faqbot.tools.importer faq.html                     # the same page as HTML
    python -m faqbot.tools.importer faq.html --dry-run           # only report what would change

Reads question/answer pairs, gives each question a stable id (a slug), and updates
``data/faq.yml`` (the answers), ``data/nlu/faq.yml`` (one intent per question; the
trainers' phrasings are kept), ``data/rules/faq.yml`` and the intents in ``domain.yml``.
It reports which questions were added, changed or removed. Questions that disappeared
from the page stay in the bot until ``--remove-missing`` is given, so no intent is
dropped silently.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import LiteralScalarString

from faqbot.core.intents import intent_for
from faqbot.core.knowledge import FaqEntry, dump, load
from faqbot.core.paths import PROJECT_DIR

KNOWLEDGE_HEADER = """\
# FAQ-Wissen des Bots: eine Eintrag je FAQ-Frage (id, Kategorie, Frage, Antwort).
# Erzeugt und aktualisiert von `python -m faqbot.tools.importer <FAQ-Seite>`.
# Die Antworten werden wörtlich an Kunden geschickt. Eine korrigierte Antwort
# wirkt sofort; ihre Wörter lernt der Bot beim nächsten Training. Die id ist stabil: nicht ändern, sie ist der
# Name des Intents (faq_<id>) in data/nlu/faq.yml.
"""
RULES_HEADER = """\
# Erzeugt von faqbot.tools.importer aus data/faq.yml: jede FAQ-Frage wird mit
# action_answer_faq beantwortet. Nicht von Hand bearbeiten.
"""
NLU_HEADER = """\
# Formulierungen je FAQ-Frage. Ein Intent je Frage: faq_<id> aus data/faq.yml.
# Trainer ergänzen hier Formulierungen, wie Kunden sie schreiben.
"""

ANSWER_MARKER = "Antwort anzeigen"
# Words that carry no meaning for an id; the rest of the question makes the slug.
STOPWORDS = set(
    """
    wie was wo wann wer welche welcher welches warum gibt es ich sie mein meine meinen
    meiner ein eine einen der die das den dem des und oder bei an auf mit fuer von zu um
    im in ist sind kann können koennen werden wird tun ihr ihre ihren man sich lassen
""".split()
)
SLUG_WORDS = 4
# Elements that make up an answer below a question heading (a footer or section does not).
ANSWER_TAGS = {"p", "ul", "ol", "li", "table", "blockquote", "div", "span", "strong", "em", "br"}


@dataclass
class ImportReport:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def lines(self, remove_missing: bool, remove_flag: str = "--remove-missing") -> Iterable[str]:
        yield (
            f"{len(self.added)} neu, {len(self.changed)} geändert, "
            f"{len(self.unchanged)} unverändert, {len(self.removed)} nicht mehr auf der Seite"
        )
        for faq_id in self.added:
            yield f"  neu:       {faq_id}"
        for faq_id in self.changed:
            yield f"  geändert:  {faq_id}"
        for faq_id in self.removed:
            what = "entfernt" if remove_missing else f"behalten (mit {remove_flag} löschen)"
            yield f"  fehlt:     {faq_id} – {what}"


def transliterate(text: str) -> str:
    text = text.lower()
    for umlaut, plain in (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss")):
        text = text.replace(umlaut, plain)
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def slugify(question: str) -> str:
    words = re.findall(r"[a-z0-9]+", transliterate(question))
    content = [word for word in words if word not in STOPWORDS] or words
    return "_".join(content[:SLUG_WORDS])


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def parse_text(text: str) -> list[FaqEntry]:
    """The text form: category lines, a question line, 'Antwort anzeigen', the answer."""
    lines = [line.rstrip() for line in text.splitlines()]
    markers = [i for i, line in enumerate(lines) if line.strip() == ANSWER_MARKER]
    entries: list[FaqEntry] = []
    category = ""
    for number, marker in enumerate(markers):
        # A category heading is the non-empty line right before a question, unless it is
        # the end of the previous answer (answers end with sentence punctuation).
        before = [line.strip() for line in lines[: marker - 1] if line.strip()]
        if before and not before[-1].endswith((".", "!", "?", ":")):
            category = before[-1]
        end = markers[number + 1] - 1 if number + 1 < len(markers) else len(lines)
        answer_lines: list[str] = []
        for line in lines[marker + 1 : end]:
            if not line.strip():
                if answer_lines:
                    break  # a blank line ends the answer (the page's closing text follows)
                continue
            answer_lines.append(line.strip())
        if answer_lines and not answer_lines[-1].endswith((".", "!", "?", ")")):
            answer_lines.pop()  # the next category's heading
        question = lines[marker - 1].strip()
        entries.append(FaqEntry(slugify(question), category, question, _clean(" ".join(answer_lines))))
    return entries


def parse_html(html: str) -> list[FaqEntry]:
    """FAQ pages as written: <details>/<summary>, <dl>/<dt>/<dd>, or a question heading + paragraphs."""
    from bs4 import BeautifulSoup, NavigableString, Tag

    soup = BeautifulSoup(html, "html.parser")
    for link in soup.find_all("a", href=True):  # keep links clickable in the chat (Markdown)
        link.replace_with(f"[{link.get_text(strip=True)}]({link['href']})")

    def text_of(node: Tag) -> str:
        return _clean(node.get_text(" "))

    def category_of(node: Tag) -> str:
        heading = node.find_previous(["h1", "h2"]) if node.name not in ("h1", "h2") else None
        if node.name == "h3" or node.name in ("details", "dt"):
            heading = node.find_previous(["h2"]) or heading
        return text_of(heading) if heading else ""

    entries: list[FaqEntry] = []
    for details in soup.find_all("details"):
        summary = details.find("summary")
        if not summary:
            continue
        question = text_of(summary)
        summary.extract()
        entries.append(FaqEntry(slugify(question), category_of(details), question, text_of(details)))
    for term in soup.find_all("dt"):
        definition = term.find_next_sibling("dd")
        if definition:
            question = text_of(term)
            entries.append(FaqEntry(slugify(question), category_of(term), question, text_of(definition)))
    if entries:
        return entries
    for heading in soup.find_all(["h2", "h3", "h4"]):
        question = text_of(heading)
        if not question.endswith("?"):
            continue
        parts = []
        for sibling in heading.next_siblings:  # the answer: body text up to the next heading/section
            if isinstance(sibling, Tag) and sibling.name not in ANSWER_TAGS:
                break
            if isinstance(sibling, Tag) or (isinstance(sibling, NavigableString) and sibling.strip()):
                parts.append(_clean(sibling.get_text(" ") if isinstance(sibling, Tag) else str(sibling)))
        category = heading.find_previous(["h1", "h2"] if heading.name != "h2" else ["h1"])
        entries.append(
            FaqEntry(
                slugify(question),
                text_of(category) if category else "",
                question,
                _clean(" ".join(p for p in parts if p)),
            )
        )
    return entries


def parse_page(path: Path) -> list[FaqEntry]:
    text = path.read_text(encoding="utf-8")
    is_html = path.suffix.lower() in (".html", ".htm") or re.search(r"<(html|body|details|dl|h[1-4])\b", text, re.I)
    entries = parse_html(text) if is_html else parse_text(text)
    if not entries:
        raise SystemExit(f"Keine Fragen/Antworten in {path} gefunden.")
    seen: dict[str, int] = {}
    for entry in entries:  # two questions with the same slug get a numbered suffix
        seen[entry.id] = seen.get(entry.id, 0) + 1
        if seen[entry.id] > 1:
            entry.id = f"{entry.id}_{seen[entry.id]}"
    return entries


def _match_existing(entry: FaqEntry, existing: dict[str, FaqEntry], taken: set) -> str | None:
    """Which existing id a parsed question is, even if its wording on the page changed."""
    if entry.id in existing and entry.id not in taken:
        return entry.id
    best, best_score = None, 0.0
    for faq_id, old in existing.items():
        if faq_id in taken:
            continue
        score = max(
            difflib.SequenceMatcher(None, old.question, entry.question).ratio(),
            1.0 if old.answer == entry.answer else 0.0,
        )
        if score > best_score:
            best, best_score = faq_id, score
    return best if best_score >= 0.75 else None


def merge(parsed: list[FaqEntry], existing: dict[str, FaqEntry], remove_missing: bool):
    report, result, taken = ImportReport(), [], set()
    for entry in parsed:
        faq_id = _match_existing(entry, existing, taken)
        if faq_id is None:
            report.added.append(entry.id)
        else:
            entry.id = faq_id
            taken.add(faq_id)
            old = existing[faq_id]
            (
                report.unchanged
                if (old.question, old.answer, old.category) == (entry.question, entry.answer, entry.category)
                else report.changed
            ).append(faq_id)
        result.append(entry)
    for faq_id, old in existing.items():
        if faq_id not in taken:
            report.removed.append(faq_id)
            if not remove_missing:
                result.append(old)
    return result, report


def _round_trip_yaml() -> YAML:
    yaml = YAML()
    yaml.width = 4096
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def update_nlu(path: Path, entries: list[FaqEntry], removed: list[str]) -> None:
    """Add an intent for each new question (its first example is the question itself)."""
    yaml = _round_trip_yaml()
    data = yaml.load(path.read_text(encoding="utf-8")) if path.exists() else None
    if not data:
        data = yaml.load(NLU_HEADER + 'version: "3.1"\nnlu: []\n')
    blocks = data["nlu"]
    by_intent = {block.get("intent"): block for block in blocks}
    for entry in entries:
        block = by_intent.get(entry.intent)
        if block is None:
            blocks.append({"intent": entry.intent, "examples": LiteralScalarString(f"- {entry.question}\n")})
            continue
        examples = str(block["examples"])
        if f"- {entry.question}\n" not in examples:  # a reworded question becomes an example too
            block["examples"] = LiteralScalarString(examples.rstrip("\n") + f"\n- {entry.question}\n")
    for intent in [intent_for(faq_id) for faq_id in removed]:
        if intent in by_intent:
            blocks.remove(by_intent[intent])
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(data, handle)


def write_rules(path: Path, entries: list[FaqEntry]) -> None:
    lines = [RULES_HEADER, 'version: "3.1"', "rules:"]
    for entry in entries:
        lines += [
            f"  - rule: FAQ {entry.id} beantworten",
            "    steps:",
            f"      - intent: {entry.intent}",
            "      - action: action_answer_faq",
        ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def update_domain(path: Path, entries: list[FaqEntry], removed: list[str]) -> None:
    yaml = _round_trip_yaml()
    domain = yaml.load(path.read_text(encoding="utf-8"))
    intents = domain["intents"]
    for intent in [intent_for(faq_id) for faq_id in removed]:
        if intent in intents:
            intents.remove(intent)
    for entry in entries:
        if entry.intent not in intents:
            intents.append(entry.intent)
    with path.open("w", encoding="utf-8") as handle:
        yaml.dump(domain, handle)


def run_import(
    page: Path, project: Path = PROJECT_DIR, remove_missing: bool = False, dry_run: bool = False
) -> ImportReport:
    knowledge_file = project / "data" / "faq.yml"
    existing = load(knowledge_file) if knowledge_file.exists() else {}
    entries, report = merge(parse_page(page), existing, remove_missing)
    if dry_run:
        return report
    removed = report.removed if remove_missing else []
    dump(entries, knowledge_file, KNOWLEDGE_HEADER)
    update_nlu(project / "data" / "nlu" / "faq.yml", entries, removed)
    write_rules(project / "data" / "rules" / "faq.yml", entries)
    update_domain(project / "domain.yml", entries, removed)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.tools.importer",
        description="Liest eine FAQ-Seite (Text oder HTML) und aktualisiert FAQ-Wissen, "
        "Intents, Regeln und Domain. Vorhandene Formulierungen bleiben erhalten.",
    )
    parser.add_argument("page", type=Path, help="FAQ-Seite als .txt oder .html")
    parser.add_argument("--project", type=Path, default=PROJECT_DIR, help="Projektordner")
    parser.add_argument(
        "--remove-missing", action="store_true", help="Fragen, die nicht mehr auf der Seite stehen, samt Intent löschen"
    )
    parser.add_argument("--dry-run", action="store_true", help="nur berichten, nichts schreiben")
    args = parser.parse_args(argv)
    report = run_import(args.page, args.project, args.remove_missing, args.dry_run)
    for line in report.lines(args.remove_missing):
        print(line)
    if (report.added or report.changed) and not args.dry_run:
        print("Bitte neu trainieren (make train), damit neue Fragen erkannt werden.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
