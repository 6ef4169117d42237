"""Delivery of tickets to the support team: an outbox worked off in the background.

``TicketStore.create`` writes the ticket and one ``deliveries`` row per configured target in
one transaction, before anything is sent. ``DeliveryWorker`` (a daemon thread in the action
server, started by ``faqbot.server.action_server``) claims due rows one at a time, sends them,
marks them delivered, and on failure retries with exponential backoff. Several action
servers may share the outbox: a claimed row is sent by its worker only, until the claim runs
out (``CLAIM_TIMEOUTS`` send timeouts). Rows survive restarts, so pending deliveries resume
when the action server starts again. Delivery is at-least-once with a stable key
(``Idempotency-Key`` header, e-mail ``Message-ID``): a crash between the receiver's
acknowledgement and our "delivered" mark, or a send that outlasts its claim, can resend, and
the key lets the receiver drop the duplicate.
"""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import logging
import os
import re
import smtplib
import threading
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from faqbot.core import shared_secrets
from faqbot.core.metrics import OUTBOX_BACKLOG, OUTBOX_FAILURES, OUTBOX_GIVEN_UP, OUTBOX_SENT
from faqbot.core.support_config import read_support_config
from faqbot.core.tickets import CALLBACK, CUSTOMER_MAIL

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-FAQBot-Signature"
# A claim lasts this many send timeouts: longer than one send can take (an e-mail is about ten
# exchanges with the server), so no other worker takes the row meanwhile.
CLAIM_TIMEOUTS = 10
# Rows one round of the worker sends at most before it looks at its stop flag and the backlog.
ROUND = 20


@dataclass
class DeliveryConfig:
    webhook_url: str | None = None
    webhook_secret: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_from: str = "faqbot@localhost"
    support_email: str | None = None
    alert_email: str | None = None  # gets a mail when a delivery fails for good
    # Agents answer a ticket mail into the chat: its Reply-To is a signed address of this
    # one (``reply_address``), delivered to the bot's mail receiver (faqbot.server.inbound_mail).
    inbound_address: str | None = None
    inbound_port: int = 2525
    inbound_agents: str | None = None  # who may answer that way: addresses, @domains (comma-separated)
    retry_base_s: float = 30.0
    retry_cap_s: float = 3600.0
    max_attempts: int = 50
    timeout_s: float = 10.0

    @property
    def mails_customers(self) -> bool:
        """Whether transcripts can be e-mailed to customers (an SMTP server is configured)."""
        return bool(self.smtp_host)

    @property
    def targets(self) -> list[str]:
        found = []
        if self.webhook_url:
            found.append("webhook")
        if self.smtp_host and self.support_email:
            found.append("email")
        return found


