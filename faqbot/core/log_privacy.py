"""No customer texts or contact data in the servers' logs (README, "Datenschutz").

Rasa 3.6 logs a customer's message whenever understanding fails: the structured events
``http.parse.text.failure``/``.exception`` (the NLU server refused or is down),
``rest.message.received.failure``/``.timeout`` and ``message.parsing.failed`` carry it as
``text``/``user_text``, and its UserWarning for an unknown ``/intent`` payload quotes the
whole message. At DEBUG it logs parse data, slot values and events. ``install()`` (called by
``faqbot.core.startup.prepare_process`` in every process of the project) makes every log
record go through ``PrivacyFilter`` where it is created (``logging.setLogRecordFactory``):
that covers every logger and handler, also the ones Rasa, coloredlogs and Sanic set up
after our import, without touching them. Warnings printed to stderr go through
``warnings.formatwarning``, which ``install()`` wraps too. The filter

* replaces the values of text-bearing keys of Rasa's structlog events (rendered as a JSON
  line, or by structlog's console renderer in a terminal) with ``[Text ausgeblendet]``;
* replaces the text quoted by Rasa's "Failed to parse arguments in line '...'" warnings;
* masks contact data anywhere else in a message or traceback (``faqbot.core.masking.mask``).

``FAQBOT_LOG_TEXTS=1`` switches these three off, for debugging on a test system (a warning
says so at start). Always removed, as they hold secrets (the NLU server's token): the local
variables structlog adds to each traceback frame, and the query of any URL in a message.
The filter never raises: should it fail, the record keeps its level and logger but its
message becomes ``[Logzeile ausgeblendet: Datenschutzfilter fehlgeschlagen]``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import warnings
from typing import Any

from faqbot.core.masking import mask

SWITCH = "FAQBOT_LOG_TEXTS"
MARKER = "[Text ausgeblendet]"
FAILED = "[Logzeile ausgeblendet: Datenschutzfilter fehlgeschlagen]"
LOCALS_MARKER = "[Variablen ausgeblendet]"
QUERY_MARKER = "[ausgeblendet]"

# Keys of Rasa 3.6's structlog events that carry what a customer or the bot wrote, or
# structures that contain it: Rasa's own list for its anonymisation plugin
# (rasa.utils.log_utils._anonymizer) and the parse data, tracker and metadata keys.
TEXT_KEYS = frozenset(
    {
        "text",
        "response_text",
        "user_text",
        "user_message",
        "message",
        "json_message",
        "response",
        "body",
        "request_body",
        "metadata",
        "parse_data",
        "parse_data_text",
        "parse_data_entities",
        "tracker",
        "tracker_latest_message",
        "tracker_states",
        "slot_values",
        "slot_candidates",
        "prefilled_slots",
        "prediction_events",
        "rasa_event",
        "rasa_events",
        "states",
        "current_states",
        "old_states",
        "successes",
        "entity",
        "current_entity",
        "next_entity",
        "token_text",
    }
)
_KEYS = "|".join(sorted(TEXT_KEYS))
# structlog's ConsoleRenderer (Rasa's choice when stderr is a terminal): key in cyan, value
# in magenta, each followed by a reset; a value ends before the next key, a line break
# (the traceback) or the end.
_CONSOLE_VALUE = re.compile(rf"(\x1b\[36m(?:{_KEYS})\x1b\[0m=\x1b\[35m).*?(\x1b\[0m)(?= \x1b\[36m|\n|$)", re.S)
# rasa.shared.core.training_data.story_reader.yaml_story_reader: every warning about a
# message starting with "/" begins so, then quotes the message and parts of it.
_PAYLOAD_WARNING = "Failed to parse arguments in line "
_PAYLOAD_QUOTED = re.compile(rf"({re.escape(_PAYLOAD_WARNING)})(?!{re.escape(MARKER)}).*", re.S)
_URL_QUERY = re.compile(r"(\b(?:https?|wss?)://[^\s?#'\"<>\\]*)\?[^\s#'\"<>\\)\]}]*", re.I)

_inside = threading.local()


def texts_allowed() -> bool:
    """The debug switch: customer texts and contact data stay in the logs."""
    return os.environ.get(SWITCH, "").strip() == "1"


def _clean(text: str, keep_texts: bool) -> str:
    text = _URL_QUERY.sub(rf"\1?{QUERY_MARKER}", text)
    if keep_texts:
        return text
    text = _PAYLOAD_QUOTED.sub(rf"\1{MARKER}", text)
    return mask(_CONSOLE_VALUE.sub(rf"\1{MARKER}\2", text))


def _event(value: Any, keep_texts: bool) -> Any:
    """A structlog event (parsed JSON), its text-bearing values replaced, its strings cleaned."""
    if isinstance(value, str):
        return _clean(value, keep_texts)
    if isinstance(value, list):
        return [_event(item, keep_texts) for item in value]
    if not isinstance(value, dict):
        return value
    cleaned = {}
    for key, item in value.items():
        if key == "locals":  # structlog.processors.dict_tracebacks: each frame's variables
            cleaned[key] = LOCALS_MARKER
        elif key in TEXT_KEYS and not keep_texts and item not in (None, "", [], {}):
            cleaned[key] = MARKER
        else:
            cleaned[key] = _event(item, keep_texts)
    return cleaned


def redact(message: str, keep_texts: bool = False) -> str:
    """A log message without customer texts and contact data (unless keep_texts)."""
    stripped = message.strip()
    if stripped.startswith("{") and stripped.endswith("}"):  # structlog's JSONRenderer
        try:
            data = json.loads(stripped)
        except ValueError:
            data = None
        if isinstance(data, dict) and "event" in data:
            return json.dumps(_event(data, keep_texts))  # as JSONRenderer does
    return _clean(message, keep_texts)


class PrivacyFilter(logging.Filter):
    """Rewrites a record's message (and traceback text) in place; lets every record pass."""

    def __init__(self, keep_texts: bool = False) -> None:
        super().__init__()
        self.keep_texts = keep_texts

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_inside, "active", False):
            # Logged while redacting another record: only mask() does that, with the name
            # of an exception type. Filtering it again could recurse without end.
            return True
        _inside.active = True
        try:
            record.msg, record.args = redact(record.getMessage(), self.keep_texts), ()
            if record.exc_info and not record.exc_text:
                # Formatted once here, as any Formatter would; Formatters reuse exc_text.
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info), self.keep_texts)
            request = getattr(record, "request", None)  # Sanic's access log: "GET <url>"
            if isinstance(request, str):
                record.request = redact(request, self.keep_texts)
        except Exception:
            record.msg, record.args = FAILED, ()
            record.exc_info, record.exc_text, record.stack_info = None, None, None
        finally:
            _inside.active = False
        return True


