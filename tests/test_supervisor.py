"""BotServers' supervision (``make run``, faqbot.server.serve): a server that ends is started
again after a growing wait; stopping drains the Rasa server before the servers it calls.

The first tests supervise small Python processes (the waits shortened); the last one kills
the real action server of the running bot.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from conftest import Bot, bot_servers, running
from helpers import texts

from faqbot.core.knowledge import load
from faqbot.server import serve
from faqbot.server.serve import BotServers


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def starts_logged(path: Path) -> str:
    """A child that notes the time of each of its starts in ``path``."""
    return f"import time; open({str(path)!r}, 'a').write(f'{{time.monotonic()}}\\n')\n"


def start_times(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().split()] if path.exists() else []


def waits_between(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


@pytest.fixture
def servers(tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "RESTART_FIRST_WAIT_S", 0.2)
    monkeypatch.setattr(serve, "RESTART_MAX_WAIT_S", 0.8)
    # No model is loaded: only the supervision of BotServers is used.
    servers = BotServers(var_dir=tmp_path, model=tmp_path / "kein-modell.tar.gz", log_dir=tmp_path / "logs")
    yield servers
    servers.stop()


def supervising(servers: BotServers, seconds: float) -> None:
    until = threading.Event()
    thread = threading.Thread(target=servers.supervise, args=(until, 0.02))
    thread.start()
    time.sleep(seconds)
    until.set()
    thread.join()


def test_a_crashing_server_is_restarted_with_doubling_waits(servers, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faqbot.server.serve")
    starts = tmp_path / "starts"
    servers._spawn("actions", python(starts_logged(starts) + "raise SystemExit(3)"))
    supervising(servers, 3.2)
    waits = waits_between(start_times(starts))
    assert len(waits) >= 4, waits
    # 0.2, 0.4, 0.8, then 0.8 at most (each plus the start of Python and a look every 0.02 s)
    for wait, expected in zip(waits, [0.2, 0.4, 0.8, 0.8, 0.8], strict=False):
        assert expected <= wait < expected + 0.6, waits
    crashed = [r.getMessage() for r in caplog.records if "unerwartet beendet" in r.getMessage()]
    assert crashed[0].startswith("Action-Server (PID ") and "(Code 3); Neustart in " in crashed[0]
    assert crashed[0].endswith("(1. Ausfall in Folge).") and crashed[1].endswith("(2. Ausfall in Folge).")
    assert any(r.getMessage().startswith("Action-Server neu gestartet (PID ") for r in caplog.records)


def test_the_wait_starts_over_after_a_stable_run(servers, tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "STABLE_AFTER_S", 0.3)
    starts = tmp_path / "starts"
    servers._spawn("actions", python(starts_logged(starts) + "time.sleep(0.4)"))  # ends after a stable run
    supervising(servers, 2.8)
    waits = waits_between(start_times(starts))
    assert len(waits) >= 3 and all(wait < 0.4 + 0.2 + 0.5 for wait in waits), waits


def test_stop_drains_the_front_first_and_kills_what_does_not_end(servers, tmp_path, monkeypatch):
    monkeypatch.setattr(serve, "KILL_AFTER_DRAIN_S", 0.5)
    servers.env["SANIC_GRACEFUL_SHUTDOWN_TIMEOUT"] = "0.5"
    events = tmp_path / "events"
    note = f"def note(what): open({str(events)!r}, 'a').write(what + '\\n')\n"
    # The Rasa server finishes a request for 0.5 s after SIGTERM; the action server notes when it is told to stop.
    rasa = "import signal, sys, time\n" + note
    rasa += "def drain(*_): time.sleep(0.5); note('rasa beendet'); sys.exit(0)\n"
    rasa += "signal.signal(signal.SIGTERM, drain)\nnote('rasa läuft')\ntime.sleep(60)\n"
    actions = "import signal, sys, time\n" + note
    actions += "signal.signal(signal.SIGTERM, lambda *_: (note('actions SIGTERM'), sys.exit(0)))\ntime.sleep(60)\n"
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    servers._spawn("actions", python(actions))
    servers._spawn("rasa", python(rasa))
    servers._spawn("nlu", python(stubborn))
    nlu = servers.process("nlu")
    deadline = time.monotonic() + 10
    while "rasa läuft" not in (events.read_text() if events.exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    started = time.monotonic()
    servers.stop()
    assert time.monotonic() - started < 0.5 + 1.0 + 1.0 + 1.0  # rasa's drain, then the back ends' bound
    assert events.read_text().split("\n")[1:3] == ["rasa beendet", "actions SIGTERM"]
    assert nlu.returncode == -signal.SIGKILL
    assert servers.processes == []


def test_nothing_is_restarted_once_stop_began(servers, tmp_path):
    starts = tmp_path / "starts"
    servers._spawn("actions", python(starts_logged(starts) + "raise SystemExit(1)"))
    servers.start_supervising()
    time.sleep(0.4)
    servers.stop()
    count = len(start_times(starts))
    time.sleep(0.6)
    assert len(start_times(starts)) == count and servers.processes == []


def test_a_killed_action_server_is_restarted_and_the_bot_answers_again(model_path, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="faqbot.server.serve")
    entry = load()["erhalte_rechnung"]
    with running(bot_servers(model_path, tmp_path)) as servers:
        servers.start_supervising()
        bot = Bot(servers)
        killed = servers.process("actions")
        os.killpg(killed.pid, signal.SIGKILL)  # as a crash would
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "action server not restarted"
            restarted = servers.process("actions")
            try:
                if restarted is not killed and requests.get(f"{servers.action_url}/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert texts(bot.send("kunde-neustart", entry.question)) == [entry.answer]
        assert bot.alive()
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith(f"Action-Server (PID {killed.pid}) wurde unerwartet beendet (Code -9)") for m in messages)
