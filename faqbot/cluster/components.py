"""PostgreSQL, Redis and nginx from Debian's packages, started on loopback with their data
in a folder of ours (``make cluster`` and the tests; no systemd, no service of the host).

    with PostgreSQL(folder / "postgres") as db, Redis(folder / "redis") as redis:
        db.url   # postgresql://postgres@127.0.0.1:PORT/faqbot

``scripts/install-components.sh`` (``make components``) installs the packages when missing.
PostgreSQL refuses to run as root: as root, its folder belongs to the ``postgres`` user and
its programs run as that user.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from string import Template

from faqbot.core.paths import PROJECT_DIR

PG_BIN = Path("/usr/lib/postgresql/15/bin")
NGINX_TEMPLATE = PROJECT_DIR / "deploy" / "nginx" / "faqbot.conf.template"
START_TIMEOUT_S = 30


class ComponentMissing(RuntimeError):
    """A program is not installed: ``make components`` installs it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _program(path: str | Path) -> str:
    found = shutil.which(str(path))
    if not found:
        raise ComponentMissing(f"{path} fehlt: bitte `make components` ausführen (installiert es mit apt).")
    return found


def _wait_for_port(port: int, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise RuntimeError(f"{what} antwortet nach {START_TIMEOUT_S} s nicht auf Port {port}.\n{tail}")


def _let_others_pass(folder: Path) -> None:
    """The postgres user must reach its folder: folders above it (a test's temp dir is 0700)
    get the search bit for others, which lists nothing."""
    for parent in [folder, *folder.parents]:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


class Component:
    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.port = port or free_port()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class PostgreSQL(Component):
    """A PostgreSQL 15 cluster in ``folder`` (kept between starts), database ``faqbot``."""

    database = "faqbot"
    user = "postgres"

    def __init__(self, folder: Path, port: int | None = None) -> None:
        super().__init__(folder, port)
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess:
        if os.geteuid() == 0:  # initdb and postgres refuse root
            command = ("runuser", "-u", "postgres", "--", *command)
            # Again before each command: another pytest run starting meanwhile sets its
            # temp root back to 0700, and pg_ctl would no longer reach the data.
            _let_others_pass(self.folder.parent)
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and result.returncode:
            raise RuntimeError(f"{' '.join(command)} fehlgeschlagen:\n{result.stdout}{result.stderr}")
        return result

    def start(self) -> PostgreSQL:
        initdb = _program(PG_BIN / "initdb")
        self.folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
            _let_others_pass(self.folder.parent)
        if not (self.data / "PG_VERSION").exists():
            self._run(initdb, "-D", str(self.data), "-U", self.user, "--auth=trust", "--encoding=UTF8", "--no-sync")
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    "\n# faqbot.cluster.components: loopback only, socket in our folder\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.data}'\n"
                    "max_connections = 200\n"
                    "fsync = on\n"
                )
        self._set_port()
        self.start_server()
        if self.database not in self.query("SELECT datname FROM pg_database"):
            self.query(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def _set_port(self) -> None:
        (self.data / "postgresql.auto.conf").write_text(f"port = {self.port}\n", encoding="utf-8")
        if os.geteuid() == 0:
            shutil.chown(self.data / "postgresql.auto.conf", "postgres", "postgres")

    def start_server(self) -> None:
        """Start (or restart after stop_server) the server process on the same data."""
        self._run(_program(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "start")
        _wait_for_port(self.port, "PostgreSQL", self.log)

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server process (raises if it does not stop); start_server starts it again."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def query(self, sql: str, database: str | None = None) -> list[str]:
        """Rows of a query through psql, one string per row (columns separated by |)."""
        result = self._run(
            _program("psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database or "postgres",
            "-At",
            "-c",
            sql,
        )
        return [line for line in result.stdout.splitlines() if line]


class Redis(Component):
    """A Redis server on loopback, data and pid file in ``folder``, no persistence."""

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Redis:
        server = _program("redis-server")
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--daemonize",
                "yes",
                "--dir",
                str(self.folder),
                "--pidfile",
                str(self.folder / "redis.pid"),
                "--logfile",
                str(self.folder / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            check=True,
            timeout=30,
        )
        _wait_for_port(self.port, "Redis", self.folder / "redis.log")
        return self

    def stop(self) -> None:
        subprocess.run(
            [shutil.which("redis-cli") or "redis-cli", "-p", str(self.port), "shutdown", "nosave"],
            capture_output=True,
            timeout=30,
        )


class Nginx(Component):
    """nginx with the shipped configuration (``deploy/nginx/faqbot.conf.template``) in front
    of the given Rasa instances (``host:port``), its pid, logs and temp files in ``folder``."""

    def __init__(self, folder: Path, rasa_instances: list[str], port: int | None = None) -> None:
        super().__init__(folder, port)
        self.rasa_instances = rasa_instances
        self.conf = self.folder / "nginx.conf"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> str:
        servers = [f"server {address} max_fails=1 fail_timeout=2s;" for address in self.rasa_instances]
        site = Template(NGINX_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(
            FAQBOT_LISTEN=f"127.0.0.1:{self.port}",
            FAQBOT_RASA_SERVERS=" ".join(servers),
        )
        temp = {name: self.folder / name for name in ("client", "proxy", "fastcgi", "uwsgi", "scgi")}
        return (
            f"pid {self.folder / 'nginx.pid'};\n"
            f"error_log {self.folder / 'error.log'} warn;\n"
            "worker_processes 1;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            "  log_format timed '$time_local $request $status $request_time $upstream_addr $upstream_status "
            "$upstream_response_time';\n"
            f"  access_log {self.folder / 'access.log'} timed;\n"
            f"  client_body_temp_path {temp['client']};\n"
            f"  proxy_temp_path {temp['proxy']};\n"
            f"  fastcgi_temp_path {temp['fastcgi']};\n"
            f"  uwsgi_temp_path {temp['uwsgi']};\n"
            f"  scgi_temp_path {temp['scgi']};\n"
            f"{site}\n"
            "}\n"
        )

    def start(self) -> Nginx:
        nginx = _program("nginx")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.conf.write_text(self.config(), encoding="utf-8")
        subprocess.run([nginx, "-c", str(self.conf)], check=True, capture_output=True, timeout=30)
        _wait_for_port(self.port, "nginx", self.folder / "error.log")
        return self

    def stop(self) -> None:
        if (self.folder / "nginx.pid").exists():
            subprocess.run([_program("nginx"), "-c", str(self.conf), "-s", "stop"], capture_output=True, timeout=30)
