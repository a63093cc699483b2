"""A few broker connections per web process that every long poll shares.

A waiting long poll must not hold a broker connection of its own: thousands of idle polls
would mean thousands of connections. Here each poll gets a channel on one of a few shared
connections. py-amqp connections are not safe to read from two places at once, so every
socket operation of a connection (channel open, consume, ack, close, and reading
deliveries) runs on that connection's own thread, a greenlet under gevent; polls hand it
commands through a queue and a wake-up pipe, and wait on events it sets.

Channels are reused: opening and closing one per poll cost two more round trips and most of
RabbitMQ's CPU per poll (a channel is several Erlang processes). A poll consumes on an idle
channel and, when it ends, cancels its consumer and requeues whatever it received but
did not acknowledge (basic.reject), which is what closing the channel used to do. A poll that
keeps its participant's lease for the next poll (messaging.mailbox) keeps its subscription too:
the next poll of that participant in this process finds the consumer running, with no round trip.
"""

from __future__ import annotations

import collections
import logging
import os
import select
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

# py-amqp has no type information: these names are Any to mypy and only document what is passed.
from amqp import Channel as AmqpChannel
from amqp import Message as AmqpMessage
from amqp.exceptions import NotFound
from amqp.transport import _AbstractTransport as AmqpTransport
from kombu import Connection

log = logging.getLogger(__name__)

# RabbitMQ's default channel_max is 2047 per connection; stay well under it.
CHANNELS_PER_CONNECTION = 1500
# Idle channels a connection keeps for the next polls; more than this are closed.
IDLE_CHANNELS = 64
COMMAND_TIMEOUT_S = 10.0

T = TypeVar("T")


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached right now."""


class QueueGone(Exception):
    """The participant's queue does not exist (it expired)."""


@dataclass(eq=False)  # identity semantics: subscriptions live in a set
class Subscription:
    """Deliveries from one queue to one waiting poll, on a channel of its own."""

    queue: str
    channel: AmqpChannel
    consumer_tag: str = ""
    prefetch: int | None = None  # the channel's basic.qos, kept with it when the channel is reused
    received: list[AmqpMessage] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    broken: bool = False
    # The broker cancelled the consumer: the queue was deleted under it.
    cancelled: bool = False
    # Delivery tags on the (reused) channel: every one received, and acknowledged up to.
    tags: list[int] = field(default_factory=list)
    acked_tag: int = 0

    def take(self, limit: int | None = None) -> list[AmqpMessage]:
        """The oldest `limit` (all by default) received messages; the rest wait for the next take."""
        if limit is not None and limit < len(self.received):
            taken = self.received[:limit]
            del self.received[:limit]  # one step: the hub thread only appends
            return taken
        taken, self.received = self.received, []
        self.arrived.clear()
        return taken

    def on_message(self, message: AmqpMessage) -> None:  # runs on the hub thread
        self.received.append(message)
        self.tags.append(message.delivery_tag)
        self.arrived.set()

    def on_cancel(self, _consumer_tag: str) -> None:  # runs on the hub thread
        self.cancelled = True
        self.arrived.set()


class _Command:
    """An action for the connection's thread; `done` is set after it ran (or failed) when someone waits."""

    def __init__(self, action: Callable[[Connection], object], done: threading.Event | None) -> None:
        self.action = action
        self.done = done
        self.error: BaseException | None = None


