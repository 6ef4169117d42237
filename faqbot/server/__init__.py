"""What the Rasa server and the action server load at run time, and ``make run``'s runner."""

from faqbot.core.known_warnings import ignore_known_warnings

# Before any server module imports Rasa: its dependencies' deprecation notices would fill
# every start-up log.
ignore_known_warnings()
