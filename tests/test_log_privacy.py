"""No customer texts or contact data in the logs (faqbot.core.log_privacy; README, "Datenschutz").

The filter on records as Rasa, structlog and Sanic make them; real processes that set up
logging as Rasa's CLI does (the project imported before it, as the servers do, and after it,
as plain `rasa run` does); and the real servers, provoked into every path that quoted a
customer's message: a message nothing understands, unknown "/intent" payloads, a handoff
with an e-mail address, the NLU server gone.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import uuid

import pytest
import structlog
from conftest import Bot, bot_servers, running
from rasa.utils.log_utils import HumanConsoleRenderer

from faqbot.core import log_privacy
from faqbot.core.log_privacy import FAILED, LOCALS_MARKER, MARKER, PrivacyFilter, format_warning, redact
from faqbot.core.paths import PROJECT_DIR

WORD = "Zwiebelkuchenwort"  # in no training phrasing, no answer, no Rasa message
EMAIL = "kundin.privat@example.org"
CARD = "4111 1111 1111 1111"  # a test Visa number (passes the Luhn check)
PHONE = "0171 2345678"
TEXT = f"{WORD}: meine Karte {CARD} wurde doppelt belastet, bitte an {EMAIL} oder {PHONE}"
SECRET = "nlu-token-" + "x" * 32


def traces(log: str, word: str = WORD) -> list[str]:
    """What of TEXT (or the secret) is in a log."""
    pieces = [word, EMAIL, "kundin.privat", CARD, CARD.replace(" ", ""), "1111 1111", PHONE, SECRET]
    return [piece for piece in pieces if piece and piece in log]


def record(msg: object, *args: object, name: str = "rasa.core.http_interpreter", exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, args, exc_info)


def filtered(item: logging.LogRecord, keep_texts: bool = False) -> logging.LogRecord:
    assert PrivacyFilter(keep_texts).filter(item) is True  # never drops a record
    return item


def structlog_line(event: str, **fields: object) -> str:
    """An event as Rasa 3.6 renders it when stderr is no terminal (rasa.utils.log_utils)."""
    event_dict = {**fields, "event": event, "level": "error"}
    event_dict = structlog.processors.dict_tracebacks(None, "error", event_dict)
    return structlog.processors.JSONRenderer()(None, "error", event_dict)


# --- the filter ---


def test_structlog_events_keep_their_name_and_lose_the_customers_text():
    line = structlog_line("http.parse.text.failure", text=TEXT, response_text=f'{{"error": "{TEXT}"}}', status=401)
    message = filtered(record(line)).getMessage()
    assert json.loads(message) == {
        "text": MARKER,
        "response_text": MARKER,
        "status": 401,
        "event": "http.parse.text.failure",
        "level": "error",
    }


def test_a_structlog_traceback_keeps_its_frames_without_their_variables():
    params = {"token": SECRET, "text": TEXT}  # noqa: F841 (rasa.core.http_interpreter's, when the NLU server is down)
    try:
        raise ConnectionError(f"Cannot connect to host 127.0.0.1:5006 for {EMAIL}")
    except ConnectionError:
        line = structlog_line("http.parse.text.exception", text=TEXT, exc_info=True)
    assert SECRET in line and "params" in line  # structlog shows every frame's local variables
    event = json.loads(filtered(record(line)).getMessage())
    assert not traces(json.dumps(event))
    (exception,) = event["exception"]
    assert exception["exc_type"] == "ConnectionError"
    assert exception["exc_value"] == "Cannot connect to host 127.0.0.1:5006 for [E-MAIL]"
    assert [frame["name"] for frame in exception["frames"]] == [sys._getframe().f_code.co_name]
    assert exception["frames"][0]["locals"] == LOCALS_MARKER


def test_structlog_events_rendered_for_a_terminal_lose_the_text_too():
    line = HumanConsoleRenderer()(
        None, "error", {"event": "rest.message.received.failure", "text": TEXT, "sender": "k1"}
    )
    assert TEXT in line
    message = filtered(record(line)).getMessage()
    assert not traces(message)
    assert "rest.message.received.failure" in message and MARKER in message and "k1" in message


def test_contact_data_in_any_message_and_traceback_is_masked_ids_stay():
    try:
        raise ValueError(f"Zustellung an {EMAIL} abgelehnt")
    except ValueError:
        item = record(
            "Nachricht von %s: %s", "kunde-4711", TEXT, name="faqbot.server.channels.rest", exc_info=sys.exc_info()
        )
    item = filtered(item)
    message = item.getMessage()
    # A free text cannot be told from the project's own words: contact data is masked in it.
    masked = f"{WORD}: meine Karte [KARTE] wurde doppelt belastet, bitte an [E-MAIL] oder [TELEFON]"
    assert message == f"Nachricht von kunde-4711: {masked}"
    assert not traces(item.exc_text)
    assert "ValueError: Zustellung an [E-MAIL] abgelehnt" in logging.Formatter().format(item)


def test_rasas_warning_about_an_unknown_intent_payload_loses_the_message():
    # rasa.shared.core.training_data.story_reader.yaml_story_reader, for "/intent_payload <text>"
    warning = UserWarning(
        f"Failed to parse arguments in line '/intent_payload {TEXT}'. Expected the intent to be one of "
        f"[['affirm', 'greet']] but found intent_payload {TEXT}.Continuing with given line as user text."
    )
    printed = format_warning(warning, UserWarning, "/x/rasa/shared/utils/io.py", 100)
    assert printed.startswith("/x/rasa/shared/utils/io.py:100: UserWarning: Failed to parse arguments in line ")
    assert MARKER in printed and printed.endswith("\n") and not traces(printed)
    # The same warning formatted by Python alone and logged (logging.captureWarnings).
    python_format = f"/x/rasa/shared/utils/io.py:100: UserWarning: {warning}\n"
    logged = filtered(record(python_format, name="py.warnings")).getMessage()
    assert logged == f"/x/rasa/shared/utils/io.py:100: UserWarning: Failed to parse arguments in line {MARKER}"


def test_urls_lose_their_query_also_in_sanics_access_log():
    item = record("", name="sanic.access")
    item.request = f"GET http://127.0.0.1:5006/status?token={SECRET}"  # sanic/http.py: extra={"request": ...}
    assert filtered(item).request == "GET http://127.0.0.1:5006/status?[ausgeblendet]"
    assert redact(f"Fehler bei 'http://127.0.0.1:5055/webhook?token={SECRET}'") == (
        "Fehler bei 'http://127.0.0.1:5055/webhook?[ausgeblendet]'"
    )


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("kaputt")


@pytest.mark.parametrize("item", [record("%d Tickets", "viele"), record(Unprintable()), record("%s %s", TEXT)])
def test_a_record_the_filter_cannot_read_passes_with_a_fixed_message(item):
    item.exc_info = (ValueError, ValueError(TEXT), None)
    item = filtered(item)
    assert item.getMessage() == FAILED and item.levelno == logging.ERROR and item.exc_info is None
    assert logging.Formatter("%(levelname)s %(name)s %(message)s").format(item) == f"ERROR {item.name} {FAILED}"


def test_the_debug_switch_keeps_texts_but_never_secrets(monkeypatch):
    monkeypatch.delenv("FAQBOT_LOG_TEXTS", raising=False)
    assert not log_privacy.texts_allowed()
    monkeypatch.setenv("FAQBOT_LOG_TEXTS", "1")
    assert log_privacy.texts_allowed()
    token_in_frame = {"token": SECRET}  # noqa: F841 (a local variable of the frame below)
    try:
        raise ConnectionError("NLU-Server nicht erreichbar")
    except ConnectionError:
        line = structlog_line("http.parse.text.exception", text=TEXT, exc_info=True)
    assert SECRET in line
    event = json.loads(filtered(record(line), keep_texts=True).getMessage())
    assert event["text"] == TEXT and SECRET not in json.dumps(event)
    plain = filtered(record("Nachricht: %s (%s)", TEXT, f"http://x/?token={SECRET}"), keep_texts=True).getMessage()
    assert plain == f"Nachricht: {TEXT} (http://x/?[ausgeblendet])"


# --- real processes, logging set up by Rasa's own functions ---

SCRIPT = """
import logging, sys
order, text, secret, email = sys.argv[1:5]
if order == "project-first":
    import faqbot.server  # as the servers start: python -m faqbot.server.rasa_server / .action_server
