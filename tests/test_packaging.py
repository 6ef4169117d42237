"""Packaging for real hosts: Dockerfile, docker-compose.yml and deploy/.env.example.

There is no container runtime here, so nothing is built or started: Debian's docker-compose
validates and resolves the compose file (``config``), the rest is checked against the code
it must agree with: the variables endpoints.production.yml reads, the commands ``make run``
starts (faqbot.server.serve), the nginx template's placeholders, the Makefile's install.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import tomli
import yaml

from faqbot.core.paths import PROJECT_DIR
from faqbot.core.shared_secrets import LOCAL_SECRETS
from faqbot.server.serve import BotServers

COMPOSE_FILE = PROJECT_DIR / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_DIR / "deploy" / ".env.example"
DOCKERFILE = PROJECT_DIR / "Dockerfile"
NGINX_TEMPLATE = PROJECT_DIR / "deploy" / "nginx" / "faqbot.conf.template"
SERVICES = {"nginx", "rasa1", "rasa2", "nlu", "actions", "postgres", "redis"}
RASA_INSTANCES = ("rasa1", "rasa2")
# A missing one must stop `docker-compose config`/`up`: without it a server would make its
# own secret (shared_secrets.ensure_environment) that no other server knows.
SECRETS = {*LOCAL_SECRETS, "DB_PASSWORD", "REDIS_PASSWORD"}
REQUIRED = {*SECRETS, "FAQBOT_CORS"}
DELIVERY = (
    "FAQBOT_WEBHOOK_URL",
    "FAQBOT_WEBHOOK_SECRET",
    "FAQBOT_SMTP_HOST",
    "FAQBOT_SMTP_PORT",
    "FAQBOT_SMTP_USER",
    "FAQBOT_SMTP_PASSWORD",
    "FAQBOT_SMTP_FROM",
    "FAQBOT_SUPPORT_EMAIL",
)
MISSING_COMPOSE = "docker-compose fehlt: bitte `make components` ausführen (installiert es mit apt)."


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    if not shutil.which("docker-compose"):
        pytest.fail(MISSING_COMPOSE)
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "--env-file", str(env_file), "config"],
        cwd=PROJECT_DIR,
        # Only the env file: a variable of the caller's shell would take precedence over it.
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    result = compose_config(ENV_EXAMPLE)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def env_file_entries(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def compose_variables(required_only: bool = False) -> set[str]:
    pattern = r"\$\{(\w+):\?" if required_only else r"\$\{(\w+)"
    return set(re.findall(pattern, COMPOSE_FILE.read_text(encoding="utf-8")))


def options(argv: list[str]) -> dict[str, list[str]]:
    """``--name value ...`` of a command line: each option with the values after it."""
    found: dict[str, list[str]] = {}
    for arg in argv:
        if arg.startswith("--"):
            current = found.setdefault(arg, [])
        elif found:
            current.append(arg)
    return found


def dockerfile_stages() -> dict[str, list[tuple[str, str]]]:
    """Each stage's instructions (keyword, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    stages: dict[str, list[tuple[str, str]]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            current = stages.setdefault(arguments.split()[-1], [])
        current.append((keyword.upper(), arguments.strip()))
    return stages


def cmd(stage: str) -> list[str]:
    """The stage's CMD (exec form), through ``sh -c "...; exec ..."`` if so: what is exec'd."""
    argv = json.loads([arguments for keyword, arguments in dockerfile_stages()[stage] if keyword == "CMD"][-1])
    if argv[:2] == ["sh", "-c"]:
        words = shlex.split(argv[2])
        argv = words[words.index("exec") + 1 :]
    return argv


@pytest.fixture
def make_run_commands(tmp_path, monkeypatch) -> dict[str, list[str]]:
    """The command lines `make run` starts (faqbot.server.serve), recorded instead of started."""
    started: dict[str, list[str]] = {}
    monkeypatch.setattr(BotServers, "_spawn", lambda self, name, command, env=None: started.setdefault(name, command))
    model = tmp_path / "model.tar.gz"
    model.touch()
    env = {"FAQBOT_REST_TOKEN_TEST": "x" * 32}
    BotServers(cors=["https://www.example.com"], var_dir=tmp_path, model=model, env=env).start()
    return started


def test_missing_docker_compose_names_make_components(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match="make components"):
        compose_config(ENV_EXAMPLE)


def test_compose_file_is_valid_with_the_example_env_file(config):
    assert config["version"] == "2.4"  # depends_on conditions (see the file's head)
    assert set(config["services"]) == SERVICES


def test_rasa_instances_get_every_variable_of_the_production_endpoints(config):
    needed = set(re.findall(r"\$\{(\w+)\}", (PROJECT_DIR / "endpoints.production.yml").read_text(encoding="utf-8")))
    assert {"DB_HOST", "REDIS_HOST", "ACTION_ENDPOINT_URL", "FAQBOT_REVIEW_DB_URL"} <= needed  # the regex finds them
    needed |= {*LOCAL_SECRETS, "FAQBOT_NLU_URL", "FAQBOT_TICKET_DB_URL", "FAQBOT_CORS"}
    services = config["services"]
    for name in RASA_INSTANCES:
        environment = services[name]["environment"]
        assert not sorted(v for v in needed if not environment.get(v)), f"{name}: not set"
        assert any(v.startswith("FAQBOT_REST_TOKEN_") and environment[v] for v in environment)
    assert services["rasa1"] == services["rasa2"]


