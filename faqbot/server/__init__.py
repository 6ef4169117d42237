"""What the Rasa server and the action server load at run time, and ``make run``'s runner."""

from faqbot.core import shared_secrets
from faqbot.core.startup import prepare_process

prepare_process()  # before any server module imports Rasa
# The servers authenticate each other with these (faqbot/core/shared_secrets.py).
shared_secrets.ensure_environment()
