"""Custom actions of the FAQ bot (rasa-sdk action server, ``rasa run actions``).

Customer-facing texts live in ``domain.yml`` (responses) and ``data/faq.yml`` (answers);
this module decides which one to send.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, FollowupAction, SlotSet, UserUtteranceReverted
from rasa_sdk.executor import CollectingDispatcher

from faqbot.core.clarify import CLARIFY_MIN_CONFIDENCE, clarify_candidates, faq_ranking
from faqbot.core.delivery import load_config
from faqbot.core.intents import NLU_FALLBACK, NOT_A_QUESTION, OUT_OF_SCOPE, faq_id_for
from faqbot.core.knowledge import CachedKnowledge, FaqEntry, KnowledgeError
from faqbot.core.metrics import FAQ_OUTCOMES
from faqbot.core.support_config import read_support_config
from faqbot.core.support_hours import BERLIN, SupportAvailability, german_time
from faqbot.core.text import has_letters
from faqbot.core.tickets import Ticket, TicketStore, customer_transcript

logger = logging.getLogger(__name__)

NONE_OF_THESE = "Keine davon"
# FAQ_OUTCOMES' faq label when no FAQ is concerned (the bot found none).
NO_FAQ = "keine"

knowledge = CachedKnowledge()
_ticket_store: TicketStore | None = None


def ticket_store() -> TicketStore:
    global _ticket_store
    if _ticket_store is None:
        _ticket_store = TicketStore()
    return _ticket_store


def delivery_targets() -> list[str]:
    """Where new tickets and messages go, from the configuration: the outbox rows are
    written whether or not a delivery worker runs in this process (it is started with the
    action server, see faqbot.server.action_server)."""
    return load_config().targets


# The customer's time frame when support.yml promises none.
NO_TIME_FRAME = "so bald wie möglich"


def _offer_handoff_reset(tracker: Tracker) -> list[EventType]:
    return [SlotSet("handoff_offered", False)] if tracker.get_slot("handoff_offered") else []


def customer_contact(tracker: Tracker, include_form: bool = True) -> dict[str, Any]:
    """Who to answer: the conversation id, plus id/e-mail an integration passed in REST
    metadata ``{"metadata": {"customer": {"id": "...", "email": "..."}}}``, or the e-mail
    the customer gave in the escalation form (actions/handoff.py)."""
    contact: dict[str, Any] = {"id": tracker.sender_id}
    for event in reversed(tracker.events):  # the latest message that carried a customer
        customer = (event.get("metadata") or {}).get("customer") if event.get("event") == "user" else None
        if isinstance(customer, dict):
            # The REST channel admits only validated values; a line break here would still
            # break every mail of the ticket (header injection), so never take one.
            values = {key: str(customer[key]) for key in ("id", "email") if customer.get(key)}
            contact.update({key: value for key, value in values.items() if value.isprintable()})
            break
    if include_form and tracker.get_slot("customer_email"):
        contact["email"] = tracker.get_slot("customer_email")
    return contact


def since_last_ticket(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation's events after its last ticket ended (closed by the support team,
    or the customer went back to the bot: the slot ``ticket_id`` emptied); all of them if
    it had none. A later ticket starts there, with its own question and transcript."""
    start, had_ticket = 0, False
    for index, event in enumerate(events):
        if event.get("event") == "slot" and event.get("name") == "ticket_id":
            if event.get("value"):
                had_ticket = True
            elif had_ticket:
                start, had_ticket = index + 1, False
    return events[start:]


def customer_question(tracker: Tracker) -> dict[str, Any] | None:
    """The customer's latest actual question (a user event) since the last ticket, not
    counting small talk, button payloads and answers given to a form (e-mail address, later
    messages)."""
    question, active_loop = None, None
    for event in since_last_ticket(tracker.events):
        if event.get("event") == "active_loop":
            active_loop = event.get("name")
        elif event.get("event") == "user" and active_loop is None:
            intent = ((event.get("parse_data") or {}).get("intent") or {}).get("name")
            text = event.get("text") or ""
            if intent not in NOT_A_QUESTION and text.strip() and not text.startswith(("/", "EXTERNAL:")):
                question = event
    return question


