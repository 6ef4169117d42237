"""Delivery of tickets to a real help-desk HTTP server and a real SMTP server on loopback."""

from __future__ import annotations

import email.message
import email.policy
import hashlib
import hmac
import json
import logging
import os
import smtplib
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from email import message_from_bytes
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from conftest import Bot, bot_servers, free_port, running
from helpers import customs
from test_rest_conversations import RESPONSES

from faqbot.core.delivery import DeliveryConfig, DeliveryWorker
from faqbot.core.metrics import OUTBOX_GIVEN_UP
from faqbot.core.paths import PROJECT_DIR
from faqbot.core.tickets import TicketStore

SECRET = "geheim-123"
CUSTOMER = "kunde.crash@beispiel.de"
RESOLUTION = "Die Rechnung steht jetzt im Kundenportal; die doppelte Abbuchung erstatten wir bis Freitag."
TOKEN = "support-token-456-for-the-tests-only-0123456789"
AGENT_TEXT = "Die Rechnung finden Sie im Kundenportal unter Abrechnung."
MAIL_ANSWER = "Guten Tag, wir haben Ihre Kundennummer gefunden und prüfen die Rechnung."


class HelpDesk:
    """A help-desk webhook receiver that checks the signature; can go down and come back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[dict] = []  # {"path", "key", "body", "raw", "signature", "signature_ok"}
        self.server = None
        self.delay_s = 0.0  # a slow help desk answers this late

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tickets"

    @property
    def callback_url(self) -> str:
        """Where the help desk, as a REST integration, takes the support team's replies."""
        return f"http://127.0.0.1:{self.port}/callback"

    def posts(self, path: str) -> list[dict]:
        return [hit for hit in self.received if hit["path"] == path]

    def start(self) -> HelpDesk:
        desk = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(desk.delay_s)
                expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
                desk.received.append(
                    {
                        "path": self.path,
                        "key": self.headers["Idempotency-Key"],
                        "body": json.loads(body),
                        "raw": body,
                        "signature": self.headers.get("X-FAQBot-Signature", ""),
                        "signature_ok": hmac.compare_digest(self.headers.get("X-FAQBot-Signature", ""), expected),
                    }
                )
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self) -> None:
        self.messages = []
        self.controller = Controller(self, hostname="127.0.0.1", port=free_port())

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"

    def decoded(self) -> list[tuple[list[str], email.message.EmailMessage]]:
        """The mails as mail clients read them: headers and bodies decoded."""
        return [
            (recipients, message_from_bytes(raw.as_bytes(), policy=email.policy.default))
            for recipients, raw in self.messages
        ]


def wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def desk():
    desk = HelpDesk().start()
    yield desk
    desk.stop()


@pytest.fixture
def mailbox():
    box = Mailbox()
    box.controller.start()
    yield box
    box.controller.stop()


def desk_and_mailbox(desk: HelpDesk, mailbox: Mailbox) -> DeliveryConfig:
    """Delivery to the test's help desk (signed) and its support mailbox."""
    return DeliveryConfig(
        webhook_url=desk.url,
        webhook_secret=SECRET,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.controller.port,
        support_email="support@example.org",
    )


def make_ticket(store: TicketStore, targets, sender: str = "kunde-1"):
    return store.create(
        sender,
        "rest",
        "Wo ist mein Paket?",
        "paket_status",
        0.42,
        [{"from": "kunde", "text": "Wo ist mein Paket?", "time": "2026-01-01T00:00:00+00:00"}],
        targets=targets,
    )


