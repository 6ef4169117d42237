"""Agents answer ticket mails into the chat: reply addresses, the answer's own text, and the
SMTP receiver in a real SMTP exchange (the support API behind it is a small HTTP receiver
here; through the real servers in test_escalation_delivery.py)."""

from __future__ import annotations

import json
import smtplib
import threading
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from conftest import free_port

from faqbot.core.delivery import DeliveryConfig, reply_address, ticket_of_reply_address
from faqbot.server.inbound_mail import answer_text, receiver

TICKET = "T-20261128-00007"
SUPPORT_TOKEN = "support-token-for-the-inbound-mail-tests-0123456789"
CONFIG = DeliveryConfig(inbound_address="antwort@bot.example", support_email="support@example.org")


@pytest.fixture(autouse=True)
def secrets(monkeypatch):
    monkeypatch.setenv("FAQBOT_SESSION_SECRET", "session-secret-for-the-inbound-mail-tests-0123")
    monkeypatch.setenv("FAQBOT_SUPPORT_TOKEN", SUPPORT_TOKEN)


def test_a_reply_address_names_its_ticket_and_cannot_be_forged():
    address = reply_address(TICKET, CONFIG)
    assert address.startswith(f"antwort+{TICKET}.") and address.endswith("@bot.example")
    assert ticket_of_reply_address(address, CONFIG) == TICKET
    assert ticket_of_reply_address(f"<{address.upper()}>", CONFIG) == TICKET  # mail servers may change the case
    signature = address.split(".", 1)[1].split("@")[0]
    other = "T-20261128-00008"
    for forged in (
        f"antwort+{other}.{signature}@bot.example",  # another customer's ticket, this signature
        address.replace("@bot.example", "@andere.example"),
        address.replace("antwort+", "support+"),
        f"antwort+{TICKET}.{'0' * 20}@bot.example",
        "antwort@bot.example",
    ):
        assert ticket_of_reply_address(forged, CONFIG) is None, forged


def mail(text: str, subtype: str = "plain") -> EmailMessage:
    message = EmailMessage()
    message.set_content(text, subtype=subtype)
    return message


@pytest.mark.parametrize(
    "body",
    [
        "Guten Tag,\nwir haben das Paket neu verschickt.\n\nAm 28.11.2026 um 10:14 schrieb FAQ-Bot:\n> Ticket: T-1\n",
        "Guten Tag,\nwir haben das Paket neu verschickt.\n\n-----Ursprüngliche Nachricht-----\nVon: bot\nTicket: T-1\n",
        "Guten Tag,\nwir haben das Paket neu verschickt.\n-- \nPetra Muster\nSupport-Team\n",
        "Guten Tag,\nwir haben das Paket neu verschickt.\n\nOn Sat, 28 Nov 2026 bot wrote:\n> Ticket: T-1\n",
    ],
)
def test_the_answer_is_the_agents_own_text_without_quote_and_signature(body):
    assert answer_text(mail(body)) == "Guten Tag,\nwir haben das Paket neu verschickt."


def test_an_html_only_answer_is_read_as_text():
    html = "<html><body><p>Guten Tag,</p><p>das Paket ist <b>unterwegs</b>.</p></body></html>"
    assert answer_text(mail(html, "html")).split() == ["Guten", "Tag,", "das", "Paket", "ist", "unterwegs", "."]


class SupportApi:
    """Stands in for the Rasa server's support API: records replies, answers with ``status``."""

    def __init__(self) -> None:
        self.replies: list[tuple[str, str, str]] = []  # (path, authorization, text)
        self.status = 200
        self.keys: list[str | None] = []  # the mails' Message-IDs: a mail delivered twice is one reply
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                api.replies.append((self.path, self.headers["Authorization"], body["text"]))
                api.keys.append(body["key"])
                answer = json.dumps({"message": "Dieses Ticket gibt es nicht oder es ist geschlossen."}).encode()
                self.send_response(api.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"


@pytest.fixture
def api():
    api = SupportApi()
    yield api
    api.server.shutdown()
    api.server.server_close()


@pytest.fixture
def inbound(api):
    controller = receiver(CONFIG, api.url, port=free_port())
    controller.start()
    yield controller
    controller.stop()


def answer(port: int, to: str, sender: str = "Petra Muster <petra@example.org>", text: str = "Ist unterwegs.") -> None:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, to, f"Re: [{TICKET}] Neue Anfrage"
    message["Message-ID"] = "<antwort-1@mail.example>"
    message.set_content(f"{text}\n\nAm 28.11.2026 um 10:14 schrieb FAQ-Bot:\n> Ticket: {TICKET}\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.send_message(message)


def test_an_agents_answer_goes_to_the_support_api_of_its_ticket(api, inbound):
    answer(inbound.port, reply_address(TICKET, CONFIG), text="Das Paket ist unterwegs, Sendungsnummer 123.")
    assert api.replies == [
        (
            f"/webhooks/support/tickets/{TICKET}/reply",
            f"Bearer {SUPPORT_TOKEN}",
            "Das Paket ist unterwegs, Sendungsnummer 123.",
        )
    ]


def test_the_mails_message_id_is_the_replys_key(api, inbound):
    answer(inbound.port, reply_address(TICKET, CONFIG))
    assert api.keys == ["<antwort-1@mail.example>"]  # the support API adds a key's reply once


def test_forged_addresses_and_strangers_are_refused(api, inbound):
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        answer(inbound.port, f"antwort+{TICKET}.{'0' * 20}@bot.example")
    assert refused.value.recipients[next(iter(refused.value.recipients))][0] == 550
    with pytest.raises(smtplib.SMTPDataError) as stranger:
        answer(inbound.port, reply_address(TICKET, CONFIG), sender="kunde@gmail.example")
    assert stranger.value.smtp_code == 550 and b"Support-Mitarbeiter" in stranger.value.smtp_error
    with pytest.raises(smtplib.SMTPDataError) as empty:
        answer(inbound.port, reply_address(TICKET, CONFIG), text="")
    assert empty.value.smtp_code == 550
    assert api.replies == []


def test_a_closed_ticket_bounces_and_a_support_api_down_is_retried_later(api, inbound):
    api.status = 404
    with pytest.raises(smtplib.SMTPDataError) as closed:
        answer(inbound.port, reply_address(TICKET, CONFIG))
    assert closed.value.smtp_code == 550 and b"geschlossen" in closed.value.smtp_error
    api.status = 503
    with pytest.raises(smtplib.SMTPDataError) as down:
        answer(inbound.port, reply_address(TICKET, CONFIG))
    assert down.value.smtp_code == 451  # a temporary error: the mail server sends it again
    api.server.shutdown()
    api.server.server_close()
    with pytest.raises(smtplib.SMTPDataError) as gone:
        answer(inbound.port, reply_address(TICKET, CONFIG))
    assert gone.value.smtp_code == 451