# Environment variables override the file; secrets belong only in the environment.
_ENV = {
    "FAQBOT_WEBHOOK_URL": ("webhook_url", str),
    "FAQBOT_WEBHOOK_SECRET": ("webhook_secret", str),
    "FAQBOT_SMTP_HOST": ("smtp_host", str),
    "FAQBOT_SMTP_PORT": ("smtp_port", int),
    "FAQBOT_SMTP_USER": ("smtp_user", str),
    "FAQBOT_SMTP_PASSWORD": ("smtp_password", str),
    "FAQBOT_SMTP_FROM": ("smtp_from", str),
    "FAQBOT_SUPPORT_EMAIL": ("support_email", str),
    "FAQBOT_ALERT_EMAIL": ("alert_email", str),
    "FAQBOT_INBOUND_ADDRESS": ("inbound_address", str),
    "FAQBOT_INBOUND_PORT": ("inbound_port", int),
    "FAQBOT_INBOUND_AGENTS": ("inbound_agents", str),
    "FAQBOT_RETRY_BASE_S": ("retry_base_s", float),
    "FAQBOT_RETRY_CAP_S": ("retry_cap_s", float),
    "FAQBOT_RETRY_MAX_ATTEMPTS": ("max_attempts", int),
}


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> DeliveryConfig:
    """support.yml with the environment's overrides (``environ``: another process's environment)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    data = read_support_config(path or environ.get("FAQBOT_SUPPORT_CONFIG") or None)
    if data:
        webhook, smtp, retry = data.get("webhook") or {}, data.get("email") or {}, data.get("retry") or {}
        inbound = smtp.get("inbound") or {}
        agents = inbound.get("agents")
        raw = {
            "webhook_url": webhook.get("url"),
            "smtp_host": smtp.get("host"),
            "smtp_port": smtp.get("port"),
            "smtp_from": smtp.get("from"),
            "support_email": smtp.get("to"),
            "alert_email": smtp.get("alert_to"),
            "inbound_address": inbound.get("address"),
            "inbound_port": inbound.get("port"),
            "inbound_agents": ", ".join(agents) if isinstance(agents, list) else agents,
            "retry_base_s": retry.get("base_seconds"),
            "retry_cap_s": retry.get("cap_seconds"),
            "max_attempts": retry.get("max_attempts"),
        }
    for variable, (field, kind) in _ENV.items():
        if environ.get(variable):
            raw[field] = kind(environ[variable])
    return DeliveryConfig(**{key: value for key, value in raw.items() if value is not None})


def backoff_seconds(attempts: int, config: DeliveryConfig) -> float:
    """Wait after the n-th failed attempt: base, 2*base, 4*base, ... up to the cap."""
    return min(config.retry_cap_s, config.retry_base_s * 2 ** max(0, attempts - 1))


def signature(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(payload: dict[str, Any], key: str, config: DeliveryConfig) -> None:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    signed = signature(body, config.webhook_secret) if config.webhook_secret else None
    _post(config.webhook_url, body, key, signed, config)


def send_callback(payload: dict[str, Any], key: str, config: DeliveryConfig) -> None:
    """A REST integration's callback: URL, body and signature as the Rasa server made them
    (``faqbot.server.channels.rest.signed_callback``; it holds the integration's token)."""
    _post(payload["url"], payload["body"].encode("utf-8"), key, payload["signature"], config)


def _post(url: str, body: bytes, key: str, signed: str | None, config: DeliveryConfig) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8", "Idempotency-Key": key}
    if signed:
        headers[SIGNATURE_HEADER] = signed
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=config.timeout_s) as response:  # non-2xx raises
        response.read()


LOCAL_TIME = ZoneInfo("Europe/Berlin")  # the customers' and the support team's time
SPEAKERS = {"kunde": "Kunde", "bot": "Assistent", "support": "Support-Team"}
# Characters of the customer's question in a ticket mail's subject.
SUBJECT_QUESTION_CHARS = 60


def local_time(iso: str) -> str:
    """An ISO time (UTC) as the support team reads it: „27.11.2026 10:14“ in Berlin time."""
    return datetime.fromisoformat(iso).astimezone(LOCAL_TIME).strftime("%d.%m.%Y %H:%M")


def customer_line(contact: dict[str, Any]) -> str:
    """Who the customer is: e-mail and customer number, whichever are known."""
    email, customer_id = contact.get("email"), contact.get("id")
    if email and customer_id:
        return f"{email} (Kunden-ID {customer_id})"
    return email or customer_id or "-"


def faq_guess_line(payload: dict[str, Any]) -> str:
    guess = payload.get("faq_guess_question")
    if not guess:
        return "keine (der Assistent fand keine passende FAQ-Frage)"
    category = payload.get("faq_guess_category")
    percent = round(float(payload.get("confidence") or 0) * 100)
    return f"„{guess}“ ({category + ', ' if category else ''}{percent} % sicher)"


def email_text(payload: dict[str, Any]) -> str:
    contact = payload.get("customer") or {}
    if payload.get("event") == "closed":
        return (
            f"Ticket: {payload['ticket_id']}\nAbgeschlossen: {local_time(payload['created'])}\n"
            f"Kunde: {customer_line(contact)}\n\n"
            f"Lösung für den Kunden:\n{payload.get('resolution') or '(keine angegeben)'}\n"
        )
    if payload.get("event") == "message":
        return (
            f"Ticket: {payload['ticket_id']}\nZeit: {local_time(payload['created'])}\n"
            f"Kunde: {customer_line(contact)}\n\n"
            f"Nachtrag des Kunden:\n{payload['text']}\n"
        )
    lines = [
        f"Ticket: {payload['ticket_id']}",
        f"Erstellt: {local_time(payload['created'])}",
        f"Kanal: {payload.get('channel') or '-'}",
        f"Kunde: {customer_line(contact)}",
        f"Frage: {payload.get('question') or '-'}",
        f"Vermutete FAQ: {faq_guess_line(payload)}",
        "",
        "Verlauf:",
    ]
    lines += [
        f"[{local_time(line['time'])}] {SPEAKERS.get(line['from'], line['from'])}: {line['text']}"
        for line in payload.get("transcript") or []
    ]
    return "\n".join(lines) + "\n"


