"""Several Rasa instances on this machine as on several hosts (``make cluster``).

    python -m faqbot.cluster.run [--instances 2] [--port 8000] [--web-port 8080]

Starts PostgreSQL and Redis (faqbot.cluster.components, data under var/cluster/), the action
server, the NLU server, two Rasa instances on ``endpoints.production.yml`` (every setting from
the environment, as on real hosts; this module only fills it in for loopback) and nginx in
front of them with the shipped configuration (deploy/nginx). The help-centre page talks to
the bot through nginx. The tests and ``make bench-cluster`` start the same through ``Cluster``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path

from faqbot.cluster.components import Nginx, PostgreSQL, Redis, free_port
from faqbot.core.paths import PROJECT_DIR, VAR_DIR
from faqbot.server.serve import BotServers, run_until_stopped

DEFAULT_PORT = 8000  # nginx: the address the website and the integrations use
PRODUCTION_ENDPOINTS = PROJECT_DIR / "endpoints.production.yml"


class Cluster(BotServers):
    """The bot as several instances: BotServers' action server and NLU server, ``instances``
    Rasa servers on the production endpoints, PostgreSQL, Redis and nginx. ``url`` is nginx."""

    def __init__(
        self,
        var_dir: Path = VAR_DIR / "cluster",
        instances: int = 2,
        port: int | None = None,
        env: dict[str, str] | None = None,
        **options,
    ) -> None:
        var_dir = Path(var_dir)
        self.postgres = PostgreSQL(var_dir / "postgres")
        self.redis = Redis(var_dir / "redis")
        self.instance_ports = [free_port() for _ in range(instances)]
        self.nginx = Nginx(var_dir / "nginx", [f"127.0.0.1:{port}" for port in self.instance_ports], port=port)
        pg = self.postgres
        contract = {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(pg.port),
            "DB_NAME": pg.database,
            "DB_USER": pg.user,
            "DB_PASSWORD": "",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "REDIS_PASSWORD": "",
            "REDIS_DB": "0",
            "FAQBOT_TICKET_DB_URL": pg.url,
            "FAQBOT_REVIEW_DB_URL": pg.url,
            # Behind nginx: the customer's address (rate limits) is the one nginx forwards.
            "SANIC_PROXIES_COUNT": "1",
            **(env or {}),
        }
        options.setdefault("action_port", free_port())
        options.setdefault("nlu_port", free_port())
        super().__init__(port=self.instance_ports[0], var_dir=var_dir, env=contract, **options)
        self.env["ACTION_ENDPOINT_URL"] = f"{self.action_url}/webhook"
        self.env["FAQBOT_NLU_URL"] = self.nlu_url

    @property
    def url(self) -> str:
        return self.nginx.url

    def instance_url(self, number: int) -> str:
        return f"http://127.0.0.1:{self.instance_ports[number]}"

    def endpoints_file(self) -> Path:
        return PRODUCTION_ENDPOINTS

    def start(self) -> Cluster:
        self.var_dir.mkdir(parents=True, exist_ok=True)
        self.postgres.start()
        self.redis.start()
        super().start()  # action server, first Rasa instance ("rasa"), NLU server
        for number in range(1, len(self.instance_ports)):
            self.start_instance(number)
        self.nginx.start()
        return self

    def rasa_command(self, port: int, interface: str | None = None) -> list[str]:
        return super().rasa_command(port, interface or "127.0.0.1")  # reached through nginx only

    @staticmethod
    def instance_name(number: int) -> str:
        return "rasa" if number == 0 else f"rasa{number + 1}"

    def start_instance(self, number: int) -> None:
        """Start Rasa instance ``number`` (again: not while supervising, which does that itself)."""
        self._spawn(self.instance_name(number), self.rasa_command(self.instance_ports[number]))

    def kill_instance(self, number: int) -> None:
        """kill -9 of one Rasa instance, as a crashed host; the supervisor (if running) restarts it."""
        process = self.process(self.instance_name(number))
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def wait_ready(self, timeout: float = 180) -> float:
        started = time.monotonic()
        super().wait_ready(timeout)
        for number in range(len(self.instance_ports)):
            self._wait_url(f"{self.instance_url(number)}/webhooks/rest/", started + timeout)
        self._wait_url(f"{self.url}/webhooks/rest/", started + timeout)
        return time.monotonic() - started

    def _wait_url(self, url: str, deadline: float) -> None:
        while True:
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} antwortet nicht.")
            time.sleep(0.2)

    def stop(self) -> None:
        self.nginx.stop()
        super().stop()
        self.redis.stop()
        self.postgres.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.cluster.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--instances", type=int, default=2, help="Anzahl der Rasa-Instanzen")
    parser.add_argument("--port", type=int, default=int(os.environ.get("FAQBOT_CLUSTER_PORT", DEFAULT_PORT)))
    parser.add_argument("--web-port", type=int, default=int(os.environ.get("FAQBOT_WEB_PORT", 8080)))
    args = parser.parse_args()
    cluster = Cluster(
        instances=args.instances,
        port=args.port,
        web_port=args.web_port,
        env={"FAQBOT_SOCKET_URL": f"http://localhost:{args.port}"},
        log_dir=VAR_DIR / "cluster" / "logs",
    )
    print(f"Starte PostgreSQL, Redis, {args.instances} Rasa-Instanzen, NLU- und Action-Server, nginx ...")
    return run_until_stopped(
        cluster,
        lambda seconds: (
            f"""
Bereit nach {seconds:.1f} s.
  nginx (REST, Socket.IO, Support-API): {cluster.url}
  Rasa-Instanzen:                       {", ".join(cluster.instance_url(n) for n in range(args.instances))}
  PostgreSQL:                           {cluster.postgres.url}
  Redis:                                {cluster.redis.url}
  Hilfe-Center mit Chat-Widget:         {cluster.web.url if cluster.web else "(abgeschaltet)"}
  Protokolle:                           {cluster.log_dir}

Strg-C beendet alles."""
        ),
        "Beende alles ...",
    )


if __name__ == "__main__":
    sys.exit(main())
