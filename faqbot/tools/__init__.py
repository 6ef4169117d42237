"""Offline tools for trainers and developers; they never import the actions."""

from faqbot.core.known_warnings import ignore_known_warnings

# Before any tool imports Rasa: trainers cannot act on its dependencies' deprecation notices.
ignore_known_warnings()
