"""Starting and stopping the service's processes: used by `signaling run` and by the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent
# The web tier's gunicorn hooks (metrics of a worker process that exits).
GUNICORN_CONFIG = "python:signaling_web.gunicorn_config"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for_port(
    port: int, timeout: float = 30.0, process: ManagedProcess | None = None, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port, host):
            return
        if process is not None and process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} exited with {process.popen.returncode}; see {process.log_path}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class ManagedProcess:
    name: str
    popen: subprocess.Popen
    log_path: Path
    port: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.alive():
            self.popen.kill()
            self.popen.wait(10)


def spawn(name: str, argv: list[str], env: dict[str, str], log_dir: Path, port: int | None = None) -> ManagedProcess:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    # The child gets its own copy of the descriptor; ours is closed at once (it used to stay open
    # for the life of the parent, one leaked file per process started).
    with open(log_path, "ab") as log_file:
        popen = subprocess.Popen(
            argv,
            env={**os.environ, **env},
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return ManagedProcess(name, popen, log_path, port)


def start_mongo(
    data_dir: Path, log_dir: Path, port: int | None = None, host: str = "127.0.0.1"
) -> tuple[ManagedProcess, str]:
    """The nx-27017 MongoDB wire-protocol stand-in, on a free port with its files under data_dir."""
    port = port or free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    # --data-dir: one SQLite file per logical database. With a single --db file every database
    # name shares the same collections, unlike MongoDB. Own pid and log files: nx-27017 refuses
    # to start while its default pid file names a live process.
    proc = spawn(
        "mongo",
        [
            str(BIN / "nx-27017"),
            "--data-dir",
            str(data_dir),
            "-p",
            str(port),
            "--host",
            host,
            "--pid-file",
            str(data_dir / "nx-27017.pid"),
            "--log-file",
            str(log_dir / "mongo-server.log"),
        ],
        {},
        log_dir,
        port,
    )
    wait_for_port(port, 30, proc, host)
    return proc, f"mongodb://{host}:{port}/signaling"


def start_emulator(
    log_dir: Path,
    mode: str = "media",
    port: int | None = None,
    memory_offset_kib: int = 0,
    name: str = "kms",
    extra_args: tuple[str, ...] = (),
) -> tuple[ManagedProcess, str]:
    port = port or free_port()
    argv = [PYTHON, "-m", "kms_emulator", "--port", str(port), "--mode", mode, *extra_args]
    if memory_offset_kib:
        argv += ["--memory-offset-kib", str(memory_offset_kib)]
    proc = spawn(name, argv, {}, log_dir, port)
    wait_for_port(port, 30, proc)
    return proc, f"ws://127.0.0.1:{port}/kurento"


def all_shard_queues(env: dict[str, str]) -> str:
    prefix = env.get("SIGNALING_PREFIX", "signaling")
    shards = int(env.get("SHARDS", "8"))
    return ",".join(f"{prefix}.shard.{i}" for i in range(shards))


def start_worker(
    env: dict[str, str],
    log_dir: Path,
    name: str = "worker1",
    concurrency: int | None = None,
    extra_args: tuple[str, ...] = (),
    prefix: tuple[str, ...] = (),
) -> ManagedProcess:
    """A Celery worker on every shard. `extra_args` go to `celery worker` as they are (the fault
    tests pass `-I tests.faults.poison_tasks` to load a task that kills its worker); `prefix`
    wraps the command (the fault tests run a worker in a network namespace of its own)."""
    argv = [
        *prefix,
        PYTHON,
        "-m",
        "celery",
        "-A",
        "media_tasks.app",
        "worker",
        "--loglevel",
        "INFO",
        "-Q",
        all_shard_queues(env),
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
    ]
    if concurrency:
        argv += ["--concurrency", str(concurrency)]
    argv += list(extra_args)
    return spawn(name, argv, env, log_dir)


def webhook_queue_name(env: dict[str, str]) -> str:
    return f"{env.get('SIGNALING_PREFIX', 'signaling')}.webhooks"


def webhook_worker_argv(env: dict[str, str], name: str) -> list[str]:
    """The webhook worker: its own process on the webhook queue only (media_tasks.webhook_app)."""
    return [
        PYTHON,
        "-m",
        "celery",
        "-A",
        "media_tasks.webhook_app",
        "worker",
        "--loglevel",
        "INFO",
        "-Q",
        webhook_queue_name(env),
        "-n",
        f"{name}@%h",
        "--without-mingle",
        "--without-gossip",
    ]


def start_webhook_worker(env: dict[str, str], log_dir: Path, name: str = "webhooks") -> ManagedProcess:
    return spawn(name, webhook_worker_argv(env, name), env, log_dir)


def start_web(
    env: dict[str, str], log_dir: Path, port: int | None = None, name: str = "web", processes: int = 1
) -> ManagedProcess:
    port = port or free_port()
    argv = [
        str(BIN / "gunicorn"),
        "--worker-class",
        "gevent",
        "--workers",
        str(processes),
        "--worker-connections",
        "4000",
        "--bind",
        f"127.0.0.1:{port}",
        "--graceful-timeout",
        "5",
        "--timeout",
        "60",
        # Longer than gunicorn's 2 s default: clients reuse connections between polls, and a
        # server closing an idle one just as a request arrives resets that request.
        "--keep-alive",
        "75",
        "--config",
        GUNICORN_CONFIG,
        "signaling_web.wsgi:app",
    ]
    proc = spawn(name, argv, env, log_dir, port)
    wait_for_port(port, 60, proc)
    return proc


def start_flower(env: dict[str, str], log_dir: Path, port: int = 5555, name: str = "flower") -> ManagedProcess:
    """Flower on the service's broker; with the RabbitMQ management API when there is one (queue
    lengths), in `extra["broker_api"]` (None without)."""
    from signaling_cli.rabbitmq_management import flower_broker_api

    argv = [PYTHON, "-m", "celery", "-A", "media_tasks.app", "flower", f"--port={port}", "--address=127.0.0.1"]
    broker_api = flower_broker_api(env)
    if broker_api:
        argv.append(f"--broker-api={broker_api}")
    proc = spawn(name, argv, env, log_dir, port)
    proc.extra["broker_api"] = broker_api
    return proc