import rasa.utils.io
from rasa.utils.common import configure_logging_and_warnings
from rasa.utils.log_utils import configure_structlog

# What rasa/__main__.py's main() does before it runs a command, in this order.
configure_logging_and_warnings(logging.INFO, None, warn_only_once=True, filter_repeated_logs=True)
rasa.utils.io.configure_colored_logging(logging.INFO)
configure_structlog(logging.INFO)
if order == "rasa-first":
    import faqbot.server  # as plain `rasa run`: when Rasa loads the project's channels

import structlog
from rasa.shared.core.domain import Domain
from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
from rasa.shared.nlu.training_data.message import Message

structlog.get_logger().error("http.parse.text.failure", text=text, response_text=text)
try:
    params = {"token": secret, "text": text}
    raise ConnectionError("NLU-Server nicht erreichbar")
except ConnectionError:
    structlog.get_logger().exception("http.parse.text.exception", text=text)
logging.getLogger("faqbot.core.delivery").warning("Zustellung an %s fehlgeschlagen", email)
domain = Domain.from_dict({"intents": ["greet"]})
YAMLStoryReader.unpack_regex_message(Message({"text": "/intent_payload " + text}), domain)
print("fertig", flush=True)
"""


def run_like_rasa(order: str, **env: str) -> str:
    environment = {key: value for key, value in os.environ.items() if key != "FAQBOT_LOG_TEXTS"}
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, order, TEXT, SECRET, EMAIL],
        cwd=PROJECT_DIR,
        env={**environment, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0 and "fertig" in run.stdout, run.stderr
    return run.stdout + run.stderr


@pytest.mark.parametrize("order", ["project-first", "rasa-first"])
def test_a_process_that_logs_like_rasa_logs_no_texts(order):
    output = run_like_rasa(order)
    assert not traces(output), output
    assert '"text": "[Text ausgeblendet]", "response_text": "[Text ausgeblendet]"' in output
    assert '"event": "http.parse.text.exception"' in output and LOCALS_MARKER in output
    assert "Zustellung an [E-MAIL] fehlgeschlagen" in output
    assert f"UserWarning: Failed to parse arguments in line {MARKER}" in output


def test_with_the_debug_switch_a_process_logs_texts_and_says_so_at_start():
    output = run_like_rasa("project-first", FAQBOT_LOG_TEXTS="1")
    assert "FAQBOT_LOG_TEXTS=1: Die Logs enthalten Nachrichtentexte und Kontaktdaten" in output
    assert json.dumps(TEXT) in output and f"Zustellung an {EMAIL} fehlgeschlagen" in output
    assert f"Failed to parse arguments in line '/intent_payload {TEXT}'" in output
    assert SECRET not in output


# --- the real servers, as `make run` starts them ---


@pytest.fixture(scope="module")
def servers(model_path, tmp_path_factory):
    # At DEBUG Rasa also logs parse data, slot values and events of every turn.
    with running(
        bot_servers(model_path, tmp_path_factory.mktemp("log_privacy"), env={"LOG_LEVEL": "DEBUG"})
    ) as started:
        yield started


def test_the_servers_logs_carry_no_customer_texts_or_contact_data(servers):
    bot = Bot(servers)
    word = f"{WORD}{uuid.uuid4().hex[:6]}"
    text = TEXT.replace(WORD, word)
    bot.send("kunde-log-1", text)  # understood by nothing: out of scope or „Meinten Sie …?“
    bot.send("kunde-log-2", f"/intent_payload {text}")  # no intent of the domain
    bot.send("kunde-log-3", f'/faq_erhalte_rechnung{{"email": "{EMAIL}"}} {word}')  # unknown entity, a rest
    for message in ("Ich möchte mit einem Mitarbeiter sprechen", f"{word}: Rechnung doppelt", EMAIL, "ja"):
        bot.send("kunde-log-4", message)  # a handoff: description, e-mail, confirmation
    nlu = servers.processes[2]
    os.killpg(nlu.pid, signal.SIGKILL)  # understanding fails from now on
    nlu.wait(timeout=30)
    bot.send("kunde-log-5", text)

    logs = {path.stem: path.read_text(errors="replace") for path in sorted(servers.log_dir.glob("*.log"))}
    assert sorted(logs) == ["actions", "nlu", "rasa"]
    for name, log in logs.items():
        assert not traces(log, word), f"{name}.log: {traces(log, word)}"
        assert servers.env["FAQBOT_NLU_TOKEN"] not in log, name
    # The paths were taken: their lines are there, without the text.
    assert '{"text": "[Text ausgeblendet]", "event": "http.parse.text.exception"' in logs["rasa"]
    assert '"parse_data_text": "[Text ausgeblendet]"' in logs["rasa"]  # DEBUG
    assert f"UserWarning: Failed to parse arguments in line {MARKER}" in logs["nlu"]