def test_webhook_and_email_receive_the_ticket(tmp_path, desk, mailbox):
    config = desk_and_mailbox(desk, mailbox)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = make_ticket(store, config.targets)
    assert [d.status for d in store.deliveries_for(ticket.ticket_id)] == ["pending", "pending"]
    DeliveryWorker(store, config).run_due()
    [hit] = desk.received
    assert hit["signature_ok"] and hit["key"] == f"{ticket.ticket_id}-created-webhook"
    body = hit["body"]
    assert body["ticket_id"] == ticket.ticket_id and body["channel"] == "rest"
    assert body["question"] == "Wo ist mein Paket?" and body["faq_guess"] == "paket_status"
    assert body["confidence"] == 0.42 and body["transcript"][0]["text"] == "Wo ist mein Paket?"
    [(recipients, mail)] = mailbox.messages
    assert recipients == ["support@example.org"] and ticket.ticket_id in mail["Subject"]
    assert mail["Message-ID"] == f"<{ticket.ticket_id}-created-email@faqbot>"
    assert "[01.01.2026 01:00] Kunde: Wo ist mein Paket?" in mail.get_payload(decode=True).decode("utf-8")
    assert {d.status for d in store.deliveries_for(ticket.ticket_id)} == {"delivered"}
    # The receiver has it: no second copy of transcript and contact stays in the outbox.
    assert [d.payload for d in store.deliveries_for(ticket.ticket_id)] == [{}, {}]


def test_the_ticket_mail_reads_at_a_glance_and_follow_ups_thread_onto_it(tmp_path, mailbox):
    config = DeliveryConfig(
        smtp_host="127.0.0.1", smtp_port=mailbox.controller.port, support_email="support@example.org"
    )
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    question = "Kann ich meine Rechnung auch per Überweisung in Raten bezahlen, wenn der Betrag hoch ist?"
    ticket = store.create(
        "kunde-7",
        "rest",
        question,
        "zahlungsmethoden_akzeptieren",
        0.4234,
        [{"from": "kunde", "text": question, "time": "2026-11-27T09:14:05.123456+00:00"}],
        targets=config.targets,
        contact={"id": "K-1001", "email": "anna@example.org"},
    )
    store.append_message(ticket.ticket_id, "Die Rechnungsnummer ist R-55", config.targets)
    DeliveryWorker(store, config).run_due()
    first, follow_up = (mail for _, mail in mailbox.decoded())
    assert (
        first["Subject"] == f"[{ticket.ticket_id}] Neue Anfrage: Kann ich meine Rechnung auch per Überweisung in Raten…"
    )
    body = first.get_content()
    assert "Erstellt: " in body and "+00:00" not in body  # Berlin time, not UTC ISO
    assert "[27.11.2026 10:14] Kunde: Kann ich meine Rechnung" in body
    assert "Kunde: anna@example.org (Kunden-ID K-1001)" in body
    assert "Vermutete FAQ: „Welche Zahlungsmethoden akzeptieren Sie?“ (Allgemeine Fragen, 42 % sicher)" in body
    for mail in (first, follow_up):
        assert email.utils.parsedate_to_datetime(mail["Date"]).tzinfo is not None
    assert follow_up["Subject"] == f"[{ticket.ticket_id}] Nachtrag des Kunden"
    assert follow_up["In-Reply-To"] == follow_up["References"] == first["Message-ID"]
    assert "Kunde: anna@example.org (Kunden-ID K-1001)" in follow_up.get_content()


def test_closure_reaches_the_receivers_and_the_customer_with_the_resolution(tmp_path, desk, mailbox):
    config = desk_and_mailbox(desk, mailbox)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    contact = {"id": "K-1001", "email": "anna@example.org"}
    ticket = store.create("kunde-8", "socketio", "Paket fehlt", None, None, [], config.targets, contact)
    resolution = "Wir haben Ihr Paket neu verschickt; Sie erhalten morgen die Sendungsnummer."
    closed = store.close(ticket.ticket_id, resolution, config.targets + ["customer"])
    assert (closed.status, closed.resolution) == ("closed", resolution) and closed.closed_at
    assert store.close(ticket.ticket_id, "nochmal") is None  # closed once
    DeliveryWorker(store, config).run_due()
    [event] = [hit for hit in desk.received if hit["body"]["event"] == "closed"]
    assert event["key"] == f"{ticket.ticket_id}-closed-webhook" and event["signature_ok"]
    assert {key: event["body"][key] for key in ("ticket_id", "resolution", "customer")} == {
        "ticket_id": ticket.ticket_id,
        "resolution": resolution,
        "customer": contact,
    }
    mails = {recipients[0]: mail for recipients, mail in mailbox.decoded() if "Neue Anfrage" not in mail["Subject"]}
    to_support, to_customer = mails["support@example.org"], mails["anna@example.org"]
    assert to_support["Subject"] == f"[{ticket.ticket_id}] Abgeschlossen"
    assert to_support["In-Reply-To"] == f"<{ticket.ticket_id}-created-email@faqbot>"
    assert resolution in to_support.get_content()
    assert to_customer["Subject"] == f"Ihre Anfrage {ticket.ticket_id} ist abgeschlossen"
    body = to_customer.get_content()
    assert resolution in body and "Ihre Frage: Paket fehlt" in body and body.startswith("Guten Tag,")


