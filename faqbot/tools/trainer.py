"""Werkzeug für Trainerinnen und Trainer des FAQ-Bots – ohne YAML-Dateien zu öffnen.

So wird der Bot besser, in vier Schritten:

  1. review        Nachrichten durchgehen, bei denen der Bot unsicher war, nachfragen
                   musste, nicht helfen konnte oder an den Support weitergab, und sie der
                   richtigen FAQ zuordnen (oder „nicht in den FAQ“, „neue Frage“, überspringen).
  2. add-phrasing  einzelne Formulierungen von Kunden einer FAQ hinzufügen
                   (add-faq / import: eine ganz neue FAQ-Frage anlegen;
                   list: Ihre Änderungen seit dem letzten Training; undo: zurücknehmen).
  3. train         den Bot neu trainieren (nur wenn sich die Daten geändert haben).
  4. evaluate      auswerten und den Bericht (HTML) lesen: Was ist besser, was schlechter?

`faqs` zeigt die FAQ-IDs, die Sie bei 1 und 2 angeben. Hilfe zu jedem Schritt:
`faqbot-trainer <Schritt> --help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from faqbot.core import review_decisions, trainer_journal
from faqbot.core.intents import GENERAL_INTENTS, OUT_OF_SCOPE, classifier_guess, faq_id_for
from faqbot.core.knowledge import FaqEntry, load
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.phrasings import (
    AlreadyPresent,
    PhrasingRefused,
    add_phrasing_as_written,
    masking_notice,
    vagueness_notice,
)
from faqbot.tools import new_faq

LOCAL_TIME = ZoneInfo("Europe/Berlin")  # the support team's time, as in support.yml


def knowledge(project: Path) -> dict[str, FaqEntry]:
    return load(project / "data" / "faq.yml")


def cmd_faqs(args: argparse.Namespace) -> int:
    category = None
    for number, entry in enumerate(knowledge(args.projekt).values(), start=1):
        if entry.category != category:
            category = entry.category
            print(f"\n{category}")
        print(f"  {number:2d}  {entry.id:<48} {entry.question}")
    return 0


def _choose_faq(answer: str, numbered: list[FaqEntry], faqs: dict[str, FaqEntry]) -> str | None:
    if answer.isdigit() and 1 <= int(answer) <= len(numbered):
        return numbered[int(answer) - 1].id
    faq_id = answer[4:] if answer.startswith("faq_") else answer
    return faq_id if faq_id in faqs else None


def cmd_ratings(args: argparse.Namespace) -> int:
    from faqbot.core.review_store import ReviewStore, location

    store = ReviewStore(args.datei or location())
    try:
        counts = store.feedback_counts(since=datetime.now(timezone.utc) - timedelta(days=args.tage))
    finally:
        store.close()
    if not counts:
        print(f"Keine Bewertungen in den letzten {args.tage} Tagen.")
        return 0
    faqs = knowledge(args.projekt)
    print(f"Bewertungen „War diese Antwort hilfreich?“ der letzten {args.tage} Tage, die schlechtesten zuerst:")
    ranked = sorted(counts.items(), key=lambda item: (-item[1]["unhelpful"] / sum(item[1].values()), item[0]))
    for faq_id, count in ranked:
        question = faqs[faq_id].question if faq_id in faqs else f"{faq_id} (nicht mehr in den FAQ)"
        print(f"  {count['unhelpful']:>4} nicht hilfreich · {count['helpful']:>4} hilfreich · „{question}“")
    print("Die als nicht hilfreich bewerteten Fragen stehen in `faqbot-trainer review --art unhelpful`.")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from faqbot.core.review_store import ReviewStore, location

    store = ReviewStore(args.datei or location())
    since = datetime.now(timezone.utc) - timedelta(days=args.tage) if args.tage else None
    entries = store.entries(status="open", kind=args.art, limit=args.hoechstens, since=since, by_priority=True)
    if not entries:
        print("Keine offenen Nachrichten in der Review-Warteschlange.")
        return 0
    faqs = knowledge(args.projekt)
    numbered = list(faqs.values())
    groups: dict[str | None, list] = defaultdict(list)
    for entry in entries:
        groups[entry.guess].append(entry)
    print(f"{len(entries)} offene Nachrichten. FAQ-Nummern und -IDs: `faqbot-trainer faqs`.")
    print(
        "Eingabe: Nummer oder ID = dieser FAQ zuordnen · o = nicht in den FAQ · n = neue Frage · "
        "s = überspringen · q = beenden · Enter = Vorschlag übernehmen\n"
    )
    done: dict[str, int] = defaultdict(int)
    try:
        for guess, group in groups.items():
            title = f"„{faqs[guess].question}“ ({guess})" if guess in faqs else "keine FAQ-Frage"
            print(f"=== Der Bot vermutete: {title} – {len(group)} Nachricht(en) ===")
            for entry in group:
                if not _review_entry(entry, store, faqs, numbered, args.projekt, done):
                    raise EOFError
    except (EOFError, KeyboardInterrupt):
        print()
    finally:
        store.close()
    print("Ergebnis: " + ", ".join(f"{count} {what}" for what, count in done.items()) if done else "Nichts geändert.")
    if done.get("zugeordnet") or done.get("nicht in den FAQ"):
        print("Nächster Schritt: `faqbot-trainer train`, danach `faqbot-trainer evaluate`.")
    return 0


def _review_entry(entry, store, faqs, numbered, project: Path, done: dict[str, int]) -> bool:
    """Ask about one message; False when the trainer quits (q or end of input)."""
    confidence = entry.guess_confidence
    when = datetime.fromisoformat(entry.created).astimezone(LOCAL_TIME).strftime("%d.%m.%Y %H:%M")
    print(f"\n  #{entry.id}  „{entry.text}“")
    print(
        f"      {review_decisions.KIND_NAMES.get(entry.kind, entry.kind)} · Sicherheit "
        f"{'–' if confidence is None else f'{confidence:.2f}'} · am {when} · "
        f"Kunde {review_decisions.outcome_text(entry.outcome, faqs)}"
    )
    print(f"      Der Bot {review_decisions.answer_text(entry, faqs)}.")
    suggestion = entry.picked_faq if entry.picked_faq in faqs else None
    if suggestion:
        print(f"      Vorschlag (vom Kunden gewählt): {suggestion} – Enter übernimmt")
    elif entry.kind == "sample" and entry.guess in faqs:  # confirming a right answer is one key
        suggestion = entry.guess
        print(f"      Vorschlag (die Antwort des Bots): {suggestion} – Enter übernimmt, wenn sie stimmt")
    while True:
        answer = input("      Zuordnen [Nr./ID, o, n, s, q]: ").strip()
        if answer == "" and suggestion:
            answer = suggestion
        if answer == "q":
            return False
        if answer == "s":
            store.set_status(entry.id, "skipped")
            done["übersprungen"] += 1
            return True
        if answer == "n":
            store.set_status(entry.id, "new_question")
            done["als neue Frage markiert"] += 1
            return True
        faq_id = None if answer == "o" else _choose_faq(answer, numbered, faqs)
        if answer != "o" and faq_id is None:
            print("      Bitte eine FAQ-Nummer oder -ID angeben, oder o, n, s, q.")
            continue
        decision = review_decisions.assign(store, entry, faq_id, project)
        for message in decision.messages:
            print(f"      {message}")
        if not decision.settled:
            continue
        done["nicht in den FAQ" if decision.intent == OUT_OF_SCOPE else "zugeordnet"] += 1
        return True


def cmd_add_phrasing(args: argparse.Namespace) -> int:
    # Unquoted words are the phrasing too: `add-phrasing 16 geht apple pay`.
    text = " ".join(args.text)
    numbered = list(knowledge(args.projekt).values())
    faq = numbered[int(args.faq) - 1].id if args.faq.isdigit() and 1 <= int(args.faq) <= len(numbered) else args.faq
    try:
        added = add_phrasing_as_written(faq, text, args.projekt)
    except AlreadyPresent as refusal:
        print(f"Nichts zu tun: {refusal}")
        return 0
    except PhrasingRefused as refusal:
        print(f"Nicht hinzugefügt: {refusal}", file=sys.stderr)
        return 1
    trainer_journal.record(args.projekt, "added", added.intent, added.phrasing, "add-phrasing")
    print(f"Hinzugefügt zu {added.intent}: „{added.phrasing}“. Danach: `faqbot-trainer train`.")
    if added.masked:
        print(masking_notice(text, added.phrasing))
    if notice := vagueness_notice(added.phrasing, args.projekt):
        print(notice)
    if args.pruefen:
        parse = current_parse(added.phrasing, args.nlu_url)
        if isinstance(parse, str):
            print(parse)
        elif notice := elsewhere_notice(added.intent, added.phrasing, parse, knowledge(args.projekt)):
            print(notice)
    return 0


# Below this the current model is unsure anyway: no need to say where it sends a phrasing.
ELSEWHERE_MIN_CONFIDENCE = 0.5


def current_parse(text: str, nlu_url: str | None) -> dict | str:
    """How the running bot reads ``text`` now (its NLU server), or why that is not known."""
    import requests

    url = (nlu_url or os.environ.get("FAQBOT_NLU_URL") or "http://127.0.0.1:5006").rstrip("/")
    token = os.environ.get("FAQBOT_NLU_TOKEN", "")
    unknown = "(Nicht nachgesehen, wohin der Bot die Formulierung bisher schickt: "
    try:
        reply = requests.post(
            f"{url}/model/parse", json={"text": text}, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
    except requests.RequestException:
        return f"{unknown}kein laufender Bot unter {url}.)"
    if not reply.ok:
        return f"{unknown}{url} antwortet mit {reply.status_code}.)"
    return reply.json()


def elsewhere_notice(intent: str, phrasing: str, parse: dict, faqs: dict[str, FaqEntry]) -> str:
    """A check against a wrong FAQ number: where the current model sends the phrasing, when
    that is confidently another FAQ or intent; else ""."""
    guess = classifier_guess(parse.get("intent_ranking") or [])
    if not guess or guess["name"] == intent or guess["confidence"] < ELSEWHERE_MIN_CONFIDENCE:
        return ""
    best = guess["name"]
    entry = faqs.get(faq_id_for(best) or "")
    where = f"„{entry.question}“ ({entry.id})" if entry else GENERAL_INTENTS.get(best, best)
    return (
        f"Zur Kontrolle: Der Bot schickt „{phrasing}“ bisher zu {where}, mit {round(100 * guess['confidence'])} % "
        "Sicherheit. Das Training bringt ihm Ihre Zuordnung bei. Haben Sie sich bei der FAQ vertan: "
        "`faqbot-trainer undo`."
    )


def cmd_list(args: argparse.Namespace) -> int:
    """The trainer's changes since the last training (or all), numbered for `undo`."""
    if args.neue_fragen:
        return _list_new_questions(args)
    since = None if args.alle else trainer_journal.last_training(args.projekt)
    changes = trainer_journal.described_changes(args.projekt, since)
    when = f"seit dem letzten Training ({_local(since)})" if since else "bisher"
    if not changes:
        print(f"Keine Änderungen {when}.")
        return 0
    print(f"Ihre Änderungen {when}:")
    for number, described in enumerate(changes, start=1):
        change = described.change
        shown = f"„{described.phrasing}“" if described.phrasing else "(nicht mehr in den Trainingsdaten)"
        what = "hinzugefügt zu" if change.action == "added" else "entfernt aus"
        print(f"  {number:3d}  {_local(change.time)}  {what} {described.intent}: {shown}  ({change.source})")
    print("Zurücknehmen: `faqbot-trainer undo` (die letzte) oder `faqbot-trainer undo NUMMER`.")
    return 0


