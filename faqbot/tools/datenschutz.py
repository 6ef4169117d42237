"""Data-subject requests and retention on the command line (README, "Datenschutz").

    faqbot-datenschutz auskunft  --email kunde@example.org [--datei auskunft.json]
    faqbot-datenschutz loeschen  --gespraech <id> | --kunde <id> | --email <adresse> [--ja]
    faqbot-datenschutz aufraeumen
    faqbot-datenschutz protokoll
    faqbot-datenschutz schluessel-wechseln

The stores are those of ``endpoints.yml`` (``--endpoints``), ``FAQBOT_TICKET_DB``/
``FAQBOT_TICKET_DB_URL`` and the review queue; an erasure also removes the phrasings the
trainers took from the customer's messages from ``data/nlu``. ``schluessel-wechseln``
encrypts everything stored again with the first key of ``FAQBOT_DATA_KEYS`` (key rotation).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

import sqlalchemy as sa

from faqbot.core import encryption, privacy, shared_secrets
from faqbot.core.paths import PROJECT_DIR

HELP = """Auskunft, Löschung und Aufbewahrungsfristen (README, Abschnitt „Datenschutz“).

Beispiele:
  faqbot-datenschutz auskunft --email kunde@example.org --datei auskunft.json
  faqbot-datenschutz loeschen --kunde K-4711
  faqbot-datenschutz aufraeumen
  faqbot-datenschutz protokoll
  faqbot-datenschutz schluessel-wechseln