def test_addresses_point_at_the_services_of_this_file(config):
    services = config["services"]
    rasa = services["rasa1"]["environment"]
    postgres = services["postgres"]["environment"]
    assert (rasa["DB_HOST"], rasa["DB_PORT"]) == ("postgres", "5432")
    assert (rasa["DB_NAME"], rasa["DB_USER"]) == (postgres["POSTGRES_DB"], postgres["POSTGRES_USER"])
    assert rasa["DB_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert (rasa["REDIS_HOST"], rasa["REDIS_PORT"]) == ("redis", "6379")
    assert rasa["REDIS_PASSWORD"] == services["redis"]["environment"]["REDISCLI_AUTH"]
    assert services["redis"]["command"][-2:] == ["--requirepass", rasa["REDIS_PASSWORD"]]
    for variable in ("FAQBOT_TICKET_DB_URL", "FAQBOT_REVIEW_DB_URL"):
        url = urlsplit(rasa[variable])
        assert (url.hostname, url.port, url.path) == ("postgres", 5432, f"/{postgres['POSTGRES_DB']}")
        assert (url.username, url.password) == (postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"])
    actions = urlsplit(rasa["ACTION_ENDPOINT_URL"])
    assert (actions.hostname, actions.path) == ("actions", "/webhook")
    assert [str(actions.port)] == options(cmd("actions"))["--port"]
    nlu = urlsplit(rasa["FAQBOT_NLU_URL"])
    assert nlu.hostname == "nlu"
    assert [str(nlu.port)] == options(services["nlu"]["command"])["--port"]


def test_action_server_gets_its_settings(config):
    services = config["services"]
    actions, rasa = services["actions"]["environment"], services["rasa1"]["environment"]
    # The same secrets and ticket database as the Rasa servers: tokens match, tickets decrypt.
    for variable in ("FAQBOT_ACTION_TOKEN", "FAQBOT_TICKET_DB_URL", "FAQBOT_DATA_KEYS", "FAQBOT_HASH_SECRET"):
        assert actions.get(variable) and actions[variable] == rasa[variable], variable
    assert set(DELIVERY) <= set(actions)
    for variable in ("FAQBOT_METRICS_TOKEN", "FAQBOT_NLU_TOKEN"):
        assert services["nlu"]["environment"][variable] == rasa[variable], variable
    assert actions["FAQBOT_METRICS_TOKEN"] == rasa["FAQBOT_METRICS_TOKEN"]
    assert "FAQBOT_NLU_URL" not in services["nlu"]["environment"]  # that would be itself
    # Every interface of its own container, which publishes nothing (next test).
    assert ("ENV", "SANIC_HOST=0.0.0.0") in dockerfile_stages()["actions"]


def test_only_nginx_publishes_a_port(config):
    services = config["services"]
    published = sorted(name for name, service in services.items() if service.get("ports"))
    assert published == ["nginx"]
    assert not [name for name, service in services.items() if service.get("network_mode") == "host"]
    [port] = services["nginx"]["ports"]
    assert str(port["target"]) == services["nginx"]["environment"]["FAQBOT_LISTEN"]


def test_nginx_fills_the_shipped_template(config):
    nginx = config["services"]["nginx"]
    assert nginx["image"].startswith("nginx:")
    mounts = [volume.split(":") for volume in nginx["volumes"]]
    assert [str(NGINX_TEMPLATE), "/etc/nginx/templates/faqbot.conf.template", "ro"] in mounts
    placeholders = set(re.findall(r"\$\{(\w+)\}", NGINX_TEMPLATE.read_text(encoding="utf-8")))
    assert placeholders and not sorted(placeholders - set(nginx["environment"]))
    # Every Rasa instance (the rasa image with its own command) behind nginx, and only those.
    instances = {
        name
        for name, service in config["services"].items()
        if service["image"] == config["services"]["rasa1"]["image"] and "command" not in service
    }
    upstream = re.findall(r"server (\S+):5005\b", nginx["environment"]["FAQBOT_RASA_SERVERS"])
    assert sorted(upstream) == sorted(instances) == list(RASA_INSTANCES)


def test_health_checks_and_start_order(config):
    services = config["services"]
    checks = {name: " ".join(service.get("healthcheck", {}).get("test", [])) for name, service in services.items()}
    assert not sorted(name for name, check in checks.items() if not check and name != "nginx"), "no health check"
    assert "pg_isready" in checks["postgres"]
    assert "redis-cli ping" in checks["redis"]
    for name in RASA_INSTANCES:
        assert "127.0.0.1:5005/health/ready" in checks[name]
    assert "127.0.0.1:5055/health/ready" in checks["actions"]
    assert "127.0.0.1:5006/health/ready" in checks["nlu"]
    expected = {
        **dict.fromkeys(RASA_INSTANCES, {"postgres", "redis", "actions", "nlu"}),
        "actions": {"postgres"},
        "nginx": set(RASA_INSTANCES),
    }
    for name, dependencies in expected.items():
        depends_on = services[name]["depends_on"]
        assert set(depends_on) == dependencies, name
        assert {entry["condition"] for entry in depends_on.values()} == {"service_healthy"}, name


def test_databases_are_the_official_images_with_named_volumes(config):
    services = config["services"]
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    for name, data in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        [volume] = services[name]["volumes"]
        source, target, _ = volume.split(":")
        assert target == data and source in config["volumes"], name


def test_a_missing_secret_stops_compose_with_its_name(tmp_path):
    required = compose_variables(required_only=True)
    assert not sorted(REQUIRED - required), "required in docker-compose.yml (${VAR:?message})"
    # Each message names its variable ...
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    assert not sorted(v for v in required if not re.search(rf"\$\{{{v}:\?{v} fehlt", text))
    # ... and docker-compose stops with it.
    env_file = tmp_path / "env"
    entries = env_file_entries(ENV_EXAMPLE)
    del entries["FAQBOT_DATA_KEYS"]
    env_file.write_text("".join(f"{key}={value}\n" for key, value in entries.items()), encoding="utf-8")
    result = compose_config(env_file)
    assert result.returncode != 0
    assert "FAQBOT_DATA_KEYS fehlt: in deploy/.env setzen" in result.stderr


def test_env_example_documents_every_variable_without_secrets():
    entries = env_file_entries(ENV_EXAMPLE)
    assert set(entries) == compose_variables()
    secrets = {key: value for key, value in entries.items() if re.search(r"TOKEN|SECRET|PASSWORD|KEYS", key)}
    assert SECRETS <= set(secrets)
    assert not sorted(key for key, value in secrets.items() if value and "CHANGE_ME" not in value)


def test_images_run_the_entry_points_of_make_run(config, make_run_commands):
    for stage, started in (("actions", "actions"), ("rasa", "rasa")):
        argv, serve = cmd(stage), make_run_commands[started]
        assert argv[0] == "python" and argv[1:4] == serve[1:4], stage
        assert options(argv).keys() == options(serve).keys(), stage
    rasa = options(cmd("rasa"))
    assert rasa["--endpoints"] == ["endpoints.production.yml"]
    assert rasa["--credentials"] == options(make_run_commands["rasa"])["--credentials"] == ["credentials.yml"]
    assert rasa["--port"] == ["5005"] and options(cmd("actions"))["--port"] == ["5055"]
    assert rasa["--cors"] == ["$FAQBOT_CORS"]
    # The NLU server: `make run`'s, but on every interface of its own container (not published).
    nlu, serve = config["services"]["nlu"]["command"], make_run_commands["nlu"]
    assert nlu[0] == "python" and nlu[1:4] == serve[1:4]
    assert options(nlu).keys() == options(serve).keys() - {"--interface"}
    assert "--enable-api" in nlu


def test_dockerfile_pins_python_310_and_installs_like_the_makefile(config):
    stages = dockerfile_stages()
    images = [arguments.split()[0] for instructions in stages.values() for keyword, arguments in instructions[:1]]
    assert images[0].startswith("python:3.10-")
    assert all(image.startswith("python:3.10-") or image in stages for image in images)
    assert (PROJECT_DIR / ".python-version").read_text(encoding="utf-8").startswith("3.10")
    runs = [arguments for instructions in stages.values() for keyword, arguments in instructions if keyword == "RUN"]
    pins = r"'((?:pip|setuptools|wheel)==[^']+)'"
    makefile = (PROJECT_DIR / "Makefile").read_text(encoding="utf-8")
    assert set(re.findall(pins, " ".join(runs))) == set(re.findall(pins, makefile)) != set()
    assert any("pip install -c requirements.lock -e ." in run for run in runs)
    # The dependency layer's empty package folders are pyproject.toml's packages.
    packages = tomli.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    [mkdir] = [run for run in runs if run.startswith("mkdir -p actions")]
    folders = set(mkdir.split("&&")[0].split()[2:])
    covered = {"/".join(folder.split("/")[:depth]) for folder in folders for depth in range(1, 4)}
    assert covered == {package.replace(".", "/") for package in packages["packages"]}
    rasa_runs = " ".join(arguments for keyword, arguments in stages["rasa"] if keyword == "RUN")
    assert "python -m faqbot.tools.spacy_model ensure" in rasa_runs
    assert "python -m faqbot.tools.train" in rasa_runs
    for stage in ("actions", "rasa"):
        users = [arguments for keyword, arguments in stages[stage] if keyword == "USER"]
        assert users and users[-1] not in ("root", "0"), stage
    # What compose builds are stages of this Dockerfile.
    targets = {service["build"]["target"] for service in config["services"].values() if "build" in service}
    assert targets == {"actions", "rasa"}


def test_dockerignore_keeps_local_state_and_secrets_out():
    ignored = set((PROJECT_DIR / ".dockerignore").read_text(encoding="utf-8").split())
    assert {".venv/", "var/", "models/", "web/node_modules/", "tests/", ".env", "**/.env"} <= ignored
