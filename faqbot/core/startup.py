"""What every process of the project sets before it imports Rasa."""

from __future__ import annotations

import os

from faqbot.core import log_privacy
from faqbot.core.known_warnings import ignore_known_warnings


def prepare_process() -> None:
    # Rasa's telemetry sends usage data and crash reports to Rasa's servers: off unless the
    # operator turns it on (RASA_TELEMETRY_ENABLED=true). No network at run time.
    os.environ.setdefault("RASA_TELEMETRY_ENABLED", "false")
    # Its dependencies' deprecation notices would fill every start-up log and tool output.
    ignore_known_warnings()
    # No customer texts or contact data in any log line or warning, also in those of the
    # logging Rasa and Sanic configure later (unless FAQBOT_LOG_TEXTS=1).
    log_privacy.install()
