"""Starting a throw-away deployment for a benchmark: its own vhost, database and processes."""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from bench.counting import Counts, install_hook
from bench.procstats import tree_rss_mib
from signaling_cli import processes
from tests.support.rabbit import create_vhost, delete_vhost


@contextmanager
def deployment(
    workers: int = 2,
    kms_mode: str = "signaling",
    web_processes: int = 1,
    env: dict[str, str] | None = None,
    count: bool = False,
    kms_count: int = 1,
) -> Iterator[tuple[str, dict[str, processes.ManagedProcess]]]:
    """`count`: web and worker processes count their MongoDB commands while a window is open
    (bench/counting.py); `procs["web"].extra["counts"]` reads every counter. Emulators are named
    kms, kms2, ...; each worker's `extra["env"]` is what restarts it (bench/soak.py)."""
    run_dir = Path(tempfile.mkdtemp(prefix="signaling-bench-"))
    logs = run_dir / "logs"
    url, vhost = create_vhost()
    started: list[processes.ManagedProcess] = []
    try:
        mongo, mongo_uri = processes.start_mongo(run_dir / "mongo", logs)
        started.append(mongo)
        kms_urls = []
        for i in range(kms_count):
            kms, kms_url = processes.start_emulator(logs, mode=kms_mode, name=f"kms{i + 1}" if i else "kms")
            started.append(kms)
            kms_urls.append(kms_url)
        env = _env(url, mongo_uri, ",".join(kms_urls)) | (install_hook(run_dir) if count else {}) | (env or {})
        metrics_ports = [processes.free_port() for _ in range(workers)]
        for i, port in enumerate(metrics_ports):
            worker_env = {**env, "WORKER_METRICS_PORT": str(port), "BENCH_TIER": "workers"}
            worker = processes.start_worker(worker_env, logs, name=f"worker{i + 1}")
            worker.extra["env"] = worker_env
            started.append(worker)
        web = processes.start_web({**env, "BENCH_TIER": "web"}, logs, processes=web_processes)
        metrics_urls = [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports]
        # Benchmarks that listen on the broker (Celery task events) need the deployment's settings.
        web.extra.update(
            env=env,
            vhost=vhost,
            run_dir=run_dir,
            worker_metrics=metrics_urls,
            counts=Counts(Path(env["BENCH_MONGO_OPS_DIR"]), metrics_urls, url, vhost) if count else None,
        )
        started.append(web)
        base = f"http://127.0.0.1:{web.port}"
        _wait_ready(base, logs)
        yield base, {p.name: p for p in started}
    finally:
        for proc in reversed(started):
            proc.stop()
        delete_vhost(vhost)
        shutil.rmtree(run_dir, ignore_errors=True)


BENCH_API_KEY = "bench-api-key"


def _env(rabbitmq_url: str, mongo_uri: str, kms_urls: str) -> dict[str, str]:
    return {
        "RABBITMQ_URL": rabbitmq_url,
        "MONGODB_URI": mongo_uri,
        "KMS_URLS": kms_urls,
        "SECRET_KEY": secrets.token_urlsafe(32),
        "SIGNALING_PREFIX": "bench",
        # The application backend's key: session creation and token minting use it (bench/client.py).
        "SIGNALING_API_KEYS": BENCH_API_KEY,
        # One load generator speaks for thousands of clients from one address.
        "RATE_LIMIT_PER_S": "0",
        # The idle-poll measure joins 2,000 participants before any of them polls; with the
        # 60 s default the first ones would be removed as silent while the last ones join.
        "PARTICIPANT_TIMEOUT_S": "600",
    }


def _wait_ready(base: str, logs: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{base}/ready", timeout=5)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:500]}"
        except requests.RequestException as exc:
            last = repr(exc)
        time.sleep(0.3)
    # Say why: the last readiness answer and the end of each process's log.
    tails = "".join(
        f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:] for log in sorted(logs.glob("*.log"))
    )
    raise TimeoutError(f"the deployment did not become ready; /ready: {last}{tails}")


def rss_mib(proc: processes.ManagedProcess) -> float:
    """Resident memory of a process and its children (gunicorn and Celery fork or spawn)."""
    return tree_rss_mib(proc.pid)