def test_an_agents_reply_is_in_the_transcript_and_mailed_to_a_customer_not_in_the_chat(tmp_path, mailbox):
    config = DeliveryConfig(
        smtp_host="127.0.0.1", smtp_port=mailbox.controller.port, support_email="support@example.org"
    )
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    contact = {"id": "K-1001", "email": "anna@example.org"}
    ticket = store.create("kunde-10", "socketio", "Paket fehlt", None, None, [], contact=contact)
    text = "Wir haben das Paket neu verschickt."
    replied, number, added = store.add_reply(ticket.ticket_id, text, key="<antwort-1@mail.example>")
    assert added and store.add_reply(ticket.ticket_id, text, key="<antwort-1@mail.example>")[1:] == (1, False)
    assert (number, replied.transcript[-1]["from"], replied.transcript[-1]["text"]) == (1, "support", text)
    assert store.get(ticket.ticket_id).transcript == replied.transcript
    assert store.mail_reply(replied, number) is True
    DeliveryWorker(store, config).run_due()
    [(recipients, raw)] = mailbox.messages
    mail = message_from_bytes(raw.as_bytes(), policy=email.policy.default)
    assert recipients == ["anna@example.org"] and mail["Subject"] == f"Antwort auf Ihre Anfrage {ticket.ticket_id}"
    assert text in mail.get_content() and mail["Reply-To"] == "support@example.org"
    store.close(ticket.ticket_id)
    with pytest.raises(LookupError):
        store.add_reply(ticket.ticket_id, "zu spät")
    no_address = store.create("kunde-11", "rest", "Frage", None, None, [])
    assert store.mail_reply(*store.add_reply(no_address.ticket_id, "Antwort")[:2]) is False


def test_a_callback_goes_out_as_the_rasa_server_signed_it_and_is_retried(tmp_path, desk):
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = store.create("kunde-12", "rest", "Frage", None, None, [])
    body = '{"event": "reply", "ticket_id": "' + ticket.ticket_id + '"}'
    store.queue_callback(
        ticket.ticket_id, "reply-1", {"url": desk.callback_url, "body": body, "signature": "sha256=ab"}
    )
    desk.stop()
    # The retry is due after a second: long enough that a slow machine's first round
    # cannot pick the row up twice, short enough for a unit test.
    worker = DeliveryWorker(store, DeliveryConfig(retry_base_s=1, retry_cap_s=1))
    worker.run_due()
    [delivery] = store.deliveries_for(ticket.ticket_id)
    assert (delivery.target, delivery.status, delivery.attempts) == ("callback", "pending", 1)
    desk.start()
    time.sleep(1.1)
    worker.run_due()
    [hit] = desk.posts("/callback")
    assert (hit["raw"].decode(), hit["signature"]) == (body, "sha256=ab")
    assert hit["key"] == f"{ticket.ticket_id}-reply-1-callback"
    assert store.deliveries_for(ticket.ticket_id)[0].status == "delivered"


def test_closing_without_an_address_sends_the_customer_no_mail(tmp_path):
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = store.create("kunde-9", "rest", "Paket fehlt", None, None, [])
    store.close(ticket.ticket_id, "Erledigt", ["customer"])
    assert store.deliveries_for(ticket.ticket_id) == []