def send_faq_answer(dispatcher: CollectingDispatcher, entry: FaqEntry, confidence: float) -> None:
    """The FAQ answer verbatim, plus the custom payload REST integrations read."""
    FAQ_OUTCOMES.labels(entry.id, "answer").inc()
    dispatcher.utter_message(
        text=entry.answer,
        json_message={"faq_id": entry.id, "category": entry.category, "confidence": round(float(confidence), 4)},
    )


def send_ticket_number(
    dispatcher: CollectingDispatcher, response: str, ticket_id: str, deadline: datetime | None = None, **texts: str
) -> None:
    """A message with the ticket number, plus the custom payload that marks the handoff
    (with the promised answer time as ISO 8601, if there is one)."""
    escalation = {"ticket_id": ticket_id} | ({"reply_by": deadline.isoformat()} if deadline else {})
    dispatcher.utter_message(response=response, ticket_id=ticket_id, json_message={"escalation": escalation}, **texts)


def escalate(dispatcher: CollectingDispatcher, tracker: Tracker) -> tuple[Ticket | None, list[EventType]]:
    """Create (or find) the conversation's ticket and tell the customer its number."""
    event = customer_question(tracker)
    question = tracker.get_slot("problem_description") or (event or {}).get("text")
    ranking = faq_ranking((event or {}).get("parse_data") or {})
    # A guess the bot would not even offer as „Meinten Sie …?“ means nothing to the support team.
    plausible = ranking and (ranking[0].get("confidence") or 0) >= CLARIFY_MIN_CONFIDENCE
    guess = faq_id_for(ranking[0]["name"]) if plausible else None
    confidence = ranking[0].get("confidence") if plausible else None
    try:
        ticket = ticket_store().create(
            sender_id=tracker.sender_id,
            channel=tracker.get_latest_input_channel(),
            question=question,
            faq_guess=guess,
            confidence=confidence,
            transcript=customer_transcript(since_last_ticket(tracker.events)),
            targets=delivery_targets(),
            contact=customer_contact(tracker),
        )
    except Exception:  # the customer must get an answer even if the store is down
        logger.exception("Escalation for %s could not be stored", tracker.sender_id)
        FAQ_OUTCOMES.labels(guess or NO_FAQ, "escalation_failed").inc()
        dispatcher.utter_message(response="utter_escalation_failed")
        return None, _offer_handoff_reset(tracker)
    if not ticket.is_new:  # a repeated request names the same ticket again
        send_ticket_number(dispatcher, "utter_escalated_again", ticket.ticket_id)
        return ticket, _offer_handoff_reset(tracker)
    FAQ_OUTCOMES.labels(guess or NO_FAQ, "escalation").inc()
    now = datetime.now(timezone.utc)
    try:
        support = SupportAvailability.from_config(read_support_config(), now)
    except Exception:  # support.yml broken since start-up: the ticket exists all the same
        logger.exception("Support hours in support.yml unreadable")
        support = SupportAvailability(closed_until=None, reply_by=None)
    reply_by = f"in der Regel bis {german_time(support.reply_by, now)}" if support.reply_by else NO_TIME_FRAME
    send_ticket_number(dispatcher, "utter_escalated", ticket.ticket_id, support.reply_by, reply_by=reply_by)
    if support.closed_until:
        dispatcher.utter_message(response="utter_support_closed", next_opening=german_time(support.closed_until, now))
    return ticket, _offer_handoff_reset(tracker)


class ActionAnswerFaq(Action):
    """Answer the recognised FAQ question verbatim from data/faq.yml."""

    def name(self) -> str:
        return "action_answer_faq"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        intent = tracker.latest_message.get("intent") or {}
        try:
            faq_id = faq_id_for(intent.get("name"))
            if faq_id is None:
                raise KnowledgeError(f"Kein FAQ-Intent: {intent.get('name')!r}")
            entry = knowledge.get(faq_id)
        except KnowledgeError:
            logger.exception("No FAQ answer for %s; escalating", tracker.sender_id)
            return escalate(dispatcher, tracker)[1]
        send_faq_answer(dispatcher, entry, intent.get("confidence") or 0.0)
        return _offer_handoff_reset(tracker)


