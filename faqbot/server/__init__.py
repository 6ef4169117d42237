"""What the Rasa server and the action server load at run time, and ``make run``'s runner."""

from faqbot.core import encryption, shared_secrets
from faqbot.core.startup import prepare_process

prepare_process()  # before any server module imports Rasa
# The servers authenticate each other with these (faqbot/core/shared_secrets.py), and
# encrypt what they store with FAQBOT_DATA_KEYS: unusable keys stop the start.
shared_secrets.ensure_environment()
encryption.check()