def test_receiver_down_stays_pending_and_is_delivered_when_back(tmp_path, desk):
    desk.stop()
    config = DeliveryConfig(webhook_url=desk.url, webhook_secret=SECRET, retry_base_s=0.2, retry_cap_s=1)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = make_ticket(store, config.targets)
    worker = DeliveryWorker(store, config, poll_s=0.1).start()
    try:
        wait_for(lambda: store.deliveries_for(ticket.ticket_id)[0].attempts >= 2)
        [delivery] = store.deliveries_for(ticket.ticket_id)
        assert delivery.status == "pending" and "Connection refused" in delivery.last_error
        desk.start()
        wait_for(lambda: store.deliveries_for(ticket.ticket_id)[0].status == "delivered")
        time.sleep(1.5)  # longer than the backoff cap: no second send
    finally:
        worker.stop()
    assert len(desk.received) == 1 and desk.received[0]["signature_ok"]


def test_same_escalation_twice_is_one_ticket_and_one_delivery(tmp_path, desk):
    config = DeliveryConfig(webhook_url=desk.url)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    first, second = make_ticket(store, config.targets), make_ticket(store, config.targets)
    assert first.ticket_id == second.ticket_id and not second.is_new
    DeliveryWorker(store, config).run_due()
    DeliveryWorker(store, config).run_due()
    assert len(desk.received) == 1 and len(store.deliveries_for(first.ticket_id)) == 1


def test_failed_delivery_gives_up_visibly_after_max_attempts(tmp_path, desk, mailbox, caplog):
    desk.stop()
    config = DeliveryConfig(
        webhook_url=desk.url,
        retry_base_s=60,  # the second attempt only when the test makes it
        max_attempts=2,
        smtp_host="127.0.0.1",
        smtp_port=mailbox.controller.port,
        alert_email="admin@example.org",
    )
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = make_ticket(store, config.targets)
    given_up = OUTBOX_GIVEN_UP.labels("webhook")._value.get()
    worker = DeliveryWorker(store, config)
    worker.run_due()
    assert store.delivery_states([ticket.ticket_id]) == {ticket.ticket_id: "pending"}
    with caplog.at_level(logging.ERROR, logger="faqbot.core.delivery"):
        worker.attempt(store.deliveries_for(ticket.ticket_id)[0])
    [delivery] = store.deliveries_for(ticket.ticket_id)
    assert delivery.status == "failed" and delivery.attempts == 2 and delivery.last_error
    assert store.delivery_states([ticket.ticket_id]) == {ticket.ticket_id: "failed"}  # the ticket list shows it
    assert OUTBOX_GIVEN_UP.labels("webhook")._value.get() == given_up + 1
    assert [r.message for r in caplog.records if "endgültig fehlgeschlagen" in r.message]
    [(recipients, alert)] = mailbox.messages
    assert recipients == ["admin@example.org"] and ticket.ticket_id in alert["Subject"]
    desk.start()  # so the fixture can stop it


def test_a_slow_webhook_does_not_hold_back_the_mail_and_errors_clear_on_success(tmp_path, desk, mailbox):
    desk.delay_s = 3.0
    config = desk_and_mailbox(desk, mailbox)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    started = time.monotonic()
    ticket = make_ticket(store, config.targets)
    worker = DeliveryWorker(store, config, poll_s=0.05).start()
    try:
        wait_for(lambda: mailbox.messages, timeout=10)
        assert time.monotonic() - started < 2.0  # the webhook is still answering
        assert desk.received == []
        wait_for(lambda: len(desk.received) == 1, timeout=10)
    finally:
        worker.stop()
    wait_for(lambda: {d.status for d in store.deliveries_for(ticket.ticket_id)} == {"delivered"})


def test_an_error_of_an_earlier_attempt_is_cleared_once_delivered(tmp_path, desk):
    desk.stop()
    config = DeliveryConfig(webhook_url=desk.url, retry_base_s=60)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = make_ticket(store, config.targets)
    worker = DeliveryWorker(store, config)
    worker.run_due()
    [failed] = store.deliveries_for(ticket.ticket_id)
    assert failed.last_error
    desk.start()
    worker.attempt(failed)
    [delivery] = store.deliveries_for(ticket.ticket_id)
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 2, None)


