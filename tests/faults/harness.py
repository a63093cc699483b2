"""Processes for the fault-injection tests: each test starts and kills its own.

A `FaultStack` is one deployment in miniature: its own RabbitMQ vhost (or a private RabbitMQ
node), its own nx-27017 on a fixed port and data file (so it can be restarted), signaling-mode
KMS emulators, several Celery workers and one or two gunicorn web instances. Killing is real:
SIGKILL of the whole process tree, as an OOM kill or a lost node would do.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import psutil
import requests

from signaling_cli import processes
from signaling_cli.processes import ManagedProcess, free_port
from tests.faults.netns import exec_prefix
from tests.support.emulator import start_emulator

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
FIGURES = ARTIFACTS / "fault-figures.json"
POISON_INCLUDE = ("-I", "tests.faults.poison_tasks")

TASK_LINE = re.compile(r"Task (?P<name>[\w.]+)\[(?P<id>[0-9a-f-]{36})\] (?P<what>received|succeeded|failed|retry)")


def kill_tree(proc: ManagedProcess) -> None:
    """SIGKILL a process and every descendant at once (gunicorn's master and its workers)."""
    try:
        root = psutil.Process(proc.pid)
        victims = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        victims = []
    for victim in victims:
        try:
            victim.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    try:
        proc.popen.wait(10)
    except subprocess.TimeoutExpired:
        pass
    psutil.wait_procs(victims, timeout=10)


def task_states(log_path: Path) -> dict[str, dict]:
    """Task id -> {name, received, succeeded, failed, retry} counts, from a worker's INFO log."""
    tasks: dict[str, dict] = {}
    if not log_path.exists():
        return tasks
    for match in TASK_LINE.finditer(log_path.read_text(errors="replace")):
        entry = tasks.setdefault(
            match["id"], {"name": match["name"], "received": 0, "succeeded": 0, "failed": 0, "retry": 0}
        )
        entry[match["what"]] += 1
    return tasks


def in_flight(log_path: Path) -> dict[str, str]:
    """Tasks this worker received and has not finished (id -> name): its unacked deliveries."""
    return {
        tid: t["name"]
        for tid, t in task_states(log_path).items()
        if t["received"] > t["succeeded"] + t["failed"] + t["retry"]
    }


def queue_names(rabbitmq_url: str) -> set[str]:
    """Queues of the URL's vhost, by `rabbitmqctl list_queues`: unlike a passive declare, listing
    does not count as using a queue, so it does not push back its x-expires."""
    vhost = unquote(urlsplit(rabbitmq_url).path[1:]) or "/"
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip() and line.strip() != "name"}


