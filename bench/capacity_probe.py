"""The deployment and probes of `python -m bench capacity` (bench/capacity.py): CPU and RSS per
tier, MongoDB commands by name and collection, tasks per worker, RabbitMQ queues."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import gevent
import psutil
import requests

from bench.counting import install_hook, mongo_counts
from bench.procstats import tier as load_tier
from bench.procstats import tree
from bench.stack import deployment as bench_deployment
from signaling_cli import processes

WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify"}
BACKGROUND_COLLECTIONS = {"media_servers", "leases", "lease"}


@contextmanager
def deployment(workers: int = 2) -> Iterator[dict]:
    """bench/stack.py's deployment, with every web and worker process counting its MongoDB commands."""
    run_dir = Path(tempfile.mkdtemp(prefix="signaling-capacity-"))
    hook_env = install_hook(run_dir, always=True)
    ops = Path(hook_env["BENCH_MONGO_OPS_DIR"])
    env = hook_env | {
        "SIGNALING_PREFIX": "cap",
        # Every session creation and join comes from this one address, where real callers each
        # have their own bucket: a high rate, so none is refused; the default burst keeps the
        # bookkeeping as deployed (one bucket write per burst/10 requests of a caller).
        "RATE_LIMIT_PER_S": "1000",
        "PARTICIPANT_TIMEOUT_S": "60",  # as deployed
    }
    try:
        with bench_deployment(workers=workers, env=env) as (base, procs):
            web = procs["web"].extra
            yield {
                "base": base,
                "procs": procs,
                "vhost": web["vhost"],
                "ops_dir": ops,
                "metrics_urls": web["worker_metrics"],
                "mongo_uri": web["env"]["MONGODB_URI"],
            }
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


# --- probes -------------------------------------------------------------------------------------
def tier(name: str) -> str:
    return "mongodb" if name == "mongo" else load_tier(name)


def cpu_rss(procs: dict[str, processes.ManagedProcess]) -> dict:
    """Per tier: CPU seconds (user+sys) so far and RSS MiB, summed over each process tree."""
    out: dict[str, dict] = {}
    for name, proc in procs.items():
        entry = out.setdefault(tier(name), {"cpu_s": 0.0, "rss_mib": 0.0})
        for p in tree(proc.pid):
            try:
                times = p.cpu_times()
                entry["cpu_s"] += times.user + times.system
                entry["rss_mib"] += p.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                pass
    return out


def mongo_ops(ops_dir: Path) -> Counter[str]:
    return mongo_counts(ops_dir)


def worker_metrics(urls: list[str]) -> dict:
    """Task counts and seconds by task name, summed over the workers."""
    from prometheus_client.parser import text_string_to_metric_families

    count: defaultdict[str, float] = defaultdict(float)
    seconds: defaultdict[str, float] = defaultdict(float)
    for url in urls:
        text = requests.get(url, timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "signaling_task_seconds_count":
                    count[sample.labels["task"]] += sample.value
                elif sample.name == "signaling_task_seconds_sum":
                    seconds[sample.labels["task"]] += sample.value
    return {"count": count, "seconds": seconds}


def rabbit_queues(vhost: str | None) -> list[dict]:
    if not vhost:
        return []
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "memory", "messages", "type"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[1].isdigit():
            rows.append({"name": parts[0], "memory": int(parts[1]), "messages": int(parts[2]), "type": parts[3]})
    return rows


def erlang_processes() -> int | None:
    try:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "eval", "erlang:system_info(process_count)."],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return int(out.strip())
    except (ValueError, OSError, subprocess.TimeoutExpired):
        return None


class Probe:
    """Snapshot before a phase, deltas after it."""

    def __init__(self, dep: dict) -> None:
        self.dep = dep

    def snapshot(self) -> dict:
        # Let every process flush its MongoDB counters (they write at most every 0.25 s, on a command).
        requests.get(f"{self.dep['base']}/ready", timeout=10)
        gevent.sleep(0.6)
        requests.get(f"{self.dep['base']}/ready", timeout=10)
        return {
            "at": time.monotonic(),
            "cpu": cpu_rss(self.dep["procs"]),
            "ops": mongo_ops(self.dep["ops_dir"]),
            "tasks": worker_metrics(self.dep["metrics_urls"]),
        }

    def delta(self, before: dict, after: dict, background_cpu_per_s: dict | None = None) -> dict:
        seconds = after["at"] - before["at"]
        cpu = {}
        for name, now in after["cpu"].items():
            used = now["cpu_s"] - before["cpu"].get(name, {}).get("cpu_s", 0.0)
            if background_cpu_per_s:
                used = max(0.0, used - background_cpu_per_s.get(name, 0.0) * seconds)
            cpu[name] = {
                "cpu_s": round(used, 3),
                "rss_delta_mib": round(now["rss_mib"] - before["cpu"].get(name, {}).get("rss_mib", 0.0), 2),
                "rss_mib": round(now["rss_mib"], 1),
            }
        ops = after["ops"] - before["ops"]
        unit_ops = Counter({k: v for k, v in ops.items() if k.split(":", 1)[1] not in BACKGROUND_COLLECTIONS})
        tasks = {
            name: int(after["tasks"]["count"][name] - before["tasks"]["count"].get(name, 0))
            for name in after["tasks"]["count"]
        }
        task_s = {
            name: after["tasks"]["seconds"][name] - before["tasks"]["seconds"].get(name, 0.0)
            for name in after["tasks"]["seconds"]
        }
        return {
            "seconds": round(seconds, 2),
            "cpu": cpu,
            "mongo_writes": sum(v for k, v in unit_ops.items() if k.split(":")[0] in WRITE_COMMANDS),
            "mongo_reads": sum(v for k, v in unit_ops.items() if k.split(":")[0] in {"find", "aggregate", "count"}),
            "mongo_commands": dict(sorted((k, v) for k, v in unit_ops.items() if v)),
            "mongo_background_commands": dict(sorted((k, v) for k, v in ops.items() if k not in unit_ops and v)),
            "tasks": {k: v for k, v in tasks.items() if v},
            "task_wall_ms_mean": {k: round(1000 * task_s[k] / tasks[k], 2) for k in tasks if tasks[k]},
        }


def wait_tasks(probe: Probe, before: dict, expected: dict[str, int], timeout: float = 120) -> None:
    """Until the workers ran at least `expected` tasks of each name since `before`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = worker_metrics(probe.dep["metrics_urls"])["count"]
        if all(now[name] - before["tasks"]["count"].get(name, 0) >= n for name, n in expected.items()):
            gevent.sleep(0.3)
            return
        gevent.sleep(0.2)
    raise TimeoutError(f"tasks {expected} not done within {timeout} s")


def per_unit(delta: dict, units: int) -> dict:
    return {
        "units": units,
        "cpu_ms": {name: round(1000 * c["cpu_s"] / units, 3) for name, c in delta["cpu"].items()},
        "mongo_writes": round(delta["mongo_writes"] / units, 2),
        "mongo_reads": round(delta["mongo_reads"] / units, 2),
    }