def test_rest_escalation_arrives_exactly_once_across_an_action_server_crash(model_path, tmp_path, desk, mailbox):
    """The help-desk is down, the action server is killed and restarted; once the help-desk
    is back, the ticket arrives once at the webhook and once in the mailbox."""
    desk.stop()
    var_dir = tmp_path / "var"
    inbound_port = free_port()
    with running(
        bot_servers(
            model_path,
            var_dir,
            env={
                "FAQBOT_WEBHOOK_URL": desk.url,
                "FAQBOT_WEBHOOK_SECRET": SECRET,
                "FAQBOT_SMTP_HOST": "127.0.0.1",
                "FAQBOT_SMTP_PORT": str(mailbox.controller.port),
                "FAQBOT_SUPPORT_EMAIL": "support@example.org",
                "FAQBOT_SUPPORT_TOKEN": TOKEN,
                "FAQBOT_RETRY_BASE_S": "0.3",
                "FAQBOT_RETRY_CAP_S": "1",
                "FAQBOT_REST_CALLBACK_URL_ENTWICKLUNG": desk.callback_url,
                "FAQBOT_INBOUND_ADDRESS": "antwort@bot.example",
                "FAQBOT_INBOUND_PORT": str(inbound_port),
            },
        )
    ) as servers:
        bot = Bot(servers)
        bot.send("kunde-crash", "Wie erhalte ich eine Rechnung?")
        bot.send("kunde-crash", "Ich möchte bitte mit einem Mitarbeiter sprechen")  # asks for the e-mail
        bot.send("kunde-crash", "kunde.crash@beispiel.de")
        replies = bot.send("kunde-crash", "ja")
        ticket_id = customs(replies)[0]["escalation"]["ticket_id"]
        # The next message goes to the ticket, as a delivery of its own.
        bot.send("kunde-crash", "Meine Kundennummer ist 4711")
        # „Gesprächsverlauf per E-Mail“ while handed off: to the customer, not into the ticket.
        replies = bot.send("kunde-crash", "Schicken Sie mir bitte den Gesprächsverlauf per E-Mail")
        sent = RESPONSES["utter_transcript_sent"][0]["text"].format(email="kunde.crash@beispiel.de")
        assert [reply["text"] for reply in replies] == [sent]
        store = TicketStore(f"sqlite:///{var_dir / 'tickets.db'}")
        wait_for(lambda: len(mailbox.messages) == 3)  # e-mail works, the webhook does not
        wait_for(lambda: all(d.attempts >= 1 for d in store.deliveries_for(ticket_id)))
        servers.restart_actions()
        servers.wait_ready()
        desk.start()
        wait_for(lambda: {d.status for d in store.deliveries_for(ticket_id)} == {"delivered"}, timeout=60)
        time.sleep(1.5)
        # An agent answers the ticket mail: through the bot's mail receiver to the REST customer.
        [first] = [mail for _, mail in mailbox.decoded() if mail["Subject"].startswith(f"[{ticket_id}] Neue")]
        agent_mail = EmailMessage()
        agent_mail["From"], agent_mail["To"] = "Petra Muster <petra@example.org>", first["Reply-To"]
        agent_mail["Subject"], agent_mail["In-Reply-To"] = f"Re: {first['Subject']}", first["Message-ID"]
        agent_mail.set_content(f"{MAIL_ANSWER}\n\nAm 28.11.2026 schrieb FAQ-Bot:\n> {first.get_content()[:200]}")
        with smtplib.SMTP("127.0.0.1", inbound_port, timeout=30) as smtp:
            smtp.send_message(agent_mail)
        wait_for(lambda: len(desk.posts("/callback")) == 1, timeout=30)
        reply_number = check_support_api(f"{servers.url}/webhooks/support/tickets", ticket_id)
        # Closed by the support team: the customer was told, and the bot answers again.
        assert bot.send("kunde-crash", "Wie erhalte ich eine Rechnung?")[0]["text"].startswith("Rechnungen")
        # The closure reaches the help desk (event closed), the support mailbox and the customer;
        # the agent's reply and the closure reach the REST integration's callback URL.
        wait_for(lambda: len(desk.posts("/tickets")) == 3 and len(mailbox.messages) == 5, timeout=30)
        wait_for(lambda: len(desk.posts("/callback")) == 3, timeout=30)
    check_callbacks(desk.posts("/callback"), ticket_id, reply_number, servers.rest_token)
    webhook = desk.posts("/tickets")
    [closed] = [hit for hit in webhook if hit["body"]["event"] == "closed"]
    assert closed["signature_ok"] and closed["body"]["resolution"] == RESOLUTION
    created, added = sorted((hit for hit in webhook if hit is not closed), key=lambda hit: hit["key"])
    number = added["body"]["number"]  # its position in the ticket's transcript
    assert store.get(ticket_id).transcript[number - 1]["text"] == "Meine Kundennummer ist 4711"
    assert [hit["key"] for hit in (created, added)] == [
        f"{ticket_id}-created-webhook",
        f"{ticket_id}-message-{number}-webhook",
    ]
    assert created["signature_ok"] and added["signature_ok"]
    assert created["body"]["customer"] == {"id": "kunde-crash", "email": "kunde.crash@beispiel.de"}
    assert created["body"]["question"] == "Wie erhalte ich eine Rechnung?"
    assert "Wie erhalte ich eine Rechnung?" in [line["text"] for line in created["body"]["transcript"]]
    assert {key: added["body"][key] for key in ("event", "ticket_id", "number", "text")} == {
        "event": "message",
        "ticket_id": ticket_id,
        "number": number,
        "text": "Meine Kundennummer ist 4711",
    }
    assert "Gesprächsverlauf" not in json.dumps(store.get(ticket_id).transcript, ensure_ascii=False)
    to_support = [mail for recipients, mail in mailbox.messages if recipients == ["support@example.org"]]
    subjects = sorted(mail["Subject"] for mail in to_support)
    assert subjects == [
        f"[{ticket_id}] Abgeschlossen",
        f"[{ticket_id}] Nachtrag des Kunden",
        f"[{ticket_id}] Neue Anfrage: Wie erhalte ich eine Rechnung?",
    ]
    # „Antworten“ in the support mailbox goes to the ticket's signed reply address.
    assert {mail["Reply-To"].split(".", 1)[0] for mail in to_support} == {f"antwort+{ticket_id}"}
    to_customer = {
        mail["Subject"]: mail.get_content() for recipients, mail in mailbox.decoded() if recipients == [CUSTOMER]
    }
    copy = to_customer[f"Ihr Gesprächsverlauf mit unserem Kundenservice ({ticket_id})"]
    for line in ("Sie: Wie erhalte ich eine Rechnung?", "Sie: Meine Kundennummer ist 4711", f"lautet {ticket_id}"):
        assert line in copy
    assert RESOLUTION in to_customer[f"Ihre Anfrage {ticket_id} ist abgeschlossen"]


