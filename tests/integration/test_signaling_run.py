"""`signaling run` (what `make run` does) end to end, as an operator runs it.

WEB=2 WORKERS=2 KMS_EMULATORS=2 on free ports, its files in a temp dir and its own RabbitMQ
vhost. It must start everything, answer /ready, let a session be created and joined, count a
waiting long poll in the gauge shared by its two web processes (and forget it when the process
holding it is killed), and stop every process it started on Ctrl-C (SIGINT to its process
group, as a terminal sends it).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import requests

from signaling_cli import processes
from tests.integration.test_observability import metric_value
from tests.support.api import Api
from tests.support.rabbit import DEFAULT_URL, create_vhost, delete_vhost

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def free_consecutive_ports(count: int) -> int:
    while True:
        first = processes.free_port()
        if first + count < 65536 and all(not processes.port_open(first + i) for i in range(1, count)):
            return first


def wait_until(condition, timeout: float, describe) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(describe())
        time.sleep(0.2)


class Output(threading.Thread):
    """The supervisor's stdout, line by line, as it comes."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.lines: list[str] = []

    def run(self) -> None:
        for line in self.stream:
            self.lines.append(line.rstrip("\n"))

    def text(self) -> str:
        return "\n".join(self.lines)


def waiting_polls(base: str) -> float | None:
    return metric_value(requests.get(f"{base}/metrics", timeout=10).text, "signaling_long_polls_waiting")


def start_raw_poll(base_port: int, member) -> socket.socket:
    """A long poll on a socket of our own, so we know which connection (and process) holds it."""
    sock = socket.create_connection(("127.0.0.1", base_port), timeout=60)
    path = (
        f"/api/v1/sessions/{member.session_id}/participants/{member.participant_id}/messages"
        f"?after={member.after}&wait=25"
    )
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {member.token}\r\n"
        "Connection: close\r\n\r\n".encode()
    )
    return sock


def holder_of(sock: socket.socket, web_master: psutil.Process) -> psutil.Process:
    """The gunicorn worker process whose end of the connection is `sock`."""
    client_port = sock.getsockname()[1]
    for worker in web_master.children():
        for conn in worker.net_connections(kind="tcp"):
            if conn.raddr and conn.raddr.port == client_port:
                return worker
    raise AssertionError(f"no gunicorn worker holds the connection from port {client_port}")


@pytest.mark.timeout(240)
def test_signaling_run_starts_everything_serves_a_call_and_stops_everything_on_ctrl_c(tmp_path):
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", DEFAULT_URL))
    port, flower_port, mongo_port = processes.free_port(), processes.free_port(), processes.free_port()
    env = {
        **os.environ,
        "RABBITMQ_URL": url,
        "SIGNALING_RUN_DIR": str(tmp_path),
        "SECRET_KEY": "run-test",
        "WEB": "2",
        "WORKERS": "2",
        "KMS_EMULATORS": "2",
        "KMS_EMULATOR_MODE": "signaling",
        "PORT": str(port),
        "FLOWER_PORT": str(flower_port),
        "MONGODB_PORT": str(mongo_port),
        "KMS_EMULATOR_PORT": str(free_consecutive_ports(2)),
        "WORKER_METRICS_PORT": str(free_consecutive_ports(2)),
        "SHARDS": "2",
        "SIGNALING_API_KEYS": "",
    }
    for name in ("MONGODB_URI", "KMS_URLS", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    run = subprocess.Popen(
        [sys.executable, "-m", "signaling_cli", "run"],
        env=env,
        cwd=processes.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(run.stdout)
    output.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: "[signaling] ready" in output.text() or run.poll() is not None,
            150,
            lambda: f"not ready:\n{output.text()}",
        )
        assert run.poll() is None, output.text()
        supervisor = psutil.Process(run.pid)
        children = supervisor.children()
        commands = [" ".join(child.cmdline()) for child in children]
        assert sum("nx-27017" in c for c in commands) == 1, commands
        assert sum("kms_emulator" in c for c in commands) == 2, commands
        assert sum(" worker " in c for c in commands) == 2, commands
        assert sum(" flower " in c for c in commands) == 1, commands
        (web_master,) = [child for child, c in zip(children, commands, strict=True) if "gunicorn" in c]
        # The master listens before it has forked every worker: give the second one a moment.
        wait_until(
            lambda: len(web_master.children()) == 2,
            30,
            lambda: f"WEB=2: {len(web_master.children())} gunicorn workers behind one port",
        )

        def ready() -> bool:
            try:
                return requests.get(f"{base}/ready", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 60, lambda: f"/ready never answered 200:\n{output.text()}")
        api = Api(base)
        session = api.create_session(name="run test")
        alice = api.join(session, "alice")
        alice.wait_type("participantJoined", participant_id=alice.participant_id)
        assert (
            requests.get(f"{base}/api/v1/sessions/{session['session_id']}", headers=alice.headers, timeout=10).json()[
                "participants"
            ][0]["display_name"]
            == "alice"
        )

        # A waiting long poll counts in the gauge the two web processes share...
        assert waiting_polls(base) == 0
        held = start_raw_poll(port, alice)
        wait_until(lambda: waiting_polls(base) == 1, 30, lambda: f"gauge: {waiting_polls(base)}")
        # ... and leaves it when the process holding it dies (gunicorn's child_exit hook).
        holder = holder_of(held, web_master)
        holder.kill()
        held.close()
        wait_until(
            lambda: waiting_polls(base) == 0, 30, lambda: f"a dead process's poll still counts: {waiting_polls(base)}"
        )
        wait_until(lambda: len(web_master.children()) == 2, 30, lambda: "gunicorn did not replace its worker")

        everything = [supervisor, *supervisor.children(recursive=True)]
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(60) == 0, output.text()
        gone, alive = psutil.wait_procs(everything, timeout=30)
        assert not alive, f"still running after Ctrl-C: {[p.pid for p in alive]}\n{output.text()}"
        assert "[signaling] stopping" in output.text()
        for listening in (port, flower_port, mongo_port):
            assert not processes.port_open(listening), listening
    finally:
        if run.poll() is None:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(10)
        output.join(10)  # EOF once every process holding the pipe is gone
        if not output.is_alive():
            run.stdout.close()
        delete_vhost(vhost)
