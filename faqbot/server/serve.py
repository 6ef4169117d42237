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
(conversations and tickets, default var/) set them too. The tests start the bot through
``BotServers`` as well, so what they test is what ``make run`` runs.

**Supervision.** A server that ends unexpectedly is started again, after 1, 2, 4 … at most
30 s (``BotServers.supervise_once``; the wait starts over once a server has run for 60 s),
logged in German. Ctrl-C or SIGTERM drains: the Rasa server(s) get SIGTERM first and finish
their requests in flight (Sanic's graceful shutdown, ``SANIC_GRACEFUL_SHUTDOWN_TIMEOUT``,
here 10 s unless set) while the action and NLU servers they call still run; then those get
SIGTERM too. A server still running after that time plus 10 s is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ruamel.yaml import YAML

from faqbot.core import shared_secrets, spacy_model
from faqbot.core.delivery import load_config
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
# Restarts of a crashed server: waits double from the first to the last; a server that ran
# this long before it ended starts over with the first.
RESTART_FIRST_WAIT_S = 1.0
RESTART_MAX_WAIT_S = 30.0
STABLE_AFTER_S = 60.0
SUPERVISE_INTERVAL_S = 0.5
# Sanic's graceful shutdown: how long a server finishes its requests in flight after SIGTERM.
DRAIN_S = 10.0
# After that, time for the servers' stop listeners (the review queue writes for up to 5 s).
KILL_AFTER_DRAIN_S = 10.0
# The servers the others call: stopped last, so the turns in flight can still reach them.
BACK_ENDS = ("actions", "nlu")
NAMES = {"actions": "Action-Server", "rasa": "Rasa-Server", "nlu": "NLU-Server", "mail": "Mail-Empfang"}

logger = logging.getLogger("faqbot.server.serve")  # also when run as __main__


@dataclass
class Child:
    """A server process under supervision: how to start it, and its restarts."""

    name: str
    command: list[str]
    env: dict[str, str]
    process: subprocess.Popen
    started: float  # time.monotonic() of the latest start
    crashes: int = 0  # in a row, without a stable run in between
    restart_at: float | None = None  # while it is down: when it is started again

    @property
    def title(self) -> str:
        return NAMES.get(self.name, f"Server {self.name}")