def domain_intents(domain: dict[str, Any]) -> set[str]:
    """The intents of the running Rasa server's domain (names, or one-key dicts with options)."""
    return {name if isinstance(name, str) else next(iter(name)) for name in domain.get("intents") or []}


class ActionHandleFallback(Action):
    """The NLU is unsure, or the question is not in the FAQ.

    Unreadable input (no letters): ask for words. Some FAQ questions plausible (unsure, or
    not in the FAQ but one question came close, ``clarify_candidates``): "Meinten Sie …?"
    with one button per question. Otherwise: offer the support team.
    """

    def name(self) -> str:
        return "action_handle_fallback"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        message = tracker.latest_message
        intent = (message.get("intent") or {}).get("name")
        if intent not in (NLU_FALLBACK, OUT_OF_SCOPE):  # no rule for this turn: the dialogue's fallback
            return self.dialogue_fallback(dispatcher, tracker, domain, intent)
        if not has_letters(message.get("text") or ""):
            dispatcher.utter_message(response="utter_ask_for_words")
            return []
        candidates = clarify_candidates(message)
        if candidates:
            known = domain_intents(domain)
            try:
                buttons = []
                for item in candidates:
                    question = knowledge.get(faq_id_for(item["name"])).question
                    # A FAQ newer than the running dialogue model: its question, which the NLU knows.
                    buttons.append(
                        {"title": question, "payload": f"/{item['name']}" if item["name"] in known else question}
                    )
            except KnowledgeError:
                logger.exception("FAQ knowledge unreadable; offering the support team")
            else:
                buttons.append({"title": NONE_OF_THESE, "payload": "/out_of_scope"})
                FAQ_OUTCOMES.labels(faq_id_for(candidates[0]["name"]), "clarification").inc()  # the likeliest
                dispatcher.utter_message(response="utter_clarify", buttons=buttons)
                return _offer_handoff_reset(tracker)
        FAQ_OUTCOMES.labels(NO_FAQ, "fallback").inc()
        dispatcher.utter_message(response="utter_offer_handoff")
        return [SlotSet("handoff_offered", True)]

    @staticmethod
    def dialogue_fallback(
        dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any], intent: str | None
    ) -> list[EventType]:
        """config.yml names this action the dialogue's fallback too. A FAQ question newer than
        the running dialogue model (created and trained in the trainers' inbox; the Rasa
        server's domain has no rule for it until its restart) is answered from the knowledge.
        Anything else gets what Rasa's default fallback does: an apology, the message undone."""
        faq_id = faq_id_for(intent)
        if faq_id and intent not in domain_intents(domain):
            try:
                entry = knowledge.get(faq_id)
            except KnowledgeError:
                logger.warning("Intent %s is neither in the domain nor in the FAQ knowledge", intent)
            else:
                confidence = (tracker.latest_message.get("intent") or {}).get("confidence") or 0.0
                send_faq_answer(dispatcher, entry, confidence)
                # No rule ends this turn with action_listen: without it the fallback would run again.
                return [*_offer_handoff_reset(tracker), FollowupAction("action_listen")]
        dispatcher.utter_message(response="utter_default")
        return [UserUtteranceReverted(), FollowupAction("action_listen")]


class ActionEscalate(Action):
    """Hand the conversation to the support team with a ticket. With a ticket, the
    conversation is handed off (``handed_off``): the rules start ``handoff_form``."""

    def name(self) -> str:
        return "action_escalate"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        ticket, events = escalate(dispatcher, tracker)
        return events + [
            SlotSet("handed_off", ticket is not None),
            SlotSet("ticket_id", ticket.ticket_id if ticket else None),
            SlotSet("problem_description", None),
            # A later ticket asks again whether the address given now is still right.
            SlotSet("contact_confirmed", None),
        ]


TICKET_NUMBER = re.compile(r"\bT-\d{8}-\d{5}\b", re.IGNORECASE)


def local_date_time(iso: str) -> str:
    """„27.11.2026 um 10:14 Uhr“, Berlin time."""
    moment = datetime.fromisoformat(iso).astimezone(BERLIN)
    return f"{moment:%d.%m.%Y} um {moment.hour}:{moment.minute:02d} Uhr"