def check_support_api(base: str, ticket_id: str) -> int:
    """Lists, reads, answers and closes the ticket as the help desk would; the reply's number."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert requests.post(f"{base}/{ticket_id}/close", timeout=10).status_code == 401
    assert requests.get(base, headers={"Authorization": "Bearer falsch"}, timeout=10).status_code == 401
    listed = requests.get(base, headers=auth, timeout=10).json()["tickets"]
    assert [(t["ticket_id"], t["delivery"]) for t in listed] == [(ticket_id, "delivered")]
    ticket = requests.get(f"{base}/{ticket_id}", headers=auth, timeout=10).json()
    assert "Wie erhalte ich eine Rechnung?" in [line["text"] for line in ticket["transcript"]]
    assert {(d["target"], d["status"]) for d in ticket["deliveries"]} == {
        ("webhook", "delivered"),
        ("email", "delivered"),
        ("customer", "delivered"),  # the transcript the customer asked for
        ("callback", "delivered"),  # the agent's answer to the ticket mail, to the REST integration
    }
    # An agent's reply to a REST customer: in the response, for the integration to forward.
    assert requests.post(f"{base}/{ticket_id}/reply", headers=auth, json={}, timeout=10).status_code == 400
    replied = requests.post(f"{base}/{ticket_id}/reply", headers=auth, json={"text": AGENT_TEXT}, timeout=10).json()
    assert (replied["in_chat"], replied["called_back"], replied["mailed"]) == (False, True, False)
    assert [m["text"] for m in replied["messages"]] == [
        RESPONSES["utter_agent_reply"][0]["text"].format(ticket_id=ticket_id, text=AGENT_TEXT)
    ]
    ticket = requests.get(f"{base}/{ticket_id}", headers=auth, timeout=10).json()
    assert ticket["transcript"][-1] == {**ticket["transcript"][-1], "from": "support", "text": AGENT_TEXT}
    refused = requests.post(f"{base}/{ticket_id}/close", headers=auth, json={"resolution": 42}, timeout=10)
    assert refused.status_code == 400 and "resolution" in refused.json()["message"]
    closed = requests.post(f"{base}/{ticket_id}/close", headers=auth, json={"resolution": RESOLUTION}, timeout=10)
    closed = closed.json()
    assert closed["status"] == "closed" and closed["customer_notified"] is True and closed["called_back"] is True
    assert [m["text"] for m in closed["messages"]] == [
        RESPONSES["utter_ticket_closed"][0]["text"],
        RESPONSES["utter_ticket_resolution"][0]["text"].format(ticket_id=ticket_id, resolution=RESOLUTION),
    ]
    assert requests.get(base, headers=auth, timeout=10).json()["tickets"] == []
    assert requests.post(f"{base}/{ticket_id}/close", headers=auth, timeout=10).status_code == 404
    return replied["number"]


def check_callbacks(callbacks: list[dict], ticket_id: str, reply_number: int, integration_token: str) -> None:
    """The agent's reply and the closure as the REST integration received them: signed with
    its token, the bot's messages for the customer."""
    by_mail, reply, closed = sorted(callbacks, key=lambda hit: hit["body"]["created"])
    assert [m["text"] for m in by_mail["body"]["messages"]] == [
        RESPONSES["utter_agent_reply"][0]["text"].format(ticket_id=ticket_id, text=MAIL_ANSWER)
    ]
    for hit in (by_mail, reply, closed):
        expected = "sha256=" + hmac.new(integration_token.encode(), hit["raw"], hashlib.sha256).hexdigest()
        assert hmac.compare_digest(hit["signature"], expected)
        assert (hit["body"]["ticket_id"], hit["body"]["recipient_id"]) == (ticket_id, "kunde-crash")
    assert (reply["key"], closed["key"]) == (
        f"{ticket_id}-reply-{reply_number}-callback",
        f"{ticket_id}-closed-callback",
    )
    assert reply["body"]["event"] == "reply" and closed["body"]["event"] == "closed"
    assert [m["text"] for m in reply["body"]["messages"]] == [
        RESPONSES["utter_agent_reply"][0]["text"].format(ticket_id=ticket_id, text=AGENT_TEXT)
    ]
    assert [m["text"] for m in closed["body"]["messages"]] == [
        RESPONSES["utter_ticket_closed"][0]["text"],
        RESPONSES["utter_ticket_resolution"][0]["text"].format(ticket_id=ticket_id, resolution=RESOLUTION),
    ]