def _list_new_questions(args: argparse.Namespace) -> int:
    from faqbot.core.review_store import ReviewStore, location

    store = ReviewStore(args.datei or location())
    try:
        entries = store.entries(status="new_question")
    finally:
        store.close()
    if not entries:
        print("Keine Nachrichten als neue Frage vorgemerkt.")
        return 0
    print(f"{len(entries)} als neue Frage vorgemerkte Nachrichten (für `add-faq`):")
    for entry in entries:
        print(f"  #{entry.id}  {_local(entry.created)}  „{entry.text}“")
    return 0


def cmd_undo(args: argparse.Namespace) -> int:
    """Take an added phrasing out again: the last one, or number N of `list`."""
    from faqbot.core.review_store import ReviewStore, location

    def reopen(entry_id: int) -> None:  # the message is open again in the review queue
        store = ReviewStore(args.datei or location())
        try:
            store.set_status(entry_id, "open")
        finally:
            store.close()

    try:
        messages = review_decisions.undo(args.projekt, args.nummer, reopen)
    except review_decisions.NothingToUndo as nothing:
        print(nothing, file=sys.stderr if args.nummer is not None else sys.stdout)
        return 1 if args.nummer is not None else 0
    for message in messages:
        print(message)
    return 0


def _local(moment: datetime | str) -> str:
    moment = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return moment.astimezone(LOCAL_TIME).strftime("%d.%m.%Y %H:%M")


