"""Publishing to sessions (fanout) and to single participants (their queue), from workers.

One connection per process, shared by task threads and by the Kurento event dispatcher
thread, so publishing goes through a lock. Publisher confirms are on, but a publish does not
wait for its own: the broker routes a message to its queue (and on to a waiting consumer) at
once and confirms only after writing it to disk, a few milliseconds later. Waiting for that
on every message cost an offer most of its latency. Instead `flush()` waits for every
outstanding confirm, and tasks call it before they are acknowledged (media_tasks.base_task):
a task is done only once everything it published is safe, and a broker refusal or crash
makes the task run again rather than lose a message.

A task that runs again publishes again, under the same message ids (messaging.rerun_identity),
so participants' outboxes drop the copies.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time

from amqp.exceptions import NotFound
from kombu import Connection, Exchange, Producer

from messaging import rerun_identity, topology
from messaging.messages import Message
from settings import Settings

log = logging.getLogger(__name__)

_DIRECT = Exchange("", type="direct")
FLUSH_TIMEOUT_S = 10.0


class PublishNotConfirmed(ConnectionError):
    """The broker refused, or may have lost, messages published since the last flush."""


class Publisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._producer: Producer | None = None
        self._published = 0  # delivery tags of this channel's confirms count from 1
        self._confirmed = 0
        self._nacked = False

    # -- publishing --------------------------------------------------------------------------
    def to_session(self, session_id: str, message: Message) -> None:
        self._publish(message, topology.session_exchange(self.settings, session_id), "")

    def to_participant(self, session_id: str, participant_id: str, message: Message) -> None:
        queue = topology.participant_queue(self.settings, session_id, participant_id)
        self._publish(message, _DIRECT, queue.name)

    def _publish(self, message: Message, exchange: Exchange, routing_key: str) -> None:
        body = json.dumps(message, separators=(",", ":"))
        message_id = rerun_identity.message_id(exchange.name, routing_key, body)
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
                    self._published += 1
                    return
                except Exception as exc:
                    if self._published > self._confirmed:
                        # Earlier messages on this channel are unconfirmed and the channel is gone.
                        self._reset()
                        raise PublishNotConfirmed("the channel closed with messages unconfirmed") from exc
                    self._reset()
                    if attempt == 2:
                        raise
                    log.warning("publish failed, reconnecting", exc_info=True)

    # -- confirms ----------------------------------------------------------------------------
    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Waits until the broker confirmed every message published so far."""
        with self._lock:
            if self._connection is None or self._confirmed >= self._published:
                self._raise_if_nacked()
                return
            deadline = time.monotonic() + timeout
            try:
                while self._confirmed < self._published:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise PublishNotConfirmed("the broker did not confirm in time")
                    try:
                        self._connection.connection.drain_events(timeout=remaining)
                    except TimeoutError:
                        continue
            except NotFound:
                # A session exchange was gone (the session closed): that message had nowhere to
                # go, but the channel closed with it, so what else was in flight is uncertain.
                self._reset()
                raise PublishNotConfirmed("a message was refused (no such exchange)") from None
            except PublishNotConfirmed:
                self._reset()
                raise
            except Exception as exc:
                self._reset()
                raise PublishNotConfirmed(f"the broker connection dropped: {exc}") from exc
            self._raise_if_nacked()

    def _raise_if_nacked(self) -> None:
        if self._nacked:
            self._nacked = False
            raise PublishNotConfirmed("the broker refused a message (nack)")

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirmed = max(self._confirmed, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True
        self._confirmed = max(self._confirmed, delivery_tag)

    # -- connection --------------------------------------------------------------------------
    def _producer_now(self) -> Producer:
        if self._producer is None:
            self._connection = Connection(self.settings.rabbitmq_url, heartbeat=0)
            channel = self._connection.channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(self._on_ack)
            channel.events["basic_nack"].add(self._on_nack)
            self._producer = Producer(channel)
            self._published = self._confirmed = 0
        return self._producer

    def _reset(self) -> None:
        if self._connection is not None:
            try:
                self._connection.release()
            except Exception:
                pass
        self._connection = None
        self._producer = None
        self._published = self._confirmed = 0

    def close(self) -> None:
        with self._lock:
            self._reset()


_publishers: dict[tuple[int, str], Publisher] = {}
_publishers_lock = threading.Lock()


def get_publisher(settings: Settings) -> Publisher:
    """One publisher per process (and per broker URL), created after any fork."""
    key = (os.getpid(), settings.rabbitmq_url)
    with _publishers_lock:
        if key not in _publishers:
            _publishers[key] = Publisher(settings)
        return _publishers[key]
