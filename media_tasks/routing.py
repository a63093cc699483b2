"""Routing by session: every task of a session goes to one of SHARDS durable queues.

A stable hash (not Python's per-process `hash`) keeps a session on the same shard from any
web instance; every worker consumes every shard, so this gives locality, not ownership.
"""

from __future__ import annotations

import zlib
from typing import Any

from kombu import Exchange, Queue

from settings import Settings


def shard_exchange(settings: Settings) -> Exchange:
    # topic, not direct: Celery's native delayed delivery (countdown on quorum queues) binds
    # its delay exchange to the destination exchange and refuses direct ones.
    return Exchange(f"{settings.name_prefix}.tasks", type="topic", durable=True)


def shard_name(settings: Settings, index: int) -> str:
    return f"{settings.name_prefix}.shard.{index}"


def shard_for(session_id: str, shards: int) -> int:
    return zlib.crc32(session_id.encode()) % shards


def _task_queue_arguments(settings: Settings) -> dict[str, object]:
    arguments: dict[str, object] = {"x-queue-type": settings.shard_queue_type}
    if settings.shard_queue_type == "quorum":
        # Poison tasks (ones that kill their worker every time) stop after this many deliveries
        # and go to the dead-letter queue instead of looping forever.
        arguments["x-delivery-limit"] = settings.task_delivery_limit
        arguments["x-dead-letter-exchange"] = f"{settings.name_prefix}.dead"
        arguments["x-dead-letter-routing-key"] = f"{settings.name_prefix}.dead"
    return arguments


def shard_queues(settings: Settings) -> list[Queue]:
    arguments = _task_queue_arguments(settings)
    exchange = shard_exchange(settings)
    return [
        Queue(
            shard_name(settings, i),
            exchange=exchange,
            routing_key=shard_name(settings, i),
            durable=True,
            queue_arguments=dict(arguments),
        )
        for i in range(settings.shards)
    ]


def dead_letter_queue(settings: Settings) -> Queue:
    name = f"{settings.name_prefix}.dead"
    return Queue(name, exchange=Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


WEBHOOK_TASK = "media.deliver_webhook"  # media_tasks.dispatch.TaskName.DELIVER_WEBHOOK (no import cycle)


def webhook_queue(settings: Settings) -> Queue:
    """Webhook deliveries, consumed only by the webhook worker (media_tasks.webhook_app), never by
    the signaling workers. On the topic task exchange, so that a retry's countdown goes through
    Celery's native delayed delivery (a ladder of broker queues) instead of waiting in a worker."""
    name = f"{settings.name_prefix}.webhooks"
    arguments = _task_queue_arguments(settings)
    return Queue(name, exchange=shard_exchange(settings), routing_key=name, durable=True, queue_arguments=arguments)


class ShardRouter:
    """Celery router: the task's `session_id` argument picks the shard; webhook deliveries go to
    their own queue."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exchange = shard_exchange(settings).name

    def __call__(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any], **_kw: Any
    ) -> dict[str, Any] | None:
        if name == WEBHOOK_TASK:
            return {"queue": webhook_queue(self.settings)}
        session_id = kwargs.get("session_id") if kwargs else None
        if session_id is None and args:
            session_id = args[0]
        if session_id is None:
            return None
        queue = shard_name(self.settings, shard_for(str(session_id), self.settings.shards))
        return {"queue": queue, "exchange": self.exchange, "routing_key": queue}
