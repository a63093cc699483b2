"""Publishing to sessions (broadcasts) and to single participants (their queue), from workers.

One connection per process, shared by task threads and by the Kurento event dispatcher
thread, so publishing goes through a lock. Publisher confirms are on, but a publish does not
wait for its own: the broker routes a message to its queue (and on to a waiting consumer) at
once and confirms only after writing it to disk, a few milliseconds later. Waiting for that
on every message cost an offer most of its latency. Instead `flush()` waits for the confirms
of the calling task's own publishes, and tasks call it before they are acknowledged
(media_tasks.base_task): a task is done only once everything it published is safe, and a
broker refusal or crash makes the task run again rather than lose a message.

Confirms are accounted per task (messaging.rerun_identity.TaskScope): each publish records its
(channel generation, delivery tag) in the publishing task's scope, an ack or nack settles it
there, and a channel that closes marks every scope with an unconfirmed publish on it as lost,
whichever task's publish (or flush) saw the channel close. So one task's flush never consumes
another's nack or returns early because another task's failure reset the channel. Publishes
outside tasks (Kurento events) share one scope of their own: a loss there is logged, and the
background loop's flush raises it once.

Broadcasts go to the per-deployment exchange (messaging.topology.broadcast_exchange), which is
never deleted: a broadcast for a closed session routes nowhere instead of closing the channel
under everyone else's publishes.

A task that runs again publishes again, under the same message ids (messaging.rerun_identity),
so participants' outboxes drop the copies.

A message that is also an event for the application's backend (participantJoined, say) is then
queued for its webhook receivers (messaging.webhook_events.relay; nothing without WEBHOOK_URLS).
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading
import time
from functools import partial

from kombu import Connection, Producer

from messaging import rerun_identity, topology, webhook_events
from messaging.messages import Message
from messaging.rerun_identity import TaskScope
from settings import Settings

log = logging.getLogger(__name__)

FLUSH_TIMEOUT_S = 10.0


class PublishNotConfirmed(ConnectionError):
    """The broker refused, or may have lost, messages this task published."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._generation = 0  # one per channel: delivery tags count from 1 on each
        self._last_tag = 0
        # Unconfirmed delivery tags of the current channel, in order, and whose they are.
        self._awaiting: dict[int, TaskScope] = {}
        # Publishes outside any task (the Kurento event thread).
        self._outside = TaskScope("outside-tasks")

    # -- publishing --------------------------------------------------------------------------
    def to_session(self, session_id: str, message: Message) -> None:
        self._publish(message, topology.broadcast_exchange(self.settings).name, session_id)
        webhook_events.relay(self.settings, session_id, None, message)

    def to_participant(self, session_id: str, participant_id: str, message: Message) -> None:
        queue = topology.participant_queue(self.settings, session_id, participant_id)
        self._publish(message, "", queue.name)
        webhook_events.relay(self.settings, session_id, participant_id, message)

    def _publish(self, message: Message, exchange: str, routing_key: str) -> None:
        body = json.dumps(message, separators=(",", ":"))
        message_id = rerun_identity.message_id(exchange, routing_key, body)
        scope = rerun_identity.current_task_scope() or self._outside
        with self._lock:
            for attempt in range(3):
                try:
                    self._producer_now().publish(
                        body,
                        exchange=exchange,
                        routing_key=routing_key,
                        content_type="application/json",
                        content_encoding="utf-8",
                        delivery_mode=2,
                        message_id=message_id,
                        retry=False,
                    )
                except Exception as exc:
                    # Whatever was unconfirmed on this channel is lost to its tasks' flushes; this
                    # message went nowhere we know of, so it is published again on a new channel.
                    self._channel_lost(f"the channel closed with messages unconfirmed: {exc}")
                    if attempt == 2:
                        raise
                    log.warning("publish failed, reconnecting", exc_info=True)
                    continue
                self._last_tag += 1
                self._awaiting[self._last_tag] = scope
                scope.awaiting.add((self._generation, self._last_tag))
                return

    # -- confirms ----------------------------------------------------------------------------
    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Waits until the broker confirmed every message this task (or, outside tasks, the
        Kurento event relay) published; raises PublishNotConfirmed if any was refused or was
        unconfirmed on a channel that closed."""
        scope = rerun_identity.current_task_scope() or self._outside
        with self._lock:
            deadline = time.monotonic() + timeout
            try:
                while scope.awaiting and self._connection is not None:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        # Only this scope gives up: its task runs again; the others keep waiting.
                        scope.awaiting.clear()
                        scope.lost = "the broker did not confirm in time"
                        break
                    try:
                        self._connection.connection.drain_events(timeout=remaining)
                    except TimeoutError:
                        continue
            except Exception as exc:
                # The channel or the connection closed (a refused publish, the broker away).
                self._channel_lost(f"the broker channel closed: {exc}")
            if scope.lost is not None:
                reason, scope.lost = scope.lost, None
                raise PublishNotConfirmed(reason)

    def heartbeat_check(self) -> None:
        """Called by the worker's background loop every tick: sends our heartbeat when due; a broker
        silent for two heartbeats loses the connection here, like a closed channel."""
        with self._lock:
            if self._connection is None:
                return
            try:
                # Heartbeats count as received only once read: read what waits (confirms, the
                # broker's heartbeats) without blocking, then tick.
                connection = self._connection.connection
                try:
                    while connection.transport._read_buffer or select.select([connection.sock], [], [], 0)[0]:
                        connection.drain_events(timeout=0.05)
                except TimeoutError:
                    pass
                self._connection.heartbeat_check()
            except Exception as exc:
                self._channel_lost(f"the broker missed its heartbeats: {exc}")

    def _settle(self, generation: int, delivery_tag: int, multiple: bool, refused: bool) -> None:
        if generation != self._generation:
            return
        tags = [t for t in self._awaiting if t <= delivery_tag] if multiple else [delivery_tag]
        for tag in tags:
            scope = self._awaiting.pop(tag, None)
            if scope is None:
                continue
            scope.awaiting.discard((generation, tag))
            if refused:
                self._mark_lost(scope, "the broker refused a message (nack)")

    def _mark_lost(self, scope: TaskScope, reason: str) -> None:
        scope.lost = reason
        if scope is self._outside:
            log.warning("a Kurento event relayed outside tasks may be lost: %s", reason)

    # -- connection --------------------------------------------------------------------------
    def _producer_now(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(
                self.settings.rabbitmq_url,
                heartbeat=self.settings.broker_heartbeat_s,
                connect_timeout=self.settings.task_publish_timeout_s,
            )
            channel = self._connection.channel()
            # Once per channel: broadcasts need their exchange (durable, never deleted).
            topology.broadcast_exchange(self.settings)(channel).declare()
            channel.confirm_select()
            self._generation += 1
            self._last_tag = 0
            channel.events["basic_ack"].add(partial(self._on_confirm, self._generation, False))
            channel.events["basic_nack"].add(partial(self._on_confirm, self._generation, True))
            self._producer = Producer(channel)
        return self._producer

    def _on_confirm(self, generation: int, refused: bool, delivery_tag: int, multiple: bool) -> None:
        self._settle(generation, delivery_tag, multiple, refused)

    def _channel_lost(self, reason: str) -> None:
        """Every publish still unconfirmed on the channel is lost for its own scope."""
        for tag, scope in self._awaiting.items():
            scope.awaiting.discard((self._generation, tag))
        for scope in set(self._awaiting.values()):
            self._mark_lost(scope, reason)
        self._awaiting.clear()
        self._reset()

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                # Dropped, not closed: a close handshake has no timeout, and a broker that blocks
                # publishers (memory or disk alarm) or went silent never answers it.
                self._connection.collect()
            except Exception:
                pass
        self._connection = None
        self._producer = None

    def close(self) -> None:
        with self._lock:
            self._channel_lost("the publisher was closed")


_publishers: dict[tuple[int, str], Publisher] = {}
_publishers_lock = threading.Lock()


def get_publisher(settings: Settings) -> Publisher:
    """One publisher per process (and per broker URL), created after any fork."""
    key = (os.getpid(), settings.rabbitmq_url)
    with _publishers_lock:
        if key not in _publishers:
            _publishers[key] = Publisher(settings)
        return _publishers[key]
