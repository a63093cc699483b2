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


def shard_queues(settings: Settings) -> list[Queue]:
    arguments: dict[str, object] = {"x-queue-type": settings.shard_queue_type}
    if settings.shard_queue_type == "quorum":
        # Poison tasks (ones that kill their worker every time) stop after this many deliveries
        # and go to the dead-letter queue instead of looping forever.
        arguments["x-delivery-limit"] = settings.task_delivery_limit
        arguments["x-dead-letter-exchange"] = f"{settings.name_prefix}.dead"
        arguments["x-dead-letter-routing-key"] = f"{settings.name_prefix}.dead"
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


class ShardRouter:
    """Celery router: the task's `session_id` argument picks the shard."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.exchange = shard_exchange(settings).name

    def __call__(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], options: dict[str, Any], **_kw: Any
    ) -> dict[str, str] | None:
        session_id = kwargs.get("session_id") if kwargs else None
        if session_id is None and args:
            session_id = args[0]
        if session_id is None:
            return None
        queue = shard_name(self.settings, shard_for(str(session_id), self.settings.shards))
        return {"queue": queue, "exchange": self.exchange, "routing_key": queue}