class HubConnection:
    def __init__(self, url: str, name: str, heartbeat: int = 0) -> None:
        self.url = url
        self.name = name
        self.heartbeat = heartbeat
        self._commands: collections.deque[_Command] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._subscriptions: set[Subscription] = set()
        # Open channels no poll uses, each with its prefetch.
        self._idle_channels: list[tuple[AmqpChannel, int | None]] = []
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._connected = threading.Event()

    # -- API for polls (any thread or greenlet) -----------------------------------------------
    def subscribe(self, queue: str, prefetch: int, skip_if_empty: bool) -> Subscription | None:
        """Starts deliveries from `queue`; None when the queue is empty and `skip_if_empty`."""

        def start_consuming(conn: Connection) -> Subscription | None:
            channel, channel_prefetch = (
                self._idle_channels.pop() if self._idle_channels else (conn.connection.channel(), None)
            )
            subscription = Subscription(queue, channel)
            try:
                if skip_if_empty:
                    _name, ready, _consumers = channel.queue_declare(queue, passive=True)
                    if ready == 0:
                        self._keep_idle(channel, channel_prefetch)
                        return None
                if channel_prefetch != prefetch:
                    channel.basic_qos(0, prefetch, False)
                subscription.prefetch = prefetch
                subscription.consumer_tag = channel.basic_consume(
                    queue, callback=subscription.on_message, on_cancel=subscription.on_cancel, no_ack=False
                )
            except NotFound:
                raise QueueGone(queue) from None  # the 404 closed that channel only
            self._subscriptions.add(subscription)
            return subscription

        return self._call(start_consuming)

    def declare(self, action: Callable[[AmqpChannel], object]) -> None:
        """Runs declarations (messaging.topology) on a channel of this connection, then closes it."""

        def declare_on_a_channel(conn: Connection) -> None:
            channel = conn.connection.channel()
            try:
                action(channel)
            finally:
                if channel.is_open:
                    channel.close()

        self._call(declare_on_a_channel)

    def ack(self, subscription: Subscription, delivery_tag: int) -> None:
        """Acknowledges everything up to `delivery_tag` (queued; runs before a later unsubscribe)."""
        subscription.acked_tag = max(subscription.acked_tag, delivery_tag)

        def acknowledge(_conn: Connection) -> None:
            subscription.channel.basic_ack(delivery_tag, multiple=True)
            # A subscription kept across polls must not remember every tag it ever received.
            subscription.tags = [tag for tag in subscription.tags if tag > delivery_tag]

        self._post(acknowledge)

    def unsubscribe(self, subscription: Subscription) -> None:
        """Ends the deliveries and requeues whatever the poll did not acknowledge."""

        def stop_consuming(_conn: Connection) -> None:
            self._subscriptions.discard(subscription)
            if subscription.broken:
                return
            channel = subscription.channel
            if subscription.cancelled:
                channel.close()  # its deliveries belonged to a deleted queue: start afresh
                return
            channel.basic_cancel(subscription.consumer_tag)  # after cancel-ok nothing more arrives
            for tag in subscription.tags:
                if tag > subscription.acked_tag:
                    channel.basic_reject(tag, requeue=True)  # back to its place in the queue
            self._keep_idle(channel, subscription.prefetch)

        try:
            self._call(stop_consuming)
        except BrokerUnavailable:
            pass  # the connection is gone, and with it the channel: the broker requeued already

    def _keep_idle(self, channel: AmqpChannel, prefetch: int | None) -> None:
        if len(self._idle_channels) < IDLE_CHANNELS and channel.is_open:
            self._idle_channels.append((channel, prefetch))
        else:
            channel.close()

    def close(self) -> None:
        """Stops the connection's thread and closes the connection (the broker requeues what it held)."""
        self._closing = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(5)

    @property
    def load(self) -> int:
        return len(self._subscriptions)

    # -- internals -----------------------------------------------------------------------------
    def _call(self, action: Callable[[Connection], T]) -> T:
        """Runs `action` on the connection's thread and returns its result."""
        results: list[T] = []
        done = threading.Event()
        command = self._submit(_Command(lambda conn: results.append(action(conn)), done))
        if not done.wait(COMMAND_TIMEOUT_S):
            raise BrokerUnavailable("the broker did not answer in time")
        if command.error is not None:
            raise command.error
        return results[0]

    def _post(self, action: Callable[[Connection], object]) -> None:
        """Queues `action` for the connection's thread without waiting for it."""
        self._submit(_Command(action, None))

    def _submit(self, command: _Command) -> _Command:
        self._ensure_thread()
        self._commands.append(command)
        os.write(self._wake_w, b"x")
        return command

    def _ensure_thread(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=f"delivery-hub-{self.name}", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        while not self._closing:
            conn = Connection(self.url, heartbeat=self.heartbeat, connect_timeout=2)
            try:
                conn.ensure_connection(max_retries=1, timeout=2)
                backoff = 0.1
                self._serve(conn)
            except Exception as exc:
                if self._closing:
                    break
                log.warning("delivery hub %s lost the broker: %s", self.name, exc)
                self._fail_everything(BrokerUnavailable(str(exc)))
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    conn.collect()
                except Exception:
                    pass

    def _serve(self, conn: Connection) -> None:
        transport = conn.connection.transport
        while not self._closing:
            self._run_commands(conn)
            readable, _, _ = select.select([transport.sock, self._wake_r], [], [], 1.0)
            if self._wake_r in readable:
                try:
                    os.read(self._wake_r, 65536)
                except BlockingIOError:
                    pass
            if transport.sock in readable:
                self._drain(conn, transport)
            # Sends ours when due and raises once the broker missed two: a broker gone without a
            # reset is noticed, polls get 503 and the loop reconnects.
            conn.heartbeat_check()

    def _drain(self, conn: Connection, transport: AmqpTransport) -> None:
        """Reads every frame that has arrived; deliveries go to their subscription's callback."""
        while True:
            try:
                conn.connection.drain_events(timeout=0.05)
            except TimeoutError:
                return
            if not transport._read_buffer and not select.select([transport.sock], [], [], 0)[0]:
                return

    def _run_commands(self, conn: Connection) -> None:
        while self._commands:
            command = self._commands.popleft()
            try:
                command.action(conn)
            except (QueueGone, NotFound) as exc:
                command.error = exc
            except Exception as exc:
                command.error = BrokerUnavailable(str(exc))
                if command.done is not None:
                    command.done.set()
                raise  # the connection is in doubt: start over
            if command.done is not None:
                command.done.set()

    def _fail_everything(self, error: BrokerUnavailable) -> None:
        self._idle_channels.clear()  # they belonged to the lost connection
        while self._commands:
            command = self._commands.popleft()
            command.error = error
            if command.done is not None:
                command.done.set()
        for subscription in list(self._subscriptions):
            subscription.broken = True
            subscription.arrived.set()
        self._subscriptions.clear()


class DeliveryHub:
    """Spreads polls over a few HubConnections by participant, so one is never overloaded."""

    def __init__(self, url: str, connections: int = 4, heartbeat: int = 0) -> None:
        self._connections = [HubConnection(url, str(i), heartbeat) for i in range(connections)]

    def close(self) -> None:
        for connection in self._connections:
            connection.close()

    def wake_all(self) -> None:
        """Wakes every waiting poll (they then answer with what they have): a shutting-down process."""
        for connection in self._connections:
            for subscription in list(connection._subscriptions):
                subscription.arrived.set()

    def connection_for(self, key: str) -> HubConnection:
        chosen = self._connections[zlib.crc32(key.encode()) % len(self._connections)]
        if chosen.load >= CHANNELS_PER_CONNECTION:
            chosen = min(self._connections, key=lambda c: c.load)
        return chosen
