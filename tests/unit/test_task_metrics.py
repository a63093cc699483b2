"""Task outcomes are counted once per run: a retry is one `retry`, a failure one `failure`.

The tasks run through Celery's own tracer (`Task.apply`, what a worker calls for each message),
so the signals arrive exactly as in a worker; only the broker is left out.
"""

from __future__ import annotations

import uuid

from celery import Celery

from observability import task_metrics  # connects the signal handlers

app = Celery(f"metrics-{uuid.uuid4().hex[:6]}")


@app.task(bind=True, name="test.metrics.flaky", max_retries=1, default_retry_delay=0)
def flaky(self):
    if self.request.retries == 0:
        raise self.retry()
    return "ok"


@app.task(name="test.metrics.broken")
def broken():
    raise ValueError("always")


def samples(metric, name: str, task: str) -> list:
    # Read from the metric itself: the process-wide registry may hold collectors needing MongoDB.
    return [s for family in metric.collect() for s in family.samples if s.name == name and s.labels["task"] == task]


def outcomes(task: str) -> dict[str, float]:
    return {s.labels["outcome"]: s.value for s in samples(task_metrics.TASKS, "signaling_tasks_total", task)}


def durations(task: str) -> float:
    return sum(s.value for s in samples(task_metrics.TASK_SECONDS, "signaling_task_seconds_count", task))


def test_a_retried_task_counts_one_retry_then_one_success():
    assert flaky.apply().state == "SUCCESS"
    assert outcomes("test.metrics.flaky") == {"retry": 1.0, "success": 1.0}
    assert durations("test.metrics.flaky") == 2.0


def test_a_failed_task_counts_one_failure_and_nothing_else():
    assert broken.apply().state == "FAILURE"
    assert outcomes("test.metrics.broken") == {"failure": 1.0}
    assert durations("test.metrics.broken") == 1.0
