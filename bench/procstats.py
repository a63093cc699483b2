"""CPU and memory of process trees (gunicorn and Celery fork or spawn children)."""

from __future__ import annotations

import os
import time

import gevent
import psutil

from signaling_cli.processes import ManagedProcess


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def tree_cpu_s(pid: int) -> float:
    return sum(sum(p.cpu_times()[:2]) for p in tree(pid))


def tree_rss_mib(pid: int) -> float:
    return sum(p.memory_info().rss for p in tree(pid)) / 2**20


def tier(name: str) -> str:
    """Our process names as bench.json calls their tier (workers summed)."""
    return "workers" if name.startswith("worker") else ("emulator" if name.startswith("kms") else name)


def by_tier(procs: dict[str, ManagedProcess]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for name, proc in procs.items():
        out.setdefault(tier(name), []).append(proc.pid)
    return out


def broker_processes(port: int | None = None) -> list[psutil.Process]:
    """RabbitMQ's beam.smp: the one listening on `port` when it can be told (another broker on
    the machine, e.g. a test's private one, is not ours), else every beam.smp."""
    beams = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "beam.smp"]
    if port is not None:
        for beam in beams:
            try:
                if any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in beam.net_connections("tcp")):
                    return [beam]
            except (psutil.AccessDenied, psutil.NoSuchProcess):
                pass
    return beams


def tiers_cpu_s(procs: dict[str, ManagedProcess], beams: list[psutil.Process] | None = None) -> dict[str, float]:
    """CPU seconds (user + system) used so far per tier, RabbitMQ's own server included."""
    out = {name: sum(tree_cpu_s(pid) for pid in pids) for name, pids in by_tier(procs).items()}
    out["rabbitmq"] = sum(sum(p.cpu_times()[:2]) for p in (broker_processes() if beams is None else beams))
    return out


def own_cpu_s() -> float:
    """CPU seconds of this process: the load generator (all its clients are greenlets in it)."""
    return sum(psutil.Process().cpu_times()[:2])


def machine_cpu_s() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, every core summed."""
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    return busy, getattr(t, "steal", 0.0)


def load_now() -> dict:
    """The machine's 1-minute load average and its CPU count (recorded where a figure starts)."""
    return {"loadavg_1min": round(os.getloadavg()[0], 2), "cpu_count": psutil.cpu_count() or 1}


def tiers_rss(procs: dict[str, ManagedProcess]) -> dict[str, float]:
    """RSS per tier (workers summed), MiB."""
    return {name: round(sum(tree_rss_mib(pid) for pid in pids), 1) for name, pids in by_tier(procs).items()}


def sample_process(pid: int, seconds: float = 10.0) -> dict:
    """CPU (% of one core) and RSS of a process tree over `seconds`, one-second samples."""
    procs = tree(pid)
    for p in procs:
        p.cpu_percent(None)
    cpu, rss = [], []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        gevent.sleep(1.0)
        cpu.append(sum(p.cpu_percent(None) for p in procs))
        rss.append(sum(p.memory_info().rss for p in procs) / 2**20)
    return {
        "cpu_percent_of_one_core": round(sum(cpu) / len(cpu), 2),
        "cpu_max": round(max(cpu), 2),
        "rss_mib": round(max(rss), 1),
    }