REPLY_ADDRESS = re.compile(
    r"(?P<local>[^@+]+)\+(?P<ticket>T-\d{8}-\d{5,})\.(?P<signature>[0-9a-f]{20})@(?P<domain>.+)", re.IGNORECASE
)


def _reply_signature(ticket_id: str) -> str:
    # The session secret, kept apart by its prefix: every server of the bot has it.
    secret = shared_secrets.require("FAQBOT_SESSION_SECRET")
    return hmac.new(secret.encode(), f"reply-address:{ticket_id}".encode(), hashlib.sha256).hexdigest()[:20]


def reply_address(ticket_id: str, config: DeliveryConfig) -> str:
    """The Reply-To of a ticket's mails to the support team: ``antwort+T-….<signature>@…``.
    An agent's answer to it reaches the customer in the chat; only who got the ticket mail
    knows it (the signature), so nobody can write into another customer's chat."""
    local, domain = config.inbound_address.rsplit("@", 1)
    return f"{local}+{ticket_id}.{_reply_signature(ticket_id)}@{domain}"


def ticket_of_reply_address(address: str, config: DeliveryConfig) -> str | None:
    """The ticket a reply address belongs to; None if it is not one of ours or forged."""
    found = REPLY_ADDRESS.fullmatch(address.strip().strip("<>"))
    if not found or not config.inbound_address:
        return None
    local, domain = config.inbound_address.rsplit("@", 1)
    ticket_id = found["ticket"].upper()
    if found["local"].lower() != local.lower() or found["domain"].lower() != domain.lower():
        return None
    return ticket_id if hmac.compare_digest(found["signature"].lower(), _reply_signature(ticket_id)) else None


def mail_id(key: str) -> str:
    """The Message-ID of a delivery's mail; the ticket's first mail is ``<ticket>-created-email``."""
    return f"<{key}@faqbot>"


