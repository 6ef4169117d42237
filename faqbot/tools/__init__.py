"""Offline tools for trainers and developers; they never import the actions."""

from faqbot.core.startup import prepare_process

prepare_process()  # before any tool imports Rasa
