"""What RabbitMQ charges per message, by queue type, persistence and confirms:
`python -m bench.broker_costs [messages]`.

For each combination it publishes `messages` (1,000 by default) messages of 1 KiB (an SDP
answer's order of size) one after the other to a fresh queue in a vhost of its own, while a
consumer on another connection takes and acks them, and reports:

- `beam_cpu_us_per_msg`: CPU (user + system) of the broker's beam.smp over the run, per message,
  less its rate in the second before (the broker is shared with whatever else runs on the
  machine: on a busy one, repeat and take the lower figures);
- `confirm_ms_p50/p95`: with confirms waited per message (what the web tier's enqueue waits
  for), from the publish to its confirm;
- `deliver_ms_p50/p95`: from the publish to the consumer receiving it (without waiting for each
  confirm the publisher floods the queue, so there it is mostly time spent queued).

Modes of confirms: `each` (wait for every publish's confirm before the next: Celery's
`confirm_publish`), `batch` (confirm mode on, all confirms awaited at the end:
messaging.publisher's per-task flush), `off`.
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from urllib.parse import unquote, urlsplit

import amqp
import psutil

from tests.support.rabbit import create_vhost, delete_vhost

BODY = b"x" * 1024


def _beam() -> psutil.Process:
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            return proc
    raise RuntimeError("no beam.smp process: is RabbitMQ running on this machine?")


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def _connect(vhost: str) -> amqp.Connection:
    conn = amqp.Connection("127.0.0.1:5672", userid="guest", password="guest", virtual_host=vhost)
    conn.connect()
    return conn


def _quantile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[int(q * 100) - 1] * 1000, 3) if len(values) > 1 else 0.0


def run_case(vhost: str, queue_type: str, persistent: bool, confirms: str, messages: int) -> dict[str, object]:
    name = f"cost.{queue_type}.{'p' if persistent else 't'}.{confirms}"
    setup = _connect(vhost)
    setup.channel().queue_declare(name, durable=True, auto_delete=False, arguments={"x-queue-type": queue_type})
    received: dict[int, float] = {}
    done = threading.Event()
    consumer = _connect(vhost)
    channel = consumer.channel()
    channel.basic_qos(0, 100, False)

    def on_message(message: amqp.Message) -> None:
        received[int(message.properties["message_id"])] = time.perf_counter()
        channel.basic_ack(message.delivery_tag)
        if len(received) == messages:
            done.set()

    channel.basic_consume(name, callback=on_message)

    def consume() -> None:
        while not done.is_set():
            try:
                consumer.drain_events(timeout=0.5)
            except TimeoutError:
                continue

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()

    publisher = _connect(vhost)
    pub = publisher.channel()
    confirmed = [0]
    if confirms != "off":
        pub.confirm_select()
        pub.events["basic_ack"].add(lambda tag, multiple: confirmed.__setitem__(0, tag))
    sent: dict[int, float] = {}
    confirm_s: list[float] = []
    beam = _beam()
    # The broker also serves whatever else runs here: its CPU rate just before is subtracted.
    idle_before, idle_started = _cpu(beam), time.perf_counter()
    time.sleep(1.0)
    background_per_s = (_cpu(beam) - idle_before) / (time.perf_counter() - idle_started)
    cpu_before, started = _cpu(beam), time.perf_counter()
    for i in range(messages):
        sent[i] = time.perf_counter()
        pub.basic_publish(
            amqp.Message(BODY, delivery_mode=2 if persistent else 1, message_id=str(i)), exchange="", routing_key=name
        )
        if confirms == "each":
            while confirmed[0] < i + 1:
                publisher.drain_events(timeout=10)
            confirm_s.append(time.perf_counter() - sent[i])
    if confirms == "batch":
        while confirmed[0] < messages:
            publisher.drain_events(timeout=10)
    if not done.wait(60):
        raise TimeoutError(f"{name}: {len(received)} of {messages} delivered")
    elapsed = time.perf_counter() - started
    cpu = _cpu(beam) - cpu_before - background_per_s * elapsed
    thread.join(5)
    deliver_s = [received[i] - sent[i] for i in range(messages)]
    for conn in (publisher, consumer):
        conn.close()
    setup.channel().queue_delete(name)
    setup.close()
    return {
        "queue": queue_type,
        "persistent": persistent,
        "confirms": confirms,
        "messages": messages,
        "beam_cpu_us_per_msg": round(cpu / messages * 1e6, 1),
        "msgs_per_s": round(messages / elapsed),
        "confirm_ms_p50": _quantile(confirm_s, 0.5),
        "confirm_ms_p95": _quantile(confirm_s, 0.95),
        "deliver_ms_p50": _quantile(deliver_s, 0.5),
        "deliver_ms_p95": _quantile(deliver_s, 0.95),
    }


def main() -> None:
    messages = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    url, created = create_vhost()
    vhost = created or unquote(urlsplit(url).path[1:]) or "/"
    results = []
    try:
        for queue_type in ("quorum", "classic"):
            for persistent in (True, False):
                for confirms in ("each", "batch", "off"):
                    results.append(run_case(vhost, queue_type, persistent, confirms, messages))
                    print(json.dumps(results[-1]), flush=True)
    finally:
        delete_vhost(created)
    print(f"load average at the end: {psutil.getloadavg()}")


if __name__ == "__main__":
    main()