class BotServers:
    """The action server, the Rasa server and the NLU server as child processes (in this
    order in ``processes``), and the help-centre page (``web_port``) in a thread of this
    process.

    Supervision, also for subclasses that start more servers (faqbot.cluster.run):

    * ``_spawn(name, command)`` starts a child process; it is known by its name from then on.
    * ``process(name)`` is its current process (a new one after each restart).
    * ``supervise_once()`` starts again each child that ended, after its wait; ``supervise(until)``
      calls it until the event is set (``make run``), ``start_supervising()`` does so in a
      thread until ``stop()``. Without either nothing is restarted (tests that kill a server).
    * ``stop()`` drains: children not named in ``BACK_ENDS`` first, then those.
    """

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
        self.env.setdefault("SANIC_GRACEFUL_SHUTDOWN_TIMEOUT", str(DRAIN_S))  # Sanic reads SANIC_* settings
        self.env.setdefault("FAQBOT_TICKET_DB", str(self.var_dir / "tickets.db"))
        self.env.setdefault("FAQBOT_REVIEW_DB", str(self.var_dir / "review.db"))
        if not any(name.startswith("FAQBOT_REST_TOKEN_") for name in self.env):
            self.env[DEV_INTEGRATION] = shared_secrets.local_secret(DEV_INTEGRATION)
        if self.cors:  # the socketio channel checks the origin itself (channels/socketio.py)
            self.env["FAQBOT_CORS"] = " ".join(self.cors)
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self.web: HelpCentre | None = None
        self._lock = threading.RLock()  # the supervising thread and the caller's
        self._stopping = False
        self._supervisor: tuple[threading.Thread, threading.Event] | None = None

    @property
    def processes(self) -> list[subprocess.Popen]:
        """The current process of each child, in the order they were first started."""
        return [child.process for child in self.children.values()]

    def process(self, name: str) -> subprocess.Popen:
        return self.children[name].process

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

    def _spawn(self, name: str, command: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start the child ``name`` (again, if it ran before): supervised from now on."""
        env = env or self.env
        output = None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{name}.log").open("ab")
        try:
            process = subprocess.Popen(
                command,
                cwd=PROJECT_DIR,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT if output else None,
                start_new_session=True,
            )
        finally:
            if output:
                output.close()  # the child has its own
        with self._lock:
            child = self.children.get(name)
            if child is None:
                self.children[name] = Child(name, command, env, process, time.monotonic())
            else:
                child.process, child.started, child.restart_at = process, time.monotonic(), None
        return process

    def _actions_command(self) -> list[str]:
        if self.plain_rasa_actions:
            rasa = str(Path(sys.executable).with_name("rasa"))
            return [rasa, "run", "actions", "--actions", "actions", "--port", str(self.action_port)]
        return [sys.executable, "-m", "faqbot.server.action_server", "--port", str(self.action_port)]

    def restart_actions(self) -> None:
        """Kill the action server hard (as a crash would) and start it again at once."""
        with self._lock:
            child = self.children["actions"]
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait(timeout=30)
            self._spawn("actions", child.command, child.env)

    def supervise_once(self) -> None:
        """Start again each child that ended, once its wait is over (1, 2, 4 … 30 s)."""
        with self._lock:
            if self._stopping:
                return
            now = time.monotonic()
            for child in list(self.children.values()):
                if child.restart_at is None:
                    code = child.process.poll()
                    if code is None:
                        continue
                    child.crashes = 1 if now - child.started >= STABLE_AFTER_S else child.crashes + 1
                    wait = min(RESTART_MAX_WAIT_S, RESTART_FIRST_WAIT_S * 2 ** (child.crashes - 1))
                    child.restart_at = now + wait
                    logger.error(
                        "%s (PID %d) wurde unerwartet beendet (Code %s); Neustart in %.0f s (%d. Ausfall in Folge).",
                        child.title,
                        child.process.pid,
                        code,
                        wait,
                        child.crashes,
                    )
                elif now >= child.restart_at:
                    process = self._spawn(child.name, child.command, child.env)
                    logger.warning("%s neu gestartet (PID %d).", child.title, process.pid)

    def supervise(self, until: threading.Event, interval: float = SUPERVISE_INTERVAL_S) -> None:
        """supervise_once() every ``interval`` seconds until ``until`` is set."""
        while not until.wait(interval):
            self.supervise_once()

    def start_supervising(self) -> None:
        """supervise() in a thread of its own, until stop()."""
        if self._supervisor is None:
            until = threading.Event()
            thread = threading.Thread(target=self.supervise, args=(until,), name="faqbot-supervisor", daemon=True)
            thread.start()
            self._supervisor = (thread, until)

    def start(self) -> BotServers:
        if not self.model.exists():
            raise SystemExit(f"Kein trainiertes Modell {self.model}: bitte zuerst `make train`.")
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self._spawn("actions", self._actions_command())
        rasa_run = [sys.executable, "-m", "faqbot.server.rasa_server", "run", "--model", str(self.model)]
        # The NLU server understands itself: an NLU server of its own (FAQBOT_NLU_URL) would be itself.
        nlu_env = {name: value for name, value in self.env.items() if name != "FAQBOT_NLU_URL"}
        self._spawn("rasa", self.rasa_command(self.port))
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
            nlu_env,
        )
        if load_config(environ=self.env).inbound_address:  # agents answer ticket mails into the chat
            self._spawn("mail", [sys.executable, "-m", "faqbot.server.inbound_mail", "--rasa-url", self.url])
        if self.web_port is not None:
            faq_file = self.env.get("FAQBOT_FAQ_FILE")
            self.web = HelpCentre(
                self.web_port,
                self.port,
                socket_url=self.env.get("FAQBOT_SOCKET_URL"),
                privacy_url=self.env.get("FAQBOT_PRIVACY_URL"),
                faq_file=Path(faq_file) if faq_file else None,
                website_file=self.env.get("FAQBOT_WEBSITE_FILE"),
            ).start()
        return self

    def rasa_command(self, port: int, interface: str | None = None) -> list[str]:
        """The Rasa server (channels, dialogue, stores) on ``port``."""
        return [
            sys.executable,
            "-m",
            "faqbot.server.rasa_server",
            "run",
            "--model",
            str(self.model),
            *(["--interface", interface] if interface else []),
            "--port",
            str(port),
            "--endpoints",
            str(self.endpoints_file()),
            "--credentials",
            "credentials.yml",
            *self._cors_args(),
        ]

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
        """Drain and end the servers: SIGTERM, time to finish what is in flight, then SIGKILL.
        The Rasa server(s) first: their turns in flight still call the action and NLU servers."""
        if self._supervisor is not None:
            thread, until = self._supervisor
            until.set()
            thread.join()
            self._supervisor = None
        with self._lock:
            self._stopping = True  # a supervise_once() of the caller's restarts nothing now
        if self.web:
            self.web.stop()
            self.web = None
        children = list(self.children.values())
        self._terminate([child for child in children if child.name not in BACK_ENDS])
        self._terminate([child for child in children if child.name in BACK_ENDS])
        with self._lock:
            self.children.clear()
            self._stopping = False

    def _terminate(self, children: list[Child]) -> None:
        for child in children:
            if child.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # ended just now
                    os.killpg(child.process.pid, signal.SIGTERM)
        bound = float(self.env["SANIC_GRACEFUL_SHUTDOWN_TIMEOUT"]) + KILL_AFTER_DRAIN_S
        deadline = time.monotonic() + bound
        for child in children:
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.error("%s hat sich nach %.0f s nicht beendet: hart beendet.", child.title, bound)
                with contextlib.suppress(ProcessLookupError):  # ended just now
                    os.killpg(child.process.pid, signal.SIGKILL)
                child.process.wait()

    def __enter__(self) -> BotServers:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def run_until_stopped(servers: BotServers, ready: Callable[[float], str], stopping: str) -> int:
    """Start the servers, print ``ready(seconds)`` once they answer, supervise them until
    Ctrl-C or SIGTERM, then drain and stop them (``make run``, ``make cluster``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()

    def request_stop(signum, frame):  # Ctrl-C / SIGTERM: leave the loop, then drain the servers
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        servers.start()  # inside: a bad setting or a busy port stops the processes started so far
        print(ready(servers.wait_ready()), flush=True)
        servers.supervise(until=stop)  # a crashed server is started again, with backoff
    except (RuntimeError, TimeoutError, ValueError, OSError) as error:
        print(f"Start fehlgeschlagen: {error}", file=sys.stderr)
        return 1
    finally:
        print(stopping, flush=True)
        servers.stop()
    return 0


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
    return run_until_stopped(
        servers,
        lambda seconds: (
            f"""
Bereit nach {seconds:.1f} s.
  Rasa-Server (REST + Socket.IO): http://localhost:{args.port}
  REST-Kanal:                     http://localhost:{args.port}/webhooks/rest/webhook
  Action-Server:                  http://localhost:{args.action_port}/webhook
  NLU-Server (nur lokal):         {servers.nlu_url}/model/parse
  Bereitschaft / Metriken:        http://localhost:{args.port}/health/ready, /metrics (FAQBOT_METRICS_TOKEN)
  Hilfe-Center mit Chat-Widget:   {servers.web.url if servers.web else "(abgeschaltet)"}
  Erlaubte Website-Origins:       {" ".join(servers.cors) or "(keine)"}

Beispiel:
  curl -s -X POST http://localhost:{args.port}/webhooks/rest/webhook \\
       -H 'Authorization: Bearer {servers.rest_token}' \\
       -H 'Content-Type: application/json' \\
       -d '{{"sender": "kunde-1", "message": "Wie bekomme ich meine Rechnung?"}}'

Ein Server, der unerwartet endet, wird neu gestartet. Strg-C beendet alle Server."""
        ),
        "Beende die Server (laufende Anfragen werden noch beantwortet) ...",
    )


if __name__ == "__main__":
    sys.exit(main())