class ActionTicketStatus(Action):
    """„Gibt es schon eine Antwort auf mein Ticket?“, „Stand von T-…?“: the status from the
    ticket store, with the support team's latest reply or resolution. Only tickets of this
    conversation: a number from elsewhere reveals nothing (not even whether it exists).
    Never opens a ticket."""

    def name(self) -> str:
        return "action_ticket_status"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        named = TICKET_NUMBER.search(tracker.latest_message.get("text") or "")
        try:
            if named:
                ticket = ticket_store().get(named.group().upper())
                if ticket is None or ticket.sender_id != tracker.sender_id:
                    dispatcher.utter_message(response="utter_ticket_not_found", ticket_id=named.group().upper())
                    return []
            else:
                ticket = ticket_store().latest_ticket_for(tracker.sender_id)
                if ticket is None:
                    dispatcher.utter_message(response="utter_no_ticket")
                    return []
            created = local_date_time(ticket.created_at)
            replies = [line for line in ticket.transcript if line["from"] == "support"]
            if ticket.status != "open":
                dispatcher.utter_message(response="utter_ticket_done", ticket_id=ticket.ticket_id, created=created)
                if ticket.resolution:
                    dispatcher.utter_message(
                        response="utter_ticket_resolution", ticket_id=ticket.ticket_id, resolution=ticket.resolution
                    )
                return []
            if replies:  # the team has answered: its latest reply, not a time frame
                dispatcher.utter_message(
                    response="utter_ticket_open_replied",
                    ticket_id=ticket.ticket_id,
                    created=created,
                    replied=local_date_time(replies[-1]["time"]),
                    reply=replies[-1]["text"],  # not text=: that would replace the whole response
                )
                return []
            now = datetime.now(timezone.utc)
            reply_by = SupportAvailability.from_config(
                read_support_config(), datetime.fromisoformat(ticket.created_at)
            ).reply_by
        except Exception:  # the store (or support.yml) unreadable: say so, nothing is changed
            logger.exception("Ticket status for %s not readable", tracker.sender_id)
            dispatcher.utter_message(response="utter_ticket_status_failed")
            return []
        if reply_by is not None and reply_by < now:
            dispatcher.utter_message(response="utter_ticket_open_overdue", ticket_id=ticket.ticket_id, created=created)
        else:
            promise = f"in der Regel bis {german_time(reply_by, now)}" if reply_by else NO_TIME_FRAME
            dispatcher.utter_message(
                response="utter_ticket_open", ticket_id=ticket.ticket_id, created=created, reply_by=promise
            )
        return []


# Transcripts one ticket's address gets at most: the address was typed by an anonymous
# visitor, so the bot must not become a way to send mail to it again and again.
MAX_TRANSCRIPTS = 3


class ActionSendTranscript(Action):
    """„Gesprächsverlauf per E-Mail“: the conversation, as the customer saw it, to the e-mail
    address of the conversation's ticket (given and confirmed in the escalation form, or passed
    by an authenticated integration), through the outbox like every other mail."""

    def name(self) -> str:
        return "action_send_transcript"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        try:
            ticket = ticket_store().latest_ticket_for(tracker.sender_id)
            email = (ticket.contact.get("email") if ticket else None) or None
            if email is None:
                dispatcher.utter_message(response="utter_transcript_needs_email")
                return []
            if not load_config().mails_customers:
                dispatcher.utter_message(response="utter_transcript_unavailable")
                return []
            number = ticket_store().queue_transcript(ticket, customer_transcript(tracker.events), MAX_TRANSCRIPTS)
        except Exception:  # the store is down: say so, the conversation goes on
            logger.exception("Transcript for %s could not be queued", tracker.sender_id)
            dispatcher.utter_message(response="utter_transcript_unavailable")
            return []
        if number is None:
            dispatcher.utter_message(response="utter_transcript_limit")
        else:
            dispatcher.utter_message(response="utter_transcript_sent", email=email)
        return []


class ActionDeclineHandoff(Action):
    """The customer does not want the question passed on."""

    def name(self) -> str:
        return "action_decline_handoff"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(response="utter_anything_else")
        return [SlotSet("handoff_offered", False)]