Gesucht wird in den Gesprächen (endpoints.yml), den Tickets (FAQBOT_TICKET_DB,
FAQBOT_TICKET_DB_URL) und der Prüfliste der Trainer; eine Löschung entfernt auch die
Formulierungen, die aus den Nachrichten der Person in data/nlu übernommen wurden.
schluessel-wechseln verschlüsselt alles Gespeicherte neu mit dem ersten Schlüssel aus
FAQBOT_DATA_KEYS (Schlüsselwechsel, README)."""
LOOKUP_FLAGS = {"gespraech": "conversation_id", "kunde": "customer_id", "email": "email"}
LABELS = {
    "conversations": "Gespräche",
    "conversation_events": "Gesprächsereignisse",
    "tickets": "Tickets",
    "deliveries": "Zustellungen",
    "review_queue": "Einträge der Prüfliste",
    "training_phrasings": "Trainingsformulierungen",
}


def _subject(args: argparse.Namespace, stores: privacy.DataStores) -> privacy.Subject:
    flag = next(flag for flag in LOOKUP_FLAGS if getattr(args, flag))
    return privacy.find(stores, LOOKUP_FLAGS[flag], getattr(args, flag))


def _summary(counts: dict[str, int]) -> str:
    return ", ".join(f"{LABELS[kind]}: {number}" for kind, number in counts.items())


def cmd_auskunft(args: argparse.Namespace, stores: privacy.DataStores) -> int:
    data = privacy.export(stores, _subject(args, stores))
    text = json.dumps(data, ensure_ascii=False, indent=2)
    if args.datei:
        # Personal data: readable only by whoever runs the tool.
        descriptor = os.open(args.datei, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        print(
            f"Auskunft gespeichert: {args.datei} ({len(data['conversations'])} Gespräch(e), "
            f"{len(data['tickets'])} Ticket(s), {len(data['review_queue'])} Eintrag/Einträge der Prüfliste)"
        )
    else:
        print(text)
    return 0


def cmd_loeschen(args: argparse.Namespace, stores: privacy.DataStores) -> int:
    subject = _subject(args, stores)
    if not subject.conversation_ids:
        print("Zu dieser Angabe ist nichts gespeichert.")
        return 0
    preview = privacy.export(stores, subject)
    print(
        f"Gefunden: {len(subject.conversation_ids)} Gespräch(e), {len(preview['tickets'])} Ticket(s), "
        f"{len(preview['review_queue'])} Eintrag/Einträge der Prüfliste, "
        f"{len(preview['training_phrasings'])} Trainingsformulierung(en)."
    )
    if not args.ja:
        if not sys.stdin.isatty():
            print("Ohne Rückfrage löschen nur mit --ja.", file=sys.stderr)
            return 2
        if input("Endgültig löschen? [j/N] ").strip().lower() not in ("j", "ja"):
            print("Nichts gelöscht.")
            return 1
    result = privacy.erase(stores, subject, actor=f"cli:{getpass.getuser()}", project=args.projekt)
    print(f"Gelöscht: {_summary(result['counts'])}.")
    if result["counts"]["training_phrasings"]:
        print("Formulierungen aus data/nlu entfernt: bitte neu trainieren (make train) und die Änderung übernehmen.")
    for phrasing in result["training_phrasings_left"]:
        print(f"Nicht entfernt, bitte von Hand löschen: {phrasing['intent']}: {phrasing['text']}", file=sys.stderr)
    return 1 if result["training_phrasings_left"] else 0


def cmd_aufraeumen(args: argparse.Namespace, stores: privacy.DataStores) -> int:
    days = privacy.retention_days()
    counts = privacy.purge_expired(stores, days)
    print(
        "Aufbewahrungsfristen (Tage): "
        + ", ".join(f"{LABELS[kind] if kind in LABELS else kind} {number}" for kind, number in days.items())
    )
    print(f"Gelöscht: {_summary(counts)}.")
    return 0


def cmd_protokoll(args: argparse.Namespace, stores: privacy.DataStores) -> int:
    privacy.erasure_log.create(stores.tickets.engine, checkfirst=True)
    with stores.tickets.engine.connect() as connection:
        rows = connection.execute(sa.select(privacy.erasure_log).order_by(privacy.erasure_log.c.id)).all()
    if not rows:
        print("Noch keine Löschung protokolliert.")
    for row in rows:
        print(f"{row.at}  {row.actor:<20} {row.lookup:<16} {_summary(json.loads(row.counts))}")
    return 0


def cmd_schluessel_wechseln(args: argparse.Namespace, stores: privacy.DataStores) -> int:
    current = encryption.keyring().current
    print(f"Verschlüssele alles mit dem aktuellen Schlüssel „{current}“ (dem ersten in {encryption.KEYS_VARIABLE}) …")
    rotated = privacy.rotate_keys(stores)  # stopped by a value no key decrypts: what is done stays done
    for kind, result in rotated.items():
        line = f"{LABELS[kind]}: {result.encrypted} neu verschlüsselt, {result.current} schon mit „{current}“"
        if result.changed_meanwhile:
            line += f", {result.changed_meanwhile} währenddessen geändert"
        print(line)
    meanwhile = sum(result.changed_meanwhile for result in rotated.values())
    if meanwhile:
        print(f"{meanwhile} Datensätze wurden währenddessen geändert: bitte den Befehl noch einmal ausführen.")
        return 1
    others = [key_id for key_id in encryption.keyring().ciphers if key_id != current]
    if others:
        print(
            f"Fertig. Die älteren Schlüssel ({', '.join(others)}) werden nicht mehr gebraucht: aus "
            f"{encryption.KEYS_VARIABLE} entfernen und die Server neu starten."
        )
    else:
        print("Fertig.")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="faqbot-datenschutz",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--endpoints", type=Path, default=PROJECT_DIR / "endpoints.yml", help="Rasa-Endpoints-Datei")
    parser.add_argument("--projekt", type=Path, default=PROJECT_DIR, help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", required=True, metavar="BEFEHL")

    def with_lookup(name: str, help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text)
        lookup = command.add_mutually_exclusive_group(required=True)
        lookup.add_argument("--gespraech", metavar="ID", help="Gesprächs-ID (Rasa sender_id)")
        lookup.add_argument("--kunde", metavar="ID", help="Kundennummer, wie die Integration sie übergibt")
        lookup.add_argument("--email", metavar="ADRESSE", help="E-Mail-Adresse")
        return command

    auskunft = with_lookup("auskunft", "alles zu einer Person als JSON (Art. 15/20 DSGVO)")
    auskunft.add_argument("--datei", help="in diese Datei schreiben (Rechte 0600) statt auf die Konsole")
    auskunft.set_defaults(func=cmd_auskunft)
    loeschen = with_lookup("loeschen", "alles zu einer Person löschen (Art. 17 DSGVO)")
    loeschen.add_argument("--ja", action="store_true", help="ohne Rückfrage löschen")
    loeschen.set_defaults(func=cmd_loeschen)
    commands.add_parser("aufraeumen", help="Abgelaufenes jetzt löschen (Aufbewahrungsfristen)").set_defaults(
        func=cmd_aufraeumen
    )
    commands.add_parser("protokoll", help="Löschprotokoll anzeigen").set_defaults(func=cmd_protokoll)
    commands.add_parser(
        "schluessel-wechseln", help="alles mit dem ersten Schlüssel aus FAQBOT_DATA_KEYS neu verschlüsseln"
    ).set_defaults(func=cmd_schluessel_wechseln)
    args = parser.parse_args(argv)
    shared_secrets.ensure_environment()  # the review queue's keyed sender hash, the data keys
    encryption.check()
    try:
        stores = privacy.stores_from_endpoints(args.endpoints)
    except (ValueError, OSError) as error:
        parser.error(str(error))
    try:
        return args.func(args, stores)
    except encryption.DataKeyError as error:  # a stored value the keys cannot decrypt
        print(f"Fehler: {error}.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
