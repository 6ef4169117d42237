"""Handing the customer to the support team: contact details first, then the handoff.

``escalation_form`` asks an anonymous visitor for what the support team needs (a short
description if the bot has no question yet, an e-mail address, its confirmation) and
skips what the channel already passed (REST metadata ``customer.email``) or what an
open ticket already has. ``handoff_form`` keeps the conversation with the support team
after the ticket exists: every further message is appended to the ticket, until the
customer asks for the bot again (``back_to_bot``) or the support team closes the ticket.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from rasa_sdk import Action, FormValidationAction, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions import actions as bot  # the module, for its shared ticket store and knowledge
from faqbot.core.intents import faq_id_for
from faqbot.core.knowledge import FaqEntry, KnowledgeError
from faqbot.core.text import has_word

logger = logging.getLogger(__name__)

EMAIL_CANDIDATE = re.compile(r"[^\s<>()\[\],;:\"']+@[^\s<>()\[\],;:\"']+")
# What the support side sends into the conversation when it closes the ticket
# (faqbot/server/channels/support.py): the bot tells the customer and answers again.
CLOSED_BY_SUPPORT = "EXTERNAL: back_to_bot"
# Asked for an e-mail address, the customer asks an FAQ question instead: answered only
# when the NLU is this sure (the FallbackClassifier threshold would let more through).
FAQ_INSTEAD_MIN_CONFIDENCE = 0.8


def is_button(value: Any) -> bool:
    """A button payload such as "/human_handoff": a click, not something typed."""
    return str(value or "").startswith("/")


def email_in(text: Any) -> str | None:
    """The e-mail address in the customer's message, normalised, or None if it has
    none or only an invalid one (no DNS lookup: no network at run time)."""
    match = EMAIL_CANDIDATE.search(str(text or ""))
    if not match:
        return None
    try:
        return validate_email(match.group(0).rstrip("."), check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def email_from_channel(tracker: Tracker) -> str | None:
    """An e-mail address the integration passed in the message metadata."""
    email = bot.customer_contact(tracker, include_form=False).get("email")
    return email_in(email) if email else None


def faq_asked_instead(tracker: Tracker) -> FaqEntry | None:
    """The FAQ entry if the latest message is confidently an FAQ question."""
    intent = tracker.latest_message.get("intent") or {}
    faq_id = faq_id_for(intent.get("name"))
    if not faq_id or float(intent.get("confidence") or 0) < FAQ_INSTEAD_MIN_CONFIDENCE:
        return None
    try:
        return bot.knowledge.get(faq_id)
    except KnowledgeError:
        return None


class ValidateEscalationForm(FormValidationAction):
    def name(self) -> str:
        return "validate_escalation_form"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        events = await super().run(dispatcher, tracker, domain)
        if tracker.get_slot("handoff_offered"):  # the offer is being answered by this form
            events.insert(0, SlotSet("handoff_offered", False))
        return events

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        try:
            if bot.ticket_store().open_ticket_for(tracker.sender_id):
                return []  # action_escalate repeats the existing ticket's number
        except Exception:  # store down: ask as usual; action_escalate then apologises
            logger.exception("Ticket store not readable for %s", tracker.sender_id)
        needed = []
        if not bot.customer_question(tracker):
            needed.append("problem_description")
        if not email_from_channel(tracker):
            needed += ["customer_email", "contact_confirmed"]
        return needed

    def validate_problem_description(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if is_button(value):  # e.g. the handoff button clicked twice: just ask again
            return {"problem_description": None}
        if not has_word(str(value or "")):
            dispatcher.utter_message(response="utter_ask_for_words")
            return {"problem_description": None}
        return {"problem_description": str(value).strip()}

    def validate_customer_email(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        email = email_in(value)
        if email or is_button(value):
            return {"customer_email": email}
        faq = faq_asked_instead(tracker)
        if faq:  # a clear FAQ question instead of an address: answer it, then ask again
            bot.send_faq_answer(dispatcher, faq, tracker.latest_message["intent"]["confidence"])
        else:
            dispatcher.utter_message(response="utter_invalid_email")
        return {"customer_email": None}

    def validate_contact_confirmed(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        if value is True:
            return {"contact_confirmed": True}
        if value is False:  # "Nein, korrigieren": ask for the address again
            return {"customer_email": None, "contact_confirmed": None}
        corrected = email_in(value)  # the customer typed the right address instead
        if corrected:
            return {"customer_email": corrected, "contact_confirmed": None}
        dispatcher.utter_message(response="utter_answer_yes_or_no")
        return {"contact_confirmed": None}


class ActionCancelEscalation(Action):
    """The customer does not want to give contact details after all."""

    def name(self) -> str:
        return "action_cancel_escalation"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        dispatcher.utter_message(response="utter_escalation_cancelled")
        return [SlotSet(slot, None) for slot in ("problem_description", "customer_email", "contact_confirmed")] + [
            SlotSet("handoff_offered", False)
        ]


class ValidateHandoffForm(FormValidationAction):
    """Each message of a handed-off customer goes to the ticket, not to the NLU's answer."""

    def name(self) -> str:
        return "validate_handoff_form"

    async def required_slots(
        self, domain_slots: list[str], dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> list[str]:
        return domain_slots if tracker.get_slot("handed_off") else []

    def validate_handoff_message(
        self, value: Any, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict
    ) -> dict[str, Any]:
        ticket_id = tracker.get_slot("ticket_id")
        if is_button(value):  # an old button clicked again: nothing for the support team
            if tracker.get_intent_of_latest_message() == "human_handoff":
                bot.send_ticket_number(dispatcher, "utter_escalated_again", ticket_id)
            else:
                dispatcher.utter_message(response="utter_handoff_started")
            return {"handoff_message": None}
        try:
            bot.ticket_store().append_message(ticket_id, str(value), bot.delivery_targets())
        except LookupError:  # closed by the support team in the meantime
            dispatcher.utter_message(response="utter_ticket_closed", ticket_id=ticket_id)
            return {"handoff_message": None, "handed_off": False, "ticket_id": None}
        except Exception:
            logger.exception("Message for ticket %s could not be stored", ticket_id)
            dispatcher.utter_message(response="utter_handoff_message_failed")
            return {"handoff_message": None}
        dispatcher.utter_message(response="utter_handoff_message_added", ticket_id=ticket_id)
        return {"handoff_message": None}  # stays empty: the form keeps listening


class ActionAskHandoffMessage(Action):
    """Explain the handoff once, when it starts; later messages are acknowledged by
    the validation above, so asking again would only repeat it."""

    def name(self) -> str:
        return "action_ask_handoff_message"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        for event in reversed(tracker.events):
            if event.get("event") == "user":
                return []  # the form is already running
            if event.get("event") == "active_loop" and event.get("name") == "handoff_form":
                dispatcher.utter_message(response="utter_handoff_started")
                return []
        return []


class ActionBackToBot(Action):
    """End the handoff: the customer wants the bot again, or the support team closed the
    ticket (then the support API sends ``EXTERNAL: back_to_bot``)."""

    def name(self) -> str:
        return "action_back_to_bot"

    def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]) -> list[EventType]:
        if (tracker.latest_message.get("text") or "").startswith(CLOSED_BY_SUPPORT):
            dispatcher.utter_message(response="utter_ticket_closed", ticket_id=tracker.get_slot("ticket_id"))
            try:
                ticket = bot.ticket_store().latest_ticket_for(tracker.sender_id)
            except Exception:  # the closure was told; the resolution also went by mail if possible
                logger.exception("Resolution of the closed ticket of %s not readable", tracker.sender_id)
                ticket = None
            if ticket is not None and ticket.status == "closed" and ticket.resolution:
                dispatcher.utter_message(
                    response="utter_ticket_resolution", ticket_id=ticket.ticket_id, resolution=ticket.resolution
                )
        elif tracker.get_slot("handed_off"):
            dispatcher.utter_message(response="utter_back_to_bot", ticket_id=tracker.get_slot("ticket_id"))
        else:
            dispatcher.utter_message(response="utter_how_can_i_help")
        return [SlotSet("handed_off", False), SlotSet("ticket_id", None)]
