"""`signaling run`: the whole service on embedded defaults, in the foreground.

Starts what is not configured from outside (nx-27017 unless MONGODB_URI, KMS emulators unless
KMS_URLS), then WORKERS Celery workers (and the webhook worker when WEBHOOK_URLS is set), the
gevent web tier on PORT and Flower; Ctrl-C stops everything it started. A child that dies is
reported and the rest is stopped too. Its data, logs and metrics files live under
SIGNALING_RUN_DIR (./var).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from signaling_cli import processes
from signaling_cli.rabbitmq_management import without_password

VAR = processes.ROOT / "var"


def _say(text: str) -> None:
    print(f"[signaling] {text}", flush=True)


def run_dir(env: dict[str, str]) -> Path:
    return Path(env.get("SIGNALING_RUN_DIR") or VAR)


def _env_int(env: dict[str, str], name: str, default: int) -> int:
    return int(env.get(name) or default)


def _start_backing_services(
    env: dict[str, str], var: Path, log_dir: Path, started: list[processes.ManagedProcess]
) -> None:
    """The MongoDB stand-in and the KMS emulators, unless `env` points at real ones."""
    if not env.get("MONGODB_URI"):
        # MONGODB_PORT, else 27017 when it is free (where other tools look), else any free port.
        mongo_port = _env_int(env, "MONGODB_PORT", 0) or (None if processes.port_open(27017) else 27017)
        mongo, uri = processes.start_mongo(var / "mongo", log_dir, port=mongo_port)
        env["MONGODB_URI"] = uri
        started.append(mongo)
        _say(f"MongoDB stand-in (nx-27017) on {uri}")
    if not env.get("KMS_URLS"):
        mode = env.get("KMS_EMULATOR_MODE", "media")
        first_port = _env_int(env, "KMS_EMULATOR_PORT", 8888)
        urls = []
        for index in range(_env_int(env, "KMS_EMULATORS", 1)):
            emulator, url = processes.start_emulator(
                log_dir, mode=mode, port=first_port + index, name=f"kms{index + 1}"
            )
            started.append(emulator)
            urls.append(url)
        env["KMS_URLS"] = ",".join(urls)
        _say(f"KMS emulator ({mode} mode) on {env['KMS_URLS']}")


def _start_service(env: dict[str, str], var: Path, log_dir: Path, started: list[processes.ManagedProcess]) -> None:
    """Workers, the web tier and Flower."""
    first_metrics_port = _env_int(env, "WORKER_METRICS_PORT", 9101)
    workers = _env_int(env, "WORKERS", 2)
    for index in range(workers):
        worker_env = {**env, "WORKER_METRICS_PORT": str(first_metrics_port + index)}
        started.append(processes.start_worker(worker_env, log_dir, name=f"worker{index + 1}"))
    _say(f"{workers} Celery worker process(es), metrics on ports {first_metrics_port}+")
    if env.get("WEBHOOK_URLS"):
        webhook_env = {**env, "WORKER_METRICS_PORT": str(first_metrics_port + workers)}
        started.append(processes.start_webhook_worker(webhook_env, log_dir))
        _say(f"webhook worker for WEBHOOK_URLS, metrics on port {first_metrics_port + workers}")
    port = _env_int(env, "PORT", 8000)
    # Several gunicorn processes share their metrics through files in one directory.
    metrics_dir = var / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    started.append(processes.start_web(web_env, log_dir, port=port, processes=_env_int(env, "WEB", 1)))
    _say(f"REST API on http://127.0.0.1:{port}/api/v1 (docs at /api/v1/docs, demo at /demo)")
    flower_port = _env_int(env, "FLOWER_PORT", 5555)
    flower = processes.start_flower(env, log_dir, port=flower_port)
    started.append(flower)
    if flower.extra["broker_api"]:
        queues = f"queue lengths from {without_password(flower.extra['broker_api'])}"
    else:
        queues = (
            "no queue lengths: no RabbitMQ management API answers (rabbitmq-plugins enable "
            "rabbitmq_management, or set RABBITMQ_MANAGEMENT_URL)"
        )
    _say(f"Flower on http://127.0.0.1:{flower_port} ({queues}); logs in {log_dir}")


def start_all(
    env: dict[str, str], log_dir: Path, started: list[processes.ManagedProcess] | None = None
) -> list[processes.ManagedProcess]:
    """Starts everything `env` does not point elsewhere; updates `env` with where things run.
    Each process goes into `started` as soon as it runs, so a failure half-way stops them too."""
    var = run_dir(env)
    started = [] if started is None else started
    _start_backing_services(env, var, log_dir, started)
    _start_service(env, var, log_dir, started)
    return started


def run() -> int:
    env = dict(os.environ)
    log_dir = run_dir(env) / "logs"
    started: list[processes.ManagedProcess] = []
    stopping = False

    def _stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        start_all(env, log_dir, started)
        _say("ready; Ctrl-C stops everything")
        while not stopping:
            dead = [p for p in started if not p.alive()]
            if dead:
                _say(f"{dead[0].name} exited with {dead[0].popen.returncode}; see {dead[0].log_path}")
                return 1
            time.sleep(0.5)
        return 0
    finally:
        _say("stopping")
        for proc in reversed(started):
            proc.stop()


if __name__ == "__main__":
    sys.exit(run())
