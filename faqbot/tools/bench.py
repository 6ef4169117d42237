"""Benchmark the bot as it runs in production (``make bench``).

Measures training time and model size (a fresh training in a temporary folder), the
time until the started servers answer, REST latency over sequential messages,
throughput and latency with concurrent clients, resident memory of the servers and
the held-out accuracy. The SQL tracker store and the action server are in the loop,
exactly as ``make run`` starts them. Results: printed and written to results/bench.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

from faqbot.core import spacy_model
from faqbot.core.knowledge import load
from faqbot.core.paths import PROJECT_DIR
from faqbot.server.serve import BotServers
from faqbot.tools import train
from faqbot.tools.evaluate import DEFAULT_TEST_SET, evaluate, read_examples

MESSAGES_PER_CONVERSATION = 5
RESULTS = PROJECT_DIR / "results" / "bench.json"
CLUSTER_RESULTS = PROJECT_DIR / "results" / "bench-cluster.json"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def workload(count: int) -> list[str]:
    """Customer messages: the FAQ questions and held-out phrasings, in a fixed order."""
    texts = [entry.question for entry in load().values()]
    texts += [text for text, _ in read_examples(DEFAULT_TEST_SET)]
    return [texts[i % len(texts)] for i in range(count)]


async def send(session: aiohttp.ClientSession, url: str, sender: str, text: str) -> float:
    started = time.perf_counter()
    async with session.post(url, json={"sender": sender, "message": text}) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}")
    return time.perf_counter() - started


async def run_clients(url: str, messages: list[str], clients: int, prefix: str, token: str) -> dict:
    """`clients` customers in parallel. Like real customers, each waits for the bot's
    reply before sending the next message, in conversations of a few messages."""
    latencies: list[float] = []

    async def client(session: aiohttp.ClientSession, number: int) -> None:
        for index, text in enumerate(messages[number::clients]):
            sender = f"{prefix}-{number}-{index // MESSAGES_PER_CONVERSATION}"
            latencies.append(await send(session, url, sender, text))

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=60)
    headers = {"Authorization": f"Bearer {token}"}  # the REST channel's integration token
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session, number) for number in range(clients)))
        elapsed = time.perf_counter() - started
    ms = [1000 * value for value in latencies]
    return {
        "messages": len(ms),
        "clients": clients,
        "seconds": round(elapsed, 2),
        "throughput_msg_s": round(len(ms) / elapsed, 1),
        "p50_ms": round(percentile(ms, 50), 1),
        "p95_ms": round(percentile(ms, 95), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "mean_ms": round(statistics.mean(ms), 1),
    }


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total_kb = 0
    for child in [pid, *child_pids(pid)]:
        try:
            with open(f"/proc/{child}/status") as status:
                total_kb += next(int(line.split()[1]) for line in status if line.startswith("VmRSS"))
        except (OSError, StopIteration):
            pass
    return round(total_kb / 1024, 1)


def child_pids(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as handle:
            children = [int(value) for value in handle.read().split()]
    except OSError:
        return []
    return children + [grandchild for child in children for grandchild in child_pids(child)]


def measure_training() -> dict:
    with tempfile.TemporaryDirectory() as out:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "rasa", "train", "--out", out, "--fixed-model-name", "bench", "--force"],
            cwd=PROJECT_DIR,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        seconds = time.monotonic() - started
        size = Path(out, "bench.tar.gz").stat().st_size
    return {"training_s": round(seconds, 1), "model_mb": round(size / 1e6, 2)}


def machine() -> dict:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "spacy_model": spacy_model.describe(),
    }


def throughput(servers: BotServers, messages: int, clients: int, prefix: str) -> dict:
    url, token = f"{servers.url}/webhooks/rest/webhook", servers.rest_token
    asyncio.run(run_clients(url, workload(40), 2, f"{prefix}-warm", token))
    return asyncio.run(run_clients(url, workload(messages), clients, prefix, token))


def compare_cluster(model: Path, messages: int, clients: int, rounds: int) -> dict:
    """``make run`` against ``make cluster`` (two Rasa instances behind nginx on PostgreSQL
    and Redis), in alternating rounds of the same run, both warm."""
    from faqbot.cluster.components import free_port
    from faqbot.cluster.run import Cluster  # the cluster mode needs PostgreSQL, Redis, nginx

    figures: dict[str, list[dict]] = {"make run": [], "make cluster": []}
    with tempfile.TemporaryDirectory() as single_dir, tempfile.TemporaryDirectory() as cluster_dir:
        ports = {"port": free_port(), "action_port": free_port(), "nlu_port": free_port()}
        single = BotServers(var_dir=Path(single_dir), model=model, log_dir=Path(single_dir) / "logs", **ports)
        cluster = Cluster(var_dir=Path(cluster_dir), model=model, log_dir=Path(cluster_dir) / "logs")
        for servers in (single, cluster):
            try:
                servers.start()
                servers.wait_ready()
            except Exception:
                single.stop()
                cluster.stop()
                raise
        try:
            for number in range(rounds):
                for name, servers in figures.items():
                    target = single if name == "make run" else cluster
                    result = throughput(target, messages, clients, f"r{number}-{name.split()[1]}")
                    servers.append(result)
                    print(f"Runde {number + 1}, {name}: {result}", flush=True)
        finally:
            single.stop()
            cluster.stop()
    summary = {
        name: {
            "throughput_msg_s": round(statistics.median(r["throughput_msg_s"] for r in results), 1),
            "p95_ms": round(statistics.median(r["p95_ms"] for r in results), 1),
            "rounds": results,
        }
        for name, results in figures.items()
    }
    ratio = summary["make cluster"]["throughput_msg_s"] / summary["make run"]["throughput_msg_s"]
    summary["cluster_vs_run"] = round(ratio, 2)
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m faqbot.tools.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=200, help="Nachrichten nacheinander")
    parser.add_argument("--clients", type=int, default=20, help="gleichzeitige Clients")
    parser.add_argument("--concurrent", type=int, default=600, help="Nachrichten mit Clients")
    parser.add_argument("--skip-training", action="store_true", help="Trainingszeit nicht messen")
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="nur: make run gegen make cluster (zwei Instanzen, nginx, PostgreSQL, Redis) im selben Lauf",
    )
    parser.add_argument("--rounds", type=int, default=3, help="Runden je Aufbau (mit --cluster)")
    args = parser.parse_args()

    results: dict = {"machine": machine()}
    print(
        f"{results['machine']['date']} · {results['machine']['cpu']} · "
        f"{results['machine']['cores']} Kerne · {results['machine']['spacy_model']}",
        flush=True,
    )
    if spacy_model.is_standin():
        print(spacy_model.warning_banner())
    if args.cluster:
        results["cluster"] = compare_cluster(train.train(), args.concurrent, args.clients, args.rounds)
        for name in ("make run", "make cluster"):
            figures = results["cluster"][name]
            print(f"{name}: {figures['throughput_msg_s']} Nachrichten/s, p95 {figures['p95_ms']} ms (Median)")
        print(f"make cluster / make run: {results['cluster']['cluster_vs_run']}")
        CLUSTER_RESULTS.parent.mkdir(exist_ok=True)
        CLUSTER_RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
        return 0
    if not args.skip_training:
        results["training"] = measure_training()
        print(
            f"Training: {results['training']['training_s']} s, Modell {results['training']['model_mb']} MB", flush=True
        )
    model = train.train()
    with tempfile.TemporaryDirectory() as var_dir:
        servers = BotServers(
            port=15005,
            action_port=15055,
            nlu_port=15006,
            var_dir=Path(var_dir),
            model=model,
            log_dir=Path(var_dir) / "logs",
        )
        started = time.monotonic()
        servers.start()
        try:
            servers.wait_ready()
            url, token = f"{servers.url}/webhooks/rest/webhook", servers.rest_token
            asyncio.run(run_clients(url, workload(1), 1, "first", token))  # the first real answer
            results["startup_s"] = round(time.monotonic() - started, 1)
            print(f"Erste Antwort {results['startup_s']} s nach dem Start", flush=True)
            asyncio.run(run_clients(url, workload(20), 1, "warmup", token))
            results["sequential"] = asyncio.run(run_clients(url, workload(args.sequential), 1, "seq", token))
            print(f"Sequentiell: {results['sequential']}", flush=True)
            concurrent = run_clients(url, workload(args.concurrent), args.clients, "par", token)
            results["concurrent"] = asyncio.run(concurrent)
            print(f"{args.clients} Clients: {results['concurrent']}", flush=True)
            action_process, rasa_process, nlu_process = servers.processes
            results["memory_mb"] = {
                "rasa": rss_mb(rasa_process.pid),
                "nlu": rss_mb(nlu_process.pid),
                "actions": rss_mb(action_process.pid),
            }
            print(f"Speicher (RSS): {results['memory_mb']}", flush=True)
        finally:
            servers.stop()
    held_out = evaluate(model)
    results["held_out"] = held_out.as_dict(confusions=False)
    print(held_out.summary())
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")
    print(f"Ergebnisse: {RESULTS.relative_to(PROJECT_DIR)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
