"""What the Rasa server and the action server load at run time, and ``make run``'s runner."""

from faqbot.core.startup import prepare_process

prepare_process()  # before any server module imports Rasa
