"""Start the action server, the Rasa server and the NLU server together (``make run``).

    python -m faqbot.server.serve [--port 5005] [--action-port 5055] [--nlu-port 5006]
                           [--web-port 8080] [--cors ORIGIN ...]

Starts the action server, the Rasa server, Rasa's NLU-only server and the help-centre
page with the chat widget (faqbot.server.web). The NLU server (``rasa run --enable-api`` with
the same model, on 127.0.0.1 only) understands the messages for the Rasa server, which
it reaches through the ``nlu`` endpoint (Rasa's "NLU-only server" setup): NLU on one
core, dialogue on the other, ~40 % more messages per second (README, "Speed").
Ports default to Rasa's own (5005, 5055), 5006 for the NLU server and 8080 for the page;
FAQBOT_PORT, FAQBOT_ACTION_PORT, FAQBOT_NLU_PORT, FAQBOT_WEB_PORT, FAQBOT_CORS (allowed
origins, separated by spaces; default: the page's own origin) and FAQBOT_VAR_DIR
(conversations and tickets, default var/) set them too. Ctrl-C stops everything. The
tests start the bot through ``BotServers`` as well, so what they test is what ``make run``
runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ruamel.yaml import YAML

from faqbot.core import shared_secrets, spacy_model
from faqbot.core.models import model_path
from faqbot.core.paths import PROJECT_DIR, VAR_DIR
from faqbot.server.web import DEFAULT_PORT as DEFAULT_WEB_PORT
from faqbot.server.web import HelpCentre, origins

DEFAULT_PORT = 5005
DEFAULT_ACTION_PORT = 5055
DEFAULT_NLU_PORT = 5006
START_TIMEOUT_S = 120
# The REST integration `make run` sets up when none is configured, so a developer can try the
# REST channel at once (its token is printed at start; README, "Security").
DEV_INTEGRATION = "FAQBOT_REST_TOKEN_ENTWICKLUNG"


class BotServers:
    """The action server, the Rasa server and the NLU server as child processes (in this
    order in ``processes``), and the help-centre page (``web_port``) in a thread of this
    process."""

    def __init__(
        self,
        port: int = DEFAULT_PORT,
        action_port: int = DEFAULT_ACTION_PORT,
        cors: Sequence[str] | None = None,
        var_dir: Path = VAR_DIR,
        model: Path | None = None,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        web_port: int | None = None,
        nlu_port: int = DEFAULT_NLU_PORT,
        plain_rasa_actions: bool = False,
    ) -> None:
        self.port, self.action_port, self.web_port = port, action_port, web_port
        self.nlu_port = nlu_port
        # The action server as a plain Rasa user starts it (`rasa run actions`) instead of
        # through faqbot.server.action_server: both must deliver tickets.
        self.plain_rasa_actions = plain_rasa_actions
        # Browsers may talk to the bot only from the help-centre page (not "*").
        self.cors = list(cors or (origins(web_port) if web_port else []))
        self.var_dir = Path(var_dir)
        self.model = model or model_path()
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
        self.env.setdefault("FAQBOT_TICKET_DB", str(self.var_dir / "tickets.db"))
        self.env.setdefault("FAQBOT_REVIEW_DB", str(self.var_dir / "review.db"))
        if not any(name.startswith("FAQBOT_REST_TOKEN_") for name in self.env):
            self.env[DEV_INTEGRATION] = shared_secrets.local_secret(DEV_INTEGRATION)
        if self.cors:  # the socketio channel checks the origin itself (channels/socketio.py)
            self.env["FAQBOT_CORS"] = " ".join(self.cors)
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        self.web: HelpCentre | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_token(self) -> str:
        """A token of a REST integration of this run (the development one, if set up)."""
        names = sorted(name for name in self.env if name.startswith("FAQBOT_REST_TOKEN_"))
        return self.env[DEV_INTEGRATION if DEV_INTEGRATION in names else names[0]]

    @property
    def action_url(self) -> str:
        return f"http://127.0.0.1:{self.action_port}"

    @property
    def nlu_url(self) -> str:
        return f"http://127.0.0.1:{self.nlu_port}"

    def endpoints_file(self) -> Path:
        """endpoints.yml with this run's ports and var dir, and the NLU server."""
        yaml = YAML()
        endpoints = yaml.load((PROJECT_DIR / "endpoints.yml").read_text(encoding="utf-8"))
        endpoints["action_endpoint"]["url"] = f"{self.action_url}/webhook"
        endpoints["tracker_store"]["db"] = str(self.var_dir / "tracker.db")
        path = self.var_dir / "endpoints.yml"
        with path.open("w", encoding="utf-8") as handle:
            yaml.dump(endpoints, handle)
            # The secret stays in the environment: Rasa fills it in, but only in a value without
            # quotes, which ruamel does not promise once Rasa has configured it. So written as text.
            handle.write(f"nlu:\n  url: {self.nlu_url}\n  token: ${{FAQBOT_NLU_TOKEN}}\n")
        return path

    def nlu_server_file(self) -> Path:
        """Endpoints and credentials of the NLU server: none (no channels, stores, actions)."""
        path = self.var_dir / "nlu-server.yml"
        path.write_text(
            "# Rasa's NLU-only server (faqbot.server.serve): no channels, stores or actions.\n{}\n", encoding="utf-8"
        )
        return path

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        output = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            cwd=PROJECT_DIR,
            env=self.env,
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            start_new_session=True,
        )
        self.processes.append(process)
        return process

    def _actions_command(self) -> list[str]:
        if self.plain_rasa_actions:
            rasa = str(Path(sys.executable).with_name("rasa"))
            return [rasa, "run", "actions", "--actions", "actions", "--port", str(self.action_port)]
        return [sys.executable, "-m", "faqbot.server.action_server", "--port", str(self.action_port)]

    def restart_actions(self) -> None:
        """Kill the action server hard (as a crash would) and start it again."""
        old = self.processes[0]
        os.killpg(old.pid, signal.SIGKILL)
        old.wait(timeout=30)
        self._spawn("actions", self._actions_command())
        self.processes[0] = self.processes.pop()

    def start(self) -> BotServers:
        if not self.model.exists():
            raise SystemExit(f"Kein trainiertes Modell {self.model}: bitte zuerst `make train`.")
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("actions", self._actions_command())
        rasa_run = [sys.executable, "-m", "faqbot.server.rasa_server", "run", "--model", str(self.model)]
        self._spawn(
            "rasa",
            [
                *rasa_run,
                "--port",
                str(self.port),
                "--endpoints",
                str(self.endpoints_file()),
                "--credentials",
                "credentials.yml",
                *self._cors_args(),
            ],
        )
        nothing = str(self.nlu_server_file())
        self._spawn(
            "nlu",
            [
                *rasa_run,
                "--enable-api",
                "--interface",
                "127.0.0.1",
                "--port",
                str(self.nlu_port),
                "--endpoints",
                nothing,
                "--credentials",
                nothing,
            ],
        )
        if self.web_port is not None:
            faq_file = self.env.get("FAQBOT_FAQ_FILE")
            self.web = HelpCentre(
                self.web_port,
                self.port,
                socket_url=self.env.get("FAQBOT_SOCKET_URL"),
                privacy_url=self.env.get("FAQBOT_PRIVACY_URL"),
                faq_file=Path(faq_file) if faq_file else None,
            ).start()
        return self

    def _cors_args(self) -> list[str]:
        return ["--cors", *self.cors] if self.cors else []

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> float:
        """Seconds until all servers answer; raises if one dies or the time runs out."""
        started = time.monotonic()
        # The NLU server's /status answers 200 once its model is loaded.
        nlu_status = f"{self.nlu_url}/status?token={self.env['FAQBOT_NLU_TOKEN']}"
        pending = {f"{self.action_url}/health", f"{self.url}/webhooks/rest/", nlu_status}
        while pending:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"Server beendet mit Code {process.returncode}: {process.args}")
            for health in list(pending):
                try:
                    with urllib.request.urlopen(health, timeout=1) as response:
                        if response.status == 200:
                            pending.discard(health)
                except OSError:
                    pass
            if time.monotonic() - started > timeout:
                waiting = sorted(url.split("?")[0] for url in pending)  # without the token
                raise TimeoutError(f"Server nach {timeout:.0f} s nicht bereit: {waiting}")
            if pending:
                time.sleep(0.2)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.web:
            self.web.stop()
            self.web = None
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def __enter__(self) -> BotServers:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.server.serve", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAQBOT_PORT", DEFAULT_PORT)))
    parser.add_argument(
        "--action-port", type=int, default=int(os.environ.get("FAQBOT_ACTION_PORT", DEFAULT_ACTION_PORT))
    )
    parser.add_argument(
        "--nlu-port",
        type=int,
        default=int(os.environ.get("FAQBOT_NLU_PORT", DEFAULT_NLU_PORT)),
        help="Port des NLU-Servers (nur 127.0.0.1)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        default=int(os.environ.get("FAQBOT_WEB_PORT", DEFAULT_WEB_PORT)),
        help="Port der Hilfe-Center-Seite mit dem Chat-Widget",
    )
    parser.add_argument("--no-web", action="store_true", help="ohne Hilfe-Center-Seite")
    parser.add_argument(
        "--cors",
        nargs="+",
        default=os.environ.get("FAQBOT_CORS", "").split() or None,
        help="erlaubte Origins der Website (Standard: die Hilfe-Center-Seite; nie *)",
    )
    parser.add_argument(
        "--var-dir",
        type=Path,
        default=Path(os.environ.get("FAQBOT_VAR_DIR", VAR_DIR)),
        help="Ordner für Gespräche (SQLite) und Tickets",
    )
    args = parser.parse_args()

    print(spacy_model.describe())
    spacy_model.warn_if_standin()
    servers = BotServers(
        args.port,
        args.action_port,
        args.cors,
        var_dir=args.var_dir,
        web_port=None if args.no_web else args.web_port,
        nlu_port=args.nlu_port,
    )
    print(
        f"Starte Action-Server (:{args.action_port}), Rasa-Server (:{args.port}) "
        f"und NLU-Server (127.0.0.1:{args.nlu_port}) "
        f"mit {servers.model.relative_to(PROJECT_DIR)} ...",
        flush=True,
    )
    stop = {"requested": False}

    def request_stop(signum, frame):  # Ctrl-C / SIGTERM: leave the loop, then stop both
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        servers.start()  # inside: a bad setting or a busy port stops the processes started so far
        seconds = servers.wait_ready()
        print(
            f"""
Bereit nach {seconds:.1f} s.
  Rasa-Server (REST + Socket.IO): http://localhost:{args.port}
  REST-Kanal:                     http://localhost:{args.port}/webhooks/rest/webhook
  Action-Server:                  http://localhost:{args.action_port}/webhook
  NLU-Server (nur lokal):         {servers.nlu_url}/model/parse
  Hilfe-Center mit Chat-Widget:   {servers.web.url if servers.web else "(abgeschaltet)"}
  Erlaubte Website-Origins:       {" ".join(servers.cors) or "(keine)"}

Beispiel:
  curl -s -X POST http://localhost:{args.port}/webhooks/rest/webhook \\
       -H 'Authorization: Bearer {servers.rest_token}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"sender": "kunde-1", "message": "Wie bekomme ich meine Rechnung?"}}'

Strg-C beendet alle Server.""",
            flush=True,
        )
        while not stop["requested"]:
            if any(process.poll() is not None for process in servers.processes):
                print("Ein Server wurde unerwartet beendet.", file=sys.stderr)
                return 1
            time.sleep(0.5)
    except (RuntimeError, TimeoutError, ValueError, OSError) as error:
        print(f"Start fehlgeschlagen: {error}", file=sys.stderr)
        return 1
    finally:
        print("Beende die Server ...", flush=True)
        servers.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