def send_email(payload: dict[str, Any], key: str, config: DeliveryConfig) -> None:
    ticket_id = payload["ticket_id"]
    question = " ".join(str(payload.get("question") or "").split())
    if len(question) > SUBJECT_QUESTION_CHARS:  # cut at a word
        question = question[:SUBJECT_QUESTION_CHARS].rsplit(" ", 1)[0].rstrip(",;:") + "…"
    message = EmailMessage()
    if payload.get("event") in ("message", "closed"):
        what = "Nachtrag des Kunden" if payload["event"] == "message" else "Abgeschlossen"
        message["Subject"] = f"[{ticket_id}] {what}"
        # Threads onto the ticket's first mail in the support mailbox and help desks.
        first = mail_id(f"{ticket_id}-created-email")
        message["In-Reply-To"] = first
        message["References"] = first
    else:
        message["Subject"] = f"[{ticket_id}] Neue Anfrage: {question or 'ohne Frage'}"
    message["From"] = config.smtp_from
    message["To"] = config.support_email
    message["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = mail_id(key)  # stable, so a resend can be recognised
    customer_email = (payload.get("customer") or {}).get("email")
    if config.inbound_address:  # "Antworten" in the support mailbox reaches the customer's chat
        message["Reply-To"] = reply_address(ticket_id, config)
    elif customer_email:  # … or the customer's mailbox
        message["Reply-To"] = customer_email
    message.set_content(email_text(payload))
    _smtp_send(message, config)


def transcript_email_text(payload: dict[str, Any]) -> str:
    """The customer's copy of the conversation, in German."""
    speakers = {"kunde": "Sie", "bot": "Assistent", "support": "Support-Team"}
    lines = [
        "Guten Tag,",
        "",
        "wie gewünscht erhalten Sie den Verlauf Ihres Gesprächs mit unserem Kundenservice.",
        f"Ihre Ticketnummer: {payload['ticket_id']}",
        "",
    ]
    for line in payload.get("transcript") or []:
        lines.append(f"[{local_time(line['time'])}] {speakers.get(line['from'], line['from'])}: {line['text']}")
    lines += [
        "",
        "Sie erhalten diese E-Mail, weil Sie den Gesprächsverlauf im Chat angefordert haben.",
        "",
        "Mit freundlichen Grüßen",
        "Ihr Kundenservice",
    ]
    return "\n".join(lines) + "\n"


def closure_email_text(payload: dict[str, Any]) -> str:
    """The customer's mail when the support team closed the ticket, in German."""
    lines = [
        "Guten Tag,",
        "",
        f"Ihre Anfrage {payload['ticket_id']} wurde von unserem Support-Team abgeschlossen.",
    ]
    if payload.get("question"):
        lines += ["", f"Ihre Frage: {payload['question']}"]
    if payload.get("resolution"):
        lines += ["", "Unsere Antwort:", payload["resolution"]]
    lines += [
        "",
        "Wenn noch etwas offen ist, antworten Sie einfach auf diese E-Mail oder schreiben Sie uns im Chat.",
        "",
        "Mit freundlichen Grüßen",
        "Ihr Kundenservice",
    ]
    return "\n".join(lines) + "\n"


def reply_email_text(payload: dict[str, Any]) -> str:
    """An agent's reply for a customer who was no longer in the chat, in German."""
    return (
        "\n".join(
            [
                "Guten Tag,",
                "",
                f"unser Support-Team hat auf Ihre Anfrage {payload['ticket_id']} geantwortet:",
                "",
                payload["text"],
                "",
                "Wenn noch etwas offen ist, antworten Sie einfach auf diese E-Mail oder schreiben Sie uns im Chat.",
                "",
                "Mit freundlichen Grüßen",
                "Ihr Kundenservice",
            ]
        )
        + "\n"
    )


def send_customer_mail(payload: dict[str, Any], key: str, config: DeliveryConfig) -> None:
    """A mail to the customer: the transcript they asked for, an agent's reply, or the closure."""
    message = EmailMessage()
    if payload.get("event") == "closed":
        message["Subject"] = f"Ihre Anfrage {payload['ticket_id']} ist abgeschlossen"
        text = closure_email_text(payload)
    elif payload.get("event") == "reply":
        message["Subject"] = f"Antwort auf Ihre Anfrage {payload['ticket_id']}"
        text = reply_email_text(payload)
    else:
        message["Subject"] = f"Ihr Gesprächsverlauf mit unserem Kundenservice ({payload['ticket_id']})"
        text = transcript_email_text(payload)
    message["From"] = config.smtp_from
    message["To"] = payload["to"]
    if config.support_email:  # an answer to the copy reaches the support team
        message["Reply-To"] = config.support_email
    message["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
    message["Message-ID"] = mail_id(key)
    message.set_content(text)
    _smtp_send(message, config)


def _smtp_send(message: EmailMessage, config: DeliveryConfig) -> None:
    with smtplib.SMTP(config.smtp_host, config.smtp_port, timeout=config.timeout_s) as smtp:
        smtp.ehlo()
        if smtp.has_extn("starttls"):
            smtp.starttls()
            smtp.ehlo()
        if config.smtp_user:
            smtp.login(config.smtp_user, config.smtp_password or "")
        smtp.send_message(message)


SENDERS = {"webhook": send_webhook, "email": send_email, CUSTOMER_MAIL: send_customer_mail, CALLBACK: send_callback}


class DeliveryWorker:
    """Sends due outbox rows of a TicketStore, in daemon threads: one per target, so a slow
    or unreachable receiver (a webhook timing out) never holds back another (the mail)."""

    def __init__(self, store, config: DeliveryConfig | None = None, poll_s: float = 0.5) -> None:
        self.store, self.config, self.poll_s = store, config or load_config(), poll_s
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> DeliveryWorker:
        if not self.config.targets:
            logger.warning(
                "No delivery targets configured (support.yml / FAQBOT_WEBHOOK_URL, "
                "FAQBOT_SMTP_HOST + FAQBOT_SUPPORT_EMAIL): tickets are only stored."
            )
        self._threads = [
            threading.Thread(target=self._run, args=(target,), name=f"faqbot-delivery-{target}", daemon=True)
            for target in SENDERS
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, target: str) -> None:
        while not self._stop.is_set():
            try:
                self.run_due(target)
            except Exception:  # a broken database must not kill the worker for good
                logger.exception("Delivery loop failed (%s)", target)
            self._stop.wait(self.poll_s)  # the next poll, or at once when stopped

    def run_due(self, target: str | None = None) -> int:
        """Send due deliveries (of one target, or of all), each claimed first; returns how
        many were attempted."""
        attempted = 0
        while attempted < ROUND and not self._stop.is_set():
            claimed = self.store.claim_next(datetime.now(timezone.utc), self._claim_until(), target)
            if claimed is None:
                break
            self._send(claimed)
            attempted += 1
        OUTBOX_BACKLOG.set(self.store.backlog())
        return attempted

    def attempt(self, delivery) -> None:
        """Send one row read earlier, unless another worker has claimed it meanwhile."""
        claimed = self.store.claim(delivery, self._claim_until())
        if claimed is not None:
            self._send(claimed)

    def _claim_until(self) -> datetime:
        return datetime.now(timezone.utc) + timedelta(seconds=CLAIM_TIMEOUTS * self.config.timeout_s)

    def _send(self, claimed) -> None:
        sender = SENDERS[claimed.target]
        try:
            sender(claimed.payload, claimed.key, self.config)
        except Exception as error:
            OUTBOX_FAILURES.labels(claimed.target).inc()
            attempts = claimed.attempts + 1
            failed = attempts >= self.config.max_attempts
            retry_at = datetime.now(timezone.utc) + timedelta(seconds=backoff_seconds(attempts, self.config))
            recorded = self.store.mark_failed_attempt(
                claimed, attempts, f"{type(error).__name__}: {error}", retry_at, give_up=failed
            )
            if recorded and failed:
                self._alert(claimed, attempts, error)
            elif recorded:
                logger.warning("Delivery %s failed (attempt %d): %s", claimed.key, attempts, error)
            else:
                logger.warning("Delivery %s failed after its claim ran out (taken over): %s", claimed.key, error)
        else:
            OUTBOX_SENT.labels(claimed.target).inc()
            self.store.mark_delivered(claimed.key, claimed.attempts + 1)
            logger.info("Delivered %s", claimed.key)

    def _alert(self, delivery, attempts: int, error: Exception) -> None:
        """A delivery given up for good: an ERROR in the log, the metric, and a mail to the
        admin address if one is configured (not through the outbox: it may be what fails)."""
        OUTBOX_GIVEN_UP.labels(delivery.target).inc()
        logger.error(
            "Zustellung %s endgültig fehlgeschlagen nach %d Versuchen: %s. Ticket %s: bitte prüfen.",
            delivery.key,
            attempts,
            error,
            delivery.ticket_id,
        )
        if not (self.config.alert_email and self.config.smtp_host):
            return
        message = EmailMessage()
        message["Subject"] = f"[{delivery.ticket_id}] Zustellung fehlgeschlagen ({delivery.target})"
        message["From"] = self.config.smtp_from
        message["To"] = self.config.alert_email
        message["Date"] = email.utils.format_datetime(datetime.now(timezone.utc))
        message.set_content(
            f"Die Zustellung {delivery.key} an „{delivery.target}“ ist nach {attempts} Versuchen "
            f"endgültig fehlgeschlagen.\nLetzter Fehler: {error}\n\nDas Ticket {delivery.ticket_id} steht "
            "weiter in der Ticketliste der Support-API (Zustellung: failed)."
        )
        try:
            _smtp_send(message, self.config)
        except Exception:
            logger.exception("Warn-Mail an %s nicht gesendet", self.config.alert_email)