def test_support_api_without_configured_token_refuses(bot):
    response = requests.get(f"{bot.servers.url}/webhooks/support/tickets", timeout=10)
    assert response.status_code == 503 and "FAQBOT_SUPPORT_TOKEN" in response.json()["message"]


def test_plain_rasa_run_actions_delivers_tickets(model_path, tmp_path, desk):
    """A Rasa user starts the action server with plain `rasa run actions`: the ticket still
    reaches the configured webhook (the worker starts through rasa-sdk's plugin hook)."""
    var_dir = tmp_path / "var"
    with running(
        bot_servers(
            model_path,
            var_dir,
            plain_rasa_actions=True,
            env={"FAQBOT_WEBHOOK_URL": desk.url, "FAQBOT_WEBHOOK_SECRET": SECRET},
        )
    ) as servers:
        assert servers.processes[0].args[1:3] == ["run", "actions"]
        bot = Bot(servers)
        bot.send("kunde-plain", "Wie erhalte ich eine Rechnung?")
        bot.send("kunde-plain", "Ich möchte bitte mit einem Mitarbeiter sprechen")
        bot.send("kunde-plain", "kunde.plain@beispiel.de")
        ticket_id = customs(bot.send("kunde-plain", "ja"))[0]["escalation"]["ticket_id"]
        wait_for(lambda: len(desk.received) == 1)
    [hit] = desk.received
    assert hit["signature_ok"] and hit["key"] == f"{ticket_id}-created-webhook"
    assert hit["body"]["customer"]["email"] == "kunde.plain@beispiel.de"


