"""Workers share a burst: one worker does not reserve the tasks another could start.

On quorum queues the prefetch count applies to each consumer, and a worker consumes every shard
queue; media_tasks.worker_consumer gives each queue its share of the worker's prefetch. Here a
worker with 2 threads on 4 shard queues takes a burst of 8 tasks that hold their thread, and a
second worker starts after it: it must start tasks of that burst (with Celery's own prefetch on
each queue, the first worker would have reserved all 8). Counted by the tasks each worker started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from celery import Celery

from media_tasks.routing import shard_exchange, shard_for, shard_name
from settings import load_settings
from signaling_cli import processes
from tests.conftest import stack_env
from tests.support.rabbit import create_vhost, delete_vhost

pytestmark = pytest.mark.integration

SHARDS, THREADS, PER_SHARD = 4, 2, 2


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def started_by(marker_dir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for marker in marker_dir.glob("*.*@*"):
        node = marker.name.split(".", 1)[1].split("@", 1)[0]
        counts[node] = counts.get(node, 0) + 1
    return counts


def test_a_second_worker_starts_tasks_of_a_burst_the_first_received(run_dir, mongodb_uri, kms_url):
    url, vhost = create_vhost(os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//"))
    env = stack_env(url, mongodb_uri, [kms_url], SHARDS=str(SHARDS), WORKER_CONCURRENCY=str(THREADS))
    settings = load_settings(env)
    log_dir, marker_dir = run_dir / "logs-fairness", run_dir / "fairness-markers"
    marker_dir.mkdir()
    workers: list[processes.ManagedProcess] = []
    sender = Celery("fairness-sender", broker=url)
    sender.conf.broker_transport_options = {"confirm_publish": True}

    def start(name: str) -> None:
        worker = processes.start_worker(
            env, log_dir, name=name, concurrency=THREADS, extra_args=("-I", "tests.integration.hold_tasks")
        )
        workers.append(worker)
        wait_until(
            lambda: f"{name}@" in worker.log_path.read_text() and " ready." in worker.log_path.read_text(),
            60,
            f"{name} never got ready; see {worker.log_path}",
        )

    try:
        first, second = f"{settings.name_prefix}-first", f"{settings.name_prefix}-second"
        start(first)
        # PER_SHARD sessions on every shard queue, one task each.
        sessions: dict[int, list[str]] = {i: [] for i in range(SHARDS)}
        n = 0
        while any(len(s) < PER_SHARD for s in sessions.values()):
            session_id, n = f"s{n}", n + 1
            shard = shard_for(session_id, SHARDS)
            if len(sessions[shard]) < PER_SHARD:
                sessions[shard].append(session_id)
        for shard, ids in sessions.items():
            for session_id in ids:
                sender.send_task(
                    "test.hold",
                    kwargs={"session_id": session_id, "marker_dir": str(marker_dir)},
                    exchange=shard_exchange(settings).name,
                    routing_key=shard_name(settings, shard),
                )
        burst = SHARDS * PER_SHARD
        wait_until(lambda: started_by(marker_dir).get(first) == THREADS, 30, f"{first} did not start its tasks")

        start(second)
        wait_until(
            lambda: started_by(marker_dir).get(second, 0) == THREADS,
            30,
            f"the second worker started {started_by(marker_dir)} tasks of a burst of {burst}: the first reserved them",
        )
        assert started_by(marker_dir)[first] == THREADS  # its threads are all still held

        (marker_dir / "release").touch()
        wait_until(lambda: sum(started_by(marker_dir).values()) == burst, 60, f"started: {started_by(marker_dir)}")
        # Each worker's consumers held one task per queue: it ran those, and nothing was left over.
        assert started_by(marker_dir) == {first: burst // 2, second: burst // 2}
    finally:
        sender.close()
        for worker in workers:
            worker.stop()
        delete_vhost(vhost)
