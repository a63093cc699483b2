"""What one task costs the broker and the logs, counted: `python -m bench.task_overhead`.

A throw-away deployment with one worker; one participant sends N chat messages (one
`media.send_message` task each) and then makes N offers (one `media.process_offer` each). For
each phase it reports, per task:

- the Celery events the worker published, exactly, from a queue of our own bound to `celeryev`
  (`task.multi` is a batch of buffered task events; worker heartbeats are left out);
- what RabbitMQ's management API counted (publishes per exchange; publishes and confirms of the
  worker's channels and of the others). The worker's own heartbeats (one every 2 s) are in those
  counters, so they are subtracted as counted by the tap over about the same window (the API
  refreshes every 5 s): those worker figures are right to about 0.1 per task;
- the worker's channels in confirm mode, and its log lines.
Counts, not timings: they do not depend on the machine's load.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import psutil
import requests
from kombu import Connection, Exchange, Queue
from kombu.message import Message

from bench.stack import BENCH_API_KEY, deployment
from signaling_cli.processes import ManagedProcess

MANAGEMENT = "http://127.0.0.1:15672/api"
AUTH = ("guest", "guest")
N = 40
SDP_PATH = "tests/fixtures/browser-sdp/chromium-publish.sdp"


def _get(path: str) -> list[dict[str, Any]]:
    response = requests.get(f"{MANAGEMENT}{path}", auth=AUTH, timeout=10)
    response.raise_for_status()
    return list(response.json())


class Member:
    """One participant through the REST contract (requests; the bench's own client is gevent's)."""

    def __init__(self, base: str, session: dict[str, Any], name: str) -> None:
        self.http = requests.Session()
        self.base = f"{base}/api/v1/sessions/{session['session_id']}"
        body = self._call("POST", "/participants", {"display_name": name, "join_token": session["join_token"]})
        self.participant_id, token = body["participant_id"], body["token"]
        self.http.headers["Authorization"] = f"Bearer {token}"
        self.after = 0
        self.inbox: list[dict[str, Any]] = []

    @staticmethod
    def create_session(base: str) -> dict[str, Any]:
        response = requests.post(
            f"{base}/api/v1/sessions", json={"max_participants": 16}, headers={"X-API-Key": BENCH_API_KEY}, timeout=30
        )
        response.raise_for_status()
        return dict(response.json())

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.http.request(method, self.base + path, json=body, timeout=60)
        response.raise_for_status()
        return dict(response.json())

    def send(self, payload: dict[str, Any]) -> None:
        self._call("POST", "/messages", {"payload": payload})

    def offer(self, sdp: str) -> str:
        return str(
            self._call("POST", f"/participants/{self.participant_id}/offers", {"stream": "publish", "sdp": sdp})[
                "request_id"
            ]
        )

    def poll(self, wait: float) -> None:
        body = self._call(
            "GET", f"/participants/{self.participant_id}/messages?after={self.after}&wait={wait}&limit=200"
        )
        self.after = body["last_seq"]
        self.inbox += body["messages"]

    def wait_answer(self, request_id: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(m.get("request_id") == request_id and m["type"] in ("sdpAnswer", "error") for m in self.inbox):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {request_id} within {timeout} s")
            self.poll(wait=2)


def _ports(proc: ManagedProcess) -> set[int]:
    root = psutil.Process(proc.pid)
    ports = set()
    for p in [root, *root.children(recursive=True)]:
        ports |= {c.laddr.port for c in p.net_connections("tcp") if c.raddr and c.raddr.port == 5672}
    return ports


def snapshot(vhost: str, worker_ports: set[int]) -> dict[str, float]:
    """Cumulative counters of the vhost; the management API refreshes them every 5 s."""
    counts: dict[str, float] = {}
    for exchange in _get(f"/exchanges/{quote(vhost, safe='')}"):
        stats = exchange.get("message_stats") or {}
        counts[f"publish_in {exchange['name'] or '(default)'}"] = stats.get("publish_in", 0)
    for channel in _get(f"/vhosts/{quote(vhost, safe='')}/channels"):
        stats = channel.get("message_stats") or {}
        side = "worker" if channel["connection_details"]["peer_port"] in worker_ports else "other"
        for key in ("publish", "confirm"):
            counts[f"{key} {side}"] = counts.get(f"{key} {side}", 0) + stats.get(key, 0)
    return counts


def _steady(counts: dict[str, float]) -> dict[str, float]:
    # What the worker's heartbeats move on their own, every 2 s.
    return {k: v for k, v in counts.items() if "celeryev" not in k and "worker" not in k}


def settled(vhost: str, worker_ports: set[int]) -> dict[str, float]:
    """The counters once two reads 6 s apart agree (the stats are collected every 5 s)."""
    last = snapshot(vhost, worker_ports)
    while True:
        time.sleep(6)
        now = snapshot(vhost, worker_ports)
        if _steady(now) == _steady(last):
            return now
        last = now


class EventTap:
    """Every Celery event published in the vhost, counted by routing key."""

    def __init__(self, url: str) -> None:
        self.counts: Counter[str] = Counter()
        self.connection = Connection(url)
        queue = Queue("bench.event-tap", Exchange("celeryev", type="topic"), routing_key="#", exclusive=True)
        self.consumer = self.connection.Consumer([queue], callbacks=[self._on_event], accept=["json"])
        self.consumer.consume()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.stopped = threading.Event()
        self.thread.start()

    def _on_event(self, _body: object, message: Message) -> None:
        self.counts[message.delivery_info["routing_key"]] += 1
        message.ack()

    def _run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.connection.drain_events(timeout=0.5)
            except TimeoutError:
                continue

    def take(self) -> Counter[str]:
        taken, self.counts = self.counts, Counter()
        return taken

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.connection.release()


def confirm_channels(vhost: str, worker_ports: set[int]) -> str:
    channels = [
        c
        for c in _get(f"/vhosts/{quote(vhost, safe='')}/channels")
        if c["connection_details"]["peer_port"] in worker_ports
    ]
    return f"{sum(bool(c.get('confirm')) for c in channels)} of {len(channels)}"


def phase(name: str, run: Callable[[], None], vhost: str, worker: ManagedProcess, tap: EventTap) -> dict[str, object]:
    ports = _ports(worker)
    before = settled(vhost, ports)
    tap.take()
    lines_before = len(worker.log_path.read_text().splitlines())
    run()
    time.sleep(2)  # the last task's own events and log lines
    ports |= _ports(worker)
    after = settled(vhost, ports)
    events = tap.take()
    heartbeats = events.pop("worker.heartbeat", 0)
    lines = worker.log_path.read_text().splitlines()[lines_before:]
    deltas = {k: after.get(k, 0) - before.get(k, 0) for k in sorted(set(after) | set(before))}
    for key in ("publish worker", "confirm worker", "publish_in celeryev"):
        if key == "confirm worker" and not deltas.get(key):
            continue
        deltas[key] = deltas.get(key, 0) - heartbeats
    return {
        "phase": name,
        "tasks": N,
        "events_per_task": {k: round(v / N, 2) for k, v in sorted(events.items())},
        "per_task": {k: round(v / N, 2) for k, v in deltas.items() if v},
        "worker_channels_in_confirm_mode": confirm_channels(vhost, ports),
        "worker_log_lines_per_task": round(len(lines) / N, 2),
        "worker_info_lines_per_task": round(sum('"level":"INFO"' in line for line in lines) / N, 2),
    }


def main() -> None:
    sdp = open(SDP_PATH).read()
    with deployment(workers=1) as (base, procs):
        vhost = procs["web"].extra["vhost"]
        worker = procs["worker1"]
        session = Member.create_session(base)
        alice, bob = Member(base, session, "alice"), Member(base, session, "bob")

        def chat() -> None:
            for i in range(N):
                alice.send({"n": i})
            while len([m for m in bob.inbox if m["type"] == "message"]) < N:
                bob.poll(wait=2)

        def offers() -> None:
            for _ in range(N):
                alice.wait_answer(alice.offer(sdp))

        tap = EventTap(procs["web"].extra["env"]["RABBITMQ_URL"])
        try:
            results = [phase("chat (media.send_message)", chat, vhost, worker, tap)]
            results.append(phase("offer (media.process_offer)", offers, vhost, worker, tap))
        finally:
            tap.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