def test_two_workers_on_one_outbox_send_each_row_once(tmp_path, desk):
    """Several action-server workers share the outbox: each row is claimed by one of them."""
    config = DeliveryConfig(webhook_url=desk.url, webhook_secret=SECRET)
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    tickets = [make_ticket(store, config.targets, sender=f"kunde-{number}") for number in range(10)]
    due = store.due_deliveries(datetime.now(timezone.utc))
    first, second = DeliveryWorker(store, config), DeliveryWorker(store, config)
    for delivery in due:  # both saw the same due rows; the second comes too late for each
        first.attempt(delivery)
        second.attempt(delivery)
    assert sorted(hit["key"] for hit in desk.received) == sorted(f"{t.ticket_id}-created-webhook" for t in tickets)
    assert all(d.attempts == 1 for t in tickets for d in store.deliveries_for(t.ticket_id))


@pytest.mark.parametrize(
    "support_yml, reason",
    [
        ('support_hours:\n  state: XY\n  mon: "09:00-17:00"\n', "Unbekanntes Bundesland"),
        ("webhook: [\n", "expected"),
        ("reply_within_hours: acht\n", "reply_within_hours muss eine Stundenzahl"),
    ],
)
def test_action_server_refuses_to_start_with_a_broken_support_yml(tmp_path, support_yml, reason):
    """A mistake in support.yml stops the start, instead of surfacing at the first escalation."""
    config = tmp_path / "support.yml"
    config.write_text(support_yml, encoding="utf-8")
    for command in (
        [sys.executable, "-m", "faqbot.server.action_server", "--port", str(free_port())],
        [str(Path(sys.executable).with_name("rasa")), "run", "actions", "--port", str(free_port())],
    ):
        result = subprocess.run(
            command,
            cwd=PROJECT_DIR,
            env={**os.environ, "FAQBOT_SUPPORT_CONFIG": str(config)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert (
            result.returncode != 0
            and "Die Support-Einstellungen (support.yml) sind fehlerhaft" in result.stderr
            and reason in result.stderr
        )


def test_the_customer_gets_the_transcript_at_the_address_of_the_ticket(tmp_path, mailbox):
    """„Gesprächsverlauf per E-Mail“: through the outbox, to the customer, in German."""
    config = DeliveryConfig(
        smtp_host="127.0.0.1", smtp_port=mailbox.controller.port, support_email="support@example.org"
    )
    store = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    ticket = store.create(
        "kunde-9", "socketio", "Paket?", None, None, [], contact={"id": "kunde-9", "email": "kundin@beispiel.de"}
    )
    transcript = [
        {"from": "kunde", "text": "Wo ist mein Paket?", "time": "2026-11-27T09:14:00+00:00"},
        {"from": "bot", "text": "Ihre Ticketnummer lautet T-1.", "time": "2026-11-27T09:14:01+00:00"},
    ]
    assert [store.queue_transcript(ticket, transcript, at_most=2) for _ in range(3)] == [1, 2, None]
    DeliveryWorker(store, config).run_due()
    assert len(mailbox.messages) == 2
    recipients, mail = mailbox.decoded()[0]
    assert recipients == ["kundin@beispiel.de"] and mail["To"] == "kundin@beispiel.de"
    assert mail["Subject"] == f"Ihr Gesprächsverlauf mit unserem Kundenservice ({ticket.ticket_id})"
    assert mail["Reply-To"] == "support@example.org"  # an answer reaches the support team
    body = mail.get_content()
    assert "[27.11.2026 10:14] Sie: Wo ist mein Paket?" in body  # Berlin time
    assert "[27.11.2026 10:14] Assistent: Ihre Ticketnummer lautet T-1." in body
    assert body.startswith("Guten Tag,") and "Mit freundlichen Grüßen" in body
    # Delivered: the outbox keeps no copy of the conversation.
    assert all(d.status == "delivered" and d.payload == {} for d in store.deliveries_for(ticket.ticket_id))
