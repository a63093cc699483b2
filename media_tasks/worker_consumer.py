"""The worker's consumer (Celery's `worker_consumer` setting): Celery's own, with two changes.

- **A prefetch share per queue.** On quorum queues RabbitMQ applies the prefetch count to each
  consumer, not to the channel (quorum queues refuse global QoS), and a worker has one consumer
  per shard queue. Celery's prefetch (concurrency × multiplier) on each of SHARDS queues let one
  worker reserve SHARDS times more tasks than it has threads, to wait there while another worker
  idled. Each consumer gets its share instead, rounded up: a worker holds at most
  concurrency × multiplier + SHARDS - 1 tasks (8 with 8 threads and 8 shards).
- **Task events without publisher confirms.** `broker_transport_options` turns confirms on for
  every connection of the app, and the worker's event dispatcher (the only user of
  `Consumer.connection_for_write`) then waited for one confirm per batch of task events, in the
  consumer's own loop, before taking the next task. Events are monitoring (Flower), sent as
  transient messages to queues that are themselves transient; a lost one costs a line in Flower,
  never a task or a client's message, which keep their confirms (task messages from
  `media_tasks.dispatch`, client messages from `messaging.publisher`).
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer
from kombu import Connection


def prefetch_share(prefetch: int, queues: int) -> int:
    """Each consumer's prefetch count so that all `queues` together hold about `prefetch` tasks;
    0 (no limit) stays 0."""
    if prefetch <= 0 or queues <= 1:
        return prefetch
    return -(-prefetch // queues)


class MediaConsumer(Consumer):
    initial_prefetch_count: int  # set by Consumer.__init__ (concurrency × prefetch multiplier)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        consumed = self.app.amqp.queues.consume_from
        quorum = [q for q in consumed.values() if (q.queue_arguments or {}).get("x-queue-type") == "quorum"]
        # Only quorum queues turn global QoS off (celery.utils.quorum_queues); on classic ones the
        # prefetch is the channel's, shared by its consumers, and stays as Celery sets it.
        if quorum and self.app.conf.worker_detect_quorum_queues:
            self.initial_prefetch_count = prefetch_share(self.initial_prefetch_count, len(consumed))

    def connection_for_write(self, url: str | None = None, heartbeat: float | None = None) -> Connection:
        return self.ensure_connected(
            self.app.connection_for_write(url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False})
        )
