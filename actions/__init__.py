"""Custom actions of the FAQ bot, served by the rasa-sdk action server."""
import logging

from faqbot.spacy_model import warn_if_standin

# The action server imports this package at start-up: say loudly if the spaCy model
# behind the bot is the offline stand-in.
warn_if_standin(logging.getLogger(__name__).warning)