def cmd_add_faq(args: argparse.Namespace) -> int:
    try:
        created = new_faq.create(args.projekt, args.kategorie, args.frage, args.antwort, args.formulierung, "add-faq")
    except new_faq.NewFaqRefused as refusal:
        print(refusal, file=sys.stderr)
        return 1
    for line in created.messages():
        print(line)
    print("Danach: `faqbot-trainer train`.")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from faqbot.tools import importer

    # The importer's own command line is the developers' `make import-faq`: this step
    # reports in the trainer's words and flags.
    report = importer.run_import(args.seite, args.projekt, args.fehlende_entfernen, args.probelauf)
    for line in report.lines(args.fehlende_entfernen, remove_flag="--fehlende-entfernen"):
        print(line)
    if (report.added or report.changed) and not args.probelauf:
        print("Nächster Schritt: `faqbot-trainer train`, damit neue und geänderte Fragen erkannt werden.")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from faqbot.tools import train

    if train.model_path(args.projekt).exists() and not args.erzwingen:
        print("Die Trainingsdaten sind unverändert: kein Training nötig.")
    else:
        _record_baseline(args.projekt)
        print("Die Trainingsdaten haben sich geändert: trainiere neu (etwa eine Minute) ...", flush=True)
    model = train.train(force=args.erzwingen, project=args.projekt)
    print(f"Modell: {model}. Neu gestartet antwortet der Bot damit (`make run`).")
    return 0