def record_figures(test: str, figures: dict) -> None:
    """Keep each test's measured figures in tests/artifacts/fault-figures.json (for docs/reliability.md)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    data = json.loads(FIGURES.read_text()) if FIGURES.exists() else {}
    data[test] = figures
    FIGURES.write_text(json.dumps(data, indent=2, sort_keys=True))
    print(f"\nFIGURES {test}: {json.dumps(figures, sort_keys=True)}")


class PrivateRabbit:
    """A RabbitMQ node of our own, so a test can stop and restart a broker without touching the
    machine's shared one. Debian's /usr/sbin wrapper would `su rabbitmq` and read the shared
    env file, so the real script is run directly, with HOME holding the node's own Erlang cookie
    and every path (mnesia, logs, plugins, config) in a temp dir that survives restarts."""

    SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"

    def __init__(self, base: Path) -> None:
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.node = f"faults-{secrets.token_hex(4)}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq.conf").write_text(f"listeners.tcp.1 = 127.0.0.1:{self.port}\n")
        (base / "rabbitmq-env.conf").write_text("")
        self.env = {
            "HOME": str(base),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(base / "rabbit.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        self.proc: subprocess.Popen | None = None
        self.url = f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @staticmethod
    def available() -> bool:
        return os.path.exists(PrivateRabbit.SCRIPT) and shutil.which("erl") is not None

    def start(self, timeout: float = 60.0) -> float:
        """Starts the node (same mnesia dir every time) and returns seconds until AMQP answers."""
        began = time.monotonic()
        with open(self.base / "server.out", "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [self.SCRIPT],
                env={**os.environ, **self.env},
                cwd=self.base,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = began + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited; see {self.base / 'server.out'}")
            if self.amqp_answers():
                return time.monotonic() - began
            time.sleep(0.2)
        raise TimeoutError("private RabbitMQ did not start")

    def amqp_answers(self) -> bool:
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=1) as conn:
                conn.ensure_connection(max_retries=1, timeout=1)
                conn.default_channel  # noqa: B018 - the handshake must complete
                return True
        except Exception:
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Clean shutdown (SIGTERM to the Erlang VM, as `rabbitmqctl stop` would do)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pid_file = self.base / "rabbit.pid"
        beam = int(pid_file.read_text().strip()) if pid_file.exists() else None
        if beam:
            try:
                os.kill(beam, signal.SIGTERM)
            except ProcessLookupError:
                pass
        else:
            self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if beam:
            psutil.wait_procs([p for p in [_process(beam)] if p], timeout=10)

    def rabbitmqctl(self, *args: str) -> str:
        out = subprocess.run(
            ["/usr/lib/rabbitmq/bin/rabbitmqctl", "-n", self.node, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout


def pause(proc: ManagedProcess | subprocess.Popen) -> None:
    """SIGSTOP: the process keeps its sockets open and answers nothing (a paused VM, a host
    gone without a TCP reset)."""
    os.kill(proc.pid, signal.SIGSTOP)


def resume(proc: ManagedProcess | subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGCONT)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


ORPHAN_GRACE_S = 3.0


@dataclass
class FaultStack:
    """One miniature deployment for one fault test; `stop()` ends everything it started."""

    dir: Path
    rabbitmq_url: str
    kms_count: int = 2
    # Added to each emulator's getUsedMemory, so a test decides where new pipelines go (the lightest).
    kms_memory_offsets: tuple[int, ...] = ()
    kms_args: tuple[str, ...] = ()
    worker_count: int = 3
    web_count: int = 2
    worker_args: tuple[str, ...] = ()
    extra_env: dict[str, str] = field(default_factory=dict)
    # Per web instance (by index), on top of env: a broker URL through a proxy, a faked clock.
    web_env: dict[int, dict[str, str]] = field(default_factory=dict)
    # Per worker (by start order, from 0), on top of env: a faked clock.
    worker_env: dict[int, dict[str, str]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    # On test hosts (tests/faults/netns.py): each emulator's listening address and namespace
    # (index -> EmulatorProcess options `host`, `netns`), and MongoDB's address.
    kms_placement: dict[int, dict[str, str]] = field(default_factory=dict)
    mongo_host: str = "127.0.0.1"
    # Workers started before the `worker_count` plain ones: start_worker options (netns, env).
    first_workers: list[dict] = field(default_factory=list)
    mongo: ManagedProcess | None = None
    mongo_port: int = 0
    kms: list[ManagedProcess] = field(default_factory=list)
    kms_urls: list[str] = field(default_factory=list)
    workers: list[ManagedProcess] = field(default_factory=list)
    retired: list[ManagedProcess] = field(default_factory=list)
    webs: list[ManagedProcess] = field(default_factory=list)
    _worker_seq: int = 0

    @property
    def log_dir(self) -> Path:
        return self.dir / "logs"

    def start(self) -> FaultStack:
        try:
            self.start_mongo()
            for i in range(self.kms_count):
                proc, url = self._start_kms(i)
                self.kms.append(proc)
                self.kms_urls.append(url)
            prefix = f"f{secrets.token_hex(3)}"
            self.env = {
                "RABBITMQ_URL": self.rabbitmq_url,
                "MONGODB_URI": f"mongodb://{self.mongo_host}:{self.mongo_port}/signaling",
                "KMS_URLS": ",".join(self.kms_urls),
                "SECRET_KEY": secrets.token_urlsafe(32),
                "SIGNALING_PREFIX": prefix,
                "SHARDS": "4",
                "SIGNALING_API_KEYS": "",
                "WORKER_CONCURRENCY": "4",
                # task_states() and in_flight() read each delivery's "received" line.
                "LOG_TASK_RECEIVED": "true",
                # A worker killed between creating an endpoint and storing it leaves an orphan;
                # the leading worker's sweep releases it (media_tasks/orphan_sweep.py), here
                # within seconds so that check_state can wait for it.
                "ORPHAN_SWEEP_S": "1",
                "ORPHAN_GRACE_S": str(ORPHAN_GRACE_S),
                **self.extra_env,
            }
            for options in self.first_workers:
                self.start_worker(**options)
            for _ in range(self.worker_count):
                self.start_worker()
            for i in range(self.web_count):
                env = {**self.env, **self.web_env.get(i, {})}
                self.webs.append(processes.start_web(env, self.log_dir, name=f"{prefix}-web{i + 1}"))
            self.wait_ready()
        except Exception:
            self.stop()
            raise
        return self

    def _start_kms(self, index: int, port: int | None = None) -> tuple[ManagedProcess, str]:
        offset = self.kms_memory_offsets[index] if index < len(self.kms_memory_offsets) else 0
        return start_emulator(
            self.log_dir,
            mode="signaling",
            name=f"kms{index + 1}",
            port=port,
            memory_offset_kib=offset,
            extra_args=self.kms_args,
            **self.kms_placement.get(index, {}),
        )

    def kill_kms(self, index: int) -> float:
        """SIGKILL of one media server; returns the monotonic time just before the signal."""
        at = time.monotonic()
        kill_tree(self.kms[index])
        return at

    def restart_kms(self, index: int) -> float:
        """A fresh emulator on the same port (a restarted KMS: same URL, no objects); returns seconds to start."""
        began = time.monotonic()
        self.kms[index], url = self._start_kms(index, port=self.kms[index].port)
        assert url == self.kms_urls[index]
        return time.monotonic() - began

    @property
    def live_kms_urls(self) -> list[str]:
        return [url for proc, url in zip(self.kms, self.kms_urls, strict=True) if proc.alive()]

    def start_mongo(self) -> float:
        began = time.monotonic()
        self.mongo, _uri = processes.start_mongo(
            self.dir / "mongo", self.log_dir, self.mongo_port or None, self.mongo_host
        )
        self.mongo_port = self.mongo.port
        return time.monotonic() - began

    def start_worker(self, netns: str | None = None, env: dict[str, str] | None = None) -> ManagedProcess:
        """A worker; in `netns` (a test host) with `env` on top of the stack's (its own addresses)."""
        self._worker_seq += 1
        name = f"{self.env['SIGNALING_PREFIX']}-w{self._worker_seq}"
        worker = processes.start_worker(
            {**self.env, **self.worker_env.get(self._worker_seq - 1, {}), **(env or {})},
            self.log_dir,
            name=name,
            concurrency=4,
            extra_args=self.worker_args,
            prefix=tuple(exec_prefix(netns)),
        )
        self.workers.append(worker)
        return worker

    def replace_dead_workers(self, max_total: int = 30) -> int:
        """What a supervisor (or a Kubernetes Deployment) does: a dead worker gets a successor.
        The dead one moves to `retired` (its log is still read); `max_total` bounds the run."""
        dead = [w for w in self.workers if not w.alive()]
        for worker in dead:
            self.workers.remove(worker)
            self.retired.append(worker)
            if self._worker_seq < max_total:
                self.start_worker()
        return len(dead)

    @property
    def live_workers(self) -> list[ManagedProcess]:
        return [w for w in self.workers if w.alive()]

    @property
    def all_workers(self) -> list[ManagedProcess]:
        return [*self.retired, *self.workers]

    @property
    def base_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{web.port}" for web in self.webs]

    def ready_status(self, base: str, timeout: float = 20.0) -> int:
        try:
            return requests.get(f"{base}/ready", timeout=timeout).status_code
        except requests.RequestException:
            return 0

    def wait_ready(self, timeout: float = 60.0, bases: list[str] | None = None) -> float:
        began = time.monotonic()
        for base in bases or self.base_urls:
            while self.ready_status(base) != 200:
                if time.monotonic() - began > timeout:
                    raise TimeoutError(f"{base}/ready not 200 after {timeout} s; logs in {self.log_dir}")
                time.sleep(0.2)
        return time.monotonic() - began

    def connect_db(self) -> None:
        """This test process connected to the stack's database, to check stored state."""
        from models import connect_db
        from settings import load_settings

        connect_db(load_settings(self.env))

    def settings(self):
        from settings import load_settings

        return load_settings(self.env)

    def worker_logs(self) -> str:
        return "\n".join(w.log_path.read_text(errors="replace") for w in self.all_workers if w.log_path.exists())

    def stop(self) -> None:
        for proc in [*self.webs, *self.all_workers]:
            try:
                proc.stop(timeout=5)
            except Exception:
                kill_tree(proc)
        for proc in [*self.kms, *([self.mongo] if self.mongo else [])]:
            proc.stop(timeout=5)
        # Keep the logs where CI shows them.
        dest = ARTIFACTS / "faults"
        dest.mkdir(parents=True, exist_ok=True)
        for log in self.log_dir.glob("*.log"):
            shutil.copy(log, dest / log.name)


