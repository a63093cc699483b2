"""Celery configuration under Celery's own names, built from the one Settings object.

`media_tasks.celery_app.create_celery_app(settings)` applies it; nothing here reads the
environment.
"""

from __future__ import annotations

from typing import Any

from media_tasks.routing import ShardRouter, dead_letter_queue, shard_name, shard_queues
from settings import Settings


def celery_config(settings: Settings) -> dict[str, Any]:
    return {
        "broker_url": settings.rabbitmq_url,
        # Quorum queues need publisher confirms; they also make a refused publish an error.
        "broker_transport_options": {"confirm_publish": True},
        "broker_connection_retry_on_startup": True,
        "broker_heartbeat": settings.broker_heartbeat_s,
        # A broker that blocks publishers (memory or disk alarm) or vanished without a reset must not
        # hang a request: each attempt's handshake is bounded here and its confirm by the
        # `confirm_timeout` media_tasks.dispatch passes; a timed-out connection is discarded (kombu's
        # ensure collects it, so no late confirm is taken for a later publish's) and tried once more.
        "broker_connection_timeout": settings.task_publish_timeout_s,
        "task_publish_retry_policy": {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2},
        "task_queues": [*shard_queues(settings), dead_letter_queue(settings)],
        "task_default_queue": shard_name(settings, 0),
        "task_routes": (ShardRouter(settings),),
        "task_create_missing_queues": False,
        "task_serializer": "json",
        "accept_content": ["json"],
        "result_backend": None,
        "task_ignore_result": True,
        # A task is acknowledged only once done, and requeued if its worker dies mid-way: every
        # task is written to be safe to run twice.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Per worker, not per shard queue: media_tasks.worker_consumer shares it among the queues.
        "worker_prefetch_multiplier": 1,
        "worker_concurrency": settings.worker_concurrency,
        "worker_pool": "threads",
        # The prefetch shared among the shard queues, task events without publisher confirms.
        "worker_consumer": "media_tasks.worker_consumer:MediaConsumer",
        # Task events for Flower, published unconfirmed (media_tasks.worker_consumer). No `task-sent`
        # events: each would be one more confirmed publish in every web request; Flower shows a task
        # from `task-received` on, and workers measure the dispatch delay from the `enqueued_at`
        # header (signaling_task_dispatch_seconds).
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
    }
