"""Counting what participant queues dropped, so that clients learn of it.

A participant queue past its length or byte guard drops its oldest messages and dead-letters
them, with the participant id as routing key, to the deployment's overflow queue
(messaging.topology). Every web process consumes that queue (competing consumers: each drop is
counted by one of them) and adds the drops to `Participant.dropped_count`, one write per
participant per batch, before acking them. The participant's next poll reads the count with its
lease (no extra round trip; a lease kept in-process between polls is written back and the count
read by its next poll when this process counted drops for it, else within CHECKPOINT_S) and
stores a `messagesDropped {count}` ahead of what the queue still holds: the dropped messages
were older than all of it.

Counting is at least once: a process that dies between its write and its ack has those drops
counted again by another, so a client may be told of more drops than happened, never fewer.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable

from messaging import topology
from messaging.delivery_hub import DeliveryHub, HubConnection, Subscription
from models import Participant, bound_to
from settings import Settings

log = logging.getLogger(__name__)

BATCH = 500
IDLE_WAIT_S = 1.0
RETRY_S = 1.0


class OverflowCounter:
    """One per web process: a thread (a greenlet under gevent) that counts dead-lettered drops."""

    def __init__(
        self,
        settings: Settings,
        hub: DeliveryHub,
        database: str,
        counted: Callable[[str], None] = lambda _participant_id: None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self.database = database
        self.counted = counted  # told of each participant whose count it raised, after the write
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="overflow-counter", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        queue = topology.overflow_queue(self.settings).name
        while True:
            connection = self.hub.connection_for(queue)
            try:
                connection.declare(lambda channel: topology.declare_overflow(channel, self.settings))
                subscription = connection.subscribe(queue, prefetch=BATCH, skip_if_empty=False)
                assert subscription is not None  # only skip_if_empty answers None
                try:
                    self._count(connection, subscription)
                finally:
                    connection.unsubscribe(subscription)
            except Exception:
                log.warning("counting participant queue overflow failed; retrying", exc_info=True)
            time.sleep(RETRY_S)

    def _count(self, connection: HubConnection, subscription: Subscription) -> None:
        while not (subscription.broken or subscription.cancelled):
            subscription.arrived.wait(IDLE_WAIT_S)
            received = subscription.take()
            if not received:
                continue
            dropped = collections.Counter(str(m.delivery_info.get("routing_key", "")) for m in received)
            with bound_to(self.database):
                for participant_id, count in dropped.items():
                    if participant_id:
                        Participant.count_dropped(participant_id, count)
                        self.counted(participant_id)
            connection.ack(subscription, received[-1].delivery_tag)
