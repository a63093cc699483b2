"""Session-wide real services: a RabbitMQ vhost, nx-27017, the KMS emulator, workers, web."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from signaling_cli import processes
from tests.support.api import Api
from tests.support.emulator import EmulatorProcess, emulator_process
from tests.support.rabbit import create_vhost, delete_vhost, sweep_stale_vhosts

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "browser-sdp"
ARTIFACTS = ROOT / "tests" / "artifacts"


def read_fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture(scope="session")
def run_dir():
    path = Path(tempfile.mkdtemp(prefix="signaling-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def rabbitmq_url():
    if shutil.which("rabbitmqctl"):
        sweep_stale_vhosts()
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    yield url
    delete_vhost(vhost)


@pytest.fixture(scope="session")
def mongodb_uri(run_dir):
    if os.environ.get("MONGODB_URI"):
        yield os.environ["MONGODB_URI"].rsplit("/", 1)[0] + f"/signaling_test_{secrets.token_hex(4)}"
        return
    proc, uri = processes.start_mongo(run_dir / "mongo", run_dir / "logs")
    yield uri
    proc.stop()


@pytest.fixture(scope="session")
def kms_url(run_dir):
    # test_control: tests ask the emulator what endpoints received (tests.support.emulator_control).
    with emulator_process(run_dir / "logs", "signaling", test_control=True, name="kms-signaling") as kms:
        yield kms.url


@dataclass
class Stack:
    env: dict[str, str]
    log_dir: Path
    web: processes.ManagedProcess | None = None
    workers: list[processes.ManagedProcess] = field(default_factory=list)
    kms: EmulatorProcess | None = None  # the media-mode stack's media server (media_mode_stack)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"

    def api(self, api_key: str | None = None) -> Api:
        return Api(self.base_url, api_key)

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base_url}/ready", timeout=5).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"/ready did not answer 200 within {timeout} s; logs in {self.log_dir}")

    def stop(self) -> None:
        for proc in [*self.workers, *([self.web] if self.web else [])]:
            proc.stop()


def stack_env(rabbitmq_url: str, mongodb_uri: str, kms_urls: list[str], **extra: str) -> dict[str, str]:
    prefix = f"t{secrets.token_hex(3)}"
    # A database of its own: the health-monitor lease, media server records and participant
    # reaping are per deployment, and stacks with different media servers must not share them.
    database_uri = mongodb_uri.rsplit("/", 1)[0] + f"/signaling_{prefix}"
    return {
        "RABBITMQ_URL": rabbitmq_url,
        "MONGODB_URI": database_uri,
        "KMS_URLS": ",".join(kms_urls),
        "SECRET_KEY": secrets.token_urlsafe(32),
        "SIGNALING_PREFIX": prefix,
        "SHARDS": "4",
        "SIGNALING_API_KEYS": "",
        **extra,
    }


def start_stack(env: dict[str, str], log_dir: Path, workers: int = 2) -> Stack:
    stack = Stack(env, log_dir)
    try:
        # Node names unique per stack: two stacks in one vhost must not share a pidbox queue.
        prefix = env["SIGNALING_PREFIX"]
        stack.workers = []
        for i in range(workers):
            port = processes.free_port()
            worker_env = {**env, "WORKER_METRICS_PORT": str(port)}
            worker = processes.start_worker(worker_env, log_dir, name=f"{prefix}-worker{i + 1}", concurrency=4)
            worker.port = port
            stack.workers.append(worker)
        stack.web = processes.start_web(env, log_dir, name=f"{env['SIGNALING_PREFIX']}-web")
        stack.wait_ready()
    except Exception:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="session")
def stack(run_dir, rabbitmq_url, mongodb_uri, kms_url):
    """The whole service on the signaling-mode emulator, shared by the integration tests."""
    env = stack_env(rabbitmq_url, mongodb_uri, [kms_url])
    running = start_stack(env, run_dir / "logs")
    yield running
    running.stop()
    # Keep the logs of a failed run where CI can show them.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for log in (run_dir / "logs").glob("*.log"):
        shutil.copy(log, ARTIFACTS / log.name)


@pytest.fixture
def api(stack) -> Api:
    return stack.api()


KEYS = ("k1", "k2")


@pytest.fixture(scope="session")
def keyed_stack(run_dir, mongodb_uri, kms_url):
    """A deployment with API keys (SIGNALING_API_KEYS): what creating and closing sessions need.

    In a vhost of its own: Celery's control broadcasts (worker pings, as /ready and the doctor
    send) reach every worker of a vhost, and the shared stack's tests count their own."""
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    # Every test of this stack acts with key k1, one budget for the whole session's backend calls:
    # rate limits are tested on stacks of their own (test_limits.py, test_trusted_proxies.py).
    env = stack_env(
        url, mongodb_uri, [kms_url], SIGNALING_API_KEYS=",".join(KEYS), RATE_LIMIT_PER_S="1000", RATE_LIMIT_BURST="2000"
    )
    running = start_stack(env, run_dir / "logs-keyed", workers=1)
    try:
        yield running
    finally:
        running.stop()
        delete_vhost(vhost)


@pytest.fixture
def keyed(keyed_stack) -> Api:
    return keyed_stack.api(api_key="k1")


@pytest.fixture
def keyed_db(keyed_stack):
    """This test process connected to the keyed stack's database (as `db` for the open one)."""
    from models import connect_db
    from settings import load_settings

    connect_db(load_settings(keyed_stack.env))
    return keyed_stack


@pytest.fixture
def db(stack):
    """This test process connected to the stack's database, to check stored state.

    Per test: a fault test before it may have pointed this process at its own, stopped, database."""
    from models import connect_db
    from settings import load_settings

    connect_db(load_settings(stack.env))
    return stack


@pytest.fixture(scope="session")
def task_sender(stack):
    """Sends tasks exactly as the web tier does, for tests that redeliver or race them."""
    from celery import Celery

    from media_tasks.routing import shard_exchange, shard_for, shard_name
    from settings import load_settings

    settings = load_settings(stack.env)
    app = Celery("test-sender", broker=settings.rabbitmq_url)
    app.conf.broker_transport_options = {"confirm_publish": True}

    def send(name: str, countdown: float | None = None, **kwargs) -> None:
        queue = shard_name(settings, shard_for(kwargs["session_id"], settings.shards))
        app.send_task(
            name, kwargs=kwargs, exchange=shard_exchange(settings).name, routing_key=queue, countdown=countdown
        )

    yield send
    app.close()


@contextmanager
def media_mode_stack(run_dir: Path, mongodb_uri: str, name: str, **extra: str):
    """A whole stack on an emulator in media mode (real WebRTC), in a vhost of its own; `extra`: more settings."""
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    log_dir = run_dir / f"logs-{name}"
    kms = EmulatorProcess(log_dir, "media", name="kms-media").start()
    try:
        stack = start_stack(stack_env(url, mongodb_uri, [kms.url], **extra), log_dir)
    except Exception:
        kms.stop()
        delete_vhost(vhost)
        raise
    stack.kms = kms
    try:
        yield stack
    finally:
        stack.stop()
        kms.stop()
        delete_vhost(vhost)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for log in log_dir.glob("*.log"):
            shutil.copy(log, ARTIFACTS / f"{name}-{log.name}")
