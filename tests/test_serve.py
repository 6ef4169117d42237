"""`make run` (faqbot.server.serve): starts the servers and the page, prints how to use them, stops on Ctrl-C."""

from __future__ import annotations

import ipaddress
import re
import signal
import subprocess
import sys
import time

import requests
from conftest import free_port
from helpers import listening_addresses, texts

from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR


def test_serve_starts_all_servers_and_stops_them_on_ctrl_c(model_path, tmp_path):
    port, action_port, nlu_port, web_port = free_port(), free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "faqbot.server.serve",
            "--port",
            str(port),
            "--action-port",
            str(action_port),
            "--nlu-port",
            str(nlu_port),
            "--web-port",
            str(web_port),
            "--var-dir",
            str(tmp_path),
        ],
        cwd=PROJECT_DIR,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            assert line, "".join(output)  # the process ended before it was ready
            output.append(line)
            if "Strg-C beendet alle Server" in line:
                break
        printed = "".join(output)
        assert "de_core_news_sm" in printed
        assert f"http://localhost:{port}/webhooks/rest/webhook" in printed and "curl" in printed
        entry = load()["erhalte_rechnung"]
        token = re.search(r"Authorization: Bearer (\S+)'", printed).group(1)  # the printed example works
        reply = requests.post(
            f"http://127.0.0.1:{port}/webhooks/rest/webhook",
            json={"sender": "serve-test", "message": entry.question},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert texts(reply.json()) == [entry.answer]
        assert f"http://localhost:{web_port}/" in printed  # the help-centre page with the widget
        page = requests.get(f"http://localhost:{web_port}/", timeout=10)
        assert page.status_code == 200 and entry.question in page.text
        # Only the Rasa server's public port and the page are reachable from other machines;
        # the action server and the NLU server listen on loopback only.
        listening = listening_addresses(process.pid)
        assert {port for _, port in listening} >= {port, action_port, nlu_port, web_port}, listening
        public = {port for address, port in listening if not ipaddress.ip_address(address).is_loopback}
        assert public == {port, web_port}, listening
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 0
    for url in (
        f"http://127.0.0.1:{port}/",
        f"http://127.0.0.1:{action_port}/health",
        f"http://127.0.0.1:{nlu_port}/status",
        f"http://127.0.0.1:{web_port}/",
    ):
        try:
            requests.get(url, timeout=2)
            raise AssertionError(f"{url} still answers after Ctrl-C")
        except requests.ConnectionError:
            pass
    assert (tmp_path / "tracker.db").exists()


def test_server_logs_are_free_of_third_party_warnings(bot):
    """Known deprecation notices of Rasa's dependencies are filtered where they are raised
    (faqbot.core.known_warnings); anything else would show here. Rasa's own UserWarnings
    about a message (e.g. an unknown "/intent" payload a test sends) are not noise."""
    bot.send("kunde-log", "Wie erhalte ich eine Rechnung?")  # the tracker store's first use warns too
    for log in sorted(bot.servers.log_dir.glob("*.log")):
        warnings = re.findall(r"(\S+\.py):\d+: (\w+Warning): (.*)", log.read_text(errors="replace"))
        noise = [warning for warning in warnings if not (warning[1] == "UserWarning" and "/rasa/" in warning[0])]
        assert not noise, f"{log.name}: {noise}"
