"""`make run` (faqbot.server.serve): starts the servers and the page, prints how to use them, stops on
Ctrl-C or SIGTERM after answering what is in flight."""

from __future__ import annotations

import ipaddress
import json
import re
import signal
import socket
import subprocess
import sys
import time

import requests
from conftest import free_port
from helpers import listening_addresses, texts

from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR


def request_in_flight(port: int, token: str, sender: str, question: str) -> tuple[socket.socket, bytes]:
    """A REST request whose body has only begun to arrive; returns the socket and the rest of the body."""
    body = json.dumps({"sender": sender, "message": question}).encode("utf-8")
    head = (
        "POST /webhooks/rest/webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    connection = socket.create_connection(("127.0.0.1", port), timeout=60)
    connection.sendall(head.encode("ascii") + body[:10])
    return connection, body[10:]


def refuses_connections(port: int, timeout: float = 30) -> None:
    """Until the server no longer accepts connections (it drains what it has)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except ConnectionRefusedError:
            return
        assert time.monotonic() < deadline, f"port {port} still accepts connections"
        time.sleep(0.1)


def http_reply(connection: socket.socket) -> tuple[int, list]:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_serve_starts_all_servers_and_drains_them_on_sigterm(model_path, tmp_path):
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
    output, slow = [], None
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
        # A request in flight when serve is told to stop is still answered, with the action
        # and NLU servers it needs: they are stopped after the Rasa server.
        slow, rest = request_in_flight(port, token, "serve-drain", entry.question)
    finally:
        process.send_signal(signal.SIGTERM)
        if slow is None:  # failed before
            process.wait(timeout=90)
    try:
        refuses_connections(port)
        slow.sendall(rest)
        status, replies = http_reply(slow)
        assert status == 200 and texts(replies) == [entry.answer]
    finally:
        slow.close()
        process.wait(timeout=90)
    assert process.returncode == 0
    for url in (
        f"http://127.0.0.1:{port}/",
        f"http://127.0.0.1:{action_port}/health",
        f"http://127.0.0.1:{nlu_port}/status",
        f"http://127.0.0.1:{web_port}/",
    ):
        try:
            requests.get(url, timeout=2)
            raise AssertionError(f"{url} still answers after SIGTERM")
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
