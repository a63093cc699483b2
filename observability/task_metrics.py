"""Prometheus metrics of the workers: tasks by name and outcome, KMS calls by method.

Each worker process serves its own on WORKER_METRICS_PORT (0 = off).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from celery import Task
from celery.signals import task_postrun, task_prerun
from prometheus_client import Counter, Histogram, start_http_server

import kurento
from observability import logs

TASKS = Counter("signaling_tasks_total", "Tasks by name and outcome", ["task", "outcome"])
TASK_SECONDS = Histogram("signaling_task_seconds", "Task duration", ["task"])
DISPATCH_SECONDS = Histogram(
    "signaling_task_dispatch_seconds",
    "From enqueue in the web tier to the task's start",
    ["task"],
    buckets=(
        0.0005,
        0.001,
        0.0015,
        0.002,
        0.003,
        0.004,
        0.005,
        0.0075,
        0.01,
        0.015,
        0.02,
        0.03,
        0.05,
        0.075,
        0.1,
        0.15,
        0.2,
        0.3,
        0.5,
        0.75,
        1,
        1.5,
        2,
        3,
        5,
        7.5,
        10,
        15,
        20,
        30,
        60,
    ),
)
KMS_REQUESTS = Counter("signaling_kms_requests_total", "Kurento JSON-RPC requests", ["method", "operation", "outcome"])
# One per wait for KMS: kind is the method of a single request, "batch" (request_many) or "transaction";
# signaling_kms_requests_total counts the requests (a transaction's operations each).
KMS_ROUND_TRIPS = Counter("signaling_kms_round_trips_total", "Kurento JSON-RPC round trips", ["kind"])
KMS_SECONDS = Histogram(
    "signaling_kms_request_seconds",
    "Kurento JSON-RPC request duration",
    ["method", "operation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

_started: dict[str, float] = {}


# Celery sends task_id and task with both signals (docs/userguide/signals.rst); the rest is in _extra.
@task_prerun.connect
def _on_prerun(task_id: str, task: Task, kwargs: dict[str, Any] | None = None, **_extra: Any) -> None:
    _started[task_id] = time.perf_counter()
    enqueued_at = task.request.get("enqueued_at")
    if enqueued_at is not None and not task.request.get("retries"):
        DISPATCH_SECONDS.labels(task.name).observe(max(0.0, time.time() - float(enqueued_at)))
    kwargs = kwargs or {}
    logs.bind(kwargs.get("session_id"), kwargs.get("participant_id"))


@task_postrun.connect
def _on_postrun(task_id: str, task: Task, state: str | None = None, **_extra: Any) -> None:
    # The one place a run is counted: postrun comes once per run with its final state (success,
    # failure, retry, rejected ...); task_failure and task_retry come in addition to it.
    started = _started.pop(task_id, None)
    if started is not None:
        TASK_SECONDS.labels(task.name).observe(time.perf_counter() - started)
    TASKS.labels(task.name, (state or "unknown").lower()).inc()
    logs.bind(None, None)


def _observe_kms(method: str, operation: str, seconds: float, outcome: str) -> None:
    KMS_REQUESTS.labels(method, operation, outcome).inc()
    KMS_SECONDS.labels(method, operation).observe(seconds)


def _observe_round_trip(kind: str, _methods: Sequence[str]) -> None:
    KMS_ROUND_TRIPS.labels(kind).inc()


def start(port: int) -> None:
    kurento.client.request_observers.append(_observe_kms)
    kurento.client.round_trip_observers.append(_observe_round_trip)
    if port:
        start_http_server(port, addr="127.0.0.1")