def format_warning(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
    """warnings.formatwarning, for every warning printed to stderr or logged: Python's own
    (Rasa's raise_warning wraps this one in turn), the message of an unknown "/intent"
    payload replaced, then redacted."""
    keep = _keep_texts if _installed else texts_allowed()
    try:
        if not keep and str(message).startswith(_PAYLOAD_WARNING):
            message = f"{_PAYLOAD_WARNING}{MARKER}: a message starting with '/' that Rasa could not read as an intent."
        return redact(_formatwarning(message, category, filename, lineno, line), keep)
    except Exception:
        return f"{FAILED}\n"


_formatwarning = warnings.formatwarning  # replaced by install()
_installed = False
_keep_texts = False


def install() -> None:
    """Every log record of this process through PrivacyFilter, every warning through
    format_warning. Idempotent; reads FAQBOT_LOG_TEXTS once."""
    global _installed, _keep_texts, _formatwarning
    if _installed:
        return
    _installed, _keep_texts = True, texts_allowed()
    privacy = PrivacyFilter(keep_texts=_keep_texts)
    make_record = logging.getLogRecordFactory()

    def record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        privacy.filter(record)
        return record

    logging.setLogRecordFactory(record_factory)
    if warnings.formatwarning is not format_warning:
        _formatwarning = warnings.formatwarning
        warnings.formatwarning = format_warning
    if _keep_texts:
        logging.getLogger(__name__).warning(
            "%s=1: Die Logs enthalten Nachrichtentexte und Kontaktdaten der Kunden. "
            "Nur zur Fehlersuche auf einem Testsystem, nie im Betrieb.",
            SWITCH,
        )