def _record_baseline(project: Path) -> None:
    """The current model's figures, so that `evaluate` after the training compares with them."""
    from faqbot.core.models import newest_model
    from faqbot.tools import report

    before, out_dir = newest_model(), project / "results" / "bericht"
    if report.needs_baseline(before, out_dir):
        print(
            f"Halte die Zahlen des bisherigen Modells für den Vergleich im Bericht fest ({before.name}) ...", flush=True
        )
        report.record_baseline(before, out_dir, project / "tests" / "nlu_heldout.yml", project)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from faqbot.tools import report  # imports Rasa: only load it when the step runs

    return report.main(args.report_args)


def _german_help(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser._positionals.title, parser._optionals.title = "Argumente", "Optionen"
    parser.add_argument("-h", "--help", action="help", help="diese Hilfe zeigen")
    return parser


def parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    main = _german_help(
        argparse.ArgumentParser(prog="faqbot-trainer", description=__doc__, formatter_class=formatter, add_help=False)
    )
    main.add_argument("--projekt", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    main.set_defaults(func=lambda args: main.print_help() or 0)
    subparsers = main.add_subparsers(title="Schritte", metavar="SCHRITT")

    class steps:  # every step with German help options
        @staticmethod
        def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
            step = subparsers.add_parser(name, add_help=False, **kwargs)
            return step if name == "evaluate" else _german_help(step)

    step = steps.add_parser(
        "faqs",
        help="alle FAQ-Fragen mit Nummer, ID und Kategorie",
        description="Listet alle FAQ-Fragen mit Nummer und ID (die review und add-phrasing erwarten).",
    )
    step.set_defaults(func=cmd_faqs)

    step = steps.add_parser(
        "review",
        help="1: verpasste Kundennachrichten durchgehen und zuordnen",
        formatter_class=formatter,
        description="Geht die offenen Nachrichten der Review-Warteschlange durch, gruppiert nach der FAQ, "
        "die der Bot vermutet hat. Für jede Nachricht:\n"
        "  Nummer oder ID  der FAQ zuordnen (wird als Formulierung hinzugefügt)\n"
        "  o               nicht in den FAQ (wird als solche Formulierung hinzugefügt)\n"
        "  n               neue Frage (für eine spätere FAQ vormerken)\n"
        "  s               überspringen\n"
        "  q               beenden (das Bisherige bleibt gespeichert)\n"
        "Hat der Kunde eine „Meinten Sie …?“-Schaltfläche gewählt, ist diese FAQ der Vorschlag: "
        "Enter übernimmt ihn.",
    )
    step.add_argument("--hoechstens", type=int, metavar="N", help="höchstens N Nachrichten (z. B. --hoechstens 20)")
    step.add_argument(
        "--tage", type=int, metavar="N", help="nur Nachrichten der letzten N Tage (z. B. --tage 7 für die letzte Woche)"
    )
    step.add_argument(
        "--art",
        choices=sorted(review_decisions.KIND_NAMES),
        help="nur diese Art: " + ", ".join(f"{k} = {v}" for k, v in review_decisions.KIND_NAMES.items()),
    )
    step.add_argument(
        "--datei",
        type=Path,
        help="Datei der Warteschlange (Standard: die Datenbank aus FAQBOT_REVIEW_DB_URL, sonst var/review.db "
        "bzw. FAQBOT_REVIEW_DB)",
    )
    step.set_defaults(func=cmd_review)

    step = steps.add_parser(
        "bewertungen",
        help="wie Kunden die Antworten bewerten („War diese Antwort hilfreich?“)",
        description="Zählt je FAQ, wie oft Kunden die Antwort im Chat als hilfreich oder nicht hilfreich "
        "bewertet haben, die schlechtesten zuerst. Die Fragen hinter „nicht hilfreich“ stehen in der "
        "Review-Warteschlange (`review --art unhelpful`).",
    )
    step.add_argument("--tage", type=int, default=30, metavar="N", help="die letzten N Tage (Standard: 30)")
    step.add_argument(
        "--datei",
        type=Path,
        help="Datei der Warteschlange (Standard: wie bei review)",
    )
    step.set_defaults(func=cmd_ratings)

    step = steps.add_parser(
        "add-phrasing",
        help="2: eine Formulierung einer FAQ hinzufügen",
        description="Fügt eine Kundenformulierung zu einer FAQ hinzu (oder zu out_of_scope, greet, …). "
        "Personenbezogene Daten darin (E-Mail-Adressen, Telefon-, Karten- und IBAN-Nummern, Daten) werden "
        "vorher maskiert. Abgelehnt wird sie, wenn sie leer oder zu lang ist, schon dazugehört, schon zu "
        "einer anderen FAQ gehört (mit Angabe, zu welcher) oder im Testsatz steht.",
    )
    step.add_argument("faq", help="FAQ-Nummer oder -ID (z. B. 16 oder erhalte_rechnung, siehe `faqs`) oder Intent-Name")
    step.add_argument("text", nargs="+", help="die Formulierung (am besten in Anführungszeichen)")
    step.add_argument(
        "--nicht-pruefen",
        dest="pruefen",
        action="store_false",
        help="nicht nachsehen, zu welcher FAQ das aktuelle Modell die Formulierung bisher schickt",
    )
    step.add_argument("--nlu-url", help="NLU-Server des laufenden Bots (Standard: FAQBOT_NLU_URL, sonst :5006)")
    step.set_defaults(func=cmd_add_phrasing)

    step = steps.add_parser(
        "list",
        help="Ihre Änderungen seit dem letzten Training (oder die vorgemerkten neuen Fragen)",
        description="Listet die Formulierungen, die Sie seit dem letzten Training hinzugefügt oder entfernt "
        "haben, nummeriert für `undo`.",
    )
    step.add_argument("--alle", action="store_true", help="alle Änderungen, nicht nur seit dem letzten Training")
    step.add_argument(
        "--neue-fragen", action="store_true", help="die in review mit n als neue Frage vorgemerkten Nachrichten"
    )
    step.add_argument("--datei", type=Path, help="Datei der Warteschlange (Standard: wie bei review)")
    step.set_defaults(func=cmd_list)

    step = steps.add_parser(
        "undo",
        help="eine hinzugefügte Formulierung wieder herausnehmen",
        description="Nimmt die zuletzt hinzugefügte Formulierung wieder heraus, oder die mit der Nummer aus "
        "`list`. Kam sie aus review, ist die Nachricht dort wieder offen.",
    )
    step.add_argument("nummer", nargs="?", type=int, help="Nummer aus `faqbot-trainer list` (Standard: die letzte)")
    step.add_argument("--datei", type=Path, help="Datei der Warteschlange (Standard: wie bei review)")
    step.set_defaults(func=cmd_undo)

    step = steps.add_parser(
        "add-faq",
        help="2: eine neue FAQ-Frage mit Antwort und ersten Formulierungen anlegen",
        description=f"Legt eine neue FAQ-Frage an: Antwort, Intent, Regel und Domain-Eintrag. Nötig sind "
        f"mindestens {new_faq.MIN_PHRASINGS} Formulierungen; die Datenprüfung verlangt "
        f"{new_faq.RECOMMENDED_PHRASINGS} (weitere später mit add-phrasing). Steht die Frage auf der "
        "FAQ-Seite, ist `import` der bessere Weg.",
    )
    step.add_argument("--kategorie", required=True, help="Kategorie, wie auf der FAQ-Seite")
    step.add_argument("--frage", required=True, help="die Frage, wie sie auf der FAQ-Seite steht")
    step.add_argument("--antwort", required=True, help="die Antwort (wird wörtlich an Kunden geschickt)")
    step.add_argument(
        "--formulierung",
        action="append",
        default=[],
        required=True,
        help="eine Formulierung, wie Kunden fragen (mehrfach angeben)",
    )
    step.set_defaults(func=cmd_add_faq)

    step = steps.add_parser(
        "import",
        help="2: die FAQ-Seite neu einlesen (neue und geänderte Fragen)",
        description="Liest eine FAQ-Seite (Text oder HTML) neu ein; hinzugefügte Formulierungen bleiben erhalten.",
    )
    step.add_argument("seite", type=Path, help="FAQ-Seite als .txt oder .html")
    step.add_argument(
        "--fehlende-entfernen",
        action="store_true",
        help="Fragen, die nicht mehr auf der Seite stehen, samt Intent löschen",
    )
    step.add_argument("--probelauf", action="store_true", help="nur berichten, nichts schreiben")
    step.set_defaults(func=cmd_import)

    step = steps.add_parser(
        "train",
        help="3: neu trainieren, falls sich die Daten geändert haben",
        description="Trainiert den Bot neu, wenn sich Formulierungen, FAQ-Fragen oder "
        "Konfiguration geändert haben; sonst wird das vorhandene Modell genutzt.",
    )
    step.add_argument("--erzwingen", action="store_true", help="auch ohne Änderung trainieren")
    step.set_defaults(func=cmd_train)

    # Its options belong to faqbot.tools.report: all arguments are passed on, --help included.
    step = steps.add_parser("evaluate", help="4: auswerten und Bericht (HTML) schreiben")
    step.set_defaults(func=cmd_evaluate)
    return main


def main(argv: list[str] | None = None) -> int:
    # No blanket warning filter here: importing faqbot.tools filters the known third-party
    # warnings one by one (faqbot.core.known_warnings), so any new one still shows.
    cli = parser()
    args, rest = cli.parse_known_args(argv)
    if args.func is cmd_evaluate:
        args.report_args = rest
    elif rest:
        cli.error(f"unbekannte Argumente: {' '.join(rest)}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
