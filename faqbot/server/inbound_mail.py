"""The bot's mail receiver: an agent's answer to a ticket mail reaches the customer's chat.

Ticket mails to the support team carry ``Reply-To: antwort+T-….<signature>@…`` (the
configured ``email.inbound.address``, ``faqbot.core.delivery.reply_address``). The company's
mail server delivers that address to this SMTP receiver on loopback (port 2525), which

* accepts only signed reply addresses of our own (RCPT: 550 otherwise), so nobody who has
  not received the ticket mail can write into a customer's chat;
* accepts only senders of the support team (``email.inbound.agents``: addresses or
  ``@domain``; default the domain of the support address);
* takes the answer's own text (plain text part, else the HTML's text), without the quoted
  ticket mail and the signature, and
* posts it to the support API (``POST /webhooks/support/tickets/<id>/reply``, the
  ``FAQBOT_SUPPORT_TOKEN``), which answers in the chat, the REST callback or by mail.

The support API down: ``451`` (the mail server tries again later), nothing is lost. A closed
ticket or an empty answer: ``550`` with the reason (the agent gets a bounce). Neither the
text nor addresses are logged.

    python -m faqbot.server.inbound_mail [--port 2525] [--rasa-url http://127.0.0.1:5005]

``make run`` starts it when an inbound address is configured.
"""

from __future__ import annotations

import argparse
import asyncio
import email.policy
import email.utils
import json
import logging
import os
import re
import signal
import threading
import urllib.error
import urllib.request
from email import message_from_bytes
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from bs4 import BeautifulSoup

from faqbot.core import shared_secrets
from faqbot.core.delivery import DeliveryConfig, load_config, ticket_of_reply_address

logger = logging.getLogger(__name__)

MAX_MAIL_BYTES = 1_000_000  # an answer with a long quoted history fits, attachments need not
# Where the quoted ticket mail (or the mail program's own history) begins.
QUOTE_START = re.compile(
    r"^(>|Am .+ schrieb .+:|On .+ wrote:|-{2,} ?(Original|Urspr.ngliche) ?(Message|Nachricht)|Von: |From: |_{10,})",
    re.IGNORECASE,
)
SIGNATURE_DELIMITER = "-- "


def answer_text(message: EmailMessage) -> str:
    """What the agent wrote: the plain text (else the HTML's text) up to the quoted mail or the signature."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    text = part.get_content()
    if part.get_content_type() == "text/html":
        text = BeautifulSoup(text, "html.parser").get_text("\n")
    lines = []
    for line in text.splitlines():
        if QUOTE_START.match(line.strip()) or line == SIGNATURE_DELIMITER:
            break
        lines.append(line.rstrip())
    return "\n".join(lines).strip()


def allowed_senders(config: DeliveryConfig) -> list[str]:
    """Addresses and ``@domains`` of the support team; default: the support address's domain."""
    if config.inbound_agents:
        return [entry.strip().lower() for entry in config.inbound_agents.split(",") if entry.strip()]
    return ["@" + config.support_email.rsplit("@", 1)[1].lower()] if config.support_email else []


class InboundMail:
    """aiosmtpd handler: checks the reply address and the sender, passes the answer on."""

    def __init__(self, config: DeliveryConfig, rasa_url: str, support_token: str) -> None:
        self.config, self.rasa_url, self.support_token = config, rasa_url.rstrip("/"), support_token
        self.senders = allowed_senders(config)

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        if ticket_of_reply_address(address, self.config) is None:
            return "550 5.1.1 Diese Antwortadresse gibt es nicht (nur Antworten auf Ticket-Mails)"
        if envelope.rcpt_tos:  # one ticket per mail: the answer belongs to exactly one customer
            return "452 4.5.3 Bitte nur an eine Ticket-Adresse zugleich antworten"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        ticket_id = ticket_of_reply_address(envelope.rcpt_tos[0], self.config)
        message = message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        sender = email.utils.parseaddr(str(message.get("From", "")))[1].lower()
        if not sender or not any(sender == entry or sender.endswith(entry) for entry in self.senders if entry):
            logger.warning("Antwort per Mail auf %s abgewiesen: Absender ist kein Support-Mitarbeiter", ticket_id)
            return "550 5.7.1 Der Absender ist nicht als Support-Mitarbeiter eingetragen"
        text = answer_text(message)
        if not text:
            return "550 5.6.0 Die Antwort enthaelt keinen eigenen Text"
        # The mail's Message-ID as the reply's key: a mail delivered twice is one reply.
        key = str(message.get("Message-ID", "")).strip() or None
        status, reason = await asyncio.to_thread(self.post_reply, ticket_id, text, key)
        if status == 200:
            logger.info("Antwort per Mail auf %s an den Kunden weitergegeben", ticket_id)
            return "250 OK"
        if status in (400, 404):
            logger.warning("Antwort per Mail auf %s abgewiesen (%s)", ticket_id, status)
            return f"550 5.7.0 {reason}"
        logger.warning("Antwort per Mail auf %s nicht weitergegeben (%s), wird erneut zugestellt", ticket_id, status)
        return "451 4.3.0 Der Chat ist gerade nicht erreichbar, bitte spaeter erneut"

    def post_reply(self, ticket_id: str, text: str, key: str | None) -> tuple[int, str]:
        """The support API's answer: status and its message (ASCII, for the SMTP reply)."""
        request = urllib.request.Request(
            f"{self.rasa_url}/webhooks/support/tickets/{ticket_id}/reply",
            data=json.dumps({"text": text, "key": key}, ensure_ascii=False).encode("utf-8"),
            headers={"Authorization": f"Bearer {self.support_token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, ""
        except urllib.error.HTTPError as error:
            try:
                reason = json.loads(error.read()).get("message", "")
            except Exception:
                reason = ""
            ascii_reason = reason.encode("ascii", "replace").decode() or "Die Antwort wurde nicht angenommen"
            return error.code, ascii_reason
        except OSError:  # refused, timed out: the Rasa server is down
            return 503, ""


def receiver(config: DeliveryConfig, rasa_url: str, port: int | None = None) -> Controller:
    """The SMTP receiver on loopback (not started)."""
    if not config.inbound_address:
        raise SystemExit("Keine Antwortadresse konfiguriert (email.inbound.address / FAQBOT_INBOUND_ADDRESS).")
    shared_secrets.require("FAQBOT_SESSION_SECRET")  # the reply addresses' signature
    handler = InboundMail(config, rasa_url, shared_secrets.require("FAQBOT_SUPPORT_TOKEN"))
    if not handler.senders:
        raise SystemExit("Wer darf antworten? Bitte email.inbound.agents oder die Support-Adresse (email.to) setzen.")
    return Controller(handler, hostname="127.0.0.1", port=port or config.inbound_port, data_size_limit=MAX_MAIL_BYTES)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, help="SMTP-Port auf 127.0.0.1 (Standard: email.inbound.port, 2525)")
    parser.add_argument("--rasa-url", default=os.environ.get("FAQBOT_RASA_URL", "http://127.0.0.1:5005"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    controller = receiver(load_config(), args.rasa_url, args.port)
    controller.start()
    logger.info("Mail-Empfang für Antworten auf Ticket-Mails auf 127.0.0.1:%d", controller.port)
    stopped = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stopped.set())
    stopped.wait()
    controller.stop()


if __name__ == "__main__":
    main()