PLAIN_LINE = re.compile(r"^\[(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): [^\]]*\] (?P<message>.*)$")


def log_events(path: Path) -> list[tuple[float, str]]:
    """(epoch seconds, message) of every log line, in the JSON format or Celery's plain one."""
    import datetime as dt

    events = []
    if not path.exists():
        return events
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                record = json.loads(line)
                at = dt.datetime.fromisoformat(record["ts"].replace("Z", "+00:00")).timestamp()
                events.append((at, str(record.get("message", ""))))
            except (ValueError, KeyError):
                continue
        elif match := PLAIN_LINE.match(line):
            events.append((dt.datetime.strptime(match["ts"], "%Y-%m-%d %H:%M:%S,%f").timestamp(), match["message"]))
    return events


def task_times(log_paths: list[Path], what: str = "succeeded") -> dict[str, float]:
    """Task id -> wall-clock time (epoch seconds) of its first `what` line in any of these logs."""
    times: dict[str, float] = {}
    for path in log_paths:
        for at, message in log_events(path):
            match = TASK_LINE.match(message)
            if match and match["what"] == what:
                times.setdefault(match["id"], at)
    return times


# A task that finished just before its worker was killed may not have had its ack reach the
# broker (acks_late: the ack goes out after the task returns), so the broker redelivers it.
ACK_IN_FLIGHT_S = 1.0


def finished_unacked(log_path: Path, killed_at: float) -> set[str]:
    """Tasks the killed worker logged as finished so shortly before the kill that their ack may
    have died with it: legitimately run again elsewhere."""
    return {tid for tid, at in task_times([log_path]).items() if killed_at - ACK_IN_FLIGHT_S <= at <= killed_at + 0.5}


def first_event_after(path: Path, text: str, after: float) -> float | None:
    return next((at for at, message in log_events(path) if at > after and text in message), None)
