"""The web tier's shared broker connections, against the real RabbitMQ: channels are reused
from poll to poll, and what a poll received but did not acknowledge goes back to its queue."""

from __future__ import annotations

import time
import uuid

import pytest
from kombu import Connection, Producer, Queue

from messaging.delivery_hub import HubConnection, QueueGone

pytestmark = pytest.mark.integration


@pytest.fixture
def queue(rabbitmq_url):
    name = f"hubtest.{uuid.uuid4().hex}"
    with Connection(rabbitmq_url) as conn:
        Queue(name, durable=True)(conn.default_channel).declare()
        yield name, lambda bodies: _publish(conn, name, bodies)
        Queue(name)(conn.default_channel).delete()


@pytest.fixture
def hub(rabbitmq_url):
    connection = HubConnection(rabbitmq_url, "test")
    yield connection
    connection.close()


def _publish(conn: Connection, queue: str, bodies: list[str]) -> None:
    producer = Producer(conn.default_channel)
    for body in bodies:
        producer.publish(body, routing_key=queue, delivery_mode=2)


def _receive(hub: HubConnection, queue: str, count: int, prefetch: int = 100):
    subscription = hub.subscribe(queue, prefetch=prefetch, skip_if_empty=False)
    deadline = time.monotonic() + 5
    while len(subscription.received) < count and time.monotonic() < deadline:
        subscription.arrived.wait(0.1)
        subscription.arrived.clear()
    return subscription


def test_unacknowledged_deliveries_go_back_in_order_and_the_channel_is_reused(hub, queue):
    name, publish = queue
    publish([f"m{i}" for i in range(5)])
    first = _receive(hub, name, 5)
    received = first.take()
    assert [m.body for m in received] == ["m0", "m1", "m2", "m3", "m4"]
    hub.ack(first, received[1].delivery_tag)  # the poll stored m0 and m1 only
    hub.unsubscribe(first)
    channel = first.channel

    second = _receive(hub, name, 3)
    # The same channel serves the next poll, and the three that were not acknowledged come
    # back first, in their order, marked as redelivered.
    assert second.channel is channel
    again = second.take()
    assert [m.body for m in again] == ["m2", "m3", "m4"]
    assert all(m.delivery_info["redelivered"] for m in again)
    hub.ack(second, again[-1].delivery_tag)
    hub.unsubscribe(second)

    publish(["m5"])
    third = _receive(hub, name, 1, prefetch=1)  # another prefetch on the reused channel
    assert [m.body for m in third.take()] == ["m5"]
    hub.unsubscribe(third)  # not acknowledged: back to the queue
    # (The queue's ready count may lag the requeue by a moment, so wait for the delivery
    # itself rather than asking for the count.)
    fourth = _receive(hub, name, 1)
    again = fourth.take()
    assert [m.body for m in again] == ["m5"] and again[0].delivery_info["redelivered"]
    hub.unsubscribe(fourth)


def test_an_empty_or_missing_queue(hub, queue):
    name, _publish_ = queue
    assert hub.subscribe(name, prefetch=10, skip_if_empty=True) is None
    with pytest.raises(QueueGone):
        hub.subscribe(f"{name}.missing", prefetch=10, skip_if_empty=False)
    # The channel the 404 closed is not reused: the next poll still works.
    _publish_(["after"])
    subscription = _receive(hub, name, 1)
    assert [m.body for m in subscription.take()] == ["after"]
    hub.unsubscribe(subscription)


def test_a_queue_deleted_under_a_waiting_poll_ends_it_without_harm(rabbitmq_url, hub, queue):
    name, publish = queue
    doomed = f"{name}.doomed"
    with Connection(rabbitmq_url) as conn:
        Queue(doomed, durable=True)(conn.default_channel).declare()
        subscription = hub.subscribe(doomed, prefetch=10, skip_if_empty=False)
        Queue(doomed)(conn.default_channel).delete()
    assert subscription.arrived.wait(5) and subscription.cancelled and not subscription.broken
    hub.unsubscribe(subscription)
    # The connection survived it: other polls go on.
    publish(["still here"])
    other = _receive(hub, name, 1)
    assert [m.body for m in other.take()] == ["still here"] and not other.broken
    hub.unsubscribe(other)


def test_a_closed_connection_stops_its_thread(hub, queue):
    name, _publish_ = queue
    assert hub.subscribe(name, prefetch=1, skip_if_empty=True) is None  # the thread runs now
    hub.close()
    assert not hub._thread.is_alive()
