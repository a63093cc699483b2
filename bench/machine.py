"""The machine a run happened on, recorded next to its figures."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def _first(path: str, prefix: str, sep: str) -> str | None:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(sep, 1)[1].strip().strip('"')
    except OSError:
        pass
    return None


def _command(argv: list[str], timeout: float = 30) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT).stdout.strip()
    except Exception:  # noqa: BLE001 - only informative
        return None


def _versions() -> dict[str, str]:
    out = {}
    for pkg in ("celery", "kombu", "gevent", "gunicorn", "Flask", "nx-27017"):
        try:
            out[pkg] = version(pkg)
        except Exception:  # noqa: BLE001
            pass
    return out


def machine() -> dict:
    out: dict = {
        "cpu_model": _first("/proc/cpuinfo", "model name", ":") or "unknown",
        "cores": psutil.cpu_count(logical=True),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "os": _first("/etc/os-release", "PRETTY_NAME=", "=") or platform.platform(),
        "python": platform.python_version(),
        # Other work on the box skews every figure: record the load average seen by the run.
        "loadavg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    } | _versions()
    rabbitmq = _command(["rabbitmqctl", "version"])
    if rabbitmq is not None:
        out["rabbitmq"] = rabbitmq
    commit = _command(["git", "rev-parse", "--short", "HEAD"])
    if commit is not None:
        out["commit"] = commit
        out["worktree_dirty"] = bool(_command(["git", "status", "--porcelain", "--untracked-files=no"]))
    return out
