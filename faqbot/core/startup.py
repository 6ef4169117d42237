"""What every process of the project sets before it imports Rasa."""

from __future__ import annotations

import os

from faqbot.core.known_warnings import ignore_known_warnings


def prepare_process() -> None:
    # Rasa's telemetry sends usage data and crash reports to Rasa's servers: off unless the
    # operator turns it on (RASA_TELEMETRY_ENABLED=true). No network at run time.
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    # Its dependencies' deprecation notices would fill every start-up log and tool output.
    ignore_known_warnings()
