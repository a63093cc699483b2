"""Entry point of the webhook worker: `celery -A media_tasks.webhook_app worker -Q <prefix>.webhooks`.

A process of its own (`signaling webhooks`, the chart's webhooks Deployment), with
WEBHOOK_CONCURRENCY threads, that consumes only the webhook queue: a receiver that hangs or fails
costs these threads, never a signaling worker's. It runs none of the signaling workers' background
work (health monitor, sweeps); it uses the database only to count the starts of a redelivered task
(media_tasks.base_task), like every worker.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_ready

from media_tasks.celery_app import create_celery_app, wire_worker_process
from media_tasks.routing import webhook_queue
from models import connect_db
from settings import load_settings

log = logging.getLogger(__name__)

settings = load_settings()
app = create_celery_app(settings)
# Known to this app only, so that its native delayed delivery binds the webhook queue to the retry
# ladder; the signaling workers never declare or consume it.
app.conf.task_queues = [*app.conf.task_queues, webhook_queue(settings)]
app.conf.worker_concurrency = settings.webhook_concurrency
connect_db(settings)


wire_worker_process(settings)


@worker_ready.connect(weak=False)
def _on_worker_ready(**_kwargs: Any) -> None:
    from observability import task_metrics

    task_metrics.start(settings.worker_metrics_port)
    if not settings.webhook_urls:
        log.warning("WEBHOOK_URLS is empty: no events are emitted, this worker has nothing to do")
    elif not settings.webhook_secret:
        log.warning("WEBHOOK_SECRET is empty: receivers cannot tell these events from forged ones")
