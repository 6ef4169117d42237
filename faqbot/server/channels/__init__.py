"""Input channels of the Rasa server (credentials.yml): REST, Socket.IO, support API."""

import logging

from faqbot.core.spacy_model import warn_if_standin

# The Rasa server imports this package at start-up: say loudly if the spaCy model is
# the offline stand-in.
warn_if_standin(logging.getLogger(__name__).warning)
